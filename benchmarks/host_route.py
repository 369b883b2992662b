"""What installing AliSMS costs a host's own routes: a trivial ``GET /ping`` -> "ok".

    python benchmarks/host_route.py            # about 1 minute, every variant
    python benchmarks/host_route.py --quick    # about 20 s

The same host app (Flask + Flask-SQLAlchemy on SQLite in a temporary directory) in three
variants, measured in one run, alternating so that background load hits all of them alike:

- ``plain``: the host without the extension;
- ``alisms``: the host with ``AliSMS(app, db=db)`` (``memory://`` limits);
- ``old``: ``alisms`` plus a Flask-Limiter ``init_app``-ed on the app, as the extension did
  before 0.3 when the host passed no Limiter (for contrast).

Two measurements: in-process, a loop of direct WSGI calls (median microseconds per request
over several rounds); and under gunicorn (2 sync workers per variant on a free 127.0.0.1
port), a bounded load from a small thread pool in this script: requests/s, p50 latency and
the workers' CPU time per request from ``/proc/<pid>/stat``. Goal: ``alisms`` within 1.05x of
``plain``.

Only 127.0.0.1 is used; no database or Redis is touched. Every gunicorn runs in its own
session and is stopped at the end (also on Ctrl-C, on SIGTERM and at the ``--max-seconds``
deadline); if this script is killed outright, ``gunicorn_conf.py`` stops them within a second.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import http.client
import logging
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VARIANTS = ("plain", "alisms", "old")
GOAL_RATIO = 1.05


# -- the host app ----------------------------------------------------------------------------------


def create_app(variant: str, database_url: str) -> Any:
    """The host: one trivial route, Flask-SQLAlchemy, and AliSMS unless ``plain``."""
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy

    logging.getLogger("flask_alisms").setLevel(logging.ERROR)  # "no user_adapter" warning
    app = Flask(f"host_{variant}")
    app.config.update(
        SECRET_KEY="host-route-benchmark-secret-key",  # noqa: S106 - a benchmark app
        SQLALCHEMY_DATABASE_URI=database_url,
        ALISMS_LIMITER_STORAGE_URI="memory://",
    )
    db = SQLAlchemy()
    db.init_app(app)

    @app.get("/ping")
    def ping() -> str:
        return "ok"

    if variant in ("alisms", "old"):
        from flask_alisms import AliSMS

        AliSMS(app, db=db)
    if variant == "old":
        from flask_limiter import Limiter
        from flask_limiter.util import get_remote_address

        Limiter(get_remote_address, storage_uri="memory://").init_app(app)
    return app


def app_from_env() -> Any:
    """Gunicorn's entry point: ``host_route:app_from_env()``."""
    return create_app(os.environ["HOST_ROUTE_VARIANT"], os.environ["HOST_ROUTE_DATABASE_URL"])


# -- in-process: direct WSGI calls -----------------------------------------------------------------


def wsgi_loop(app: Any, requests: int) -> float:
    """Microseconds per ``GET /ping``, calling the WSGI app directly."""
    from werkzeug.test import EnvironBuilder

    base = EnvironBuilder(path="/ping", base_url="http://127.0.0.1/").get_environ()
    base["REMOTE_ADDR"] = "127.0.0.1"
    status: list[str] = []

    def start_response(code: str, headers: Any, exc_info: Any = None) -> Callable[..., Any]:
        status.append(code)
        return lambda data: None

    gc.collect()
    started = time.perf_counter()
    for _ in range(requests):
        body = app(dict(base), start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    elapsed = time.perf_counter() - started
    if status[-1] != "200 OK" or len(status) != requests:
        raise RuntimeError(f"/ping answered {status[-1]}")
    return elapsed / requests * 1e6


def in_process(apps: dict[str, Any], rounds: int, requests: int) -> dict[str, list[float]]:
    for app in apps.values():
        wsgi_loop(app, requests // 5)  # warm-up
    figures: dict[str, list[float]] = {name: [] for name in apps}
    names = list(apps)
    for index in range(rounds):
        order = names[index % len(names) :] + names[: index % len(names)]
        for name in order:
            figures[name].append(wsgi_loop(apps[name], requests))
    return figures


# -- under gunicorn --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    variant: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def workers(self) -> list[int]:
        """The master's children: the gunicorn workers."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                found.append(int(entry))
        return sorted(found)

    def worker_cpu(self) -> float:
        """User + system CPU seconds of the workers so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.workers():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        return total / ticks

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


def start_server(variant: str, database_url: str, workdir: Path, workers: int) -> Server:
    port = free_port()
    log = workdir / f"gunicorn-{variant}.log"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FLASK_", "ALISMS_", "HTTP_PROXY", "HTTPS_PROXY"))
    }
    env.update(
        HOST_ROUTE_VARIANT=variant,
        HOST_ROUTE_DATABASE_URL=database_url,
        BENCH_PARENT_PID=str(os.getpid()),
    )
    command = [
        sys.executable, "-m", "gunicorn",
        "--config", str(HERE / "gunicorn_conf.py"),
        "--pythonpath", str(HERE),
        "--workers", str(workers),
        "--worker-class", "sync",
        "--bind", f"127.0.0.1:{port}",
        "host_route:app_from_env()",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(variant, port, process, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn {variant} exited: {log.read_text()[-2000:]}")
        try:
            if get(port)[0] == 200 and len(server.workers()) == workers:
                return server
        except OSError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"gunicorn {variant} did not answer within 30 s")


def get(port: int) -> tuple[int, float]:
    """One ``GET /ping`` on a fresh connection (sync workers close it after each answer)."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/ping")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if body != b"ok":
        return 0, 0.0
    return response.status, time.perf_counter() - started


@dataclass
class Load:
    requests: int = 0
    failed: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def add(self, other: Load) -> None:
        self.requests += other.requests
        self.failed += other.failed
        self.seconds += other.seconds
        self.cpu += other.cpu
        self.latencies += other.latencies

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.requests * 1e6


def load(server: Server, seconds: float, clients: int, max_requests: int) -> Load:
    """``clients`` threads sending requests back to back for ``seconds`` (and no more)."""
    stop = time.monotonic() + seconds
    per_client = max_requests // clients

    def client() -> Load:
        result = Load()
        while time.monotonic() < stop and result.requests < per_client:
            status, latency = get(server.port)
            if status == 200:
                result.requests += 1
                result.latencies.append(latency)
            else:
                result.failed += 1
        return result

    cpu_before = server.worker_cpu()
    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        parts = list(pool.map(lambda _: client(), range(clients)))
    total = Load(seconds=time.monotonic() - started, cpu=server.worker_cpu() - cpu_before)
    for part in parts:
        total.requests += part.requests
        total.failed += part.failed
        total.latencies += part.latencies
    return total


def under_gunicorn(
    servers: dict[str, Server], rounds: int, seconds: float, clients: int
) -> dict[str, list[Load]]:
    """Each variant's rounds, the variants taking turns (in a rotating order)."""
    for server in servers.values():
        load(server, 0.5, clients, 100_000)  # warm-up: imports, first requests
    results: dict[str, list[Load]] = {name: [] for name in servers}
    names = list(servers)
    for index in range(rounds):
        order = names[index % len(names) :] + names[: index % len(names)]
        for name in order:
            results[name].append(load(servers[name], seconds, clients, 200_000))
    return results


def total(parts: list[Load]) -> Load:
    result = Load()
    for part in parts:
        result.add(part)
    return result


# -- report ----------------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    from importlib.metadata import version

    packages = ", ".join(
        f"{name} {version(name)}" for name in ("Flask", "Flask-Limiter", "limits", "gunicorn")
    )
    return (
        f"machine: {os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
        f"{packages}, {platform.system()} {platform.release()}"
    )


def ratio_line(label: str, pairs: Iterable[tuple[str, float]], unit: str) -> str:
    """One figure for every variant, each with its ratio to ``plain``."""
    values = dict(pairs)
    plain = values["plain"]
    digits = 2 if unit == "ms" else 1
    cells = "  ".join(
        f"{name} {value:.{digits}f} {unit} ({value / plain:.3f}x)" for name, value in values.items()
    )
    return f"  {label:<24}{cells}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="in-process rounds per variant")
    parser.add_argument("--requests", type=int, default=10_000, help="WSGI calls per round")
    parser.add_argument("--gunicorn-rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="each gunicorn round")
    parser.add_argument("--clients", type=int, default=2, help="client threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--no-gunicorn", action="store_true")
    parser.add_argument("--no-old", action="store_true", help="leave out the old behaviour")
    parser.add_argument("--quick", action="store_true", help="short rounds (about 20 s)")
    parser.add_argument("--max-seconds", type=float, default=300, help="hard bound on the run")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.requests, args.gunicorn_rounds, args.seconds = 3, 3000, 2, 1.5
    variants = [v for v in VARIANTS if not (args.no_old and v == "old")]

    workdir = Path(tempfile.mkdtemp(prefix="alisms-host-route-"))
    database_url = f"sqlite:///{workdir}/host.db"
    servers: dict[str, Server] = {}

    def cleanup() -> None:
        for server in servers.values():
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    def on_signal(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    def deadline() -> None:
        print(f"\n--max-seconds {args.max_seconds:g} reached: stopping", file=sys.stderr)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    timer = threading.Timer(args.max_seconds, deadline)
    timer.daemon = True
    timer.start()
    try:
        now = dt.datetime.now(dt.timezone.utc)
        print(f"flask-alisms host route benchmark, {now:%Y-%m-%d %H:%M} UTC")
        print(machine())
        print(f"load average (1 min) before: {os.getloadavg()[0]:.2f}")
        apps = {name: create_app(name, database_url) for name in variants}
        with apps["alisms"].app_context():
            apps["alisms"].extensions["sqlalchemy"].create_all()  # the host's tables exist

        figures = in_process(apps, args.rounds, args.requests)
        print(
            f"\nin-process, direct WSGI calls of GET /ping: {args.rounds} rounds x "
            f"{args.requests} calls per variant, alternating; median of the rounds"
        )
        for name in variants:
            rounds = " ".join(f"{value:.1f}" for value in figures[name])
            print(f"  {name:<7} median {statistics.median(figures[name]):6.1f} us  ({rounds})")
        medians = [(name, statistics.median(figures[name])) for name in variants]
        print(ratio_line("us per request", medians, "us"))

        loads: dict[str, Load] = {}
        cpu_medians: dict[str, float] = {}
        if not args.no_gunicorn:
            for name in variants:
                servers[name] = start_server(name, database_url, workdir, args.workers)
            rounds = under_gunicorn(servers, args.gunicorn_rounds, args.seconds, args.clients)
            loads = {name: total(parts) for name, parts in rounds.items()}
            cpu_medians = {
                name: statistics.median(part.cpu_us for part in parts)
                for name, parts in rounds.items()
            }
            print(
                f"\ngunicorn, {args.workers} sync workers per variant, {args.clients} client "
                f"threads (a new connection per request: sync workers do not keep alive), "
                f"{args.gunicorn_rounds} rounds x {args.seconds:g} s per variant, alternating"
            )
            print(f"  {'variant':<8}{'requests':>9}{'failed':>7}{'req/s':>9}{'p50 ms':>8}"
                  f"{'worker CPU us/req':>19}")  # fmt: skip
            for name in variants:
                result = loads[name]
                print(
                    f"  {name:<8}{result.requests:>9}{result.failed:>7}{result.rps:>9.0f}"
                    f"{result.p50_ms:>8.2f}{result.cpu_us:>19.1f}"
                )
            print(ratio_line("req/s", [(n, loads[n].rps) for n in variants], "/s"))
            print(ratio_line("p50 latency", [(n, loads[n].p50_ms) for n in variants], "ms"))
            print(
                ratio_line("worker CPU per request", [(n, loads[n].cpu_us) for n in variants], "us")
            )
            print("  worker CPU us per request, round by round (the steadiest figure):")
            for name in variants:
                figures = " ".join(f"{part.cpu_us:.1f}" for part in rounds[name])
                print(f"    {name:<7} median {cpu_medians[name]:6.1f}  ({figures})")
            print(ratio_line("CPU, median of rounds", list(cpu_medians.items()), "us"))

        print(f"\nload average (1 min) after: {os.getloadavg()[0]:.2f}")
        plain_us = dict(medians)["plain"]
        checks = [("in-process time per request", dict(medians)["alisms"] / plain_us)]
        if loads:
            plain, alisms = loads["plain"], loads["alisms"]  # all rounds together
            checks.append(
                ("gunicorn worker CPU per request", cpu_medians["alisms"] / cpu_medians["plain"])
            )
            checks.append(("gunicorn p50 latency", alisms.p50_ms / plain.p50_ms))
            checks.append(("gunicorn req/s (plain / alisms)", plain.rps / alisms.rps))
        print(f"Goal: AliSMS installed costs a host route at most {GOAL_RATIO:.2f}x:")
        for label, ratio in checks:
            verdict = "MET   " if ratio <= GOAL_RATIO else "MISSED"
            print(f"  [{verdict}] {label}: {ratio:.3f}x")
        return 0
    finally:
        timer.cancel()
        cleanup()


if __name__ == "__main__":
    sys.exit(main())
