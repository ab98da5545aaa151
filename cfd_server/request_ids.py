"""Every REST request gets an id (`shared.logs`): the client's `X-Request-Id` when it sent a sensible one, else a
new one; it is answered in `X-Request-Id`, set for the request's log lines, and travels with its bus requests."""

from __future__ import annotations

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from shared.logs import REQUEST_ID, request_id_from

HEADER = b"x-request-id"


class RequestIds:
    """ASGI middleware: the request's id in `REQUEST_ID` while it is handled, and in the answer's headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = next((value for name, value in scope["headers"] if name == HEADER), None)
        request_id = request_id_from(sent.decode("latin-1") if sent is not None else None)
        token = REQUEST_ID.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (HEADER, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)
