"""The API's rules that its OpenAPI document states in words but JSON Schema cannot: a check digit,
a rule across two query parameters, one relative to today, one that depends on the caller's role or
on stored data. A generated request that is valid by the schema may break one of them; the API then
answers 400 naming the rule, and that is right.

Each rule has a predicate over the request, the role sending it and the database: the fuzz run
excuses a 400 from schemathesis's positive-data check only when a rule here is really broken by
that request and the answer is that rule's error. Every other check still runs on it.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from schemathesis import Case

from api.battery_packs.models import FIELDS
from api.consumers.kyc import AADHAAR_PATTERN, PAN_PATTERN, verhoeff_valid
from api.consumers.storage import sniff
from api.errors import BadRequest
from api.finance.loans import business_today
from api.finance.reports import MAX_REPORT_DAYS
from api.finance.service import MAX_DISBURSEMENT_AHEAD
from api.telemetry.buckets import IntervalError, bucket_count, parse_interval
from api.telemetry.service import time_range
from packfleet.settings import Settings

SETTINGS = Settings(_env_file=None)  # the API under test runs on the defaults of these rules


@dataclass(frozen=True)
class Request:
    case: Case
    user: dict[str, Any]  # who sends it (tests/api/conftest.py's World)
    conn: psycopg.Connection

    @property
    def role(self) -> str:
        return str(self.user["role"])

    def field(self, name: str) -> Any:
        body = self.case.body if isinstance(self.case.body, dict) else {}
        return (self.case.query or {}).get(name, body.get(name))

    def path_id(self) -> int | None:
        """The operation's id in its path (sent as text: '1')."""
        values = [str(v) for v in (self.case.path_parameters or {}).values()]
        return int(values[0]) if values and values[0].isdigit() else None


@dataclass(frozen=True)
class Rule:
    operations: tuple[str, ...]  # "METHOD /path" as the document names them
    error: str  # a regular expression: the `error` of the 400 that names this rule
    broken: Callable[[Request], bool]
    code: str = "VALIDATION_ERROR"
    status: int = 400

    def answered_by(self, status: int, body: Any) -> bool:
        return (
            status == self.status
            and isinstance(body, dict)
            and isinstance(body.get("error"), str)
            and re.fullmatch(self.error, body["error"]) is not None
            and body.get("code") == self.code
        )


def _date(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _bad_aadhaar(value: Any) -> bool:
    """A number of Aadhaar's form whose Verhoeff check digit is wrong."""
    if not isinstance(value, str) or not value.strip() or not re.match(AADHAAR_PATTERN, value):
        return False
    return not verhoeff_valid(re.sub(r"[\s-]", "", value))


def _aadhaar_in_body(request: Request) -> bool:
    return any(_bad_aadhaar(request.field(name)) for name in ("aadhar", "aadhaar"))


def _document_number(request: Request) -> bool:
    kind, number = request.field("document_type"), request.field("document_number")
    if not isinstance(number, str) or not number.strip():
        return False
    if kind == "pan_card":  # the multipart body cannot carry the JSON body's if/then (see router)
        return not re.match(PAN_PATTERN, number)
    if kind == "aadhaar_card":
        return not re.match(AADHAAR_PATTERN, number) or _bad_aadhaar(number)
    return False


def _uploaded(request: Request) -> bytes | None:
    """The bytes of the multipart `file` part, if the request has one."""
    upload = request.field("file")
    data = getattr(upload, "data", upload)  # schemathesis's Binary holds them
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    return data if isinstance(data, bytes) else None


def _not_a_document_file(request: Request) -> bool:
    """The uploaded document is not a PDF, JPEG or PNG by its first bytes (the API reads the file,
    not the part's declared type)."""
    data = _uploaded(request)
    return data is not None and sniff(data) is None


def _not_a_pack_csv(request: Request) -> bool:
    """The uploaded file is not UTF-8, or its header is not the importer's: known, unique column
    names with asset_tag among them."""
    data = _uploaded(request)
    if data is None:
        return False
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return True
    header = [h.strip().lower() for h in next(csv.reader(io.StringIO(text, newline="")), [])]
    return "asset_tag" not in header or len(set(header)) != len(header) or not set(header) <= set(FIELDS)


def _rows_refer_to_stored_data(request: Request) -> bool:
    """A row of a JSON import names a dealer there is none of, or (create) an asset tag that is
    taken, or (update) one the caller has no live pack of, or (update) a dealer at all: a pack's
    dealer is not changed by an update."""
    body = request.case.body
    rows = body if isinstance(body, list) else [body] if isinstance(body, dict) else []
    creating = request.case.operation.label.startswith("POST")
    dealer = request.user.get("dealer_id") if request.role == "dealer" else None
    tags = [row.get("asset_tag") for row in rows if isinstance(row, dict)]
    if len(tags) != len(set(map(str, tags))):
        return True  # the same pack twice in one request
    for row in rows:
        if not isinstance(row, dict):
            continue
        named = row.get("dealer_id")
        if isinstance(named, int | float) and not isinstance(named, bool) and float(named).is_integer():
            named = int(named)  # 254.0 is the integer 254 to JSON Schema
            if (
                not creating
                or not request.conn.execute("SELECT 1 FROM dealers WHERE id = %s", (named,)).fetchone()
            ):
                return True
        tag = row.get("asset_tag")
        if not isinstance(tag, str):
            continue
        live = request.conn.execute(
            """SELECT 1 FROM batteries WHERE serial_number = %s
               AND (%s OR deleted_at IS NULL AND (%s::bigint IS NULL OR dealer_id = %s))""",
            (tag, creating, dealer, dealer),
        ).fetchone()
        if creating == (live is not None):
            return True
    return False


def _admin_without_dealer(request: Request) -> bool:
    return request.role == "admin" and request.field("dealer_id") is None


def _one_coordinate(request: Request) -> bool:
    return (request.field("latitude") is None) != (request.field("longitude") is None)


def _too_many_points(request: Request) -> bool:
    interval = request.field("interval")
    if interval is None and request.case.operation.label == "GET /api/telemetry/fleet":
        interval = "1h"  # the fleet's default bucket; a battery's history is raw without one
    if not isinstance(interval, str):
        return False
    try:
        step = parse_interval(interval)
        start, end = time_range(_time(request.field("from")), _time(request.field("to")))
    except (IntervalError, BadRequest, ValueError, TypeError):
        return False
    return bucket_count(start, end, step) > SETTINGS.telemetry_max_points


def _bad_interval(request: Request) -> bool:
    """Not 1m, 15m, 1h, 1d, 1w or an ISO 8601 duration of those units, 1 s to 366 days (the pattern
    could say the form, not the range)."""
    interval = request.field("interval")
    try:
        return isinstance(interval, str) and parse_interval(interval) is None
    except IntervalError:
        return True


def _times_reversed(request: Request) -> bool:
    """`from` not before `to` (each defaulting as the route says)."""
    try:
        time_range(_time(request.field("from")), _time(request.field("to")))
    except BadRequest:
        return True
    return False


def _dates_reversed(request: Request) -> bool:
    start, end = _date(request.field("from")), _date(request.field("to"))
    return start is not None and end is not None and start > end


def _report_in_future(request: Request) -> bool:
    day = _date(request.field("report_date"))
    return day is not None and day > business_today(SETTINGS)


def _report_range(request: Request) -> bool:
    end = _date(request.field("end_date")) or business_today(SETTINGS)
    start = _date(request.field("start_date")) or end - timedelta(days=29)
    return start > end or (end - start).days >= MAX_REPORT_DAYS


def _dated_outside(field: str, table: str, ahead: timedelta) -> Callable[[Request], bool]:
    """`field` is more than `ahead` past today, or before the business date its record (the row of
    `table` the path names) was made on."""

    def broken(request: Request) -> bool:
        when = _date(request.field(field))
        if when is None:
            return False
        if when > business_today(SETTINGS) + ahead:
            return True
        row = request.conn.execute(
            f"SELECT (created_at AT TIME ZONE %s)::date AS made_on FROM {table} WHERE id = %s",  # noqa: S608 - a constant
            (SETTINGS.finance_timezone, request.path_id()),
        ).fetchone()
        return row is not None and when < row["made_on"]

    return broken


_disbursement_date = _dated_outside("disbursement_date", "finance_applications", MAX_DISBURSEMENT_AHEAD)
_paid_on = _dated_outside("paid_on", "loans", timedelta(0))


def _lender_not_chosen(request: Request) -> bool:
    if request.field("nbfc_id") is not None:
        return False
    lenders = request.conn.execute("SELECT count(*) AS n FROM nbfc_lenders WHERE active").fetchone()
    return lenders["n"] != 1


RULES = (
    Rule(("POST /api/battery_pack", "PATCH /api/battery_pack"), "Invalid CSV.*", _not_a_pack_csv),
    Rule(
        ("POST /api/battery_pack", "PATCH /api/battery_pack"),
        r"\d+ of \d+ rows cannot be used; nothing was written",
        _rows_refer_to_stored_data,
    ),
    Rule(("POST /api/consumers",), "Invalid fields: dealer_id", _admin_without_dealer),
    Rule(("POST /api/nbfc/collection-report",), "Invalid fields: dealer_id", _admin_without_dealer),
    Rule(
        ("POST /api/consumers", "PUT /api/consumers/{consumer_id}/kyc"),
        "Invalid fields: aadhar",
        _aadhaar_in_body,
    ),
    Rule(
        ("POST /api/consumers/{consumer_id}/documents",), "Invalid fields: document_number", _document_number
    ),
    Rule(("GET /api/service/technicians/available",), "Invalid fields: latitude, longitude", _one_coordinate),
    Rule(
        ("GET /api/telemetry/fleet", "GET /api/telemetry/{serial}"),
        "Too many points",
        _too_many_points,
        code="TOO_MANY_POINTS",
    ),
    Rule(("GET /api/telemetry/fleet", "GET /api/telemetry/{serial}"), "Invalid interval", _bad_interval),
    Rule(("GET /api/telemetry/fleet", "GET /api/telemetry/{serial}"), "Invalid request", _times_reversed),
    Rule(
        (
            "GET /api/analytics/dealer-dashboard",
            "GET /api/analytics/nbfc-portfolio",
            "GET /api/analytics/collection-report",
            "GET /api/analytics/battery-health",
            "GET /api/analytics/service-metrics",
        ),
        "Invalid fields: from, to",
        _dates_reversed,
    ),
    Rule(("POST /api/nbfc/collection-report",), "Invalid fields: report_date", _report_in_future),
    Rule(("GET /api/finance/collection-report",), "Invalid fields: start_date", _report_range),
    Rule(
        ("PUT /api/finance/applications/{application_id}/disburse",),
        "Invalid fields: disbursement_date",
        _disbursement_date,
    ),
    Rule(("POST /api/finance/loans/{loan_id}/payments",), "Invalid fields: paid_on", _paid_on),
    Rule(
        ("POST /api/nbfc/submit-application", "POST /api/nbfc/collection-report"),
        "Invalid fields: nbfc_id",
        _lender_not_chosen,
    ),
)


def broken_by(case: Case, user: dict[str, Any], conn: psycopg.Connection) -> list[Rule]:
    """The rules of this case's operation that this request, sent by `user`, breaks."""
    request = Request(case, user, conn)
    return [rule for rule in RULES if case.operation.label in rule.operations and rule.broken(request)]
