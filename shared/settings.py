"""Settings for every service, read from `CFD_*` environment variables.

The embedded backends are the default; naming a real one (`CFD_KAFKA_BOOTSTRAP`, `CFD_REDIS_URL`,
`CFD_DATABASE_URL`, `CFD_SMTP_HOST`, `CFD_PRICE_SOURCE=backpack`) switches that concern to it.
A bad value stops start-up with a `SettingsError` naming the variable and what is wrong.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from shared.errors import SettingsError

WEAK_SECRETS = {"secret", "changeme", "change-me", "password", "jwt-secret", "dev", "test"}
MIN_SECRET_LENGTH = 32


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a service needs to know about its environment."""

    env: str = "dev"
    instance_id: str = ""
    data_dir: Path = Path(".cfd")
    log_level: str = "INFO"

    database_url: str = ""
    redis_url: str | None = None
    redis_max_connections: int = 64
    redis_pool_timeout: float = 5.0
    kafka_bootstrap: str | None = None
    kafka_partitions: int = 6
    topic_prefix: str = ""

    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_security: str = "starttls"  # starttls | tls | none
    mail_from: str = "CFD Broker <no-reply@cfd-broker.local>"

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    ws_port: int = 8080
    ws_public_url: str | None = None

    jwt_secret: str = ""
    admin_token: str = ""
    jwt_ttl_seconds: int = 3600
    cookie_secure: bool = False
    bcrypt_rounds: int = 12

    request_timeout: float = 5.0
    demo_deposit: Decimal = Decimal("10000")

    price_source: str = "sim"
    backpack_ws_url: str = "wss://ws.backpack.exchange/"
    replay_file: Path | None = None
    replay_speed: float = 1.0
    sim_seed: int | None = None
    sim_tick_hz: float = 4.0
    stale_after_seconds: float = 10.0
    dbproc_quote_wait_seconds: float = 10.0

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def admin_token_file(self) -> Path:
        """Where a dev-mode server writes its generated operator token for the CLI on the same machine."""
        return self.data_dir / "admin-token"

    @property
    def uses_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def topic(self, name: str) -> str:
        """The bus topic `name`, with this deployment's prefix."""
        return f"{self.topic_prefix}{name}"

    def describe_backends(self) -> dict[str, str]:
        """A one-word-per-concern summary for logs and `cfd doctor`."""
        return {
            "bus": f"kafka {self.kafka_bootstrap}" if self.kafka_bootstrap else "in-process",
            "cache": f"redis {_redact(self.redis_url)}" if self.redis_url else "in-process",
            "database": _redact(self.database_url),
            "mail": f"smtp {self.smtp_host}:{self.smtp_port}" if self.smtp_host else f"outbox {self.outbox_dir}",
            "prices": self.price_source,
        }


def _redact(url: str | None) -> str:
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


# --- parsing ---------------------------------------------------------------------------------------------


def _text(value: str) -> str:
    return value.strip()


def _int(lo: int, hi: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"must be a whole number, got {value!r}") from None
        if not lo <= number <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {number}")
        return number

    return parse


def _float(lo: float, hi: float) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"must be a number, got {value!r}") from None
        if not lo <= number <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {number}")
        return number

    return parse


def _decimal(value: str) -> Decimal:
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"must be a decimal number, got {value!r}") from None
    if not number.is_finite() or number < 0:
        raise ValueError(f"must be a non-negative amount, got {value!r}")
    return number


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def _choice(*options: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        lowered = value.strip().lower()
        if lowered not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {value!r}")
        return lowered

    return parse


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in schemes:
            raise ValueError(f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}, got {value!r}")
        return value.strip()

    return parse


def _database_url(value: str) -> str:
    value = value.strip()
    if value.startswith("postgres://"):
        value = "postgresql://" + value.removeprefix("postgres://")
    return _url("sqlite", "postgresql")(value)


def _bootstrap(value: str) -> str:
    servers = [part.strip() for part in value.split(",") if part.strip()]
    if not servers:
        raise ValueError("must list at least one host:port")
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"must be host:port[,host:port...], got {server!r}")
    return ",".join(servers)


# (field, parser, environment variable names in order of precedence)
_FIELDS: list[tuple[str, Callable[[str], Any], tuple[str, ...]]] = [
    ("env", _choice("dev", "prod", "test"), ("CFD_ENV",)),
    ("instance_id", _text, ("CFD_INSTANCE_ID",)),
    ("data_dir", Path, ("CFD_DATA_DIR",)),
    ("log_level", _choice("debug", "info", "warning", "error"), ("CFD_LOG_LEVEL",)),
    ("database_url", _database_url, ("CFD_DATABASE_URL", "DATABASE_URL")),
    ("redis_url", _url("redis", "rediss", "unix"), ("CFD_REDIS_URL", "REDIS_URL")),
    ("redis_max_connections", _int(1, 10_000), ("CFD_REDIS_MAX_CONNECTIONS",)),
    ("redis_pool_timeout", _float(0.01, 120), ("CFD_REDIS_POOL_TIMEOUT",)),
    ("kafka_bootstrap", _bootstrap, ("CFD_KAFKA_BOOTSTRAP", "KAFKA_BROKER")),
    ("kafka_partitions", _int(1, 256), ("CFD_KAFKA_PARTITIONS",)),
    ("topic_prefix", _text, ("CFD_TOPIC_PREFIX",)),
    ("smtp_host", _text, ("CFD_SMTP_HOST",)),
    ("smtp_port", _int(1, 65535), ("CFD_SMTP_PORT",)),
    ("smtp_user", _text, ("CFD_SMTP_USER",)),
    ("smtp_password", str, ("CFD_SMTP_PASSWORD",)),
    ("smtp_security", _choice("starttls", "tls", "none"), ("CFD_SMTP_SECURITY",)),
    ("mail_from", _text, ("CFD_MAIL_FROM",)),
    ("http_host", _text, ("CFD_HTTP_HOST",)),
    ("http_port", _int(0, 65535), ("CFD_HTTP_PORT", "PORT")),
    ("ws_port", _int(0, 65535), ("CFD_WS_PORT", "WS_PORT")),
    ("ws_public_url", _url("ws", "wss"), ("CFD_WS_PUBLIC_URL",)),
    ("jwt_secret", str, ("CFD_JWT_SECRET", "JWT_SECRET")),
    ("admin_token", str, ("CFD_ADMIN_TOKEN",)),
    ("jwt_ttl_seconds", _int(60, 30 * 86400), ("CFD_JWT_TTL_SECONDS",)),
    ("cookie_secure", _bool, ("CFD_COOKIE_SECURE",)),
    ("bcrypt_rounds", _int(4, 16), ("CFD_BCRYPT_ROUNDS",)),
    ("request_timeout", _float(0.1, 120), ("CFD_REQUEST_TIMEOUT",)),
    ("demo_deposit", _decimal, ("CFD_DEMO_DEPOSIT",)),
    ("price_source", _choice("sim", "backpack", "replay"), ("CFD_PRICE_SOURCE",)),
    ("backpack_ws_url", _url("ws", "wss"), ("CFD_BACKPACK_WS_URL",)),
    ("replay_file", Path, ("CFD_REPLAY_FILE",)),
    ("replay_speed", _float(0.01, 10_000), ("CFD_REPLAY_SPEED",)),
    ("sim_seed", _int(0, 2**63), ("CFD_SIM_SEED",)),
    ("sim_tick_hz", _float(0.1, 10_000), ("CFD_SIM_TICK_HZ",)),
    ("stale_after_seconds", _float(0.5, 3600), ("CFD_STALE_AFTER_SECONDS",)),
    ("dbproc_quote_wait_seconds", _float(0, 600), ("CFD_DBPROC_QUOTE_WAIT_SECONDS",)),
]


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read settings from `environ` (default: the process environment); keyword overrides win."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field, parse, names in _FIELDS:
        for name in names:
            raw = environ.get(name)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[field] = parse(raw)
            except ValueError as exc:
                raise SettingsError(f"{name} {exc}") from None
            break
    values.update(overrides)
    values.setdefault("instance_id", uuid.uuid4().hex[:12])
    data_dir = Path(values.get("data_dir", ".cfd"))
    values["data_dir"] = data_dir
    values.setdefault("database_url", f"sqlite:///{data_dir / 'cfd.sqlite3'}")
    if values.get("price_source") == "replay" and not values.get("replay_file"):
        raise SettingsError("CFD_REPLAY_FILE must name a JSONL file when CFD_PRICE_SOURCE=replay")
    settings = Settings(**values)
    return _checked_secret(settings)


def local_secret(path: Path, nbytes: int = 32) -> str:
    """A random secret kept in `path` (owner-only), made on first use; processes sharing the file share it."""
    for _ in range(50):
        if path.exists() and (text := path.read_text().strip()):
            return text
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        draft.touch(mode=0o600)
        draft.chmod(0o600)
        draft.write_text(secrets.token_urlsafe(nbytes) + "\n")
        try:
            os.link(draft, path)  # atomic: of two processes starting at once, one secret wins
        except FileExistsError:
            time.sleep(0.01)
        finally:
            draft.unlink(missing_ok=True)
    raise SettingsError(f"cannot read or create the secret file {path}")


def _checked_secret(settings: Settings) -> Settings:
    secret = settings.jwt_secret
    weak = len(secret) < MIN_SECRET_LENGTH or secret.lower() in WEAK_SECRETS
    if not weak:
        return settings
    if settings.is_dev:
        # The data directory's own secret: sessions outlive a restart of the local platform, as the TUI's
        # saved session expects.
        return msgspec.structs.replace(settings, jwt_secret=local_secret(settings.data_dir / "jwt-secret", 48))
    if settings.env == "test":
        return msgspec.structs.replace(settings, jwt_secret=secrets.token_urlsafe(48))
    hint = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
    if not secret:
        raise SettingsError(f"CFD_JWT_SECRET must be set outside dev mode (CFD_ENV={settings.env}); {hint}")
    raise SettingsError(f"CFD_JWT_SECRET is too weak (at least {MIN_SECRET_LENGTH} random characters); {hint}")
