"""`GET /metrics`: what an operator's Prometheus scrapes, for operators only, counting what traders did."""

from __future__ import annotations

import json

import websockets
from helpers import set_price, signed_in
from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def value(found: dict, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    return sum(v for sample_labels, v in found.get(name, []) if labels.items() <= sample_labels.items())


async def test_an_operator_scrapes_requests_commands_ticks_and_websocket_clients(platform, api, mailbox, email):
    operator = {"Authorization": f"Bearer {platform.app.state.operator_token}"}
    before = samples((await api.get(f"{platform.base_url}/metrics", headers=operator)).text)
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "DOGE_USDC", "0.20000", "0.20010")
    opened = await api.post("/positions", headers=auth, json={"symbol": "DOGE_USDC", "side": "long", "qty": "10",
                                                              "leverage": 1})
    assert opened.status_code == 201
    assert (await api.post("/positions", headers=auth, json={"symbol": "DOGE_USDC", "side": "long", "qty": "-1",
                                                             "leverage": 1})).status_code == 422
    ws = await websockets.connect((await api.get("/info")).json()["ws_url"])
    try:
        await ws.send(json.dumps({"op": "subscribe", "channels": ["prices.DOGE_USDC"]}))
        response = await api.get(f"{platform.base_url}/metrics", headers=operator)
    finally:
        await ws.close()
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    after = samples(response.text)
    instance = platform.settings.instance_id

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("cfd_http_requests_total", method="POST", path="/api/v1/positions", status_code="201") == 1
    assert grew("cfd_http_requests_total", method="POST", path="/api/v1/positions", status_code="422") == 1
    assert grew("cfd_command_seconds_count", operation="position.open", outcome="ok") == 1
    assert grew("cfd_command_seconds_count", operation="position.open", outcome="refused") == 0  # refused at the door
    assert value(after, "cfd_ws_clients", instance=instance) >= 1
    assert grew("cfd_ticks_total", instance=instance, service="dbproc") >= 1
    assert grew("cfd_ticks_total", instance=instance, service="server") >= 1
    assert 0 <= value(after, "cfd_tick_age_seconds", instance=instance, service="dbproc", symbol="DOGE_USDC") < 60
    assert value(after, "cfd_risk_partitions", instance=instance) >= 1
    lags = [v for labels, v in after["cfd_bus_consumer_lag"] if labels["instance"] == instance
            and labels["topic"].endswith("requests.trading")]
    assert lags and all(v >= 0 for v in lags)  # the trading partition of the open was handled


async def test_metrics_are_for_operators_only(platform, api, mailbox, email):
    assert (await api.get(f"{platform.base_url}/metrics")).status_code == 401
    auth = await signed_in(api, mailbox, email)
    refused = await api.get(f"{platform.base_url}/metrics", headers=auth)
    assert refused.status_code in (401, 403) and "cfd_" not in refused.text
