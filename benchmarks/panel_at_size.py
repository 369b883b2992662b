"""The admin panel with 1,000,000 send-log rows in PostgreSQL: how long each page takes.

    python benchmarks/panel_at_size.py                 # about 2 minutes
    python benchmarks/panel_at_size.py --rows 200000   # quicker

It creates a database of its own (``alisms_panel_bench_<pid>`` on 127.0.0.1:5432, user
``postgres``), fills it with ``generate_series`` in one statement per layout, and drops it at
the end (also on an error or Ctrl-C). Nothing else is touched: no other database, no Redis.

Two layouts of the same row count: spread over a year, and all in the last 7 days (the worst
case for the 7-day summary). For each, every panel page is requested through the Flask test
client as a signed-in admin: the first request (cold: the summary's 15-minute totals are
counted then), then the best, median and p90 of ``--repeat`` requests, and the median time
spent in SQL (to tell the database's share from rendering on a busy machine). For contrast it
times, on the same data, the two queries the log page ran on every request before 0.3: the
pagination ``count(*)`` and the 7-day per-outcome count. Goal: every page under 25 ms.

The monitoring page reads the daily totals, not the log: after each fill the script counts
them from the log with ``totals.rebuild`` (as ``flask alisms stats rebuild --all``), timed.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

ADMIN = "bench-admin"
PAGES = {
    "log": "/alisms/admin/log",
    "log page 2": None,  # the "Older" link of the first page
    "log, 1 year": "/alisms/admin/log?days=365",
    "log, rare outcome": "/alisms/admin/log?category=balance&days=365",
    "log, delivery failed": "/alisms/admin/log?delivery=failed",
    "log, no receipt": "/alisms/admin/log?delivery=no_receipt&days=30",
    "log, number ends 4321": "/alisms/admin/log?phone=4321&days=365",
    "log, purpose test": "/alisms/admin/log?purpose=test&days=365",
    "parameters": "/alisms/admin/",
    "test SMS": "/alisms/admin/test-sms",
    "monitoring, 30 days": "/alisms/admin/monitoring",
    "monitoring, 90 d, reset": "/alisms/admin/monitoring?days=90&purpose=reset",
}

FILL = """
INSERT INTO alisms_send_log (
    created_at, phone_masked, phone_tail, purpose, sender, ok, category, code, message,
    request_id, biz_id, http_status, duration_ms, delivery, receipt_code
)
SELECT
    now() AT TIME ZONE 'UTC' - (i::float8 * :span_seconds / :rows) * interval '1 second',
    '+86138****' || lpad((i % 10000)::text, 4, '0'),
    lpad((i % 10000)::text, 4, '0'),
    CASE WHEN i % 10000 = 7 THEN 'test' WHEN i % 4 = 0 THEN 'reset' ELSE 'register' END,
    'aliyun',
    i % 50 <> 0,
    CASE WHEN i % 50 <> 0 THEN 'sent' WHEN i % 1000 = 0 THEN 'balance' ELSE 'rate_limit' END,
    CASE WHEN i % 50 <> 0 THEN 'OK' ELSE 'isv.BUSINESS_LIMIT_CONTROL' END,
    NULL,
    md5(i::text),
    CASE WHEN i % 50 <> 0 THEN i::text || '^0' END,
    200,
    20 + (i % 30),
    CASE WHEN i % 50 = 0 THEN NULL WHEN i % 20 = 1 THEN 'failed'
         WHEN i % 97 = 3 THEN 'accepted' ELSE 'delivered' END,
    CASE WHEN i % 50 = 0 THEN NULL WHEN i % 20 = 1 THEN 'UNDELIV' ELSE 'DELIVERED' END
FROM generate_series(1, :rows) AS i
"""


def timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000.0


def build_app(url: str) -> Any:
    from flask import Flask, session
    from flask_sqlalchemy import SQLAlchemy

    from flask_alisms import AliSMS

    app = Flask("panel_bench")
    app.config.update(
        SECRET_KEY="panel-bench",  # noqa: S106 - a throwaway benchmark app
        SQLALCHEMY_DATABASE_URI=url,
        ALISMS_SENDER="memory",
    )
    db = SQLAlchemy(app)
    alisms = AliSMS(app, db=db)

    @alisms.admin_loader
    def admin() -> str | None:
        return ADMIN if session.get("admin") else None

    with app.app_context():
        db.create_all()
        alisms.params.update({"aliyun.sms.report_token": "b" * 32}, actor="bench")
    return app, db


def run_layout(url: str, rows: int, span_days: int, repeat: int) -> list[tuple[str, str]]:
    from flask_alisms.flows import totals

    app, db = build_app(url)
    logging.getLogger("flask_alisms").setLevel(logging.ERROR)  # the memory-sender warning
    out: list[tuple[str, str]] = []
    with app.app_context():
        started = time.perf_counter()
        with db.engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE alisms_send_log"))
            conn.execute(sa.text(FILL), {"rows": rows, "span_seconds": span_days * 86400})
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE alisms_send_log"))
        fill_s = time.perf_counter() - started
        started = time.perf_counter()
        read = totals.rebuild(app.extensions["alisms"])  # the daily totals monitoring reads
        rebuild_s = time.perf_counter() - started
        with db.engine.connect() as conn:
            old_count = min(
                timed(lambda: conn.execute(sa.text("SELECT count(*) FROM alisms_send_log WHERE "
                      "created_at >= now() AT TIME ZONE 'UTC' - interval '7 days'")).scalar())
                for _ in range(3)
            )  # fmt: skip
            old_summary = min(
                timed(lambda: conn.execute(sa.text("SELECT category, count(*) FROM "
                      "alisms_send_log WHERE created_at >= now() AT TIME ZONE 'UTC' - "
                      "interval '7 days' GROUP BY category")).all())
                for _ in range(3)
            )  # fmt: skip
    print(f"\n{rows:,} rows over {span_days} days (filled and analysed in {fill_s:.1f} s)")
    print(f"  flask alisms stats rebuild --all: {read:,} rows counted in {rebuild_s:.1f} s")
    print(f"  before 0.3, per log request: count(*) {old_count:.0f} ms, "
          f"7-day summary {old_summary:.0f} ms")  # fmt: skip
    client = app.test_client()
    with client.session_transaction() as sess:
        sess["admin"] = True
    started = time.perf_counter()
    first_page = client.get(PAGES["log"]).get_data(as_text=True)
    cold = (time.perf_counter() - started) * 1000.0
    print(f"  the very first log page (counts the summary's 15-minute totals): {cold:.0f} ms")
    marker = 'rel="next"'
    older = None
    if marker in first_page:
        href = first_page[: first_page.index(marker)].rsplit('href="', 1)[1]
        older = href.split('"', 1)[0].replace("&amp;", "&")
    sql: list[float] = []

    def before(conn: Any, *args: Any) -> None:
        conn.info["started"] = time.perf_counter()

    def after(conn: Any, *args: Any) -> None:
        sql.append((time.perf_counter() - conn.info["started"]) * 1000.0)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", before)
    sa.event.listen(engine, "after_cursor_execute", after)
    print(f"  {'page':<24} {'first':>7} {'best':>7} {'median':>7} {'p90':>7} "
          f"{'SQL med':>8} {'stmts':>5}  status")  # fmt: skip
    for name, path in PAGES.items():
        target = older if path is None else path
        if target is None:
            continue
        statuses: set[int] = set()

        def get(target: str = target, statuses: set[int] = statuses) -> None:
            statuses.add(client.get(target).status_code)

        cold = timed(get)
        times, sql_times, statements = [], [], 0
        for _ in range(repeat):
            sql.clear()
            times.append(timed(get))
            sql_times.append(sum(sql))
            statements = len(sql)
        times.sort()
        median = statistics.median(times)
        p90 = times[int(len(times) * 0.9) - 1]
        flag = "" if median < 25 else "  <- over 25 ms"
        print(
            f"  {name:<24} {cold:7.1f} {times[0]:7.1f} {median:7.1f} {p90:7.1f} "
            f"{statistics.median(sql_times):8.1f} {statements:5d}  {sorted(statuses)}{flag}"
        )
        out.append((name, f"{median:.1f}"))
    sa.event.remove(engine, "before_cursor_execute", before)
    sa.event.remove(engine, "after_cursor_execute", after)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--server", default="postgresql+psycopg2://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    name = f"alisms_panel_bench_{os.getpid()}"
    admin_engine = sa.create_engine(f"{args.server}/postgres", isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        url = f"{args.server}/{name}"
        print(f"PostgreSQL {name}, Python {sys.version.split()[0]}, "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
        for span in (365, 7):
            run_layout(url, args.rows, span, args.repeat)
    finally:
        with admin_engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
