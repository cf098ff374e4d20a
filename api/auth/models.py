"""Request and response bodies of the Authentication API (the spec's user object)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.shapes import Id, Shape

E164 = r"^\+[1-9][0-9]{6,14}$"
Role = Literal["admin", "dealer", "consumer", "technician", "nbfc"]


class LoginRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={"examples": [{"phone": "+919876543210", "userType": "dealer"}]},
    )

    phone: str = Field(pattern=E164, description="E.164, e.g. +919876543210")
    user_type: Role | None = Field(default=None, alias="userType", description="the role to sign in as")


class VerifyOtpRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"phone": "+919876543210", "otp": "123456"}]}
    )

    phone: str = Field(pattern=E164)
    otp: str = Field(pattern=r"^[0-9]{6}$", description="the 6-digit code sent by SMS")


class User(Shape):
    """The spec's user object."""

    id: Id
    name: str = Field(examples=["John Doe"])
    phone: str = Field(examples=["+919876543210"])
    role: Role


class OtpSent(Shape):
    """The answer to a login: the same for every phone, so it tells nobody which phones have accounts."""

    success: Literal[True]
    message: str = Field(examples=["OTP sent successfully"])


class LoginToken(Shape):
    """A signed-in user's JWT and who they are."""

    success: Literal[True]
    token: str = Field(examples=["eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9..."])
    expires_in: int = Field(description="seconds the token is valid", examples=[86400])
    user: User


def user_body(row: dict[str, Any]) -> dict[str, Any]:
    """The spec's user object."""
    return {"id": row["id"], "name": row["name"], "phone": row["phone"], "role": row["role"]}
