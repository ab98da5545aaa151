"""The operator's CLI against a running platform: users, deposits, disabling, positions, exposure."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
import uuid
from decimal import Decimal

import pytest
from helpers import another_server, cli_env, set_price, signed_in
from typer.testing import CliRunner

from cfd_cli.main import app


@pytest.fixture
def cfd(platform):
    token = platform.settings.admin_token_file.read_text().strip()
    env = cli_env(CFD_API_URL=platform.base_url, CFD_ADMIN_TOKEN=token, COLUMNS="200", NO_COLOR="1",
                  CFD_OPERATOR="ops-ada")
    runner = CliRunner()

    async def run(*args: str, token_override: str | None = None):
        call_env = {**env, "CFD_ADMIN_TOKEN": token_override} if token_override else env
        # the server runs in this event loop: the CLI's blocking HTTP calls go to a thread. Its log lines (a market
        # going stale, say) go to stderr, which `output` mixes in: JSON is read from `stdout`, as a script reads it
        return await asyncio.to_thread(runner.invoke, app, list(args), env=call_env)

    return run


async def test_operator_journey(platform, api, mailbox, email, cfd):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "ETH_USDC", "2000.00", "2000.00")  # broker 1999.50 / 2000.50
    await api.post("/positions", headers=auth, json={"symbol": "ETH_USDC", "side": "long", "qty": "1", "leverage": 5})

    listed = await cfd("users", "list", email)
    assert listed.exit_code == 0, listed.output
    assert email in listed.output and "9,999.00" in listed.output  # less the opening's commission of 1.00

    deposited = await cfd("users", "deposit", email, "2500")
    assert deposited.exit_code == 0 and "12,499.00" in deposited.output
    assert Decimal((await api.get("/account", headers=auth)).json()["balance"]) == Decimal("12499")
    ledger = (await api.get("/ledger", headers=auth)).json()
    assert [e["kind"] for e in ledger][:1] == ["deposit"] and ledger[0]["amount"] == "2500.00"

    shown = await cfd("users", "show", email)
    assert shown.exit_code == 0 and "ETH_USDC" in shown.output and "12,499.00" in shown.output

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


async def test_positions_list_pages_on_with_the_cursor_it_prints(platform, api, mailbox, email, cfd):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "DOGE_USDC", "0.30000", "0.30001")
    opened = []
    for _ in range(3):
        response = await api.post("/positions", headers=auth,
                                  json={"symbol": "DOGE_USDC", "side": "long", "qty": "10", "leverage": 1})
        opened.append(response.json()["id"])

    first = await cfd("positions", "list", "--user", email, "-n", "2")
    assert first.exit_code == 0, first.output
    cursor = re.search(r"--cursor (\S+)", first.output).group(1)
    rest = await cfd("positions", "list", "--user", email, "-n", "2", "--cursor", cursor)
    assert rest.exit_code == 0, rest.output
    assert "--cursor" not in rest.output  # the last page says no more
    assert {p for p in opened if p[:8] in first.output} == set(opened[1:])  # newest first
    assert {p for p in opened if p[:8] in rest.output} == set(opened[:1])
    wrong = await cfd("positions", "list", "--cursor", "nonsense")
    assert wrong.exit_code != 0 and "invalid_cursor" in wrong.output


async def test_markets_set_changes_a_market_lists_it_and_audits_it(platform, api, cfd):
    try:
        changed = await cfd("markets", "set", "sol_usdc", "--status", "halted", "--spread-bps", "9",
                            "--commission-rate", "0.002")
        assert changed.exit_code == 0, changed.output
        assert "SOL_USDC status: open → halted" in changed.output
        assert "SOL_USDC spread bps: 6 bps → 9 bps" in changed.output
        assert "SOL_USDC commission rate: 0.1 % → 0.2 %" in changed.output
        assert next(m for m in (await api.get("/markets")).json() if m["symbol"] == "SOL_USDC")["status"] == "halted"

        listed = await cfd("markets", "list")
        assert listed.exit_code == 0, listed.output
        [sol] = [line for line in listed.output.splitlines() if "SOL_USDC" in line]
        assert "halted" in sol and "9 bps" in sol and "0.2 %" in sol and "25 %/yr" in sol and "20×" in sol
        [btc] = [line for line in listed.output.splitlines() if "BTC_USDC" in line]
        assert "open" in btc and "-5 %/yr" in btc  # a short is credited
        markets = json.loads((await cfd("markets", "list", "--json")).stdout)
        sol_json = next(m for m in markets if m["symbol"] == "SOL_USDC")
        assert (sol_json["status"], sol_json["spread_bps"], sol_json["commission_rate"]) == ("halted", "9", "0.002")

        audit = await cfd("audit", "--market", "sol_usdc")
        assert audit.exit_code == 0, audit.output
        assert "ops-ada" in audit.output and "market.update" in audit.output and "127.0.0.1" in audit.output
        assert "status: open → halted" in audit.output and "commission_rate: 0.1 % → 0.2 %" in audit.output
        [row, *_] = json.loads((await cfd("audit", "--json", "-n", "5")).stdout)
        assert row["operator"] == "ops-ada" and row["subject"] == "SOL_USDC"
        assert (row["before"]["status"], row["after"]["status"]) == ("open", "halted")

        bad = await cfd("markets", "set", "SOL_USDC", "--commission-rate", "-0.1")
        assert bad.exit_code == 1 and "invalid_commission_rate" in bad.output and "Traceback" not in bad.output
        nothing = await cfd("markets", "set", "SOL_USDC")
        assert nothing.exit_code == 1 and "nothing to change" in nothing.output
        unknown = await cfd("markets", "set", "XRP_USDC", "--status", "halted")
        assert unknown.exit_code == 1 and "unknown_market" in unknown.output
    finally:
        restored = await cfd("markets", "set", "SOL_USDC", "--status", "open", "--spread-bps", "6",
                             "--commission-rate", "0.001")
        assert restored.exit_code == 0, restored.output


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


# --- output for scripts and pipes -------------------------------------------------------------------------


async def test_listings_print_the_apis_json_with_json(platform, api, mailbox, cfd):
    email = f"json-{uuid.uuid4().hex[:10]}@example.com"
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "SOL_USDC", "185.00", "185.04")
    opened = (await api.post("/positions", headers=auth, json={"symbol": "SOL_USDC", "side": "short", "qty": "2",
                                                               "leverage": 2})).json()

    listed = await cfd("users", "list", email, "--json")
    assert listed.exit_code == 0, listed.output
    [user] = json.loads(listed.stdout)
    assert user["email"] == email and user["balance"] == "9999.63" and user["open_positions"] == 1  # 0.37 paid

    shown = json.loads((await cfd("users", "show", email, "--json")).stdout)
    assert shown["user"]["id"] == user["id"] and shown["account"]["balance"] == "9999.63"
    assert [p["id"] for p in shown["positions"]] == [opened["id"]]

    positions = json.loads((await cfd("positions", "list", "--user", email, "--json")).stdout)
    assert len(positions) == 1 and {k: positions[0][k] for k in opened} == opened  # as the API has it

    exposure = json.loads((await cfd("exposure", "--json")).stdout)
    sol = next(r for r in exposure if r["symbol"] == "SOL_USDC")
    assert Decimal(sol["short_qty"]) >= 2 and isinstance(sol["broker_unrealized_pnl"], str)


async def test_piped_tables_keep_every_character(platform, api, mailbox, cfd):
    email = f"a-rather-long-address-for-a-table-{uuid.uuid4().hex}@example.com"
    await signed_in(api, mailbox, email)
    token = platform.settings.admin_token_file.read_text().strip()
    env = {"PATH": os.environ["PATH"], "NO_COLOR": "1", "CFD_ADMIN_TOKEN": token, "CFD_API_URL": platform.base_url,
           "CFD_DATA_DIR": str(platform.settings.data_dir)}  # no COLUMNS: a pipe has no width of its own

    in_process = await asyncio.to_thread(CliRunner().invoke, app, ["users", "list", email], env=env)
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "cfd_cli.main", "users", "list", email,
                                                   env=env, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    piped, errors = await asyncio.wait_for(process.communicate(), 60)
    user_id = json.loads((await cfd("users", "list", email, "--json")).stdout)[0]["id"]
    for output in (in_process.output, piped.decode()):
        lines = [line for line in output.splitlines() if email in line]
        assert len(lines) == 1 and user_id in lines[0] and "…" not in output, f"cells were cut:\n{output}"
        line = lines[0]
        assert len(line) > 120
    assert process.returncode == 0, errors.decode()


def test_mail_outbox_prints_json(tmp_path):
    from shared.mail import OutboxMailer

    asyncio.run(OutboxMailer("CFD Broker <no-reply@cfd-broker.local>", tmp_path / "outbox").send(
        "ada@example.com", "Your code is 123456", "Your code is 123456. It expires in 10 minutes."))
    result = CliRunner().invoke(app, ["mail", "outbox", "--json"], env={"CFD_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    [mail] = json.loads(result.stdout)
    assert mail["to"] == "ada@example.com" and mail["subject"] == "Your code is 123456"
    assert mail["body"].startswith("Your code is 123456.") and mail["from"].endswith("<no-reply@cfd-broker.local>")
    assert abs(mail["date"] - time.time() * 1000) < 120_000
    assert json.loads(CliRunner().invoke(app, ["mail", "outbox", "--json", "--to", "bob@example.com"],
                                         env={"CFD_DATA_DIR": str(tmp_path)}).output) == []


def test_client_commands_write_nothing_to_the_data_directory(tmp_path):
    data = tmp_path / "nowhere"
    result = CliRunner().invoke(app, ["mail", "outbox"], env={"CFD_DATA_DIR": str(data), "CFD_ENV": "dev"})
    assert result.exit_code == 0 and f"no mail in {data / 'outbox'}" in result.output
    listed = CliRunner().invoke(app, ["users", "list", "--api", "http://127.0.0.1:9"],
                                env={"CFD_DATA_DIR": str(data), "CFD_ENV": "dev", "CFD_ADMIN_TOKEN": "x" * 32})
    assert listed.exit_code == 1 and "cannot reach the server" in listed.output
    assert not data.exists()  # no jwt-secret, no folder


async def test_orders_list_shows_each_traders_orders_by_status(platform, api, mailbox, email, cfd):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "SOL_USDC", "150.00", "150.00")
    working = (await api.post("/orders", headers=auth, json={
        "symbol": "SOL_USDC", "side": "long", "type": "limit", "qty": "3", "price": "120.00", "leverage": 2,
        "expires_at": int(time.time() * 1000) + 3_600_000})).json()
    cancelled = (await api.post("/orders", headers=auth, json={
        "symbol": "SOL_USDC", "side": "short", "type": "stop", "qty": "1", "price": "130.00", "leverage": 2})).json()
    await api.delete(f"/orders/{cancelled['id']}", headers=auth)

    listed = await cfd("orders", "list", "--user", email)
    assert listed.exit_code == 0, listed.output
    rows = [line for line in listed.output.splitlines() if "SOL_USDC" in line]
    assert len(rows) == 2 and "2 order(s)" in listed.output
    assert any(working["id"][:8] in r and "working" in r and "limit" in r and "UTC" in r for r in rows)
    assert any(cancelled["id"][:8] in r and "cancelled" in r and "GTC" in r for r in rows)

    only = await cfd("orders", "list", "--user", email, "--status", "working", "--json")
    assert only.exit_code == 0 and [o["id"] for o in json.loads(only.stdout)] == [working["id"]]
    wrong = await cfd("orders", "list", "--status", "open")
    assert wrong.exit_code != 0 and "--status is one of working" in wrong.output


async def test_operators_see_a_traders_keys_and_revoke_one(platform, api, mailbox, email, cfd):
    auth = await signed_in(api, mailbox, email)
    key = (await api.post("/api-keys", headers=auth, json={"name": "grid bot", "scopes": ["read", "trade"]})).json()
    shown = await cfd("users", "show", email)
    assert shown.exit_code == 0, shown.output
    assert key["id"] in shown.output and "grid bot" in shown.output and "read,trade" in shown.output
    assert key["key"] not in shown.output  # never the secret
    revoked = await cfd("keys", "revoke", key["id"])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    refused = await api.get("/account", headers={"Authorization": f"Bearer {key['key']}"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "key_revoked"
    again = await cfd("keys", "revoke", key["id"])
    assert again.exit_code != 0 and "key_not_found" in again.output
    assert "no API keys" in (await cfd("users", "show", email)).output


async def test_cfd_status_lists_every_process_what_it_owns_and_forgets_one_that_stopped(platform, cfd):
    async def processes() -> list[dict]:
        shown = await cfd("status", "--json")
        assert shown.exit_code == 0, shown.output
        return json.loads(shown.stdout)

    async def until(predicate) -> list[dict]:
        async with asyncio.timeout(15):
            while True:  # polls the CLI, as an operator would: nothing in this process to wait on
                found = await processes()
                if predicate(found):
                    return found
                await asyncio.sleep(0.2)

    mine = platform.settings.instance_id
    # the feeds of the tests before may take a moment to close: this one opens none
    found = await until(lambda ps: any(p["instance"] == mine and p["ws_clients"] == 0 for p in ps))
    me = next(p for p in found if p["instance"] == mine)
    assert me["services"] == ["dbproc", "server"] and me["partitions"] == list(range(platform.settings.bus.partitions))
    assert me["ws_clients"] == 0 and not me["silent"] and me["pid"] == os.getpid()
    assert all(isinstance(n, int) and n >= 0 for n in me["lag"].values())

    async with another_server(platform) as second:
        other = second.settings.instance_id
        found = await until(lambda ps: any(p["instance"] == other for p in ps))
        assert next(p for p in found if p["instance"] == other)["services"] == ["server"]
        table = await cfd("status", "--partitions", str(platform.settings.bus.partitions))
        assert table.exit_code == 0 and other in table.output and mine in table.output
        assert "every trading partition" in table.output
    await until(lambda ps: all(p["instance"] != other for p in ps))  # it said it stopped
