"""The example bots in `examples/`, each run as its own process against the platform, as a bot author would
run them: the alert notifier, the moving-average crossover trader and the grid of pending orders; and the
crossover trader driving a reproducible sandbox, twice."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers import child_env, set_price, signed_in

from cfd_cli.sandbox import sandbox
from cfd_client.models import FillReceipt

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RECORDINGS = EXAMPLES / "recordings"


@pytest.fixture
async def bot(platform, api, mailbox, email, tmp_path):
    auth = await signed_in(api, mailbox, email)
    key = (await api.post("/api-keys", headers=auth, json={"name": "example", "scopes": ["read", "trade"]})).json()
    env = child_env(CFD_API_URL=platform.base_url, CFD_API_KEY=key["key"], CFD_TUI_CONFIG_DIR=str(tmp_path))
    started: list[asyncio.subprocess.Process] = []

    async def run(script: str, *args: str) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(sys.executable, str(EXAMPLES / script), *args, env=env,
                                                       stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        started.append(process)
        return process

    run.auth = auth  # type: ignore[attr-defined]
    yield run
    for process in started:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def line_with(process: asyncio.subprocess.Process, text: str, timeout: float = 20) -> str:
    assert process.stdout is not None
    async with asyncio.timeout(timeout):
        while True:
            line = (await process.stdout.readline()).decode()
            assert line, f"the bot ended without printing {text!r}"
            if text in line:
                return line


async def test_the_alert_notifier_reports_its_alert_when_the_price_crosses(platform, bot):
    await set_price(platform, "ETH_USDC", "3000.00", "3000.00")
    notifier = await bot("price_alert.py", "eth_usdc", "above", "3100.00", "--max-seconds", "30")
    await line_with(notifier, "set: ETH_USDC above 3100.00")
    await set_price(platform, "ETH_USDC", "3200.00", "3200.00")
    fired = await line_with(notifier, "ALERT")
    assert "the bid is 3199.2" in fired
    assert await asyncio.wait_for(notifier.wait(), 10) == 0


async def test_the_grid_places_its_levels_fills_one_and_cancels_the_rest(platform, api, bot):
    await set_price(platform, "SOL_USDC", "100.00", "100.00")  # mid 100
    grid = await bot("grid.py", "SOL_USDC", "--qty", "1", "--levels", "2", "--step", "1.00", "--max-seconds", "6")
    await line_with(grid, "level 2:")
    working = (await api.get("/orders?status=working", headers=bot.auth)).json()
    assert sorted((o["side"], Decimal(o["price"])) for o in working) == [
        ("long", Decimal(98)), ("long", Decimal(99)), ("short", Decimal(101)), ("short", Decimal(102))]
    await set_price(platform, "SOL_USDC", "98.95", "98.95")  # ask 98.98 ≤ 99: the first buy fills
    assert "filled: long 1 at 99" in await line_with(grid, "filled")
    await line_with(grid, "cancelled the grid's working orders")
    assert await asyncio.wait_for(grid.wait(), 10) == 0
    assert (await api.get("/orders?status=working", headers=bot.auth)).json() == []
    (position,) = (await api.get("/positions?status=open", headers=bot.auth)).json()
    assert position["side"] == "long" and Decimal(position["take_profit"]) == 100  # the next step up


async def test_the_crossover_trader_goes_long_then_short_with_a_stop_loss(platform, api, bot):
    await set_price(platform, "BNB_USDC", "600.00", "600.00")
    trader = await bot("ma_crossover.py", "BNB_USDC", "--fast", "2", "--slow", "4", "--qty", "1",
                       "--max-seconds", "12")
    await line_with(trader, "watching BNB_USDC")
    price = Decimal(600)
    for step in [Decimal(1)] * 8 + [Decimal(-2)] * 8:  # up, then down: a cross each way
        price += step
        await set_price(platform, "BNB_USDC", str(price), str(price))
        await asyncio.sleep(0.15)
    await line_with(trader, "opened short")
    assert await asyncio.wait_for(trader.wait(), 20) == 0
    positions = (await api.get("/positions", headers=bot.auth)).json()
    sides = [p["side"] for p in sorted(positions, key=lambda p: p["opened_at"])]
    assert sides[:2] == ["long", "short"]
    assert all(p["stop_loss"] is not None for p in positions)
    assert all(p["status"] == "closed" for p in positions)  # it closed its last one on the way out


# --- a reproducible run -----------------------------------------------------------------------------------


@dataclass
class Run:
    ledger: list[tuple[Any, ...]]
    fills: list[tuple[Any, ...]]
    output: str


def receipt(fill: FillReceipt | None) -> tuple[Any, ...] | None:
    """A fill's receipt without its exchange time (the replay's clock starts when it is first stepped)."""
    if fill is None:
        return None
    return fill.side, fill.price, fill.exchange_bid, fill.exchange_ask, fill.update_id, fill.spread_bps, fill.markup


async def crossover_on_a_sandbox(overrides: dict[str, Any], recording: Path, seed: int, config: Path) -> Run:
    """Run the crossover trader as its own process, stepping a sandbox on `recording` until it ends; what it
    booked, as the API shows it (the ids included, the wall-clock times left out)."""
    async with sandbox(recording, seed=seed, environ={}, **overrides) as box:
        env = child_env(CFD_API_URL=box.base_url, CFD_API_KEY=box.trader.key, CFD_TUI_CONFIG_DIR=str(config))
        trader = await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLES / "ma_crossover.py"), "SOL_USDC", "--replay-step", "--step", "5", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            output, _ = await asyncio.wait_for(trader.communicate(), 300)
        finally:
            if trader.returncode is None:
                trader.kill()
                await trader.wait()
        assert trader.returncode == 0, output.decode()
        ledger = [(e.id, e.kind, e.amount, e.balance_after, e.reference) async for e in box.api.all_ledger()]
        fills = [(p.id, p.side, p.qty, p.entry_price, p.close_price, p.close_reason, p.realized_pnl, p.commission,
                  receipt(p.open_receipt), receipt(p.close_receipt)) async for p in box.api.all_positions(None)]
        return Run(sorted(ledger), sorted(fills), output.decode())


def far_rollover() -> str:
    """A financing rollover twelve hours away: the wall clock, not the replay, decides when one comes, and a run
    that spans one is charged financing that the other run is not (docs/bots.md, "Reproducible runs")."""
    far = datetime.now(UTC) + timedelta(hours=12)
    return f"{far.hour:02d}:{far.minute:02d}"


async def test_the_crossover_trader_books_the_same_ledger_twice_on_one_replay_and_seed(sandbox_overrides, tmp_path):
    crash = RECORDINGS / "crash.jsonl"
    runs = []
    for _ in range(2):
        overrides = await sandbox_overrides()
        overrides["trading"] = {**overrides.get("trading", {}), "financing_rollover": far_rollover()}
        runs.append(await crossover_on_a_sandbox(overrides, crash, 7, tmp_path))
    first, second = runs
    assert "the replay ended after 2000 ticks" in first.output
    assert first.ledger == second.ledger  # ids, kinds, amounts, balances and references alike
    assert first.fills == second.fills
    reasons = [fill[5] for fill in first.fills]
    assert len(first.fills) >= 10 and reasons.count("stop_loss") >= 1  # it traded, and the crash hit a stop
    assert {kind for _, kind, *_ in first.ledger} == {"deposit", "commission", "realized_pnl"}
