"""Benchmark of the money path on the real PostgreSQL.

On a fresh database with L loans of 12 EMIs for D dealers (O of them an EMI 15 days overdue, the
rest an EMI due today):

1. The overdue auto-disable: a run that warns (timed too), the warning days pass, then the run
   that disables (through control's rate-limited roll-out, SMS queued, audit trail), timed until
   its transaction committed, i.e. until every command is queued (target ≤ 5 s for 10,000 loans,
   2,000 overdue); then run again, which must issue nothing.
2. `GET /api/finance/overdue` and `GET /api/finance/collection-report` for one dealer through the
   API (`packfleet api`, its own process): p50 / p99 of sequential requests (target p99 ≤ 50 ms).
3. Payments recorded with allocation (`api.finance.payments.record_payment`, the endpoint's use
   case) by C concurrent connections, each an EMI paying the instalment due today: per second
   (target ≥ 500/s).

The last line printed is one JSON object.

    python bench/finance.py                                    # 10,000 loans, 2,000 overdue, 20 dealers
    python bench/finance.py --loans 1000 --overdue 200 --dealers 4 --payments 300 --queries 50   # small
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from api.auth.tokens import Principal, issue_token  # noqa: E402
from api.finance import overdue, payments  # noqa: E402
from api.finance.access import Scope  # noqa: E402
from api.finance.loans import business_today  # noqa: E402
from api.finance.models import PaymentCreate  # noqa: E402
from api.finance.schedule import add_months, schedule  # noqa: E402
from packfleet.migrate import migrate  # noqa: E402
from packfleet.settings import Settings  # noqa: E402
from tests.services import free_port, wait_for_port, with_database  # noqa: E402

PRINCIPAL, RATE, TENURE = Decimal("24000.00"), Decimal("12.00"), 12
TARGETS = {
    "auto_disable_s": 5.0,
    "overdue_list_p99_ms": 50.0,
    "collection_report_p99_ms": 50.0,
    "payments_per_s": 500.0,
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def seed(url: str, *, loans: int, overdue_loans: int, dealers: int, today: date) -> dict[str, Any]:
    """Dealers, one consumer and battery per loan, approved applications, loans and their EMIs."""
    overdue_start = add_months(today - timedelta(days=15), -1)  # first EMI 15 days overdue
    due_start = add_months(today, -1)  # first EMI due today
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        tag = uuid.uuid4().hex[:6].upper()
        dealer_ids = [
            conn.execute(
                "INSERT INTO dealers (name) VALUES (%s) RETURNING id", (f"Bench Motors {d}",)
            ).fetchone()["id"]
            for d in range(dealers)
        ]
        conn.execute(
            """INSERT INTO consumers (dealer_id, name, phone)
               SELECT (%(dealers)s::bigint[])[1 + (g - 1) %% %(n)s], 'Consumer ' || g,
                      '+9170' || lpad(g::text, 8, '0')
               FROM generate_series(1, %(loans)s) g""",
            {"dealers": dealer_ids, "n": dealers, "loans": loans},
        )
        conn.execute(
            """INSERT INTO batteries (serial_number, dealer_id, owner_id)
               SELECT %(tag)s || lpad(row_number() OVER (ORDER BY c.id)::text, 6, '0'), c.dealer_id, c.id
               FROM consumers c ORDER BY c.id""",
            {"tag": f"BF{tag}"},
        )
        conn.execute(
            """INSERT INTO finance_applications (dealer_id, consumer_id, battery_id, amount, tenure_months,
                   interest_rate, status, approved_amount, decided_by, decided_at, created_by, created_at)
               SELECT b.dealer_id, b.owner_id, b.id, %(p)s, %(n)s, %(r)s, 'approved', %(p)s, 'bench', now(),
                      'bench', now() - interval '60 days'
               FROM batteries b ORDER BY b.id""",
            {"p": PRINCIPAL, "n": TENURE, "r": RATE},
        )
        starts = {True: overdue_start, False: due_start}
        rows = {late: schedule(PRINCIPAL, RATE, TENURE, start) for late, start in starts.items()}
        conn.execute(
            """INSERT INTO loans (application_id, dealer_id, consumer_id, battery_id, principal,
                   interest_rate,
                   tenure_months, emi, schedule_start, created_at)
               SELECT a.id, a.dealer_id, a.consumer_id, a.battery_id, a.amount, a.interest_rate,
                      a.tenure_months,
                      %(emi)s, CASE WHEN row_number() OVER (ORDER BY a.id) %% %(every)s = 0
                                    THEN %(late)s::date ELSE %(due)s::date END, now() - interval '60 days'
               FROM finance_applications a ORDER BY a.id""",
            {
                "emi": rows[False][0].amount,
                "every": max(1, loans // max(overdue_loans, 1)),
                "late": overdue_start,
                "due": due_start,
            },
        )
        loan_rows = conn.execute("SELECT id, schedule_start, dealer_id FROM loans ORDER BY id").fetchall()
        buffer = io.StringIO()
        for loan in loan_rows:
            for inst in rows[loan["schedule_start"] == overdue_start]:
                buffer.write(
                    f"{loan['id']}\t{inst.emi_number}\t{inst.due_date}\t{inst.principal}\t{inst.interest}\n"
                )
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY loan_instalments (loan_id, emi_number, due_date, principal, interest) FROM STDIN"
            ) as copy,
        ):
            copy.write(buffer.getvalue())
        conn.execute("ANALYZE")
        late = [r["id"] for r in loan_rows if r["schedule_start"] == overdue_start]
        due = [r for r in loan_rows if r["schedule_start"] == due_start]
        user = conn.execute(
            "INSERT INTO users (phone, name, role, dealer_id) "
            "VALUES ('+919990000001', 'Bench Dealer', 'dealer', %s) "
            "RETURNING *",
            (dealer_ids[0],),
        ).fetchone()
    return {"overdue": late, "due": due, "dealer_user": user, "emi": rows[False][0].amount}


async def auto_disable(url: str, settings: Settings) -> tuple[float, dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        started = time.perf_counter()
        result = await overdue.run(conn, settings=settings, scope=Scope(), threshold_days=7, actor="bench")
        return time.perf_counter() - started, result


def timed_gets(api: str, token: str, path: str, count: int) -> dict[str, float]:
    with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        for _ in range(5):  # warm up the process and its pool
            client.get(path).raise_for_status()
        times = []
        for _ in range(count):
            started = time.perf_counter()
            answer = client.get(path)
            times.append((time.perf_counter() - started) * 1000)
            answer.raise_for_status()
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p99_ms": round(times[int(0.99 * (len(times) - 1))], 2),
    }


async def pay(
    url: str, settings: Settings, loans: list[dict[str, Any]], emi: Decimal, concurrency: int
) -> float:
    """Each worker pays its share of the loans' EMIs through the payment use case; payments/s."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for loan in loans:
        queue.put_nowait(loan)

    async def worker() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
            await conn.execute("SET TIME ZONE 'UTC'")
            while not queue.empty():
                loan = queue.get_nowait()
                principal = Principal(user_id=1, role="admin")
                body = PaymentCreate(reference=f"B-{loan['id']}", amount=emi, method="upi")
                _, created = await payments.record_payment(
                    conn, principal=principal, settings=settings, loan_id=loan["id"], body=body
                )
                assert created

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(loans) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loans", type=int, default=10_000)
    parser.add_argument("--overdue", type=int, default=2_000, help="loans with an EMI 15 days overdue")
    parser.add_argument("--dealers", type=int, default=20)
    parser.add_argument(
        "--payments", type=int, default=5_000, help="EMI payments recorded (≤ loans - overdue)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="connections recording payments")
    parser.add_argument("--queries", type=int, default=500, help="sequential requests per report")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("PACKFLEET_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()
    if not 0 < args.overdue <= args.loans or args.payments > args.loans - args.overdue:
        parser.error("need 0 < overdue ≤ loans and payments ≤ loans - overdue")

    name = f"packfleet_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(args.admin_url, name)
    jwt_secret = secrets.token_urlsafe(32)
    settings = Settings(
        database_url=url,
        jwt_secret=jwt_secret,
        log_json=False,
        command_bulk_rate_per_s=5000,
    )
    api_proc: subprocess.Popen[bytes] | None = None
    try:
        migrate(url)
        today = business_today(settings)
        started = time.perf_counter()
        world = seed(url, loans=args.loans, overdue_loans=args.overdue, dealers=args.dealers, today=today)
        log(
            f"seeded {args.loans} loans ({len(world['overdue'])} overdue) "
            f"in {time.perf_counter() - started:.1f}s"
        )

        # The consumers are warned by a run of an earlier day (it disables nothing: the warning comes
        # finance_warning_days before the disable); then those days pass.
        warn_s, warn_run = asyncio.run(auto_disable(url, settings))
        log(f"warning run: {warn_run['warned_count']} warned in {warn_s:.2f}s")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "UPDATE overdue_warnings SET warned_at = warned_at - make_interval(days => %s), "
                "disable_from = disable_from - %s",
                (settings.finance_warning_days, settings.finance_warning_days),
            )
        run_s, result = asyncio.run(auto_disable(url, settings))
        with psycopg.connect(url) as conn:
            queued = conn.execute("SELECT count(*) FROM commands WHERE reason = 'emi_overdue'").fetchone()[0]
        log(
            f"auto-disable: {result['disabled_count']} disabled, "
            f"{result['warned_count']} warned in {run_s:.2f}s"
        )
        again_s, again = asyncio.run(auto_disable(url, settings))
        log(f"second run: {again['disabled_count']} disabled in {again_s:.2f}s")

        paid = world["due"][: args.payments]
        per_s = asyncio.run(pay(url, settings, paid, world["emi"], args.concurrency)) if paid else 0.0
        log(f"payments: {len(paid)} at {per_s:.0f}/s")

        port = free_port()
        env = {
            **os.environ,
            "PACKFLEET_DATABASE_URL": url,
            "PACKFLEET_JWT_SECRET": jwt_secret,
            "PACKFLEET_RATE_LIMIT_API": "1000000/minute",
            "PACKFLEET_LOG_LEVEL": "WARNING",
        }
        api_log = open(Path(tempfile.gettempdir()) / f"{name}-api.log", "w")
        api_proc = subprocess.Popen(
            [sys.executable, "-m", "packfleet", "api", "--port", str(port)],
            env=env,
            stdout=api_log,
            stderr=api_log,
        )
        wait_for_port(port, timeout=30)
        token = issue_token(world["dealer_user"], secret=jwt_secret, ttl=timedelta(hours=1))
        api = f"http://127.0.0.1:{port}"
        overdue_list = timed_gets(api, token, "/api/finance/overdue", args.queries)
        report = timed_gets(api, token, "/api/finance/collection-report", args.queries)
        log(f"overdue list {overdue_list}, collection report {report}")
        figures = {
            "loans": args.loans,
            "overdue_loans": len(world["overdue"]),
            "dealers": args.dealers,
            "auto_disable_s": round(run_s, 3),
            "disabled": result["disabled_count"],
            "commands_queued": queued,
            "warned": warn_run["warned_count"],
            "warning_run_s": round(warn_s, 3),
            "second_run_s": round(again_s, 3),
            "second_run_disabled": again["disabled_count"],
            "overdue_list_p50_ms": overdue_list["p50_ms"],
            "overdue_list_p99_ms": overdue_list["p99_ms"],
            "collection_report_p50_ms": report["p50_ms"],
            "collection_report_p99_ms": report["p99_ms"],
            "payments": len(paid),
            "payments_per_s": round(per_s, 1),
            "payment_concurrency": args.concurrency,
        }
        figures["ok"] = (
            queued == len(world["overdue"])
            and again["disabled_count"] == 0
            and figures["auto_disable_s"] <= TARGETS["auto_disable_s"]
            and figures["overdue_list_p99_ms"] <= TARGETS["overdue_list_p99_ms"]
            and figures["collection_report_p99_ms"] <= TARGETS["collection_report_p99_ms"]
            and figures["payments_per_s"] >= TARGETS["payments_per_s"]
        )
        figures["targets"] = TARGETS
        print(json.dumps(figures))
    finally:
        if api_proc is not None:
            api_proc.terminate()
            api_proc.wait(15)
        if not args.keep:
            with psycopg.connect(args.admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
