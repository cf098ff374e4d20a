"""Request bodies and answers of the Communication Services API (spec: ienerzy-bms-api.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.auth.models import E164
from api.messaging.service import MAX_TEXT
from api.shapes import MAX_ID, Body

Delivery = Literal["queued", "sent", "failed"]
_TEXT = r"\S"  # something besides blanks

_DELIVERY = (
    "`sent`: the provider accepted the message (`message_id` is its id); `queued`: in the outbox, "
    "not yet accepted (the worker keeps trying; `message_id` is null); `failed`: given up (`error`)"
)


class SendSms(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(pattern=E164, description="E.164", examples=["+919876543210"])
    message: str = Field(
        min_length=1,
        max_length=MAX_TEXT,
        pattern=_TEXT,
        examples=["Your battery BAT001 is now active. Enjoy your ride!"],
    )


class SendOtp(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(pattern=E164, description="E.164", examples=["+919876543210"])
    otp: str = Field(pattern=r"^[0-9]{4,8}$", description="4 to 8 digits", examples=["123456"])


class BatteryStatusNotice(Body):
    model_config = ConfigDict(extra="forbid")

    battery_id: int = Field(ge=1, le=MAX_ID, examples=[1])
    consumer_phone: str = Field(pattern=E164, description="E.164", examples=["+919876543210"])
    status: Literal["active", "inactive", "maintenance"] = Field(examples=["active"])
    message: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_TEXT,
        pattern=_TEXT,
        description="the text; when absent, the standard notice for the status",
        examples=["Your battery BAT001 is now active"],
    )


class _Delivered(BaseModel):
    success: bool = Field(description="false only when the message failed")
    message_id: str | None = Field(description="the provider's id once sent", examples=["MSG1234567890"])
    status: Delivery = Field(description=_DELIVERY, examples=["sent"])
    outbox_id: int = Field(description="packfleet's id of the message (its outbox row)", examples=[42])
    error: str | None = Field(default=None, description="why it failed")


class SmsDelivery(_Delivered):
    """The answer of send-sms and send-otp."""

    to: str = Field(examples=["+919876543210"])


class BatteryStatusDelivery(_Delivered):
    """The answer of battery-status."""

    notification_type: Literal["battery_status"] = "battery_status"
