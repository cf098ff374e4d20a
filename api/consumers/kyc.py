"""Identity numbers: PAN and Aadhaar validation, Aadhaar encryption at rest, masking for answers.

Aadhaar numbers are personal data under Indian law: they are stored only as a Fernet token (key from
`PACKFLEET_AADHAAR_KEY`, or derived from the JWT secret) plus the last four digits, and every answer
shows them masked (`XXXXXXXX9012`), whatever the caller's role.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache

from cryptography.fernet import Fernet

from packfleet.settings import Settings

PAN_PATTERN = r"^\s*[A-Za-z]{5}[0-9]{4}[A-Za-z]\s*$"
# 12 digits as people write them: together, or in groups of four with a space or a dash between.
AADHAAR_PATTERN = r"^\s*[2-9][0-9]{3}([ -]?)[0-9]{4}\1[0-9]{4}\s*$"
PAN = re.compile(r"^[A-Z]{5}[0-9]{4}[A-Z]$")

# Verhoeff tables: multiplication in the dihedral group D5, the position permutation, the inverse.
_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]
_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]
_INV = [0, 4, 3, 2, 1, 5, 6, 7, 8, 9]


def verhoeff_valid(digits: str) -> bool:
    check = 0
    for i, ch in enumerate(reversed(digits)):
        check = _D[check][_P[i % 8][int(ch)]]
    return check == 0


def verhoeff_digit(digits: str) -> str:
    """The check digit to append to `digits`."""
    check = 0
    for i, ch in enumerate(reversed(digits)):
        check = _D[check][_P[(i + 1) % 8][int(ch)]]
    return str(_INV[check])


def normalise_aadhaar(value: str) -> str:
    """Digits only (spaces or dashes between groups of four are allowed); ValueError if invalid."""
    if not re.match(AADHAAR_PATTERN, value):
        raise ValueError("Aadhaar must be 12 digits, not starting with 0 or 1")
    digits = re.sub(r"[\s-]", "", value)
    if not verhoeff_valid(digits):
        raise ValueError("Aadhaar check digit is wrong")
    return digits


def normalise_pan(value: str) -> str:
    pan = value.strip().upper()
    if not PAN.match(pan):
        raise ValueError("PAN must look like ABCDE1234F")
    return pan


def mask_aadhaar(last4: str | None) -> str | None:
    return None if last4 is None else "XXXXXXXX" + last4


def mask_tail(value: str | None, *, keep: int = 4) -> str | None:
    if value is None:
        return None
    return "X" * max(len(value) - keep, 0) + value[-keep:]


@lru_cache(maxsize=8)
def _fernet(key: str) -> Fernet:
    return Fernet(key.encode())


def cipher(settings: Settings) -> Fernet:
    """The Fernet cipher for identity numbers: the configured key, or one derived from the JWT secret."""
    if settings.aadhaar_key is not None:
        return _fernet(settings.aadhaar_key.get_secret_value())
    digest = hashlib.sha256(b"packfleet-aadhaar:" + settings.require_jwt_secret().encode()).digest()
    return _fernet(base64.urlsafe_b64encode(digest).decode())
