"""Logs as JSON lines (`CFD_LOG_FORMAT=json`), each with the request id it happened under.

A REST request's id comes from its `X-Request-Id` header (or is made up) and is answered in the same header;
it travels with every bus request made on the request's behalf (`BusRequest.request_id`), so the dbproc's
lines about a command carry the id of the REST request that sent it. `REQUEST_ID` holds it for the task at
hand.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime

REQUEST_ID: ContextVar[str | None] = ContextVar("cfd_request_id", default=None)
_instance = ""
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id_from(header: str | None) -> str:
    """The client's `X-Request-Id` when it is a sensible one (1–64 of letters, digits, `._:-`), else a new id."""
    if header is not None and _VALID_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex[:16]


_base_factory = logging.getLogRecordFactory()


def _record_with_request_id(*args: object, **kwargs: object) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    record.request_id = REQUEST_ID.get()
    return record


if getattr(_base_factory, "__name__", "") != _record_with_request_id.__name__:
    logging.setLogRecordFactory(_record_with_request_id)  # every record keeps the id it was made under


def set_instance(instance_id: str) -> None:
    """Name this process's instance in its JSON log lines (its `CFD_INSTANCE_ID`)."""
    global _instance
    _instance = instance_id


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `ts` (UTC, ms), `level`, `logger`, `message`, `instance` (`set_instance`),
    `request_id` when there is one, and `exception` (the traceback) when one was logged."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if _instance:
            line["instance"] = _instance
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)
