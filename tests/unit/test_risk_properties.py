"""The risk book against brute force: random books, random mutations and random price paths.

After every tick, the stop-losses and take-profits the book returns are exactly those `stop_trigger` finds
over every position not pending a close, and its account triggers are exactly what the exact levels
(`account_state`, pending positions using no margin) say: a `stop_out` for every user below 50 % without a
stop-out pending and for no one else, a `margin_call` / `margin_call_cleared` whenever being below 100 %
changed since the last trigger.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cfd_dbproc.risk import OpenPosition, RiskBook
from cfd_dbproc.risk.ladder import COMPACT_MIN, PriceLadder
from cfd_dbproc.risk.levels import EXACT, Holding, Net, split, thresholds, watch_key
from shared.contracts.quote import Quote
from shared.trading import Exposure, account_state, close_price, margin, stop_trigger

SYMBOLS = ("AAA", "BBB", "CCC")
USERS = ("u0", "u1", "u2", "u3", "u4")
CENT = Decimal("0.01")

cents = st.integers(min_value=2_000, max_value=30_000).map(lambda c: Decimal(c) * CENT)


class Model:
    """The brute-force reference: plain dicts and `shared.trading`."""

    def __init__(self, balances: dict[str, Decimal]) -> None:
        self.positions: dict[str, OpenPosition] = {}
        self.balances = dict(balances)
        self.pending: set[str] = set()
        self.stop_pending: set[str] = set()
        self.called: set[str] = set()
        self.quotes: dict[str, Quote] = {}

    def level(self, user: str) -> Decimal | None:
        exposures = [Exposure(symbol=p.symbol, side=p.side, qty=p.qty, entry_price=p.entry_price,
                              margin=Decimal(0) if p.id in self.pending else p.margin)
                     for p in self.positions.values() if p.user_id == user]
        return account_state(self.balances[user], exposures, self.quotes).margin_level

    def tick(self, quote: Quote) -> tuple[dict, list]:
        self.quotes[quote.symbol] = quote
        stops = {}
        for p in self.positions.values():
            if p.symbol == quote.symbol and p.id not in self.pending:
                kind = stop_trigger(p.side, p.stop_loss, p.take_profit, quote)
                if kind is not None:
                    stops[p.id] = (kind, close_price(p.side, quote))
        self.pending |= stops.keys()
        accounts = []
        for user in USERS:
            level = self.level(user)
            below = level is not None and level < 100
            if below != (user in self.called):
                accounts.append(("margin_call" if below else "margin_call_cleared", user, level))
                (self.called.add if below else self.called.discard)(user)
            if level is not None and level < 50 and user not in self.stop_pending:
                accounts.append(("stop_out", user, level))
                self.stop_pending.add(user)
        return stops, accounts


@st.composite
def new_position(draw, pid: str) -> OpenPosition:
    side = draw(st.sampled_from(("long", "short")))
    entry = draw(st.integers(min_value=8_000, max_value=12_000).map(lambda c: Decimal(c) * CENT))
    qty = Decimal(draw(st.sampled_from(("0.5", "1", "2", "3", "7"))))
    leverage = draw(st.integers(min_value=1, max_value=20))
    below = entry * (1 - Decimal(draw(st.integers(min_value=1, max_value=40))) / 100)
    above = entry * (1 + Decimal(draw(st.integers(min_value=1, max_value=40))) / 100)
    stop_loss, take_profit = (below, above) if side == "long" else (above, below)
    return OpenPosition(id=pid, user_id=draw(st.sampled_from(USERS)), symbol=draw(st.sampled_from(SYMBOLS)),
                        side=side, qty=qty, entry_price=entry, margin=margin(qty, entry, leverage),
                        stop_loss=draw(st.none() | st.just(stop_loss.quantize(CENT))),
                        take_profit=draw(st.none() | st.just(take_profit.quantize(CENT))))


def balance_for(draw, book_margin: Decimal) -> Decimal:
    return (book_margin * Decimal(draw(st.integers(min_value=0, max_value=250))) / 100).quantize(CENT)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_triggers_match_brute_force_along_random_paths(data):
    draw = data.draw
    positions = [draw(new_position(f"p{i}")) for i in range(draw(st.integers(min_value=1, max_value=14)))]
    balances = {u: balance_for(draw, sum((p.margin for p in positions if p.user_id == u), Decimal(0)))
                for u in USERS}
    book, model = RiskBook(), Model(balances)
    book.load(positions, balances)
    model.positions = {p.id: p for p in positions}
    mids = {s: Decimal(100) for s in SYMBOLS}
    next_id = len(positions)
    for _ in range(draw(st.integers(min_value=1, max_value=30))):
        action = draw(st.sampled_from(("tick",) * 6 + ("close", "release", "release_user", "balance", "open",
                                                       "update")))
        if action == "tick":
            symbol = draw(st.sampled_from(SYMBOLS))
            step = draw(st.integers(min_value=-1_500, max_value=1_500))  # in basis points
            mids[symbol] = max(Decimal(1), (mids[symbol] * (10_000 + step) / 10_000).quantize(CENT))
            spread = draw(st.sampled_from((0, 1, 2, 5, 50, 400))) * CENT
            bid = mids[symbol] - spread / 2
            quote = Quote(symbol=symbol, bid=bid.quantize(CENT), ask=(bid + spread).quantize(CENT),
                          mid=mids[symbol], ts=0)
            got = book.on_quote(quote)
            stops, accounts = model.tick(quote)
            got_stops = {t.position_id: (t.kind, t.price) for t in got if t.position_id is not None}
            got_accounts = [(t.kind, t.user_id, t.margin_level) for t in got if t.position_id is None]
            assert got_stops == stops
            assert sorted(got_accounts, key=str) == sorted(accounts, key=str)
            assert all(t.quote is quote for t in got)
            for t in got:
                event(t.kind)
        elif action == "close" and model.positions:
            pid = draw(st.sampled_from(sorted(model.positions)))
            user = model.positions.pop(pid).user_id
            model.pending.discard(pid)
            model.stop_pending.discard(user)
            if draw(st.booleans()):  # with the balance after the close, in one call
                model.balances[user] = balance_for(draw, Decimal(400))
                assert book.position_closed(pid, model.balances[user])
            else:
                assert book.position_closed(pid)
        elif action == "release" and model.pending:
            pid = draw(st.sampled_from(sorted(model.pending)))
            model.pending.discard(pid)
            assert book.release(pid)
        elif action == "release_user" and model.stop_pending:
            user = draw(st.sampled_from(sorted(model.stop_pending)))
            model.stop_pending.discard(user)
            assert book.release_user(user)
        elif action == "balance":
            user = draw(st.sampled_from(USERS))
            model.balances[user] = balance_for(draw, Decimal(400))
            model.stop_pending.discard(user)
            book.balance_changed(user, model.balances[user])
        elif action == "open":
            p = draw(new_position(f"p{next_id}"))
            next_id += 1
            model.positions[p.id] = p
            model.stop_pending.discard(p.user_id)
            # As the risk runner does: an `opened` event carries the balance (the book drops idle users).
            book.balance_changed(p.user_id, model.balances[p.user_id])
            book.position_opened(p)
        elif action == "update" and model.positions:
            old = model.positions[draw(st.sampled_from(sorted(model.positions)))]
            fresh = draw(new_position(old.id))
            share = Decimal(draw(st.sampled_from((1, 2, 4)))) / 4  # a partial close keeps this share
            p = OpenPosition(id=old.id, user_id=old.user_id, symbol=old.symbol, side=old.side, qty=old.qty * share,
                             entry_price=old.entry_price, margin=(old.margin * share).quantize(CENT),
                             stop_loss=fresh.stop_loss if fresh.side == old.side else fresh.take_profit,
                             take_profit=fresh.take_profit if fresh.side == old.side else fresh.stop_loss)
            model.positions[p.id] = p
            model.pending.discard(p.id)
            model.stop_pending.discard(p.user_id)
            if share < 1 and draw(st.booleans()):  # a partial close books its PnL
                model.balances[p.user_id] = balance_for(draw, Decimal(400))
                book.position_updated(p, model.balances[p.user_id])
            else:
                book.position_updated(p)
        assert len(book) == len(model.positions)


# --- the pieces -------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(st.tuples(st.sampled_from(("bid", "ask", "spread")), st.booleans(),
                               st.integers(min_value=-5, max_value=50)), max_size=60),
       cancelled=st.sets(st.integers(min_value=0, max_value=59)), bid=st.integers(min_value=-1, max_value=51),
       spread=st.integers(min_value=0, max_value=5))
def test_a_price_ladder_returns_exactly_the_live_keys_reached(keys, cancelled, bid, spread):
    ladder = PriceLadder()
    tickets = [ladder.add(series, rising, Decimal(k), str(i)) for i, (series, rising, k) in enumerate(keys)]
    cancelled &= set(range(len(keys)))
    for i in cancelled:
        ladder.cancel(tickets[i])
    prices = {"bid": bid, "ask": bid + spread, "spread": spread}
    expected = {str(i) for i, (series, rising, k) in enumerate(keys)
                if i not in cancelled and (prices[series] >= k if rising else prices[series] <= k)}
    fired = ladder.reached(Decimal(bid), Decimal(bid + spread), Decimal(spread))
    assert sorted(fired) == sorted(expected)
    assert len(ladder) == len(keys) - len(cancelled) - len(expected)
    assert ladder.reached(Decimal(bid), Decimal(bid + spread), Decimal(spread)) == []


def test_a_ladder_drops_its_dead_keys_once_they_outnumber_the_live_ones():
    ladder = PriceLadder()
    n = 2 * COMPACT_MIN + 10
    tickets = [ladder.add("bid", True, Decimal(i), str(i)) for i in range(n)]

    def stored() -> int:
        return sum(len(index.heap) for index in ladder._indexes.values())

    for ticket in tickets[: COMPACT_MIN + 5]:  # dead: COMPACT_MIN + 5, live: COMPACT_MIN + 5
        ladder.cancel(ticket)
    assert stored() == n
    ladder.cancel(tickets[COMPACT_MIN + 5])  # now more dead than live: rebuilt without them
    assert stored() == len(ladder) == COMPACT_MIN + 4
    ladder.cancel(tickets[0])  # cancelling twice changes nothing
    fired = ladder.reached(Decimal(n), Decimal(n), Decimal(0))
    assert sorted(fired, key=int) == [str(i) for i in range(COMPACT_MIN + 6, n)]


qty = st.integers(min_value=0, max_value=40).map(lambda q: Decimal(q) / 4)
price = st.integers(min_value=1, max_value=40_000).map(lambda c: Decimal(c) * CENT)


@settings(max_examples=400, deadline=None)
@given(lq=qty, sq=qty, lc=price, sc=price, bid=price, spread=st.integers(0, 300).map(lambda c: Decimal(c) * CENT),
       target=st.integers(-400_000, 400_000).map(lambda c: Decimal(c) * CENT), rising=st.booleans(),
       allowance=st.integers(0, 300).map(lambda c: Decimal(c) * CENT))
def test_a_watch_key_fires_whenever_the_market_reaches_its_target(lq, sq, lc, sc, bid, spread, target, rising,
                                                                  allowance):
    """No false negatives: if f_s reaches the target at a quote within the spread allowance, the key fires."""
    if lq == 0 and sq == 0:
        return
    net = Net()
    net.long_qty, net.long_cost, net.short_qty, net.short_cost = lq, lc * lq, sq, sc * sq
    net.count = 1
    quote = Quote(symbol="X", bid=bid, ask=bid + spread, mid=bid, ts=0)
    value = net.value(quote)
    reached = value >= target if rising else value <= target
    spread_hi = max(spread, allowance)
    series, fires_rising, key = watch_key(net, target, rising, Decimal(0), spread_hi)
    observed = {"bid": quote.bid, "ask": quote.ask, "spread": quote.ask - quote.bid}[series]
    fires = observed >= key if fires_rising else observed <= key
    if reached:
        assert fires


@given(slack=st.integers(0, 10**9).map(lambda c: Decimal(c) / 1000),
       weights=st.lists(st.integers(0, 10**6).map(Decimal), min_size=1, max_size=5))
def test_budgets_never_add_up_to_more_than_the_slack(slack, weights):
    budgets = split(slack, weights)
    assert len(budgets) == len(weights) and all(b >= 0 for b in budgets)
    total = Decimal(0)
    for b in budgets:
        total = EXACT.add(total, b)  # exactly: the default context would round
    assert total <= slack


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_multi_market_user_near_the_boundaries_is_never_missed(data):
    """One user in every market, balance near the margin levels, small steps: the budgets are what is tested."""
    draw = data.draw
    positions = [draw(new_position(f"p{i}")) for i in range(draw(st.integers(min_value=2, max_value=6)))]
    positions = [OpenPosition(id=p.id, user_id="u0", symbol=SYMBOLS[i % len(SYMBOLS)], side=p.side, qty=p.qty,
                              entry_price=p.entry_price, margin=p.margin) for i, p in enumerate(positions)]
    used = sum((p.margin for p in positions), Decimal(0))
    balances = {u: Decimal(0) for u in USERS}
    balances["u0"] = (used * Decimal(draw(st.integers(min_value=40, max_value=130))) / 100).quantize(CENT)
    book, model = RiskBook(), Model(balances)
    book.load(positions, balances)
    model.positions = {p.id: p for p in positions}
    mids = {s: Decimal(100) for s in SYMBOLS}
    for _ in range(draw(st.integers(min_value=1, max_value=40))):
        symbol = draw(st.sampled_from(SYMBOLS))
        mids[symbol] = max(Decimal(1), mids[symbol] + draw(st.integers(min_value=-300, max_value=300)) * CENT)
        quote = Quote(symbol=symbol, bid=mids[symbol], ask=mids[symbol] + draw(st.sampled_from((0, 1, 3))) * CENT,
                      mid=mids[symbol], ts=0)
        got = book.on_quote(quote)
        _, accounts = model.tick(quote)
        assert sorted(((t.kind, t.user_id, t.margin_level) for t in got), key=str) == sorted(accounts, key=str)
        if "u0" in model.stop_pending and draw(st.booleans()):
            model.stop_pending.discard("u0")
            book.release_user("u0")


EPSILON = Decimal("1e-60")  # finer than the keys (34 digits): exposes a key rounded the wrong way
WATCHES = ((Decimal(100), False), (Decimal("99.99"), True), (Decimal(50), False))


@st.composite
def holding(draw, symbol: str) -> tuple[Holding, Quote]:
    net = Net()
    net.long_qty, net.short_qty = draw(qty), draw(qty)
    if net.long_qty == 0 and net.short_qty == 0:
        net.long_qty = Decimal(1)
    net.long_cost, net.short_cost = net.long_qty * draw(price), net.short_qty * draw(price)
    net.count = 1
    bid, spread = draw(price), draw(st.integers(0, 200)) * CENT
    quote = Quote(symbol=symbol, bid=bid, ask=bid + spread, mid=bid, ts=0)
    allowance = spread + draw(st.integers(0, 200)) * CENT
    return Holding(symbol, net, net.value(quote), Decimal(0), allowance), quote


@settings(max_examples=500, deadline=None)
@given(data=st.data(), watch=st.sampled_from(WATCHES),
       balance=st.integers(-10**7, 10**7).map(lambda c: Decimal(c) * CENT),
       used=st.integers(1, 10**7).map(lambda c: Decimal(c) * CENT))
def test_no_quote_that_reaches_no_key_moves_the_account_past_the_watched_level(data, watch, balance, used):
    """The theorem behind the account index, against the worst quotes: in every market, the quote nearest to
    the key that does not reach it (and the widest spread the allowance admits for a fall, the narrowest for
    a recovery). Even then the account stays on its side of the watched level."""
    markets, quotes = zip(*[data.draw(holding(s)) for s in SYMBOLS[: data.draw(st.integers(1, 3))]], strict=True)
    keys = thresholds(balance, used, list(markets), [watch], verified=False)
    event("past the level already" if keys is None else "keyed")
    if keys is None:  # already past the level: the book checks exactly instead
        return
    level, rising = watch
    equity = balance
    for (symbol, series, fires_rising, key), m, q in zip(keys, markets, quotes, strict=True):
        spread = m.spread_lo if rising else m.spread_hi
        near = EXACT.subtract(key, EPSILON) if fires_rising else EXACT.add(key, EPSILON)  # just short of it
        if series == "bid":
            worst = Quote(symbol=symbol, bid=near, ask=EXACT.add(near, spread), mid=near, ts=0)
        elif series == "ask":
            worst = Quote(symbol=symbol, bid=EXACT.subtract(near, spread), ask=near, mid=near, ts=0)
        else:  # flat: only the spread counts, and it is keyed exactly
            worst = Quote(symbol=symbol, bid=q.bid, ask=EXACT.add(q.bid, near), mid=q.bid, ts=0)
        equity = EXACT.add(equity, m.net.value(worst))
    boundary = EXACT.divide(EXACT.multiply(used, level), 100)
    assert (equity < boundary) if rising else (equity >= boundary)
