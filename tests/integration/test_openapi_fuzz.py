"""Schemathesis against the running platform: no server errors, and every answer is the documented one.

Schemathesis reads the OpenAPI document the server publishes, generates valid and invalid requests for
every operation (examples, boundary values, fuzzing, then chains of calls along the document's links:
open a position, then read, change and close it), and checks each answer: never a 5xx, every status
documented for its operation with the documented body and content type, invalid input refused, a
request without its credentials refused, and the `Allow` header of a 405.

Three checks are left out, on purpose: `positive_data_acceptance` (the business rules refuse requests the
schema allows: an order on a market without a quote, beyond the margin, ...: those are 422s by design),
`allow_header_conformance` (Litestar answers OPTIONS with the `Allow` list of the first handler registered
on a path, which is not about input at all) and `use_after_free` (`DELETE /orders/{id}` cancels an order,
which then stays readable, `cancelled`, in the trader's history, as at every broker).

It runs with a fixed seed, a fixed number of examples per operation and one worker, in three passes:
a trader's token for the trader's API, a second token for logging out, then the operator token for the
operator API (last, since it may disable users whose ids it saw, and change markets: they are set back to the
catalogue's terms after it). The last two have no links to follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from helpers import set_price, signed_in

from shared.contracts import encode
from shared.contracts.bus import PriceTick
from shared.markets import MARKETS, SETTING_FIELDS

pytestmark = pytest.mark.slow

SEED = 20261122
EXAMPLES = 20
HERE = Path(__file__).parent
# Prices at which one unit of every market is affordable, so the stateful phase can open positions.
PRICES = {"SOL_USDC": ("100.00", "100.02"), "BTC_USDC": ("100.0", "100.2"), "ETH_USDC": ("100.00", "100.02"),
          "BNB_USDC": ("100.00", "100.02"), "DOGE_USDC": ("0.30000", "0.30010")}


async def keep_prices_fresh(platform, stop: asyncio.Event) -> None:
    """A tick of every market each second, so no quote goes stale during the run."""
    while not stop.is_set():
        now_us = time.time_ns() // 1000
        for symbol, (bid, ask) in PRICES.items():
            tick = PriceTick(symbol=symbol, bid=Decimal(bid), ask=Decimal(ask), exchange_time_us=now_us,
                             ingest_time_us=now_us)
            await platform.bus.publish(platform.dbproc.topics.prices, encode(tick), key=symbol.encode())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1)


async def schemathesis(platform, workdir: Path, token: str, *selection: str) -> str:
    """Run schemathesis on the platform's OpenAPI with `token`; fail the test with its report if it finds
    anything. Returns its output."""
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{platform.base_url}/schema/openapi.json",
        "--header", f"Authorization: Bearer {token}",
        "--checks", "all", "--exclude-checks", "positive_data_acceptance,allow_header_conformance,use_after_free",
        "--seed", str(SEED), "--max-examples", str(EXAMPLES), "--workers", "1", "--generation-database", "none",
        "--request-timeout", "30", "--no-color", *selection,
    ]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(workdir), "PYTHONPATH": str(HERE),
           "SCHEMATHESIS_HOOKS": "schemathesis_hooks", "NO_COLOR": "1", "COLUMNS": "120"}
    process = await asyncio.create_subprocess_exec(*command, cwd=workdir, env=env, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 300)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    report = output.decode(errors="replace")
    assert process.returncode == 0, report
    assert " generated" in report and "Tested: 0" not in report, report
    return report


async def test_no_server_error_and_every_answer_is_documented(platform, api, mailbox, email, tmp_path):
    trader = (await signed_in(api, mailbox, email))["Authorization"].removeprefix("Bearer ")
    leaving = (await signed_in(api, mailbox, "leaving-" + email))["Authorization"].removeprefix("Bearer ")
    operator = platform.app.state.operator_token
    for symbol, (bid, ask) in PRICES.items():
        await set_price(platform, symbol, bid, ask)
    stop = asyncio.Event()
    prices = asyncio.ensure_future(keep_prices_fresh(platform, stop))
    try:
        await schemathesis(platform, tmp_path, trader, "--exclude-path-regex", "/admin/",
                           "--exclude-operation-id", "logout", "--exclude-operation-id", "logout_all")
        stateless = ("--phases", "examples,coverage,fuzzing")  # no links among these operations
        await schemathesis(platform, tmp_path, leaving, "--include-operation-id", "logout",
                           "--include-operation-id", "logout_all", *stateless)
        try:
            await schemathesis(platform, tmp_path, operator, "--include-path-regex", "/admin/", *stateless)
        finally:  # the platform is shared by the session: what the fuzzing changed of the markets goes back
            for market in MARKETS.values():
                terms = {name: msgspec.to_builtins(getattr(market, name)) for name in SETTING_FIELDS}
                restored = await api.patch(f"/admin/markets/{market.symbol}", json=terms,
                                           headers={"Authorization": f"Bearer {operator}"})
                assert restored.status_code == 200, restored.text
    finally:
        stop.set()
        await prices
    auth = {"Authorization": f"Bearer {trader}"}
    positions = (await api.get("/positions", headers=auth, params={"limit": 1000})).json()
    assert any(p["parent_id"] is None for p in positions), "the stateful phase never opened a position"
