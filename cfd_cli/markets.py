"""Market controls (`cfd markets list|set`) and the operators' audit (`cfd audit`)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from cfd_cli.common import ApiOption, console, fail
from cfd_cli.operate import OperatorApi
from cfd_cli.output import JsonOption, print_json

markets_app = typer.Typer(help="Markets: their status, spread, costs and leverage; change them.",
                          no_args_is_help=True)

STATUS_STYLE = {"open": "green", "close_only": "yellow", "halted": "bold red"}


class Status(StrEnum):
    open = "open"
    close_only = "close_only"
    halted = "halted"


def _percent(value: str | None, unit: str = "%") -> str:
    if value is None:
        return "—"
    return f"{(Decimal(value) * 100).normalize():f} {unit}"


def _shown(field: str, value: Any) -> str:
    """A market setting as people read it: rates in percent, the spread in basis points."""
    if value is None:
        return "—"
    if field == "commission_rate":
        return _percent(value)
    if field.startswith("financing_"):
        return _percent(value, "%/yr")
    if field == "spread_bps":
        return f"{Decimal(value).normalize():f} bps"
    if field == "max_leverage":
        return f"{value}×"
    return str(value)


def _status(value: str) -> Text:
    return Text(value, style=STATUS_STYLE.get(value, ""))


@markets_app.command("list")
def markets_list(api: ApiOption = None, as_json: JsonOption = False) -> None:
    """Every market with its status, spread, commission, financing and maximum leverage in force."""
    markets = OperatorApi(api).public("/markets")
    if as_json:
        print_json(markets)
        return
    table = Table(title=f"{len(markets)} market(s)")
    for column in ("market", "status", "spread", "commission", "financing long", "financing short", "max leverage"):
        table.add_column(column, justify="left" if column in ("market", "status") else "right")
    for m in markets:
        table.add_row(m["symbol"], _status(m["status"]), _shown("spread_bps", m["spread_bps"]),
                      _shown("commission_rate", m["commission_rate"]),
                      _shown("financing_long_rate", m["financing_long_rate"]),
                      _shown("financing_short_rate", m["financing_short_rate"]),
                      _shown("max_leverage", m["max_leverage"]))
    console.print(table)
    console.print("[dim]commission: of the notional, on opening and on closing; financing: a year's rate, charged "
                  "daily at the rollover (negative: credited)[/]")


@markets_app.command("set")
def markets_set(
    symbol: Annotated[str, typer.Argument(help="The market, e.g. SOL_USDC.")],
    status: Annotated[Status | None, typer.Option("--status", help="open, close_only or halted.")] = None,
    spread_bps: Annotated[str | None, typer.Option("--spread-bps", help="The markup in basis points, e.g. 6.")]
    = None,
    commission_rate: Annotated[str | None, typer.Option(
        "--commission-rate", help="A fraction of the notional per side, e.g. 0.001 for 0.1 %.")] = None,
    financing_long_rate: Annotated[str | None, typer.Option(
        "--financing-long-rate", help="A year's rate a long pays, e.g. 0.2 for 20 %.")] = None,
    financing_short_rate: Annotated[str | None, typer.Option(
        "--financing-short-rate", help="A year's rate a short pays; negative: credited, e.g. -0.02.")] = None,
    max_leverage: Annotated[int | None, typer.Option("--max-leverage", help="The highest leverage, e.g. 20.")]
    = None,
    api: ApiOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a market's terms; every server and dbproc applies them at once, and `cfd audit` records it."""
    body: dict[str, Any] = {}
    if status is not None:
        body["status"] = status.value
    for field, value in (("spread_bps", spread_bps), ("commission_rate", commission_rate),
                         ("financing_long_rate", financing_long_rate), ("financing_short_rate", financing_short_rate),
                         ("max_leverage", max_leverage)):
        if value is not None:
            body[field] = value
    if not body:
        fail("nothing to change", "give at least one of --status, --spread-bps, --commission-rate, "
             "--financing-long-rate, --financing-short-rate, --max-leverage")
    client = OperatorApi(api)
    wanted = symbol.upper()
    before = next((m for m in client.public("/markets") if m["symbol"] == wanted), None)
    after = client.call("PATCH", f"/markets/{wanted}", json=body)
    if as_json:
        print_json(after)
        return
    changed = [f for f in body if before is None or before[f] != after[f]]
    if not changed:
        console.print(f"[dim]{wanted}: nothing changed (it already had those terms)[/]")
        return
    for field in changed:
        old = _shown(field, before[field]) if before is not None else "—"
        console.print(Text.assemble(f"{wanted} {field.replace('_', ' ')}: ", (old, "dim"), " → ",
                                    (_shown(field, after[field]), "bold")))
    console.print("[green]✓[/] in force now on every server and dbproc")


def audit_command(
    market: Annotated[str | None, typer.Option("--market", help="Only changes to this market.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 50,
    cursor: Annotated[str | None, typer.Option("--cursor", help="Where the page before ended (it prints it).")] = None,
    api: ApiOption = None,
    as_json: JsonOption = False,
) -> None:
    """What operators changed, newest first: who, from where, when, and each value before and after."""
    params: dict[str, Any] = {"limit": limit}
    if market:
        params["subject"] = market.upper()
    if cursor:
        params["cursor"] = cursor
    rows, following = OperatorApi(api).page("/audit", params)
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"{len(rows)} change(s)")
    for column in ("when (UTC)", "operator", "from", "action", "subject", "changes"):
        table.add_column(column)
    for r in rows:
        when = datetime.fromtimestamp(r["at"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        changes = Text()
        for field, value in r["after"].items():
            old = r["before"].get(field)
            if old == value:
                continue
            if changes:
                changes.append("\n")
            changes.append(f"{field}: ")
            changes.append(_shown(field, old), style="red")
            changes.append(" → ")
            changes.append(_shown(field, value), style="green")
        table.add_row(when, r["operator"], r["address"] or "—", r["action"], r["subject"], changes)
    console.print(table)
    if following:
        console.print(f"[dim]more: add[/] --cursor {following}")
