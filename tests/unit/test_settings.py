"""Settings: embedded by default, real backends by variable, and one clear line for a bad value."""

from __future__ import annotations

import re
import secrets
from decimal import Decimal
from pathlib import Path

import pytest

from shared.errors import SettingsError
from shared.settings import RateLimit, environment_variables, load_settings


def test_defaults_are_the_embedded_backends(tmp_path):
    settings = load_settings({"CFD_DATA_DIR": str(tmp_path)})
    assert settings.describe_backends()["bus"] == "in-process"
    assert settings.describe_backends()["cache"] == "in-process"
    assert settings.database.url.startswith("sqlite:///") and settings.database.uses_sqlite
    assert settings.mail.host is None and settings.prices.source == "sim"
    assert settings.http.port == 8000 and settings.http.ws_port == 8080
    assert settings.trading.demo_deposit == Decimal("10000")
    assert len(settings.auth.jwt_secret) >= 32  # dev mode makes one up, in the data directory
    assert load_settings({"CFD_DATA_DIR": str(tmp_path)}).auth.jwt_secret == settings.auth.jwt_secret
    assert (tmp_path / "jwt-secret").stat().st_mode & 0o777 == 0o600
    assert load_settings({"CFD_ENV": "test", "CFD_DATA_DIR": str(tmp_path)}).auth.jwt_secret != settings.auth.jwt_secret


def test_real_backends_by_variable_and_conventional_fallbacks():
    settings = load_settings({
        "DATABASE_URL": "postgres://u:p@db:5432/cfd",
        "REDIS_URL": "redis://cache:6379/0",
        "KAFKA_BROKER": "k1:9092,k2:9092",
        "PORT": "9000",
        "CFD_SMTP_HOST": "smtp.example.com",
    })
    assert settings.database.url == "postgresql://u:p@db:5432/cfd"
    assert settings.cache.url == "redis://cache:6379/0"
    assert settings.bus.bootstrap == "k1:9092,k2:9092"
    assert settings.http.port == 9000
    assert settings.describe_backends()["database"] == "postgresql://u:***@db:5432/cfd"


def test_cfd_variable_wins_over_the_fallback():
    assert load_settings({"CFD_HTTP_PORT": "7000", "PORT": "9000"}).http.port == 7000


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CFD_HTTP_PORT": "eighty"}, "CFD_HTTP_PORT"),
        ({"CFD_HTTP_PORT": "70000"}, "CFD_HTTP_PORT"),
        ({"CFD_DATABASE_URL": "mysql://x"}, "CFD_DATABASE_URL"),
        ({"CFD_REDIS_URL": "localhost:6379"}, "CFD_REDIS_URL"),
        ({"CFD_KAFKA_BOOTSTRAP": "localhost"}, "CFD_KAFKA_BOOTSTRAP"),
        ({"CFD_PRICE_SOURCE": "bloomberg"}, "CFD_PRICE_SOURCE"),
        ({"CFD_DEMO_DEPOSIT": "lots"}, "CFD_DEMO_DEPOSIT"),
        ({"CFD_DEMO_DEPOSIT": "-5"}, "CFD_DEMO_DEPOSIT"),
        ({"CFD_COOKIE_SECURE": "maybe"}, "CFD_COOKIE_SECURE"),
        ({"CFD_PRICE_SOURCE": "replay"}, "CFD_REPLAY_FILE"),
        ({"CFD_SIGNUP_LIMIT_PER_IP": "20"}, "CFD_SIGNUP_LIMIT_PER_IP"),
        ({"CFD_SIGNUP_LIMIT_PER_IP": "20/1w"}, "CFD_SIGNUP_LIMIT_PER_IP"),
        ({"CFD_VERIFY_LIMIT_PER_IP": "0/1h"}, "CFD_VERIFY_LIMIT_PER_IP"),
        ({"CFD_SIGNIN_LIMIT_PER_EMAIL": "10/15m,lots"}, "CFD_SIGNIN_LIMIT_PER_EMAIL"),
        ({"CFD_TRUSTED_PROXIES": "10.0.0.1,proxy.example.com"}, "CFD_TRUSTED_PROXIES"),
        ({"CFD_FINANCING_ROLLOVER": "24:00"}, "CFD_FINANCING_ROLLOVER"),
        ({"CFD_FINANCING_ROLLOVER": "10pm"}, "CFD_FINANCING_ROLLOVER"),
    ],
)
def test_a_bad_value_names_the_variable(env, named):
    with pytest.raises(SettingsError) as raised:
        load_settings(env)
    assert named in str(raised.value) and "\n" not in str(raised.value)


def test_outside_dev_mode_a_strong_secret_is_required():
    with pytest.raises(SettingsError, match="CFD_JWT_SECRET must be set"):
        load_settings({"CFD_ENV": "prod"})
    with pytest.raises(SettingsError, match="too weak"):
        load_settings({"CFD_ENV": "prod", "CFD_JWT_SECRET": "changeme"})
    strong = secrets.token_urlsafe(48)
    assert load_settings({"CFD_ENV": "prod", "CFD_JWT_SECRET": strong}).auth.jwt_secret == strong


@pytest.mark.parametrize("secret", ["a" * 32, "a" * 64, "password" * 4, "abcdefghijklmnopqrstuvwxyz012345",
                                    "0123456789" * 4, "ab" * 24, secrets.token_hex(16)])
def test_prod_refuses_a_jwt_secret_or_operator_token_with_too_little_entropy(secret):
    with pytest.raises(SettingsError) as raised:
        load_settings({"CFD_ENV": "prod", "CFD_JWT_SECRET": secret})
    message = str(raised.value)
    assert "CFD_JWT_SECRET" in message and "entropy" in message and "secrets.token_urlsafe(48)" in message
    with pytest.raises(SettingsError, match="CFD_ADMIN_TOKEN has too little entropy"):
        load_settings({"CFD_ENV": "prod", "CFD_JWT_SECRET": secrets.token_urlsafe(48), "CFD_ADMIN_TOKEN": secret})


def test_prod_accepts_what_the_documented_generators_make():
    for _ in range(300):
        for secret, token in ((secrets.token_urlsafe(48), secrets.token_urlsafe(32)),
                              (secrets.token_hex(32), secrets.token_hex(32))):
            settings = load_settings({"CFD_ENV": "prod", "CFD_JWT_SECRET": secret, "CFD_ADMIN_TOKEN": token})
            assert settings.auth.jwt_secret == secret and settings.auth.admin_token == token


def test_dev_mode_keeps_a_patterned_secret_it_was_given(tmp_path):
    """The entropy rule is for prod; a developer's deliberate secret is used as given."""
    assert load_settings({"CFD_DATA_DIR": str(tmp_path), "CFD_JWT_SECRET": "a" * 32}).auth.jwt_secret == "a" * 32


def test_attempt_limits_have_defaults_and_read_count_per_window():
    defaults = load_settings({})
    assert defaults.http.trusted_proxies == ()
    assert defaults.auth.signin_limit_per_email_ip == RateLimit(10, 900)
    assert [str(limit) for limit in defaults.auth.signin_limit_per_email] == ["10/15m", "20/1h", "50/1d"]
    settings = load_settings({"CFD_SIGNUP_LIMIT_PER_IP": "5/90s", "CFD_VERIFY_LIMIT_PER_IP": "7/2h",
                              "CFD_SIGNIN_LIMIT_PER_EMAIL": " 3/1m , 9/1d", "CFD_CODE_LIMIT_PER_EMAIL": "4/600",
                              "CFD_TRUSTED_PROXIES": "10.0.0.1, 192.168.0.0/16 ,::1"})
    assert settings.auth.signup_limit_per_ip == RateLimit(5, 90)
    assert settings.auth.verify_limit_per_ip == RateLimit(7, 7200)
    assert settings.auth.signin_limit_per_email == (RateLimit(3, 60), RateLimit(9, 86400))
    assert settings.auth.code_limit_per_email == RateLimit(4, 600)
    assert settings.http.trusted_proxies == ("10.0.0.1/32", "192.168.0.0/16", "::1/128")


def test_the_configuration_page_lists_each_groups_variables_in_that_groups_section():
    """docs/configuration.md has a section per group, opened by its name (`settings.mail`), whose tables list
    exactly the variables of that group; the process-wide ones are in "General"."""
    page = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    settings_part = page.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    documented: dict[str, set[str]] = {}
    for section in settings_part.split("\n### ")[1:]:
        named = re.search(r"`settings\.([a-z]+)`", section)
        group = named.group(1) if named and not section.startswith("General") else ""
        documented[group] = set(re.findall(r"^\| `(CFD_[A-Z_]+)`", section, flags=re.MULTILINE))
    wanted: dict[str, set[str]] = {}
    for field, names in environment_variables().items():
        group, _, _ = field.rpartition(".")
        wanted.setdefault(group, set()).add(names[0])
    assert documented.keys() == wanted.keys()
    for group, variables in wanted.items():
        extra = documented[group] - variables
        assert variables <= documented[group] and (not extra or group == ""), (group, variables ^ documented[group])
    assert documented[""] - wanted[""] == {"CFD_ALLOCATOR", "CFD_API_URL", "CFD_API_KEY", "CFD_OPERATOR"}  # read by the
    # `cfd` command itself


def test_the_financing_rollover_is_a_time_of_day_in_utc():
    assert load_settings({}).trading.financing_rollover_minute == 0  # 00:00 UTC by default
    later = load_settings({"CFD_FINANCING_ROLLOVER": "9:30"}).trading
    assert later.financing_rollover == "09:30" and later.financing_rollover_minute == 570
