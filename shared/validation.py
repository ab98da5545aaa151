"""Input rules shared by the server and clients (so a form can check before it sends)."""

from __future__ import annotations

import re
import threading
import unicodedata
from typing import Any

from shared.errors import BadRequest

PASSWORD_MIN = 8
PASSWORD_MAX = 128
NAME_MAX = 100
# zxcvbn's score: 0-2 fall to fewer than about 10^8 guesses (a common password, a word with a digit, a
# keyboard walk); 3 and 4 need more. zxcvbn's work grows steeply with length (about 300 ms for 72 random
# characters), so it scores the first 32 characters: a few milliseconds, and a longer password whose first
# 32 characters are guessable is refused as such.
PASSWORD_MIN_SCORE = 3
PASSWORD_SCORED_CHARS = 32

_zxcvbn_lock = threading.Lock()  # zxcvbn keeps the current call's user inputs in a module global

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


def password_strength(password: str, *user_inputs: str) -> dict[str, Any]:
    """zxcvbn's estimate of the first `PASSWORD_SCORED_CHARS` characters: `score` (0-4) and `feedback`
    (`warning`, `suggestions`). `user_inputs` (the email, the name) count as easy to guess."""
    from zxcvbn import zxcvbn  # imported on first use: it loads its word lists, about 0.1 s

    # each input whole, its parts, and its parts run together ("Ada Lovelace" -> "adalovelace")
    words = []
    for text in user_inputs:
        parts = [part for part in re.split(r"[\s@._+-]+", text.lower()) if part]
        words += [part for part in parts if len(part) > 2] + ["".join(parts)]
    with _zxcvbn_lock:
        return zxcvbn(password[:PASSWORD_SCORED_CHARS], user_inputs=[*user_inputs, *words])


def check_password(password: str, email: str, name: str = "") -> None:
    """NIST SP 800-63B: 8 to 128 characters, no composition rules, not the email itself, and not easy to
    guess: refused below zxcvbn score `PASSWORD_MIN_SCORE` (common passwords, words with a digit, names,
    dates, keyboard walks, repeats, the user's own email or name), with zxcvbn's advice."""
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
    strength = password_strength(password, email, name)
    if strength["score"] < PASSWORD_MIN_SCORE:
        warning = strength["feedback"]["warning"] or ""
        suggestions = list(strength["feedback"]["suggestions"]) or ["Use a few uncommon words together."]
        advice = " ".join(part if part.endswith(".") else part + "." for part in (warning, *suggestions) if part)
        raise BadRequest(f"The password is too easy to guess. {advice}", code="weak_password",
                         details={"field": "password", "score": strength["score"], "warning": warning,
                                  "suggestions": suggestions})


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
