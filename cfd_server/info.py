"""`/api/v1/info`: the version, and where the WebSocket feed is, so clients need only the API's URL."""

from __future__ import annotations

from litestar import get
from litestar.datastructures import State

import shared
from shared.clock import now_ms
from shared.contracts.rest import InfoResponse
from shared.settings import HttpSettings

WILDCARD_HOSTS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def ws_url(settings: HttpSettings, port: int | None = None) -> str:
    """The feed's advertised URL, from configuration only (never from the request, whose `Host` a client
    chooses): `CFD_WS_PUBLIC_URL`, else the host the feed listens on and its bound `port`. A wildcard
    listen address is advertised as loopback, which only this machine can reach: behind a proxy or for
    other machines, operators set `CFD_WS_PUBLIC_URL`."""
    if settings.ws_public_url:
        return settings.ws_public_url
    host = WILDCARD_HOSTS.get(settings.host, settings.host)
    if ":" in host:
        host = f"[{host}]"
    return f"ws://{host}:{port or settings.ws_port}/ws"


def advertises_loopback_only(settings: HttpSettings) -> bool:
    """True when the feed listens on every interface but tells clients a loopback URL."""
    return not settings.ws_public_url and settings.host in WILDCARD_HOSTS


@get("/info", operation_id="info", tags=["meta"], summary="Version, server time and the WebSocket URL")
async def info(state: State) -> InfoResponse:
    market = getattr(state, "market", None)
    return InfoResponse(version=shared.__version__,
                        ws_url=ws_url(state.ctx.settings.http, market.ws_port if market else None),
                        server_time=now_ms())
