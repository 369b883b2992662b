"""App-factory fixtures: a fresh host app per test, talking to the Dysmsapi emulator.

The services behind the suite are chosen by environment variables, so CI can run the same
tests on each of them:

- ``ALISMS_TEST_DATABASE_URL``: SQLAlchemy URL of the host database (default: SQLite file);
- ``ALISMS_TEST_LIMITER_STORAGE_URI``: Flask-Limiter storage (default ``memory://``);
- ``ALISMS_TEST_CODE_STORAGE``: ``database`` (default) or a ``redis://`` URL.

The Redis URLs may also name a cluster (``redis+cluster://host:port,host:port``) or a Sentinel
service (``redis+sentinel://host:port/service``), as .ci/run does for the tests that run there.

A service that was asked for but does not answer makes the tests that need it skip.

Apart from these selectors (and ``ALISMS_BROWSER_TESTS``, ``ALISMS_README_SCREENSHOTS``,
``ALISMS_SCREENSHOT_DIR``, ``ALISMS_CONCURRENCY_*``, read by their own modules), no test sees
the caller's ``FLASK_*``, ``ALISMS_*``, ``DATABASE_URL`` or ``REDIS_URL``:
:func:`_clean_environment` removes them, so a shell set up for the example site cannot change
what the suite tests.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, jsonify, session
from flask_sqlalchemy import SQLAlchemy
from wtforms import StringField
from wtforms.validators import Length, Optional

from flask_alisms import AliSMS, SQLAlchemyUserAdapter
from flask_alisms.testing import DysmsapiEmulator
from flask_alisms.web.forms import RegisterForm

SIGN = "阿里云短信测试"
TEMPLATE = "SMS_154950909"
KEY_ID = "LTAI5tTestKeyId0001"
KEY_SECRET = "TestSecretValue0123456789abcdef"
PHONE = "+8613800138000"
OTHER_PHONE = "+8613900139000"

DATABASE_URL = os.environ.get("ALISMS_TEST_DATABASE_URL")
LIMITER_URI = os.environ.get("ALISMS_TEST_LIMITER_STORAGE_URI")
CODE_STORAGE = os.environ.get("ALISMS_TEST_CODE_STORAGE", "database")
# Generous: a loaded CI machine once took 2.5 s to answer a local emulator, and a timed-out send
# leaves the test without the message it reads the code from.  Tests of the timeout set their own.
EMULATOR_READ_TIMEOUT = 10.0


def _service_or_skip(kind: str, check: Callable[[], Any]) -> None:
    try:
        check()
    except Exception as exc:
        pytest.skip(f"{kind} asked for by the environment but not reachable: {exc}")


def _redis_check(url: str) -> Callable[[], Any]:
    def check() -> None:
        from flask_alisms.flows.codes import redis_client

        client = redis_client(url)  # also redis+cluster:// and redis+sentinel://
        client.ping()
        client.flushdb()

    return check


#: Variables of the caller's shell that the suite itself reads (documented in README.rst).
SELECTORS = (
    "ALISMS_TEST_",
    "ALISMS_BROWSER_TESTS",
    "ALISMS_README_SCREENSHOTS",
    "ALISMS_SCREENSHOT_DIR",
    "ALISMS_CONCURRENCY_",
)


def caller_variables(environ: Any = None) -> list[str]:
    """The names a test must not inherit: Flask's and our prefixes, and the example's URLs."""
    environ = os.environ if environ is None else environ
    return [
        name
        for name in environ
        if (name.startswith(("FLASK_", "ALISMS_")) and not name.startswith(SELECTORS))
        or name in ("DATABASE_URL", "REDIS_URL")
    ]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the variables they set themselves (plus the selectors above)."""
    for name in caller_variables():
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Aliyun SDK sends 127.0.0.1 through HTTP_PROXY and ignores NO_PROXY."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def emulator() -> Iterator[DysmsapiEmulator]:
    with DysmsapiEmulator(
        access_keys={KEY_ID: KEY_SECRET},
        sign_names=(SIGN,),
        templates={TEMPLATE: ("code",), "SMS_200000001": ()},
    ) as server:
        yield server


class Host:
    """What a test needs of one host app: the app, its db, models, extension and clients."""

    def __init__(self, app: Flask, db: SQLAlchemy, user_model: Any, alisms: AliSMS) -> None:
        self.app = app
        self.db = db
        self.User = user_model
        self.alisms = alisms
        self.admins: set[str] = {"root"}

    def client(self, admin: str | None = None) -> Any:
        client = self.app.test_client()
        if admin is not None:
            with client.session_transaction() as sess:
                sess["username"] = admin
        return client

    def set_params(self, **values: Any) -> None:
        """Save parameters as an admin would (keys with __ for dots)."""
        with self.app.app_context():
            self.alisms.params.update(
                {key.replace("__", "."): value for key, value in values.items()}, actor="test"
            )

    def configure_sms(self, *, open_registration: bool = True) -> None:
        self.set_params(
            aliyun__sms__sign_name=SIGN,
            aliyun__sms__sms_code_template_code=TEMPLATE,
            aliyun__sms__access_key_id=KEY_ID,
            aliyun__sms__access_key_secret=KEY_SECRET,
        )
        if open_registration:
            self.set_params(
                server__allow_user_register="true", server__enable_mobile_register="true"
            )

    def query(self, statement: Any) -> list[Any]:
        with self.app.app_context():
            return list(self.db.session.execute(statement).all())

    def count(self, model: Any) -> int:
        with self.app.app_context():
            return int(self.db.session.scalar(sa.select(sa.func.count()).select_from(model)))

    @property
    def models(self) -> Any:
        with self.app.app_context():
            return self.app.extensions["alisms"].models


@pytest.fixture
def make_host(tmp_path: Any, emulator: DysmsapiEmulator) -> Iterator[Callable[..., Host]]:
    """Build a host app; keyword arguments become ``ALISMS_*``/Flask config or AliSMS options."""
    created: list[Host] = []

    def factory(*, alisms_options: dict[str, Any] | None = None, **config: Any) -> Host:
        app = Flask("host_app")
        app.config.update(
            SECRET_KEY="test-secret-key-for-the-host-app",
            TESTING=True,
            SQLALCHEMY_DATABASE_URI=DATABASE_URL or f"sqlite:///{tmp_path}/host.db",
            ALISMS_SENDER="aliyun",
            ALISMS_ENDPOINT=emulator.endpoint,
            ALISMS_READ_TIMEOUT=EMULATOR_READ_TIMEOUT,
            ALISMS_CODE_STORAGE=CODE_STORAGE,
            ALISMS_PARAMS_CACHE_SECONDS=0,
        )
        if LIMITER_URI:
            app.config["ALISMS_LIMITER_STORAGE_URI"] = LIMITER_URI
        app.config.update(config)
        db = SQLAlchemy()
        db.init_app(app)

        class User(db.Model):  # type: ignore[name-defined]
            __tablename__ = "host_user"
            id = sa.Column(sa.Integer, primary_key=True)
            phone = sa.Column(sa.String(32), unique=True, nullable=False)
            password_hash = sa.Column(sa.String(256), nullable=True)  # None: signed up by code
            nickname = sa.Column(sa.String(50), nullable=True)

        def login(user: Any) -> None:
            session["user_id"] = user.id

        class HostRegisterForm(RegisterForm):
            nickname = StringField("Nickname", validators=[Optional(), Length(max=50)])

        options = {
            "user_adapter": SQLAlchemyUserAdapter(db, User, login=login),
            "register_form": HostRegisterForm,
        }
        options.update(alisms_options or {})
        alisms = AliSMS(app, db=db, **options)
        host = Host(app, db, User, alisms)

        @alisms.admin_loader
        def load_admin() -> str | None:
            name = session.get("username")
            return name if name in host.admins else None

        @app.get("/whoami")
        def whoami() -> Any:
            return jsonify({"user_id": session.get("user_id")})

        with app.app_context():
            db.drop_all()
            db.create_all()
        created.append(host)
        return host

    if DATABASE_URL:
        _service_or_skip("database", lambda: sa.create_engine(DATABASE_URL).connect().close())
    for url in (LIMITER_URI, CODE_STORAGE):
        if url and url.startswith("redis"):
            _service_or_skip("Redis", _redis_check(url))
    yield factory
    for host in created:
        with host.app.app_context():
            host.db.session.remove()
            host.db.drop_all()
            host.db.engine.dispose()


@pytest.fixture
def host(make_host: Callable[..., Host]) -> Host:
    return make_host()


@pytest.fixture
def ready_host(host: Host) -> Host:
    """A host whose admin filled in every Aliyun parameter and opened registration."""
    host.configure_sms()
    return host


def csrf_token(client: Any) -> str:
    return client.get("/alisms/api/csrf-token").get_json()["csrf_token"]


def api_post(client: Any, path: str, payload: Any, *, token: str | None = None) -> Any:
    headers = {"X-CSRFToken": token if token is not None else csrf_token(client)}
    return client.post(f"/alisms/api/{path}", json=payload, headers=headers)


def form_token(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html
    )
    assert match, "no CSRF token in the page"
    return match.group(1)


@pytest.fixture
def log_records(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog
