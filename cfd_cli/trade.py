"""`cfd trade`: a trader's command line on the client library, for shell scripts and quick orders.

`cfd trade login` signs in once and stores an API key (read and trade) for the server, owner-only, in the
user's config directory (`cfd_client.keys`); every other command uses it. Each listing takes `--json`.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, TypeVar

import msgspec
import typer
from rich.table import Table
from rich.text import Text

from cfd_cli.common import ApiOption, console, fail, run_async
from cfd_cli.output import JsonOption, print_json
from cfd_client import ApiClient, ClientError, api_root
from cfd_client.errors import ApiError
from cfd_client.keys import KeyStore
from cfd_client.models import Side
from shared.contracts.rest import OrderStatus

T = TypeVar("T")
DEFAULT_API = "http://127.0.0.1:8000"

trade_app = typer.Typer(help="Trade from the shell: quotes, orders, positions, alerts, the ledger.",
                        no_args_is_help=True)
alerts_app = typer.Typer(help="Price and margin-level alerts.", no_args_is_help=True)
trade_app.add_typer(alerts_app, name="alerts")


def _url(api: str | None) -> str:
    return api_root(api or DEFAULT_API)


def _call(api: str | None, work: Callable[[ApiClient], Awaitable[T]], *, key: str | None = None) -> T:
    """Run `work` with a client signed in with the stored key; client errors become one red line."""
    url = _url(api)
    token = key or KeyStore().load(url)
    if token is None:
        fail(f"not logged in to {url}", "run: cfd trade login")

    async def go() -> T:
        async with ApiClient(url, token=token) as client:
            return await work(client)

    try:
        return run_async(go())
    except ApiError as exc:
        hint = "run: cfd trade login" if exc.status == 401 else None
        fail(f"{exc.message} ({exc.code})", hint)
    except ClientError as exc:
        fail(str(exc), "is the platform running? start it with: cfd up")


def _decimal(value: str | None, name: str) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        fail(f"{name} must be a number, like 1.5, not {value!r}")


def _print(rows: Any, as_json: bool, table: Callable[[], Table]) -> None:
    if as_json:
        print_json(msgspec.to_builtins(rows))
    else:
        console.print(table())


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S") if ms else "—"


def _side(side: str) -> Text:
    return Text(side, style="green" if side == "long" else "red")


# --- signing in -------------------------------------------------------------------------------------------


@trade_app.command("login")
def login(api: ApiOption = None,
          email: Annotated[str | None, typer.Option("--email", help="Sign in with this email (asks for the password).")]
          = None,
          key: Annotated[str | None, typer.Option("--key", help="Store this API key instead of signing in.")] = None,
          read_only: Annotated[bool, typer.Option("--read-only", help="A key that can read but not trade.")] = False,
          ) -> None:
    """Sign in once and keep an API key for this server (owner-only, in your config directory)."""
    url = _url(api)

    async def with_key(given: str) -> str:
        async with ApiClient(url, token=given) as client:
            return (await client.me()).email

    async def sign_in(address: str, password: str) -> str:
        async with ApiClient(url) as client:
            await client.signin(address, password)
            scopes = ["read"] if read_only else ["read", "trade"]
            answer = await client.request("POST", "/api-keys", body={
                "name": f"cfd trade on {socket.gethostname()}"[:64], "scopes": scopes})
            created = msgspec.json.decode(answer.content)
            await client.logout()  # the key stays; the session is not needed any more
            return created["key"]

    try:
        if key:
            who = run_async(with_key(key))
        else:
            address = email or typer.prompt("Email")
            password = typer.prompt("Password", hide_input=True)
            key = run_async(sign_in(address, password))
            who = address
    except ApiError as exc:
        fail(f"{exc.message} ({exc.code})")
    except ClientError as exc:
        fail(str(exc), "is the platform running? start it with: cfd up")
    KeyStore().save(url, key)
    console.print(f"[green]logged in[/] as {who} at {url}; the key is kept in {KeyStore().path}")


@trade_app.command("logout")
def logout(api: ApiOption = None) -> None:
    """Forget the stored key of this server (revoke it with DELETE /api-keys, or `cfd keys revoke`)."""
    url = _url(api)
    if KeyStore().forget(url):
        console.print(f"forgot the key of {url}")
    else:
        console.print(f"[dim]no key was stored for {url}[/]")


# --- reading ----------------------------------------------------------------------------------------------


@trade_app.command("quote")
def quote(symbols: Annotated[list[str] | None, typer.Argument(help="Markets, like SOL_USDC; all without.")] = None,
          api: ApiOption = None, as_json: JsonOption = False) -> None:
    """The broker's bid and ask."""
    prices = _call(api, lambda c: c.prices())
    wanted = [p for p in prices if not symbols or p.symbol in {s.upper() for s in symbols}]
    if symbols and not wanted:
        fail(f"no market {', '.join(symbols)}", "list them with: cfd trade quote")

    def table() -> Table:
        t = Table()
        for column in ("market", "bid", "ask", "spread", "age"):
            t.add_column(column, justify="left" if column == "market" else "right")
        for p in wanted:
            t.add_row(p.symbol, str(p.bid), str(p.ask), str(p.ask - p.bid),
                      "stale" if p.stale else f"{max(0, time.time() - p.ts / 1000):.1f} s")
        return t

    _print(wanted, as_json, table)


@trade_app.command("positions")
def positions(closed: Annotated[bool, typer.Option("--closed", help="Closed ones instead of open ones.")] = False,
              api: ApiOption = None, as_json: JsonOption = False) -> None:
    """Your positions, newest first."""
    rows = _call(api, lambda c: c.positions("closed" if closed else "open"))

    def table() -> Table:
        t = Table(title=f"{len(rows)} {'closed' if closed else 'open'} position(s)")
        for column in ("id", "market", "side", "qty", "entry", "lev", "stop-loss", "take-profit",
                       "close" if closed else "trailing", "PnL" if closed else "margin"):
            t.add_column(column)
        for p in rows:
            t.add_row(p.id[:8], p.symbol, _side(p.side), str(p.qty), str(p.entry_price), f"{p.leverage}x",
                      str(p.stop_loss or "—"), str(p.take_profit or "—"),
                      str(p.close_price) if closed else str(p.trailing_distance or "—"),
                      str(p.realized_pnl) if closed else str(p.margin))
        return t

    _print(rows, as_json, table)


_STATUSES: dict[str, OrderStatus | None] = {"working": "working", "filled": "filled", "cancelled": "cancelled",
                                            "expired": "expired", "rejected": "rejected", "all": None}


@trade_app.command("orders")
def orders(status: Annotated[str, typer.Option("--status", help="working, filled, cancelled, expired, rejected, "
                                                                  "or all.")] = "working",
           cancel: Annotated[str | None, typer.Option("--cancel", help="Cancel this order (its id).")] = None,
           api: ApiOption = None, as_json: JsonOption = False) -> None:
    """Your pending orders (or cancel one)."""
    if cancel:
        done = _call(api, lambda c: c.cancel_order(cancel))
        console.print(f"[yellow]cancelled[/] {done.side} {done.type} {done.qty} {done.symbol} at {done.price}")
        return
    if status not in _STATUSES:
        fail(f"--status is working, filled, cancelled, expired, rejected or all, not {status!r}")
    rows = _call(api, lambda c: c.orders(_STATUSES[status]))

    def table() -> Table:
        t = Table(title=f"{len(rows)} order(s)")
        for column in ("id", "market", "side", "type", "qty", "price", "expires", "status"):
            t.add_column(column)
        for o in rows:
            t.add_row(o.id[:8], o.symbol, _side(o.side), o.type, str(o.qty), str(o.price),
                      _when(o.expires_at) if o.expires_at else "GTC", o.status + (f" ({o.reason})" if o.reason else ""))
        return t

    _print(rows, as_json, table)


@trade_app.command("ledger")
def ledger(limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 20, api: ApiOption = None,
           as_json: JsonOption = False) -> None:
    """Your balance changes, newest first."""
    rows = _call(api, lambda c: c.ledger(limit))

    def table() -> Table:
        t = Table(title="ledger")
        for column in ("when", "kind", "amount", "balance"):
            t.add_column(column, justify="right" if column in ("amount", "balance") else "left")
        for e in rows:
            t.add_row(_when(e.created_at), e.kind, str(e.amount), str(e.balance_after))
        return t

    _print(rows, as_json, table)


# --- trading ----------------------------------------------------------------------------------------------


def _order(side: str, symbol: str, qty: str, leverage: int, sl: str | None, tp: str | None, trail: str | None,
           limit: str | None, stop: str | None, expires: str | None, api: str | None, as_json: bool) -> None:
    if limit and stop:
        fail("give --limit or --stop, not both")
    amount = _decimal(qty, "QTY")
    assert amount is not None  # QTY is required
    stop_loss, take_profit, trailing = _decimal(sl, "--sl"), _decimal(tp, "--tp"), _decimal(trail, "--trail")
    symbol = symbol.upper()
    long_or_short: Side = "long" if side == "long" else "short"
    if limit or stop:
        price = _decimal(limit or stop, "--limit" if limit else "--stop")
        assert price is not None
        expires_at = _expiry(expires) if expires else None
        order = _call(api, lambda c: c.place_order(symbol, long_or_short, "limit" if limit else "stop", amount, price,
                                                   leverage, stop_loss=stop_loss, take_profit=take_profit,
                                                   trailing_distance=trailing, expires_at=expires_at))
        if as_json:
            print_json(msgspec.to_builtins(order))
        else:
            console.print(f"[bold]working[/] {order.side} {order.type} {order.qty} {order.symbol} at {order.price} "
                          f"[dim]{order.id}[/]")
        return
    position = _call(api, lambda c: c.open_position(symbol, long_or_short, amount, leverage, stop_loss=stop_loss,
                                                    take_profit=take_profit, trailing_distance=trailing))
    if as_json:
        print_json(msgspec.to_builtins(position))
    else:
        console.print(f"[green]opened[/] {position.side} {position.qty} {position.symbol} at {position.entry_price}, "
                      f"margin {position.margin} [dim]{position.id}[/]")


def _expiry(text: str) -> int:
    """`30m`, `4h`, `2d` from now, as epoch ms."""
    units = {"m": 60, "h": 3600, "d": 86400}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        fail(f"--expires is a duration like 30m, 4h or 2d, not {text!r}")
    return int((time.time() + int(text[:-1]) * units[text[-1]]) * 1000)


_Leverage = Annotated[int, typer.Option("--leverage", "-l", min=1, max=1000)]
_Price = Annotated[str | None, typer.Option(help="A price.")]


@trade_app.command("buy")
def buy(symbol: str, qty: str, leverage: _Leverage = 1,
        sl: Annotated[str | None, typer.Option("--sl", help="Stop-loss price.")] = None,
        tp: Annotated[str | None, typer.Option("--tp", help="Take-profit price.")] = None,
        trail: Annotated[str | None, typer.Option("--trail", help="Trailing stop distance.")] = None,
        limit: Annotated[str | None, typer.Option("--limit", help="A buy limit at this price.")] = None,
        stop: Annotated[str | None, typer.Option("--stop", help="A buy stop at this price.")] = None,
        expires: Annotated[str | None, typer.Option("--expires", help="A pending order's life: 30m, 4h, 2d.")] = None,
        api: ApiOption = None, as_json: JsonOption = False) -> None:
    """Go long: at the market, or a pending order with --limit / --stop."""
    _order("long", symbol, qty, leverage, sl, tp, trail, limit, stop, expires, api, as_json)


@trade_app.command("sell")
def sell(symbol: str, qty: str, leverage: _Leverage = 1,
         sl: Annotated[str | None, typer.Option("--sl", help="Stop-loss price.")] = None,
         tp: Annotated[str | None, typer.Option("--tp", help="Take-profit price.")] = None,
         trail: Annotated[str | None, typer.Option("--trail", help="Trailing stop distance.")] = None,
         limit: Annotated[str | None, typer.Option("--limit", help="A sell limit at this price.")] = None,
         stop: Annotated[str | None, typer.Option("--stop", help="A sell stop at this price.")] = None,
         expires: Annotated[str | None, typer.Option("--expires", help="A pending order's life: 30m, 4h, 2d.")] = None,
         api: ApiOption = None, as_json: JsonOption = False) -> None:
    """Go short: at the market, or a pending order with --limit / --stop."""
    _order("short", symbol, qty, leverage, sl, tp, trail, limit, stop, expires, api, as_json)


@trade_app.command("close")
def close(position_id: Annotated[str | None, typer.Argument(help="The position's id (the first 8 characters do).")]
          = None,
          qty: Annotated[str | None, typer.Option("--qty", help="Close only this much.")] = None,
          everything: Annotated[bool, typer.Option("--all", help="Close every open position.")] = False,
          symbol: Annotated[str | None, typer.Option("--symbol", help="With --all: only this market's.")] = None,
          api: ApiOption = None, as_json: JsonOption = False) -> None:
    """Close a position (or part of it), or every one with --all."""
    if everything == (position_id is not None):
        fail("give a position id, or --all")
    if everything:
        closed = _call(api, lambda c: c.close_all(symbol.upper() if symbol else None))
    else:
        async def one(c: ApiClient) -> list[Any]:
            assert position_id is not None
            wanted = position_id
            if len(wanted) < 36:  # a prefix, as the tables print it
                matches = [p.id for p in await c.positions("open") if p.id.startswith(wanted)]
                if len(matches) != 1:
                    fail(f"{'no' if not matches else 'more than one'} open position starts with {wanted!r}",
                         "list them with: cfd trade positions")
                wanted = matches[0]
            return [await c.close_position(wanted, _decimal(qty, "--qty"))]

        closed = _call(api, one)
    if as_json:
        print_json(msgspec.to_builtins(closed))
        return
    for p in closed:
        style = "green" if (p.realized_pnl or 0) >= 0 else "red"
        console.print(f"closed {p.side} {p.qty} {p.symbol} at {p.close_price}: [{style}]{p.realized_pnl}[/]")
    if not closed:
        console.print("[dim]nothing was open[/]")


# --- alerts -----------------------------------------------------------------------------------------------


@alerts_app.command("list")
def alerts_list(api: ApiOption = None, as_json: JsonOption = False) -> None:
    """Your alerts, newest first."""
    rows = _call(api, lambda c: c.request("GET", "/alerts"))
    alerts = msgspec.json.decode(rows.content)

    def table() -> Table:
        t = Table(title=f"{len(alerts)} alert(s)")
        for column in ("id", "when", "status", "note"):
            t.add_column(column)
        for a in alerts:
            what = (f"{a['symbol']} {a['condition']} {a['price']}" if a["kind"] == "price"
                    else f"margin level below {a['below']} %")
            t.add_row(a["id"][:8], what, a["status"], a["note"] or "")
        return t

    if as_json:
        print_json(alerts)
    else:
        console.print(table())


@alerts_app.command("add")
def alerts_add(symbol: Annotated[str, typer.Argument(help="A market, or `margin` for a margin-level alert.")],
               condition: Annotated[str, typer.Argument(help="above or below")],
               level: Annotated[str, typer.Argument(help="The price (or the margin level, percent).")],
               mail: Annotated[bool, typer.Option("--mail", help="Also mail me when it fires.")] = False,
               note: Annotated[str | None, typer.Option("--note")] = None,
               api: ApiOption = None, as_json: JsonOption = False) -> None:
    """Alert me when SYMBOL goes above/below a price, or (`margin below 150`) my margin level falls."""
    notify = ["ws", "mail"] if mail else ["ws"]
    if symbol.lower() == "margin":
        if condition != "below":
            fail("a margin-level alert is `margin below LEVEL`")
        body: dict[str, Any] = {"kind": "margin_level", "below": level, "notify": notify}
    else:
        if condition not in ("above", "below"):
            fail(f"the condition is above or below, not {condition!r}")
        body = {"symbol": symbol.upper(), "condition": condition, "price": level, "notify": notify}
    if note:
        body["note"] = note
    answer = _call(api, lambda c: c.request("POST", "/alerts", body=body))
    alert = msgspec.json.decode(answer.content)
    if as_json:
        print_json(alert)
    else:
        console.print(f"[green]alert set[/] [dim]{alert['id']}[/]")


@alerts_app.command("rm")
def alerts_rm(alert_id: str, api: ApiOption = None) -> None:
    """Delete an alert (its full id, as `alerts list --json` shows it)."""
    _call(api, lambda c: c.request("DELETE", f"/alerts/{alert_id}"))
    console.print(f"deleted alert {alert_id}")
