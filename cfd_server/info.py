"""`/api/v1/info`: the version, and where the WebSocket feed is, so clients need only the API's URL."""

from __future__ import annotations

import time

from litestar import Request, get
from litestar.datastructures import State

import shared
from shared.contracts import InfoResponse
from shared.settings import Settings


def ws_url(settings: Settings, request: Request, port: int | None = None) -> str:
    if settings.ws_public_url:
        return settings.ws_public_url
    host = request.url.hostname or settings.http_host
    if host in {"0.0.0.0", "::"}:
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "wss" if request.url.scheme == "https" else "ws"
    return f"{scheme}://{host}:{port or settings.ws_port}/ws"


@get("/info", operation_id="info", tags=["meta"], summary="Version, server time and the WebSocket URL")
async def info(request: Request, state: State) -> InfoResponse:
    market = getattr(state, "market", None)
    return InfoResponse(version=shared.__version__,
                        ws_url=ws_url(state.ctx.settings, request, market.ws_port if market else None),
                        server_time=time.time_ns() // 1_000_000)
