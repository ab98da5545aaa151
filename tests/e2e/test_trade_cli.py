"""`cfd trade`: a trader's shell, on the client library, against a running platform: log in once (an API key
kept owner-only), then quote, buy and sell at the market or pending, list, close, set alerts, read the ledger,
each also as JSON."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from decimal import Decimal

import pytest
from helpers import cli_env, set_price, sign_up
from typer.testing import CliRunner

from cfd_cli.main import app


@pytest.fixture
def trade(platform, tmp_path):
    env = cli_env(CFD_API_URL=platform.base_url, CFD_TUI_CONFIG_DIR=str(tmp_path / "config"), COLUMNS="200",
                  NO_COLOR="1")
    runner = CliRunner()

    async def run(*args: str, input: str | None = None):
        # the server runs in this event loop: the CLI's blocking calls go to a thread
        return await asyncio.to_thread(runner.invoke, app, ["trade", *args], env=env, input=input)

    run.config = tmp_path / "config"  # type: ignore[attr-defined]
    return run


async def test_a_trader_logs_in_once_and_trades_from_the_shell(platform, api, mailbox, email, trade):
    await sign_up(api, mailbox, email)
    assert "not logged in" in (await trade("positions")).output
    logged = await trade("login", "--email", email, input="correct horse battery\n")
    assert logged.exit_code == 0, logged.output
    credentials = trade.config / "credentials.json"
    assert stat.S_IMODE(os.stat(credentials).st_mode) == 0o600
    assert "cfdk_" in credentials.read_text()

    await set_price(platform, "SOL_USDC", "150.00", "150.00")  # broker 149.95 / 150.05
    quoted = await trade("quote", "SOL_USDC", "--json")
    assert json.loads(quoted.stdout)[0]["ask"] == "150.05"
    bought = await trade("buy", "sol_usdc", "2", "--leverage", "5", "--sl", "140", "--json")
    assert bought.exit_code == 0, bought.output
    position = json.loads(bought.stdout)
    assert position["entry_price"] == "150.05" and position["qty"] == "2"
    pending = await trade("sell", "SOL_USDC", "1", "--limit", "160", "--expires", "2h")
    assert pending.exit_code == 0 and "working short limit 1 SOL_USDC at 160" in pending.output
    orders = json.loads((await trade("orders", "--json")).stdout)
    assert [(o["side"], o["type"], o["status"]) for o in orders] == [("short", "limit", "working")]
    listed = await trade("positions")
    assert position["id"][:8] in listed.output and "149.95" not in listed.output

    partly = await trade("close", position["id"][:8], "--qty", "1")
    assert partly.exit_code == 0 and "closed long 1 SOL_USDC at 149.95" in partly.output
    cancelled = await trade("orders", "--cancel", orders[0]["id"])
    assert "cancelled short limit" in cancelled.output
    added = await trade("alerts", "add", "SOL_USDC", "above", "200", "--note", "moon")
    assert added.exit_code == 0, added.output
    alerts = json.loads((await trade("alerts", "list", "--json")).stdout)
    assert [(a["symbol"], a["condition"], a["note"]) for a in alerts] == [("SOL_USDC", "above", "moon")]
    assert (await trade("alerts", "rm", alerts[0]["id"])).exit_code == 0
    everything = await trade("close", "--all", "--json")
    assert [p["qty"] for p in json.loads(everything.stdout)] == ["1"]
    ledger = json.loads((await trade("ledger", "--json")).stdout)
    pnl = [Decimal(e["amount"]) for e in ledger if e["kind"] == "realized_pnl"]
    assert sum(pnl) == Decimal("-0.20") and len(pnl) == 2  # 2 × (149.95 − 150.05), in two closes
    assert {e["kind"] for e in ledger} == {"realized_pnl", "commission", "deposit"}  # and the commissions

    assert "forgot" in (await trade("logout")).output
    assert "not logged in" in (await trade("ledger")).output


async def test_mistakes_get_one_red_line_and_what_to_do(platform, api, mailbox, email, trade):
    token = (await sign_up(api, mailbox, email))["access_token"]
    key = (await api.post("/api-keys", headers={"Authorization": f"Bearer {token}"},
                          json={"name": "ro", "scopes": ["read"]})).json()["key"]
    assert (await trade("login", "--key", key)).exit_code == 0
    refused = await trade("buy", "SOL_USDC", "1")
    assert refused.exit_code == 1 and "insufficient_scope" in refused.output
    for args, words in ((("buy", "SOL_USDC", "lots"), "QTY must be a number"),
                        (("buy", "SOL_USDC", "1", "--limit", "1", "--stop", "2"), "not both"),
                        (("sell", "SOL_USDC", "1", "--limit", "1", "--expires", "soon"), "duration like"),
                        (("close",), "give a position id, or --all"),
                        (("orders", "--status", "open"), "--status is working")):
        answer = await trade(*args)
        assert answer.exit_code != 0 and words in answer.output, (args, answer.output)
        assert "Traceback" not in answer.output
    wrong = await trade("login", "--email", email, input="not the password\n")
    assert wrong.exit_code == 1 and "invalid_credentials" in wrong.output
