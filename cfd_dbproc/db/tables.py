"""The database tables. Only the dbproc (and `cfd db migrate`) touch them.

Money columns are NUMERIC and read back as `Decimal`; times are epoch milliseconds.
"""

from __future__ import annotations

from decimal import Decimal

from piccolo.columns import UUID, BigInt, BigSerial, Boolean, Integer, Numeric, Text, Varchar
from piccolo.columns.indexes import IndexMethod
from piccolo.table import Table

MONEY = (28, 10)


class Users(Table, tablename="users"):
    id = UUID(primary_key=True)
    email = Varchar(length=254, unique=True, index=True)
    name = Varchar(length=200)
    password_hash = Varchar(length=100)
    disabled = Boolean(default=False)
    created_at = BigInt()


class Accounts(Table, tablename="accounts"):
    """One cross-margin account per user; `balance` is the sum of the user's ledger entries.

    `event_seq` is the `seq` of the user's latest account event (0 before the first): each command's events
    take the next numbers, in the command's transaction, with the row locked. `margin_called`: a margin call
    is out (the trader was told `margin_call` and not yet `margin_call_cleared`)."""

    id = UUID(primary_key=True)
    user_id = UUID(unique=True, index=True)
    currency = Varchar(length=8, default="USD")
    balance = Numeric(digits=MONEY)
    created_at = BigInt()
    event_seq = BigInt(default=0)
    margin_called = Boolean(default=False)


class AccountEvents(Table, tablename="account_events"):
    """Every account event as it went out on the `account` channel (`frame`, the encoded JSON with its `seq`),
    kept `CFD_ACCOUNT_EVENT_RETENTION_HOURS` so a client can resume after `seq`. The migration adds the unique
    index on `(user_id, seq)` that the resumes read, and one on `created_at` for the purge."""

    id = BigSerial(primary_key=True)
    user_id = UUID()
    seq = BigInt()
    frame = Text()
    created_at = BigInt()


class LedgerEntries(Table, tablename="ledger_entries"):
    """Every balance change: deposit, realized_pnl, commission, financing, fee, shortfall (negative-balance
    protection)."""

    id = UUID(primary_key=True)
    user_id = UUID(index=True, index_method=IndexMethod.btree)
    kind = Varchar(length=32)
    amount = Numeric(digits=MONEY)
    balance_after = Numeric(digits=MONEY)
    reference = Varchar(length=64, null=True, default=None)
    command_id = Varchar(length=128)
    created_at = BigInt(index=True)


class ProcessedCommands(Table, tablename="processed_commands"):
    """The reply of every applied command, so a repeated command returns it and changes nothing."""

    command_id = Varchar(length=128, primary_key=True)
    type = Varchar(length=64)
    user_id = Varchar(length=254, index=True)
    reply = Text()
    created_at = BigInt()


class Candles(Table, tablename="candles"):
    """One-minute candles on the broker mid, one row per market and minute.

    The migration adds a unique index on `(symbol, t)` (Piccolo's `Unique` constraint needs ALTER TABLE ADD
    CONSTRAINT, which SQLite lacks), which also serves every history query.

    `last_tick_us` is the exchange time of the last tick applied, so a redelivered tick changes nothing.
    """

    symbol = Varchar(length=32)
    t = BigInt()
    o = Numeric(digits=MONEY)
    h = Numeric(digits=MONEY)
    l = Numeric(digits=MONEY)  # noqa: E741 - the candle's low, named as on the wire
    c = Numeric(digits=MONEY)
    n = Integer()
    last_tick_us = BigInt()


class Positions(Table, tablename="positions"):
    """Leveraged positions, open and closed. A partial close books the closed part as its own closed row
    (`parent_id` names the position it came from) and shrinks the open one.

    `unbooked_pnl` is the sub-cent part of the realised PnL of earlier partial closes that rounding to cents
    has not booked yet; the next close books it, so N slices book what one close would (to the cent). On a
    closed row it is what the final rounding left unbooked (at most half a cent).

    `commission` and `financing` are what the row has paid so far (financing negative when credited); both are
    ledger entries referencing the row, booked in cents, and `unbooked_commission` and `unbooked_financing`
    carry what rounding to cents has not booked yet, as `unbooked_pnl` does. `financed_until` is the last
    rollover the row has paid financing for (its opening time until the first), so a rollover is never charged
    twice."""

    id = UUID(primary_key=True)
    user_id = UUID(index=True)
    symbol = Varchar(length=32)
    side = Varchar(length=5)
    qty = Numeric(digits=MONEY)
    entry_price = Numeric(digits=MONEY)
    leverage = Integer()
    margin = Numeric(digits=MONEY)
    stop_loss = Numeric(digits=MONEY, null=True, default=None)
    take_profit = Numeric(digits=MONEY, null=True, default=None)
    status = Varchar(length=8, index=True)
    opened_at = BigInt()
    updated_at = BigInt()
    closed_at = BigInt(null=True, default=None)
    close_price = Numeric(digits=MONEY, null=True, default=None)
    realized_pnl = Numeric(digits=MONEY, null=True, default=None)
    close_reason = Varchar(length=16, null=True, default=None)
    parent_id = UUID(null=True, default=None)
    unbooked_pnl = Numeric(digits=MONEY, default=Decimal(0))
    trailing_distance = Numeric(digits=MONEY, null=True, default=None)
    order_id = UUID(null=True, default=None)
    commission = Numeric(digits=MONEY, default=Decimal(0))
    financing = Numeric(digits=MONEY, default=Decimal(0))
    unbooked_commission = Numeric(digits=MONEY, default=Decimal(0))
    unbooked_financing = Numeric(digits=MONEY, default=Decimal(0))
    financed_until = BigInt(default=0)
    open_receipt = Text(null=True, default=None)  # JSON `FillReceipt`s: what each fill was priced from
    close_receipt = Text(null=True, default=None)


class Orders(Table, tablename="orders"):
    """Pending entry orders. `working` until filled (`position_id`), cancelled, expired or rejected (`reason`).

    The migration adds the indexes the lists and the risk engine's start read: `(user_id, created_at, id)`
    for a trader's newest first, `(status, created_at, id)` for the working ones and the operator's list."""

    id = UUID(primary_key=True)
    user_id = UUID()
    symbol = Varchar(length=32)
    side = Varchar(length=5)
    type = Varchar(length=8)
    qty = Numeric(digits=MONEY)
    price = Numeric(digits=MONEY)
    leverage = Integer()
    stop_loss = Numeric(digits=MONEY, null=True, default=None)
    take_profit = Numeric(digits=MONEY, null=True, default=None)
    trailing_distance = Numeric(digits=MONEY, null=True, default=None)
    status = Varchar(length=12)
    created_at = BigInt()
    updated_at = BigInt()
    expires_at = BigInt(null=True, default=None)
    position_id = UUID(null=True, default=None)
    reason = Varchar(length=200, null=True, default=None)


class ApiKeys(Table, tablename="api_keys"):
    """API keys for bots: `id` is the key's public part; only a SHA-256 of its secret part is kept (the secret
    is 256 random bits, so a fast hash is enough). A revoked key keeps its row, with `revoked_at`."""

    id = Varchar(length=32, primary_key=True)
    user_id = UUID(index=True)
    name = Varchar(length=64)
    scopes = Varchar(length=32)  # comma-separated: "read" or "read,trade"
    secret_hash = Varchar(length=64)
    created_at = BigInt()
    revoked_at = BigInt(null=True, default=None)


class Alerts(Table, tablename="alerts"):
    """Price alerts (`symbol`, `condition`, `price`) and margin-level alerts (`below`, percent); `active` until
    they fire once (`triggered`). `notify` is comma-separated: `ws`, `ws,mail`."""

    id = UUID(primary_key=True)
    user_id = UUID(index=True)
    kind = Varchar(length=16)
    symbol = Varchar(length=32, null=True, default=None)
    condition = Varchar(length=8, null=True, default=None)
    price = Numeric(digits=MONEY, null=True, default=None)
    below = Numeric(digits=MONEY, null=True, default=None)
    note = Varchar(length=200, null=True, default=None)
    notify = Varchar(length=16)
    status = Varchar(length=12, index=True)
    created_at = BigInt()
    triggered_at = BigInt(null=True, default=None)
    triggered_value = Numeric(digits=MONEY, null=True, default=None)


class MarketSettingsRows(Table, tablename="market_settings"):
    """The terms operators changed, one row per market changed at least once (a market without a row trades
    on the catalogue's terms, `shared.markets.MARKETS`). `revision` counts its changes."""

    symbol = Varchar(length=32, primary_key=True)
    status = Varchar(length=16)
    spread_bps = Numeric(digits=MONEY)
    commission_rate = Numeric(digits=MONEY)
    financing_long_rate = Numeric(digits=MONEY)
    financing_short_rate = Numeric(digits=MONEY)
    max_leverage = Integer()
    revision = BigInt()
    updated_at = BigInt()


class OperatorAudit(Table, tablename="operator_audit"):
    """Every change an operator made: who (as the operator named themselves; the operator token is shared), from
    which address, when, what (`action` on `subject`), and the values before and after (JSON objects)."""

    id = UUID(primary_key=True)
    at = BigInt()
    operator = Varchar(length=128)
    address = Varchar(length=64, null=True, default=None)
    action = Varchar(length=64)
    subject = Varchar(length=64)
    before = Text()
    after = Text()
    command_id = Varchar(length=128)


ALL_TABLES: list[type[Table]] = [Users, Accounts, LedgerEntries, ProcessedCommands, Candles, Positions, Orders,
                                 ApiKeys, Alerts, MarketSettingsRows, OperatorAudit, AccountEvents]
