"""Prometheus metrics: what an operator watches under load.

Counters that already exist on the hot paths (the hub's deliveries, the quote books' ticks, the risk engine's
checks) are read when Prometheus scrapes, through one process-wide collector that walks the live services
(`track`): nothing is added per tick or per frame. Each bus command's handling time is observed as it is
answered (`COMMAND_SECONDS`). The server serves `GET /metrics` (the operator token); a dbproc or poller
running alone serves its own on `CFD_METRICS_PORT` (`serve`). Every metric is named `cfd_*` and documented
in docs/operations.md ("Metrics").
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from prometheus_client import REGISTRY, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

COMMAND_SECONDS = Histogram(
    "cfd_command_seconds", "Time to handle one bus request or command in the dbproc, by operation and outcome",
    ["operation", "outcome"], buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))

Family = CounterMetricFamily | GaugeMetricFamily
Sample = tuple[str, dict[str, str], float]  # (metric name, labels, value)
Reader = Callable[[Any], Iterator[Sample]]
S = TypeVar("S")


class _Services(Collector):
    """Reads the counters and gauges of every live service of this process when Prometheus scrapes."""

    def __init__(self) -> None:
        self._tracked: weakref.WeakKeyDictionary[object, tuple[str, Reader]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def track(self, service: object, instance: str, read: Reader) -> None:
        with self._lock:
            self._tracked[service] = (instance, read)

    def collect(self) -> Iterator[Family]:
        with self._lock:
            tracked = list(self._tracked.items())
        families: dict[str, Family] = {}
        for service, (instance, read) in tracked:
            for name, labels, value in read(service):
                family = families.get(name)
                if family is None:
                    kind, help_text = _METRICS[name]
                    family = families[name] = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                        name, help_text, labels=["instance", *labels])
                family.add_metric([instance, *labels.values()], value)
        yield from families.values()


_METRICS: dict[str, tuple[str, str]] = {
    "cfd_ws_clients": ("gauge", "WebSocket connections open now"),
    "cfd_ws_connections": ("counter", "WebSocket connections accepted since start"),
    "cfd_ws_frames": ("counter", "Frames published on the WebSocket feed (each fanned out to its subscribers)"),
    "cfd_ws_deliveries": ("counter", "Frames queued to WebSocket clients"),
    "cfd_ws_closed_slow": ("counter", "WebSocket clients closed for reading too slowly"),
    "cfd_ticks": ("counter", "Price ticks taken in, by the service's quote book"),
    "cfd_ticks_refused": ("counter", "Price ticks refused (undecodable, unknown market, not newer)"),
    "cfd_tick_age_seconds": ("gauge", "Seconds since the last tick of each market arrived"),
    "cfd_risk_ticks": ("counter", "Ticks the risk engine checked"),
    "cfd_risk_triggers": ("counter", "Stops, stop-outs, margin calls, order fills and alerts the risk engine set off"),
    "cfd_risk_check_seconds": ("counter", "Seconds the risk engine spent checking ticks"),
    "cfd_risk_positions": ("gauge", "Open positions the risk engine watches"),
    "cfd_risk_working_orders": ("gauge", "Working orders the risk engine watches"),
    "cfd_risk_partitions": ("gauge", "Partitions of requests.trading whose accounts this dbproc owns"),
    "cfd_bus_consumer_lag": ("gauge", "Requests published to each partition this dbproc consumes and not handled yet"),
    "cfd_group_commits": ("counter", "Transactions the dbproc committed for a run of several commands (group commit)"),
    "cfd_group_committed_commands": ("counter", "Commands applied in those shared transactions"),
    "cfd_accounts_from_book": ("counter", "Accounts (GET /account) answered from the risk book, with no query"),
}

_services = _Services()
REGISTRY.register(_services)


def track(service: S, instance: str, read: Callable[[S], Iterator[Sample]]) -> None:
    """Have `read(service)` report its metrics at each scrape, labelled `instance`, while `service` lives."""
    _services.track(service, instance, read)


def quote_book_metrics(service: str) -> Reader:
    """The reader of a quote book (`shared.quotes.LatestQuotes`) of `service` (`server`, `dbproc`)."""

    def read(book: Any) -> Iterator[Sample]:
        yield "cfd_ticks", {"service": service}, book.ticks
        yield "cfd_ticks_refused", {"service": service}, book.rejected
        for quote, _ in book.all():
            age = book.age(quote.symbol)
            if age is not None:
                yield "cfd_tick_age_seconds", {"service": service, "symbol": quote.symbol}, age

    return read


class CommandTimer:
    """`with CommandTimer(op) as timer: ...; timer.outcome = "error"`: observes the time in `COMMAND_SECONDS`."""

    __slots__ = ("operation", "outcome", "started")

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.outcome = "ok"
        self.started = 0.0

    def __enter__(self) -> CommandTimer:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        COMMAND_SECONDS.labels(self.operation, self.outcome).observe(time.perf_counter() - self.started)


_served: set[tuple[str, int]] = set()


def serve(host: str, port: int) -> None:
    """Serve this process's metrics on http://host:port/metrics (a thread of its own), once per address."""
    if (host, port) not in _served:
        start_http_server(port, addr=host)
        _served.add((host, port))
