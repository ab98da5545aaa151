"""The operator's CLI against a running platform: users, deposits, disabling, positions, exposure."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from helpers import cli_env, set_price, signed_in
from typer.testing import CliRunner

from cfd_cli.main import app


@pytest.fixture
def cfd(platform):
    token = platform.settings.admin_token_file.read_text().strip()
    env = cli_env(CFD_API_URL=platform.base_url, CFD_ADMIN_TOKEN=token, COLUMNS="200", NO_COLOR="1")
    runner = CliRunner()

    async def run(*args: str, token_override: str | None = None):
        call_env = {**env, "CFD_ADMIN_TOKEN": token_override} if token_override else env
        # the server runs in this event loop: the CLI's blocking HTTP calls go to a thread
        return await asyncio.to_thread(runner.invoke, app, list(args), env=call_env)

    return run


async def test_operator_journey(platform, api, mailbox, email, cfd):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "ETH_USDC", "2000.00", "2000.00")  # broker 1999.50 / 2000.50
    await api.post("/positions", headers=auth, json={"symbol": "ETH_USDC", "side": "long", "qty": "1", "leverage": 5})

    listed = await cfd("users", "list", email)
    assert listed.exit_code == 0, listed.output
    assert email in listed.output and "10,000.00" in listed.output

    deposited = await cfd("users", "deposit", email, "2500")
    assert deposited.exit_code == 0 and "12,500.00" in deposited.output
    assert Decimal((await api.get("/account", headers=auth)).json()["balance"]) == Decimal("12500")
    ledger = (await api.get("/ledger", headers=auth)).json()
    assert [e["kind"] for e in ledger][:1] == ["deposit"] and ledger[0]["amount"] == "2500.00"

    shown = await cfd("users", "show", email)
    assert shown.exit_code == 0 and "ETH_USDC" in shown.output and "12,500.00" in shown.output

    positions = await cfd("positions", "list", "--user", email)
    assert positions.exit_code == 0 and "ETH_USDC" in positions.output and "2000.5" in positions.output

    exposure = await cfd("exposure")
    assert exposure.exit_code == 0 and "ETH_USDC" in exposure.output

    disabled = await cfd("users", "disable", email)
    assert disabled.exit_code == 0
    me = await api.get("/auth/me", headers=auth)
    assert me.status_code == 401 and me.json()["error"]["code"] == "account_disabled"
    signin = await api.post("/auth/signin", json={"email": email, "password": "correct horse battery"})
    assert signin.status_code == 403

    enabled = await cfd("users", "enable", email)
    assert enabled.exit_code == 0
    again = await api.post("/auth/signin", json={"email": email, "password": "correct horse battery"})
    assert again.status_code == 200


async def test_operator_errors_are_one_red_line(cfd):
    wrong = await cfd("users", "list", token_override="not-the-token")
    assert wrong.exit_code == 1 and "operator token" in wrong.output and "Traceback" not in wrong.output
    unknown = await cfd("users", "show", "nobody-at-all@example.com")
    assert unknown.exit_code == 1 and "no user matches" in unknown.output
    bad_amount = await cfd("users", "deposit", "x@example.com", "lots")
    assert bad_amount.exit_code == 1 and "not an amount" in bad_amount.output


async def test_sessions_ended_by_disabling_stay_ended_after_enabling(api, mailbox, email, cfd):
    from helpers import signed_in

    auth = await signed_in(api, mailbox, email)
    assert (await cfd("users", "disable", email)).exit_code == 0
    assert (await cfd("users", "enable", email)).exit_code == 0
    old = await api.get("/auth/me", headers=auth)
    assert old.status_code == 401 and old.json()["error"]["code"] == "session_expired"
    fresh = await api.post("/auth/signin", json={"email": email, "password": "correct horse battery"})
    assert fresh.status_code == 200
    me = await api.get("/auth/me", headers={"Authorization": f"Bearer {fresh.json()['access_token']}"})
    assert me.status_code == 200
