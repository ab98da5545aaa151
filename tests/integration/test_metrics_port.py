"""A dbproc running alone serves its metrics on `CFD_METRICS_PORT`, on the selected backends."""

from __future__ import annotations

import asyncio

import httpx
from helpers import free_port
from prometheus_client.parser import text_string_to_metric_families

from cfd_cli.platform import Platform


async def test_a_dbproc_alone_serves_its_metrics_on_its_port(make_settings):
    port = free_port()
    settings = make_settings(http={"metrics_port": port})
    platform = Platform(settings, ("dbproc",), migrate_db=True)
    await platform.start()
    try:
        async with httpx.AsyncClient(timeout=5) as client, asyncio.timeout(20):
            while True:  # until the request group has given it its partitions
                response = await client.get(f"http://127.0.0.1:{port}/metrics")
                assert response.status_code == 200
                names = {family.name: family for family in text_string_to_metric_families(response.text)}
                owned = [s.value for s in names["cfd_risk_partitions"].samples
                         if s.labels["instance"] == settings.instance_id]
                if owned and owned[0] >= 1:
                    break
                await asyncio.sleep(0.2)
    finally:
        await platform.stop()
    assert "cfd_command_seconds" in names and "cfd_ticks" in names
