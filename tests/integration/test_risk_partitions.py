"""Each dbproc's risk engine checks the accounts of the users whose `requests.trading` partitions it owns.

- Two dbprocs on one bus split the accounts: each holds a part of them, none is held twice, and together
  they hold every one, with their working orders; a watched account is marked by its owner alone; a dbproc
  that leaves hands its accounts and orders to the other.
- The handover (Kafka, separate processes): the dbproc that owns an account is SIGKILLed; once the group gives
  its partitions to the other one, that one loads the account and applies the stop-loss the price went through
  meanwhile, once.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import httpx
import msgspec
from helpers import child_env, real_only, sign_up

from cfd_cli.platform import Platform
from cfd_dbproc.db.tables import Accounts, LedgerEntries, Positions
from cfd_dbproc.service import DbProc
from cfd_dbproc.trading.marks import MARK_INTERVAL
from cfd_poller.simulation import SIMULATION
from shared import operations as ops
from shared.bus import Bus, Topics, create_bus
from shared.bus.kafka import SESSION_TIMEOUT_MS
from shared.bus.rpc import RequestClient, send
from shared.contracts import encode
from shared.contracts.bus import CreateUser, OpenCommand, PlaceOrderCommand, PriceTick, WatchAccount
from shared.contracts.rest import OrderCreate, PositionCreate
from shared.markets import MARKETS, broker_quote

D = Decimal
USERS = 40


async def eventually(check, what: str, timeout: float = 40) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        if loop.time() > end:
            raise AssertionError(f"not reached in {timeout} s: {what}")
        await asyncio.sleep(0.05)


async def _prices(bus: Bus, topics: Topics, dbprocs: list[DbProc]) -> None:
    """A tick of every market, and wait until each dbproc trades on it."""
    now = time.time_ns() // 1000
    for market in MARKETS.values():
        price = SIMULATION[market.symbol].price
        tick = PriceTick(symbol=market.symbol, bid=price, ask=price, exchange_time_us=now, ingest_time_us=now)
        await bus.publish(topics.prices, encode(tick), key=market.symbol.encode())
    await eventually(lambda: all(not d.quotes.unpriced() and all(q.ts == now // 1000 for q in d.quotes.fresh().values())
                                 for d in dbprocs), "every dbproc has the prices")


async def _open(rpc: RequestClient, user_id: str) -> str:
    order = PositionCreate(symbol="SOL_USDC", side="long", qty=D("0.5"), leverage=2)
    return (await rpc.call(ops.OPEN, OpenCommand(user_id=user_id, order=order), key=user_id,
                           command_id=f"open-{uuid.uuid4().hex}")).id


async def _place(rpc: RequestClient, user_id: str) -> str:
    order = OrderCreate(symbol="SOL_USDC", side="long", type="limit", qty=D("0.5"), price=D("1.00"), leverage=2)
    return (await rpc.call(ops.ORDER_PLACE, PlaceOrderCommand(user_id=user_id, order=order), key=user_id,
                           command_id=f"order-{uuid.uuid4().hex}")).id


def _working(dbproc: DbProc, orders: dict[str, str]) -> set[str]:
    """Which of `orders` (order id → user id) the dbproc's risk engine indexes."""
    return {o for o in orders if o in dbproc.risk.orders}


def _held(dbproc: DbProc, positions: dict[str, str]) -> set[str]:
    """Which of `positions` (position id → user id) the dbproc's risk book holds."""
    return {p for p in positions if p in dbproc.risk.book}


async def test_two_dbprocs_split_the_accounts_by_partition_and_hand_them_over(make_settings, platform):
    settings = make_settings(bus={"topic_prefix": f"riskpart{uuid.uuid4().hex[:8]}.", "partitions": 6})
    every = set(range(6))
    bus = create_bus(settings.bus, settings.instance_id)
    await bus.start()
    topics = Topics(settings.bus)
    first = DbProc(msgspec.structs.replace(settings, instance_id="first"), bus, platform.db, platform.cache)
    second = DbProc(msgspec.structs.replace(settings, instance_id="second"), bus, platform.db, platform.cache)
    rpc = RequestClient(bus, topics.routes(), topics.replies, f"risk-{uuid.uuid4().hex[:6]}", timeout=30)
    started: list[DbProc] = []
    try:
        await first.start()
        started.append(first)
        await rpc.start()
        await eventually(lambda: first.risk.owned == every, "the first dbproc owns every partition")
        await _prices(bus, topics, [first])
        users = []
        for n in range(USERS):
            user = await rpc.call(ops.USER_CREATE, CreateUser(email=f"split-{uuid.uuid4().hex[:10]}-{n}@example.com",
                                                              name="Split", password_hash="x"),
                                  key=f"user-{n}", command_id=f"create-{uuid.uuid4().hex}")
            users.append(user.id)
        positions = {await _open(rpc, user_id): user_id for user_id in users}
        orders = {await _place(rpc, user_id): user_id for user_id in users}  # working: far below the price
        await eventually(lambda: _held(first, positions) == positions.keys(), "the first dbproc holds every account")
        await eventually(lambda: _working(first, orders) == orders.keys(), "the first dbproc indexes every order")

        await second.start()  # the group rebalances: the second dbproc loads the accounts of what it gets
        started.append(second)
        await eventually(lambda: bool(first.risk.owned) and bool(second.risk.owned)
                         and not first.risk.owned & second.risk.owned
                         and first.risk.owned | second.risk.owned == every, "the group settles")
        held_first, held_second = _held(first, positions), _held(second, positions)
        assert not held_first & held_second, "an account is checked by both"
        assert held_first | held_second == positions.keys(), "an account is checked by neither"
        assert USERS // 5 <= len(held_first) <= USERS - USERS // 5, (len(held_first), len(held_second))
        orders_first, orders_second = _working(first, orders), _working(second, orders)  # the orders go along
        assert not orders_first & orders_second and orders_first | orders_second == orders.keys()
        assert orders_first == {o for o, u in orders.items() if first.risk.partition_of(u) in first.risk.owned}
        for dbproc in (first, second):  # each holds exactly the users of its partitions, and no one else's
            for position_id in _held(dbproc, positions):
                assert dbproc.risk.partition_of(positions[position_id]) in dbproc.risk.owned
            assert all(dbproc.risk.partition_of(u) in dbproc.risk.owned for u in dbproc.risk.book.user_ids())

        await _prices(bus, topics, [first, second])
        await _marks_come_once_from_the_owner(bus, topics, users)
        more = {await _open(rpc, user_id): user_id for user_id in users}  # through the events, to the owner only
        everything = positions | more
        await eventually(lambda: _held(first, everything) | _held(second, everything) == everything.keys(),
                         "the new positions reach their owner's book")
        assert not _held(first, everything) & _held(second, everything)
        assert _held(first, more) == {p for p, u in more.items() if first.risk.partition_of(u) in first.risk.owned}

        await second.stop()  # its partitions go back to the first dbproc, which loads their accounts again
        started.remove(second)
        assert second.risk.book.users() == 0 and second.risk.owned == set()
        await eventually(lambda: first.risk.owned == every and _held(first, everything) == everything.keys(),
                         "the first dbproc holds every account again")
        assert _working(first, orders) == orders.keys() and len(second.risk.orders) == 0
    finally:
        await rpc.stop()
        for dbproc in reversed(started):
            await dbproc.stop()
        await bus.stop()


async def _marks_come_once_from_the_owner(bus: Bus, topics: Topics, users: list[str]) -> None:
    """Watch every account: each is marked by the dbproc that owns it, so with no price moving, each user gets
    exactly one mark (two dbprocs marking one account would send two)."""
    marks: dict[str, list[dict]] = {}

    async def collect(message) -> None:
        marks.setdefault(message.key.decode(), []).append(msgspec.json.decode(message.value))

    subscription = await bus.subscribe([topics.marks], collect, group=None)
    try:
        for user_id in users:
            await send(bus, topics.routes(), ops.WATCH_ACCOUNT, WatchAccount(user_id=user_id, seconds=30),
                       key=user_id, command_id=uuid.uuid4().hex)
        await eventually(lambda: marks.keys() == set(users), "every watched account is marked")
        await asyncio.sleep(2 * MARK_INTERVAL + 0.5)
        assert {user_id: len(frames) for user_id, frames in marks.items()} == dict.fromkeys(users, 1)
        for frames in marks.values():
            (frame,) = frames
            assert frame["event"] == "mark" and len(frame["marks"]) == 1
            assert D(frame["account"]["used_margin"]) > 0
    finally:
        await subscription.stop()


# --- the handover when the owner dies (Kafka, processes) --------------------------------------------------

OWNS = re.compile(r"risk engine .* owns (none|[\d,]+)$")


def _owned(log_file: Path) -> set[int] | None:
    """The partitions the dbproc writing `log_file` says it checks, by its latest line about them."""
    found = None
    for line in log_file.read_text(errors="replace").splitlines():
        match = OWNS.search(line)
        if match:
            found = set() if match.group(1) == "none" else {int(p) for p in match.group(1).split(",")}
    return found


class _Feed:
    """Ticks of every market every 100 ms, SOL_USDC at a price the test moves."""

    def __init__(self, server: Platform, sol: str) -> None:
        self.server = server
        self.sol = D(sol)
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        topic = self.server.settings.bus.topic("price-updates")
        while not self.stopping.is_set():
            now = time.time_ns() // 1000
            for market in MARKETS.values():
                price = self.sol if market.symbol == "SOL_USDC" else SIMULATION[market.symbol].price
                tick = PriceTick(symbol=market.symbol, bid=price, ask=price, exchange_time_us=now, ingest_time_us=now)
                await self.server.bus.publish(topic, encode(tick), key=market.symbol.encode(), wait=False)
            await asyncio.sleep(0.1)


@real_only
async def test_a_stop_owned_by_a_killed_dbproc_is_applied_once_by_the_one_that_takes_its_partitions(
        make_settings, mailbox, platform, tmp_path):
    partitions = 4
    settings = make_settings(bus={"topic_prefix": f"handover{uuid.uuid4().hex[:6]}.", "partitions": partitions})
    logs = {name: tmp_path / f"dbproc-{name}.log" for name in ("a", "b")}

    def spawn(name: str) -> subprocess.Popen:
        env = child_env(settings, CFD_INSTANCE_ID=f"dbproc-{name}")
        with logs[name].open("wb") as log_file:
            return subprocess.Popen([sys.executable, "-m", "cfd_cli.main", "dbproc"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=log_file)

    server = Platform(settings, ("server",))
    await server.start()
    feed = _Feed(server, "100.00")
    ticking = asyncio.ensure_future(feed.run())
    a = b = None
    try:
        a = spawn("a")
        await eventually(lambda: _owned(logs["a"]) == set(range(partitions)), "dbproc a owns every partition", 60)
        b = spawn("b")
        await eventually(lambda: bool(_owned(logs["a"])) and bool(_owned(logs["b"]))
                         and _owned(logs["a"]) | _owned(logs["b"]) == set(range(partitions)), "the group settles", 60)
        owned_by_a = _owned(logs["a"])
        assert owned_by_a and not owned_by_a & (_owned(logs["b"]) or set())
        trading = server.settings.bus.topic("requests.trading")
        async with httpx.AsyncClient(base_url=server.base_url + "/api/v1", timeout=20) as api:
            for _ in range(40):  # a trader whose commands, and so whose account, are dbproc a's
                body = await sign_up(api, mailbox, f"handover-{uuid.uuid4().hex[:10]}@example.com")
                auth = {"Authorization": f"Bearer {body['access_token']}"}
                user_id = (await api.get("/auth/me", headers=auth)).json()["user"]["id"]
                if server.bus.partition_for(trading, user_id.encode()) in owned_by_a:
                    break
            else:
                raise AssertionError("no trader landed on dbproc a's partitions")
            opened = await api.post("/positions", headers=auth, json={"symbol": "SOL_USDC", "side": "long",
                                                                      "qty": "2", "leverage": 5, "stop_loss": "95"})
            assert opened.status_code == 201, opened.text
            position_id = opened.json()["id"]

        a.send_signal(signal.SIGKILL)
        a.wait()
        killed = time.monotonic()
        feed.sol = D("90.00")  # through the stop; nobody checks the account until the group notices a is gone
        stop_price = broker_quote(MARKETS["SOL_USDC"], feed.sol, feed.sol, 0).bid
        row = None
        while time.monotonic() - killed < 60:
            row = await Positions.select().where(Positions.id == uuid.UUID(position_id)).first().run()
            if row["status"] == "closed":
                break
            await asyncio.sleep(0.05)
        applied = time.monotonic() - killed
        print(f"\nthe stop was applied {applied:.1f} s after the owner was killed")
        assert row is not None and row["status"] == "closed", "the stop was never applied"
        assert row["close_reason"] == "stop_loss" and row["close_price"] == stop_price, row
        assert applied < SESSION_TIMEOUT_MS / 1000 + 10, f"the handover took {applied:.1f} s"
        assert _owned(logs["b"]) == set(range(partitions)), "dbproc b did not take a's partitions"

        await asyncio.sleep(1)  # room for a second application to show up
        uid = uuid.UUID(user_id)
        balance = (await Accounts.select(Accounts.balance).where(Accounts.user_id == uid).first().run())["balance"]
        entries = await LedgerEntries.select().where(LedgerEntries.user_id == uid).order_by(
            LedgerEntries.created_at).run()
        assert sum(e["amount"] for e in entries) == balance, "the ledger and the balance disagree"
        kinds = [e["kind"] for e in entries]  # and the commissions of the open and of the close
        assert kinds[0] == "deposit" and kinds.count("realized_pnl") == 1, f"the close was booked twice: {kinds}"
        (realized,) = [e for e in entries if e["kind"] == "realized_pnl"]
        assert realized["amount"] == (stop_price - D(opened.json()["entry_price"])) * 2
        assert kinds.count("commission") == 2  # the open's and the close's, once each
    finally:
        feed.stopping.set()
        await ticking
        for process in (a, b):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(10)
        await server.stop()
