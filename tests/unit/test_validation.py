"""The input rules every client meets: emails, passwords (NIST SP 800-63B), names, codes."""

from __future__ import annotations

import pytest

from shared.errors import BadRequest
from shared.validation import check_name, check_otp, check_password, normalise_email


@pytest.mark.parametrize("raw", ["Ada@Example.COM", "  ada@example.com ", "a.b+tag@sub.example.co.uk"])
def test_good_emails_are_normalised(raw):
    assert normalise_email(raw) == raw.strip().lower()


@pytest.mark.parametrize("raw", ["", "ada", "ada@", "@example.com", "ada@example", "a b@example.com",
                                 "ada@@example.com", "ada..x@example.com", "x" * 250 + "@example.com"])
def test_bad_emails_are_refused(raw):
    with pytest.raises(BadRequest) as raised:
        normalise_email(raw)
    assert raised.value.code == "invalid_email"


@pytest.mark.parametrize("password", ["12345678", "correct horse", "ñandú!!!", "x" * 128, "pässwörd"])
def test_any_8_to_128_characters_is_a_password(password):
    check_password(password, "ada@example.com")


@pytest.mark.parametrize("password", ["1234567", "x" * 129, "ada@example.com", "ADA@EXAMPLE.COM"])
def test_short_long_or_email_passwords_are_refused(password):
    with pytest.raises(BadRequest) as raised:
        check_password(password, "ada@example.com")
    assert raised.value.code == "weak_password"


def test_names_are_trimmed_and_bounded():
    assert check_name("  Ada   Lovelace ") == "Ada Lovelace"
    for bad in ("", "   ", "x" * 101, "Ada\x00"):
        with pytest.raises(BadRequest):
            check_name(bad)


def test_codes_are_six_digits():
    assert check_otp(" 012345 ") == "012345"
    for bad in ("12345", "1234567", "12a456", "١٢٣٤٥٦"):
        with pytest.raises(BadRequest):
            check_otp(bad)
