"""The dbproc dies or restarts while requests are in flight: none is lost, none is applied twice."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from decimal import Decimal

import httpx
import pytest
from helpers import REAL, Mailbox, child_env, real_only

from cfd_cli.platform import Platform
from cfd_dbproc.db.tables import Accounts, LedgerEntries, Users
from cfd_dbproc.service import DbProc


async def _verify_until_created(api: httpx.AsyncClient, payload: dict, deadline_s: float = 40) -> list[int]:
    """Verify, retrying as a patient client would after a timeout or an outage; returns every status seen."""
    seen: list[int] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while loop.time() < end:
        response = await api.post("/auth/verify", json=payload)
        seen.append(response.status_code)
        if response.status_code == 201:
            return seen
        assert response.status_code in (503, 504), (seen, response.text)
        await asyncio.sleep(0.2)
    raise AssertionError(f"never created: {seen}")


async def _prepare(api: httpx.AsyncClient, mailbox: Mailbox, count: int) -> list[dict]:
    emails = [f"burst-{uuid.uuid4().hex[:10]}@example.com" for _ in range(count)]
    for email in emails:
        assert (await api.post("/auth/signup", json={"email": email})).status_code == 202
    codes = [await mailbox.code_for(email) for email in emails]
    return [{"email": e, "otp": c, "password": "correct horse", "name": "Burst"}
            for e, c in zip(emails, codes, strict=True)]


async def _assert_each_applied_once(emails: list[str]) -> None:
    for email in emails:
        users = await Users.select(Users.id).where(Users.email == email).run()
        assert len(users) == 1, email
        user_id = users[0]["id"]
        assert await Accounts.count().where(Accounts.user_id == user_id).run() == 1
        deposits = await LedgerEntries.select(LedgerEntries.amount).where(LedgerEntries.user_id == user_id).run()
        assert [d["amount"] for d in deposits] == [Decimal("10000")], deposits


@pytest.mark.skipif(REAL, reason="the in-process restart; the real set kills a dbproc process instead")
async def test_dbproc_restart_during_a_burst_loses_nothing(platform, api, mailbox):
    payloads = await _prepare(api, mailbox, 20)
    burst = [asyncio.ensure_future(_verify_until_created(api, p)) for p in payloads]
    await asyncio.sleep(0.05)
    assert not all(b.done() for b in burst), "the burst finished before the restart; make it longer"
    await platform.dbproc.stop()
    await asyncio.sleep(0.3)
    platform.dbproc = DbProc(platform.settings, platform.bus, platform.db, platform.cache)
    await platform.dbproc.start()
    await asyncio.gather(*burst)
    await _assert_each_applied_once([p["email"] for p in payloads])


def _spawn_dbproc(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cfd_cli.main", "dbproc"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def _wait_ready(base_url: str, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    last = None
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        while loop.time() < end:
            last = await client.get("/ready")
            if last.status_code == 200:
                return
            await asyncio.sleep(0.2)
    raise AssertionError(f"the platform never became ready: {last.text if last else ''}")


@real_only
async def test_dbproc_killed_during_a_burst_loses_nothing_and_applies_once(make_settings, platform, mailbox):
    """SIGKILL a separate dbproc process mid-burst, start another: every sign-up completes exactly once."""
    prefix = f"kill{uuid.uuid4().hex[:6]}."
    settings = make_settings(bus={"topic_prefix": prefix, "request_timeout": 3.0})
    env = child_env(settings, CFD_DBPROC_QUOTE_WAIT_SECONDS="0")  # sign-ups only: no price feed to wait for
    server = Platform(settings, ("server",))
    await server.start()
    first = _spawn_dbproc(env)
    second = None
    try:
        await _wait_ready(server.base_url)
        async with httpx.AsyncClient(base_url=server.base_url + "/api/v1", timeout=15) as api:
            payloads = await _prepare(api, mailbox, 30)
            burst = [asyncio.ensure_future(_verify_until_created(api, p)) for p in payloads]
            await asyncio.sleep(0.15)
            assert not all(b.done() for b in burst), "the burst finished before the kill; make it longer"
            first.send_signal(signal.SIGKILL)
            first.wait()
            second = _spawn_dbproc(env)
            results = await asyncio.gather(*burst)
        assert all(r[-1] == 201 for r in results)
        await _assert_each_applied_once([p["email"] for p in payloads])
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(10)
        await server.stop()
