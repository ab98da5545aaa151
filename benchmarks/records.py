"""Reads that stay fast as records grow: a million closed positions and a million ledger entries in the database,
then `GET /positions` and `GET /ledger` (the first page and a deep cursor page) and a dbproc restart.

    .venv/bin/python benchmarks/records.py                      # embedded backends (SQLite)
    eval "$(scripts/services.sh env)"; .venv/bin/python benchmarks/records.py --real

On the real backends it fills a database of its own (created beside the one `CFD_DATABASE_URL` names, and
dropped at the end). One trader holds a quarter of the records, so its lists are deep; the rest are spread
over a thousand others; a thousand positions are open, as the risk book's start-up reads them.

Targets: p99 < 50 ms per page; restart to serving < 10 s. Writes benchmarks/results/records-<backends>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from _support import RESULTS, create_postgres_database, describe, drop_postgres_database, percentiles, running_platform
from rich.console import Console
from rich.table import Table

from cfd_cli.platform import Platform
from cfd_dbproc.db import sqlite_path
from shared.paging import encode_cursor

console = Console()
PASSWORD = "correct horse"
OTHER_USERS = 1000
OPEN_POSITIONS = 1000
HOUR_MS = 3_600_000

POSITION_COLUMNS = ("id", "user_id", "symbol", "side", "qty", "entry_price", "leverage", "margin", "stop_loss",
                    "take_profit", "status", "opened_at", "updated_at", "closed_at", "close_price", "realized_pnl",
                    "close_reason", "parent_id", "unbooked_pnl")
LEDGER_COLUMNS = ("id", "user_id", "kind", "amount", "balance_after", "reference", "command_id", "created_at")
USER_COLUMNS = ("id", "email", "name", "password_hash", "disabled", "created_at")
ACCOUNT_COLUMNS = ("id", "user_id", "currency", "balance", "created_at")


Tables = dict[str, tuple[tuple[str, ...], list[tuple]]]
CHUNK = 50_000


def _rows(total: int, trader: uuid.UUID, now_ms: int) -> Iterator[Tables]:
    """`total` closed positions with their ledger entries, a quarter of them the trader's, the rest of a thousand
    other traders (with their accounts), plus the open positions: per table its columns and rows, in chunks."""
    rng = random.Random(7)
    others = [uuid.uuid4() for _ in range(OTHER_USERS)]
    yield {"users": (USER_COLUMNS, [(u, f"other-{u.hex[:12]}@example.com", "Other", "x", False, now_ms)
                                    for u in others]),
           "accounts": (ACCOUNT_COLUMNS, [(uuid.uuid4(), u, "USD", Decimal("10000.00"), now_ms) for u in others])}
    qty, entry, margin, close, zero = Decimal("1.5"), Decimal("150.25"), Decimal("22.54"), Decimal("150.30"), Decimal(0)
    for first in range(0, total, CHUNK):
        positions, ledger = [], []
        for i in range(first, min(total, first + CHUNK)):
            user = trader if i % 4 == 0 else others[i % OTHER_USERS]
            closed_at = now_ms - (total - i) * 1000  # a close a second, going back about eleven days per million
            pid = uuid.uuid4()
            pnl = Decimal(rng.randint(-5000, 5000)) / 100
            positions.append((pid, user, "SOL_USDC", "long", qty, entry, 10, margin, None, None, "closed",
                              closed_at - 60_000, closed_at, closed_at, close, pnl, "manual", None, zero))
            ledger.append((uuid.uuid4(), user, "realized_pnl", pnl, Decimal("10000.00") + pnl, str(pid),
                           f"close:{pid.hex}", closed_at))
        yield {"positions": (POSITION_COLUMNS, positions), "ledger_entries": (LEDGER_COLUMNS, ledger)}
    yield {"positions": (POSITION_COLUMNS, [
        (uuid.uuid4(), trader if i < 10 else others[i % OTHER_USERS], "DOGE_USDC", "long", Decimal("10"),
         Decimal("0.3"), 1, Decimal("3.00"), None, None, "open", now_ms - i * 1000, now_ms - i * 1000, None, None,
         None, None, None, zero) for i in range(OPEN_POSITIONS)])}


def _fill_sqlite(path: Path, chunks: Iterator[Tables]) -> None:
    def text(row: tuple) -> tuple:
        return tuple(str(v) if isinstance(v, uuid.UUID | Decimal) else v for v in row)

    with sqlite3.connect(path) as db:
        for tables in chunks:
            for table, (columns, rows) in tables.items():
                marks = ", ".join("?" * len(columns))
                db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", map(text, rows))


async def _fill_postgres(url: str, chunks: Iterator[Tables]) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        for tables in chunks:
            for table, (columns, rows) in tables.items():
                await connection.copy_records_to_table(table, records=rows, columns=columns)
        await connection.execute("ANALYZE")  # as autovacuum would after a load this size
    finally:
        await connection.close()


async def _pages(api: httpx.AsyncClient, auth: dict, path: str, requests: int) -> dict[str, Any]:
    samples = []
    for _ in range(10):  # warm up
        assert (await api.get(path, headers=auth)).status_code == 200
    for _ in range(requests):
        started = time.perf_counter()
        response = await api.get(path, headers=auth)
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return {**percentiles(samples), "rows": len(response.json())}


async def _deep_cursors(trader: uuid.UUID, depth: int) -> dict[str, str]:
    """Cursors `depth` rows down the trader's lists, as a client walking there would hold them."""
    from cfd_dbproc.db.tables import LedgerEntries, Positions

    closed = await Positions.select(Positions.closed_at, Positions.id).where(
        (Positions.user_id == trader) & (Positions.status == "closed")).order_by(
        Positions.closed_at, Positions.id, ascending=False).offset(depth).first().run()
    opened = await Positions.select(Positions.opened_at, Positions.id).where(Positions.user_id == trader).order_by(
        Positions.opened_at, Positions.id, ascending=False).offset(depth).first().run()
    entry = await LedgerEntries.select(LedgerEntries.created_at, LedgerEntries.id).where(
        LedgerEntries.user_id == trader).order_by(LedgerEntries.created_at, LedgerEntries.id,
                                                  ascending=False).offset(depth).first().run()
    return {"closed": encode_cursor("closed", closed["closed_at"], str(closed["id"])),
            "opened": encode_cursor("opened", opened["opened_at"], str(opened["id"])),
            "ledger": encode_cursor("ledger", entry["created_at"], str(entry["id"]))}


async def measure(real: bool, total: int, requests: int, limit: int) -> dict:
    base_url = os.environ.get("CFD_DATABASE_URL", "")
    if real:
        os.environ["CFD_DATABASE_URL"] = await create_postgres_database(base_url, "cfd_bench_records")
    try:
        return await _measure(real, total, requests, limit)
    finally:
        if real:
            await drop_postgres_database(base_url, os.environ["CFD_DATABASE_URL"])
            os.environ["CFD_DATABASE_URL"] = base_url


async def _measure(real: bool, total: int, requests: int, limit: int) -> dict:
    async with running_platform(real, auth={"bcrypt_rounds": 4}) as (platform, codes):
        settings = platform.settings
        email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
        async with httpx.AsyncClient(base_url=platform.base_url + "/api/v1", timeout=30) as api:
            assert (await api.post("/auth/signup", json={"email": email})).status_code == 202
            response = await api.post("/auth/verify", json={"email": email, "otp": await codes.code(email),
                                                            "password": PASSWORD, "name": "Bench"})
            assert response.status_code == 201, response.text
        trader = uuid.UUID(response.json()["user"]["id"])
    with console.status(f"filling {total:,} closed positions and ledger entries …"):
        started = time.perf_counter()
        chunks = _rows(total, trader, time.time_ns() // 1_000_000)
        if real:
            await _fill_postgres(settings.database.url, chunks)
        else:
            _fill_sqlite(sqlite_path(settings.database.url), chunks)
        fill_seconds = time.perf_counter() - started
    console.print(f"filled in {fill_seconds:.1f} s")
    with console.status("restarting the dbproc and the server …"):
        restarted = time.perf_counter()
        platform = Platform(settings, ("dbproc", "server"), migrate_db=True)
        await platform.start()
    try:
        async with httpx.AsyncClient(base_url=platform.base_url + "/api/v1", timeout=30) as api:
            response = await api.post("/auth/signin", json={"email": email, "password": PASSWORD})
            assert response.status_code == 200, response.text
            auth = {"Authorization": f"Bearer {response.json()['access_token']}"}
            assert (await api.get(f"/positions?limit={limit}", headers=auth)).status_code == 200
            restart_seconds = time.perf_counter() - restarted
            deep = await _deep_cursors(trader, total // 4 * 4 // 5)  # four fifths down the trader's lists
            paths = {
                "positions_first_page": f"/positions?limit={limit}",
                "positions_deep_page": f"/positions?limit={limit}&cursor={deep['opened']}",
                "closed_first_page": f"/positions?status=closed&limit={limit}",
                "closed_deep_page": f"/positions?status=closed&limit={limit}&cursor={deep['closed']}",
                "open_positions": f"/positions?status=open&limit={limit}",
                "ledger_first_page": f"/ledger?limit={limit}",
                "ledger_deep_page": f"/ledger?limit={limit}&cursor={deep['ledger']}",
            }
            results: dict[str, Any] = {}
            for name, path in paths.items():
                with console.status(f"{requests} × {name.replace('_', ' ')} …"):
                    results[name] = await _pages(api, auth, path, requests)
    finally:
        await platform.stop()
        if not real:
            shutil.rmtree(settings.data_dir, ignore_errors=True)  # about a gigabyte of SQLite
    return {
        **describe(settings, real),
        "records": {"closed_positions": total, "ledger_entries": total, "open_positions": OPEN_POSITIONS,
                    "traders": OTHER_USERS + 1, "measured_trader_rows": (total + 3) // 4, "page_limit": limit},
        "results": {**results, "fill_seconds": round(fill_seconds, 1),
                    "restart_to_serving_seconds": round(restart_seconds, 2)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", action="store_true", help="Kafka, Redis, PostgreSQL (from CFD_* variables)")
    parser.add_argument("--records", type=int, default=1_000_000, help="closed positions (and ledger entries)")
    parser.add_argument("--requests", type=int, default=200, help="requests per measured page")
    parser.add_argument("--limit", type=int, default=200, help="rows per page")
    args = parser.parse_args()
    report = asyncio.run(measure(args.real, args.records, args.requests, args.limit))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"records-{report['backends']}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    r = report["results"]
    table = Table(title=f"{args.records:,} records, {report['backends']} backends, {args.limit} rows a page")
    for column in ("page", "n", "p50 ms", "p90 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "page" else "right")
    for name, row in r.items():
        if isinstance(row, dict):
            table.add_row(name.replace("_", " "), str(row["n"]), f"{row['p50_ms']:.2f}", f"{row['p90_ms']:.2f}",
                          f"{row['p99_ms']:.2f}")
    console.print(table)
    console.print(f"restart to serving: {r['restart_to_serving_seconds']} s (filled in {r['fill_seconds']} s)")
    console.print(f"written to {out.relative_to(RESULTS.parent.parent)}")


if __name__ == "__main__":
    main()
