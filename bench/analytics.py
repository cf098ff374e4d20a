"""Analytics and the battery-health job at the issue's scale.

    python bench/analytics.py                        # a dealer with 10,000 batteries, 10,000 loans,
                                                     # 5,000 tickets; the health job on 1,000 x 7 days
    python bench/analytics.py --batteries 500 --loans 500 --tickets 300 --health-batteries 20 \\
        --health-days 2 --samples 20                 # a small run

It creates a database of its own, migrates it, and builds in SQL (set-based, a few seconds) one
dealer with `--batteries` batteries (each its consumer's), `--history-days` of daily health history
each, `--tickets` service tickets over the last year among 50 technicians, and `--loans` loans (12
monthly interest-free EMIs each, started over the last year, most due EMIs paid, some late) plus a
fifth as many undecided or rejected applications; half the loans are a lender's. Then:
  1. p50/p99 through the API (in process, FastAPI and JSON included, no network) of each analytics
     endpoint and of tickets/active, as the dealer, against the issue's 100 ms p99;
  2. the health job (api/analytics/health.py) on `--health-batteries` of them with `--health-days`
     of one-minute readings (binary COPY, SOC swings consistent with the current, capacities between
     75 and 100 % of nominal): its first run, and an incremental run after one more hour.
Progress goes to stderr; the last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [str(REPO), *[p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]]

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psycopg  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from api.analytics import health  # noqa: E402
from api.app import create_app  # noqa: E402
from packfleet.db import open_pool  # noqa: E402
from tests import services  # noqa: E402
from tests.conftest import make_settings, token_for  # noqa: E402

TARGET_P99_MS = 100
ENDPOINTS = (
    "/api/analytics/dealer-dashboard",
    "/api/analytics/nbfc-portfolio",
    "/api/analytics/collection-report",
    "/api/analytics/battery-health",
    "/api/analytics/service-metrics",
    "/api/service/tickets/active",
)
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
CAPACITY_AH = 48.0
ROW = np.dtype(
    [("n", ">i2")]
    + [
        item
        for name, kind in [
            ("battery_id", ">i8"),
            ("ts", ">i8"),
            ("voltage", ">f4"),
            ("current", ">f4"),
            ("soc", ">f4"),
            ("temperature", ">f4"),
        ]
        for item in ((f"{name}_len", ">i4"), (name, kind))
    ]
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


FIXTURE = """
INSERT INTO dealers (name) VALUES ('Bench Motors'), ('Other Motors');
INSERT INTO nbfc_lenders (code, name, webhook_secret) VALUES ('BENCH', 'Bench Finance', repeat('s', 32));
INSERT INTO users (phone, name, role, dealer_id)
    SELECT '+919811111111', 'Bench Dealer', 'dealer', min(id) FROM dealers;
INSERT INTO consumers (dealer_id, name, phone, kyc_status)
    SELECT (SELECT min(id) FROM dealers), 'Consumer ' || g, '+9170' || lpad(g::text, 8, '0'),
           (ARRAY['verified', 'verified', 'pending', 'rejected'])[1 + g %% 4]
    FROM generate_series(1, %(batteries)s) g;
INSERT INTO batteries (serial_number, dealer_id, owner_id, status, health_score, model, cell_chemistry,
                       nominal_voltage, nominal_capacity)
    SELECT 'BENCH' || lpad(c.rn::text, 6, '0'), c.dealer_id, c.id,
           CASE WHEN c.rn %% 20 = 0 THEN 'maintenance' WHEN c.rn %% 50 = 0 THEN 'inactive' ELSE 'active' END,
           round((40 + random() * 60)::numeric, 1), 'Irasus 48V48', 'Li-NMC', '48 V', '48 Ah'
    FROM (SELECT id, dealer_id, row_number() OVER (ORDER BY id) AS rn FROM consumers) c;
INSERT INTO battery_health_state (battery_id, processed_until, health, days_to_service, anomalies, updated_at)
    SELECT id, now(), health_score, CASE WHEN id %% 3 = 0 THEN random() * 400 END,
           CASE WHEN id %% 97 = 0 THEN ARRAY['over_temperature'] ELSE '{}' END, now()
    FROM batteries;
ALTER TABLE battery_health_history DISABLE TRIGGER battery_health_history_monthly;
INSERT INTO battery_health_history (battery_id, day, dealer_key, health)
    SELECT b.id, current_date - d, b.dealer_id, least(100, b.health_score + d * 0.02)
    FROM batteries b, generate_series(0, %(history_days)s - 1) d;
INSERT INTO battery_health_monthly (dealer_key, month, health_sum, days)
    SELECT dealer_key, date_trunc('month', day)::date, sum(health), count(*)
    FROM battery_health_history GROUP BY 1, 2;
ALTER TABLE battery_health_history ENABLE TRIGGER battery_health_history_monthly;
INSERT INTO users (phone, name, role) SELECT '+9180' || lpad(g::text, 8, '0'), 'Tech ' || g, 'technician'
    FROM generate_series(1, 50) g;
INSERT INTO technicians (user_id, skills, rating, experience_years, location, latitude, longitude)
    SELECT id, ARRAY['battery_maintenance', 'electrical'], 3 + (id %% 20) / 10.0, id %% 12, 'Bengaluru',
           12.9 + (id %% 10) / 100.0, 77.5 + (id %% 7) / 100.0
    FROM users WHERE role = 'technician';
INSERT INTO service_tickets (battery_id, dealer_id, consumer_id, issue_category, description, status,
                             assigned_to, priority, created_at, sla_due_at, resolved_at, customer_rating)
    SELECT b.id, b.dealer_id, b.owner_id,
           (ARRAY['performance', 'charging', 'mechanical', 'electrical', 'other'])[1 + g %% 5], 'bench',
           s.status,
           CASE WHEN s.status <> 'open'
                THEN (SELECT min(id) FROM users WHERE role = 'technician') + g %% 50 END,
           (ARRAY['low', 'medium', 'high', 'critical'])[1 + g %% 4], o.opened, o.opened + interval '3 days',
           CASE WHEN s.status IN ('resolved', 'closed') THEN o.opened + random() * interval '6 days' END,
           CASE WHEN s.status = 'closed' THEN 1 + g %% 5 END
    FROM generate_series(1, %(tickets)s) g
    JOIN batteries b ON b.serial_number = 'BENCH' || lpad((1 + g %% %(batteries)s)::text, 6, '0')
    CROSS JOIN LATERAL (SELECT now() - (random() + g * 0) * interval '365 days' AS opened) o
    CROSS JOIN LATERAL (SELECT CASE WHEN g %% 20 < 2 THEN 'open' WHEN g %% 20 < 5 THEN 'assigned'
                                    WHEN g %% 20 < 7 THEN 'in_progress' WHEN g %% 20 < 15 THEN 'resolved'
                                    ELSE 'closed' END AS status) s;
INSERT INTO finance_applications (dealer_id, consumer_id, battery_id, amount, tenure_months, interest_rate,
                                  status, nbfc_id, approved_amount, decided_at, disbursement_date, created_by,
                                  created_at)
    SELECT b.dealer_id, b.owner_id, b.id, 1200 * (10 + g %% 40), 12, 0,
           CASE WHEN g > %(loans)s THEN (ARRAY['pending', 'rejected'])[1 + g %% 2]
                WHEN g %% 5 = 0 THEN 'approved' ELSE 'disbursed' END,
           CASE WHEN g %% 2 = 0 THEN (SELECT id FROM nbfc_lenders) END,
           CASE WHEN g <= %(loans)s THEN 1200 * (10 + g %% 40) END,
           CASE WHEN g <= %(loans)s THEN o.opened + interval '2 days' END,
           CASE WHEN g <= %(loans)s AND g %% 5 <> 0 THEN (o.opened + interval '3 days')::date END,
           'bench', o.opened
    FROM generate_series(1, %(loans)s + %(loans)s / 5) g
    JOIN batteries b ON b.serial_number = 'BENCH' || lpad((1 + (g - 1) %% %(batteries)s)::text, 6, '0')
    CROSS JOIN LATERAL (SELECT now() - (random() + g * 0) * interval '365 days' AS opened) o;
INSERT INTO loans (application_id, dealer_id, consumer_id, battery_id, nbfc_id, principal, interest_rate,
                   tenure_months, emi, schedule_start, disbursement_date, created_at)
    SELECT id, dealer_id, consumer_id, battery_id, nbfc_id, approved_amount, 0, 12, approved_amount / 12,
           (decided_at)::date, disbursement_date, decided_at
    FROM finance_applications WHERE status IN ('approved', 'disbursed');
INSERT INTO loan_instalments (loan_id, emi_number, due_date, principal, interest)
    SELECT l.id, k, (l.schedule_start + make_interval(months => k))::date, l.emi, 0
    FROM loans l, generate_series(1, 12) k;
-- Most EMIs already due are paid, some late; one payment each, allocated to its EMI.
CREATE TEMPORARY TABLE bench_paid AS
    SELECT li.id AS instalment_id, li.loan_id, li.principal AS amount,
           li.due_date + (CASE WHEN li.id %% 7 = 0 THEN 12 ELSE 0 END) AS paid_on
    FROM loan_instalments li
    WHERE li.due_date + (CASE WHEN li.id %% 7 = 0 THEN 12 ELSE 0 END) <= current_date AND li.id %% 11 <> 0;
INSERT INTO loan_payments (loan_id, dealer_id, reference, amount, paid_on, method, recorded_by)
    SELECT p.loan_id, l.dealer_id, 'P' || p.instalment_id, p.amount, p.paid_on, 'upi', 'bench'
    FROM bench_paid p JOIN loans l ON l.id = p.loan_id;
INSERT INTO payment_allocations (payment_id, instalment_id, principal)
    SELECT lp.id, p.instalment_id, p.amount FROM bench_paid p
    JOIN loan_payments lp ON lp.reference = 'P' || p.instalment_id;
UPDATE loan_instalments li SET principal_paid = li.principal, paid_at = p.paid_on
    FROM bench_paid p WHERE p.instalment_id = li.id;
"""


def build(url: str, opts: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    with psycopg.connect(url, row_factory=dict_row) as conn:
        params = {
            "batteries": opts.batteries,
            "tickets": opts.tickets,
            "loans": opts.loans,
            "history_days": opts.history_days,
        }
        for statement in FIXTURE.split(";\n"):
            if statement.strip():
                conn.execute(statement, params)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")  # the fixture's writes flushed before anything is timed
        counts = conn.execute(
            """SELECT (SELECT count(*) FROM batteries) AS batteries, (SELECT count(*) FROM loans) AS loans,
                      (SELECT count(*) FROM loan_instalments) AS instalments,
                      (SELECT count(*) FROM loan_payments) AS payments,
                      (SELECT count(*) FROM service_tickets) AS tickets,
                      (SELECT count(*) FROM battery_health_history) AS health_history_rows"""
        ).fetchone()
    log(f"fixture built in {time.monotonic() - started:.1f} s: {counts}")
    return {**counts, "fixture_s": round(time.monotonic() - started, 1)}


async def measure_endpoints(url: str, samples: int) -> dict[str, Any]:
    app = create_app(make_settings(url, rate_limit_api="10000000/minute", db_pool_max=4))
    with psycopg.connect(url, row_factory=dict_row) as conn:
        dealer = conn.execute("SELECT * FROM users WHERE phone = '+919811111111'").fetchone()
    headers = {"Authorization": f"Bearer {token_for(dealer)}"}
    out: dict[str, Any] = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", headers=headers) as client:
            for path in ENDPOINTS:
                timings = []
                for n in range(samples + 3):
                    started = time.perf_counter()
                    answer = await client.get(path)
                    elapsed = (time.perf_counter() - started) * 1000
                    assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text[:300]}"
                    if n >= 3:  # the first few warm caches and the pool
                        timings.append(elapsed)
                timings.sort()
                p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
                name = path.rsplit("/", 1)[-1].replace("-", "_")
                out[name] = {
                    "p50_ms": round(statistics.median(timings), 2),
                    "p99_ms": round(p99, 2),
                    "meets_target": p99 <= TARGET_P99_MS,
                }
                log(f"{path}: p50 {out[name]['p50_ms']} ms, p99 {out[name]['p99_ms']} ms")
    return out


def readings(
    ids: np.ndarray, capacity: np.ndarray, start: datetime, count: int, rng: np.random.Generator
) -> bytes:
    """One-minute readings: SOC swinging 15-95 % every 6 h, the current that moves it for each pack's
    true capacity, the voltage answering the current through 60 mΩ."""
    n, period = len(ids) * count, 6 * 3600.0
    rows = np.zeros(n, dtype=ROW)
    rows["n"] = 6
    rows["battery_id_len"] = rows["ts_len"] = 8
    for name in ("voltage", "current", "soc", "temperature"):
        rows[f"{name}_len"] = 4
    t = np.tile(np.arange(count) * 60.0, len(ids)) + (start - PG_EPOCH).total_seconds()
    phase = 2 * np.pi * (t / period + np.repeat(ids * 0.618 % 1.0, count))  # each pack its own phase
    soc = 55 + 40 * np.cos(phase)
    amps = np.repeat(capacity, count) * 40 * np.sin(phase) * 2 * np.pi / period / 100 * 3600
    rows["battery_id"] = np.repeat(ids, count)
    rows["ts"] = (t * 1e6).astype(np.int64)
    rows["soc"] = np.round(soc, 1)
    rows["current"] = np.round(amps + rng.normal(0, 0.5, n), 2)
    rows["voltage"] = np.round(39 + soc * 0.14 - amps * 0.06, 2)
    rows["temperature"] = np.round(28 + 4 * np.abs(np.sin(phase)), 1)
    return rows.tobytes()


def store(url: str, ids: np.ndarray, capacity: np.ndarray, start: datetime, minutes: int) -> int:
    rng = np.random.default_rng(7)
    with psycopg.connect(url) as conn:
        per_copy = max(1, 200_000 // minutes)
        for k in range(0, len(ids), per_copy):
            chunk = ids[k : k + per_copy]
            data = readings(chunk, capacity[k : k + per_copy], start, minutes, rng)
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY telemetry (battery_id, ts, voltage, current, soc, temperature)"
                    " FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.write(b"PGCOPY\n\xff\r\n\0" + b"\0" * 8)
                copy.write(data)
                copy.write(b"\xff\xff")
        conn.execute(
            """INSERT INTO battery_latest (battery_id, ts, voltage, current, soc)
               SELECT id, %s, 50, 0, 50 FROM unnest(%s::bigint[]) AS id
               ON CONFLICT (battery_id) DO UPDATE SET ts = EXCLUDED.ts""",
            (start + timedelta(minutes=minutes - 1), ids.tolist()),
        )
        conn.commit()
    return len(ids) * minutes


def measure_health_job(url: str, opts: argparse.Namespace) -> dict[str, Any]:
    with psycopg.connect(url) as conn:  # these batteries' telemetry is new to the job
        picked = conn.execute("SELECT id FROM batteries ORDER BY id LIMIT %s", (opts.health_batteries,))
        ids = np.array([r[0] for r in picked])
        conn.execute("DELETE FROM battery_health_state WHERE battery_id = ANY(%s)", (ids.tolist(),))
    capacity = CAPACITY_AH * np.random.default_rng(3).uniform(0.75, 1.0, len(ids))
    minutes = opts.health_days * 1440
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    started = time.monotonic()
    loaded = store(url, ids, capacity, end - timedelta(minutes=minutes), minutes)
    log(f"{loaded:,} readings stored in {time.monotonic() - started:.1f} s")
    settings = make_settings(url)

    async def run() -> tuple[dict[str, Any], float]:
        async with open_pool(url, name="bench-health", max_size=4) as pool:
            began = time.monotonic()
            result = await health.run(pool, settings)
            return result, time.monotonic() - began

    first, first_s = asyncio.run(run())
    log(f"health job, first run: {first_s:.1f} s ({first})")
    store(url, ids, capacity, end, 60)
    incremental, incremental_s = asyncio.run(run())
    log(f"health job, one more hour: {incremental_s:.2f} s ({incremental})")
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT battery_id, health::float8 FROM battery_health_state WHERE battery_id = ANY(%s)",
            (ids.tolist(),),
        ).fetchall()
    found = dict(rows)
    errors = [
        abs(found[i] - 100 * c / CAPACITY_AH)
        for i, c in zip(ids.tolist(), capacity, strict=True)
        if found.get(i)
    ]
    return {
        "batteries": len(ids),
        "days": opts.health_days,
        "readings": loaded,
        "first_run_s": round(first_s, 2),
        "incremental_hour_s": round(incremental_s, 2),
        "estimated": len(errors),
        "max_error_points": round(max(errors), 2) if errors else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batteries", type=int, default=10_000)
    parser.add_argument("--loans", type=int, default=10_000)
    parser.add_argument("--tickets", type=int, default=5_000)
    parser.add_argument("--history-days", type=int, default=365, help="daily health rows per battery")
    parser.add_argument("--health-batteries", type=int, default=1_000)
    parser.add_argument("--health-days", type=int, default=7)
    parser.add_argument("--samples", type=int, default=200, help="requests per endpoint measured")
    parser.add_argument(
        "--admin-url", default=None, help="server to create the database on (default: the tests')"
    )
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    opts = parser.parse_args()
    if opts.loans > opts.batteries or opts.health_batteries > opts.batteries:
        parser.error("a loan and a health-job battery each need a battery of their own")
    admin = opts.admin_url or services.admin_url()
    url = services.create_database(admin)
    log(f"database {url}")
    try:
        fixture = build(url, opts)
        endpoints = asyncio.run(measure_endpoints(url, opts.samples))
        job = measure_health_job(url, opts)
        result = {
            "bench": "analytics",
            "fixture": fixture,
            "endpoints": endpoints,
            "target_p99_ms": TARGET_P99_MS,
            "all_targets_met": all(e["meets_target"] for e in endpoints.values()),
            "health_job": job,
        }
    finally:
        if not opts.keep:
            services.drop_database(admin, url)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
