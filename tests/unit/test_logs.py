"""JSON log lines, and the request id they carry from a REST request into the dbproc's handling of the bus
requests it made."""

from __future__ import annotations

import json
import logging

import msgspec

from shared.bus.memory import MemoryBus
from shared.bus.rpc import Responder, envelope
from shared.contracts.bus import BusRequest, HealthQuery, HealthReport
from shared.logs import REQUEST_ID, JsonFormatter, request_id_from, set_instance
from shared.operations import Operation, Route

LOGGED = Operation("test.logged", Route.HEALTH, HealthQuery, HealthReport)
log = logging.getLogger("cfd.test")


def test_a_json_line_has_the_time_level_logger_message_instance_and_request_id():
    set_instance("dbproc-7")
    token = REQUEST_ID.set("req-42")
    try:
        record = logging.makeLogRecord({"name": "cfd_dbproc.engine", "levelno": logging.WARNING,
                                        "levelname": "WARNING", "msg": "opened %s", "args": ("p1",)})
        record.created = 1_800_000_000.5
    finally:
        REQUEST_ID.reset(token)
    line = json.loads(JsonFormatter().format(record))  # formatted later: the id is the record's
    set_instance("")
    assert line == {"ts": "2027-01-15T08:00:00.500Z", "level": "warning", "logger": "cfd_dbproc.engine",
                    "message": "opened p1", "instance": "dbproc-7", "request_id": "req-42"}
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info())
    failed = json.loads(JsonFormatter().format(record))
    assert "request_id" not in failed and "ValueError: boom" in failed["exception"]


def test_a_request_id_is_the_clients_when_sensible_else_a_new_one():
    assert request_id_from("trace-1.a:b_c") == "trace-1.a:b_c"
    made = {request_id_from(bad) for bad in (None, "", "x" * 65, "a b", "<script>")}
    assert len(made) == 5 and all(len(m) == 16 for m in made)


async def test_the_dbproc_logs_a_bus_request_under_the_request_id_it_came_with(caplog):
    async def handler(_: HealthQuery) -> HealthReport:
        log.warning("handling")
        return HealthReport(database="ok", instance_id="dbproc-1")

    responder = Responder(MemoryBus(), "replies")
    responder.handle(LOGGED, handler)
    token = REQUEST_ID.set("from-rest-9")  # as the server's middleware sets it for a REST request
    try:
        sent = msgspec.json.decode(envelope(LOGGED, HealthQuery(), command_id="c", correlation_id="r",
                                            reply_to="server-1"), type=BusRequest)
    finally:
        REQUEST_ID.reset(token)
    assert sent.request_id == "from-rest-9"
    formatter = JsonFormatter()
    with caplog.at_level(logging.WARNING, logger="cfd.test"):
        await responder.answer(sent)
        lines = [json.loads(formatter.format(r)) for r in caplog.records if r.name == "cfd.test"]
    assert lines[0]["request_id"] == "from-rest-9"
    assert REQUEST_ID.get() is None  # not left behind for what the consumer does next
