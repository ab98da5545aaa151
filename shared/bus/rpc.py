"""Request/reply over the bus: correlation ids, timeouts, and errors that keep their HTTP meaning.

A `RequestClient` (in each server instance) publishes a `BusRequest` keyed by the user, and waits for the
`BusReply` with the same correlation id on the broadcast replies topic. A `Responder` (in the dbproc)
routes each request type to a handler and publishes its result or its `CfdError`. A handler's other
failures are either a database outage (503 `backend_unavailable`, see `shared.db_failures`) or an internal
error (500 `internal_error`, logged with its traceback); neither names an exception class to the client.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from shared import outage
from shared.bus import Bus, Message, Subscription
from shared.contracts import BusReply, BusRequest, ErrorBody, encode
from shared.db_failures import database_outage
from shared.errors import BackendDown, BadRequest, CfdError, InternalError, TimedOut, error_from_wire
from shared.outage import Outage

log = logging.getLogger(__name__)
T = TypeVar("T")

_request_decoder = msgspec.json.Decoder(BusRequest)
_reply_decoder = msgspec.json.Decoder(BusReply)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class RequestClient:
    """Sends requests and matches replies; one per server instance."""

    def __init__(self, bus: Bus, replies_topic: str, instance_id: str, timeout: float) -> None:
        self.bus = bus
        self.replies_topic = replies_topic
        self.instance_id = instance_id
        self.timeout = timeout
        self._pending: dict[str, asyncio.Future[BusReply]] = {}
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._subscription = await self.bus.subscribe([self.replies_topic], self._on_reply, group=None)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.stop()
        for future in self._pending.values():
            future.cancel()

    async def _on_reply(self, message: Message) -> None:
        if message.key != self.instance_id.encode():
            return
        try:
            reply = _reply_decoder.decode(message.value)
        except msgspec.DecodeError:
            log.warning("undecodable reply on %s@%d", message.topic, message.offset)
            return
        future = self._pending.get(reply.correlation_id)
        if future is not None and not future.done():
            future.set_result(reply)

    async def request(
        self,
        topic: str,
        type: str,
        body: Any,
        response_type: type[T],
        *,
        key: str,
        command_id: str | None = None,
        timeout: float | None = None,
    ) -> T:
        """Send `body` as a `type` request and return the decoded reply; raises the dbproc's `CfdError`."""
        correlation_id = uuid.uuid4().hex
        request = BusRequest(
            type=type,
            command_id=command_id or correlation_id,
            correlation_id=correlation_id,
            reply_to=self.instance_id,
            body=msgspec.Raw(encode(body)),
            sent_at_ms=now_ms(),
        )
        future: asyncio.Future[BusReply] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            await self.bus.publish(topic, encode(request), key=key.encode())
            reply = await asyncio.wait_for(future, timeout or self.timeout)
        except TimeoutError:
            raise TimedOut(
                "The request took too long; it may still complete. Retry with the same Idempotency-Key.",
                code="request_timeout",
            ) from None
        finally:
            self._pending.pop(correlation_id, None)
        if reply.error is not None:
            e = reply.error
            raise error_from_wire(e.status, e.code, e.message, e.details, e.retry_after)
        return msgspec.json.decode(reply.body, type=response_type)


RequestHandler = Callable[[BusRequest], Awaitable[bytes]]


class Responder:
    """Routes requests by type to handlers and publishes their replies (used by the dbproc)."""

    def __init__(self, bus: Bus, replies_topic: str) -> None:
        self.bus = bus
        self.replies_topic = replies_topic
        self.handlers: dict[str, RequestHandler] = {}
        self.replies_lost = Outage(f"replies cannot be published to {replies_topic}; clients time out and retry",
                                   log)

    def route(self, type: str, handler: RequestHandler) -> None:
        self.handlers[type] = handler

    async def __call__(self, message: Message) -> None:
        try:
            request = _request_decoder.decode(message.value)
        except msgspec.DecodeError:
            log.error("dropping an undecodable request on %s@%d", message.topic, message.offset)
            return
        reply = await self.answer(request)
        try:
            await self.bus.publish(self.replies_topic, encode(reply), key=request.reply_to.encode())
        except BackendDown as exc:  # the work is committed; the client times out and retries, applied once
            self.replies_lost.failed(exc.details.get("reason", exc))

    async def answer(self, request: BusRequest) -> BusReply:
        handler = self.handlers.get(request.type)
        try:
            if handler is None:
                raise BadRequest(f"Unknown request type {request.type!r}.", code="unknown_request")
            body = await handler(request)
            return BusReply(correlation_id=request.correlation_id, reply_to=request.reply_to,
                            body=msgspec.Raw(body))
        except CfdError as exc:
            error = exc
        except msgspec.ValidationError as exc:
            error = BadRequest(f"Malformed {request.type} request: {exc}", code="malformed_request")
        except Exception as exc:
            error = self._failure(request, exc)
        return BusReply(
            correlation_id=request.correlation_id,
            reply_to=request.reply_to,
            error=ErrorBody(status=error.status, code=error.code, message=error.message, details=error.details,
                            retry_after=error.retry_after),
        )

    @staticmethod
    def _failure(request: BusRequest, exc: Exception) -> CfdError:
        reason = database_outage(exc)
        if reason is not None:  # once, then counts while it lasts
            outage.failed(log, "requests answered 503: the database is unavailable", reason)
            return BackendDown("database", reason)
        log.exception("request %s (%s, request id %s) failed", request.type, request.command_id,
                      request.correlation_id)
        return InternalError("Something went wrong on our side; please retry. If it keeps failing, report the "
                             "request_id in details.", details={"request_id": request.correlation_id})
