"""Request bodies of the Authentication API and the spec's user object."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

E164 = r"^\+[1-9][0-9]{6,14}$"


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    phone: str = Field(pattern=E164, description="E.164, e.g. +919876543210")
    user_type: Literal["admin", "dealer", "consumer", "technician", "nbfc"] | None = Field(
        default=None, alias="userType"
    )


class VerifyOtpRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: str = Field(pattern=E164)
    otp: str = Field(pattern=r"^[0-9]{6}$")


def user_body(row: dict[str, Any]) -> dict[str, Any]:
    """The spec's user object."""
    return {"id": row["id"], "name": row["name"], "phone": row["phone"], "role": row["role"]}
