"""Simultaneous sends from several processes never get past the limits.

Four server processes share one listening socket (as gunicorn's workers do), one PostgreSQL
database and one Redis limiter storage. 200 send-code requests are fired at the same instant
from one IP: for one phone, exactly one SMS reaches the Dysmsapi emulator (the resend
interval); over 200 phones with the per-IP limit at 7, exactly 7 do. Everything else is 429.
Both code stores are exercised: the database and Redis.

Needs PostgreSQL and Redis on 127.0.0.1 (skips cleanly without them). The tables live in a
schema of their own in the ``test`` database, so the rest of the suite is not disturbed.

This module is also the server: ``python -m tests.test_concurrency`` serves the app on an
inherited socket, configured by the ``ALISMS_CONCURRENCY_SERVER`` environment variable.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flask_alisms.testing import DysmsapiEmulator

POSTGRES_URL = os.environ.get(
    "ALISMS_CONCURRENCY_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("ALISMS_CONCURRENCY_REDIS_URL", "redis://127.0.0.1:6379/13")
PROCESSES = 4
REQUESTS = 200
SIGN = "阿里云短信测试"
TEMPLATE = "SMS_154950909"
KEY_ID = "LTAI5tConcurrency001"
KEY_SECRET = "ConcurrencySecret0123456789abcdef"
PHONE = "+8613800138000"
ROOT = Path(__file__).resolve().parent.parent
SERVER_ENV = "ALISMS_CONCURRENCY_SERVER"

pytestmark = pytest.mark.services


# -- the app, built the same way in the test and in each server process ----------------------------


def build_app(config: dict[str, Any]) -> tuple[Any, Any]:
    """The host app for ``config`` (database, code storage, endpoint, per-IP limit)."""
    from flask import Flask, session
    from flask_sqlalchemy import SQLAlchemy

    from flask_alisms import AliSMS, SQLAlchemyUserAdapter

    app = Flask("concurrency_host")
    app.config.update(
        SECRET_KEY="concurrency-test-secret-key",
        SQLALCHEMY_DATABASE_URI=config["database_url"],
        ALISMS_SENDER="aliyun",
        ALISMS_ENDPOINT=config["endpoint"],
        ALISMS_READ_TIMEOUT=10.0,
        ALISMS_LIMITER_STORAGE_URI=REDIS_URL,
        ALISMS_CODE_STORAGE=config["code_storage"],
        ALISMS_ADMIN_VIEWS=False,
        ALISMS_USER_VIEWS=False,
        ALISMS_PARAMS={
            "aliyun.sms.sign_name": SIGN,
            "aliyun.sms.sms_code_template_code": TEMPLATE,
            "aliyun.sms.access_key_id": KEY_ID,
            "aliyun.sms.access_key_secret": KEY_SECRET,
            "server.allow_user_register": True,
            "server.enable_mobile_register": True,
            "limits.ip_per_hour": config["ip_per_hour"],
        },
    )
    db = SQLAlchemy()
    db.init_app(app)

    class User(db.Model):  # type: ignore[name-defined]
        __tablename__ = "concurrency_user"
        id = sa.Column(sa.Integer, primary_key=True)
        phone = sa.Column(sa.String(32), unique=True, nullable=False)
        password_hash = sa.Column(sa.String(256), nullable=False)

    def login(user: Any) -> None:
        session["user_id"] = user.id

    AliSMS(app, db=db, user_adapter=SQLAlchemyUserAdapter(db, User, login=login))

    @app.after_request
    def tag_process(response: Any) -> Any:
        response.headers["X-Server-Pid"] = str(os.getpid())
        return response

    return app, db


def serve() -> None:
    """Entry point of a server process: serve the app on the inherited listening socket."""
    import logging

    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    config = json.loads(os.environ[SERVER_ENV])
    app, _ = build_app(config)
    server = make_server("127.0.0.1", config["port"], app, threaded=True, fd=config["fd"])
    print("ready", flush=True)
    server.serve_forever()


# -- services -------------------------------------------------------------------------------------


def _redis_client() -> Any:
    from flask_alisms.flows.codes import redis_client

    return redis_client(REDIS_URL)  # also a cluster or a Sentinel service (.ci/run)


@pytest.fixture
def services() -> Iterator[str]:
    """A fresh schema in the PostgreSQL test database and a flushed Redis; the schema's URL."""
    try:
        client = _redis_client()
        client.ping()
        client.flushdb()
    except Exception as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    schema = f"alisms_concurrency_{uuid.uuid4().hex[:8]}"
    try:
        engine = sa.create_engine(POSTGRES_URL)
        with engine.begin() as connection:
            connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:
        client.close()
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}")
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()
        client.flushdb()
        client.close()


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[DysmsapiEmulator]:
    """The Dysmsapi emulator without Aliyun's flow control, so only our limits count."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    with DysmsapiEmulator(
        access_keys={KEY_ID: KEY_SECRET},
        sign_names=(SIGN,),
        templates={TEMPLATE: ("code",)},
        flow_control=False,
    ) as server:
        yield server


class Cluster:
    """PROCESSES server processes accepting on one listening socket, like gunicorn workers."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(REQUESTS + 56)
        self.listener.set_inheritable(True)
        self.port = int(self.listener.getsockname()[1])
        self.config = {**config, "fd": self.listener.fileno(), "port": self.port}
        self.processes: list[subprocess.Popen[str]] = []
        # A file, not a pipe: a full pipe would block the servers' logging (and them).
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by stop()

    def start(self) -> None:
        env = {
            key: value
            for key, value in os.environ.items()
            if key.lower() not in ("http_proxy", "https_proxy")
        }
        env[SERVER_ENV] = json.dumps(self.config)
        for _ in range(PROCESSES):
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tests.test_concurrency"],
                    cwd=ROOT,
                    env=env,
                    pass_fds=(self.listener.fileno(),),
                    stdout=subprocess.PIPE,
                    stderr=self.stderr,
                    text=True,
                )
            )
        for process in self.processes:
            line = _readline(process, timeout=60)
            if line.strip() != "ready":
                errors = self.stop()
                raise RuntimeError(f"a server process did not start: {line!r}\n{errors}")

    def stop(self) -> str:
        """Stop every process; returns what they wrote on stderr (for a failure's report)."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate(timeout=10)
        self.listener.close()
        self.stderr.seek(0)
        errors = self.stderr.read()
        self.stderr.close()
        return errors


def _readline(process: subprocess.Popen[str], *, timeout: float) -> str:
    """The process's first output line, or '' if it says nothing within ``timeout``."""
    lines: list[str] = []
    assert process.stdout is not None
    stdout = process.stdout
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else ""


@contextlib.contextmanager
def cluster(database_url: str, code_storage: str, endpoint: str, ip_per_hour: int) -> Iterator[Any]:
    """Tables created, servers up; yields (port, app, db) for the checks afterwards."""
    config = {
        "database_url": database_url,
        "code_storage": code_storage,
        "endpoint": endpoint,
        "ip_per_hour": ip_per_hour,
    }
    app, db = build_app(config)
    with app.app_context():
        db.create_all()
    servers = Cluster(config)
    failed = True
    try:
        servers.start()
        yield servers.port, app, db
        failed = False
    finally:
        errors = servers.stop()
        if failed and errors:
            print(f"server processes' stderr:\n{errors[-20000:]}")
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


# -- the clients ----------------------------------------------------------------------------------


def _csrf(port: int) -> tuple[str, str]:
    """A session cookie and its CSRF token (valid in every process: one SECRET_KEY)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/alisms/api/csrf-token")
        response = conn.getresponse()
        body = json.loads(response.read())
        cookie = (response.getheader("Set-Cookie") or "").split(";", 1)[0]
    finally:
        conn.close()
    return cookie, body["csrf_token"]


def fire(port: int, phones: list[str]) -> list[tuple[int, dict[str, Any], str, str | None]]:
    """POST send-code for each phone at the same instant, one connection each.

    Every connection is opened (and accepted by some server process) first; a barrier then
    releases all requests together. Returns (status, body, server pid, Retry-After) each.
    """
    cookie, token = _csrf(port)
    barrier = threading.Barrier(len(phones))
    results: list[Any] = [None] * len(phones)

    def one(index: int, phone: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.connect()
            body = json.dumps({"phone": phone, "purpose": "register"})
            headers = {
                "Content-Type": "application/json",
                "Cookie": cookie,
                "X-CSRFToken": token,
            }
            barrier.wait(timeout=60)
            conn.request("POST", "/alisms/api/send-code", body=body, headers=headers)
            response = conn.getresponse()
            results[index] = (
                response.status,
                json.loads(response.read()),
                response.getheader("X-Server-Pid", ""),
                response.getheader("Retry-After"),
            )
        except Exception as exc:
            results[index] = (0, {"error": repr(exc)}, "", None)
        finally:
            conn.close()

    threads = [
        threading.Thread(target=one, args=(index, phone), daemon=True)
        for index, phone in enumerate(phones)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 90
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert all(result is not None for result in results), "some requests never finished"
    return results


def _check_answers(results: list[Any], allowed: int) -> None:
    statuses = Counter(status for status, *_ in results)
    errors = Counter(body.get("error") for status, body, *_ in results if status != 200)
    assert statuses == {200: allowed, 429: REQUESTS - allowed}, (statuses, errors)
    for status, body, _, retry_after in results:
        if status == 429:
            assert body["error"] == "rate_limited"
            assert retry_after is not None and int(retry_after) >= 1
    pids = {pid for *_, pid, _ in results}
    assert len(pids) >= 2, f"all requests went to one process: {pids}"


def _sent_log(app: Any, db: Any) -> list[Any]:
    with app.app_context():
        log = app.extensions["alisms"].models.SendLog
        return list(db.session.execute(sa.select(log.ok, log.phone_masked)).all())


def _total_sent(app: Any, db: Any) -> int:
    """What the daily totals counted: the concurrent upserts of one row lose nothing."""
    with app.app_context():
        totals = app.extensions["alisms"].models.DailyTotal
        return int(db.session.scalar(sa.select(sa.func.sum(totals.sent))) or 0)


CODE_STORES = [
    pytest.param("database", id="database-codes"),
    pytest.param(REDIS_URL, id="redis-codes"),
]


@pytest.mark.parametrize("code_storage", CODE_STORES)
def test_one_phone_gets_one_sms(
    services: str, emulator: DysmsapiEmulator, code_storage: str
) -> None:
    """200 simultaneous requests for one phone: the 60 s resend interval lets one through."""
    with cluster(services, code_storage, emulator.endpoint, ip_per_hour=20) as (port, app, db):
        results = fire(port, [PHONE] * REQUESTS)
        _check_answers(results, allowed=1)
        assert len(emulator.messages) == 1
        assert emulator.messages[0].numbers == ("13800138000",)
        assert [row.ok for row in _sent_log(app, db)] == [True]
        assert _total_sent(app, db) == 1
        if code_storage == "database":
            with app.app_context():
                codes = app.extensions["alisms"].models.VerificationCode
                assert db.session.scalar(sa.select(sa.func.count()).select_from(codes)) == 1
        else:
            assert _redis_client().exists(f"alisms:code:{{{PHONE}}}:register") == 1


@pytest.mark.parametrize("code_storage", CODE_STORES)
def test_one_ip_gets_its_limit(
    services: str, emulator: DysmsapiEmulator, code_storage: str
) -> None:
    """200 simultaneous requests for 200 phones from one IP limited to 7: exactly 7 SMS."""
    phones = [f"+86138{n:08d}" for n in range(10_000_000, 10_000_000 + REQUESTS)]
    with cluster(services, code_storage, emulator.endpoint, ip_per_hour=7) as (port, app, db):
        results = fire(port, phones)
        _check_answers(results, allowed=7)
        messages = emulator.messages
        assert len(messages) == 7
        sent = {number for message in messages for number in message.numbers}
        accepted = {phones[i][3:] for i, result in enumerate(results) if result[0] == 200}
        assert sent == accepted
        assert len(_sent_log(app, db)) == 7
        assert _total_sent(app, db) == 7


if __name__ == "__main__":
    serve()
