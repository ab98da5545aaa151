"""One error hierarchy for the whole platform.

Every error a client can see carries a snake_case `code`, a human `message` and optional `details`; the
HTTP status lives on the class, so the same error crossing the bus from the dbproc maps to the same answer.
"""

from __future__ import annotations

from typing import Any, ClassVar


class SettingsError(Exception):
    """A configuration value is missing or wrong; start-up stops with this one line."""


class CfdError(Exception):
    """Base of every error that becomes an error answer to a client."""

    status: ClassVar[int] = 400
    default_code: ClassVar[str] = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class BadRequest(CfdError):
    status = 400
    default_code = "bad_request"


class Unauthorized(CfdError):
    status = 401
    default_code = "not_authenticated"


class Forbidden(CfdError):
    status = 403
    default_code = "forbidden"


class NotFound(CfdError):
    status = 404
    default_code = "not_found"


class Conflict(CfdError):
    status = 409
    default_code = "conflict"


class Gone(CfdError):
    """What was asked for is no longer kept (e.g. account events older than their retention)."""

    status = 410
    default_code = "gone"


class Rejected(CfdError):
    """A valid request that the business rules refuse (e.g. `insufficient_margin`)."""

    status = 422
    default_code = "rejected"


class Throttled(CfdError):
    status = 429
    default_code = "too_many_requests"


class Unavailable(CfdError):
    """A backend is down or a price is stale; the client may retry after `retry_after` seconds."""

    status = 503
    default_code = "service_unavailable"


class TimedOut(CfdError):
    status = 504
    default_code = "timeout"


class InternalError(CfdError):
    """A bug or an unexpected failure on the platform's side (never the client's input)."""

    status = 500
    default_code = "internal_error"


_BY_STATUS: dict[int, type[CfdError]] = {
    cls.status: cls
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, Conflict, Gone, Rejected, Throttled, InternalError,
                Unavailable, TimedOut)
}


def error_from_wire(status: int, code: str, message: str, details: Any = None,
                    retry_after: int | None = None) -> CfdError:
    """Rebuild an error that crossed the bus (or HTTP) as the matching class."""
    return _BY_STATUS.get(status, CfdError)(message, code=code, details=details, retry_after=retry_after)


class BackendDown(Unavailable):
    """A backend (bus, cache, database, mail) cannot be reached."""

    default_code = "backend_unavailable"

    def __init__(self, backend: str, reason: str = "", *, retry_after: int = 5) -> None:
        message = f"The {backend} is unavailable; please retry shortly."
        super().__init__(message, details={"backend": backend, "reason": reason}, retry_after=retry_after)
        self.backend = backend
