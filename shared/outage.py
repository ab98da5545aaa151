"""Logging a failure that repeats (a backend outage) once when it starts, as a summary while it lasts, and once
when it ends, instead of once per failed call.

- `Outage`: one kind of failure. `failed(error)` on every failure, `recovered()` on a success that proves it
  over (where there is one); without it, an outage is over after `SUMMARY_SECONDS` without a failure.
- `failed(log, kind, error)`: the same, for a stream of failures of many kinds (a server's 5xx answers), one
  `Outage` per logger and kind.
- `quiet_repeats("aiokafka")`: a library's own loggers let the first record of each kind through, then at
  most one per `SUMMARY_SECONDS` that says how many were held back (aiokafka logs every retry, ten a second).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

SUMMARY_SECONDS = 10.0  # between two summaries of one outage; also the quiet time that ends one


class Outage:
    """One kind of repeated failure, logged at its start (warning), every `every` seconds while failures keep
    coming (warning, with counts), and at its end (info)."""

    def __init__(self, what: str, log: logging.Logger, *, every: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.log = log
        self.every = SUMMARY_SECONDS if every is None else every
        self.clock = clock
        self.down = False
        self.total = 0  # failures in the current outage
        self._since = self._last_failure = self._last_summary = 0.0
        self._unsummarised = 0
        self._last_error = ""
        self._timer: asyncio.TimerHandle | None = None

    def failed(self, error: object) -> None:
        now = self.clock()
        if self.down and now - self._last_failure >= self.every:
            self._end(now, quiet=True)  # the previous outage ended unnoticed; this is a new one
        self._last_failure = now
        self._last_error = describe(error)
        self.total += 1
        if not self.down:
            self.down = True
            self._since = self._last_summary = now
            self.log.warning("%s: %s (repeats are counted and summarised every %g s until it stops)", self.what,
                             self._last_error, self.every)
            self._schedule()
            return
        self._unsummarised += 1
        if now - self._last_summary >= self.every:
            self._summarise(now)

    def recovered(self) -> None:
        """A success: an outage in progress is over."""
        if self.down:
            self._end(self.clock(), quiet=False)

    def _summarise(self, now: float) -> None:
        self.log.warning("%s: %d more in the last %.0f s (%d since it started %.0f s ago); the last: %s", self.what,
                         self._unsummarised, now - self._last_summary, self.total, now - self._since,
                         self._last_error)
        self._unsummarised = 0
        self._last_summary = now

    def _end(self, now: float, *, quiet: bool) -> None:
        if quiet:
            self.log.info("%s: none for %g s; over after %.1f s (%d in all)", self.what, self.every,
                          self._last_failure - self._since, self.total)
        else:
            self.log.info("%s: over after %.1f s (%d in all)", self.what, now - self._since, self.total)
        self.down = False
        self.total = self._unsummarised = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        """Summaries and the quiet end come from a timer, so they are logged even when failures stop coming."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop: summaries come with the next failure instead
            return
        self._timer = loop.call_later(self.every, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if not self.down:
            return
        now = self.clock()
        if now - self._last_failure >= self.every:
            self._end(now, quiet=True)
            return
        if self._unsummarised and now - self._last_summary >= self.every:
            self._summarise(now)
        self._schedule()


def backend_outage(exc: BaseException) -> str | None:
    """Why `exc` is a backend being unavailable (the bus, the cache, the database), or None when it is not one
    (a bug, which deserves its traceback)."""
    from shared.db_failures import database_outage
    from shared.errors import BackendDown

    if isinstance(exc, BackendDown):
        return f"the {exc.backend} is unavailable ({exc.details.get('reason') or 'no reason given'})"
    return database_outage(exc)


def describe(error: object) -> str:
    """An exception as `Name: message` (aiokafka's often have no message), anything else as its text."""
    if isinstance(error, BaseException):
        name, text = type(error).__name__, str(error)
        return text if text.startswith(name) else f"{name}: {text}" if text else name
    return str(error)


_outages: dict[tuple[str, str], Outage] = {}


def failed(log: logging.Logger, kind: str, error: object) -> None:
    """Count one failure of `kind` (say, "requests answered 503 backend_unavailable (bus)"), logged to `log` as
    an `Outage` of its own."""
    outage = _outages.get((log.name, kind))
    if outage is None:
        outage = _outages[(log.name, kind)] = Outage(kind, log)
    outage.failed(error)


class RepeatFilter(logging.Filter):
    """Passes the first record of each kind (logger and message template), then at most one per `every`
    seconds, which says how many like it were held back since the last one passed."""

    def __init__(self, every: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every = SUMMARY_SECONDS if every is None else every
        self.clock = clock
        self._seen: dict[tuple[str, str], list] = {}  # kind → [when one last passed, how many held back since]

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self.clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.every:
            seen[1] += 1
            return False
        if seen is not None and seen[1]:
            record.msg = f"{record.msg} [and {seen[1]} more like it in the last {now - seen[0]:.0f} s]"
        self._seen[key] = [now, 0]
        return True


_quieted: set[str] = set()


def quiet_repeats(prefix: str) -> None:
    """Give every logger named `prefix` or `prefix.*` that exists now a `RepeatFilter` (once per logger)."""
    shared_filter = RepeatFilter()
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if (name == prefix or name.startswith(prefix + ".")) and isinstance(logger, logging.Logger) \
                and name not in _quieted:
            logger.addFilter(shared_filter)
            _quieted.add(name)
