"""The app the benchmarks serve: a small host of flask-alisms plus a bare route to compare with.

Gunicorn builds it with ``bench_app:create_app()`` (``--pythonpath benchmarks``); the
configuration comes from ``BENCH_*`` environment variables so that ``run.py`` can start the
same app with the memory sender, or the Aliyun sender against the Dysmsapi emulator, and with
in-memory or Redis limits:

- ``BENCH_DATABASE_URL``: SQLAlchemy URL (required);
- ``BENCH_SENDER``: ``memory`` (default) or ``aliyun``; ``BENCH_ENDPOINT``: the emulator;
- ``BENCH_LIMITER_URI``: ``memory://`` (default) or ``redis://...``;
- ``BENCH_CODE_STORAGE``: ``database`` (default) or ``redis://...``.

Every worker counts, per route, the requests it served, the SQL statements they ran (through
SQLAlchemy's ``before_cursor_execute`` event), how many of those touched ``alisms_parameter``,
the Redis round trips (commands or pipelines sent by redis-py) and the CPU time of the thread
between ``before_request`` and ``teardown_request``. ``GET /bench/stats`` shows the serving
worker's counters and its resident memory.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from typing import Any

import sqlalchemy as sa
from flask import Flask, jsonify, request, session
from flask_sqlalchemy import SQLAlchemy

from flask_alisms import AliSMS, SQLAlchemyUserAdapter

SIGN = "阿里云短信测试"
TEMPLATE = "SMS_154950909"
KEY_ID = "LTAI5tBenchKeyId0001"
KEY_SECRET = "BenchSecretValue0123456789abcdef"  # noqa: S105 - the emulator's test key
SECRET_KEY = "benchmark-secret-key-not-for-production"  # noqa: S105 - a benchmark app
REGISTER_CODE = "246810"
REGISTER_PASSWORD = "bench-pass-2024"  # noqa: S105 - a throwaway benchmark password

#: Limits high enough that the benchmark never meets them (the phones are all distinct, but
#: every request comes from 127.0.0.1 and all of them count against the daily budget).
BENCH_LIMITS: dict[str, Any] = {
    "server.allow_user_register": True,
    "server.enable_mobile_register": True,
    "limits.ip_per_hour": 100000,
    "limits.global_per_day": 10000000,
    "limits.phone_per_hour": 100,
    "limits.phone_per_day": 1000,
    "limits.verify_per_hour": 1000,
}


# -- counters -------------------------------------------------------------------------------------


class Counters:
    """Per-process totals by route; a thread-local tally holds the request in progress."""

    FIELDS = ("requests", "queries", "param_queries", "redis", "cpu_us")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self.routes: dict[str, dict[str, int]] = {}

    @property
    def current(self) -> dict[str, int] | None:
        return getattr(self._local, "tally", None)

    def begin(self) -> None:
        self._local.tally = dict.fromkeys(self.FIELDS, 0)
        self._local.cpu_start = time.thread_time_ns()

    def add(self, field: str, amount: int = 1) -> None:
        tally = self.current
        if tally is not None:
            tally[field] += amount

    def end(self, route: str) -> None:
        tally = self.current
        self._local.tally = None
        if tally is None:
            return
        tally["requests"] = 1
        tally["cpu_us"] = (time.thread_time_ns() - self._local.cpu_start) // 1000
        with self._lock:
            totals = self.routes.setdefault(route, dict.fromkeys(self.FIELDS, 0))
            for key, value in tally.items():
                totals[key] += value

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {route: dict(values) for route, values in self.routes.items()}


COUNTERS = Counters()
_redis_patched = False


def count_redis_round_trips() -> None:
    """Count each command or pipeline redis-py sends: one network round trip each."""
    global _redis_patched
    if _redis_patched:
        return
    try:
        from redis.connection import AbstractConnection
    except ImportError:  # redis-py not installed: nothing to count
        return
    original = AbstractConnection.send_packed_command

    def send_packed_command(self: Any, command: Any, check_health: bool = True) -> Any:
        COUNTERS.add("redis")
        return original(self, command, check_health)

    AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]
    _redis_patched = True


def rss_kb(pid: int | str = "self") -> int:
    """VmRSS of a process in kB, from /proc."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# -- the app --------------------------------------------------------------------------------------

db = SQLAlchemy()


class User(db.Model):  # type: ignore[name-defined]
    __tablename__ = "bench_user"
    id = sa.Column(sa.Integer, primary_key=True)
    phone = sa.Column(sa.String(32), unique=True, nullable=False)
    password_hash = sa.Column(sa.String(256), nullable=False)


class Event(db.Model):  # type: ignore[name-defined]
    """What the bare route inserts: one row, about the size of a send-log row."""

    __tablename__ = "bench_event"
    id = sa.Column(sa.Integer, primary_key=True)
    phone = sa.Column(sa.String(32), nullable=False)
    purpose = sa.Column(sa.String(20), nullable=False)
    created_at = sa.Column(sa.DateTime, nullable=False)


def _login(user: Any) -> None:
    session["user_id"] = user.id


alisms = AliSMS(db=db, user_adapter=SQLAlchemyUserAdapter(db, User, login=_login))


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    env = os.environ
    app = Flask("bench_app")
    app.config.update(
        SECRET_KEY=SECRET_KEY,
        SQLALCHEMY_DATABASE_URI=env.get("BENCH_DATABASE_URL", "sqlite:///bench.db"),
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": False},
        ALISMS_SENDER=env.get("BENCH_SENDER", "memory"),
        ALISMS_ENDPOINT=env.get("BENCH_ENDPOINT") or None,
        ALISMS_LIMITER_STORAGE_URI=env.get("BENCH_LIMITER_URI", "memory://"),
        ALISMS_CODE_STORAGE=env.get("BENCH_CODE_STORAGE", "database"),
        ALISMS_PARAM_DEFAULTS=dict(BENCH_LIMITS),
        ALISMS_ADMIN_VIEWS=False,
    )
    app.config.update(overrides or {})
    db.init_app(app)
    alisms.init_app(app)
    count_redis_round_trips()

    with app.app_context():

        @sa.event.listens_for(db.engine, "before_cursor_execute")
        def _count_query(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            COUNTERS.add("queries")
            if "alisms_parameter" in statement and "alisms_parameter_change" not in statement:
                COUNTERS.add("param_queries")

    @app.before_request
    def _begin() -> None:
        if request.endpoint != "bench_stats":
            COUNTERS.begin()

    @app.teardown_request
    def _end(exc: BaseException | None) -> None:
        if request.endpoint != "bench_stats":
            COUNTERS.end(request.endpoint or "unknown")

    @app.post("/bench/bare")
    def bench_bare() -> Any:
        data = request.get_json(silent=True) or {}
        db.session.add(
            Event(
                phone=str(data.get("phone", ""))[:32],
                purpose=str(data.get("purpose", "register"))[:20],
                created_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
            )
        )
        db.session.commit()
        return jsonify({"ok": True})

    @app.get("/bench/stats")
    def bench_stats() -> Any:
        return jsonify({"pid": os.getpid(), "rss_kb": rss_kb(), "routes": COUNTERS.snapshot()})

    return app


def setup_database(app: Flask) -> None:
    """Fresh tables and the Aliyun parameters saved as an admin would (secret encrypted)."""
    with app.app_context():
        db.drop_all()
        db.create_all()
        alisms.params.update(
            {
                "aliyun.sms.sign_name": SIGN,
                "aliyun.sms.sms_code_template_code": TEMPLATE,
                "aliyun.sms.access_key_id": KEY_ID,
                "aliyun.sms.access_key_secret": KEY_SECRET,
            },
            actor="benchmark",
        )


def seed_codes(app: Flask, phones: list[str]) -> None:
    """Store a known live register code for each phone, so register can be measured alone."""
    with app.app_context():
        state = app.extensions["alisms"]
        model = state.models.VerificationCode
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        rows = [
            {
                "phone": phone,
                "purpose": "register",
                "digest": state.keyring.code_digest(phone, "register", REGISTER_CODE),
                "created_at": now,
                "expires_at": now + dt.timedelta(hours=1),
                "attempts_left": 5,
            }
            for phone in phones
        ]
        for start in range(0, len(rows), 1000):
            db.session.execute(sa.insert(model), rows[start : start + 1000])
        db.session.commit()
