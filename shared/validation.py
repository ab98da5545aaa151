"""Input rules shared by the server and clients (so a form can check before it sends)."""

from __future__ import annotations

import re
import unicodedata

from shared.errors import BadRequest

PASSWORD_MIN = 8
PASSWORD_MAX = 128
NAME_MAX = 100

# Pragmatic, not RFC 5322: one @, no spaces, a dotted domain with a 2+ letter top level.
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
                    r"[A-Za-z]{2,63}$")
_OTP = re.compile(r"^[0-9]{6}$")


def normalise_email(raw: str) -> str:
    """Trimmed and lower-cased; raises `BadRequest` (`invalid_email`) if it is not an address."""
    email = raw.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email) or ".." in email:
        raise BadRequest("That is not a valid email address.", code="invalid_email", details={"field": "email"})
    return email


def check_password(password: str, email: str) -> None:
    """NIST SP 800-63B: 8 to 128 characters, no composition rules, not the email itself."""
    length = len(unicodedata.normalize("NFKC", password))
    if length < PASSWORD_MIN:
        raise BadRequest(f"The password must have at least {PASSWORD_MIN} characters.", code="weak_password",
                         details={"field": "password"})
    if length > PASSWORD_MAX:
        raise BadRequest(f"The password must have at most {PASSWORD_MAX} characters.", code="weak_password",
                         details={"field": "password"})
    if password.strip().lower() == email.lower():
        raise BadRequest("The password must not be your email address.", code="weak_password",
                         details={"field": "password"})


def check_name(raw: str) -> str:
    name = " ".join(raw.split())
    if not name:
        raise BadRequest("Please give a name.", code="invalid_name", details={"field": "name"})
    if len(name) > NAME_MAX:
        raise BadRequest(f"The name must have at most {NAME_MAX} characters.", code="invalid_name",
                         details={"field": "name"})
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise BadRequest("The name must not contain control characters.", code="invalid_name",
                         details={"field": "name"})
    return name


def check_otp(raw: str) -> str:
    code = raw.strip()
    if not _OTP.match(code):
        raise BadRequest("The code is the 6 digits from the email.", code="invalid_code", details={"field": "otp"})
    return code
