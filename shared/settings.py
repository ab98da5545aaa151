"""Settings for every service, read from `CFD_*` environment variables.

The embedded backends are the default; naming a real one (`CFD_KAFKA_BOOTSTRAP`, `CFD_REDIS_URL`,
`CFD_DATABASE_URL`, `CFD_SMTP_HOST`, `CFD_PRICE_SOURCE=backpack`) switches that concern to it.
A bad value stops start-up with a `SettingsError` naming the variable and what is wrong.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import math
import os
import re
import secrets
import stat
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
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
    allowed_origins: tuple[str, ...] = ()

    jwt_secret: str = ""
    admin_token: str = ""
    jwt_ttl_seconds: int = 3600
    cookie_secure: bool = False
    bcrypt_rounds: int = 12

    # Attempt limits (see docs/api.md, "Attempt limits"); the client address honours X-Forwarded-For only
    # from `trusted_proxies`.
    trusted_proxies: tuple[str, ...] = ()
    signup_limit_per_email: RateLimit = RateLimit(1, 60)
    signup_limit_per_ip: RateLimit = RateLimit(20, 3600)
    verify_limit_per_ip: RateLimit = RateLimit(30, 3600)
    code_limit_per_email: RateLimit = RateLimit(15, 86400)
    signin_limit_per_ip: RateLimit = RateLimit(100, 3600)
    signin_limit_per_email_ip: RateLimit = RateLimit(10, 900)
    signin_limit_per_email: tuple[RateLimit, ...] = (RateLimit(10, 900), RateLimit(20, 3600), RateLimit(50, 86400))

    request_timeout: float = 5.0
    demo_deposit: Decimal = Decimal("10000")

    price_source: str = "sim"
    backpack_ws_url: str = "wss://ws.backpack.exchange/"
    backpack_rest_url: str | None = None
    replay_file: Path | None = None
    replay_speed: float = 1.0
    sim_seed: int | None = None
    sim_tick_hz: float = 4.0
    stale_after_seconds: float = 10.0
    candle_history_hours: int = 24
    poller_resume_timeout: float = 5.0
    dbproc_quote_wait_seconds: float = 10.0

    # Retention: what the in-process bus keeps per partition beyond what its readers still need, and how
    # long Kafka keeps each kind of topic (see docs/architecture.md, "Topics and retention").
    bus_retention_messages: int = 1000
    bus_retention_seconds: float = 30.0
    bus_retention_bytes: int = 1 << 20
    kafka_retention_prices_seconds: int = 15 * 60
    kafka_retention_requests_seconds: int = 3600
    kafka_retention_events_seconds: int = 86400
    # Retention in the database (docs/operations.md, "What is kept, and for how long"): the dbproc purges
    # in small batches every `retention_interval_seconds`. Positions and ledger entries are kept forever.
    command_retention_hours: int = 48
    candle_minute_retention_days: int = 30  # 0: kept forever
    retention_interval_seconds: float = 300.0

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
    ("allowed_origins", _origins, ("CFD_ALLOWED_ORIGINS",)),
    ("jwt_secret", str, ("CFD_JWT_SECRET", "JWT_SECRET")),
    ("admin_token", str, ("CFD_ADMIN_TOKEN",)),
    ("jwt_ttl_seconds", _int(60, 30 * 86400), ("CFD_JWT_TTL_SECONDS",)),
    ("cookie_secure", _bool, ("CFD_COOKIE_SECURE",)),
    ("bcrypt_rounds", _int(4, 16), ("CFD_BCRYPT_ROUNDS",)),
    ("trusted_proxies", _networks, ("CFD_TRUSTED_PROXIES",)),
    ("signup_limit_per_email", _rate_limit, ("CFD_SIGNUP_LIMIT_PER_EMAIL",)),
    ("signup_limit_per_ip", _rate_limit, ("CFD_SIGNUP_LIMIT_PER_IP",)),
    ("verify_limit_per_ip", _rate_limit, ("CFD_VERIFY_LIMIT_PER_IP",)),
    ("code_limit_per_email", _rate_limit, ("CFD_CODE_LIMIT_PER_EMAIL",)),
    ("signin_limit_per_ip", _rate_limit, ("CFD_SIGNIN_LIMIT_PER_IP",)),
    ("signin_limit_per_email_ip", _rate_limit, ("CFD_SIGNIN_LIMIT_PER_EMAIL_IP",)),
    ("signin_limit_per_email", _rate_limits, ("CFD_SIGNIN_LIMIT_PER_EMAIL",)),
    ("request_timeout", _float(0.1, 120), ("CFD_REQUEST_TIMEOUT",)),
    ("demo_deposit", _decimal, ("CFD_DEMO_DEPOSIT",)),
    ("price_source", _choice("sim", "backpack", "replay"), ("CFD_PRICE_SOURCE",)),
    ("backpack_ws_url", _url("ws", "wss"), ("CFD_BACKPACK_WS_URL",)),
    ("backpack_rest_url", _url("http", "https"), ("CFD_BACKPACK_REST_URL",)),
    ("replay_file", Path, ("CFD_REPLAY_FILE",)),
    ("replay_speed", _float(0.01, 10_000), ("CFD_REPLAY_SPEED",)),
    ("sim_seed", _int(0, 2**63), ("CFD_SIM_SEED",)),
    ("sim_tick_hz", _float(0.1, 10_000), ("CFD_SIM_TICK_HZ",)),
    ("stale_after_seconds", _float(0.5, 3600), ("CFD_STALE_AFTER_SECONDS",)),
    ("candle_history_hours", _int(0, 720), ("CFD_CANDLE_HISTORY_HOURS",)),
    ("poller_resume_timeout", _float(0.1, 60), ("CFD_POLLER_RESUME_TIMEOUT",)),
    ("dbproc_quote_wait_seconds", _float(0, 600), ("CFD_DBPROC_QUOTE_WAIT_SECONDS",)),
    ("bus_retention_messages", _int(1, 1_000_000), ("CFD_BUS_RETENTION_MESSAGES",)),
    ("bus_retention_seconds", _float(0, 86400), ("CFD_BUS_RETENTION_SECONDS",)),
    ("bus_retention_bytes", _int(1024, 1 << 30), ("CFD_BUS_RETENTION_BYTES",)),
    ("kafka_retention_prices_seconds", _int(60, 365 * 86400), ("CFD_KAFKA_RETENTION_PRICES_SECONDS",)),
    ("kafka_retention_requests_seconds", _int(60, 365 * 86400), ("CFD_KAFKA_RETENTION_REQUESTS_SECONDS",)),
    ("kafka_retention_events_seconds", _int(60, 365 * 86400), ("CFD_KAFKA_RETENTION_EVENTS_SECONDS",)),
    ("command_retention_hours", _int(1, 100_000), ("CFD_COMMAND_RETENTION_HOURS",)),
    ("candle_minute_retention_days", _int(0, 100_000), ("CFD_CANDLE_MINUTE_RETENTION_DAYS",)),
    ("retention_interval_seconds", _float(1, 86_400), ("CFD_RETENTION_INTERVAL_SECONDS",)),
]


def environment_variables() -> dict[str, tuple[str, ...]]:
    """Each settings field with the environment variables that set it, in order of precedence (the `CFD_*`
    one first): for tools that hand settings to another process."""
    return {field: names for field, _, names in _FIELDS}


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
    secret = settings.jwt_secret
    weak = len(secret) < MIN_SECRET_LENGTH or secret.lower() in WEAK_SECRETS
    if not weak:
        if settings.env == "prod":
            _check_entropy("CFD_JWT_SECRET", secret)
            if settings.admin_token:
                _check_entropy("CFD_ADMIN_TOKEN", settings.admin_token)
        return settings
    if settings.is_dev:
        # The data directory's own secret: sessions outlive a restart of the local platform, as the TUI's
        # saved session expects.
        return msgspec.structs.replace(settings, jwt_secret=local_secret(settings.data_dir / "jwt-secret", 48))
    if settings.env == "test":
        return msgspec.structs.replace(settings, jwt_secret=secrets.token_urlsafe(48))
    if not secret:
        raise SettingsError(f"CFD_JWT_SECRET must be set outside dev mode (CFD_ENV={settings.env}); {SECRET_HINT}")
    raise SettingsError(f"CFD_JWT_SECRET is too weak (at least {MIN_SECRET_LENGTH} random characters); {SECRET_HINT}")
