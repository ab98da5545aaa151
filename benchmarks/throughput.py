"""Throughput of the trading path against the HTTP floor, with the load from wrk in its own process.

    .venv/bin/python benchmarks/throughput.py                  # embedded: `cfd up`, one process
    eval "$(scripts/services.sh env)"
    .venv/bin/python benchmarks/throughput.py --real           # dbproc, poller and server, each its own process
    .venv/bin/python benchmarks/throughput.py --real --workers 2 --dbprocs 2

The platform runs as the `cfd` commands run it, with the rate limits lifted and simulated prices. The benchmark
signs up `--users` traders, then drives wrk (`apt-get install wrk`) at `--connections` connections for
`--seconds` per scenario, the connections spread over the traders:

- `floor`: `GET /health`, the cheapest answer the server gives;
- `open`: `POST /positions`, 10 DOGE long (every answer must be 201);
- `modify`: `PATCH /positions/{id}` with a take-profit, on positions the open run made;
- `close`: `POST /positions/{id}/close`, each a different position the open run made;
- `account`, `positions`: `GET /account` and `GET /positions` (the first page).

Writes benchmarks/results/throughput-<backends>[-wN].json with requests per second, latency percentiles from
wrk, the answers that were not the expected status, the load average before each scenario, and the CPU time
each process spent per request (the platform's processes, and Kafka, PostgreSQL and Redis, from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from _support import RESULTS, Codes, create_postgres_database, drop_postgres_database
from rich.console import Console
from rich.table import Table

console = Console()
ROOT = Path(__file__).resolve().parent.parent
ORDER = '{"symbol":"DOGE_USDC","side":"long","qty":"10","leverage":1}'
LIFTED = "1000000000/10s"
SCENARIOS = ("floor", "open", "modify", "close", "account", "positions")

# wrk's script: requests from a table the benchmark fills in ({method, path, headers, body}), dealt out to the
# threads round robin and formatted in each thread (wrk knows the Host only then); `done` prints the summary as
# one JSON line the benchmark reads.
LUA = r"""
local specs = {REQUESTS}
local expected = {EXPECTED}
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  mine = {}
  for i = 1, #specs do
    if (i - 1) % {THREADS} == id then
      local s = specs[i]
      table.insert(mine, wrk.format(s[1], s[2], s[3], s[4]))
    end
  end
  next_one = 1
  unexpected = 0
  statuses = {}
end

function request()
  local r = mine[next_one]
  next_one = next_one + 1
  if next_one > #mine then next_one = 1 end
  return r
end

function response(status, headers, body)
  if status ~= expected then
    unexpected = unexpected + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local wrong = 0
  local seen = {}
  for _, thread in ipairs(threads) do
    wrong = wrong + thread:get("unexpected")
    for status, n in pairs(thread:get("statuses")) do seen[status] = (seen[status] or 0) + n end
  end
  local parts = {}
  for status, n in pairs(seen) do table.insert(parts, string.format('"%d":%d', status, n)) end
  io.write(string.format(
    'JSON {"requests":%d,"duration_us":%d,"unexpected":%d,"socket_errors":%d,"timeouts":%d,' ..
    '"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"mean_ms":%.3f,"statuses":{%s}}\n',
    summary.requests, summary.duration, wrong,
    summary.errors.connect + summary.errors.read + summary.errors.write, summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000, table.concat(parts, ",")))
end
"""


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BACKENDS = {"java": "kafka", "postgres": "postgresql", "redis-server": "redis"}


def cpu_seconds(platform: Platform) -> dict[str, float]:
    """CPU time (user + system) used so far by each platform process (by its command) and by the backends
    on this machine (by their process names, summed), from /proc."""
    used: dict[str, float] = {}

    def add(name: str, pid: int | str) -> None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return
        used[name] = used.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    for name, pid in platform.named_pids():
        add(name, pid)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm in BACKENDS:
                add(BACKENDS[comm], entry.name)
    return used


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wrk_request(method: str, path: str, token: str | None, body: str | None = None) -> str:
    headers = ["Connection = \"keep-alive\""]
    if token:
        headers.append(f'Authorization = {lua_string("Bearer " + token)}')
    if body is not None:
        headers.append('["Content-Type"] = "application/json"')
    return (f"{{{lua_string(method)}, {lua_string(path)}, {{{', '.join(headers)}}}"
            f"{', ' + lua_string(body) if body is not None else ''}}}")


def run_wrk(base_url: str, requests: list[str], expected: int, connections: int, seconds: float,
            threads: int) -> dict:
    """Run wrk with these requests (`wrk_request`) and return its summary."""
    script = LUA.replace("{REQUESTS}", "{" + ",\n".join(requests) + "}").replace("{EXPECTED}", str(expected))
    script = script.replace("{THREADS}", str(threads))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        done = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
                               "--timeout", "10s", "-s", f.name, base_url], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"wrk failed: {done.stderr or done.stdout}")
    finally:
        os.unlink(f.name)
    line = next(x for x in done.stdout.splitlines() if x.startswith("JSON "))
    summary = json.loads(line.removeprefix("JSON "))
    summary["per_second"] = round(summary["requests"] / (summary["duration_us"] / 1e6), 1)
    return summary


class Platform:
    """`cfd up` (embedded), or `cfd dbproc` × N, `cfd poller` and `cfd server` (real), as child processes."""

    def __init__(self, real: bool, workers: int, dbprocs: int) -> None:
        self.real, self.workers, self.dbprocs = real, workers, dbprocs
        self.data_dir = Path(tempfile.mkdtemp(prefix="cfd-throughput-"))
        self.port, self.ws_port = free_port(), free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.children: list[subprocess.Popen] = []
        self.codes = Codes(outbox=None if real else self.data_dir / "outbox")
        self.smtp = None
        self.database_url: str | None = None

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CFD_") or self.real}
        env.update({"CFD_ENV": "test", "CFD_DATA_DIR": str(self.data_dir), "CFD_HTTP_PORT": str(self.port),
                    "CFD_WS_PORT": str(self.ws_port), "CFD_HTTP_HOST": "127.0.0.1", "CFD_PRICE_SOURCE": "sim",
                    "CFD_SIM_TICK_HZ": "20", "CFD_LOG_LEVEL": "warning"})
        for name in ("CFD_SIGNUP_LIMIT_PER_IP", "CFD_VERIFY_LIMIT_PER_IP", "CFD_SIGNIN_LIMIT_PER_IP",
                     "CFD_RATE_LIMIT_READS", "CFD_RATE_LIMIT_TRADING", "CFD_RATE_LIMIT_SUBSCRIBE"):
            env[name] = LIFTED
        if self.real:
            env.update({"CFD_TOPIC_PREFIX": f"tp{uuid.uuid4().hex[:6]}.", "CFD_DATABASE_URL": self.database_url or "",
                        "CFD_SMTP_HOST": "127.0.0.1", "CFD_SMTP_PORT": str(self.smtp_port),
                        "CFD_SMTP_SECURITY": "none"})
        return env

    async def start(self) -> None:
        cfd = [str(Path(sys.executable).parent / "cfd")]
        if self.real:
            from aiosmtpd.controller import Controller

            self.smtp_port = free_port()
            self.smtp = Controller(self.codes, hostname="127.0.0.1", port=self.smtp_port)
            self.smtp.start()
            self.database_url = await create_postgres_database(os.environ["CFD_DATABASE_URL"], "throughput")
            env = self.environment()
            self._migrate([*cfd, "db", "migrate"], env)
            commands = [[*cfd, "dbproc"] for _ in range(self.dbprocs)] + [[*cfd, "poller"]]
            workers = ["--workers", str(self.workers)] if self.workers > 1 else []
            commands.append([*cfd, "server", *workers])
        else:
            env = self.environment()
            commands = [[*cfd, "up"]]
        self._launch(commands, env)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as client:
            for _ in range(600):
                try:
                    if (await client.get("/ready")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if any(child.poll() is not None for child in self.children):
                    break
                await asyncio.sleep(0.1)
        codes = [child.poll() for child in self.children]
        logged = (self.data_dir / "children.log").read_text()[-2000:]
        raise RuntimeError(f"the platform did not start (exit codes {codes}): {logged}")

    @staticmethod
    def _migrate(command: list[str], env: dict[str, str]) -> None:
        subprocess.run(command, env=env, check=True, capture_output=True)

    def _launch(self, commands: list[list[str]], env: dict[str, str]) -> None:
        with open(self.data_dir / "children.log", "ab") as log:
            for command in commands:
                self.children.append(subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                                      stderr=log))

    async def stop(self) -> None:
        for child in self.children:
            child.send_signal(signal.SIGINT)
        for child in self.children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
        if self.smtp is not None:
            self.smtp.stop()
        if self.database_url:
            await drop_postgres_database(os.environ["CFD_DATABASE_URL"], self.database_url)
        log = self.data_dir / "children.log"
        if log.exists() and log.stat().st_size:
            kept = RESULTS / "throughput-children.log"  # what the platform logged, for a run that went wrong
            shutil.copy(log, kept)
            console.print(f"the platform's log: {kept.relative_to(ROOT)}")
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def pids(self) -> list[int]:
        return [child.pid for child in self.children]

    def named_pids(self) -> list[tuple[str, int]]:
        """Each child process named by its command (`up`, `dbproc`, `dbproc-2`, `poller`, `server`), with the
        server's workers (its child processes) counted as the server."""
        named: list[tuple[str, int]] = []
        for child in self.children:
            command = child.args[1] if isinstance(child.args, list) and len(child.args) > 1 else "cfd"
            name = command if command not in {n for n, _ in named} else f"{command}-{len(named)}"
            named.append((name, child.pid))
            for grandchild in _children_of(child.pid):
                named.append((name, grandchild))
        return named


def cpu_per_request(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    """Milliseconds of CPU each process (or backend) spent per request over a scenario."""
    return {name: round((after[name] - before.get(name, 0.0)) * 1000 / max(requests, 1), 3)
            for name in sorted(after) if after[name] > before.get(name, 0.0)}


def profile(platform: Platform, scenario: str, args: argparse.Namespace) -> list[subprocess.Popen]:
    """py-spy on every platform process while `scenario` runs: collapsed stacks in --profile-dir, a file each."""
    out = Path(args.profile_dir)
    out.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).parent / "py-spy")
    return [subprocess.Popen([spy, "record", "--format", "raw", "--rate", "200", "--duration", str(args.seconds),
                              "--output", str(out / f"{scenario}-{n}.txt"), "--pid", str(pid)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for n, pid in enumerate(platform.pids())]


def _children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


async def sign_up(api: httpx.AsyncClient, codes: Codes) -> str:
    email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
    assert (await api.post("/auth/signup", json={"email": email})).status_code == 202
    response = await api.post("/auth/verify", json={"email": email, "otp": await codes.code(email),
                                                    "password": "correct horse", "name": "Bench"})
    assert response.status_code == 201, response.text
    return response.json()["access_token"]


async def open_positions(api: httpx.AsyncClient, token: str) -> list[str]:
    """The ids of this trader's open positions, every page."""
    ids: list[str] = []
    url: str | None = "/positions?status=open&limit=500"
    while url:
        response = await api.get(url, headers={"Authorization": f"Bearer {token}"})
        response.raise_for_status()
        ids += [p["id"] for p in response.json()]
        link = response.headers.get("Link")  # <path>; rel="next"
        url = link.split(">")[0].lstrip("<").removeprefix("/api/v1") if link else None
    return ids


async def measure(args: argparse.Namespace) -> dict:
    platform = Platform(args.real, args.workers, args.dbprocs)
    await platform.start()
    results: dict[str, dict] = {}
    try:
        async with httpx.AsyncClient(base_url=platform.base_url + "/api/v1", timeout=30) as api:
            with console.status(f"signing up {args.users} traders …"):
                tokens = [await sign_up(api, platform.codes) for _ in range(args.users)]
            api_path = "/api/v1"

            def go(name: str, requests: list[str], expected: int) -> None:
                load = os.getloadavg()[0]
                profilers = profile(platform, name, args) if name in args.profile else []
                before = cpu_seconds(platform)
                with console.status(f"{name}: {args.connections} connections for {args.seconds} s …"):
                    summary = run_wrk(platform.base_url, requests, expected, args.connections, args.seconds,
                                      args.threads)
                summary["cpu_ms_per_request"] = cpu_per_request(before, cpu_seconds(platform), summary["requests"])
                for profiler in profilers:
                    profiler.wait()
                summary["load_average_before"] = round(load, 2)
                results[name] = summary
                console.print(f"  {name}: {summary['per_second']}/s, p50 {summary['p50_ms']:.2f} ms, "
                              f"p99 {summary['p99_ms']:.2f} ms, unexpected {summary['statuses'] or 0}")

            go("floor", [wrk_request("GET", "/health", None)], 200)
            opens = [wrk_request("POST", f"{api_path}/positions", t, ORDER) for t in tokens]
            run_wrk(platform.base_url, opens, 201, args.connections, 2, args.threads)  # warm up
            go("open", opens, 201)
            held = {t: await open_positions(api, t) for t in tokens}
            console.print(f"  positions held: {sum(len(v) for v in held.values())}")
            modifies = [wrk_request("PATCH", f"{api_path}/positions/{pid}", t, '{"take_profit":"5"}')
                        for t in tokens for pid in held[t][:200]]
            go("modify", modifies, 200)
            go("account", [wrk_request("GET", f"{api_path}/account", t) for t in tokens], 200)
            go("positions", [wrk_request("GET", f"{api_path}/positions?limit=50", t) for t in tokens], 200)
            closes = [wrk_request("POST", f"{api_path}/positions/{pid}/close", t, "{}")
                      for pids in zip(*held.values(), strict=False) for t, pid in zip(held, pids, strict=True)]
            # each close is a different position: a run that comes back to the first is cut short
            close_seconds = min(args.seconds, max(1.0, len(closes) / max(results["open"]["per_second"], 1) * 0.8))
            load = os.getloadavg()[0]
            before = cpu_seconds(platform)
            summary = run_wrk(platform.base_url, closes, 200, args.connections, round(close_seconds, 1),
                              args.threads)
            summary["cpu_ms_per_request"] = cpu_per_request(before, cpu_seconds(platform), summary["requests"])
            summary["load_average_before"] = round(load, 2)
            results["close"] = summary
            console.print(f"  close: {summary['per_second']}/s, p50 {summary['p50_ms']:.2f} ms, "
                          f"p99 {summary['p99_ms']:.2f} ms, unexpected {summary['unexpected']}")
    finally:
        await platform.stop()
    floor = results["floor"]["per_second"]
    return {
        "backends": "real" if args.real else "embedded",
        "processes": ("cfd up" if not args.real else
                      f"{args.dbprocs} dbproc, 1 poller, {args.workers} server worker(s)"),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
        "load_generator": f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s", "users": args.users,
        "results": results,
        "opens_over_floor": round(results["open"]["per_second"] / floor, 3) if floor else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", action="store_true", help="Kafka, Redis, PostgreSQL (from CFD_* variables)")
    parser.add_argument("--workers", type=int, default=1, help="API-server processes (real backends)")
    parser.add_argument("--dbprocs", type=int, default=1, help="dbproc processes (real backends)")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--profile", nargs="*", default=[], choices=SCENARIOS, metavar="SCENARIO",
                        help="profile the platform's processes with py-spy during these scenarios")
    parser.add_argument("--profile-dir", default="benchmarks/results/profiles")
    parser.add_argument("--tag", default="", help="appended to the results file's name")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    report = asyncio.run(measure(args))
    RESULTS.mkdir(exist_ok=True)
    suffix = f"-w{args.workers}" if args.workers > 1 or args.dbprocs > 1 else ""
    out = RESULTS / f"throughput-{report['backends']}{suffix}{args.tag}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    table = Table(title=f"throughput, {report['backends']} backends, {report['processes']}")
    for column in ("scenario", "per s", "p50 ms", "p90 ms", "p99 ms", "unexpected"):
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for name, r in report["results"].items():
        table.add_row(name, f"{r['per_second']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p90_ms']:.2f}",
                      f"{r['p99_ms']:.2f}", str(r["unexpected"] + r["socket_errors"] + r["timeouts"]))
    console.print(table)
    cpu = Table(title="CPU milliseconds per request")
    names = sorted({n for r in report["results"].values() for n in r["cpu_ms_per_request"]})
    cpu.add_column("scenario")
    for name in names:
        cpu.add_column(name, justify="right")
    for scenario, r in report["results"].items():
        cpu.add_row(scenario, *(f"{r['cpu_ms_per_request'].get(n, 0):.3f}" for n in names))
    console.print(cpu)
    console.print(f"opens per second over the floor's: {report['opens_over_floor']:.1%}")
    console.print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
