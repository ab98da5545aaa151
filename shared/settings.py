"""Settings for every service, read from `CFD_*` environment variables, grouped by concern (`settings.bus`,
`settings.mail`, ...) so that each service and backend is handed only the groups it needs.

The embedded backends are the default; naming a real one (`CFD_KAFKA_BOOTSTRAP`, `CFD_REDIS_URL`,
`CFD_DATABASE_URL`, `CFD_SMTP_HOST`, `CFD_PRICE_SOURCE=backpack`) switches that concern to it.
A bad value stops start-up with a `SettingsError` naming the variable and what is wrong.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import logging
import math
import os
import re
import secrets
import stat
import time
import typing
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec

from shared.errors import SettingsError

log = logging.getLogger(__name__)

WEAK_SECRETS = {"secret", "changeme", "change-me", "password", "jwt-secret", "dev", "test"}
MIN_SECRET_LENGTH = 32
MIN_SECRET_BITS = 128  # by `estimated_entropy_bits`; enforced on secrets in prod mode
SECRET_HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"


class RateLimit(msgspec.Struct, frozen=True):
    """At most `count` in a window of `seconds`; written `COUNT/WINDOW`, e.g. `20/1h`."""

    count: int
    seconds: int

    def __str__(self) -> str:
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if self.seconds % size == 0:
                return f"{self.count}/{self.seconds // size}{unit}"
        return f"{self.count}/{self.seconds}s"


class Env:
    """Where a settings field comes from: the environment variables that set it, in order of precedence (the
    `CFD_*` one first), and how their text becomes its value (raising `ValueError` with what is wrong)."""

    __slots__ = ("names", "parse")

    def __init__(self, parse: Callable[[str], Any], *names: str) -> None:
        self.parse = parse
        self.names = names


class Group(msgspec.Struct, frozen=True, kw_only=True):
    """The settings of one concern, a field of `Settings`: a service or backend is handed only the groups it
    needs. Each field is declared once, with the variables that set it and the rules of its value (`Env`);
    a field without an `Env` is worked out by `load_settings` from the others."""


class BusSettings(Group, frozen=True, kw_only=True):
    """The bus: Kafka when `bootstrap` is set, else in-process; topic names, request timeout, retention."""

    bootstrap: Annotated[str | None, Env(_bootstrap, "CFD_KAFKA_BOOTSTRAP", "KAFKA_BROKER")] = None
    partitions: Annotated[int, Env(_int(1, 256), "CFD_KAFKA_PARTITIONS")] = 6
    topic_prefix: Annotated[str, Env(_text, "CFD_TOPIC_PREFIX")] = ""
    request_timeout: Annotated[float, Env(_float(0.1, 120), "CFD_REQUEST_TIMEOUT")] = 5.0
    # Retention: what the in-process bus keeps per partition beyond what its readers still need, and how
    # long Kafka keeps each kind of topic (see docs/architecture.md, "Topics and retention").
    retention_messages: Annotated[int, Env(_int(1, 1_000_000), "CFD_BUS_RETENTION_MESSAGES")] = 1000
    retention_seconds: Annotated[float, Env(_float(0, 86400), "CFD_BUS_RETENTION_SECONDS")] = 30.0
    retention_bytes: Annotated[int, Env(_int(1024, 1 << 30), "CFD_BUS_RETENTION_BYTES")] = 1 << 20
    kafka_retention_prices_seconds: Annotated[int, Env(_int(60, 365 * 86400), "CFD_KAFKA_RETENTION_PRICES_SECONDS")] = (
        15 * 60)
    kafka_retention_requests_seconds: Annotated[
        int, Env(_int(60, 365 * 86400), "CFD_KAFKA_RETENTION_REQUESTS_SECONDS")] = 3600
    kafka_retention_events_seconds: Annotated[int, Env(_int(60, 365 * 86400), "CFD_KAFKA_RETENTION_EVENTS_SECONDS")] = (
        86400)

    def topic(self, name: str) -> str:
        """The bus topic `name`, with this deployment's prefix."""
        return f"{self.topic_prefix}{name}"


class CacheSettings(Group, frozen=True, kw_only=True):
    """The cache: Redis when `url` is set, else in-process."""

    url: Annotated[str | None, Env(_url("redis", "rediss", "unix"), "CFD_REDIS_URL", "REDIS_URL")] = None
    max_connections: Annotated[int, Env(_int(1, 10_000), "CFD_REDIS_MAX_CONNECTIONS")] = 64
    pool_timeout: Annotated[float, Env(_float(0.01, 120), "CFD_REDIS_POOL_TIMEOUT")] = 5.0
    # Where the in-process cache keeps its keys across a clean restart: in the data directory in dev mode.
    snapshot: Path | None = None


class DatabaseSettings(Group, frozen=True, kw_only=True):
    """The database: SQLite (by default a file in the data directory) or PostgreSQL."""

    url: Annotated[str, Env(_database_url, "CFD_DATABASE_URL", "DATABASE_URL")] = ""

    @property
    def uses_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


class MailSettings(Group, frozen=True, kw_only=True):
    """Outgoing mail: SMTP when `host` is set, else .eml files in `outbox_dir`."""

    host: Annotated[str | None, Env(_text, "CFD_SMTP_HOST")] = None
    port: Annotated[int, Env(_int(1, 65535), "CFD_SMTP_PORT")] = 587
    user: Annotated[str | None, Env(_text, "CFD_SMTP_USER")] = None
    password: Annotated[str | None, Env(str, "CFD_SMTP_PASSWORD")] = None
    security: Annotated[str, Env(_choice("starttls", "tls", "none"), "CFD_SMTP_SECURITY")] = (
        "starttls")  # starttls | tls | none
    sender: Annotated[str, Env(_text, "CFD_MAIL_FROM")] = "CFD Broker <no-reply@cfd-broker.local>"
    outbox_dir: Path = Path(".cfd/outbox")  # `outbox` in the data directory


class HttpSettings(Group, frozen=True, kw_only=True):
    """Where the REST API and the WebSocket feed listen, what they advertise, whom they trust."""

    host: Annotated[str, Env(_text, "CFD_HTTP_HOST")] = "127.0.0.1"
    port: Annotated[int, Env(_int(0, 65535), "CFD_HTTP_PORT", "PORT")] = 8000
    ws_port: Annotated[int, Env(_int(0, 65535), "CFD_WS_PORT", "WS_PORT")] = 8080
    ws_public_url: Annotated[str | None, Env(_url("ws", "wss"), "CFD_WS_PUBLIC_URL")] = None
    # A process's Prometheus metrics on a port of their own (0: none), for a dbproc or poller running alone.
    metrics_port: Annotated[int, Env(_int(0, 65535), "CFD_METRICS_PORT")] = 0
    # API-server processes sharing the REST and WebSocket ports (`cfd server --workers`); more than one needs
    # Kafka and Redis.
    workers: Annotated[int, Env(_int(1, 64), "CFD_SERVER_WORKERS")] = 1
    # Bind both ports with SO_REUSEPORT: set in each worker of a `--workers` group, never by a variable.
    reuse_port: bool = False
    allowed_origins: Annotated[tuple[str, ...], Env(_origins, "CFD_ALLOWED_ORIGINS")] = ()
    # The client address honours X-Forwarded-For only from these.
    trusted_proxies: Annotated[tuple[str, ...], Env(_networks, "CFD_TRUSTED_PROXIES")] = ()


class AuthSettings(Group, frozen=True, kw_only=True):
    """Tokens, sessions, passwords, the operator token, and the attempt limits (docs/api.md, "Attempt limits")."""

    jwt_secret: Annotated[str, Env(str, "CFD_JWT_SECRET", "JWT_SECRET")] = ""
    admin_token: Annotated[str, Env(str, "CFD_ADMIN_TOKEN")] = ""
    jwt_ttl_seconds: Annotated[int, Env(_int(60, 30 * 86400), "CFD_JWT_TTL_SECONDS")] = 3600
    cookie_secure: Annotated[bool, Env(_bool, "CFD_COOKIE_SECURE")] = False
    bcrypt_rounds: Annotated[int, Env(_int(4, 16), "CFD_BCRYPT_ROUNDS")] = 12

    signup_limit_per_email: Annotated[RateLimit, Env(_rate_limit, "CFD_SIGNUP_LIMIT_PER_EMAIL")] = RateLimit(1, 60)
    signup_limit_per_ip: Annotated[RateLimit, Env(_rate_limit, "CFD_SIGNUP_LIMIT_PER_IP")] = RateLimit(20, 3600)
    verify_limit_per_ip: Annotated[RateLimit, Env(_rate_limit, "CFD_VERIFY_LIMIT_PER_IP")] = RateLimit(30, 3600)
    code_limit_per_email: Annotated[RateLimit, Env(_rate_limit, "CFD_CODE_LIMIT_PER_EMAIL")] = RateLimit(15, 86400)
    signin_limit_per_ip: Annotated[RateLimit, Env(_rate_limit, "CFD_SIGNIN_LIMIT_PER_IP")] = RateLimit(100, 3600)
    signin_limit_per_email_ip: Annotated[RateLimit, Env(_rate_limit, "CFD_SIGNIN_LIMIT_PER_EMAIL_IP")] = (
        RateLimit(10, 900))
    signin_limit_per_email: Annotated[tuple[RateLimit, ...], Env(_rate_limits, "CFD_SIGNIN_LIMIT_PER_EMAIL")] = (
        (RateLimit(10, 900), RateLimit(20, 3600), RateLimit(50, 86400)))

    # Request limits per user or API key (docs/api.md, "Rate limits"): reads, and writes (trading and the rest).
    rate_limit_reads: Annotated[RateLimit, Env(_rate_limit, "CFD_RATE_LIMIT_READS")] = RateLimit(300, 10)
    rate_limit_trading: Annotated[RateLimit, Env(_rate_limit, "CFD_RATE_LIMIT_TRADING")] = RateLimit(100, 10)
    rate_limit_subscribe: Annotated[RateLimit, Env(_rate_limit, "CFD_RATE_LIMIT_SUBSCRIBE")] = RateLimit(30, 10)
    # Steps of a lockstep replay (`POST /replay/step`), a class of their own: a backtest steps thousands of times.
    rate_limit_replay: Annotated[RateLimit, Env(_rate_limit, "CFD_RATE_LIMIT_REPLAY")] = RateLimit(10_000, 10)


class PriceSettings(Group, frozen=True, kw_only=True):
    """Where prices come from, when a market is stale, and the candle history a starting poller hands over."""

    source: Annotated[str, Env(_choice("sim", "backpack", "replay"), "CFD_PRICE_SOURCE")] = "sim"
    backpack_ws_url: Annotated[str, Env(_url("ws", "wss"), "CFD_BACKPACK_WS_URL")] = "wss://ws.backpack.exchange/"
    backpack_rest_url: Annotated[str | None, Env(_url("http", "https"), "CFD_BACKPACK_REST_URL")] = None
    replay_file: Annotated[Path | None, Env(Path, "CFD_REPLAY_FILE")] = None
    replay_speed: Annotated[float, Env(_float(0.01, 10_000), "CFD_REPLAY_SPEED")] = 1.0
    # A lockstep replay publishes its next ticks only when a bot steps it (`POST /api/v1/replay/step`); the
    # server, the dbproc and the poller all read it (docs/bots.md, "Reproducible runs").
    replay_lockstep: Annotated[bool, Env(_bool, "CFD_REPLAY_LOCKSTEP")] = False
    sim_seed: Annotated[int | None, Env(_int(0, 2**63), "CFD_SIM_SEED")] = None
    sim_tick_hz: Annotated[float, Env(_float(0.1, 10_000), "CFD_SIM_TICK_HZ")] = 4.0
    stale_after_seconds: Annotated[float, Env(_float(0.5, 3600), "CFD_STALE_AFTER_SECONDS")] = 10.0
    candle_history_hours: Annotated[int, Env(_int(0, 720), "CFD_CANDLE_HISTORY_HOURS")] = 24
    poller_resume_timeout: Annotated[float, Env(_float(0.1, 60), "CFD_POLLER_RESUME_TIMEOUT")] = 5.0

    @property
    def lockstep(self) -> bool:
        """Whether prices come from a lockstep replay (which moves only when stepped)."""
        return self.source == "replay" and self.replay_lockstep

    def describe(self) -> str:
        """`sim`, `backpack`, or the replay: its file and how it plays."""
        if self.source != "replay" or self.replay_file is None:
            return self.source
        how = "lockstep: a step at a time" if self.replay_lockstep else f"at {self.replay_speed:g}× speed"
        return f"replay of {self.replay_file.name} ({how})"

    @property
    def quotes_stale_after(self) -> float:
        """Seconds without a tick after which a market's quote is stale. Never, in a lockstep replay: a paused
        replay is not a quiet feed, and a bot that thinks for a minute between steps must still trade."""
        return math.inf if self.lockstep else self.stale_after_seconds


class TradingSettings(Group, frozen=True, kw_only=True):
    """Accounts and the dbproc's trading."""

    demo_deposit: Annotated[Decimal, Env(_decimal, "CFD_DEMO_DEPOSIT")] = Decimal("10000")
    quote_wait_seconds: Annotated[float, Env(_float(0, 600), "CFD_DBPROC_QUOTE_WAIT_SECONDS")] = 10.0
    # The daily rollover at which open positions pay (or get) their overnight financing: HH:MM, UTC
    # (docs/configuration.md, "Trading costs").
    financing_rollover: Annotated[str, Env(_time_of_day, "CFD_FINANCING_ROLLOVER")] = "00:00"

    @property
    def financing_rollover_minute(self) -> int:
        """The financing rollover as minutes after 00:00 UTC."""
        hours, minutes = self.financing_rollover.split(":")
        return int(hours) * 60 + int(minutes)


class RetentionSettings(Group, frozen=True, kw_only=True):
    """Retention in the database (docs/operations.md, "What is kept, and for how long"): the dbproc purges in
    small batches every `interval_seconds`. Positions and ledger entries are kept forever."""

    command_hours: Annotated[int, Env(_int(1, 100_000), "CFD_COMMAND_RETENTION_HOURS")] = 48
    account_event_hours: Annotated[int, Env(_int(1, 100_000), "CFD_ACCOUNT_EVENT_RETENTION_HOURS")] = 72
    candle_minute_days: Annotated[int, Env(_int(0, 100_000), "CFD_CANDLE_MINUTE_RETENTION_DAYS")] = (
        30)  # 0: kept forever
    interval_seconds: Annotated[float, Env(_float(1, 86_400), "CFD_RETENTION_INTERVAL_SECONDS")] = 300.0


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a service needs to know about its environment: the process-wide fields, and one group
    (`Group`) per concern."""

    env: Annotated[str, Env(_choice("dev", "prod", "test"), "CFD_ENV")] = "dev"
    instance_id: Annotated[str, Env(_text, "CFD_INSTANCE_ID")] = ""
    data_dir: Annotated[Path, Env(Path, "CFD_DATA_DIR")] = Path(".cfd")
    log_level: Annotated[str, Env(_choice("debug", "info", "warning", "error"), "CFD_LOG_LEVEL")] = "INFO"
    log_format: Annotated[str, Env(_choice("text", "json"), "CFD_LOG_FORMAT")] = "text"

    bus: BusSettings = msgspec.field(default_factory=BusSettings)
    cache: CacheSettings = msgspec.field(default_factory=CacheSettings)
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    mail: MailSettings = msgspec.field(default_factory=MailSettings)
    http: HttpSettings = msgspec.field(default_factory=HttpSettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    prices: PriceSettings = msgspec.field(default_factory=PriceSettings)
    trading: TradingSettings = msgspec.field(default_factory=TradingSettings)
    retention: RetentionSettings = msgspec.field(default_factory=RetentionSettings)

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    @property
    def admin_token_file(self) -> Path:
        """Where a dev-mode server writes its generated operator token for the CLI on the same machine."""
        return self.data_dir / "admin-token"

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes`: a process-wide field by name, a group's fields as a mapping under the group's
        name (`prices={"source": "replay"}`), its other fields kept."""
        for name, value in changes.items():
            if isinstance(value, Mapping):
                changes[name] = msgspec.structs.replace(getattr(self, name), **value)
        return msgspec.structs.replace(self, **changes)

    def describe_backends(self) -> dict[str, str]:
        """A one-word-per-concern summary for logs and `cfd doctor`."""
        return {
            "bus": f"kafka {self.bus.bootstrap}" if self.bus.bootstrap else "in-process",
            "cache": f"redis {_redact(self.cache.url)}" if self.cache.url else "in-process",
            "database": _redact(self.database.url),
            "mail": f"smtp {self.mail.host}:{self.mail.port}" if self.mail.host else f"outbox {self.mail.outbox_dir}",
            "prices": self.prices.describe(),
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


def _time_of_day(value: str) -> str:
    """`HH:MM` (UTC, 24-hour clock), written with two digits each."""
    match = re.fullmatch(r"([0-9]{1,2}):([0-9]{2})", value.strip())
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f"must be a time of day in UTC written HH:MM, like 00:00 or 22:00, got {value!r}")
    return f"{int(match.group(1)):02d}:{match.group(2)}"


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


def _origins(value: str) -> tuple[str, ...]:
    """`https://app.example.com, http://localhost:3000` → normalised origins (lower case, no default port)."""
    origins = []
    for item in value.replace(",", " ").split():
        parts = urlsplit(item)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if (parts.scheme not in ("http", "https") or not parts.hostname or port == -1 or parts.username
                or parts.password or parts.path not in ("", "/") or parts.query or parts.fragment):
            raise ValueError(f"must list origins such as https://app.example.com (scheme, host and port only), "
                             f"got {item!r}")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        default = {"http": 80, "https": 443}[parts.scheme]
        origins.append(f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else ""))
    return tuple(dict.fromkeys(origins))


def _database_url(value: str) -> str:
    value = value.strip()
    if value.startswith("postgres://"):
        value = "postgresql://" + value.removeprefix("postgres://")
    return _url("sqlite", "postgresql")(value)


_WINDOW = re.compile(r"^([0-9]+)\s*([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _rate_limit(value: str) -> RateLimit:
    count, slash, window = value.strip().lower().partition("/")
    match = _WINDOW.match(window.strip())
    if not slash or not count.strip().isdigit() or not match:
        raise ValueError(f"must be COUNT/WINDOW, like 20/1h (units s, m, h, d), got {value!r}")
    limit = RateLimit(int(count), int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    if not 1 <= limit.count <= 1_000_000_000 or not 1 <= limit.seconds <= 30 * 86400:
        raise ValueError(f"must allow 1 or more in a window of 1 s to 30 d, got {value!r}")
    return limit


def _rate_limits(value: str) -> tuple[RateLimit, ...]:
    limits = tuple(_rate_limit(part) for part in value.split(",") if part.strip())
    if not limits:
        raise ValueError("must list at least one COUNT/WINDOW, like 10/15m,50/1d")
    return limits


def _networks(value: str) -> tuple[str, ...]:
    networks = []
    for part in value.split(","):
        if part.strip():
            try:
                networks.append(str(ipaddress.ip_network(part.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"must list IP addresses or networks (CIDR), got {part.strip()!r}") from None
    return tuple(networks)


def _bootstrap(value: str) -> str:
    servers = [part.strip() for part in value.split(",") if part.strip()]
    if not servers:
        raise ValueError("must list at least one host:port")
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"must be host:port[,host:port...], got {server!r}")
    return ",".join(servers)




@functools.cache
def _groups() -> dict[str, type[Group]]:
    """The groups of `Settings`, by field name, in declaration order."""
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in msgspec.structs.fields(Settings)
            if isinstance(hints[f.name], type) and issubclass(hints[f.name], Group)}


@functools.cache
def _fields() -> tuple[tuple[str | None, str, Env], ...]:
    """Each settings field that a variable sets, with its group (None for a process-wide one) and its `Env`,
    in declaration order."""
    found = []
    structs: list[tuple[str | None, type[msgspec.Struct]]] = [(None, Settings), *_groups().items()]
    for group, struct in structs:
        hints = typing.get_type_hints(struct, include_extras=True)
        for field in msgspec.structs.fields(struct):
            env = next((m for m in getattr(hints[field.name], "__metadata__", ()) if isinstance(m, Env)), None)
            if env is not None:
                found.append((group, field.name, env))
    return tuple(found)


def environment_variables() -> dict[str, tuple[str, ...]]:
    """Each settings field (`group.field` for a group's) with the environment variables that set it, in order
    of precedence (the `CFD_*` one first): for tools that hand settings to another process."""
    return {f"{group}.{field}" if group else field: env.names for group, field, env in _fields()}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read settings from `environ` (default: the process environment); keyword overrides win: a process-wide
    field by name, a group's fields as a mapping under the group's name (`http={"port": 0}`)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    groups: dict[str, dict[str, Any]] = {name: {} for name in _groups()}
    for group, field, env in _fields():
        for name in env.names:
            raw = environ.get(name)
            if raw is None or raw.strip() == "":
                continue
            try:
                (values if group is None else groups[group])[field] = env.parse(raw)
            except ValueError as exc:
                raise SettingsError(f"{name} {exc}") from None
            break
    for key, value in overrides.items():
        if key in groups:
            groups[key].update(value)
        else:
            values[key] = value
    values.setdefault("instance_id", uuid.uuid4().hex[:12])
    data_dir = Path(values.get("data_dir", ".cfd"))
    values["data_dir"] = data_dir
    groups["database"].setdefault("url", f"sqlite:///{data_dir / 'cfd.sqlite3'}")
    groups["mail"].setdefault("outbox_dir", data_dir / "outbox")
    groups["cache"].setdefault("snapshot", data_dir / "cache-snapshot" if values.get("env", "dev") == "dev" else None)
    if groups["prices"].get("source") == "replay" and not groups["prices"].get("replay_file"):
        raise SettingsError("CFD_REPLAY_FILE must name a JSONL file when CFD_PRICE_SOURCE=replay")
    if groups["prices"].get("replay_lockstep") and groups["prices"].get("source", "sim") != "replay":
        raise SettingsError("CFD_REPLAY_LOCKSTEP needs CFD_PRICE_SOURCE=replay (and CFD_REPLAY_FILE)")
    values.update({name: struct(**groups[name]) for name, struct in _groups().items()})
    settings = Settings(**values)
    return _checked_secret(settings)


# --- the data directory: owner-only, whatever the umask -------------------------------------------------

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Make the directory `path` owner-only (0700), and any missing parent with it. An existing one that
    others can read or enter is tightened, with a warning (or only warned about, when it is not ours)."""
    missing: list[Path] = []
    here = path
    while not here.exists() and here != here.parent:
        missing.append(here)
        here = here.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:  # another process made it a moment ago
            pass
        else:
            directory.chmod(PRIVATE_DIR_MODE)  # mkdir's mode is filtered through the umask
    if not missing:
        _tighten(path, PRIVATE_DIR_MODE, "directory")
    return path


def private_file(path: Path, *, create: bool = True) -> Path:
    """Make the file `path` owner-only (0600) without touching its content; it is created empty if missing,
    unless `create` is false (then a missing file is left missing)."""
    if create:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        except FileExistsError:
            pass
        else:
            os.fchmod(fd, PRIVATE_FILE_MODE)  # the open's mode is filtered through the umask
            os.close(fd)
    try:
        _tighten(path, PRIVATE_FILE_MODE, "file")
    except FileNotFoundError:
        if create:
            raise
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write a new owner-only (0600) file; never replaces an existing one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "wb", closefd=False) as out:
            out.write(data)
    finally:
        os.close(fd)


def _tighten(path: Path, mode: int, kind: str) -> None:
    info = path.stat()
    if stat.S_IMODE(info.st_mode) & 0o077 == 0:
        return
    loose = f"{stat.S_IMODE(info.st_mode):o}"
    if info.st_uid != os.geteuid():
        log.warning("the %s %s is readable by other users (mode %s) and belongs to someone else: it holds "
                    "password hashes, codes or secrets; make it owner-only (chmod %o)", kind, path, loose, mode)
        return
    os.chmod(path, mode)
    log.warning("the %s %s was readable by other users (mode %s); made it owner-only (%o)", kind, path, loose, mode)


def local_secret(path: Path, nbytes: int = 32) -> str:
    """A random secret kept in `path` (owner-only), made on first use; processes sharing the file share it."""
    for _ in range(50):
        if path.exists() and (text := path.read_text().strip()):
            return text
        private_dir(path.parent)
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


def estimated_entropy_bits(secret: str) -> float:
    """A conservative estimate of the randomness in `secret`: its length times the Shannon entropy of its
    symbols, or of the steps between neighbouring symbols if that is lower (so `abcd…` and `0101…` count
    as the patterns they are). Random secrets score close to their real strength; patterns score low."""

    def shannon(items: Sequence[object]) -> float:
        counts = Counter(items)
        return -sum(n / len(items) * math.log2(n / len(items)) for n in counts.values()) * len(items)

    if len(secret) < 2:
        return 0.0
    steps = [ord(b) - ord(a) for a, b in itertools.pairwise(secret)]
    return max(0.0, min(shannon(secret), shannon(steps)))


def _check_entropy(name: str, secret: str) -> None:
    bits = estimated_entropy_bits(secret)
    if bits < MIN_SECRET_BITS:
        raise SettingsError(f"{name} has too little entropy for prod mode (about {bits:.0f} bits by estimate, "
                            f"at least {MIN_SECRET_BITS} needed: it repeats or follows a pattern); {SECRET_HINT}")


def _checked_secret(settings: Settings) -> Settings:
    secret = settings.auth.jwt_secret
    weak = len(secret) < MIN_SECRET_LENGTH or secret.lower() in WEAK_SECRETS
    if not weak:
        if settings.env == "prod":
            _check_entropy("CFD_JWT_SECRET", secret)
            if settings.auth.admin_token:
                _check_entropy("CFD_ADMIN_TOKEN", settings.auth.admin_token)
        return settings
    if settings.is_dev:
        # The data directory's own secret: sessions outlive a restart of the local platform, as the TUI's
        # saved session expects.
        return settings.replace(auth={"jwt_secret": local_secret(settings.data_dir / "jwt-secret", 48)})
    if settings.env == "test":
        return settings.replace(auth={"jwt_secret": secrets.token_urlsafe(48)})
    if not secret:
        raise SettingsError(f"CFD_JWT_SECRET must be set outside dev mode (CFD_ENV={settings.env}); {SECRET_HINT}")
    raise SettingsError(f"CFD_JWT_SECRET is too weak (at least {MIN_SECRET_LENGTH} random characters); {SECRET_HINT}")
