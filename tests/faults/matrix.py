"""The fault matrix: the platform as separate processes (two servers, two dbprocs, the poller) under a trading
load, while one process is SIGKILLed or one backend is restarted; what the clients saw, and what the database
holds afterwards.

A `Cluster` runs the processes and restarts any that exits, as a supervisor would (compose's `restart:
unless-stopped`). `Trader`s are good clients: every command carries an `Idempotency-Key`; a 503, a 504, a 429
or a lost connection is retried with the same key (after the `Retry-After`, at most `RETRY_CAP` seconds, on the
other server after a lost connection); a 401 signs in again first. `Matrix.run(scenario)` plays one scenario
and checks the result against the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import httpx
from helpers import ROOT, Services, child_env, free_port

from shared.markets import MARKETS

TRADERS = 6
PACE = 0.1  # seconds a trader waits between two commands
WARMUP = 3.0  # seconds of load before the fault
SETTLE = 5.0  # seconds without a disrupted request that count as recovered
SLOW = 2.0  # a request slower than this counts as disrupted, like a failed one
RETRY_CAP = 1.0  # a client waits the Retry-After it is given, but at most this long
RECOVERY_LIMIT = 60.0  # stop waiting for recovery after this long
COMMAND_DEADLINE = 90.0  # a client gives a command up after this long
PASSWORD = "correct horse battery"
SYMBOLS = ("SOL_USDC", "BTC_USDC", "ETH_USDC", "DOGE_USDC", "BNB_USDC")


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    kill: str | None = None  # the process to SIGKILL
    restart: str | None = None  # the backend to restart with scripts/services.sh


SCENARIOS = [
    Scenario("poller-kill", "SIGKILL the poller", kill="poller"),
    Scenario("server-kill", "SIGKILL one of two servers", kill="server-1"),
    Scenario("dbproc-kill", "SIGKILL one of two dbprocs", kill="dbproc-1"),
    Scenario("redis-restart", "restart Redis", restart="redis"),
    Scenario("postgres-restart", "restart PostgreSQL", restart="postgres"),
    Scenario("kafka-restart", "restart Kafka", restart="kafka"),
]


# --- the platform's processes ----------------------------------------------------------------------------


class ServiceProcess:
    """One `cfd` service process; its output is appended to `log` across restarts."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log = log
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "cfd_cli.main", *self.args], env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            cwd=ROOT, start_new_session=True)
        self.started_at = time.monotonic()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_lines(self) -> int:
        if not self.log.exists():
            return 0
        with self.log.open("rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 16), b""))


class Cluster:
    """Two servers, two dbprocs and the poller on the backends of `settings`, each a separate process,
    restarted at once whenever it exits."""

    def __init__(self, settings: Any, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self.server_ports = [free_port(), free_port()]
        base = child_env(settings, CFD_LOG_LEVEL="info", COLUMNS="200", NO_COLOR="1")
        logs = workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, ServiceProcess] = {}
        for n in (1, 2):
            self.processes[f"dbproc-{n}"] = ServiceProcess(f"dbproc-{n}", ["dbproc"], base, logs / f"dbproc-{n}.log")
        for n, port in enumerate(self.server_ports, 1):
            env = {**base, "CFD_HTTP_PORT": str(port), "CFD_WS_PORT": "0"}
            self.processes[f"server-{n}"] = ServiceProcess(f"server-{n}", ["server"], env, logs / f"server-{n}.log")
        self.processes["poller"] = ServiceProcess("poller", ["poller"], base, logs / "poller.log")
        self.unplanned_exits: Counter[str] = Counter()
        self._killed: set[str] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def server_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.server_ports]

    async def start(self) -> None:
        migrate = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "cfd_cli.main", "db", "migrate"],
            env=self.processes["dbproc-1"].env, capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        for process in self.processes.values():
            process.start()
        self._supervisor = asyncio.ensure_future(self._supervise())
        await self.wait_whole(timeout=120)

    async def _supervise(self) -> None:
        while not self._stopping:
            for name, process in self.processes.items():
                if not process.running and not self._stopping and time.monotonic() - process.started_at > 1:
                    if name in self._killed:
                        self._killed.discard(name)
                    else:
                        self.unplanned_exits[name] += 1
                    process.start()
            await asyncio.sleep(0.1)

    def kill(self, name: str) -> None:
        """SIGKILL one process; the supervisor starts it again."""
        self._killed.add(name)
        self.processes[name].kill()

    async def stop(self) -> None:
        self._stopping = True
        if self._supervisor is not None:
            await self._supervisor
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in self.processes.values()))

    def log_lines(self) -> dict[str, int]:
        return {name: p.log_lines() for name, p in self.processes.items()}

    async def wait_whole(self, timeout: float = RECOVERY_LIMIT) -> None:
        """Until every process runs, both servers answer, and both dbprocs share the request partitions."""
        deadline = time.monotonic() + timeout
        problem = "not checked yet"
        while time.monotonic() < deadline:
            problem = await self._problem()
            if problem is None:
                return
            await asyncio.sleep(0.25)
        raise AssertionError(f"the platform did not become whole within {timeout:.0f} s: {problem}")

    async def _problem(self) -> str | None:
        stopped = [name for name, p in self.processes.items() if not p.running]
        if stopped:
            return f"not running: {', '.join(stopped)}"
        async with httpx.AsyncClient(timeout=2) as client:
            for url in self.server_urls:
                try:
                    if (await client.get(url + "/health")).status_code != 200:
                        return f"{url} is not healthy"
                except httpx.HTTPError as exc:
                    return f"{url}: {exc!r}"
        members = await self.dbproc_group_members()
        if members != 2:
            return f"the dbproc group has {members} stable member(s), not 2"
        return None

    async def dbproc_group_members(self) -> int:
        """Members of the dbprocs' consumer group once it is stable (0 while it rebalances)."""
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.bus.bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            described = await admin.describe_consumer_groups([self.settings.bus.topic("cfd-dbproc")])
        except Exception:
            return 0
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        for response in described:
            for group in response.groups:
                error_code, _, state, _, _, members = group[:6]
                if error_code == 0 and state == "Stable":
                    return len(members)
        return 0


# --- the load ----------------------------------------------------------------------------------------------


@dataclass
class Attempt:
    started: float
    ended: float
    outcome: int | str  # an HTTP status, "connection" or "timeout"
    error: str = ""  # the error's code (and backend) for a failed answer: "503 backend_unavailable (bus)"

    @property
    def failed(self) -> bool:
        return not (isinstance(self.outcome, int) and self.outcome < 400)

    @property
    def disrupted(self) -> bool:
        return self.failed or self.ended - self.started > SLOW

    @property
    def label(self) -> str:
        return f"{self.outcome} {self.error}".strip()


@dataclass
class Command:
    trader: str
    kind: str  # open or close
    key: str
    acked: float | None = None
    position: str | None = None


class Outbox:
    """Reads one-time codes from the servers' shared outbox folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def code_for(self, email: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for path in sorted(self.folder.glob("*.eml")) if self.folder.exists() else []:
                mail = message_from_bytes(path.read_bytes(), policy=policy.default)
                if str(mail["To"]).lower() == email:
                    found = re.search(r"\b(\d{6})\b", mail.get_body(preferencelist=("plain",)).get_content())
                    if found:
                        return found.group(1)
            await asyncio.sleep(0.1)
        raise AssertionError(f"no code was mailed to {email}")


class Trader:
    """A good client of the platform: retries what can be retried, with the same Idempotency-Key."""

    def __init__(self, name: str, servers: list[str], first_server: int, http: httpx.AsyncClient,
                 load: Load) -> None:
        self.name = name
        self.email = f"{name}@faults.example.com"
        self.servers = servers
        self.server = first_server % len(servers)
        self.http = http
        self.load = load
        self.token = ""
        self.rng = random.Random(name)

    def _url(self, path: str) -> str:
        return f"{self.servers[self.server]}/api/v1{path}"

    async def _send(self, method: str, path: str, body: dict, key: str | None = None,
                    authenticated: bool = True) -> httpx.Response | None:
        """One attempt; None when the connection failed (then the next attempt goes to the other server)."""
        headers = {"Idempotency-Key": key} if key else {}
        if authenticated:
            headers["Authorization"] = f"Bearer {self.token}"
        started = time.monotonic()
        outcome: int | str
        response = None
        try:
            response = await self.http.request(method, self._url(path), json=body, headers=headers)
            outcome = response.status_code
        except httpx.TimeoutException:
            outcome = "timeout"
        except httpx.TransportError:
            outcome = "connection"
            self.server = (self.server + 1) % len(self.servers)
        self.load.attempts.append(Attempt(started, time.monotonic(), outcome, _error(response)))
        return response

    @staticmethod
    def _pause(response: httpx.Response | None, tries: int) -> float:
        retry_after = response.headers.get("retry-after", "") if response is not None else ""
        wanted = float(retry_after) if retry_after.isdigit() else 0.2 * 2 ** min(tries, 3)
        return min(wanted, RETRY_CAP)

    async def call(self, method: str, path: str, body: dict, key: str | None = None,
                   authenticated: bool = True) -> httpx.Response | None:
        """Until a final answer (2xx or a 4xx other than 401 and 429, or a 5xx other than 503 and 504);
        None if there was none before the deadline."""
        deadline = time.monotonic() + COMMAND_DEADLINE
        tries = 0
        while time.monotonic() < deadline:
            response = await self._send(method, path, body, key, authenticated)
            tries += 1
            if response is not None and response.status_code == 401 and authenticated:
                await self.sign_in()
                continue
            if response is not None and response.status_code not in (429, 503, 504):
                return response
            await asyncio.sleep(self._pause(response, tries))
        return None

    async def sign_up(self, outbox: Outbox) -> None:
        answer = await self.call("POST", "/auth/signup", {"email": self.email}, authenticated=False)
        assert answer is not None and answer.status_code == 202, answer and answer.text
        code = await outbox.code_for(self.email)
        verified = await self.call("POST", "/auth/verify", {"email": self.email, "otp": code, "password": PASSWORD,
                                                            "name": self.name}, authenticated=False)
        assert verified is not None and verified.status_code == 201, verified and verified.text
        self.token = verified.json()["access_token"]

    async def sign_in(self) -> None:
        answer = await self.call("POST", "/auth/signin", {"email": self.email, "password": PASSWORD},
                                 authenticated=False)
        if answer is not None and answer.status_code == 200:
            self.token = answer.json()["access_token"]

    async def command(self, kind: str, path: str, body: dict) -> Command:
        command = Command(self.name, kind, f"{kind}-{uuid.uuid4().hex}")
        self.load.commands.append(command)
        response = await self.call("POST", path, body, command.key)
        if response is not None and response.status_code in (200, 201):
            command.acked = time.monotonic()
            command.position = response.json()["id"]
        return command

    async def trade(self, stop: asyncio.Event) -> None:
        """Open a minimum position, close it, again, until `stop`; never leaves a position open."""
        while not stop.is_set():
            symbol = self.rng.choice(SYMBOLS)
            order = {"symbol": symbol, "side": self.rng.choice(("long", "short")),
                     "qty": str(MARKETS[symbol].min_qty), "leverage": 1}
            opened = await self.command("open", "/positions", order)
            await asyncio.sleep(PACE)
            if opened.position is not None:
                await self.command("close", f"/positions/{opened.position}/close", {})
                await asyncio.sleep(PACE)


def _error(response: httpx.Response | None) -> str:
    if response is None or response.status_code < 400:
        return ""
    try:
        error = response.json()["error"]
        details = error.get("details")
        backend = details.get("backend") if isinstance(details, dict) else None
        return error["code"] + (f" ({backend})" if backend else "")
    except (ValueError, KeyError, TypeError):
        return "(not the error shape)"


class Load:
    """Traders trading side by side; what each attempt and command came to."""

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []
        self.commands: list[Command] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, traders: list[Trader]) -> None:
        self._tasks = [asyncio.ensure_future(t.trade(self._stop)) for t in traders]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def last_disruption(self) -> float | None:
        return max((a.ended for a in self.attempts if a.disrupted), default=None)


# --- one scenario ------------------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: Scenario
    sent: int = 0
    acknowledged: int = 0
    lost: int = 0
    applied_twice: int = 0
    errors: Counter = field(default_factory=Counter)  # "503 backend_unavailable (bus)", "connection"... → attempts
    statuses: set = field(default_factory=set)  # the statuses (or "connection", "timeout") among them
    unanswered: int = 0  # commands with no final answer before the deadline, or a final error
    recovery: float | None = None  # seconds from the fault until the last disrupted request
    stopping: float | None = None  # seconds scripts/services.sh took to stop the backend (restarts)
    starting: float | None = None  # and to start it again
    log_lines: dict[str, int] = field(default_factory=dict)  # lines each process wrote during the scenario
    unplanned_exits: dict[str, int] = field(default_factory=dict)
    invariant_breaks: list[str] = field(default_factory=list)

    @property
    def down_for(self) -> float | None:
        return None if self.stopping is None or self.starting is None else self.stopping + self.starting

    @property
    def recovery_after_backend(self) -> float | None:
        """Recovery once the backend was back: the platform's own part of it."""
        if self.recovery is None:
            return None
        return max(0.0, self.recovery - (self.down_for or 0.0))

    @property
    def most_log_lines(self) -> tuple[str, int]:
        return max(self.log_lines.items(), key=lambda item: item[1], default=("", 0))

    def error_summary(self) -> str:
        if not self.errors:
            return "none"
        return ", ".join(f"{label} ×{self.errors[label]}" for label in sorted(self.errors))


class Matrix:
    """Runs scenarios on one cluster, each with fresh traders."""

    def __init__(self, cluster: Cluster, services: Services) -> None:
        self.cluster = cluster
        self.services = services
        self.outbox = Outbox(cluster.settings.mail.outbox_dir)

    async def run(self, scenario: Scenario) -> Result:
        await self.cluster.wait_whole()
        limits = httpx.Limits(max_connections=4 * TRADERS, max_keepalive_connections=2 * TRADERS)
        async with httpx.AsyncClient(timeout=15, limits=limits) as http:
            load = Load()
            run_id = uuid.uuid4().hex[:6]
            traders = [Trader(f"{scenario.id}-{run_id}-{n}", self.cluster.server_urls, n, http, load)
                       for n in range(TRADERS)]
            await asyncio.gather(*(t.sign_up(self.outbox) for t in traders))
            load.attempts.clear()
            result = Result(scenario)
            lines_before = self.cluster.log_lines()
            exits_before = Counter(self.cluster.unplanned_exits)
            load.start(traders)
            await asyncio.sleep(WARMUP)
            fault = time.monotonic()
            await self._inject(scenario, result)
            await self.cluster.wait_whole()
            whole = time.monotonic()
            while time.monotonic() < fault + RECOVERY_LIMIT:
                quiet_since = max(whole, load.last_disruption() or 0)
                if time.monotonic() - quiet_since >= SETTLE:
                    break
                await asyncio.sleep(0.2)
            await load.stop()
            result.log_lines = {name: after - lines_before.get(name, 0)
                                for name, after in self.cluster.log_lines().items()}
            result.unplanned_exits = dict(Counter(self.cluster.unplanned_exits) - exits_before)
            last = max((a.ended for a in load.attempts if a.disrupted and a.ended >= fault), default=None)
            result.recovery = 0.0 if last is None else last - fault
            result.errors = Counter(a.label for a in load.attempts if a.failed)
            result.statuses = {a.outcome for a in load.attempts if a.failed}
            await self._check(traders, load, result)
        return result

    async def _inject(self, scenario: Scenario, result: Result) -> None:
        if scenario.kill:
            self.cluster.kill(scenario.kill)
        if scenario.restart:
            started = time.monotonic()
            await asyncio.to_thread(self.services.down, scenario.restart)
            result.stopping = time.monotonic() - started
            started = time.monotonic()
            await asyncio.to_thread(self.services.up, scenario.restart)
            result.starting = time.monotonic() - started

    async def _check(self, traders: list[Trader], load: Load, result: Result) -> None:
        """Compare what the clients were told with what the database holds."""
        result.sent = len(load.commands)
        result.acknowledged = sum(c.acked is not None for c in load.commands)
        result.unanswered = result.sent - result.acknowledged
        connection = await _connect(self.cluster.settings.database.url)
        try:
            for trader in traders:
                await self._check_trader(connection, trader, [c for c in load.commands if c.trader == trader.name],
                                         result)
        finally:
            await connection.close()

    @staticmethod
    async def _check_trader(db: Any, trader: Trader, commands: list[Command], result: Result) -> None:
        user = await db.fetchval("select id from users where email = $1", trader.email)
        positions = {str(r["id"]): r for r in await db.fetch(
            "select id, status, realized_pnl, parent_id from positions where user_id = $1", user)}
        ledger = await db.fetch("select kind, amount, reference from ledger_entries where user_id = $1", user)
        balance = await db.fetchval("select balance from accounts where user_id = $1", user)
        booked = Counter(r["reference"] for r in ledger if r["kind"] == "realized_pnl")

        opens = [c for c in commands if c.kind == "open"]
        acked_opens = {c.position for c in opens if c.acked is not None}
        acked_closes = {c.position for c in commands if c.kind == "close" and c.acked is not None}
        result.lost += sum(p not in positions for p in acked_opens)
        result.lost += sum(p not in positions or positions[p]["status"] != "closed" or booked[p] == 0
                           for p in acked_closes)
        own = {p for p, row in positions.items() if row["parent_id"] is None}
        unacknowledged_opens = sum(c.acked is None for c in opens)
        result.applied_twice += max(0, len(own - acked_opens) - unacknowledged_opens)
        result.applied_twice += sum(n - 1 for n in booked.values() if n > 1)

        total = sum((r["amount"] for r in ledger), Decimal(0))
        if balance != total:
            result.invariant_breaks.append(f"{trader.email}: balance {balance} but the ledger sums to {total}")
        realized = sum((r["realized_pnl"] for r in positions.values() if r["status"] == "closed"), Decimal(0))
        booked_pnl = sum((r["amount"] for r in ledger if r["kind"] == "realized_pnl"), Decimal(0))
        if realized != booked_pnl:
            result.invariant_breaks.append(f"{trader.email}: positions realised {realized}, ledger {booked_pnl}")
        still_open = [p for p, row in positions.items() if row["status"] == "open"]
        if still_open:
            result.invariant_breaks.append(f"{trader.email}: {len(still_open)} position(s) left open")


async def _connect(database_url: str) -> Any:
    import asyncpg

    for _ in range(100):
        try:
            return await asyncpg.connect(database_url)
        except (OSError, asyncpg.PostgresError):
            await asyncio.sleep(0.2)
    return await asyncpg.connect(database_url)


# --- the table in docs/reliability.md -----------------------------------------------------------------------

TABLE_START = "<!-- fault-table:start -->"
TABLE_END = "<!-- fault-table:end -->"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def table(results: list[Result], load_before: tuple[float, ...], load_after: tuple[float, ...]) -> str:
    """The Markdown block that replaces the one between the markers of docs/reliability.md."""
    when = time.strftime("%d %B %Y", time.gmtime()).lstrip("0")
    lines = [
        TABLE_START,
        f"Measured on {when} on {os.cpu_count()} cores; load average {load_before[0]:.2f} before the run and "
        f"{load_after[0]:.2f} after it (1-minute figures; other work shared the machine). {TRADERS} traders, "
        "two servers, two dbprocs and the poller as separate processes, on Kafka 3.9, Redis and PostgreSQL "
        "started by `scripts/services.sh` on loopback.",
        "",
        "| fault | commands sent | acknowledged | lost | applied twice | client-visible errors (attempts) "
        "| recovery | log lines (most from one process) |",
        "|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in results:
        fault = r.scenario.title
        if r.stopping is not None and r.starting is not None:
            fault += f" (stop {r.stopping:.1f} s, start {r.starting:.1f} s)"
        name, most = r.most_log_lines
        exits = "".join(f"; {name} exited {n}×" for name, n in sorted(r.unplanned_exits.items()))
        lines.append(f"| {fault}{exits} | {r.sent} | {r.acknowledged} | {r.lost} | {r.applied_twice} | "
                     f"{r.error_summary()} | {_seconds(r.recovery)} | {sum(r.log_lines.values())} "
                     f"({most} {name}) |")
    lines.append(TABLE_END)
    return "\n".join(lines)


def write_table(block: str, path: Path = ROOT / "docs" / "reliability.md") -> None:
    text = path.read_text()
    start, end = text.index(TABLE_START), text.index(TABLE_END) + len(TABLE_END)
    path.write_text(text[:start] + block + text[end:])

