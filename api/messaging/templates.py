"""The texts of the SMS packfleet sends, one function per kind; pure (no database, no I/O).

Texts keep to the GSM 7-bit alphabet ("Rs." rather than the rupee sign, which would make the
gateway switch to UCS-2 and cut a segment from 160 characters to 70); a consumer's name is used
as it is. Amounts are shown with Indian digit grouping (Rs. 1,23,456.50).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

OTP = "otp"
OVERDUE_WARNING = "overdue_warning"
BATTERY_DISABLED = "battery_disabled"
BATTERY_ENABLED = "battery_enabled"
BATTERY_STATUS = "battery_status"
GENERAL = "general"


@dataclass(frozen=True)
class Sms:
    """A message's kind (the outbox's `kind`) and text, ready for `queue_sms(kind=..., text=...)`."""

    kind: str
    text: str


def rupees(amount: Decimal) -> str:
    """`Rs. 1,23,456.50`: rounded to the paisa, grouped the Indian way (lakh, crore)."""
    value = amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    sign = "-" if value < 0 else ""
    whole, paise = f"{abs(value):.2f}".split(".")
    head, tail = whole[:-3], whole[-3:]
    groups = []
    while len(head) > 2:
        groups.insert(0, head[-2:])
        head = head[:-2]
    if head:
        groups.insert(0, head)
    return f"Rs. {sign}{','.join([*groups, tail])}.{paise}"


def day(value: date) -> str:
    """`05 Mar 2025`: no day-month order to misread."""
    return value.strftime("%d %b %Y")


def otp(code: str, *, purpose: str = "verification", valid_minutes: int | None = None) -> Sms:
    """A one-time code: a login code, or a dealer's verification code (send-otp)."""
    expiry = f" It expires in {valid_minutes} minutes." if valid_minutes else ""
    return Sms(OTP, f"Your packfleet {purpose} code is {code}.{expiry} Do not share it.")


def overdue_warning(
    *,
    consumer_name: str,
    battery_serial: str,
    amount_due: Decimal,
    due_date: date,
    days_until_disable: int,
    charging_only: bool = True,
) -> Sms:
    """Before an overdue disable: what is owed since when, and when the battery will be switched."""
    what = "charging of battery" if charging_only else "battery"
    when = "today" if days_until_disable <= 0 else f"in {_days(days_until_disable)}"
    return Sms(
        OVERDUE_WARNING,
        f"Dear {consumer_name}, your EMI of {rupees(amount_due)} due on {day(due_date)} is unpaid. "
        f"Please pay to avoid {what} {battery_serial} being disabled {when}.",
    )


def battery_disabled(
    *, consumer_name: str, battery_serial: str, amount_due: Decimal, charging_only: bool = True
) -> Sms:
    """After an overdue disable: what was switched off and how to get it back."""
    what = "Charging of battery" if charging_only else "Battery"
    return Sms(
        BATTERY_DISABLED,
        f"Dear {consumer_name}, {what} {battery_serial} has been disabled for an overdue EMI of "
        f"{rupees(amount_due)}. It is enabled again as soon as your payment is recorded.",
    )


def battery_enabled(*, consumer_name: str, battery_serial: str) -> Sms:
    """After the payment that cleared the overdue: the battery works again."""
    return Sms(
        BATTERY_ENABLED,
        f"Dear {consumer_name}, thank you for your payment. Battery {battery_serial} is enabled again.",
    )


STATUS_WORDS = {"active": "active", "inactive": "inactive", "maintenance": "under maintenance"}


def battery_status(*, battery_serial: str, status: str) -> Sms:
    """A dealer's status notice (send-battery-status without a text of its own)."""
    return Sms(BATTERY_STATUS, f"Your battery {battery_serial} is now {STATUS_WORDS.get(status, status)}.")


def _days(n: int) -> str:
    return "1 day" if n == 1 else f"{n} days"
