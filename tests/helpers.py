"""Helpers shared by the tests: the backend set in use, reading mail, the sign-up journey."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import httpx
import pytest

BACKENDS = os.environ.get("CFD_TEST_BACKENDS", "embedded")
REAL = BACKENDS == "real"
RUN_ID = uuid.uuid4().hex[:8]

real_only = pytest.mark.skipif(not REAL, reason="needs the real backends (CFD_TEST_BACKENDS=real)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- mail ------------------------------------------------------------------------------------------------


class Mailbox:
    """Reads the mails the platform sent: from the outbox folder, or from the loopback SMTP server."""

    def __init__(self, outbox: Path | None = None) -> None:
        self.outbox = outbox
        self.smtp_messages: list[bytes] = []

    def messages(self, to: str) -> list[Any]:
        raws = self.smtp_messages if self.outbox is None else [
            p.read_bytes() for p in sorted(self.outbox.glob("*.eml"))
        ] if self.outbox.exists() else []
        found = [message_from_bytes(raw, policy=policy.default) for raw in raws]
        return [m for m in found if str(m["To"]).lower() == to.lower()]

    async def wait_for(self, to: str, count: int = 1, timeout: float = 10.0) -> list[Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = self.messages(to)
            if len(found) >= count:
                return found
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"expected {count} mail(s) to {to}, found {len(found)}")
            await asyncio.sleep(0.02)

    async def code_for(self, to: str, nth: int = 1) -> str:
        mails = await self.wait_for(to, nth)
        match = re.search(r"\b(\d{6})\b", mails[nth - 1].get_body(preferencelist=("plain",)).get_content())
        assert match, "the mail carries no 6-digit code"
        return match.group(1)


class SmtpSink:
    """An aiosmtpd handler that keeps every message in a Mailbox."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server, session, envelope):
        self.mailbox.smtp_messages.append(envelope.original_content or envelope.content)
        return "250 OK"


async def sign_up(api: httpx.AsyncClient, mailbox: Mailbox, email: str, password: str = "correct horse battery",
                  name: str = "Ada Trader") -> dict:
    """The whole sign-up journey; returns the verify response body."""
    assert (await api.post("/auth/signup", json={"email": email})).status_code == 202
    code = await mailbox.code_for(email)
    response = await api.post("/auth/verify", json={"email": email, "otp": code, "password": password,
                                                    "name": name})
    assert response.status_code == 201, response.text
    return response.json()


async def set_price(platform: Any, symbol: str, bid: str, ask: str, timeout: float = 10.0) -> None:
    """Publish an exchange tick and wait until the dbproc trades on it."""
    import time
    from decimal import Decimal

    from shared.contracts import PriceTick, encode
    from shared.markets import MARKETS, broker_quote

    now_us = time.time_ns() // 1000
    tick = PriceTick(symbol=symbol, bid=Decimal(bid), ask=Decimal(ask), exchange_time_us=now_us, ingest_time_us=now_us)
    expected = broker_quote(MARKETS[symbol], tick.bid, tick.ask, now_us // 1000)
    await platform.bus.publish(platform.dbproc.topics.prices, encode(tick), key=symbol.encode())
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        fresh = platform.dbproc.quotes.fresh().get(symbol)
        if fresh is not None and fresh.bid == expected.bid and fresh.ask == expected.ask and fresh.ts == expected.ts:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the dbproc never saw the {symbol} tick")
        await asyncio.sleep(0.005)


async def signed_in(api: httpx.AsyncClient, mailbox: Mailbox, email: str) -> dict[str, str]:
    """Sign a new user up; returns the Authorization header to use."""
    body = await sign_up(api, mailbox, email)
    return {"Authorization": f"Bearer {body['access_token']}"}


@contextlib.asynccontextmanager
async def another_server(platform: Any, **overrides: Any) -> AsyncIterator[Any]:
    """A second server instance beside `platform`'s, with settings `overrides`. On Kafka and Redis it has
    connections of its own; on the in-process backends it shares the first one's bus and cache, as a second
    server process shares Kafka and Redis."""
    import msgspec

    from cfd_cli.platform import Platform

    settings = msgspec.structs.replace(platform.settings, instance_id=f"second-{uuid.uuid4().hex[:8]}", **overrides)
    backends = {} if REAL else {"bus": platform.bus, "cache": platform.cache}
    server = Platform(settings, ("server",), **backends)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
