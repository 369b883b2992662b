"""Scenario "where": where send-code's CPU time goes, next to the floor route's, in process.

Both apps serve N requests through Flask's test client (no network, one thread) under
cProfile; every function's own time is summed by the package its file belongs to. The I/O
waits (database, Redis) show up as the drivers' time.
"""

from __future__ import annotations

import cProfile
import os
import pstats
from collections import Counter
from typing import Any

from harness import Services, phones, table

REQUESTS = 500


def _package(filename: str) -> str:
    if "flask_alisms" in filename:
        return "flask_alisms"
    for name in ("sqlalchemy", "psycopg2", "pymysql", "redis", "werkzeug", "flask_wtf",
                 "wtforms", "phonenumbers", "flask_sqlalchemy", "flask", "blinker", "limits",
                 "itsdangerous", "json", "hmac", "logging", "threading", "socket"):
        if f"/{name}/" in filename or filename.endswith(f"/{name}.py"):
            return name
    return "builtins / other" if filename.startswith(("~", "<")) else "other Python"


def _profile(app: Any, path: str, token_path: str, start: int) -> tuple[Counter[str], float]:
    client = app.test_client()
    token = client.get(token_path).get_json()["csrf_token"]
    numbers = phones(start, REQUESTS + 20)
    for _ in range(20):  # warm
        client.post(path, json={"phone": next(numbers)}, headers={"X-CSRFToken": token})
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(REQUESTS):
        answer = client.post(path, json={"phone": next(numbers)}, headers={"X-CSRFToken": token})
        assert answer.status_code == 200, answer.get_data()[:200]
    profiler.disable()
    stats = pstats.Stats(profiler)
    by_package: Counter[str] = Counter()
    for (filename, _line, _name), (_cc, _nc, own, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        by_package[_package(filename)] += own
    return by_package, sum(by_package.values())


def measure(services: Services, **_: Any) -> tuple[dict[str, float], str]:
    import alisms_app
    import floor

    os.environ["BENCH_DATABASE_URL"] = services.database_url
    os.environ["BENCH_LIMITER_URI"] = services.redis_url
    ours, ours_total = _profile(alisms_app.create_app(), "/alisms/api/send-code",
                                "/alisms/api/csrf-token", 80_000_000)
    base, base_total = _profile(floor.create_app(), "/floor/send-code", "/floor/csrf-token",
                                81_000_000)
    rows = []
    for name in sorted(set(ours) | set(base), key=lambda n: -(ours[n] - base[n])):
        a, b = ours[name] / REQUESTS * 1000, base[name] / REQUESTS * 1000
        if max(a, b) >= 0.01:
            rows.append([name, f"{a:.3f}", f"{b:.3f}", f"{a - b:+.3f}"])
    rows.append(["total", f"{ours_total / REQUESTS * 1000:.3f}",
                 f"{base_total / REQUESTS * 1000:.3f}",
                 f"{(ours_total - base_total) / REQUESTS * 1000:+.3f}"])
    header = ["package (own time)", "send-code ms/req", "floor ms/req", "difference"]
    title = f"Where the time goes: cProfile, {REQUESTS} requests in process (profiler inflates)"
    return {"ours": ours_total, "floor": base_total}, table(title, header, rows)
