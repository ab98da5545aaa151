"""Operator commands (`cfd users`, `cfd positions`, `cfd orders`, `cfd exposure`): the server's operator API, as
tables."""

from __future__ import annotations

import getpass
import os
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table
from rich.text import Text

from cfd_cli.common import ApiOption, client_settings_or_fail, console, fail
from cfd_cli.output import JsonOption, print_json
from shared.numbers import AMOUNT, InvalidNumber, parse_decimal

users_app = typer.Typer(help="Traders: list, show, disable, enable, deposit.", no_args_is_help=True)
positions_app = typer.Typer(help="Positions of every trader.", no_args_is_help=True)
orders_app = typer.Typer(help="Pending orders of every trader.", no_args_is_help=True)
keys_app = typer.Typer(help="Traders' API keys (listed by `cfd users show`).", no_args_is_help=True)
ORDER_STATUSES = ("working", "filled", "cancelled", "expired", "rejected")


def operator_name() -> str:
    """Who the audit records as making a change: `CFD_OPERATOR`, else the login name (the operator token is
    shared, so this names a person, it does not prove who they are)."""
    try:
        name = os.environ.get("CFD_OPERATOR") or getpass.getuser()
    except (KeyError, OSError):  # no login name for this uid
        name = ""
    return re.sub(r"[^A-Za-z0-9._@+-]", "_", name)[:64] or "operator"


class OperatorApi:
    """A small client of `/api/v1/admin` with the operator token (and the public API, for the markets)."""

    def __init__(self, api: str | None) -> None:
        settings = client_settings_or_fail()
        self.root = (api or f"http://{settings.http.host}:{settings.http.port}").rstrip("/") + "/api/v1"
        self.base = self.root + "/admin"
        token = settings.auth.admin_token
        if not token and settings.admin_token_file.exists():
            token = settings.admin_token_file.read_text().strip()
        if not token:
            fail("no operator token", "set CFD_ADMIN_TOKEN (the server's), or run this where `cfd up` keeps its data")
        self.client = httpx.Client(base_url=self.base, timeout=15, headers={
            "Authorization": f"Bearer {token}", "Cfd-Operator": operator_name()})

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs).json()

    def call_empty(self, method: str, path: str, **kwargs: Any) -> None:
        """A call whose answer has no body (204)."""
        self._send(method, path, **kwargs)
    def public(self, path: str) -> Any:
        """A GET of the public API (`/api/v1<path>`)."""
        return self._send("GET", self.root + path).json()

    def page(self, path: str, params: dict[str, Any]) -> tuple[list[dict], str | None]:
        """One page of a list and the cursor of the next one (None on the last page)."""
        response = self._send("GET", path, params=params)
        following = response.links.get("next", {}).get("url")
        cursor = httpx.URL(following).params.get("cursor") if following else None
        return response.json(), cursor

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            fail(f"cannot reach the server at {self.base}: {exc}", "start it with `cfd up`, or pass --api URL")
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                fail(f"{error['message']} ({error['code']})")
            except (ValueError, KeyError, TypeError):
                fail(f"the server answered {response.status_code}")
        return response

    def find_user(self, who: str) -> dict:
        found = self.call("GET", "/users", params={"search": who, "limit": 2})
        exact = [u for u in found if who.lower() in (u["email"], u["id"])]
        if len(exact) == 1 or len(found) == 1:
            return (exact or found)[0]
        if not found:
            fail(f"no user matches {who!r}", "list them with: cfd users list")
        fail(f"{who!r} matches several users", "give the whole email or the id")


def _money(value: str | None, signed: bool = False) -> Text:
    if value is None:
        return Text("—", style="dim")
    amount = Decimal(value)
    style = ("green" if amount > 0 else "red" if amount < 0 else "") if signed else ""
    return Text(f"{amount:,.2f}", style=style)


@users_app.command("list")
def users_list(
    search: Annotated[str | None, typer.Argument(help="Part of an email, or an id.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 50,
    api: ApiOption = None,
    as_json: JsonOption = False,
) -> None:
    """Traders, newest first, with balance and open positions."""
    users = OperatorApi(api).call("GET", "/users", params={"search": search, "limit": limit} if search else
                                  {"limit": limit})
    if as_json:
        print_json(users)
        return
    table = Table(title=f"{len(users)} trader(s)")
    for column in ("email", "name", "status", "balance", "open", "id"):
        table.add_column(column, justify="right" if column in ("balance", "open") else "left")
    for u in users:
        status = Text(u["status"], style="green" if u["status"] == "active" else "red")
        table.add_row(u["email"], u["name"], status, _money(u["balance"]), str(u["open_positions"]), u["id"])
    console.print(table)


@users_app.command("show")
def users_show(who: Annotated[str, typer.Argument(help="Email or id.")], api: ApiOption = None,
               as_json: JsonOption = False) -> None:
    """One trader: account and open positions."""
    client = OperatorApi(api)
    user = client.find_user(who)
    account = client.call("GET", f"/users/{user['id']}/account")
    positions = client.call("GET", "/positions", params={"user": user["id"], "status": "open"})
    keys = client.call("GET", f"/users/{user['id']}/api-keys")
    if as_json:
        print_json({"user": user, "account": account, "positions": positions, "api_keys": keys})
        return
    console.print(f"[bold]{user['name']}[/] <{user['email']}>  [dim]{user['id']}[/]  status: {user['status']}")
    summary = Table(show_header=False, box=None)
    for key in ("balance", "equity", "used_margin", "free_margin", "unrealized_pnl"):
        summary.add_row(key.replace("_", " "), _money(account[key], signed=key == "unrealized_pnl"))
    summary.add_row("margin level", f"{account['margin_level']} %" if account["margin_level"] else "—")
    console.print(summary)
    _positions_table(positions, f"{len(positions)} open position(s)")
    if keys:
        table = Table(title=f"{len(keys)} API key(s)")
        for column in ("id", "name", "scopes", "created"):
            table.add_column(column)
        for k in keys:
            table.add_row(k["id"], k["name"], ",".join(k["scopes"]), _time(k["created_at"]))
        console.print(table)
    else:
        console.print("[dim]no API keys[/]")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (as `cfd users show` lists it).")],
                api: ApiOption = None) -> None:
    """Revoke a trader's API key: every server refuses it from its next request."""
    OperatorApi(api).call_empty("DELETE", f"/api-keys/{key_id}")
    console.print(f"[yellow]revoked[/] API key {key_id}")


@users_app.command("disable")
def users_disable(who: Annotated[str, typer.Argument(help="Email or id.")], api: ApiOption = None) -> None:
    """Stop a trader from signing in; every session ends at once."""
    client = OperatorApi(api)
    user = client.call("POST", f"/users/{client.find_user(who)['id']}/disable")
    console.print(f"[yellow]disabled[/] {user['email']}")


@users_app.command("enable")
def users_enable(who: Annotated[str, typer.Argument(help="Email or id.")], api: ApiOption = None) -> None:
    """Let a disabled trader sign in again."""
    client = OperatorApi(api)
    user = client.call("POST", f"/users/{client.find_user(who)['id']}/enable")
    console.print(f"[green]enabled[/] {user['email']}")


@users_app.command("deposit")
def users_deposit(
    who: Annotated[str, typer.Argument(help="Email or id.")],
    amount: Annotated[str, typer.Argument(help="USD; negative to withdraw.")],
    api: ApiOption = None,
) -> None:
    """Credit a trader's balance (a ledger entry)."""
    try:
        value = parse_decimal(amount, AMOUNT)
    except InvalidNumber as exc:
        fail(f"{amount!r} is not an amount: {exc.reason}", "write it like 2500 or 99.50")
    client = OperatorApi(api)
    account = client.call("POST", f"/users/{client.find_user(who)['id']}/deposit", json={"amount": str(value)})
    console.print(f"[green]✓[/] balance now {Decimal(account['balance']):,.2f} USD")


def _positions_table(positions: list[dict], title: str) -> None:
    table = Table(title=title)
    for column in ("symbol", "side", "qty", "entry", "leverage", "margin", "SL", "TP", "status", "PnL", "user", "id"):
        table.add_column(column, justify="right" if column in ("qty", "entry", "margin", "PnL", "leverage") else "left")
    for p in positions:
        side = Text(p["side"], style="green" if p["side"] == "long" else "red")
        table.add_row(p["symbol"], side, p["qty"], p["entry_price"], f"{p['leverage']}x", _money(p["margin"]),
                      p["stop_loss"] or "—", p["take_profit"] or "—",
                      p["status"] + (f" ({p['close_reason']})" if p["close_reason"] else ""),
                      _money(p["realized_pnl"], signed=True), (p.get("user_id") or "")[:8], p["id"][:8])
    console.print(table)


@positions_app.command("list")
def positions_list(
    user: Annotated[str | None, typer.Option("--user", help="Only this trader (email or id).")] = None,
    status: Annotated[str | None, typer.Option("--status", help="open or closed.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 50,
    cursor: Annotated[str | None, typer.Option("--cursor", help="Where the page before ended (it prints it).")] = None,
    api: ApiOption = None,
    as_json: JsonOption = False,
) -> None:
    """Positions, newest first, a page at a time."""
    if status not in (None, "open", "closed"):
        fail(f"--status is open or closed, not {status!r}")
    client = OperatorApi(api)
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status
    if user:
        params["user"] = client.find_user(user)["id"]
    if cursor:
        params["cursor"] = cursor
    positions, following = client.page("/positions", params)
    if as_json:
        print_json(positions)
        return
    _positions_table(positions, f"{len(positions)} position(s)")
    if following:
        console.print(f"[dim]more: add[/] --cursor {following}")


@orders_app.command("list")
def orders_list(
    user: Annotated[str | None, typer.Option("--user", help="Only this trader (email or id).")] = None,
    status: Annotated[str | None, typer.Option("--status", help="working, filled, cancelled, expired or rejected.")]
    = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 50,
    cursor: Annotated[str | None, typer.Option("--cursor", help="Where the page before ended (it prints it).")] = None,
    api: ApiOption = None,
    as_json: JsonOption = False,
) -> None:
    """Pending orders, newest first, a page at a time."""
    if status not in (None, *ORDER_STATUSES):
        fail(f"--status is one of {', '.join(ORDER_STATUSES)}, not {status!r}")
    client = OperatorApi(api)
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status
    if user:
        params["user"] = client.find_user(user)["id"]
    if cursor:
        params["cursor"] = cursor
    orders, following = client.page("/orders", params)
    if as_json:
        print_json(orders)
        return
    table = Table(title=f"{len(orders)} order(s)")
    for column in ("market", "side", "type", "qty", "price", "lev", "stop-loss", "take-profit", "expires", "status",
                   "id"):
        table.add_column(column, justify="left" if column in ("market", "side", "type", "status", "id") else "right")
    for o in orders:
        side = Text(o["side"], style="green" if o["side"] == "long" else "red")
        status_text = Text(o["status"], style={"working": "bold", "filled": "green", "rejected": "red"}.get(
            o["status"], "dim"))
        if o.get("reason"):
            status_text.append(f" ({o['reason']})", style="dim")
        table.add_row(o["symbol"], side, o["type"], o["qty"], o["price"], f"{o['leverage']}x", o["stop_loss"] or "—",
                      o["take_profit"] or "—", _time(o["expires_at"]) if o["expires_at"] else "GTC", status_text,
                      o["id"][:8])
    console.print(table)
    if following:
        console.print(f"[dim]more: add[/] --cursor {following}")


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def exposure_command(api: ApiOption = None, as_json: JsonOption = False) -> None:
    """The broker's net exposure and unrealised PnL per market (it is every client's counterparty)."""
    rows = OperatorApi(api).call("GET", "/exposure")
    if as_json:
        print_json(rows)
        return
    table = Table(title="broker exposure")
    for column in ("market", "positions", "client long", "client short", "broker net", "broker PnL"):
        table.add_column(column, justify="left" if column == "market" else "right")
    total = Decimal(0)
    for r in rows:
        total += Decimal(r["broker_unrealized_pnl"])
        table.add_row(r["symbol"], str(r["open_positions"]), r["long_qty"], r["short_qty"], r["broker_net_qty"],
                      _money(r["broker_unrealized_pnl"], signed=True))
    console.print(table)
    console.print(Text.assemble("broker unrealised PnL: ", _money(str(total), signed=True), " USD"))
