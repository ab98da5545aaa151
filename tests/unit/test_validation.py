"""The input rules every client meets: emails, passwords (NIST SP 800-63B, zxcvbn), names, codes."""

from __future__ import annotations

import pytest

from shared.errors import BadRequest
from shared.validation import PASSWORD_SCORED_CHARS, check_name, check_otp, check_password, normalise_email


@pytest.mark.parametrize("raw", ["Ada@Example.COM", "  ada@example.com ", "a.b+tag@sub.example.co.uk"])
def test_good_emails_are_normalised(raw):
    assert normalise_email(raw) == raw.strip().lower()


@pytest.mark.parametrize("raw", ["", "ada", "ada@", "@example.com", "ada@example", "a b@example.com",
                                 "ada@@example.com", "ada..x@example.com", "x" * 250 + "@example.com"])
def test_bad_emails_are_refused(raw):
    with pytest.raises(BadRequest) as raised:
        normalise_email(raw)
    assert raised.value.code == "invalid_email"


@pytest.mark.parametrize("password", ["correct horse", "a long passphrase", "ñandú volador 7", "Tr0ub4dor&3",
                                      "zebra ukulele monsoon " * 5, "pässwörd im Schnee"])
def test_passphrases_hard_to_guess_are_passwords(password):
    check_password(password, "ada@example.com", "Ada Lovelace")


@pytest.mark.parametrize("password", ["1234567", "x" * 129, "ada@example.com", "ADA@EXAMPLE.COM"])
def test_short_long_or_email_passwords_are_refused(password):
    with pytest.raises(BadRequest) as raised:
        check_password(password, "ada@example.com")
    assert raised.value.code == "weak_password"


@pytest.mark.parametrize("password", ["password", "password123", "12345678", "qwertyuiop", "iloveyou",
                                      "letmein1", "monkey123", "P@ssw0rd", "trustno1!", "abc123abc123",
                                      "x" * 128, "19841984", "ñandú!!!"])
def test_common_and_guessable_passwords_are_refused_with_advice(password):
    with pytest.raises(BadRequest) as raised:
        check_password(password, "ada@example.com")
    error = raised.value
    assert error.code == "weak_password"
    assert error.details["field"] == "password" and error.details["score"] < 3
    assert error.details["suggestions"], "zxcvbn's advice is passed on"
    assert error.message.startswith("The password is too easy to guess.")
    assert error.details["suggestions"][0] in error.message


@pytest.mark.parametrize("password", ["adalovelace2024", "lovelace-ada", "Ada Lovelace 1815", "ada@example.com!"])
def test_passwords_made_of_the_users_own_email_or_name_are_refused(password):
    with pytest.raises(BadRequest) as raised:
        check_password(password, "ada@example.com", "Ada Lovelace")
    assert raised.value.code == "weak_password"


def test_a_long_password_is_judged_by_its_first_characters():
    """zxcvbn's work grows steeply with length; the first characters decide (the rest cannot make them safe)."""
    check_password("zebra ukulele monsoon quartz " + "a" * 90, "ada@example.com")
    with pytest.raises(BadRequest):
        check_password("a" * PASSWORD_SCORED_CHARS + "zebra ukulele monsoon quartz", "ada@example.com")


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
