"""`/health` (the process is alive) and `/ready` (every backend answers)."""

from __future__ import annotations

import asyncio
import time

from litestar import Controller, Response, get
from litestar.datastructures import State

from cfd_server.context import ServerContext
from shared import operations as ops
from shared.contracts.bus import HealthQuery
from shared.errors import CfdError

CHECK_TIMEOUT = 3.0


async def _check(name: str, describe: str, probe) -> tuple[str, dict]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT)
        return name, {"ok": True, "backend": describe, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    except CfdError as exc:
        reason = (exc.details or {}).get("reason") if isinstance(exc.details, dict) else None
        return name, {"ok": False, "backend": describe, "error": reason or exc.message}
    except TimeoutError:
        return name, {"ok": False, "backend": describe, "error": f"no answer within {CHECK_TIMEOUT:.0f} s"}
    except Exception as exc:
        return name, {"ok": False, "backend": describe, "error": f"{type(exc).__name__}: {exc}"}


async def readiness(ctx: ServerContext) -> dict:
    """Each backend's state as this server sees it; the database is checked through the dbproc."""
    described = ctx.settings.describe_backends()

    async def database() -> None:
        await ctx.rpc.call(ops.HEALTH, HealthQuery(), key="health", timeout=CHECK_TIMEOUT - 0.5)

    checks = await asyncio.gather(
        _check("bus", described["bus"], ctx.bus.ping),
        _check("cache", described["cache"], ctx.cache.ping),
        _check("database", described["database"], database),
        _check("mail", described["mail"], ctx.mailer.ping),
    )
    backends = dict(checks)
    return {"status": "ready" if all(b["ok"] for b in backends.values()) else "degraded", "backends": backends}


class HealthController(Controller):
    path = "/"
    tags = ["health"]
    include_in_schema = True

    @get("/health", operation_id="health", summary="The process is alive")
    async def health(self) -> dict:
        return {"status": "ok"}

    @get("/ready", operation_id="ready", summary="Every backend answers (503 and which one when not)")
    async def ready(self, state: State) -> Response[dict]:
        report = await readiness(state.ctx)
        if report["status"] == "ready":
            return Response(report, status_code=200)
        return Response(report, status_code=503, headers={"Retry-After": "5"})
