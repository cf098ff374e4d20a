"""The finance workload of the chaos run (issue 11): loans falling overdue and being auto-disabled
during each fault, and payments recorded through the API while it is being killed.

Some of the simulated batteries (`Finance.serials`) are sold on loans and left out of the run's
bulk roll-outs. Before each fault a slice of those loans is moved into the past (overdue beyond
the threshold) and `POST /api/finance/auto-disable` is called while the fault happens, retried
until the API answers; a payment on another loan is sent meanwhile and retried with the same
reference until it gets a definitive answer. Once settled: every overdue battery has one open
auto-disable and its device really stopped charging, and every reference is one payment.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx

from tests import factories
from tests.api.finance.conftest import backdate, today

if TYPE_CHECKING:
    from tests.chaos.stack import Stack


# The batteries among these serials with no open auto-disable.
NOT_DISABLED = """
    SELECT b.serial_number FROM batteries b WHERE b.serial_number = ANY(%s) AND NOT EXISTS (
        SELECT 1 FROM overdue_disables d WHERE d.battery_id = b.id AND d.released_at IS NULL)
"""


class Finance:
    def __init__(self, stack: Stack, serials: list[str]) -> None:
        self.stack = stack
        self.serials = serials
        self.loans: dict[str, int] = {}  # serial -> loan id
        self.overdue: list[str] = []  # serials made overdue so far
        self.references: list[tuple[int, str]] = []  # (loan id, reference) sent
        self._threads: list[threading.Thread] = []

    def open_loans(self) -> None:
        """A consumer and an approved loan for each finance battery, through the API."""
        dealer = self.stack.users["dealer"]
        with self.stack.db() as conn, self.stack.http("dealer") as api, self.stack.http("admin") as admin:
            for serial in self.serials:
                consumer = factories.consumer(conn, dealer["dealer_id"], f"Rider {serial}")
                battery = conn.execute(
                    "UPDATE batteries SET owner_id = %s WHERE serial_number = %s RETURNING id",
                    (consumer["id"], serial),
                ).fetchone()
                applied = api.post(
                    "/api/finance/applications",
                    json={
                        "consumer_id": consumer["id"],
                        "battery_id": battery["id"],
                        "amount": 45000,
                        "tenure_months": 24,
                        "interest_rate": 12.5,
                    },
                )
                assert applied.status_code == 201, applied.text
                approved = admin.put(
                    f"/api/finance/applications/{applied.json()['id']}/approve", json={"status": "approved"}
                )
                assert approved.status_code == 200, approved.text
                self.loans[serial] = approved.json()["loan_id"]

    def during(self, phase: int) -> None:
        """Before a fault: the next loans fall overdue; the auto-disable and a payment run meanwhile."""
        fresh = [s for s in self.serials if s not in self.overdue]
        if not fresh:
            return
        slice_ = fresh[: max(1, len(self.serials) // 10)]
        with self.stack.db() as conn:
            for serial in slice_:
                backdate(conn, self.loans[serial], today() - timedelta(days=40))
        self.overdue += slice_
        payer = fresh[-1]
        reference = f"CHAOS-{phase}-{payer}"
        self.references.append((self.loans[payer], reference))
        self._threads = [
            threading.Thread(target=self._until_answered, args=("/api/finance/auto-disable", {}, "admin")),
            threading.Thread(
                target=self._until_answered,
                args=(
                    f"/api/finance/loans/{self.loans[payer]}/payments",
                    {"reference": reference, "amount": "500.00"},
                    "dealer",
                ),
            ),
        ]
        for thread in self._threads:
            thread.start()

    def _until_answered(self, path: str, body: dict[str, Any], role: str, within_s: float = 240) -> None:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            try:
                with self.stack.http(role, timeout=30) as api:
                    answer = api.post(path, json=body)
                if answer.status_code < 500:
                    if path.endswith("auto-disable"):
                        continue_after = answer.json().get("disabled_count", 0) == 0 and self._waiting()
                        if continue_after:
                            time.sleep(1)  # warned first: the disable comes on a later run
                            continue
                    return
            except httpx.HTTPError:
                pass  # the API is down or was killed mid-request: the same request again
            time.sleep(0.5)

    def _waiting(self) -> bool:
        """Overdue batteries without their auto-disable yet."""
        with self.stack.db() as conn:
            return bool(conn.execute(NOT_DISABLED, (self.overdue,)).fetchall())

    def settle(self) -> None:
        for thread in self._threads:
            thread.join(300)

    def check(self, devices: dict[str, Any]) -> list[str]:
        problems = []
        with self.stack.db() as conn:
            missing = conn.execute(NOT_DISABLED, (self.overdue,)).fetchall()
            if missing:
                problems.append(
                    f"overdue batteries never auto-disabled: {[r['serial_number'] for r in missing][:5]}"
                )
            still_charging = [
                s
                for s in self.overdue
                if devices[s]["spec"] not in ("charging", "both") or devices[s]["enabled"]
            ]
            if still_charging:
                problems.append(f"auto-disabled batteries whose device still charges: {still_charging[:5]}")
            for loan_id, reference in self.references:
                row = conn.execute(
                    "SELECT count(*) AS n FROM loan_payments WHERE loan_id = %s AND reference = %s",
                    (loan_id, reference),
                ).fetchone()
                if row["n"] != 1:
                    problems.append(f"payment {reference} recorded {row['n']} times")
        return problems
