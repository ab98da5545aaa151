"""Partial closes book what their fills made: rounding to cents is carried on the position, never lost.

A position closed in N slices books, in total, the exact PnL of its fills to within one cent, whatever the
slicing (DESIGN.md, "Money rules"), and the margins of its closed parts add up to the margin it held. First
on the maths alone (`shared.trading.closing`), then through the trading engine on a real SQLite database,
where the ledger invariant must hold as well.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cfd_dbproc.db import Database, migrate
from cfd_dbproc.db.tables import Accounts, LedgerEntries, Positions
from cfd_dbproc.trading.engine import TradingEngine
from cfd_dbproc.trading.quotes import QuoteCache
from cfd_dbproc.trading.store import TradingStore
from cfd_poller.simulation import SIMULATION
from shared.bus.memory import MemoryBus
from shared.contracts import encode
from shared.contracts.bus import CloseCommand, OpenCommand, PriceTick
from shared.contracts.rest import Position, PositionCreate
from shared.costs import commission
from shared.markets import MARKETS, Market
from shared.settings import load_settings
from shared.trading import closing, margin, money, pnl

CENT = Decimal("0.01")
HALF_CENT = Decimal("0.005")


@st.composite
def sliced_position(draw, max_slices: int = 300) -> tuple[Market, str, Decimal, int, list[Decimal], list[Decimal]]:
    """A market, a side, an entry price, a leverage, the slices' quantities and each slice's exit price."""
    market = draw(st.sampled_from(list(MARKETS.values())))
    side = draw(st.sampled_from(("long", "short")))
    steps = draw(st.integers(min_value=1, max_value=max_slices * 3))
    cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=steps - 1), max_size=max_slices - 1))
                  if steps > 1 else set())
    bounds = [0, *cuts, steps]
    slices = [(b - a) * market.qty_step for a, b in itertools.pairwise(bounds)]
    spread = draw(st.integers(min_value=-2_000, max_value=2_000))  # basis points around the catalogue price
    entry = (SIMULATION[market.symbol].price * (10_000 + spread) / 10_000).quantize(market.price_tick)
    leverage = draw(st.integers(min_value=1, max_value=market.max_leverage))
    moves = draw(st.lists(st.integers(min_value=-500, max_value=500), min_size=len(slices), max_size=len(slices)))
    exits = [max(market.price_tick, (entry * (10_000 + m) / 10_000).quantize(market.price_tick)) for m in moves]
    return market, side, entry, leverage, slices, exits


@settings(max_examples=300, deadline=None)
@given(sliced_position())
def test_slices_book_the_exact_pnl_of_their_fills_and_release_exactly_the_margin_held(case):
    _, side, entry, leverage, slices, exits = case
    open_qty = sum(slices, Decimal(0))
    held = opened_with = margin(open_qty, entry, leverage)
    unbooked = Decimal(0)
    booked = exact = released = Decimal(0)
    for qty, price in zip(slices, exits, strict=True):
        done = closing(side, open_qty, qty, entry, leverage, held, unbooked, price)
        assert done.realized == money(done.realized)  # booked in cents
        booked += done.realized
        exact += pnl(side, qty, entry, price)
        released += done.released_margin
        open_qty -= qty
        held, unbooked = done.remaining_margin, done.unbooked
        assert held == (margin(open_qty, entry, leverage) if open_qty else 0)  # never drifts from its size
        assert abs(booked + unbooked - exact) < Decimal("1e-20")  # nothing is lost, only carried
    assert abs(booked - exact) <= HALF_CENT
    assert released == opened_with and held == 0


def test_a_hundredth_of_a_cent_per_slice_is_booked_when_it_adds_up_to_a_cent():
    """0.01 SOL slices that each make 0.0037: rounding each alone would book 0.00 every time."""
    done_total = Decimal(0)
    held, unbooked, open_qty = margin(Decimal("0.30"), Decimal("185.00"), 5), Decimal(0), Decimal("0.30")
    for _ in range(30):
        done = closing("long", open_qty, Decimal("0.01"), Decimal("185.00"), 5, held, unbooked, Decimal("185.37"))
        done_total += done.realized
        open_qty, held, unbooked = open_qty - Decimal("0.01"), done.remaining_margin, done.unbooked
    assert done_total == Decimal("0.11")  # 30 × 0.0037 = 0.111


# --- through the engine, on a real SQLite database -----------------------------------------------------------


class EngineRig:
    """A trading engine on its own SQLite file and in-process bus, driven from a synchronous test."""

    def __init__(self, tmp_path) -> None:
        self.loop = asyncio.new_event_loop()
        settings_ = load_settings({}, env="test", data_dir=tmp_path,
                                  database={"url": f"sqlite:///{tmp_path / 'cfd.sqlite3'}"})
        self.db = Database(settings_.database, settings_.data_dir)
        self.loop.run_until_complete(migrate(self.db))
        self.quotes = QuoteCache(stale_after=3600)
        self.engine = TradingEngine(TradingStore(self.db), MemoryBus(), "events", self.quotes)
        self._clock_us = time.time_ns() // 1000

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        self.run(self.db.stop())
        self.loop.close()

    def price(self, market: Market, mid: Decimal) -> None:
        self._clock_us += 1
        tick = PriceTick(symbol=market.symbol, bid=mid, ask=mid + market.price_tick, exchange_time_us=self._clock_us,
                         ingest_time_us=self._clock_us)
        assert self.quotes.apply(encode(tick)) is not None

    async def account(self, deposit: Decimal) -> str:
        user_id = uuid.uuid4()
        now = time.time_ns() // 1_000_000
        await Accounts.insert(Accounts(id=uuid.uuid4(), user_id=user_id, currency="USD", balance=deposit,
                                       created_at=now)).run()
        await LedgerEntries.insert(LedgerEntries(id=uuid.uuid4(), user_id=user_id, kind="deposit", amount=deposit,
                                                 balance_after=deposit, reference="test", command_id=str(user_id),
                                                 created_at=now)).run()
        return str(user_id)

    async def command(self, handler, body) -> Position:
        return await handler(body, uuid.uuid4().hex)


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    made = EngineRig(tmp_path_factory.mktemp("rounding"))
    yield made
    made.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=sliced_position(max_slices=40))
def test_the_engine_books_sliced_closes_to_the_cent_and_keeps_the_ledger_invariant(rig, case):
    market, side, entry, leverage, slices, exits = case
    rig.run(_slice_through_the_engine(rig, market, side, entry, leverage, slices, exits))


async def _slice_through_the_engine(rig: EngineRig, market: Market, side: str, entry: Decimal, leverage: int,
                                    slices: list[Decimal], exits: list[Decimal]) -> None:
    deposit = Decimal(10_000_000)
    user_id = await rig.account(deposit)
    rig.price(market, entry)
    order = PositionCreate(symbol=market.symbol, side=side, qty=sum(slices, Decimal(0)), leverage=leverage)
    opened = await rig.command(rig.engine.open, OpenCommand(user_id=user_id, order=order))
    exact = Decimal(0)
    parts: list[Position] = []
    for qty, price in zip(slices, exits, strict=True):
        rig.price(market, price)
        part = await rig.command(rig.engine.close,
                                 CloseCommand(user_id=user_id, position_id=opened.id, qty=qty))
        assert part.qty == qty and part.status == "closed"
        exact += pnl(side, qty, opened.entry_price, part.close_price)
        parts.append(part)
    assert parts[-1].id == opened.id  # the last slice closed what was left of the position itself

    uid = uuid.UUID(user_id)
    balance = (await Accounts.select(Accounts.balance).where(Accounts.user_id == uid).first().run())["balance"]
    entries = await LedgerEntries.select().where(LedgerEntries.user_id == uid).run()
    booked = sum((e["amount"] for e in entries if e["kind"] == "realized_pnl"), Decimal(0))
    fees = -sum((e["amount"] for e in entries if e["kind"] == "commission"), Decimal(0))
    assert balance == sum((e["amount"] for e in entries), Decimal(0)) == deposit + booked - fees  # the invariant
    exact_fees = commission(market, opened.qty, opened.entry_price) + sum(
        (commission(market, p.qty, p.close_price) for p in parts), Decimal(0))
    assert fees == sum((p.commission for p in parts), Decimal(0)) and abs(fees - exact_fees) <= HALF_CENT
    assert booked == sum((p.realized_pnl for p in parts), Decimal(0))
    assert abs(booked - exact) <= CENT
    rows = await Positions.select(Positions.margin).where(Positions.user_id == uid).run()
    assert sum((r["margin"] for r in rows), Decimal(0)) == opened.margin  # the parts release what was held
