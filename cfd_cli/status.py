"""`cfd status`: every platform process the server hears on the bus, what each runs and owns, and whether
the prices are live there."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from cfd_cli.common import ApiOption, client_settings_or_fail, console
from cfd_cli.operate import OperatorApi
from cfd_cli.output import JsonOption, print_json

STALE_AFTER = 10.0  # seconds, as the platform's default CFD_STALE_AFTER_SECONDS


def _span(seconds: float) -> str:
    whole = int(seconds)
    if whole < 120:
        return f"{whole} s"
    if whole < 7200:
        return f"{whole // 60} min"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def _ticks(ages: dict[str, float]) -> Text:
    if not ages:
        return Text("—", style="dim")
    stale = sorted(symbol for symbol, age in ages.items() if age > STALE_AFTER)
    if stale:
        return Text("stale: " + ", ".join(f"{s} {_span(ages[s])}" for s in stale), style="bold red")
    return Text(f"{len(ages)} live (last {max(ages.values()):.1f} s ago at most)", style="green")


def _waiting(process: dict) -> Text:
    """The requests queued for its dbproc (the consumer lag over the partitions it owns)."""
    if process.get("partitions") is None:
        return Text("—", style="dim")
    waiting = sum(process.get("lag", {}).values())
    return Text(str(waiting), style="bold yellow" if waiting >= 100 else "")


def status_command(
    api: ApiOption = None,
    as_json: JsonOption = False,
    partitions: Annotated[int | None, typer.Option(
        "--partitions", help="Partitions of requests.trading (default: CFD_KAFKA_PARTITIONS).")] = None,
) -> None:
    """Every platform process heard on the bus in the last minutes: its services, the trading partitions its
    dbproc owns and the requests waiting for it there, its WebSocket clients, and how old each market's last
    tick is there."""
    processes = OperatorApi(api).call("GET", "/status")
    if as_json:
        print_json(processes)
        return
    now_ms = time.time() * 1000
    table = Table(title=f"{len(processes)} process(es)")
    for column in ("instance", "services", "where", "up", "heard", "partitions", "waiting", "WS clients", "prices"):
        table.add_column(column, justify="right" if column in ("up", "heard", "waiting", "WS clients") else "left")
    owned: dict[int, list[str]] = {}
    for p in processes:
        for partition in p.get("partitions") or []:
            owned.setdefault(partition, []).append(p["instance"])
        heard = Text(f"{p['seen_ago']:.0f} s ago", style="bold red" if p["silent"] else "")
        table.add_row(p["instance"], ", ".join(p["services"]), f"{p['host']} pid {p['pid']}",
                      _span((now_ms - p["started_at"]) / 1000), heard,
                      "—" if p.get("partitions") is None else ",".join(map(str, p["partitions"])) or "none",
                      _waiting(p), "—" if p.get("ws_clients") is None else str(p["ws_clients"]),
                      _ticks(p["tick_ages"]))
    console.print(table)
    silent = [p["instance"] for p in processes if p["silent"]]
    if silent:
        console.print(f"[bold red]✗[/] silent (no announcement for 15 s or more): {', '.join(silent)}; it may "
                      "have died: check its host, or its log")
    if any(p.get("partitions") is not None for p in processes):
        count = partitions or client_settings_or_fail().bus.partitions
        unowned = [n for n in range(count) if n not in owned]
        doubled = {n: who for n, who in owned.items() if len(who) > 1}
        if unowned:
            console.print(f"[bold red]✗[/] trading partitions no dbproc owns: {', '.join(map(str, unowned))} "
                          "(their traders' orders wait): start a dbproc, or wait for the group to rebalance")
        elif doubled:
            console.print(f"[yellow]![/] partitions held by two dbprocs (a rebalance in progress?): {doubled}")
        else:
            console.print(f"[green]✓[/] every trading partition (0–{count - 1}) is owned by a dbproc")
