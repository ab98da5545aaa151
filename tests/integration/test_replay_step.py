"""`POST /api/v1/replay/step` on a sandbox (`cfd_cli.sandbox`): a step answers once the caller's account has felt
its ticks, and everything that is not a step of a running lockstep replay gets a clear error."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from helpers import signed_in

from cfd_cli.platform import StartupError
from cfd_cli.sandbox import sandbox
from cfd_client import Conflict
from cfd_poller.frames import book_ticker_frame, encode_frame

E0 = 1_767_621_600_000_000


def recording(path: Path, *quotes: tuple[str, str]) -> Path:
    """SOL_USDC quotes (bid, ask) half a second apart."""
    lines = [encode_frame(book_ticker_frame("SOL_USDC", bid, ask, event_time_us=E0 + i * 500_000))
             for i, (bid, ask) in enumerate(quotes)]
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


@pytest.fixture
async def box(tmp_path, sandbox_overrides):
    gap = recording(tmp_path / "gap.jsonl", ("100.00", "100.02"), ("100.10", "100.12"), ("95.00", "95.02"),
                    ("95.50", "95.52"))
    async with sandbox(gap, seed=1, environ={}, **await sandbox_overrides()) as running:
        yield running


def slow_risk_engine(box) -> None:
    """Make the sandbox's risk engine slow to take account events and to check ticks, as a loaded machine's may
    be: a step must wait for it, not race it."""
    risk = box.platform.dbproc.risk
    take, check = risk._take, risk._check

    async def slow_take(event):
        await asyncio.sleep(0.5)
        await take(event)

    async def slow_check(quote):
        await asyncio.sleep(0.1)
        await check(quote)

    risk._take, risk._check = slow_take, slow_check


def error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


async def test_an_order_after_a_step_fills_at_its_quote_and_a_stop_it_crossed_is_applied_before_it_answers(box):
    slow_risk_engine(box)
    api = box.api
    first = await api.replay_step()
    assert (first.ticks, first.played, first.ended) == (1, 1, False)
    (quote,) = first.quotes
    assert (quote.symbol, quote.bid, quote.ask) == ("SOL_USDC", Decimal("99.97"), Decimal("100.06"))  # 6 bps markup
    opened = await api.open_position("SOL_USDC", "long", Decimal(1), 1, stop_loss=Decimal("90.00"))
    assert opened.entry_price == quote.ask and opened.open_receipt is not None
    assert opened.open_receipt.exchange_ask == Decimal("100.02")

    assert (await api.replay_step()).quotes[0].bid == Decimal("100.06")
    assert (await api.position(opened.id)).status == "open"
    moved = await api.modify_position(opened.id, stop_loss=Decimal("97.00"))  # just before the gap: checked at it
    assert moved.stop_loss == Decimal("97.00")

    gap = await api.replay_step()  # through the stop: closed at the gap's bid by the time the step answers
    assert gap.quotes[0].bid == Decimal("94.97")
    closed = await api.position(opened.id)
    assert (closed.status, closed.close_reason, closed.close_price) == ("closed", "stop_loss", Decimal("94.97"))
    assert any(e.kind == "realized_pnl" and e.reference == opened.id for e in await api.ledger())
    assert (await api.price("SOL_USDC")).bid == Decimal("94.97")  # the server's own prices have the step too

    last = await api.replay_step(5)
    assert (last.ticks, last.played, last.ended) == (1, 4, True)
    with pytest.raises(Conflict) as ended:
        await api.replay_step()
    assert ended.value.code == "replay_ended"


async def test_a_retried_step_with_the_same_idempotency_key_plays_once(box):
    once = await box.api.replay_step(2, idempotency_key="step-1")
    again = await box.api.replay_step(2, idempotency_key="step-1")
    assert once == again and once.played == 2
    assert (await box.api.replay_step(idempotency_key="step-2")).played == 3


async def test_bad_steps_get_clear_errors_and_a_read_only_key_may_not_step(box):
    async with httpx.AsyncClient(base_url=box.base_url + "/api/v1", timeout=15) as http:
        auth = {"Authorization": f"Bearer {box.trader.key}"}
        assert error(await http.post("/replay/step", json={"count": 0}, headers=auth)) == (400, "validation_error")
        assert error(await http.post("/replay/step", json={"count": 10_001}, headers=auth))[0] == 400
        assert error(await http.post("/replay/step", json={"count": "two"}, headers=auth))[0] == 400
        assert error(await http.post("/replay/step", json={"ticks": 2}, headers=auth))[0] == 400
        assert error(await http.post("/replay/step"))[0] == 401
        signed = await http.post("/auth/signin", json={"email": box.trader.email, "password": box.trader.password})
        person = {"Authorization": f"Bearer {signed.json()['access_token']}"}
        reader = (await http.post("/api-keys", headers=person, json={"name": "r", "scopes": ["read"]})).json()["key"]
        refused = await http.post("/replay/step", headers={"Authorization": f"Bearer {reader}"})
        assert error(refused) == (403, "insufficient_scope")
        step = await http.post("/replay/step", headers=person)  # a signed-in person may step, without a body
        assert step.status_code == 200 and step.json()["played"] == 1
        assert step.headers["ratelimit-policy"].startswith('"replay"')  # not the trading budget


async def test_without_a_lockstep_replay_a_step_is_not_found(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    response = await api.post("/replay/step", headers=auth, json={"count": 1})
    assert error(response) == (404, "replay_not_running")
    assert "cfd up --replay FILE --lockstep" in response.json()["error"]["message"]


async def test_a_seeded_sandbox_refuses_a_database_that_already_holds_users(tmp_path, sandbox_overrides):
    calm = recording(tmp_path / "calm.jsonl", ("100.00", "100.02"))
    overrides = {**await sandbox_overrides(), "data_dir": tmp_path / "kept"}  # a data directory that stays
    async with sandbox(calm, seed=1, environ={}, **overrides) as first:
        assert (await first.api.replay_step()).ended
    with pytest.raises(StartupError, match="starts from an empty database") as refused:  # the seed's ids are taken
        async with sandbox(calm, seed=1, environ={}, **overrides):
            pass
    assert refused.value.hint is not None and "empty" in refused.value.hint
