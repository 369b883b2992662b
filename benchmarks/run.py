"""Benchmark flask-alisms under gunicorn and print a table; see benchmarks/README.md.

    python benchmarks/run.py            # about 3-4 minutes
    python benchmarks/run.py --quick    # under a minute

What it measures, each against a goal:

- requests/s and p50/p99 latency of ``POST /alisms/api/send-code`` (memory sender; Aliyun
  sender against the Dysmsapi emulator) and ``POST /alisms/api/register``, served by gunicorn
  (2 gthread workers), next to a bare route of the same app doing one database insert;
  goal: send-code within 1.5x the bare route's latency;
- SQL statements per request (statements on ``alisms_parameter`` apart) and Redis round trips
  per request, counted inside the workers; goal: no parameter query once warm;
- the Aliyun sender alone: time per send and TCP connections for 1,000 sends through one
  ``AliyunSender``; goal: one connection;
- resident memory of the workers after many requests.

Only 127.0.0.1 is contacted: gunicorn, the emulator, PostgreSQL and Redis. Every server the
script starts is stopped when it ends, even on Ctrl-C, and the run time is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import itertools
import json
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import bench_app  # noqa: E402

POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
SCHEMA = "alisms_bench"
REDIS_URL = "redis://127.0.0.1:6379/12"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY")
GOAL_LATENCY_RATIO = 1.5


# -- small helpers --------------------------------------------------------------------------------


class Budget:
    """The run's deadline: phases shrink or are skipped so the whole script stays bounded."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def clean_env() -> dict[str, str]:
    """This environment without proxies (the Aliyun SDK would send 127.0.0.1 through them)."""
    return {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}


_phone_numbers = itertools.count(int(time.time()) % 10_000 * 10_000)


def next_phone() -> str:
    """A fresh valid mainland mobile number, +86138xxxxxxxx (thread-safe under the GIL)."""
    return f"+86138{next(_phone_numbers) % 100_000_000:08d}"


# -- HTTP load generator --------------------------------------------------------------------------


class Client:
    """One keep-alive connection with its own cookie session and CSRF token."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None
        self.cookie: str | None = None
        self.token: str | None = None
        self.reconnects = 0

    def call(
        self, method: str, path: str, payload: Any = None, *, keep_cookie: bool = False
    ) -> tuple[int, bytes]:
        body = json.dumps(payload).encode() if payload is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self.cookie:
            headers["Cookie"] = self.cookie
        if self.token:
            headers["X-CSRFToken"] = self.token
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, OSError):
                # The server closed an idle keep-alive connection: open another once.
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                self.reconnects += 1
                if attempt:
                    raise
        if keep_cookie:
            cookie = response.getheader("Set-Cookie")
            if cookie:
                self.cookie = cookie.split(";", 1)[0]
        return response.status, data

    def fetch_csrf(self) -> None:
        """Once per client: the session cookie and the token it holds (then kept as they are)."""
        status, data = self.call("GET", "/alisms/api/csrf-token", keep_cookie=True)
        if status != 200:
            raise RuntimeError(f"csrf-token answered {status}: {data[:200]!r}")
        self.token = json.loads(data)["csrf_token"]

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class LoadResult:
    requests: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    reconnects: int = 0
    #: The first few bodies of answers that were not 200/201, to say what went wrong.
    odd_answers: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    def p(self, fraction: float) -> float:
        return percentile(self.latencies, fraction) * 1000.0

    def merge(self, other: LoadResult) -> None:
        self.requests += other.requests
        self.elapsed += other.elapsed
        self.latencies = sorted(self.latencies + other.latencies)
        self.statuses.update(other.statuses)
        self.errors += other.errors
        self.reconnects += other.reconnects
        self.odd_answers = (self.odd_answers + other.odd_answers)[:5]

    def status_text(self) -> str:
        parts = [f"{code}x{count}" for code, count in sorted(self.statuses.items())]
        if self.errors:
            parts.append(f"errors x{self.errors}")
        return " ".join(parts)


def run_load(
    port: int,
    path: str,
    payload: Callable[[], Any],
    *,
    clients: int,
    seconds: float,
    max_requests: int,
) -> LoadResult:
    """Keep ``clients`` connections busy on ``path`` for ``seconds`` or ``max_requests``."""
    pool = [Client(port) for _ in range(clients)]
    for client in pool:
        client.fetch_csrf()
    issued = itertools.count()
    result = LoadResult()
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)
    deadline = [0.0]

    def worker(client: Client) -> None:
        latencies: list[float] = []
        statuses: Counter[int] = Counter()
        odd: list[str] = []
        errors = 0
        start_gate.wait()
        while time.perf_counter() < deadline[0] and next(issued) < max_requests:
            body = payload()
            started = time.perf_counter()
            try:
                status, answer = client.call("POST", path, body)
            except (http.client.HTTPException, OSError):
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)
            statuses[status] += 1
            if status not in (200, 201) and len(odd) < 5:
                odd.append(f"{status} {answer[:200].decode('utf-8', 'replace')}")
        with lock:
            result.latencies.extend(latencies)
            result.statuses.update(statuses)
            result.odd_answers = (result.odd_answers + odd)[:5]
            result.errors += errors
            result.reconnects += client.reconnects

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in pool]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline[0] = began + seconds
    start_gate.wait()
    for thread in threads:
        thread.join(seconds + 60)
    result.elapsed = time.perf_counter() - began
    for client in pool:
        client.close()
    result.requests = len(result.latencies)
    result.latencies.sort()
    return result


# -- servers --------------------------------------------------------------------------------------


def _emulator_main(conn: Any) -> None:
    """Child process: a Dysmsapi emulator without flow control, answering stats on a pipe."""
    from flask_alisms.testing import DysmsapiEmulator

    with DysmsapiEmulator(
        access_keys={bench_app.KEY_ID: bench_app.KEY_SECRET},
        sign_names=(bench_app.SIGN,),
        templates={bench_app.TEMPLATE: ("code",)},
        flow_control=False,
    ) as emulator:
        conn.send(emulator.endpoint)
        while True:
            if not conn.poll(1.0):
                if os.getppid() == 1:  # the benchmark died: do not outlive it
                    return
                continue
            command = conn.recv()
            if command == "stats":
                conn.send(
                    {
                        "connections": emulator.connections_opened,
                        "requests": emulator.requests_served,
                        "messages": len(emulator.messages),
                    }
                )
            else:
                return


class Emulator:
    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_emulator_main, args=(child,), daemon=True)

    def start(self) -> Emulator:
        self._process.start()
        if not self._conn.poll(30):
            raise RuntimeError("the Dysmsapi emulator did not start")
        self.endpoint: str = self._conn.recv()
        return self

    def stats(self) -> dict[str, int]:
        self._conn.send("stats")
        return self._conn.recv()  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send("stop")
            self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)


class Gunicorn:
    """``gunicorn bench_app:create_app()`` in its own session, stopped with the benchmark."""

    def __init__(
        self, env: dict[str, str], *, workers: int, worker_class: str, threads: int, logdir: str
    ) -> None:
        self.env = {**clean_env(), **env, "BENCH_PARENT_PID": str(os.getpid())}
        self.workers = workers
        self.worker_class = worker_class
        self.threads = threads
        self.log_path = Path(logdir) / f"gunicorn-{len(os.listdir(logdir))}.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Gunicorn:
        self.port = free_port()
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--pythonpath",
            str(HERE),
            "--workers",
            str(self.workers),
            "--worker-class",
            self.worker_class,
            "--threads",
            str(self.threads),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--config",
            str(HERE / "gunicorn_conf.py"),
            "bench_app:create_app()",
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited at start:\n{self.log_tail()}")
            if len(self.worker_pids()) == self.workers and self._answers():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not start in 60 s:\n{self.log_tail()}")

    def _answers(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("GET", "/alisms/api/status")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    def worker_pids(self) -> list[int]:
        if self.process is None:
            return []
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                pids.append(int(entry))
        return sorted(pids)

    def worker_stats(self, attempts: int = 200) -> dict[int, dict[str, Any]]:
        """Every worker's counters: ask on fresh connections until each worker has answered."""
        wanted = set(self.worker_pids())
        seen: dict[int, dict[str, Any]] = {}
        for _ in range(attempts):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            conn.request("GET", "/bench/stats", headers={"Connection": "close"})
            data = json.loads(conn.getresponse().read())
            conn.close()
            seen[data["pid"]] = data
            if wanted <= seen.keys():
                break
        return seen

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()  # the master stops its workers
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def _send_many(
    sender: Any, message: Callable[[], Any], credentials: Any, count: int
) -> tuple[list[float], int]:
    """``count`` sends in a row: their durations and how many failed."""
    timings, failed = [], 0
    for _ in range(count):
        started = time.perf_counter()
        result = sender.send(message(), credentials)
        timings.append(time.perf_counter() - started)
        failed += not result.ok
    return timings, failed


def route_totals(stats: dict[int, dict[str, Any]], route: str) -> dict[str, int]:
    totals = dict.fromkeys(bench_app.Counters.FIELDS, 0)
    for worker in stats.values():
        for key, value in worker["routes"].get(route, {}).items():
            totals[key] += value
    return totals


# -- the benchmark --------------------------------------------------------------------------------


@dataclass
class Row:
    """One route on one server: loaded (N clients) and alone (1 client), rounds merged."""

    kind: str
    config: str
    load: LoadResult = field(default_factory=LoadResult)
    single: LoadResult = field(default_factory=LoadResult)
    per_request: dict[str, float] = field(default_factory=dict)
    bare: Row | None = None

    @property
    def route(self) -> str:
        return f"POST {ROUTES[self.kind][0]}"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


ROUTES = {
    "bare": ("/bench/bare", "bench_bare", 200),
    "send-code": ("/alisms/api/send-code", "alisms.api_send_code", 200),
    "register": ("/alisms/api/register", "alisms.api_register", 201),
}


class Benchmark:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.budget = Budget(args.max_seconds)
        self.report = Report()
        self.tmp = tempfile.mkdtemp(prefix="alisms-bench-")
        self.database_url = ""
        self.own_schema = False
        self.redis_ok = False
        self.emulator: Emulator | None = None
        self.servers: list[Gunicorn] = []
        self.register_phones: list[str] = []
        self._register_index = itertools.count()
        self.reserve = 30.0  # seconds kept for the last server and the clean-up
        self.load_before = self.load_after = (0.0, 0.0, 0.0)
        self.connections_under_load: tuple[int, int] | None = None
        self.rss: tuple[bool, list[tuple[int, dict[int, int]]]] | None = None
        self.sender_connections: int | None = None
        self.sender_failures = 0
        self.in_process: dict[str, Any] = {}

    # -- services ---------------------------------------------------------------------------------

    def prepare_services(self) -> None:
        import sqlalchemy as sa

        url = self.args.database_url
        if url is None:
            try:
                engine = sa.create_engine(POSTGRES_URL)
                with engine.begin() as connection:
                    connection.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
                engine.dispose()
                url = f"{POSTGRES_URL}?options=-csearch_path%3D{SCHEMA}"
                self.own_schema = True
            except Exception as exc:  # any driver error: not there
                print(f"PostgreSQL not reachable ({exc}); using SQLite", file=sys.stderr)
                url = f"sqlite:///{self.tmp}/bench.db"
        self.database_url = url
        try:
            import redis

            client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
            client.ping()
            client.flushdb()
            client.close()
            self.redis_ok = True
        except Exception as exc:
            print(f"Redis not reachable ({exc}); skipping the Redis rows", file=sys.stderr)
        self.emulator = Emulator().start()
        os.environ["BENCH_DATABASE_URL"] = self.database_url
        app = bench_app.create_app()
        bench_app.setup_database(app)
        seeds = self.args.register_seeds
        self.register_phones = [next_phone() for _ in range(seeds)]
        bench_app.seed_codes(app, self.register_phones)
        with app.app_context():
            bench_app.db.engine.dispose()

    def cleanup(self) -> None:
        for server in self.servers:
            server.stop()
        if self.emulator is not None:
            self.emulator.stop()
        if self.own_schema and not self.args.keep_data:
            import sqlalchemy as sa

            with contextlib.suppress(Exception):
                engine = sa.create_engine(POSTGRES_URL)
                with engine.begin() as connection:
                    connection.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
                engine.dispose()
        if self.redis_ok:
            import redis

            with contextlib.suppress(Exception):
                redis.Redis.from_url(REDIS_URL).flushdb()
        if not self.args.keep_data:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def server(self, *, sender: str, limiter: str, codes: str = "database") -> Gunicorn:
        env = {
            "BENCH_DATABASE_URL": self.database_url,
            "BENCH_SENDER": sender,
            "BENCH_LIMITER_URI": limiter,
            "BENCH_CODE_STORAGE": codes,
        }
        if sender == "aliyun":
            assert self.emulator is not None
            env["BENCH_ENDPOINT"] = self.emulator.endpoint
        server = Gunicorn(
            env,
            workers=self.args.workers,
            worker_class=self.args.worker_class,
            threads=self.args.threads,
            logdir=self.tmp,
        )
        self.servers.append(server)
        return server.start()

    # -- payloads ---------------------------------------------------------------------------------

    @staticmethod
    def send_code_payload() -> dict[str, Any]:
        return {"phone": next_phone(), "purpose": "register"}

    def register_payload(self) -> dict[str, Any]:
        phone = self.register_phones[next(self._register_index) % len(self.register_phones)]
        return {
            "phone": phone,
            "code": bench_app.REGISTER_CODE,
            "password": bench_app.REGISTER_PASSWORD,
        }

    # -- phases -----------------------------------------------------------------------------------

    def payload_for(self, kind: str) -> Callable[[], Any]:
        return self.register_payload if kind == "register" else self.send_code_payload

    def cap(self, kind: str) -> int:
        """Requests one run may make: register is bounded by the codes seeded for it."""
        if kind != "register":
            return self.args.max_requests
        left = len(self.register_phones) - self._register_used() - 20
        return max(0, min(self.args.max_requests, left))

    def _register_used(self) -> int:
        # itertools.count has no peek: read its repr, "count(N)".
        return int(repr(self._register_index)[6:-1])

    def measure_routes(self, server: Gunicorn, kinds: tuple[str, ...], config: str) -> None:
        """Warm up, then alternate the routes (so drifting background load hits all alike),
        each with N clients and with one; count what the workers did meanwhile."""
        args = self.args
        rows = {kind: Row(kind, config) for kind in kinds}
        for kind in kinds:
            run_load(
                server.port,
                ROUTES[kind][0],
                self.payload_for(kind),
                clients=args.clients,
                seconds=args.warmup,
                max_requests=min(50, self.cap(kind)) if kind == "register" else 100_000,
            )
        before = server.worker_stats()
        for _ in range(args.rounds):
            for kind in kinds:
                for clients, share in ((args.clients, 1.0), (1, 0.5)):
                    seconds = min(args.seconds * share, self.budget.left() - self.reserve)
                    if seconds < 0.5 or self.cap(kind) <= 0:
                        self.report.lines.append(f"note: a {kind} run was skipped (time/codes)")
                        continue
                    result = run_load(
                        server.port,
                        ROUTES[kind][0],
                        self.payload_for(kind),
                        clients=clients,
                        seconds=seconds,
                        max_requests=self.cap(kind),
                    )
                    (rows[kind].load if clients > 1 else rows[kind].single).merge(result)
        after = server.worker_stats()
        if len(after) < args.workers:
            self.report.lines.append(f"note: only {len(after)} workers answered /bench/stats")
        for kind, row in rows.items():
            endpoint = ROUTES[kind][1]
            end, start = route_totals(after, endpoint), route_totals(before, endpoint)
            delta = {key: end[key] - start[key] for key in end}
            served = max(1, delta["requests"])
            row.per_request = {
                "queries": delta["queries"] / served,
                "param_queries": delta["param_queries"] / served,
                "param_queries_total": delta["param_queries"],
                "served": delta["requests"],
                "redis": delta["redis"] / served,
                "cpu_ms": delta["cpu_us"] / served / 1000,
            }
            if kind != "bare":
                row.bare = rows.get("bare")
            if row.load.requests or row.single.requests:
                self.report.rows.append(row)
            for answer in row.load.odd_answers + row.single.odd_answers:
                self.report.lines.append(f"unexpected answer, {row.route} ({config}): {answer}")
        if any(row.load.odd_answers or row.single.odd_answers for row in rows.values()):
            for line in server.log_tail(400).splitlines():
                if "ERROR" in line or "unavailable" in line or "Error" in line:
                    self.report.lines.append(f"  gunicorn log: {line[:300]}")

    def run_server(
        self,
        *,
        sender: str,
        limiter: str,
        label: str,
        kinds: tuple[str, ...],
        codes: str = "database",
        rss: bool = False,
    ) -> None:
        if self.budget.left() < self.reserve + 10:
            self.report.lines.append(f"skipped the {label} server: out of time")
            return
        server = self.server(sender=sender, limiter=limiter, codes=codes)
        try:
            emulator_before = self.emulator.stats() if self.emulator else None
            self.measure_routes(server, ("bare", *kinds), label)
            if sender == "aliyun" and self.emulator is not None and emulator_before:
                after = self.emulator.stats()
                opened = after["connections"] - emulator_before["connections"]
                self.report.lines.append(
                    f"Emulator during the gunicorn Aliyun rows: {opened} TCP connections opened "
                    f"for {after['requests'] - emulator_before['requests']:,} SendSms requests "
                    f"({self.args.workers} workers x {self.args.threads} threads)"
                )
                self.connections_under_load = (opened, self.args.workers * self.args.threads)
            if rss:
                self.reserve = 10
                self.measure_rss(server, label)
        finally:
            server.stop()

    def measure_rss(self, server: Gunicorn, label: str) -> None:
        """Worker RSS after the rows, then half-way to and at the target send-code count."""
        target = self.args.rss_requests
        endpoint = ROUTES["send-code"][1]

        def served() -> dict[int, dict[str, int]]:
            """Per worker: send-code requests and all requests served so far."""
            return {
                pid: {
                    "send": data["routes"].get(endpoint, {}).get("requests", 0),
                    "all": sum(route["requests"] for route in data["routes"].values()),
                }
                for pid, data in server.worker_stats().items()
            }

        def sends(counts: dict[int, dict[str, int]]) -> int:
            return sum(count["send"] for count in counts.values())

        pids = server.worker_pids()
        counts = served()
        checkpoints = [(sends(counts), {pid: bench_app.rss_kb(pid) for pid in pids})]
        for goal in (target // 2, target):
            while sends(counts) < goal and self.budget.left() > self.reserve:
                run_load(
                    server.port,
                    ROUTES["send-code"][0],
                    self.send_code_payload,
                    clients=self.args.clients,
                    seconds=min(30.0, self.budget.left() - self.reserve),
                    max_requests=goal - sends(counts),
                )
                counts = served()
            if sends(counts) > checkpoints[-1][0]:
                checkpoints.append((sends(counts), {pid: bench_app.rss_kb(pid) for pid in pids}))
        master = bench_app.rss_kb(server.process.pid) if server.process else 0
        lines = self.report.lines
        lines.append(f"Worker memory ({label}; VmRSS; the master holds {master / 1024:.1f} MiB):")
        for total, rss in checkpoints:
            lines.append(
                f"  after {total:>6,} send-code requests: "
                + ", ".join(f"worker {pid} {rss[pid] / 1024:.1f} MiB" for pid in pids)
            )
        lines.append(
            "  served per worker (send-code / all routes): "
            + ", ".join(
                f"{pid}: {counts.get(pid, {}).get('send', 0):,} / "
                f"{counts.get(pid, {}).get('all', 0):,}"
                for pid in pids
            )
        )
        self.rss = (sends(counts) >= target, checkpoints)

    # -- in-process measurements ------------------------------------------------------------------

    def in_process_counts(self) -> None:
        """Exact statements and round trips per request, cold and warm, with the test client."""
        limiter = REDIS_URL if self.redis_ok else "memory://"
        app = bench_app.create_app(
            {
                "SQLALCHEMY_DATABASE_URI": self.database_url,
                "ALISMS_SENDER": "memory",
                "ALISMS_LIMITER_STORAGE_URI": limiter,
                "ALISMS_CODE_STORAGE": "database",
            }
        )
        client = app.test_client()
        csrf = "/alisms/api/csrf-token"
        headers = {"X-CSRFToken": client.get(csrf).get_json()["csrf_token"]}
        counters = bench_app.COUNTERS
        state = app.extensions["alisms"]

        def measure(kind: str, payload: Callable[[], Any], n: int) -> dict[str, float]:
            path, endpoint, expected = ROUTES[kind]
            before = counters.snapshot().get(endpoint, dict.fromkeys(counters.FIELDS, 0))
            for _ in range(n):
                response = client.post(path, json=payload(), headers=headers)
                if response.status_code != expected:
                    raise RuntimeError(f"{path} answered {response.status_code}: {response.data!r}")
                if kind == "register":  # a new session: fetch a token for it (not counted)
                    headers["X-CSRFToken"] = client.get(csrf).get_json()["csrf_token"]
            after = counters.snapshot()[endpoint]
            return {key: (after[key] - before[key]) / n for key in counters.FIELDS}

        results = {}
        for kind, payload in (
            ("bare", self.send_code_payload),
            ("send-code", self.send_code_payload),
            ("register", self.register_payload),
        ):
            state.params.invalidate()
            cold = measure(kind, payload, 1)
            warm = measure(kind, payload, 20)
            results[kind] = (cold, warm)
        with app.app_context():
            bench_app.db.engine.dispose()
        storage = "Redis" if self.redis_ok else "memory:// (Redis not reachable)"
        lines = self.report.lines
        lines.append(
            f"Per request, in-process (Flask test client; memory sender, {storage} limits, "
            "database code store):"
        )
        lines.append(
            f"  {'route':<28}{'SQL (cold)':>11}{'SQL (warm)':>11}{'param q cold':>13}"
            f"{'param q warm':>13}{'Redis rt':>10}"
        )
        for kind, (cold, warm) in results.items():
            lines.append(
                f"  {ROUTES[kind][0]:<28}{cold['queries']:>11.0f}{warm['queries']:>11.2f}"
                f"{cold['param_queries']:>13.0f}{warm['param_queries']:>13.2f}"
                f"{warm['redis']:>10.2f}"
            )
        self.in_process = results

    def aliyun_sender_alone(self) -> None:
        """1,000 sends through one AliyunSender to the emulator, one thread then two."""
        from flask_alisms.sms import AliyunSender, Credentials, SmsMessage

        assert self.emulator is not None
        credentials = Credentials(bench_app.KEY_ID, bench_app.KEY_SECRET)
        sends = self.args.sender_sends

        def message() -> SmsMessage:
            return SmsMessage(
                phone=next_phone()[3:],
                sign_name=bench_app.SIGN,
                template_code=bench_app.TEMPLATE,
                params={"code": "123456"},
            )

        for threads in (1, 2):
            sender = AliyunSender(endpoint=self.emulator.endpoint)
            before = self.emulator.stats()
            began = time.perf_counter()
            with ThreadPool(threads) as pool:
                batches = pool.map(
                    lambda count, s=sender: _send_many(s, message, credentials, count),
                    [sends // threads] * threads,
                )
            elapsed = time.perf_counter() - began
            after = self.emulator.stats()
            sender.close()
            timings = sorted(t for batch in batches for t in batch[0])
            failures = sum(batch[1] for batch in batches)
            opened = after["connections"] - before["connections"]
            self.report.lines.append(
                f"AliyunSender alone, {len(timings)} sends to the emulator from {threads} "
                f"thread(s): {elapsed / len(timings) * 1000:.2f} ms per send overall, "
                f"p50 {percentile(timings, 0.5) * 1000:.2f} ms, "
                f"p99 {percentile(timings, 0.99) * 1000:.2f} ms, "
                f"{opened} TCP connection(s) opened, {failures} failed"
            )
            if threads == 1:
                self.sender_connections = opened
                self.sender_failures = failures

    def profile(self) -> None:
        """Where send-code's CPU goes, in-process (``--profile``): a thread-CPU breakdown by
        step, then pyinstrument over send-code and the bare route."""
        from pyinstrument import Profiler

        from flask_alisms import codes, limits, users, verification, views

        limiter = REDIS_URL if self.redis_ok else "memory://"
        app = bench_app.create_app(
            {
                "SQLALCHEMY_DATABASE_URI": self.database_url,
                "ALISMS_SENDER": "memory",
                "ALISMS_LIMITER_STORAGE_URI": limiter,
            }
        )
        client = app.test_client()
        headers = {"X-CSRFToken": client.get("/alisms/api/csrf-token").get_json()["csrf_token"]}
        steps: dict[str, float] = dict.fromkeys(
            (
                "request_code",
                "codes.save",
                "_record",
                "find_by_phone",
                "hit_send",
                "parse_phone",
                "csrf",
            ),
            0.0,
        )
        targets = [
            (views.verification, "request_code", "request_code"),
            (codes.DatabaseCodeStore, "save", "codes.save"),
            (verification, "_record", "_record"),
            (users.SQLAlchemyUserAdapter, "find_by_phone", "find_by_phone"),
            (limits.Throttle, "hit_send", "hit_send"),
            (views, "parse_phone", "parse_phone"),
            (views, "_csrf_or_error", "csrf"),
        ]
        originals = [(owner, name, getattr(owner, name)) for owner, name, _ in targets]

        def timed(function: Callable[..., Any], label: str) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                started = time.thread_time()
                try:
                    return function(*args, **kwargs)
                finally:
                    steps[label] += time.thread_time() - started

            return wrapper

        n = 300
        results: dict[str, float] = {}
        breakdown: dict[str, float] = {}
        try:
            for owner, name, label in targets:
                setattr(owner, name, timed(getattr(owner, name), label))
            for path in ("/alisms/api/send-code", "/bench/bare"):
                for _ in range(30):
                    client.post(path, json=self.send_code_payload(), headers=headers)
                for key in steps:
                    steps[key] = 0.0
                started = time.thread_time()
                for _ in range(n):
                    client.post(path, json=self.send_code_payload(), headers=headers)
                results[path] = (time.thread_time() - started) / n * 1000
                if path.endswith("send-code"):
                    breakdown = dict(steps)
        finally:
            for owner, name, function in originals:
                setattr(owner, name, function)
        print(f"\n==== CPU per request in-process ({n} requests each, {limiter} limits) ====")
        print(f"POST /bench/bare: {results['/bench/bare']:.2f} ms (the whole request)")
        print(f"POST /alisms/api/send-code: {results['/alisms/api/send-code']:.2f} ms, of which:")
        for label, seconds in breakdown.items():
            print(f"  {label:<16}{seconds / n * 1000:>7.2f} ms")
        for path in ("/alisms/api/send-code", "/bench/bare"):
            profiler = Profiler(interval=0.0005)
            profiler.start()
            for _ in range(n):
                client.post(path, json=self.send_code_payload(), headers=headers)
            profiler.stop()
            print(f"\n==== pyinstrument: {n} x POST {path} in-process ====")
            print(profiler.output_text(unicode=False, color=False, show_all=False))
        with app.app_context():
            bench_app.db.engine.dispose()

    # -- the whole run ----------------------------------------------------------------------------

    def run(self) -> None:
        self.load_before = os.getloadavg()
        self.prepare_services()
        self.in_process_counts()
        self.aliyun_sender_alone()
        if self.args.profile:
            self.profile()
        self.run_server(
            sender="memory",
            limiter="memory://",
            label="memory sender, memory:// limits",
            kinds=("send-code", "register"),
        )
        if self.redis_ok:
            self.run_server(
                sender="memory",
                limiter=REDIS_URL,
                label="memory sender, Redis limits",
                kinds=("send-code",),
            )
            self.run_server(
                sender="memory",
                limiter=REDIS_URL,
                codes=REDIS_URL,
                label="memory sender, Redis limits+codes",
                kinds=("send-code",),
            )
        self.run_server(
            sender="aliyun",
            limiter=REDIS_URL if self.redis_ok else "memory://",
            label="Aliyun sender+emulator, " + ("Redis limits" if self.redis_ok else "memory://"),
            kinds=("send-code",),
            rss=True,
        )
        self.load_after = os.getloadavg()

    # -- output -----------------------------------------------------------------------------------

    def print_report(self) -> None:
        args = self.args
        print()
        print(f"flask-alisms benchmark, {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
        print(f"machine: {machine_description()}")
        print(
            f"load average (1 min) before {self.load_before[0]:.2f}, after "
            f"{self.load_after[0]:.2f}: other processes share these CPUs"
        )
        db_name = self.database_url.split("?")[0].split("@")[-1]
        print(
            f"gunicorn {args.workers} {args.worker_class} workers x {args.threads} threads; "
            f"database {db_name}, codes in the database unless the row says Redis codes; "
            f"{args.rounds} rounds per route "
            f"alternating routes, each {args.seconds:g} s with {args.clients} keep-alive "
            f"clients and {args.seconds / 2:g} s with 1, after {args.warmup:g} s warm-up"
        )
        print()
        header = (
            f"{'route':<27}{'configuration':<34}{'req/s':>7}{'x bare':>7}{'p50 ms':>8}"
            f"{'p99 ms':>8}{'x bare':>7}{'1-client p50':>13}{'x bare':>7}"
            f"{'CPU ms':>8}{'x bare':>7}{'SQL':>6}{'param':>8}{'Redis':>6}"
        )
        print(
            f"{'':<61}{'--- ' + str(args.clients) + ' clients ---':^37}{'':<20}"
            f"{'--- per request, in the workers ---':^36}"
        )
        print(header)
        print("-" * len(header))

        def ratio(value: float, base: float | None) -> str:
            return f"{value / base:.2f}" if base else ""

        for row in self.report.rows:
            load, single, per = row.load, row.single, row.per_request
            bare = row.bare
            print(
                f"{row.route:<27}{row.config:<34}{load.rps:>7.0f}"
                f"{ratio(load.rps, bare.load.rps if bare else None):>7}"
                f"{load.p(0.5):>8.2f}{load.p(0.99):>8.2f}"
                f"{ratio(load.p(0.5), bare.load.p(0.5) if bare else None):>7}"
                f"{single.p(0.5):>13.2f}"
                f"{ratio(single.p(0.5), bare.single.p(0.5) if bare else None):>7}"
                f"{per['cpu_ms']:>8.2f}"
                f"{ratio(per['cpu_ms'], bare.per_request['cpu_ms'] if bare else None):>7}"
                f"{per['queries']:>6.2f}{per['param_queries']:>8.4f}{per['redis']:>6.2f}"
            )
        print()
        print("HTTP answers (loaded | 1 client):")
        for row in self.report.rows:
            print(
                f"  {row.route:<27}{row.config:<38}{row.load.status_text()} | "
                f"{row.single.status_text()}"
            )
        print()
        for line in self.report.lines:
            print(line)
        print()
        self.print_goals()

    def print_goals(self) -> None:
        print("Goals:")
        for row in self.report.rows:
            if row.kind != "send-code" or row.bare is None:
                continue
            bare = row.bare
            loaded = row.load.p(0.5) / bare.load.p(0.5)
            alone = row.single.p(0.5) / bare.single.p(0.5)
            verdict = "MET " if max(loaded, alone) <= GOAL_LATENCY_RATIO else "MISSED"
            print(
                f"  [{verdict}] send-code latency within {GOAL_LATENCY_RATIO}x bare "
                f"({row.config}): p50 {row.load.p(0.5):.2f} vs {bare.load.p(0.5):.2f} ms = "
                f"{loaded:.2f}x with {self.args.clients} clients, {row.single.p(0.5):.2f} vs "
                f"{bare.single.p(0.5):.2f} ms = {alone:.2f}x alone; worker CPU "
                f"{row.per_request['cpu_ms'] / bare.per_request['cpu_ms']:.2f}x"
            )
        if self.in_process:
            warm = {kind: values[1]["param_queries"] for kind, values in self.in_process.items()}
            verdict = "MET " if not any(warm.values()) else "MISSED"
            under_load = [
                f"{row.kind} {row.per_request['param_queries_total']:.0f} in "
                f"{row.per_request['served']:,.0f}"
                for row in self.report.rows
                if row.kind != "bare"
            ]
            print(
                f"  [{verdict}] 0 parameter queries per request when warm: in-process warm "
                + ", ".join(f"{k} {v:.2f}" for k, v in warm.items())
                + "; under gunicorn (each worker re-reads every ALISMS_PARAMS_CACHE_SECONDS=10 "
                "s): " + ", ".join(under_load)
            )
        if self.sender_connections is not None:
            met = self.sender_connections == 1 and not self.sender_failures
            extra = ""
            if self.connections_under_load is not None:
                opened, threads = self.connections_under_load
                extra = f"; under gunicorn {opened} for {threads} worker threads"
            print(
                f"  [{'MET ' if met else 'MISSED'}] 1 connection per worker for repeated sends: "
                f"{self.sender_connections} for {self.args.sender_sends} sends through one "
                f"AliyunSender{extra}"
            )
        if self.rss is not None:
            reached, checkpoints = self.rss
            (first_total, first), (last_total, last) = checkpoints[0], checkpoints[-1]
            growth = max(last[pid] - first[pid] for pid in last) / 1024
            print(
                f"  [info] worker RSS after {last_total:,} send-code requests to the server: "
                + ", ".join(f"{kb / 1024:.1f} MiB" for kb in last.values())
                + f" ({growth:+.1f} MiB at most since {first_total:,})"
                + ("" if reached else f"; target {self.args.rss_requests:,} not reached in time")
            )


def machine_description() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    python = platform.python_version()
    return f"{os.cpu_count()} CPUs ({model}), Python {python}, {platform.system()}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="short rows (~1 minute in all)")
    parser.add_argument("--seconds", type=float, help="seconds per loaded run (default 5)")
    parser.add_argument("--rounds", type=int, help="alternating rounds per server (default 2)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per row (default 1)")
    parser.add_argument("--clients", type=int, default=4, help="client connections (4)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--threads", type=int, default=2, help="threads per worker (2)")
    parser.add_argument("--worker-class", default="gthread", help="gthread (default) or sync")
    parser.add_argument("--max-requests", type=int, default=100_000, help="cap per row")
    parser.add_argument("--rss-requests", type=int, help="send-codes before RSS (10,000)")
    parser.add_argument("--sender-sends", type=int, default=1000, help="AliyunSender sends")
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: local PostgreSQL)")
    parser.add_argument("--max-seconds", type=float, help="hard bound on the whole run")
    parser.add_argument("--profile", action="store_true", help="pyinstrument the hot routes")
    parser.add_argument(
        "--keep-data", action="store_true", help="keep the schema and the gunicorn logs"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.seconds = args.seconds or (2.0 if quick else 5.0)
    args.rounds = args.rounds or (1 if quick else 2)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if quick else 1.0)
    args.rss_requests = args.rss_requests or (1_000 if quick else 10_000)
    args.max_seconds = args.max_seconds or (120.0 if quick else 420.0)
    args.register_seeds = 1_500 if quick else 4_000
    if quick:
        args.sender_sends = min(args.sender_sends, 1000)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    benchmark = Benchmark(args)
    alarm = threading.Timer(args.max_seconds + 60, lambda: os.kill(os.getpid(), signal.SIGTERM))
    alarm.daemon = True
    alarm.start()
    try:
        benchmark.run()
    except KeyboardInterrupt:
        print("interrupted; stopping the servers", file=sys.stderr)
        return 130
    finally:
        alarm.cancel()
        benchmark.cleanup()
    benchmark.print_report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
