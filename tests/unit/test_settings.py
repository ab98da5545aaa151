"""Settings: embedded by default, real backends by variable, and one clear line for a bad value."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared.errors import SettingsError
from shared.settings import load_settings


def test_defaults_are_the_embedded_backends(tmp_path):
    settings = load_settings({"CFD_DATA_DIR": str(tmp_path)})
    assert settings.describe_backends()["bus"] == "in-process"
    assert settings.describe_backends()["cache"] == "in-process"
    assert settings.database_url.startswith("sqlite:///") and settings.uses_sqlite
    assert settings.smtp_host is None and settings.price_source == "sim"
    assert settings.http_port == 8000 and settings.ws_port == 8080
    assert settings.demo_deposit == Decimal("10000")
    assert len(settings.jwt_secret) >= 32  # dev mode makes one up, in the data directory
    assert load_settings({"CFD_DATA_DIR": str(tmp_path)}).jwt_secret == settings.jwt_secret
    assert (tmp_path / "jwt-secret").stat().st_mode & 0o777 == 0o600
    assert load_settings({"CFD_ENV": "test", "CFD_DATA_DIR": str(tmp_path)}).jwt_secret != settings.jwt_secret


def test_real_backends_by_variable_and_conventional_fallbacks():
    settings = load_settings({
        "DATABASE_URL": "postgres://u:p@db:5432/cfd",
        "REDIS_URL": "redis://cache:6379/0",
        "KAFKA_BROKER": "k1:9092,k2:9092",
        "PORT": "9000",
        "CFD_SMTP_HOST": "smtp.example.com",
    })
    assert settings.database_url == "postgresql://u:p@db:5432/cfd"
    assert settings.redis_url == "redis://cache:6379/0"
    assert settings.kafka_bootstrap == "k1:9092,k2:9092"
    assert settings.http_port == 9000
    assert settings.describe_backends()["database"] == "postgresql://u:***@db:5432/cfd"


def test_cfd_variable_wins_over_the_fallback():
    assert load_settings({"CFD_HTTP_PORT": "7000", "PORT": "9000"}).http_port == 7000


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
    strong = "k" * 20 + "Zq81-x_Y2pLmN0vB7cT4"
    assert load_settings({"CFD_ENV": "prod", "CFD_JWT_SECRET": strong}).jwt_secret == strong
