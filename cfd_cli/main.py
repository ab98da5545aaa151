"""`cfd`: run and operate CFD Broker."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sys
import tempfile
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.logging import RichHandler

import shared
from cfd_cli.allocator import preload_jemalloc
from cfd_cli.common import ApiOption, client_settings_or_fail, console, err, fail, run_async, serve, settings_or_fail
from cfd_cli.demo import demo_command
from cfd_cli.doctor import run_doctor
from cfd_cli.markets import audit_command, markets_app
from cfd_cli.operate import exposure_command, keys_app, orders_app, positions_app, users_app
from cfd_cli.output import JsonOption, print_json
from cfd_cli.platform import SERVICES
from cfd_cli.prices import exchange_app, poller_command, prices_app
from cfd_cli.status import status_command
from cfd_cli.trade import trade_app
from cfd_cli.workers import embedded_backends, run_worker, serve_group
from shared.logs import JsonFormatter
from shared.settings import Settings

app = typer.Typer(
    name="cfd",
    help="Run and operate CFD Broker: services, database, users, prices, health.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The database: migrations.", no_args_is_help=True)
mail_app = typer.Typer(help="Mail sent by the platform.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(mail_app, name="mail")
app.add_typer(prices_app, name="prices")
app.add_typer(exchange_app, name="exchange")
app.add_typer(users_app, name="users")
app.add_typer(positions_app, name="positions")
app.add_typer(orders_app, name="orders")
app.add_typer(keys_app, name="keys")
app.add_typer(trade_app, name="trade")
app.command("exposure")(exposure_command)
app.add_typer(markets_app, name="markets")
app.command("audit")(audit_command)
app.command("status")(status_command)


class _StderrHandler(logging.StreamHandler):
    """A stream handler on whatever `sys.stderr` is when it writes (a test runner swaps it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ sets it; stderr is read at each write
        pass


def setup_logging(verbose: bool) -> None:
    """Logs go to stderr: rich lines on a terminal, plain timestamped lines (never wrapped) elsewhere, JSON lines
    with `CFD_LOG_FORMAT=json`."""
    level = os.environ.get("CFD_LOG_LEVEL", "INFO").upper()
    handler: logging.Handler
    if os.environ.get("CFD_LOG_FORMAT", "").lower() == "json":  # one JSON object a line, for a log shipper
        handler = _StderrHandler()
        handler.setFormatter(JsonFormatter())
    elif err.writes_to_terminal:
        handler = RichHandler(console=err, show_path=False, rich_tracebacks=False, markup=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s", datefmt="%H:%M:%S"))
    else:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(
        level=logging.DEBUG if verbose else getattr(logging, level, logging.INFO),
        handlers=[handler],
        force=True,
    )
    for noisy in ("aiokafka", "kafka", "asyncio", "httpx", "httpcore", "piccolo", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)


def _version(value: bool) -> None:
    if value:
        console.print(f"cfd-broker {shared.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail.")] = False,
) -> None:
    setup_logging(verbose)


WorkersOption = Annotated[int | None, typer.Option(
    "--workers", metavar="N", min=1, max=64, show_default=False,
    help="Run N API-server processes sharing the REST and WebSocket ports (the kernel spreads connections "
         "among them), started, restarted and stopped by this one. More than 1 needs Kafka and Redis. "
         "Default: CFD_SERVER_WORKERS (1).")]


def _workers_or_fail(settings: Settings, workers: int | None) -> int:
    """How many API-server processes to run; several only on Kafka and Redis."""
    count = workers or settings.http.workers
    missing = embedded_backends(settings)
    if count > 1 and missing:
        what = " and ".join({"CFD_KAFKA_BOOTSTRAP": "bus", "CFD_REDIS_URL": "cache"}[name] for name in missing)
        fail(f"{count} API-server workers cannot share the in-process {what}: several processes need "
             "Kafka and Redis",
             f"set {' and '.join(missing)} (scripts/services.sh up starts both locally), or run one worker")
    return count


RECORDINGS_HINT = "examples/recordings/ has calm.jsonl and crash.jsonl; record your own with: cfd prices record FILE"


@app.command()
def up(
    no_migrate: Annotated[bool, typer.Option("--no-migrate", help="Do not apply database migrations first.")] = False,
    replay: Annotated[Path | None, typer.Option(
        "--replay", metavar="FILE", dir_okay=False, show_default=False,
        help="Play this recording (Backpack-format JSONL, as [bold]cfd prices record[/] writes) instead of the "
             "configured price source. examples/recordings/ has a calm and a crashing market.")] = None,
    speed: Annotated[float | None, typer.Option(
        "--speed", min=0.01, max=10_000, show_default=False,
        help="Play the recording this many times faster than it was recorded (default 1).")] = None,
    lockstep: Annotated[bool, typer.Option(
        "--lockstep", help="Play the recording a step at a time: only [bold]POST /api/v1/replay/step[/] (the "
                           "client library's [bold]replay_step()[/]) moves it on.")] = False,
    seed: Annotated[int | None, typer.Option(
        "--seed", metavar="N", min=0, show_default=False,
        help="A reproducible sandbox (implies --lockstep): ids seeded with N, a fresh temporary database, and a "
             "trader with an API key ready; a bot that steps the replay gets the same fills and ledger every "
             "run.")] = None,
    workers: WorkersOption = None,
) -> None:
    """Run every service (server, dbproc, poller) in one process, on the embedded backends unless the
    environment names real ones. With [bold]--replay FILE[/] prices come from a recording; with [bold]--seed N[/]
    it is a reproducible sandbox for bots (docs/bots.md, "Reproducible runs"). With [bold]--workers N[/] (Kafka
    and Redis) the server runs as N processes sharing its ports, the dbproc and poller in this one."""
    if replay is None:
        if speed is not None or lockstep or seed is not None:
            fail("--speed, --lockstep and --seed go with --replay FILE",
                 "e.g. cfd up --replay examples/recordings/crash.jsonl --seed 7")
        settings = settings_or_fail()
        count = _workers_or_fail(settings, workers)
        if count > 1:
            run_async(serve_group(settings, count, ("dbproc", "poller"), migrate_db=not no_migrate))
            return
        run_async(serve(settings, SERVICES, migrate_db=not no_migrate))
        return
    if workers is not None and workers > 1:
        fail("a replay runs one API server, so --workers does not go with --replay",
             "drop --workers, or drop --replay to run the configured price source")
    if not replay.is_file():
        fail(f"no recording at {replay}", RECORDINGS_HINT)
    lockstep = lockstep or seed is not None
    if lockstep and speed is not None:
        fail("a lockstep replay moves only when a bot steps it, so --speed does not apply",
             "drop --speed, or drop --lockstep and --seed to play the recording in time")
    prices: dict[str, Any] = {"source": "replay", "replay_file": replay, "replay_lockstep": lockstep}
    if speed is not None:
        prices["replay_speed"] = speed
    if seed is None:
        run_async(serve(settings_or_fail(prices=prices), SERVICES, migrate_db=not no_migrate))
        return
    _sandbox(prices, seed)


def _sandbox(prices: dict[str, Any], seed: int) -> None:
    """`cfd up --replay FILE --seed N`: on a fresh temporary data directory unless the environment names one (or a
    database), which must then hold no users; migrated whatever --no-migrate says (an empty database has no
    tables)."""
    from cfd_cli.sandbox import announce_trader

    named = any(os.environ.get(name, "").strip() for name in ("CFD_DATA_DIR", "CFD_DATABASE_URL", "DATABASE_URL"))
    scratch = None if named else Path(tempfile.mkdtemp(prefix="cfd-sandbox-"))
    try:
        settings = settings_or_fail(prices=prices, **({"data_dir": scratch} if scratch else {}))
        run_async(serve(settings, SERVICES, migrate_db=True, seed=seed,
                        then=functools.partial(announce_trader, seed=seed, scratch=scratch)))
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


@app.command()
def server(
    workers: WorkersOption = None,
    worker: Annotated[int | None, typer.Option("--worker", hidden=True, min=1,
                                               help="Be worker N of a group (started by --workers).")] = None,
) -> None:
    """Run the API server (REST and WebSocket feed) alone; needs a real bus to reach a dbproc. With
    [bold]--workers N[/], N server processes share its ports."""
    settings = settings_or_fail()
    if worker is not None:
        run_async(run_worker(settings, worker))
        return
    count = _workers_or_fail(settings, workers)
    if not settings.bus.bootstrap:
        err.print("[yellow]warning:[/] no CFD_KAFKA_BOOTSTRAP: with the in-process bus no dbproc can answer "
                  "this server; use [bold]cfd up[/] to run everything in one process.")
    if count > 1:
        run_async(serve_group(settings, count))
        return
    run_async(serve(settings, ("server",), migrate_db=False))


@app.command()
def dbproc(
    migrate_first: Annotated[bool, typer.Option("--migrate", help="Apply database migrations first.")] = False,
) -> None:
    """Run the database processor alone (one member of the dbproc consumer group)."""
    settings = settings_or_fail()
    if not settings.bus.bootstrap:
        err.print("[yellow]warning:[/] no CFD_KAFKA_BOOTSTRAP: an in-process bus serves no other process; "
                  "use [bold]cfd up[/] to run everything in one process.")
    run_async(serve(settings, ("dbproc",), migrate_db=migrate_first))


app.command("poller")(poller_command)
app.command("demo")(demo_command)


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply the committed database migrations that have not run yet."""
    from cfd_dbproc.db import Database, migrate

    settings = settings_or_fail()

    async def go() -> list[str]:
        database = Database(settings.database, settings.data_dir)
        try:
            with console.status(f"migrating {settings.describe_backends()['database']} …"):
                return await migrate(database)
        finally:
            await database.stop()

    try:
        applied = run_async(go())
    except (OSError, RuntimeError) as exc:
        fail(f"migration failed: {exc}", "check CFD_DATABASE_URL and that the database is up (cfd doctor)")
    if applied:
        for name in applied:
            console.print(f"[green]✓[/] applied {name}")
    else:
        console.print("[green]✓[/] the database is up to date")


@app.command()
def doctor(
    api: ApiOption = None,
    no_api: Annotated[bool, typer.Option("--no-api", help="Check the backends only, not the running API.")]
    = False,
    as_json: JsonOption = False,
) -> None:
    """Check every configured backend and the running API, and say plainly what is wrong and how to fix it.
    Creates nothing: run it anywhere."""
    settings = client_settings_or_fail()
    api_url = None if no_api else (api or f"http://{_client_host(settings.http.host)}:{settings.http.port}")
    ok = run_async(run_doctor(settings, console, api_url=api_url, as_json=as_json))
    raise typer.Exit(0 if ok else 1)


def _client_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to `host` (a wildcard bind means loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)


@mail_app.command("outbox")
def mail_outbox(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100, help="How many mails.")] = 5,
    to: Annotated[str | None, typer.Option("--to", help="Only mails to this address.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show the newest mails of the embedded mail backend (where a local user finds their code)."""
    from shared.mail import OutboxMailer

    settings = client_settings_or_fail().mail
    if settings.host:
        fail(f"mail goes to SMTP ({settings.host}), not to the outbox", "read it in that mailbox")
    mails = OutboxMailer(settings.sender, settings.outbox_dir).latest(limit, to)
    if as_json:
        print_json([_mail_record(mail) for mail in mails])
        return
    if not mails:
        console.print(f"[dim]no mail in {settings.outbox_dir}[/]")
        return
    for mail in mails:
        body = mail.get_body(preferencelist=("plain",))
        console.heading(f"[bold]{mail['Subject']}[/]")
        console.print(f"[cyan]to[/] {mail['To']}   [cyan]date[/] {mail['Date']}")
        console.print(body.get_content().strip() if body else "")


def _mail_record(mail: Any) -> dict[str, Any]:
    body = mail.get_body(preferencelist=("plain",))
    try:
        sent = int(parsedate_to_datetime(str(mail["Date"])).timestamp() * 1000)
    except (TypeError, ValueError):
        sent = None
    return {"to": str(mail["To"]), "from": str(mail["From"]), "subject": str(mail["Subject"]), "date": sent,
            "body": body.get_content().strip() if body else ""}


def run() -> None:
    """The `cfd` command: a long-running one first moves onto jemalloc (`cfd_cli.allocator`)."""
    preload_jemalloc()
    app()


if __name__ == "__main__":
    run()
