"""The fleet page in a real browser (Debian's Chromium, driven by Playwright) against `packfleet up`:
log in by OTP, see the simulator's batteries, open a battery's charts, disable it and see the
command reach `succeeded`. Screenshots are saved where the test prints."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from packfleet.demo import ADMIN_PHONE
from tests.test_up import start_up

pytestmark = pytest.mark.browser
CHROMIUM = os.environ.get("PACKFLEET_CHROMIUM", "/usr/bin/chromium")


def _browser() -> object:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip(f"needs Chromium at {CHROMIUM}: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("needs the playwright package: pip install -e '.[browser]' (uses the system Chromium)")
    return sync_playwright


def _up(data_dir: Path, log: Path) -> tuple[subprocess.Popen[str], str]:
    proc, values, _ = start_up(data_dir, batteries=4, stderr=log.open("w"))
    return proc, values["PACKFLEET_API"]


def _otp(log: Path, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        codes = re.findall(r"login code is (\d{6})", log.read_text())
        if codes:
            return codes[-1]
        time.sleep(0.2)
    raise AssertionError("no login code in the log of packfleet up")


def test_log_in_see_the_fleet_open_a_chart_and_disable_a_battery(tmp_path: Path) -> None:
    sync_playwright = _browser()
    shots = Path(os.environ.get("PACKFLEET_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "up.log"
    proc, api = _up(tmp_path / "pf", log)
    try:
        with sync_playwright() as p:  # type: ignore[operator]
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"{api}/dashboard")
            page.fill("#phone", ADMIN_PHONE)
            page.select_option("#role", "admin")
            page.click("#send-otp")
            page.wait_for_selector("#login-otp:not([hidden])")
            page.fill("#otp", _otp(log))
            page.click("#verify-otp")

            page.wait_for_function(
                "document.querySelectorAll('#fleet tbody tr').length >= 4"
                " && [...document.querySelectorAll('#fleet tbody td.online')].length >= 4",
                timeout=20_000,
            )
            serials = page.locator("#fleet tbody tr td:first-child").all_inner_texts()
            assert {"DEMO0001", "DEMO0002", "DEMO0003", "DEMO0004"} <= set(serials)
            page.wait_for_function(
                "document.querySelectorAll('#map .battery-dot').length >= 4", timeout=15_000
            )
            overview = shots / "dashboard-fleet.png"
            page.screenshot(path=str(overview), full_page=True)
            print(f"\nscreenshot: {overview}")

            page.click("#fleet tbody tr[data-serial='DEMO0001']")
            page.wait_for_selector("#battery:not([hidden])")
            page.select_option("#range", "1")
            page.wait_for_function(
                "/^[1-9][0-9]* readings/.test(document.querySelector('#series-note').textContent)"
            )

            page.fill("#reason", "browser test: disable")
            page.click("#disable")
            page.wait_for_function(
                "document.querySelector('#progress').textContent.includes('succeeded')", timeout=30_000
            )
            assert "disable command" in page.inner_text("#progress")
            page.wait_for_selector("#commands tbody td.status-succeeded")
            page.wait_for_function(
                "document.querySelector('#battery-state').textContent.startsWith('inactive · as asked')"
            )
            battery = shots / "dashboard-battery.png"
            page.screenshot(path=str(battery), full_page=True)
            print(f"screenshot: {battery}")

            # A charging cut (the finance default) is not a disabled battery: it still discharges.
            cut = page.evaluate(
                """() => fetch('/api/battery_pack/DEMO0002/enable?wait=10', {method: 'POST',
                     headers: {'Content-Type': 'application/json',
                               Authorization: 'Bearer ' + sessionStorage.getItem('packfleet.token')},
                     body: JSON.stringify({operation_type: 'disable', operation_specifications: 'charging',
                                           reason: 'browser test: charging cut'})}).then((r) => r.status)"""
            )
            assert cut == 200
            page.evaluate("location.hash = '#/'")
            row = "#fleet tbody tr[data-serial='{}'] td:nth-child(2)"
            page.wait_for_function(
                f"document.querySelector(\"{row.format('DEMO0001')}\")?.textContent === 'disabled'"
                f" && document.querySelector(\"{row.format('DEMO0002')}\")?.textContent === 'charging cut'",
                timeout=15_000,
            )
            assert page.inner_text("#count-disabled") == "1"
            assert page.inner_text("#count-cut").startswith("charging cut: 1")
            states = shots / "dashboard-states.png"
            page.screenshot(path=str(states), full_page=True)
            print(f"screenshot: {states}")
            browser.close()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
