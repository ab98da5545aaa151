"""compose.yaml: every variable it gives the platform's services is one the settings read, and Prometheus
scrapes each service on the metrics port they are given, and each of the server's workers on its own."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from shared.settings import environment_variables

COMPOSE = yaml.safe_load((Path(__file__).parents[2] / "compose.yaml").read_text())
APP_SERVICES = ("migrate", "server", "dbproc", "poller")


def test_every_variable_compose_sets_is_a_setting():
    known = {name for names in environment_variables().values() for name in names}
    for service in APP_SERVICES:
        environment = COMPOSE["services"][service]["environment"]
        unknown = {name for name in environment if name.startswith("CFD_")} - known
        assert not unknown, (service, unknown)


def test_prometheus_scrapes_every_service_on_its_metrics_port_and_each_server_worker_on_its_own():
    (port,) = {int(COMPOSE["services"][s]["environment"]["CFD_METRICS_PORT"]) for s in ("server", "dbproc", "poller")}
    workers = re.fullmatch(r"\$\{CFD_SERVER_WORKERS:-(\d+)\}", COMPOSE["services"]["server"]["environment"]
                           ["CFD_SERVER_WORKERS"])
    assert workers, "the server's workers default to a number"
    scrape = yaml.safe_load(COMPOSE["configs"]["prometheus"]["content"])
    scraped: dict[str, set[int]] = {}
    for target in scrape["scrape_configs"][0]["dns_sd_configs"]:
        for name in target["names"]:
            scraped.setdefault(name, set()).add(target["port"])
    assert scraped == {"server": set(range(port, port + int(workers.group(1)))), "dbproc": {port}, "poller": {port}}
    assert COMPOSE["services"]["prometheus"]["configs"][0]["source"] == "prometheus"
