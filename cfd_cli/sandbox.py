"""A reproducible sandbox: the whole platform in this process on a lockstep replay of a recording, its ids seeded,
on a fresh database, with a trader and an API key ready. `cfd up --replay FILE --seed N` runs one until Ctrl-C;
a bot (or a test) can run one inside itself:

    from cfd_cli.sandbox import sandbox

    async with sandbox("examples/recordings/crash.jsonl", seed=7) as box:
        while not (step := await box.api.replay_step()).ended:
            ...                              # trade on step.quotes with box.api
        print(await box.api.ledger())        # the same entries, amounts and references every run

It lives beside `Platform`, not in `cfd_client`: it runs the services, and the client library imports none of
them. What the seed fixes and what it does not: docs/bots.md, "Reproducible runs".
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfd_cli.platform import SERVICES, Platform
from cfd_client import ApiClient
from cfd_server.auth.passwords import hash_password
from shared import operations as ops
from shared.bus import Topics
from shared.bus.rpc import RequestClient
from shared.contracts.bus import CreateUser
from shared.settings import Settings, load_settings

TRADER_EMAIL = "trader@sandbox.example"
TRADER_NAME = "Sandbox Trader"
KEY_NAME = "sandbox"


@dataclass
class Trader:
    """The sandbox's trader: sign in with `email` and `password` (the terminal), or use `key` (bots)."""

    email: str
    password: str
    key: str


@dataclass
class Sandbox:
    """A running sandbox: the platform, its trader, and `api`, a client signed in with the trader's API key."""

    platform: Platform
    trader: Trader
    api: ApiClient

    @property
    def base_url(self) -> str:
        return self.platform.base_url


def sandbox_settings(recording: str | Path, *, environ: Mapping[str, str] | None = None,
                     **overrides: Any) -> Settings:
    """The settings of a sandbox on `recording`: a lockstep replay, on free ports unless `overrides` choose them;
    `overrides` as `load_settings` takes them (a group's fields as a mapping)."""
    groups: dict[str, Any] = {"http": {"port": 0, "ws_port": 0}}
    for name, value in overrides.items():
        groups[name] = {**groups.get(name, {}), **value} if isinstance(value, Mapping) else value
    groups["prices"] = {**groups.get("prices", {}), "source": "replay", "replay_file": Path(recording),
                        "replay_lockstep": True}
    return load_settings(environ, **groups)


async def open_trader(platform: Platform, *, email: str = TRADER_EMAIL, name: str = TRADER_NAME) -> Trader:
    """Create the sandbox's trader (straight through the bus: the sign-up's mailed code is of no use here) and a
    read+trade API key for it (through the REST API, as any client makes one)."""
    settings = platform.settings
    password = secrets.token_urlsafe(12)
    password_hash = await hash_password(password, settings.auth.bcrypt_rounds)
    topics = Topics(settings.bus)
    client = RequestClient(platform.bus, topics.routes(), topics.replies, f"sandbox-{uuid.uuid4().hex[:8]}",
                           settings.bus.request_timeout)
    await client.start()
    try:
        await client.call(ops.USER_CREATE, CreateUser(email=email, name=name, password_hash=password_hash),
                          key=email, command_id=f"user.create:{email}")
    finally:
        await client.stop()
    async with ApiClient(platform.base_url) as person:
        await person.signin(email, password)
        created = await person.create_api_key(KEY_NAME)
        await person.logout()
    return Trader(email=email, password=password, key=created.key)


@contextlib.asynccontextmanager
async def sandbox(recording: str | Path, *, seed: int | None = 0, environ: Mapping[str, str] | None = None,
                  **overrides: Any) -> AsyncIterator[Sandbox]:
    """Run a sandbox on `recording` (a Backpack-format JSONL file, as `cfd prices record` writes) with ids seeded
    by `seed` (None: random ids), and yield it once its trader can trade. The data live in a fresh temporary
    directory, removed afterwards, unless `overrides` name a `data_dir` or a database (which must hold no
    users). Settings come from `environ` (default: the process environment) and `overrides`. A recording that
    is not there raises `SettingsError`."""
    scratch = None if "data_dir" in overrides else Path(tempfile.mkdtemp(prefix="cfd-sandbox-"))
    try:
        settings = sandbox_settings(recording, environ=environ, **({"data_dir": scratch} if scratch else {}),
                                    **overrides)
        platform = Platform(settings, SERVICES, migrate_db=True, seed=seed)
        await platform.start()
        try:
            trader = await open_trader(platform)
            async with ApiClient(platform.base_url, token=trader.key) as api:
                yield Sandbox(platform=platform, trader=trader, api=api)
        finally:
            await platform.stop()
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


async def announce_trader(platform: Platform, *, seed: int, scratch: Path | None) -> Trader:
    """`cfd up --replay FILE --seed N`: open the trader, keep its key for `cfd trade` and the example bots (as
    `cfd trade login` does), and say how to use the sandbox."""
    from cfd_cli.common import console
    from cfd_client import api_root
    from cfd_client.keys import KeyStore

    trader = await open_trader(platform)
    store = KeyStore()
    store.save(api_root(platform.base_url), trader.key)
    recording = platform.settings.prices.replay_file
    console.print(f"[bold green]sandbox[/] a lockstep replay of {recording.name if recording else '?'}, "
                  f"ids seeded with {seed}: the same bot gets the same fills and ledger every run")
    if scratch is not None:
        console.print(f"  [cyan]{'data':<9}[/] {scratch} [dim](fresh, removed when this stops)[/]")
    console.print(f"  [cyan]{'trader':<9}[/] {trader.email}, password [bold]{trader.password}[/]")
    console.print(f"  [cyan]{'api key':<9}[/] {trader.key} [dim](kept in {store.path} for cfd trade and the "
                  f"example bots)[/]", soft_wrap=True)
    console.print(f"  [cyan]{'step':<9}[/] POST /api/v1/replay/step, e.g. "
                  "[bold]python examples/ma_crossover.py SOL_USDC --replay-step[/]", soft_wrap=True)
    return trader
