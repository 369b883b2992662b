"""Scenario "scale": send-code as the limits fill with 0, 10,000 and 100,000 distinct numbers.

For ``memory://`` (every worker holds the numbers itself) and for Redis (the benchmark's own
server). Each row is send-code's p50 with fresh numbers over the row at 0 numbers of the same
server, and the workers' resident memory growth since then. Goals: <= 1.1x, < 2 MiB.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

from harness import (
    Client,
    Gunicorn,
    Services,
    alternate,
    median_cpu,
    median_p50,
    phones,
    run_load,
    serving,
    table,
)

SIZES = (0, 10_000, 100_000)


def _prefill(server: Gunicorn, target: int) -> None:
    """Call /bench/prefill until every worker holds ``target`` numbers."""
    done: dict[int, int] = {}
    workers = set(server.worker_pids())
    client = Client(server.port)
    while not workers <= {pid for pid, count in done.items() if count >= target}:
        status, body = client.call("POST", "/bench/prefill", {"target": target})
        assert status == 200, body[:300]
        answer = json.loads(body)
        done[answer["pid"]] = answer["filled"]


def measure(services: Services, *, seconds: float, rounds: int) -> tuple[list[list[str]], Any]:
    """One server per size, run side by side and measured in alternation (the machine drifts)."""
    rows: list[list[str]] = []
    fresh: Iterator[str] = phones(0, 10_000_000)
    token = "/alisms/api/csrf-token"  # noqa: S105 - a path

    def send(client: Client) -> tuple[int, bytes]:
        return client.call("POST", "/alisms/api/send-code", {"phone": next(fresh)})

    for label in ("memory://", "Redis"):
        services.flush_redis()
        with ExitStack() as stack:
            servers: dict[int, Gunicorn] = {}
            before: dict[int, list[int]] = {}
            for db_index, size in enumerate(SIZES):
                redis_db = f"{services.redis_url.rsplit('/', 1)[0]}/{db_index}"
                uri = "memory://" if label == "memory://" else redis_db
                env = {"BENCH_DATABASE_URL": services.database_url, "BENCH_LIMITER_URI": uri,
                       "BENCH_MEMORY_MAX_KEYS": str(2 * max(SIZES))}
                server = stack.enter_context(serving("alisms_app:create_app()", env))
                servers[size] = server
                run_load(server, send, seconds=3.0, token_path=token)  # warm-up
                before[size] = server.rss_kib()
                if size:
                    _prefill(server, size)

            def load_of(server: Gunicorn) -> Any:
                return lambda: run_load(server, send, seconds=seconds, token_path=token)

            results = alternate({size: load_of(server) for size, server in servers.items()}, rounds)
            base, base_cpu = median_p50(results[0]), median_cpu(results[0])
            for size, loads in results.items():
                p50, cpu = median_p50(loads), median_cpu(loads)
                rss = servers[size].rss_kib()
                growth = max(a - b for a, b in zip(rss, before[size])) / 1024
                statuses = sum((load.statuses for load in loads), start=Counter())
                rows.append([
                    label, f"{size:,}", f"{p50:.2f} ms", f"{p50 / base:.2f}x",
                    f"{cpu:.0f} us", f"{cpu / base_cpu:.2f}x",
                    f"{growth:+.1f} MiB", " ".join(f"{k}:{n}" for k, n in sorted(statuses.items())),
                ])
    header = ["limits", "numbers held", "send-code p50", "vs 0", "worker CPU/req", "vs 0",
              "RSS growth/worker", "statuses"]
    return rows, table("Scale: send-code as the limits fill (goal <= 1.1x, < 2 MiB)", header, rows)
