"""Scenario "floor": send-code against a route doing exactly its I/O and nothing else.

The floor route (``floor:create_app()``) is plain Flask + SQLAlchemy Core + redis-py, with no
code of ours on the request path: a CSRF check (Flask-WTF), a phone parse (phonenumbers), the
same Redis script call as the limits (it tests three guard keys, as send-code's tests the
budgets' epoch and the provider breaker, then takes the six windows of a send), then in one
transaction the same SELECT (is the number a user's), INSERT (the send-log row), upsert of the
day's totals and upsert of the code.
Both servers use the benchmark's own database and Redis. Goal: send-code <= 1.15x the floor.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
import time
import zoneinfo
from collections.abc import Iterator
from typing import Any

from harness import (
    Client,
    Services,
    alternate,
    median_cpu,
    median_p50,
    phones,
    run_load,
    serving,
    table,
)

GOAL = 1.15

_UPSERT = {
    "postgresql": (
        "INSERT INTO alisms_verification_code (phone, purpose, digest, created_at, expires_at, "
        "attempts_left) VALUES (:phone, :purpose, :digest, :now, :expires, :attempts) "
        "ON CONFLICT (phone, purpose) DO UPDATE SET digest = excluded.digest, "
        "created_at = excluded.created_at, expires_at = excluded.expires_at, "
        "attempts_left = excluded.attempts_left"
    ),
    "mysql": (
        "INSERT INTO alisms_verification_code (phone, purpose, digest, created_at, expires_at, "
        "attempts_left) VALUES (:phone, :purpose, :digest, :now, :expires, :attempts) "
        "ON DUPLICATE KEY UPDATE digest = VALUES(digest), created_at = VALUES(created_at), "
        "expires_at = VALUES(expires_at), attempts_left = VALUES(attempts_left)"
    ),
}


_COUNTERS = ("sent", "errors", "skipped", "local", "delivered", "failed", "billed")
_TOTALS_INSERT = (
    "INSERT INTO alisms_daily_total (day, purpose, sent, errors, skipped, local, delivered, "
    "failed, billed) VALUES (:day, :purpose, :sent, :errors, :skipped, :local, :delivered, "
    ":failed, :billed) "
)
#: The send-log row as send-code writes it, every value bound (the same statement and bytes).
_LOG_INSERT = (
    "INSERT INTO alisms_send_log (created_at, phone_masked, purpose, sender, ok, category, "
    "code, message, request_id, biz_id, http_status, duration_ms, phone_digest, "
    "client_digest, delivery, phone_tail, phone_sealed) VALUES (:created_at, :phone_masked, "
    ":purpose, :sender, :ok, :category, :code, :message, :request_id, :biz_id, :http_status, "
    ":duration_ms, :phone_digest, :client_digest, :delivery, :phone_tail, :phone_sealed)"
)
_TOTALS = {
    "postgresql": _TOTALS_INSERT
    + "ON CONFLICT (day, purpose) DO UPDATE SET "
    + ", ".join(f"{c} = alisms_daily_total.{c} + excluded.{c}" for c in _COUNTERS),
    "mysql": _TOTALS_INSERT
    + "ON DUPLICATE KEY UPDATE "
    + ", ".join(f"{c} = alisms_daily_total.{c} + VALUES({c})" for c in _COUNTERS),
}


#: Stands in for the two keyed digests (32 hex digits each) send-code stores: same bytes, no HMAC.
_DIGEST = "0" * 32


def create_app() -> Any:
    import phonenumbers
    import redis
    import sqlalchemy as sa
    from alisms_app import SECRET_KEY
    from flask import Flask, abort, jsonify, request
    from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf

    from flask_alisms.flows.throttle import _ACQUIRE_ALL  # the same script, as data

    app = Flask("floor")
    app.config["SECRET_KEY"] = SECRET_KEY
    engine = sa.create_engine(os.environ["BENCH_DATABASE_URL"])
    limits = redis.Redis.from_url(os.environ["BENCH_LIMITER_URI"])
    script = limits.register_script(_ACQUIRE_ALL)
    # send-code's script first tests the budgets' epoch and the provider breaker (three GETs
    # inside the script); the floor's script call tests keys of its own, its epoch set here.
    guards = ["LIMITS:floor-epoch", "LIMITS:{floor}/provider/open",
              "LIMITS:{floor}/provider/suspect"]
    limits.set(guards[0], 1)
    select = sa.text("SELECT id FROM bench_user WHERE phone = :phone")
    insert = sa.text(_LOG_INSERT)
    dialect = "mysql" if engine.dialect.name in ("mysql", "mariadb") else "postgresql"
    upsert = sa.text(_UPSERT[dialect])
    totals = sa.text(_TOTALS[dialect])  # the day's running totals (flows/totals.py)
    shanghai = zoneinfo.ZoneInfo("Asia/Shanghai")  # ALISMS_TIMEZONE's default

    @app.get("/floor/csrf-token")
    def token() -> Any:
        return jsonify(csrf_token=generate_csrf())

    @app.post("/floor/send-code")
    def send_code() -> Any:
        try:
            validate_csrf(request.headers.get("X-CSRFToken"))
        except CSRFError:
            abort(400)
        data = request.get_json(silent=True) or {}
        try:
            number = phonenumbers.parse(str(data.get("phone", "")), "CN")
        except phonenumbers.NumberParseException:
            abort(400)
        if not phonenumbers.is_valid_number(number):
            abort(400)
        phone = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        ip, now = request.remote_addr or "", time.time()
        keys = guards + [
            f"LIMITS:{{alisms}}/{name}/{subject}"
            for name, subject in (("ip-hour", ip), ("ip-day", ip), ("phone-interval", phone),
                                  ("phone-hour", phone), ("phone-day", phone),
                                  ("global-day", "site"))
        ]
        args = [repr(now), 3, 100000, 3600, 1000000, 86400, 1, 60, 5, 3600, 10, 86400,
                10000000, 86400]
        if script(keys=keys, args=args):
            return jsonify(error="rate_limited"), 429
        code = f"{secrets.randbelow(10**6):06d}"
        digest = hmac.new(SECRET_KEY.encode(), f"{phone}|register|{code}".encode(), hashlib.sha256)
        stamp = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        day = stamp.replace(tzinfo=dt.timezone.utc).astimezone(shanghai).date()
        with engine.begin() as connection:
            connection.execute(select, {"phone": phone}).first()
            connection.execute(insert, {
                "created_at": stamp, "phone_masked": phone[:-8] + "****" + phone[-4:],
                "purpose": "register", "sender": "noop", "ok": True, "category": "sent",
                "code": "OK", "message": "OK", "request_id": "noop", "biz_id": "noop",
                "http_status": 200, "duration_ms": 0.0, "phone_digest": _DIGEST,
                "client_digest": _DIGEST, "delivery": None, "phone_tail": phone[-4:],
                "phone_sealed": None,
            })
            connection.execute(totals, {"day": day, "purpose": "register", "sent": 1, "errors": 0,
                                        "skipped": 0, "local": 0, "delivered": 0, "failed": 0,
                                        "billed": 0})
            connection.execute(upsert, {
                "phone": phone, "purpose": "register", "digest": digest.hexdigest(),
                "now": stamp, "expires": stamp + dt.timedelta(minutes=5), "attempts": 5,
            })
        return jsonify(sent=True, resend_after=60)

    return app


def measure(services: Services, *, seconds: float, rounds: int) -> tuple[float, str]:
    env = {"BENCH_DATABASE_URL": services.database_url, "BENCH_LIMITER_URI": services.redis_url}
    fresh: Iterator[str] = phones(20_000_000, 10_000_000)
    routes = {
        "flask-alisms send-code": ("alisms_app:create_app()", "/alisms/api/send-code",
                                   "/alisms/api/csrf-token"),
        "floor (same I/O by hand)": ("floor:create_app()", "/floor/send-code",
                                     "/floor/csrf-token"),
    }
    with serving(routes["flask-alisms send-code"][0], env) as ours, \
            serving(routes["floor (same I/O by hand)"][0], env) as floor:
        ports = {"flask-alisms send-code": ours, "floor (same I/O by hand)": floor}

        def load_of(name: str) -> Any:
            _, path, token = routes[name]

            def send(client: Client) -> tuple[int, bytes]:
                return client.call("POST", path, {"phone": next(fresh)})

            return lambda: run_load(ports[name], send, seconds=seconds, token_path=token)

        for name in routes:  # warm-up
            run_load(ports[name], lambda c, n=name: c.call("POST", routes[n][1],
                     {"phone": next(fresh)}), seconds=1.0, token_path=routes[name][2])
        results = alternate({name: load_of(name) for name in routes}, rounds)
    floor_p50 = median_p50(results["floor (same I/O by hand)"])
    floor_cpu = median_cpu(results["floor (same I/O by hand)"])
    rows = []
    for name, loads in results.items():
        p50, cpu = median_p50(loads), median_cpu(loads)
        statuses = sum((load.statuses for load in loads), start=type(loads[0].statuses)())
        rows.append([name, f"{p50:.2f} ms", f"{p50 / floor_p50:.2f}x", f"{cpu:.0f} us",
                     f"{cpu / floor_cpu:.2f}x",
                     f"{sum(load.rps for load in loads) / len(loads):.0f}", dict(statuses)])
    ratio = median_p50(results["flask-alisms send-code"]) / floor_p50
    header = ["route", "p50", "vs floor", "worker CPU/req", "vs floor", "req/s", "statuses"]
    return ratio, table(f"Floor: send-code vs the same I/O by hand (goal <= {GOAL}x)", header, rows)
