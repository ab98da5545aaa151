"""Every error leaves the server in one shape: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from shared import outage
from shared.errors import CfdError

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "rejected",
    429: "too_many_requests",
    503: "service_unavailable",
}


def error_response(status: int, code: str, message: str, details: Any = None,
                   retry_after: int | None = None) -> Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return Response(
        {"error": {"code": code, "message": message, "details": details}},
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def cfd_error_handler(request: Request, exc: CfdError) -> Response:
    if exc.status >= 500:
        details = exc.details if isinstance(exc.details, dict) else {}
        if exc.status == 500:  # a bug: every one is logged, with the id the client was given
            log.error("%s %s -> 500 %s: %s (%s)", request.method, request.url.path, exc.code, exc.message,
                      details.get("request_id"))
        else:  # a backend outage: once, then counts while it lasts
            reason = details.get("reason")
            outage.failed(log, f"requests answered {exc.status} {exc.code}",
                          f"{request.method} {request.url.path}: {exc.message}{f' ({reason})' if reason else ''}")
    retry_after = exc.retry_after if exc.retry_after is not None else (5 if exc.status == 503 else None)
    return error_response(exc.status, exc.code, exc.message, exc.details, retry_after)


def validation_error_handler(request: Request, exc: ValidationException) -> Response:
    details = exc.extra if isinstance(exc.extra, list) else None
    message = "The request body is not valid JSON or does not match the expected fields."
    if details:
        first = details[0]
        if isinstance(first, dict) and first.get("message"):
            key = first.get("key")
            message = f"{first['message']}" + (f" (field {key!r})" if key else "")
    return error_response(400, "validation_error", message, details)


def http_error_handler(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    if status >= 500:
        log.error("%s %s -> %d: %s", request.method, request.url.path, status, exc.detail)
        return error_response(status, "internal_error", "Something went wrong on our side; please retry.")
    code = _CODES.get(status, "bad_request")
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else code.replace("_", " ").capitalize()
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    if status == 400:
        code, message = "malformed_request", f"The request could not be read ({message}); send a JSON object."
    if status == 404 and message == "Not Found":
        message = f"No endpoint at {request.url.path}; see /schema for the API."
    if status == 405 and "allow" in headers:
        message = f"{request.method} is not allowed here; use {headers['allow']}."
    response = error_response(status, code, message)
    if "allow" in headers:
        response.headers["Allow"] = headers["allow"]  # RFC 9110: a 405 names the methods that work
    return response


def internal_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "Something went wrong on our side; please retry.")


EXCEPTION_HANDLERS = {
    CfdError: cfd_error_handler,
    ValidationException: validation_error_handler,
    HTTPException: http_error_handler,
    Exception: internal_error_handler,
}
