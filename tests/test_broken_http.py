"""Broken chunked bodies on real servers give a clean 400 and change nothing (issue 12, point 5).

A ``Transfer-Encoding: chunked`` body with a bad or negative chunk size, a chunk cut short or
no final chunk is sent over a raw socket to every POST route of a host app (the API, the HTML
pages, the admin panel) and of the example site (its ``/login``), served by the Werkzeug dev
server in a thread and by gunicorn in a subprocess. Each request carries a valid session and
CSRF header, so the 400 is the body's, not the CSRF check's. The API answers the usual JSON
error, a page the usual HTML error page; no row is written and nothing is sent.

This module is also the host app for gunicorn: ``tests.test_broken_http:create_host()``.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from .conftest import DATABASE_URL, KEY_ID, KEY_SECRET, SIGN, TEMPLATE

ROOT = Path(__file__).resolve().parent.parent
CONFIG_ENV = "ALISMS_BROKEN_HTTP_DATABASE_URL"

BROKEN_BODIES = {
    "bad chunk size": b"zz\r\nhello\r\n0\r\n\r\n",
    "negative chunk size": b"-5\r\nhello\r\n0\r\n\r\n",
    "no final chunk": b"5\r\nhello\r\n",
    "chunk cut short": b"64\r\nhello",
    "bad chunk terminator": b"5\r\nhelloXX3\r\nabc\r\n0\r\n\r\n",
}
HOST_ROUTES = [
    ("/alisms/api/send-code", "application/json"),
    ("/alisms/api/register", "application/json"),
    ("/alisms/api/reset-password", "application/json"),
    ("/alisms/register", "application/x-www-form-urlencoded"),
    ("/alisms/reset-password", "application/x-www-form-urlencoded"),
    ("/alisms/admin/", "application/x-www-form-urlencoded"),
    ("/alisms/admin/test-sms", "multipart/form-data; boundary=xyz"),
]
EXAMPLE_ROUTES = [
    ("/login", "application/x-www-form-urlencoded"),
    ("/alisms/register", "application/x-www-form-urlencoded"),
    ("/alisms/api/send-code", "application/json"),
]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_host() -> Any:
    """The host app: every route on, SMS configured towards a closed port (nothing is sent)."""
    from flask import Flask, session
    from flask_sqlalchemy import SQLAlchemy

    from flask_alisms import AliSMS, SQLAlchemyUserAdapter

    app = Flask("broken_http_host")
    app.config.update(
        SECRET_KEY="broken-http-secret-key",
        SQLALCHEMY_DATABASE_URI=os.environ[CONFIG_ENV],
        ALISMS_SENDER="aliyun",
        ALISMS_ENDPOINT=f"http://127.0.0.1:{_closed_port()}/",
        ALISMS_PARAMS={
            "aliyun.sms.sign_name": SIGN,
            "aliyun.sms.sms_code_template_code": TEMPLATE,
            "aliyun.sms.access_key_id": KEY_ID,
            "aliyun.sms.access_key_secret": KEY_SECRET,
            "server.allow_user_register": True,
            "server.enable_mobile_register": True,
        },
    )
    db = SQLAlchemy()
    db.init_app(app)

    class User(db.Model):  # type: ignore[name-defined]
        __tablename__ = "broken_http_user"
        id = sa.Column(sa.Integer, primary_key=True)
        phone = sa.Column(sa.String(32), unique=True, nullable=False)
        password_hash = sa.Column(sa.String(256), nullable=False)

    def login(user: Any) -> None:
        session["user_id"] = user.id

    alisms = AliSMS(app, db=db, user_adapter=SQLAlchemyUserAdapter(db, User, login=login))
    alisms.admin_loader(lambda: "admin")  # every visitor is the admin: the panel is posted to
    with app.app_context():
        db.create_all()
    return app


def _example() -> Any:
    from example_app import create_app

    return create_app()


# -- servers ------------------------------------------------------------------------------------


@contextmanager
def _dev_server(factory: Callable[[], Any]) -> Iterator[int]:
    import logging

    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, factory(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join(timeout=10)


@contextmanager
def _gunicorn(target: str) -> Iterator[int]:
    port = _closed_port()
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", target],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stderr.read().decode() if process.stderr else ""
                    raise RuntimeError(output) from None
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = DATABASE_URL or f"sqlite:///{tmp_path}/broken.db"
    monkeypatch.setenv(CONFIG_ENV, url)
    monkeypatch.setenv("FLASK_SQLALCHEMY_DATABASE_URI", url)
    monkeypatch.setenv("FLASK_SECRET_KEY", "broken-http-example-secret")
    monkeypatch.setenv("FLASK_ALISMS_ENDPOINT", f"http://127.0.0.1:{_closed_port()}/")
    yield url
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    metadata.reflect(engine)
    metadata.drop_all(engine)
    engine.dispose()


SERVERS = ["werkzeug", "gunicorn"]


@pytest.fixture(params=SERVERS)
def server_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "gunicorn" and importlib.util.find_spec("gunicorn") is None:
        pytest.skip("gunicorn is not installed (pip install -e '.[test]')")
    return str(request.param)


def _serve(kind: str, site: str) -> Any:
    if kind == "werkzeug":
        return _dev_server(create_host if site == "host" else _example)
    if site == "host":
        return _gunicorn("tests.test_broken_http:create_host()")
    return _gunicorn("example_app:create_app()")


# -- the client ---------------------------------------------------------------------------------


def _session(port: int) -> tuple[str, str]:
    """A session cookie and its CSRF token, as a browser would hold them."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/alisms/api/csrf-token")
    response = connection.getresponse()
    token = json.loads(response.read())["csrf_token"]
    cookie = response.getheader("Set-Cookie", "").split(";", 1)[0]
    connection.close()
    return cookie, token


def _raw_post(port: int, path: str, ctype: str, body: bytes, cookie: str, token: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {ctype}\r\n"
        f"Cookie: {cookie}\r\nX-CSRFToken: {token}\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)  # the body ends here, however broken
        answer = b""
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
    return answer


def _status(answer: bytes) -> int:
    match = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    assert match, answer[:200]
    return int(match.group(1))


def _snapshot(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            names = sa.inspect(connection).get_table_names()
            return {
                name: int(
                    connection.execute(
                        sa.select(sa.func.count()).select_from(sa.table(name))
                    ).scalar_one()
                )
                for name in names
            }
    finally:
        engine.dispose()


def _check_answers(port: int, routes: list[tuple[str, str]], url: str) -> None:
    cookie, token = _session(port)
    before = _snapshot(url)
    failures = []
    for path, ctype in routes:
        for label, body in BROKEN_BODIES.items():
            answer = _raw_post(port, path, ctype, body, cookie, token)
            status = _status(answer)
            head, _, payload = answer.partition(b"\r\n\r\n")
            if status != 400:
                failures.append((path, label, status))
                continue
            if "/api/" in path:
                assert b"application/json" in head, (path, label, head)
                assert json.loads(payload)["error"] == "bad_request", (path, label, payload)
            else:
                assert b"text/html" in head, (path, label, head)
                assert b"Bad Request" in payload and b"CSRF" not in payload, (path, label)
    assert not failures, failures
    assert _snapshot(url) == before


def test_broken_chunked_bodies_get_400_on_the_host(server_kind: str, database: str) -> None:
    with _serve(server_kind, "host") as port:
        _check_answers(port, HOST_ROUTES, database)
        # The same session and header with a well-formed chunked body do get through.
        cookie, token = _session(port)
        body = json.dumps({"phone": "not a phone"}).encode()
        framed = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        answer = _raw_post(port, HOST_ROUTES[0][0], "application/json", framed, cookie, token)
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"] == "invalid_phone"


def test_broken_chunked_bodies_get_400_on_the_example_site(server_kind: str, database: str) -> None:
    with _serve(server_kind, "example") as port:
        _check_answers(port, EXAMPLE_ROUTES, database)
