"""`GET /metrics`: the process's Prometheus metrics for operators (the operator token), and the request metrics
of every REST route (Litestar's Prometheus middleware: counts, durations and errors by method, route template
and status). The platform's own metrics are in `shared.metrics`; docs/operations.md lists them."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.plugins.prometheus import PrometheusConfig
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from cfd_server.admin.controller import operator_guard

REQUEST_METRICS = PrometheusConfig(app_name="cfd", prefix="cfd_http", group_path=True, exclude=["^/metrics$"],
                                   buckets=[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5])


class MetricsController(Controller):
    path = "/metrics"
    tags = ["operators"]
    guards = [operator_guard]
    include_in_schema = False

    @get(operation_id="metrics", summary="Prometheus metrics of this process (the operator token)")
    async def metrics(self) -> Response[bytes]:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
