"""Scenario "peers": send-code against what a Flask user would pick instead.

- Flask-Security-Too's unified sign-in "send code by SMS" (``POST /us-signin/send-code``, JSON)
  with its no-op ``Dummy`` SMS sender, for users who set up SMS sign-in, on the same database;
- a hand-written route with Flask-Limiter decorators for the same rules (per number: 1 a
  minute, 5 an hour, 10 a day; per IP; a global daily budget; moving windows, on the same
  Redis), a CSRF check, a phone parse and one insert.

Goal: flask-alisms faster than both (lower p50).
"""

from __future__ import annotations

import datetime as dt
import json
import os
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

USERS = 20_000
FST_PHONES_START = 40_000_000


def create_fst_app() -> Any:
    from alisms_app import SECRET_KEY
    from flask import Flask, jsonify
    from flask_security import Security, SQLAlchemyUserDatastore, uia_phone_mapper
    from flask_security.models import fsqla_v3 as fsqla
    from flask_sqlalchemy import SQLAlchemy
    from flask_wtf.csrf import generate_csrf

    app = Flask("fst")
    app.config.update(
        SECRET_KEY=SECRET_KEY,
        SQLALCHEMY_DATABASE_URI=os.environ["BENCH_DATABASE_URL"],
        SECURITY_PASSWORD_SALT="bench-salt",  # noqa: S106 - a benchmark app
        SECURITY_UNIFIED_SIGNIN=True,
        SECURITY_US_ENABLED_METHODS=["sms"],
        SECURITY_SMS_SERVICE="Dummy",
        SECURITY_TOTP_SECRETS={"1": "bench-totp-secret-not-for-production-0123456789"},
        SECURITY_TOTP_ISSUER="bench",
        SECURITY_PHONE_REGION_DEFAULT="CN",
        SECURITY_USER_IDENTITY_ATTRIBUTES=[{"us_phone_number": {"mapper": uia_phone_mapper}}],
    )
    db = SQLAlchemy(app)
    fsqla.FsModels.set_db_info(db)

    class Role(db.Model, fsqla.FsRoleMixin):  # type: ignore[name-defined, misc]
        pass

    class User(db.Model, fsqla.FsUserMixin):  # type: ignore[name-defined, misc]
        pass

    app.extensions["bench_models"] = (db, User)
    Security(app, SQLAlchemyUserDatastore(db, User, Role))

    @app.get("/bench/csrf-token")
    def token() -> Any:
        return jsonify(csrf_token=generate_csrf())

    return app


def setup_fst(database_url: str) -> None:
    """Flask-Security's tables and USERS users with SMS sign-in set up (one shared secret)."""
    import sqlalchemy as sa

    os.environ["BENCH_DATABASE_URL"] = database_url
    app = create_fst_app()
    db, user = app.extensions["bench_models"]
    with app.app_context():
        db.create_all()
        secret = app.extensions["security"].totp_factory.generate_totp_secret()
        rows = [
            {"email": f"u{n}@bench.invalid", "active": True, "fs_uniquifier": f"u{n}",
             "us_phone_number": phone, "us_totp_secrets": json.dumps({"sms": secret}),
             "confirmed_at": dt.datetime(2026, 1, 1)}
            for n, phone in enumerate(phones(FST_PHONES_START, USERS))
        ]
        db.session.execute(sa.insert(user), rows)
        db.session.commit()


def create_limiter_app() -> Any:
    import phonenumbers
    import sqlalchemy as sa
    from alisms_app import SECRET_KEY
    from flask import Flask, abort, jsonify, request
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address
    from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf

    app = Flask("limiter_route")
    app.config.update(SECRET_KEY=SECRET_KEY, RATELIMIT_STRATEGY="moving-window")
    limiter = Limiter(get_remote_address, app=app, storage_uri=os.environ["BENCH_LIMITER_URI"])
    engine = sa.create_engine(os.environ["BENCH_DATABASE_URL"])
    insert = sa.text(
        "INSERT INTO alisms_send_log (created_at, phone_masked, purpose, sender, ok, category, "
        "code, message, request_id, biz_id, http_status, duration_ms) VALUES (:now, :masked, "
        "'register', 'noop', true, 'ok', 'OK', 'OK', 'noop', 'noop', 200, 0)"
    )

    def phone_key() -> str:
        return str((request.get_json(silent=True) or {}).get("phone", ""))

    @app.get("/fl/csrf-token")
    @limiter.exempt
    def token() -> Any:
        return jsonify(csrf_token=generate_csrf())

    @app.post("/fl/send-code")
    @limiter.limit("1/minute;5/hour;10/day", key_func=phone_key)
    @limiter.limit("100000/hour;1000000/day")
    @limiter.shared_limit("10000000/day", scope="global", key_func=lambda: "site")
    def send_code() -> Any:
        try:
            validate_csrf(request.headers.get("X-CSRFToken"))
        except CSRFError:
            abort(400)
        try:
            number = phonenumbers.parse(phone_key(), "CN")
        except phonenumbers.NumberParseException:
            abort(400)
        if not phonenumbers.is_valid_number(number):
            abort(400)
        phone = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        stamp = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        with engine.begin() as connection:
            connection.execute(insert, {"now": stamp, "masked": phone[:5] + "****" + phone[-4:]})
        return jsonify(sent=True)

    return app


def measure(services: Services, *, seconds: float, rounds: int) -> tuple[dict[str, float], str]:
    setup_fst(services.database_url)
    env = {"BENCH_DATABASE_URL": services.database_url, "BENCH_LIMITER_URI": services.redis_url}
    fresh: Iterator[str] = phones(60_000_000, 10_000_000)
    registered = iter([*phones(FST_PHONES_START, USERS)] * 1000)  # FST has no limits to meet
    routes = {
        "flask-alisms send-code": ("alisms_app:create_app()", "/alisms/api/send-code",
                                   "/alisms/api/csrf-token", "phone", fresh),
        "Flask-Security-Too us-signin send-code": (
            "peers:create_fst_app()", "/us-signin/send-code", "/bench/csrf-token", "identity",
            registered),
        "Flask-Limiter route + insert": ("peers:create_limiter_app()", "/fl/send-code",
                                         "/fl/csrf-token", "phone", fresh),
    }
    servers = {name: serving(spec[0], env) for name, spec in routes.items()}
    started = {name: context.__enter__() for name, context in servers.items()}
    try:
        def load_of(name: str, duration: float) -> Any:
            _, path, token, field, numbers = routes[name]
            fst = field == "identity"  # its form reads the CSRF token from the JSON body

            def send(client: Client) -> tuple[int, bytes]:
                extra = {"chosen_method": "sms", "csrf_token": client.token} if fst else {}
                return client.call("POST", path, {field: next(numbers), **extra})

            return lambda: run_load(started[name], send, seconds=duration, token_path=token)

        for name in routes:
            load_of(name, 1.0)()  # warm-up
        results = alternate({name: load_of(name, seconds) for name in routes}, rounds)
    finally:
        for context in servers.values():
            context.__exit__(None, None, None)
    ours = median_p50(results["flask-alisms send-code"])
    ours_cpu = median_cpu(results["flask-alisms send-code"])
    rows, ratios = [], {}
    for name, loads in results.items():
        p50, cpu = median_p50(loads), median_cpu(loads)
        ratios[name] = ours / p50
        statuses = sum((load.statuses for load in loads), start=type(loads[0].statuses)())
        rows.append([name, f"{p50:.2f} ms", f"{ours / p50:.2f}x", f"{cpu:.0f} us",
                     f"{ours_cpu / cpu:.2f}x",
                     f"{sum(load.rps for load in loads) / len(loads):.0f}", dict(statuses)])
    header = ["route", "p50", "flask-alisms / this", "worker CPU/req", "flask-alisms / this",
              "req/s", "statuses"]
    return ratios, table("Peers: send-code vs what a Flask user would pick (goal < 1.00x)",
                         header, rows)
