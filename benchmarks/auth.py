"""Auth latency: sign-up, verify, sign-in and /auth/me over HTTP, plus the bus request/reply round trip.

    .venv/bin/python benchmarks/auth.py                      # embedded backends
    eval "$(scripts/services.sh env)"; .venv/bin/python benchmarks/auth.py --real

Runs the server and the dbproc in this process on real sockets, measures each call from the client's
side, and writes p50/p90/p99 (ms) and throughput to benchmarks/results/auth-<backends>.json.
Targets: sign-up p50 < 25 ms; sign-in p50 within 5 ms of one bcrypt check; /auth/me p50 < 2 ms embedded
and < 4 ms on Redis; a bus round trip p50 < 5 ms on Kafka.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import tempfile
import time
import uuid
from email import message_from_bytes, policy
from pathlib import Path

import bcrypt
import httpx
from rich.console import Console
from rich.table import Table

from cfd_cli.platform import Platform
from shared.bus.rpc import RequestClient, Responder
from shared.contracts import BusRequest, UserExists, UserExistsQuery, encode
from shared.settings import load_settings

RESULTS = Path(__file__).parent / "results"
console = Console()


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"n": len(ordered), "p50_ms": pick(0.50), "p90_ms": pick(0.90), "p99_ms": pick(0.99),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 3)}


class Codes:
    """Reads one-time codes from the outbox folder or from a loopback SMTP sink."""

    def __init__(self, outbox: Path | None) -> None:
        self.outbox = outbox
        self.smtp: dict[str, str] = {}

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's hook name
        self._remember(envelope.original_content or envelope.content)
        return "250 OK"

    def _remember(self, raw: bytes) -> None:
        mail = message_from_bytes(raw, policy=policy.default)
        found = re.search(r"\b(\d{6})\b", mail.get_body(preferencelist=("plain",)).get_content())
        if found:
            self.smtp[str(mail["To"]).lower()] = found.group(1)

    async def code(self, email: str) -> str:
        for _ in range(500):
            if self.outbox is not None:
                for path in self.outbox.glob("*.eml"):
                    self._remember(path.read_bytes())
                    path.unlink()
            if email in self.smtp:
                return self.smtp.pop(email)
            await asyncio.sleep(0.01)
        raise RuntimeError(f"no code arrived for {email}")


async def bus_round_trip(platform: Platform, count: int) -> dict[str, float]:
    bus, settings = platform.bus, platform.settings
    requests, replies = settings.topic("bench.requests"), settings.topic("bench.replies")
    await bus.ensure_topics([requests, replies])
    responder = Responder(bus, replies)

    async def echo(request: BusRequest) -> bytes:
        return encode(UserExists(exists=True))

    responder.route("echo", echo)
    serving = await bus.subscribe([requests], responder, group=settings.topic("bench-echo"))
    client = RequestClient(bus, replies, uuid.uuid4().hex, timeout=10)
    await client.start()
    body = UserExistsQuery(email="bench@example.com")
    for _ in range(20):  # warm up: group join, metadata, connections
        await client.request(requests, "echo", body, UserExists, key="warm")
    samples = []
    for i in range(count):
        started = time.perf_counter()
        await client.request(requests, "echo", body, UserExists, key=f"user-{i % 16}")
        samples.append(time.perf_counter() - started)
    await client.stop()
    await serving.stop()
    return percentiles(samples)


async def run(real: bool, count: int) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix="cfd-bench-"))
    codes = Codes(outbox=None if real else data_dir / "outbox")
    overrides: dict = {"env": "test", "data_dir": data_dir, "http_port": 0, "ws_port": 0}
    controller = None
    if real:
        from aiosmtpd.controller import Controller

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        controller = Controller(codes, hostname="127.0.0.1", port=port)
        controller.start()
        overrides |= {"kafka_bootstrap": os.environ["CFD_KAFKA_BOOTSTRAP"], "redis_url": os.environ["CFD_REDIS_URL"],
                      "database_url": os.environ["CFD_DATABASE_URL"], "smtp_host": "127.0.0.1", "smtp_port": port,
                      "smtp_security": "none", "topic_prefix": f"bench{uuid.uuid4().hex[:6]}."}
    settings = load_settings(environ={}, **overrides)
    platform = Platform(settings, ("dbproc", "server"), migrate_db=True)
    await platform.start()
    timings: dict[str, list[float]] = {"signup": [], "verify": [], "signin": [], "bcrypt_check": [], "me": []}
    overheads: list[float] = []
    try:
        async with httpx.AsyncClient(base_url=platform.base_url + "/api/v1", timeout=30) as api:
            emails = [f"bench-{uuid.uuid4().hex[:12]}@example.com" for _ in range(count)]
            with console.status("sign-ups …"):
                for email in emails:
                    started = time.perf_counter()
                    assert (await api.post("/auth/signup", json={"email": email})).status_code == 202
                    timings["signup"].append(time.perf_counter() - started)
            tokens = []
            with console.status("verifies …"):
                for email in emails:
                    body = {"email": email, "otp": await codes.code(email), "password": "correct horse",
                            "name": "Bench"}
                    started = time.perf_counter()
                    response = await api.post("/auth/verify", json=body)
                    timings["verify"].append(time.perf_counter() - started)
                    assert response.status_code == 201, response.text
            with console.status("sign-ins, each paired with a bcrypt check run as the server runs it …"):
                # Pairing each sign-in with a check of the same cost, in the same process and the same way
                # (a worker thread), cancels the drift of bcrypt's own speed; the paired difference is what
                # sign-in adds on top of the password check.
                hashed = bcrypt.hashpw(b"correct horse", bcrypt.gensalt(settings.bcrypt_rounds))
                for email in emails:
                    started = time.perf_counter()
                    response = await api.post("/auth/signin", json={"email": email, "password": "correct horse"})
                    timings["signin"].append(time.perf_counter() - started)
                    tokens.append(response.json()["access_token"])
                    started = time.perf_counter()
                    await asyncio.to_thread(bcrypt.checkpw, b"correct horse", hashed)
                    timings["bcrypt_check"].append(time.perf_counter() - started)
                    overheads.append(timings["signin"][-1] - timings["bcrypt_check"][-1])
            with console.status("/auth/me …"):
                for token in tokens * 5:
                    started = time.perf_counter()
                    response = await api.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
                    timings["me"].append(time.perf_counter() - started)
                    assert response.status_code == 200
        with console.status("bus round trips …"):
            round_trip = await bus_round_trip(platform, count * 5)
    finally:
        await platform.stop()
        if controller is not None:
            controller.stop()

    results = {name: percentiles(samples) for name, samples in timings.items()}
    results["bus_round_trip"] = round_trip
    results["signin_minus_bcrypt"] = percentiles(overheads)
    return {
        "backends": "real" if real else "embedded",
        "described": settings.describe_backends(),
        "bcrypt_rounds": settings.bcrypt_rounds,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", action="store_true", help="Kafka, Redis, PostgreSQL (from CFD_* variables)")
    parser.add_argument("--count", type=int, default=100, help="users to sign up (default 100)")
    args = parser.parse_args()
    report = asyncio.run(run(args.real, args.count))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"auth-{report['backends']}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    table = Table(title=f"auth latency, {report['backends']} backends (bcrypt cost {report['bcrypt_rounds']})")
    for column in ("operation", "n", "p50 ms", "p90 ms", "p99 ms"):
        table.add_column(column, justify="right" if column != "operation" else "left")
    for name, row in report["results"].items():
        table.add_row(name, str(row["n"]), f"{row['p50_ms']:.2f}", f"{row.get('p90_ms', float('nan')):.2f}",
                      f"{row.get('p99_ms', float('nan')):.2f}")
    console.print(table)
    console.print(f"written to {out}")


if __name__ == "__main__":
    main()
