"""Request/reply over the bus: correlation ids, timeouts, and errors that keep their HTTP meaning.

Every request is an `Operation` of `shared.operations`. A `RequestClient` (in each server instance, and the
poller) sends one with `call(op, body, key=...)`: a `BusRequest` on the operation's request topic, keyed by
the user (or what orders its requests), and waits for the `BusReply` with the same correlation id on the
broadcast replies topic, decoded as the operation's reply type. A `Responder` (in the dbproc) decodes each
request as its operation's body type, calls the handler registered with `handle(op, handler)` and publishes
its result or its `CfdError`. A handler's other failures are either a database outage (503
`backend_unavailable`, see `shared.db_failures`) or an internal error (500 `internal_error`, logged with its
traceback); neither names an exception class to the client. An operation without a reply type is internal:
`send` publishes it and nobody waits; the responder publishes no reply and logs a refusal.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import msgspec

from shared import outage
from shared.bus import Bus, Message, Subscription
from shared.clock import now_ms
from shared.contracts import encode
from shared.contracts.bus import BusReply, BusRequest, ErrorBody
from shared.db_failures import database_outage
from shared.errors import BackendDown, BadRequest, CfdError, InternalError, TimedOut, error_from_wire
from shared.logs import REQUEST_ID
from shared.metrics import CommandTimer
from shared.operations import Operation, Route
from shared.outage import Outage

log = logging.getLogger(__name__)
Req = TypeVar("Req")
Rep = TypeVar("Rep")

_request_decoder = msgspec.json.Decoder(BusRequest)
_reply_decoder = msgspec.json.Decoder(BusReply)


def envelope(op: Operation[Req, Any], body: Req, *, command_id: str, correlation_id: str, reply_to: str) -> bytes:
    """The encoded `BusRequest` carrying `body` as an `op` request."""
    if not isinstance(body, op.request):
        raise TypeError(f"{op.name} takes a {op.request.__name__}, not a {type(body).__name__}")
    return encode(BusRequest(type=op.name, command_id=command_id, correlation_id=correlation_id, reply_to=reply_to,
                             body=msgspec.Raw(encode(body)), sent_at_ms=now_ms(), request_id=REQUEST_ID.get()))


async def send(bus: Bus, routes: Mapping[Route, str], op: Operation[Req, None], body: Req, *, key: str,
               command_id: str) -> None:
    """Publish an internal command (an operation nobody waits on); durable once this returns."""
    if op.reply is not None:
        raise TypeError(f"{op.name} has a reply: call it with RequestClient.call")
    await bus.publish(routes[op.route], envelope(op, body, command_id=command_id, correlation_id=command_id,
                                                reply_to=""), key=key.encode())


class RequestClient:
    """Sends requests and matches replies; one per server instance."""

    def __init__(self, bus: Bus, routes: Mapping[Route, str], replies_topic: str, instance_id: str,
                 timeout: float) -> None:
        self.bus = bus
        self.routes = routes
        self.replies_topic = replies_topic
        self.instance_id = instance_id
        self.timeout = timeout
        self._pending: dict[str, asyncio.Future[BusReply]] = {}
        self._subscription: Subscription | None = None
        self._decoders: dict[str, msgspec.json.Decoder[Any]] = {}

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

    async def call(self, op: Operation[Req, Rep], body: Req, *, key: str, command_id: str | None = None,
                   timeout: float | None = None) -> Rep:
        """Send `body` as an `op` request and return its reply; raises the answering service's `CfdError`.

        `key` orders the request among others (one user's commands go to one partition, in order);
        `command_id` makes a command apply once however often it is sent (a fresh one by default)."""
        reply = await self._ask(op, body, key=key, command_id=command_id, timeout=timeout)
        decoder = self._decoders.get(op.name)
        if decoder is None:
            decoder = self._decoders[op.name] = msgspec.json.Decoder(op.reply)
        result: Rep = decoder.decode(reply.body)
        return result

    async def call_rows(self, op: Operation[Req, list[Any]], body: Req, *, key: str,
                        timeout: float | None = None) -> list[msgspec.Raw]:
        """`call` for a list reply, each item left as the answering service encoded it: a page passed on to a
        client as it is, not decoded and encoded again."""
        reply = await self._ask(op, body, key=key, command_id=None, timeout=timeout)
        return _rows_decoder.decode(reply.body)

    async def _ask(self, op: Operation[Req, Any], body: Req, *, key: str, command_id: str | None,
                   timeout: float | None) -> BusReply:
        if op.reply is None:
            raise TypeError(f"{op.name} has no reply: publish it with rpc.send")
        correlation_id = uuid.uuid4().hex
        request = envelope(op, body, command_id=command_id or correlation_id, correlation_id=correlation_id,
                           reply_to=self.instance_id)
        future: asyncio.Future[BusReply] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            await self.bus.publish(self.routes[op.route], request, key=key.encode())
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
        return reply


_rows_decoder = msgspec.json.Decoder(list[msgspec.Raw])


def _with_error(request: BusRequest, reply: BusReply | None, error: CfdError) -> BusReply | None:
    """`reply`, unless it says the command succeeded: then `error` (its group commit failed, so it was not)."""
    if reply is not None and reply.error is not None:
        return reply  # refused, and rolled back to its savepoint: still true
    if not request.reply_to:
        return None  # an internal command: nobody waits (as when one fails alone)
    return _error_reply(request, error)


def _error_reply(request: BusRequest, error: CfdError) -> BusReply:
    return BusReply(correlation_id=request.correlation_id, reply_to=request.reply_to,
                    error=ErrorBody(status=error.status, code=error.code, message=error.message,
                                    details=error.details, retry_after=error.retry_after))


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def handles(op: Operation[Any, Any]) -> Callable[[F], F]:
    """Mark a method as what answers `op`: `handler(body)` for a query, `handler(body, command_id)` for a
    command. `Responder.serve(obj)` registers every marked method of `obj`."""

    def mark(handler: F) -> F:
        setattr(handler, _OPERATION, op)
        return handler

    return mark


_OPERATION = "__cfd_operation__"

QueryHandler = Callable[[Req], Awaitable[Rep]]
CommandHandler = Callable[[Req, str], Awaitable[Rep]]
"""A command's handler also gets the command id, which makes it apply once."""


class _Route:
    """A registered operation: its handler, the decoder of its body, and whether it may be group-committed."""

    __slots__ = ("decoder", "grouped", "handler", "op")

    def __init__(self, op: Operation[Any, Any], handler: Callable[..., Awaitable[Any]], grouped: bool) -> None:
        self.op = op
        self.handler = handler
        self.decoder = msgspec.json.Decoder(op.request)
        self.grouped = grouped


GroupCommit = Callable[[], AbstractAsyncContextManager[None]]
"""Opens one transaction for several commands (the dbproc's `Database.group`)."""


class Responder:
    """Answers the operations registered with `handle` and publishes their replies (used by the dbproc)."""

    def __init__(self, bus: Bus, replies_topic: str, group: GroupCommit | None = None) -> None:
        """With `group`, `batch` applies runs of consecutive commands of handlers marked `group_commit` in one
        transaction."""
        self.bus = bus
        self.replies_topic = replies_topic
        self.group = group
        self.grouped = 0
        """Commands applied in a shared transaction so far (a metric)."""
        self.groups = 0
        """Shared transactions committed so far (a metric)."""
        self._routes: dict[str, _Route] = {}
        self.replies_lost = Outage(f"replies cannot be published to {replies_topic}; clients time out and retry",
                                   log)

    @property
    def operations(self) -> list[Operation[Any, Any]]:
        """The operations this responder answers."""
        return [route.op for route in self._routes.values()]

    def serve(self, *handlers: object) -> None:
        """Answer every operation that a method of these objects is marked for (`@handles(op)`). The commands of
        an object whose class sets `group_commit = True` may share a transaction (see `batch`)."""
        for handler in handlers:
            grouped = getattr(type(handler), "group_commit", False)
            for name in dir(type(handler)):
                op = getattr(getattr(type(handler), name), _OPERATION, None)
                if op is not None:
                    self.handle(op, getattr(handler, name), grouped=grouped and op.command)

    def handle(self, op: Operation[Req, Rep], handler: QueryHandler[Req, Rep] | CommandHandler[Req, Rep], *,
               grouped: bool = False) -> None:
        """Answer `op` requests with `handler(body)`, or for a command `handler(body, command_id)`."""
        self._routes[op.name] = _Route(op, handler, grouped)

    async def __call__(self, message: Message) -> None:
        request = self._decode(message)
        if request is not None:
            await self._reply(request, await self.answer(request))

    async def batch(self, messages: list[Message]) -> None:
        """Answer one partition's messages, in order (a batched subscription's handler). With a `group`, each run
        of consecutive group-committed commands is applied in one transaction, each command in a savepoint of it,
        and their replies go out once it has committed: one commit for many commands, each still applied once,
        with its own result and events. Anything else is answered alone, between the runs."""
        run: list[BusRequest] = []
        for message in messages:
            request = self._decode(message)
            if request is None:
                continue
            route = self._routes.get(request.type)
            if self.group is not None and route is not None and route.grouped:
                run.append(request)
                continue
            await self._answer_run(run)
            run = []
            await self._reply(request, await self.answer(request))
        await self._answer_run(run)

    async def _answer_run(self, requests: list[BusRequest]) -> None:
        if len(requests) < 2 or self.group is None:  # one alone: its own transaction, no savepoint
            for request in requests:
                await self._reply(request, await self.answer(request))
            return
        replies: list[BusReply | None] = []
        try:
            async with self.group():
                for request in requests:
                    replies.append(await self.answer(request))
            self.groups += 1
            self.grouped += len(requests)
        except Exception as exc:  # the commit failed: none of them was applied
            error = self._failure(requests[0], exc)
            replies = [_with_error(request, reply, error) for request, reply in zip(requests, replies, strict=False)]
            replies += [_with_error(request, None, error) for request in requests[len(replies):]]
        for request, reply in zip(requests, replies, strict=True):
            await self._reply(request, reply)

    @staticmethod
    def _decode(message: Message) -> BusRequest | None:
        try:
            return _request_decoder.decode(message.value)
        except msgspec.DecodeError:
            log.error("dropping an undecodable request on %s@%d", message.topic, message.offset)
            return None

    async def _reply(self, request: BusRequest, reply: BusReply | None) -> None:
        if reply is None:
            return
        try:
            await self.bus.publish(self.replies_topic, encode(reply), key=request.reply_to.encode())
        except BackendDown as exc:  # the work is committed; the client times out and retries, applied once
            self.replies_lost.failed(exc.details.get("reason", exc))

    async def answer(self, request: BusRequest) -> BusReply | None:
        """The reply to `request`; None for an internal command, which nobody waits on. Its log lines carry the
        id of the REST request it was made for."""
        token = REQUEST_ID.set(request.request_id)
        try:
            return await self._answer(request)
        finally:
            REQUEST_ID.reset(token)

    async def _answer(self, request: BusRequest) -> BusReply | None:
        route = self._routes.get(request.type)
        waited_on = route is None or route.op.reply is not None
        with CommandTimer(request.type if route is not None else "unknown") as timer:
            try:
                if route is None:
                    raise BadRequest(f"Unknown request type {request.type!r}.", code="unknown_request")
                body = route.decoder.decode(request.body)
                result = await (route.handler(body, request.command_id) if route.op.command
                                else route.handler(body))
                if not waited_on:
                    return None
                return BusReply(correlation_id=request.correlation_id, reply_to=request.reply_to,
                                body=msgspec.Raw(encode(result)))
            except CfdError as exc:
                error = exc
            except msgspec.ValidationError as exc:
                error = BadRequest(f"Malformed {request.type} request: {exc}", code="malformed_request")
            except Exception as exc:
                error = self._failure(request, exc)
            timer.outcome = "refused" if error.status < 500 else "failed"
        if not waited_on:
            if error.status < 500:  # a 5xx is logged where it is made
                log.warning("%s %s refused: %s (%s)", request.type, request.command_id, error.message, error.code)
            return None
        return _error_reply(request, error)

    @staticmethod
    def _failure(request: BusRequest, exc: Exception) -> CfdError:
        """What a client is told of a failure that is not a `CfdError` (logged here)."""
        reason = database_outage(exc)
        if reason is not None:  # once, then counts while it lasts
            outage.failed(log, "requests answered 503: the database is unavailable", reason)
            return BackendDown("database", reason)
        log.exception("request %s (%s, request id %s) failed", request.type, request.command_id,
                      request.correlation_id)
        return InternalError("Something went wrong on our side; please retry. If it keeps failing, report the "
                             "request_id in details.", details={"request_id": request.correlation_id})
