// packfleet fleet page: plain JavaScript over the REST API, no build step, nothing from the internet.
"use strict";

const REFRESH_MS = 5000;
const FINAL = new Set(["succeeded", "failed", "expired", "cancelled"]);
const $ = (id) => document.getElementById(id);
let timer = null;
let watching = null; // the command whose progress is shown

// ---- API -------------------------------------------------------------------------------------
function token() { return sessionStorage.getItem("packfleet.token"); }

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json", ...(options.headers || {}) };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const answer = await fetch(path, { ...options, headers });
  if (answer.status === 401 && token()) { logout(); throw new Error("session expired"); }
  const body = answer.headers.get("content-type")?.includes("json") ? await answer.json() : await answer.text();
  if (!answer.ok) {
    const err = new Error(body?.details && typeof body.details === "string" ? body.details : body?.error || answer.statusText);
    err.status = answer.status;
    throw err;
  }
  return body;
}

// ---- helpers ---------------------------------------------------------------------------------
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  return node;
}
function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}
const fmt = (v, d = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}
// The API compares the switches as the device confirmed them (null: never reported) with those
// asked for (`in_sync`); the page only names them. Disabled: the device confirmed discharging off.
function switchesLabel(charging, discharging) {
  if (discharging === false) return "disabled";
  if (charging === false) return "charging cut";
  return "on";
}
function state(b) {
  const confirmed = switchesLabel(b.charging, b.discharging);
  return confirmed === "on" ? (b.online ? "online" : "offline") : confirmed;
}
// What was asked and not confirmed yet; nothing for a battery that never reported and runs as asked.
function pendingOf(b) {
  const asked = switchesLabel(b.desired_charging, b.desired_discharging);
  return b.in_sync || (b.charging === null && asked === "on") ? null : asked;
}
function stateText(b) {
  const pending = pendingOf(b);
  return pending ? `${state(b)} · pending: ${pending}` : state(b);
}
const STATE_CLASS = { online: "online", offline: "offline", disabled: "disabled", "charging cut": "cut" };
const DOT_STROKE = { on: "#1d2330", "charging cut": "#7d3c98", disabled: "#c0392b" };
function socColour(soc) { return soc < 20 ? "#c0392b" : soc < 50 ? "#c77700" : "#1f8a4c"; }
function show(id) {
  for (const s of ["login", "overview", "battery"]) $(s).hidden = s !== id;
  $("nav").hidden = id === "login";
}

// ---- login -----------------------------------------------------------------------------------
function logout() {
  sessionStorage.removeItem("packfleet.token");
  sessionStorage.removeItem("packfleet.user");
  route();
}

$("login-phone").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("login-error").textContent = "";
  try {
    await api("/api/auth/login", { method: "POST", body: JSON.stringify({ phone: $("phone").value.trim(), userType: $("role").value }) });
    $("login-otp").hidden = false;
    $("otp").focus();
  } catch (err) { $("login-error").textContent = err.message; }
});

$("login-otp").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("login-error").textContent = "";
  try {
    const body = await api("/api/auth/verify-otp", { method: "POST", body: JSON.stringify({ phone: $("phone").value.trim(), otp: $("otp").value.trim() }) });
    sessionStorage.setItem("packfleet.token", body.token);
    sessionStorage.setItem("packfleet.user", JSON.stringify(body.user));
    $("login-otp").hidden = true;
    $("otp").value = "";
    location.hash = "#/";
    route();
  } catch (err) { $("login-error").textContent = err.message; }
});

$("logout").addEventListener("click", logout);

// ---- fleet overview --------------------------------------------------------------------------
function attentionOf(b) {
  const reasons = [];
  if (!b.ts || b.age_seconds > 600) reasons.push(`no reading for ${ago(b.ts).replace(" ago", "")}`);
  if (b.soc !== null && b.soc < 20) reasons.push(`SOC ${fmt(b.soc)} %`);
  if (b.temperature !== null && b.temperature >= 55) reasons.push(`temperature ${fmt(b.temperature)} °C`);
  const pending = pendingOf(b);
  if (pending && b.charging !== null) reasons.push(`device confirms ${switchesLabel(b.charging, b.discharging)}, asked: ${pending}`);
  return reasons;
}

function drawHistogram(batteries) {
  const bins = new Array(10).fill(0);
  for (const b of batteries) if (b.soc !== null) bins[Math.min(9, Math.floor(b.soc / 10))] += 1;
  const chart = $("soc-histogram");
  chart.replaceChildren();
  const top = Math.max(1, ...bins);
  bins.forEach((n, i) => {
    const h = (n / top) * 230;
    const x = 10 + i * 38;
    chart.append(svg("rect", { x, y: 265 - h, width: 32, height: h, fill: socColour(i * 10 + 5) }));
    const label = svg("text", { x: x + 16, y: 282, "text-anchor": "middle", "font-size": 10 });
    label.textContent = `${i * 10}–${i * 10 + 10}`;
    const count = svg("text", { x: x + 16, y: 260 - h, "text-anchor": "middle", "font-size": 11 });
    count.textContent = n ? String(n) : "";
    chart.append(label, count);
  });
}

// The positions are drawn on their own bounds (equirectangular, scaled by cos(latitude)):
// no map tiles are needed, so the map shows offline too.
function drawMap(collection) {
  const map = $("map");
  map.replaceChildren();
  const features = collection.features;
  $("map-note").textContent = `${features.length} with a position`;
  if (!features.length) return;
  const lons = features.map((f) => f.geometry.coordinates[0]);
  const lats = features.map((f) => f.geometry.coordinates[1]);
  let [w, e, s, n] = [Math.min(...lons), Math.max(...lons), Math.min(...lats), Math.max(...lats)];
  const pad = Math.max(0.005, (e - w) * 0.1, (n - s) * 0.1);
  [w, e, s, n] = [w - pad, e + pad, s - pad, n + pad];
  const k = Math.cos(((s + n) / 2) * Math.PI / 180);
  const scale = Math.min(380 / ((e - w) * k), 280 / (n - s));
  const dx = (380 - (e - w) * k * scale) / 2, dy = (280 - (n - s) * scale) / 2; // centred
  const x = (lon) => 10 + dx + (lon - w) * k * scale;
  const y = (lat) => 290 - dy - (lat - s) * scale;
  map.append(svg("rect", { x: x(w), y: y(n), width: x(e) - x(w), height: y(s) - y(n), fill: "#fbfcfd", stroke: "#d9dde5" }));
  const step = Math.pow(10, Math.floor(Math.log10(n - s)));
  for (let lat = Math.ceil(s / step) * step; lat < n; lat += step) {
    map.append(svg("line", { x1: x(w), x2: x(e), y1: y(lat), y2: y(lat), stroke: "#e3e6ec" }));
    const t = svg("text", { x: x(w) + 3, y: y(lat) - 2, "font-size": 9, fill: "#8a90a0" });
    t.textContent = `${lat.toFixed(3)}°`;
    map.append(t);
  }
  for (let lon = Math.ceil(w / step) * step; lon < e; lon += step) {
    map.append(svg("line", { y1: y(n), y2: y(s), x1: x(lon), x2: x(lon), stroke: "#e3e6ec" }));
  }
  for (const f of features) {
    const [lon, lat] = f.geometry.coordinates;
    const p = f.properties;
    const confirmed = switchesLabel(p.charging, p.discharging);
    const dot = svg("circle", {
      cx: x(lon), cy: y(lat), r: 6, fill: socColour(p.soc), "fill-opacity": p.online ? 0.9 : 0.35,
      stroke: DOT_STROKE[confirmed], "stroke-width": confirmed === "on" ? 1 : 2.5, class: "battery-dot",
    });
    if (pendingOf(p)) dot.setAttribute("stroke-dasharray", "3 2"); // asked, not confirmed yet
    const title = svg("title");
    title.textContent = `${p.serial_number}: SOC ${fmt(p.soc)} %, ${stateText(p)}, ${ago(p.last_seen)}`;
    dot.append(title);
    dot.addEventListener("click", () => { location.hash = `#/battery/${encodeURIComponent(p.serial_number)}`; });
    map.append(dot);
  }
}

async function refreshOverview() {
  const [batteries, positions] = await Promise.all([api("/api/telemetry/latest"), api("/api/telemetry/positions")]);
  const count = (pred) => batteries.filter(pred).length;
  $("count-online").textContent = count((b) => b.online);
  $("count-offline").textContent = count((b) => !b.online);
  $("count-disabled").textContent = count((b) => b.discharging === false);
  $("count-cut").textContent = `charging cut: ${count((b) => state(b) === "charging cut")} · pending: ${count((b) => pendingOf(b))}`;
  const attention = batteries.map((b) => [b, attentionOf(b)]).filter(([, r]) => r.length);
  $("count-attention").textContent = attention.length;
  $("attention").replaceChildren(
    ...(attention.length ? attention.slice(0, 50).map(([b, r]) => el("li", {}, el("a", { href: `#/battery/${encodeURIComponent(b.serial_number)}` }, b.serial_number), `: ${r.join(", ")}`))
      : [el("li", { className: "muted" }, "nothing: every battery reports recently and within range")]),
  );
  drawHistogram(batteries);
  drawMap(positions);
  $("fleet").tBodies[0].replaceChildren(...batteries.map((b) => {
    const row = el("tr", { className: "battery-row" },
      el("td", {}, b.serial_number), el("td", { className: STATE_CLASS[state(b)] }, stateText(b)), el("td", {}, fmt(b.soc)),
      el("td", {}, fmt(b.voltage, 2)), el("td", {}, fmt(b.current, 2)), el("td", {}, fmt(b.temperature)), el("td", {}, ago(b.ts)));
    row.dataset.serial = b.serial_number;
    row.addEventListener("click", () => { location.hash = `#/battery/${encodeURIComponent(b.serial_number)}`; });
    return row;
  }));
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

// ---- battery page ----------------------------------------------------------------------------
const SERIES_INTERVAL = { 1: null, 6: "1m", 24: "5m", 168: "1h", 720: "6h" };

function drawChart(canvas, points, field) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 44, B = 20;
  ctx.clearRect(0, 0, W, H);
  ctx.font = "11px system-ui, sans-serif";
  const data = points.filter((p) => p[field] !== null && p[field] !== undefined).map((p) => [Date.parse(p.ts), p[field]]);
  if (!data.length) { ctx.fillStyle = "#6b7385"; ctx.fillText("no readings in this range", L, H / 2); return; }
  const t0 = data[0][0], t1 = Math.max(data[data.length - 1][0], t0 + 1);
  let lo = Math.min(...data.map((d) => d[1])), hi = Math.max(...data.map((d) => d[1]));
  if (hi - lo < 1e-6) { lo -= 1; hi += 1; }
  const X = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - 8);
  const Y = (v) => 6 + (1 - (v - lo) / (hi - lo)) * (H - B - 12);
  ctx.strokeStyle = "#e3e6ec"; ctx.fillStyle = "#6b7385";
  for (const v of [lo, (lo + hi) / 2, hi]) {
    ctx.beginPath(); ctx.moveTo(L, Y(v)); ctx.lineTo(W, Y(v)); ctx.stroke();
    ctx.fillText(v.toFixed(1), 2, Y(v) + 4);
  }
  ctx.fillText(new Date(t0).toLocaleString(), L, H - 4);
  const end = new Date(t1).toLocaleString();
  ctx.fillText(end, W - ctx.measureText(end).width - 4, H - 4);
  ctx.strokeStyle = "#2457c5"; ctx.lineWidth = 1.5; ctx.beginPath();
  data.forEach(([t, v], i) => (i ? ctx.lineTo(X(t), Y(v)) : ctx.moveTo(X(t), Y(v))));
  ctx.stroke();
}

async function refreshSeries(serial) {
  const hours = Number($("range").value);
  const to = new Date(), from = new Date(to - hours * 3600e3);
  const params = new URLSearchParams({ from: from.toISOString(), to: to.toISOString() });
  const interval = SERIES_INTERVAL[hours];
  if (interval) params.set("interval", interval); else params.set("limit", "10000");
  const series = await api(`/api/telemetry/${encodeURIComponent(serial)}?${params}`);
  $("series-note").textContent = `${series.points.length} ${interval ? `buckets of ${series.interval} (${series.source})` : "readings"}`;
  for (const field of ["voltage", "current", "soc", "temperature"]) drawChart($(`chart-${field}`), series.points, field);
}

function progressText(c) {
  const steps = ["queued", "sent", "delivered", c.status === "succeeded" || !FINAL.has(c.status) ? "succeeded" : c.status];
  const reached = steps.indexOf(c.status);
  return `${c.action} command: ` + steps.map((s, i) => (i <= reached ? s : `(${s})`)).join(" → ");
}

async function refreshCommands(serial) {
  let commands;
  try { commands = await api(`/api/batteries/${encodeURIComponent(serial)}/commands?limit=20`); }
  catch (err) {
    if (err.status === 403) { $("control").hidden = true; $("commands").hidden = true; return; }
    throw err;
  }
  $("control").hidden = false; $("commands").hidden = false;
  $("commands").tBodies[0].replaceChildren(...commands.map((c) => el("tr", {},
    el("td", {}, new Date(c.created_at).toLocaleString()), el("td", {}, c.action),
    el("td", { className: `status-${c.status}` }, c.status), el("td", {}, c.reason), el("td", {}, c.finished_at ? new Date(c.finished_at).toLocaleTimeString() : ""))));
  const watched = watching && commands.find((c) => c.id === watching);
  if (watched) {
    $("progress").textContent = progressText(watched);
    $("progress").className = `status-${watched.status}`;
    if (FINAL.has(watched.status)) { watching = null; await refreshBatteryState(serial); }
  }
}

async function refreshBatteryState(serial) {
  const detail = await api(`/api/batteries/${encodeURIComponent(serial)}`);
  const c = detail.control || {}, pending = c.pending_command, b = detail.battery;
  // `status` is what the device confirmed; `in_sync` compares its switches with those asked for.
  const sync = c.in_sync ? "as asked"
    : pending ? `pending: ${pending.action} ${pending.spec} (${pending.status})`
    : c.reported?.enabled == null ? "device not reported" : `device differs from what was asked (${b.desired_status})`;
  $("battery-state").textContent = `${b.status} · ${sync}`;
}

async function refreshBattery(serial, withSeries) {
  $("battery-serial").textContent = serial;
  await Promise.all([refreshBatteryState(serial), refreshCommands(serial), withSeries ? refreshSeries(serial) : null]);
}

$("range").addEventListener("change", () => currentSerial() && refreshSeries(currentSerial()).catch(report));

$("control").addEventListener("submit", async (e) => {
  e.preventDefault();
  const serial = currentSerial();
  const action = e.submitter?.dataset.action || "deactivate";
  $("control-error").textContent = "";
  for (const b of $("control").querySelectorAll("button")) b.disabled = true;
  try {
    await api(`/api/batteries/${encodeURIComponent(serial)}/control`, { method: "POST", body: JSON.stringify({ action, reason: $("reason").value.trim() }) });
    const [newest] = await api(`/api/batteries/${encodeURIComponent(serial)}/commands?limit=1`);
    watching = newest?.id || null;
    await refreshBattery(serial, false);
  } catch (err) { $("control-error").textContent = err.message; }
  finally { for (const b of $("control").querySelectorAll("button")) b.disabled = false; }
});

// ---- routing and refresh ---------------------------------------------------------------------
function currentSerial() {
  const m = location.hash.match(/^#\/battery\/(.+)$/);
  return m ? decodeURIComponent(m[1]) : null;
}
function report(err) { console.error(err); $("updated").textContent = `refresh failed: ${err.message}`; }

async function tick(first) {
  const serial = currentSerial();
  try {
    if (serial) await refreshBattery(serial, first || !watching);
    else await refreshOverview();
  } catch (err) { report(err); }
}

function route() {
  clearInterval(timer);
  if (!token()) { show("login"); return; }
  const user = JSON.parse(sessionStorage.getItem("packfleet.user") || "{}");
  $("who").textContent = `${user.name || ""} (${user.role || ""})`;
  show(currentSerial() ? "battery" : "overview");
  if (!currentSerial()) { watching = null; $("progress").textContent = ""; }
  tick(true);
  // Progress of a command is polled every second, the rest every few seconds.
  timer = setInterval(() => tick(false), watching ? 1000 : REFRESH_MS);
}

// `up` prints a link with the demo admin's token in the fragment (never sent to a server): keep it
// for this tab and drop it from the address bar.
function adoptToken() {
  const m = location.hash.match(/^#token=([\w-]+\.[\w-]+\.[\w-]+)$/);
  if (!m) return;
  try {
    const claims = JSON.parse(atob(m[1].split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    sessionStorage.setItem("packfleet.token", m[1]);
    sessionStorage.setItem("packfleet.user", JSON.stringify({ name: claims.name, role: claims.role }));
  } catch (err) { console.error("not a token", err); }
  history.replaceState(null, "", location.pathname + "#/");
}

adoptToken();
window.addEventListener("hashchange", route);
setInterval(() => { if (watching && currentSerial()) refreshCommands(currentSerial()).catch(report); }, 1000);
route();
