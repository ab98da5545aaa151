"""Trading costs through the trading engine, on a real SQLite database, over random commands, price moves and
days passing (DESIGN.md, "Money rules"):

- the ledger invariant holds after every step: balance = Σ entries = deposits + Σ realised PnL − Σ commissions
  ± Σ financing + Σ shortfall credits, and it is never negative;
- what each position row shows it paid (`commission`, `financing`) is exactly its ledger entries, and a
  position with its closed parts pays, in cents, the exact commission of its fills, less at most half a cent it
  carries;
- every position pays the financing of each rollover it was open at exactly once: the financing job sent
  twice, late, or not at all before a close changes nothing about that.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cfd_dbproc.db import Database, migrate
from cfd_dbproc.db.tables import Accounts, LedgerEntries, Positions
from cfd_dbproc.trading.costs import Costs
from cfd_dbproc.trading.engine import TradingEngine
from cfd_dbproc.trading.quotes import QuoteCache
from cfd_dbproc.trading.store import TradingStore
from cfd_poller.simulation import SIMULATION
from shared.bus.memory import MemoryBus
from shared.contracts import encode
from shared.contracts.bus import CloseCommand, FinancingCommand, OpenCommand, PriceTick
from shared.contracts.rest import PositionCreate
from shared.costs import DAY_MS, commission, last_rollover, rollovers_between
from shared.errors import CfdError
from shared.markets import MARKETS, MarketBook
from shared.settings import load_settings

SYMBOLS = ("ETH_USDC", "SOL_USDC", "DOGE_USDC")
HALF_CENT = Decimal("0.005")
ROLLOVER = 22 * 60  # 22:00 UTC, not midnight: nothing here assumes the default
# Rates far above the catalogue's, so a day of financing is never too small to cost a cent on ETH (10 % of the
# notional a day for a long, 5 % credited to a short) and the count of what each position paid is exact there;
# a DOGE short pays nothing, as in the catalogue.
RATES = {"ETH_USDC": ("36.5", "-18.25"), "SOL_USDC": ("36.5", "-18.25"), "DOGE_USDC": ("36.5", "0")}
TERMS = {s: msgspec.structs.replace(MARKETS[s], financing_long_rate=Decimal(long), financing_short_rate=Decimal(short))
         for s, (long, short) in RATES.items()}


class Clock:
    def __init__(self) -> None:
        self.now = time.time_ns() // 1_000_000

    def __call__(self) -> int:
        return self.now


class Rig:
    """A trading engine with its own clock on its own SQLite file, driven from a synchronous test."""

    def __init__(self, tmp_path) -> None:
        self.loop = asyncio.new_event_loop()
        settings_ = load_settings({}, env="test", data_dir=tmp_path,
                                  database={"url": f"sqlite:///{tmp_path / 'c.db'}"})
        self.db = Database(settings_.database, settings_.data_dir)
        self.loop.run_until_complete(migrate(self.db))
        self.clock = Clock()
        self.quotes = QuoteCache(stale_after=10**9, markets=MarketBook(TERMS.values()))
        store = TradingStore(self.db)
        self.engine = TradingEngine(store, MemoryBus(), "events", self.quotes,
                                    Costs(store, self.quotes, ROLLOVER, self.clock))
        self._tick_us = time.time_ns() // 1000

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        self.run(self.db.stop())
        self.loop.close()

    def price(self, symbol: str, mid: Decimal) -> None:
        self._tick_us += 1
        market = MARKETS[symbol]
        tick = PriceTick(symbol=symbol, bid=mid, ask=mid + market.price_tick, exchange_time_us=self._tick_us,
                         ingest_time_us=self._tick_us)
        assert self.quotes.apply(encode(tick)) is not None

    async def account(self, deposit: Decimal) -> uuid.UUID:
        user_id = uuid.uuid4()
        now = self.clock()
        await Accounts.insert(Accounts(id=uuid.uuid4(), user_id=user_id, currency="USD", balance=deposit,
                                       created_at=now)).run()
        await LedgerEntries.insert(LedgerEntries(id=uuid.uuid4(), user_id=user_id, kind="deposit", amount=deposit,
                                                 balance_after=deposit, reference="demo", command_id=str(user_id),
                                                 created_at=now)).run()
        return user_id


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    made = Rig(tmp_path_factory.mktemp("costs"))
    yield made
    made.close()


step = st.one_of(
    st.tuples(st.just("move"), st.sampled_from(SYMBOLS), st.integers(-800, 800)),  # basis points
    st.tuples(st.just("open"), st.sampled_from(SYMBOLS), st.sampled_from(("long", "short")), st.integers(1, 300),
              st.integers(1, 10)),
    st.tuples(st.just("close"), st.integers(0, 9), st.sampled_from((None, 1, 3, 10, 50))),  # whole, or a percent
    st.tuples(st.just("days"), st.integers(0, 3), st.integers(0, DAY_MS - 1),
              st.sampled_from(("job", "job twice", "late job", "none"))),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=25), deposit=st.sampled_from((Decimal(300), Decimal(20_000))))
def test_costs_keep_the_ledger_invariant_and_each_rollover_is_paid_once(rig, steps, deposit):
    rig.run(_play(rig, steps, deposit))


async def _play(rig: Rig, steps: list[tuple], deposit: Decimal) -> None:
    user_id = await rig.account(deposit)
    user = str(user_id)
    mids = {s: SIMULATION[s].price.quantize(MARKETS[s].price_tick) for s in SYMBOLS}
    for symbol, mid in mids.items():
        rig.price(symbol, mid)
    held: dict[str, int] = {}  # open position id -> the clock when it opened
    lived: dict[str, tuple[int, int | None]] = {}  # every root position -> (opened, closed)
    for action in steps:
        rig.clock.now += 1
        match action:
            case ("move", symbol, bps):
                market = MARKETS[symbol]
                mids[symbol] = max(market.price_tick, (mids[symbol] * (10_000 + bps) / 10_000).quantize(
                    market.price_tick))
                rig.price(symbol, mids[symbol])
            case ("open", symbol, side, steps_, leverage):
                market = MARKETS[symbol]
                order = PositionCreate(symbol=symbol, side=side, qty=market.qty_step * steps_ * 10,
                                       leverage=min(leverage, market.max_leverage))
                try:
                    opened = await rig.engine.open(OpenCommand(user_id=user, order=order), uuid.uuid4().hex)
                except CfdError as exc:
                    assert exc.code in ("insufficient_margin", "insufficient_balance"), exc
                    continue
                held[opened.id] = rig.clock.now
                lived[opened.id] = (rig.clock.now, None)
            case ("close", index, percent):
                if not held:
                    continue
                position_id = sorted(held)[index % len(held)]
                position = await rig.engine.store.position(user_id, position_id)
                market = MARKETS[position.symbol]
                qty = None if percent is None else (position.qty * percent / 100).quantize(market.qty_step)
                if qty is not None and (qty < market.min_qty or position.qty - qty < market.min_qty):
                    qty = None
                await rig.engine.close(CloseCommand(user_id=user, position_id=position_id, qty=qty),
                                       uuid.uuid4().hex)
                if qty is None:
                    del held[position_id]
                    lived[position_id] = (lived[position_id][0], rig.clock.now)
            case ("days", days, extra, job):
                rig.clock.now += days * DAY_MS + extra
                due = last_rollover(rig.clock.now, ROLLOVER)
                command = FinancingCommand(user_id=user, through=due)
                if job in ("job", "job twice"):
                    await rig.engine.financing(command, f"financing:{user}:{due}")
                if job == "late job":  # the command of a rollover before: it charges nothing twice
                    late = FinancingCommand(user_id=user, through=due - DAY_MS)
                    await rig.engine.financing(late, f"financing:{user}:{due - DAY_MS}")
                if job == "job twice":  # a redelivery, and another dbproc's run around a handover
                    await rig.engine.financing(command, f"financing:{user}:{due}")
                    await rig.engine.financing(command, uuid.uuid4().hex)
        financed = action[0] == "days" and action[3] in ("job", "job twice")
        await _check(user_id, deposit, lived, rig.clock.now, financed=financed)


async def _check(user_id: uuid.UUID, deposit: Decimal, lived: dict[str, tuple[int, int | None]], now: int,
                 financed: bool) -> None:
    balance = (await Accounts.select(Accounts.balance).where(Accounts.user_id == user_id).first().run())["balance"]
    entries = await LedgerEntries.select().where(LedgerEntries.user_id == user_id).run()
    by_kind: dict[str, Decimal] = {}
    for entry in entries:
        by_kind[entry["kind"]] = by_kind.get(entry["kind"], Decimal(0)) + entry["amount"]
    assert balance >= 0
    assert balance == sum((e["amount"] for e in entries), Decimal(0))
    assert by_kind.get("commission", Decimal(0)) <= 0
    assert balance == (deposit + by_kind.get("realized_pnl", 0) + by_kind.get("commission", 0)
                       + by_kind.get("financing", 0) + by_kind.get("shortfall", 0))
    paid: dict[tuple[str, str], Decimal] = {}
    counted: dict[str, int] = {}
    for entry in entries:
        if entry["kind"] in ("commission", "financing"):
            key = (entry["kind"], entry["reference"])
            paid[key] = paid.get(key, Decimal(0)) - entry["amount"]
        if entry["kind"] == "financing":
            counted[entry["reference"]] = counted.get(entry["reference"], 0) + 1
    rows = await Positions.select().where(Positions.user_id == user_id).run()
    for row in rows:
        ref = str(row["id"])
        assert row["commission"] == paid.get(("commission", ref), 0), row
        assert row["financing"] == paid.get(("financing", ref), 0), row
        if row["parent_id"] is not None:
            assert row["financing"] == 0  # the closed part of a partial close: its financing stays with the rest
            assert row["unbooked_commission"] == row["unbooked_financing"] == 0  # and what rounding left, too
        else:
            assert abs(row["unbooked_commission"]) <= HALF_CENT and abs(row["unbooked_financing"]) <= HALF_CENT
            family = [r for r in rows if r["id"] == row["id"] or r["parent_id"] == row["id"]]
            market = MARKETS[row["symbol"]]
            fills = commission(market, sum((r["qty"] for r in family), Decimal(0)), row["entry_price"]) + sum(
                (commission(market, r["qty"], r["close_price"]) for r in family if r["status"] == "closed"),
                Decimal(0))
            booked = sum((r["commission"] for r in family), Decimal(0))
            assert abs(booked + row["unbooked_commission"] - fills) < Decimal("1e-8"), family
    for position_id, (opened, closed) in lived.items():
        row = next(r for r in rows if str(r["id"]) == position_id)
        owed = rollovers_between(opened, now if closed is None else closed, ROLLOVER)
        paid_through = max(owed, default=opened)
        if closed is not None or financed:  # settled by its close, or by the job just now
            assert row["financed_until"] == paid_through, (row, owed)
        else:
            assert row["financed_until"] <= paid_through  # never ahead of a rollover it was open at
        entries_of = counted.get(position_id, 0)
        assert entries_of == len(owed) if row["symbol"] == "ETH_USDC" and row["financed_until"] == paid_through \
            else entries_of <= len(owed), (row, owed, entries_of)  # once per rollover, never twice
        if row["symbol"] == "DOGE_USDC" and row["side"] == "short":
            assert entries_of == 0 and row["financing"] == 0
