"""The flask-alisms host the benchmarks serve (``alisms_app:create_app()``), with a no-op sender.

Environment: ``BENCH_DATABASE_URL`` (the benchmark's own database), ``BENCH_LIMITER_URI``
(``memory://`` or the benchmark's own Redis). ``POST /bench/prefill`` fills the serving
worker's limits with distinct numbers and IPs, as that many earlier sends would have;
``GET /bench/pid`` names the worker.
"""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa
from flask import Flask, jsonify, request
from flask_sqlalchemy import SQLAlchemy

from flask_alisms import AliSMS, SQLAlchemyUserAdapter
from flask_alisms.sms import Sender, SendResult

SECRET_KEY = "benchmark-secret-key-not-for-production"  # noqa: S105 - a benchmark app
#: Limits that fresh numbers never meet; every request comes from 127.0.0.1.
BENCH_PARAMS: dict[str, Any] = {
    "server.allow_user_register": True,
    "server.enable_mobile_register": True,
    "aliyun.sms.sign_name": "阿里云短信测试",
    "aliyun.sms.sms_code_template_code": "SMS_154950909",
    "aliyun.sms.access_key_id": "LTAI5tBenchKeyId0001",
    "aliyun.sms.access_key_secret": "BenchSecretValue0123456789abcdef",
    "limits.ip_per_hour": 100000,
    "limits.ip_per_day": 1000000,
    "limits.global_per_day": 10000000,
}

db = SQLAlchemy()


class User(db.Model):  # type: ignore[name-defined]
    __tablename__ = "bench_user"
    id = sa.Column(sa.Integer, primary_key=True)
    phone = sa.Column(sa.String(32), unique=True, nullable=False)
    password_hash = sa.Column(sa.String(256), nullable=False)


class NoopSender(Sender):
    """Accepts every message and keeps nothing, so worker memory shows the limits alone."""

    name = "noop"

    def send(self, message: Any, credentials: Any) -> SendResult:
        return SendResult(True, "OK", "OK", 200, "noop", "noop", 0.0, None)


def create_app() -> Flask:
    app = Flask("alisms_bench")
    app.config.update(
        SECRET_KEY=SECRET_KEY,
        SQLALCHEMY_DATABASE_URI=os.environ["BENCH_DATABASE_URL"],
        ALISMS_LIMITER_STORAGE_URI=os.environ.get("BENCH_LIMITER_URI", "memory://"),
        ALISMS_PARAMS=dict(BENCH_PARAMS),
        ALISMS_ADMIN_VIEWS=False,
        ALISMS_USER_VIEWS=False,
        ALISMS_LIMITS_MEMORY_MAX_KEYS=int(os.environ.get("BENCH_MEMORY_MAX_KEYS", "100000")),
    )
    db.init_app(app)
    AliSMS(app, db=db, user_adapter=SQLAlchemyUserAdapter(db, User), sender=NoopSender())
    filled = {"count": 0}

    @app.post("/bench/prefill")
    def prefill() -> Any:
        """Spend limits for this worker's next numbers up to ``target`` (10,000 at most a call).

        One IP per ten numbers. The numbers are the same in every worker: with Redis the second
        worker's calls are refused and add nothing, with ``memory://`` each worker holds them.
        """
        target = int(request.get_json()["target"])
        throttle = app.extensions["alisms"].throttle
        end = min(target, filled["count"] + 10_000)
        for n in range(filled["count"], end):
            throttle.hit_send(f"+86137{n:08d}", f"10.{n // 2560 % 256}.{n // 10 % 256}.1")
        filled["count"] = max(filled["count"], end)
        return jsonify(pid=os.getpid(), filled=filled["count"])

    @app.get("/bench/pid")
    def pid() -> Any:
        return jsonify(pid=os.getpid())

    return app


def setup_database(database_url: str) -> None:
    """The host's tables and the extension's, in the benchmark's own database."""
    os.environ["BENCH_DATABASE_URL"] = database_url
    app = create_app()
    with app.app_context():
        db.create_all()
