"""What every scenario needs: its own database and Redis, gunicorn servers, a load, a table.

The benchmark never writes into a database or a Redis it did not create: :class:`Services`
creates ``bench_<random>`` on the database server it is given and drops it at the end, and
starts its own ``redis-server`` on a free port (no disk, stopped at the end). Only 127.0.0.1 is
contacted. Every process started here is stopped, also on Ctrl-C.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- services the benchmark owns -----------------------------------------------------------------


class Services:
    """A database created on ``server_url`` and a redis-server of our own, both removed at end."""

    def __init__(self, server_url: str, redis_server: str = "redis-server") -> None:
        import sqlalchemy as sa

        self._sa = sa
        self.server_url = sa.make_url(server_url)
        self.name = f"bench_{secrets.token_hex(4)}"
        self.database_url = self.server_url.set(database=self.name).render_as_string(
            hide_password=False
        )
        self._redis_binary = redis_server
        self._redis: subprocess.Popen[bytes] | None = None
        self.redis_url = ""
        self._dir = tempfile.mkdtemp(prefix="alisms-bench-")

    def __enter__(self) -> Services:
        admin = self._sa.create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(self._sa.text(f"CREATE DATABASE {self.name}"))
        admin.dispose()
        port = free_port()
        self._redis = subprocess.Popen(
            [self._redis_binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self._dir],
            stdout=subprocess.DEVNULL,
        )
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        import redis

        for _ in range(100):
            try:
                redis.Redis.from_url(self.redis_url).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._redis is not None:
            self._redis.terminate()
            self._redis.wait(10)
        admin = self._sa.create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            if admin.dialect.name == "postgresql":
                connection.execute(self._sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ), {"name": self.name})
            connection.execute(self._sa.text(f"DROP DATABASE IF EXISTS {self.name}"))
        admin.dispose()
        shutil.rmtree(self._dir, ignore_errors=True)

    def flush_redis(self) -> None:
        """Empty the Redis server we started (and only that one)."""
        import redis

        redis.Redis.from_url(self.redis_url).flushall()


# -- gunicorn ---------------------------------------------------------------------------------


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    env.update(extra)
    env["BENCH_PARENT_PID"] = str(os.getpid())
    return env


class Gunicorn:
    """``module:create_app()`` served by gunicorn sync workers on a free local port."""

    def __init__(self, app: str, env: dict[str, str], *, workers: int = 2) -> None:
        self.port = free_port()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--pythonpath", str(HERE), "--config",
             str(HERE / "gunicorn_conf.py"), "--workers", str(workers), "--worker-class",
             "sync", "--bind", f"127.0.0.1:{self.port}", app],
            cwd=HERE, env=clean_env(env), stdout=self._log, stderr=self._log,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                if len(self.worker_pids()) >= workers:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn {app} did not start:\n{self.log()}")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def rss_kib(self) -> list[int]:
        """Resident memory of each worker (KiB)."""
        sizes = []
        for pid in self.worker_pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]))
        return sizes

    def cpu_seconds(self) -> float:
        """User + system CPU time its workers have used so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self.worker_pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks
        return total

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


@contextmanager
def serving(app: str, env: dict[str, str], *, workers: int = 2) -> Iterator[Gunicorn]:
    server = Gunicorn(app, env, workers=workers)
    try:
        yield server
    finally:
        server.stop()


# -- the load ---------------------------------------------------------------------------------


class Client:
    """One keep-alive connection (gunicorn's sync workers close it: it reconnects) + cookies."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookie = ""
        self.token = ""
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(
        self, method: str, path: str, body: Any = None, *, form: bool = False
    ) -> tuple[int, bytes]:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        if self.token:
            headers["X-CSRFToken"] = self.token
        data = None
        if body is not None:
            if form:
                from urllib.parse import urlencode

                data = urlencode(body).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                response = self.conn.getresponse()
                payload = response.read()
                cookie = response.getheader("Set-Cookie")
                if cookie:
                    self.cookie = cookie.split(";", 1)[0]
                if response.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                return response.status, payload
            except (http.client.HTTPException, OSError):
                self.conn.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def fetch_token(self, path: str) -> None:
        status, body = self.call("GET", path)
        assert status == 200, (status, body[:200])
        self.token = json.loads(body)["csrf_token"]


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0
    cpu: float = 0.0  # the serving workers' CPU seconds during the load

    @property
    def cpu_us(self) -> float:
        """Worker CPU per request (us): steadier than latency on a busy machine."""
        return self.cpu / len(self.latencies) * 1e6 if self.latencies else 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def p(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


def run_load(
    server: Gunicorn,
    request: Callable[[Client], tuple[int, bytes]],
    *,
    seconds: float,
    clients: int = 1,
    token_path: str | None = None,
) -> Load:
    """``clients`` threads calling ``request`` for ``seconds``; latency of each call."""
    port = server.port
    result = Load()
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def worker() -> None:
        client = Client(port)
        if token_path:
            client.fetch_token(token_path)
        mine: list[float] = []
        statuses: Counter[int] = Counter()
        while time.perf_counter() < stop_at:
            began = time.perf_counter()
            status, _ = request(client)
            mine.append(time.perf_counter() - began)
            statuses[status] += 1
        with lock:
            result.latencies += mine
            result.statuses.update(statuses)

    began, cpu = time.perf_counter(), server.cpu_seconds()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - began
    result.cpu = server.cpu_seconds() - cpu
    return result


def alternate(
    measures: dict[str, Callable[[], Load]], rounds: int
) -> dict[str, list[Load]]:
    """Each measure ``rounds`` times, interleaved, so that drift of the machine hits all alike."""
    results: dict[str, list[Load]] = {name: [] for name in measures}
    for _ in range(rounds):
        for name, measure in measures.items():
            results[name].append(measure())
    return results


def median_p50(loads: list[Load]) -> float:
    return statistics.median(load.p(0.5) for load in loads)


def median_cpu(loads: list[Load]) -> float:
    return statistics.median(load.cpu_us for load in loads)


# -- phones and the report ----------------------------------------------------------------------


def phones(start: int, count: int) -> Iterator[str]:
    """Distinct valid mainland mobile numbers: +86 139 and eight digits."""
    for n in range(start, start + count):
        yield f"+86139{n:08d}"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()}"


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = [title, line, "  ".join(h.ljust(w) for h, w in zip(header, widths)), line]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    out.append(line)
    return "\n".join(out)
