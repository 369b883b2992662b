"""Scenario "scale": send-code as the limits fill with 0, 10,000 and 100,000 distinct numbers.

For ``memory://`` (every worker holds the numbers itself) and for Redis (the benchmark's own
server). Each row is send-code's p50 with fresh numbers over the row at 0 numbers of the same
server, and the workers' resident memory growth since then. Goals: <= 1.1x, < 2 MiB.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from harness import Client, Gunicorn, Services, median_p50, phones, run_load, serving, table

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
    rows: list[list[str]] = []
    fresh: Iterator[str] = phones(0, 10_000_000)

    def send(client: Client) -> tuple[int, bytes]:
        return client.call("POST", "/alisms/api/send-code", {"phone": next(fresh)})

    for label, uri in (("memory://", "memory://"), ("Redis", services.redis_url)):
        if uri.startswith("redis"):
            services.flush_redis()
        env = {"BENCH_DATABASE_URL": services.database_url, "BENCH_LIMITER_URI": uri}
        with serving("alisms_app:create_app()", env) as server:
            token = "/alisms/api/csrf-token"  # noqa: S105 - a path
            run_load(server.port, send, seconds=1.0, token_path=token)  # warm-up
            base = rss0 = None
            for size in SIZES:
                if size:
                    _prefill(server, size)
                loads = [
                    run_load(server.port, send, seconds=seconds, token_path=token)
                    for _ in range(rounds)
                ]
                statuses = sum((load.statuses for load in loads), start=type(loads[0].statuses)())
                p50 = median_p50(loads)
                rss = server.rss_kib()
                base = base or p50
                rss0 = rss0 or rss
                growth = max(after - before for after, before in zip(rss, rss0)) / 1024
                rows.append([
                    label, f"{size:,}", f"{p50:.2f} ms", f"{p50 / base:.2f}x",
                    f"{growth:+.1f} MiB", " ".join(f"{s}:{n}" for s, n in sorted(statuses.items())),
                ])
    header = ["limits", "numbers held", "send-code p50", "vs 0", "RSS growth/worker", "statuses"]
    return rows, table("Scale: send-code as the limits fill (goal <= 1.1x, < 2 MiB)", header, rows)
