"""Typed errors of the client library: one class per HTTP status family, built from the server's error body.

Every error the server answers with has the shape `{"error": {"code", "message", "details"}}`; `ApiError`
carries those fields plus the HTTP status (and `retry_after` when the server sent `Retry-After`). A request
that never got an answer (refused connection, reset, timeout) raises `ConnectionLost` instead.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec


class ClientError(Exception):
    """Base of every error the client library raises."""


class ConnectionLost(ClientError):
    """The server could not be reached or did not answer: the network, not the request, failed."""

    def __init__(self, message: str, *, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause


class UnexpectedResponse(ClientError):
    """The server answered, but not in the shape this client expects (a version mismatch)."""


class ApiError(ClientError):
    """The server answered with an error. `message` is a sentence fit to show to the trader."""

    def __init__(self, status: int, code: str, message: str, details: Any = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after

    @property
    def field(self) -> str | None:
        """The request field the error is about, when the server named one (`details.field`)."""
        if isinstance(self.details, dict) and isinstance(self.details.get("field"), str):
            return self.details["field"]
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r}, {self.message!r})"


class ClientSideError(ApiError):
    """4xx: the request was wrong, unauthorised or refused; retrying it unchanged will not help."""


class BadInput(ClientSideError):
    """400: a field is missing, malformed or breaks an input rule."""


class NotSignedIn(ClientSideError):
    """401: no token, or its session expired or was revoked; sign in again."""


class Forbidden(ClientSideError):
    """403: signed in, but not allowed (e.g. a disabled account)."""


class NotFound(ClientSideError):
    """404: no such resource, or this server does not have the endpoint (yet)."""


class Conflict(ClientSideError):
    """409: the request conflicts with the current state (e.g. an email already registered)."""


class Rejected(ClientSideError):
    """422: valid, but the business rules refuse it (e.g. `insufficient_margin`)."""


class Throttled(ClientSideError):
    """429: too many requests; retry after `retry_after` seconds."""


class ServerSideError(ApiError):
    """5xx: the server or one of its dependencies failed; the same request may work later."""


class ServiceUnavailable(ServerSideError):
    """503: a dependency is down or the price is stale; retry after `retry_after` seconds."""


class GatewayTimeout(ServerSideError):
    """504: the server gave up waiting for a backend."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadInput, 401: NotSignedIn, 403: Forbidden, 404: NotFound, 409: Conflict, 422: Rejected,
    429: Throttled, 503: ServiceUnavailable, 504: GatewayTimeout,
}


def error_class(status: int) -> type[ApiError]:
    """The most specific `ApiError` subclass for an HTTP status."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ClientSideError if status < 500 else ServerSideError


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_from_response(response: httpx.Response) -> ApiError:
    """Build the typed error for an error response, tolerating bodies that are not the usual shape."""
    status = response.status_code
    code, message, details = f"http_{status}", response.reason_phrase or f"HTTP {status}", None
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
        details = error.get("details")
    return error_class(status)(status, code, message, details, _retry_after(response))
