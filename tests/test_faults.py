"""Faults: the provider down, slow, failing or cut off; the limiter store down; the database
failing in the middle of a registration.

Each time the user gets a short, clear answer (never a traceback or a 500), no usable code is
left behind, and the admin finds the failure in the send log under the right category.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
from flask import session

from flask_alisms import SQLAlchemyUserAdapter, signals
from flask_alisms.sms.advice import USER_TRY_LATER
from flask_alisms.testing import DysmsapiEmulator

from .conftest import CODE_STORAGE, KEY_SECRET, OTHER_PHONE, PHONE, Host, api_post, form_token

PASSWORD = "good pass 1"
READ_TIMEOUT = 0.5


def live_codes(host: Host) -> int:
    """Codes in the configured store, whichever it is."""
    if CODE_STORAGE == "database":
        return host.count(host.models.VerificationCode)
    import redis

    return len(redis.Redis.from_url(CODE_STORAGE).keys("alisms:code:*"))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _inject(fault: str, emulator: DysmsapiEmulator) -> None:
    if fault == "slow":
        emulator.delay_next(READ_TIMEOUT * 4)
    elif fault == "http 503":
        emulator.fail_next_http(503, "ServiceUnavailable")
    elif fault == "http 500":
        emulator.fail_next_http(500, "InternalError")
    elif fault == "http 502 from a proxy":
        emulator.fail_next_http(502, "BadGateway", "<html>bad gateway</html>")
    elif fault == "truncated":
        emulator.truncate_next()
    elif fault == "dropped":
        emulator.drop_next()


FAULTS = ["down", "slow", "http 503", "http 500", "http 502 from a proxy", "truncated", "dropped"]


@pytest.fixture(params=FAULTS)
def fault(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def faulty_host(make_host: Any, fault: str) -> Host:
    config: dict[str, Any] = {"ALISMS_READ_TIMEOUT": READ_TIMEOUT}
    if fault == "down":
        config["ALISMS_ENDPOINT"] = f"127.0.0.1:{_closed_port()}"
    host = make_host(**config)
    host.configure_sms()
    return host


#: Faults after which Aliyun may have sent the SMS: the code stays valid (issue 12, point 9).
MAYBE_SENT = {"slow", "dropped"}


def test_provider_fault_is_a_clear_503_and_leaves_no_code(
    faulty_host: Host, emulator: DysmsapiEmulator, fault: str, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    failed: list[dict[str, Any]] = []
    sent: list[dict[str, Any]] = []

    def on_failure(sender: Any, **kwargs: Any) -> None:
        failed.append(kwargs)

    def on_sent(sender: Any, **kwargs: Any) -> None:
        sent.append(kwargs)

    signals.code_send_failed.connect(on_failure, faulty_host.app)
    signals.code_sent.connect(on_sent, faulty_host.app)
    try:
        _inject(fault, emulator)
        response = api_post(faulty_host.client(), "send-code", {"phone": PHONE})
    finally:
        signals.code_send_failed.disconnect(on_failure)
        signals.code_sent.disconnect(on_sent)

    if fault in MAYBE_SENT:
        # An unknown outcome: the SMS may still arrive, so its code must still work.
        assert response.status_code == 200
        body = response.get_json()
        assert (body["sent"], body["maybe_late"]) == (True, True), body
        assert live_codes(faulty_host) == 1
        assert [kwargs["result"].category.value for kwargs in sent] == ["network"]
        assert failed == []
    else:
        assert response.status_code == 503
        assert response.get_json() == {
            "error": "sms_unavailable",
            "message": USER_TRY_LATER,
            "retry_after": 30,
        }
        assert response.headers["Retry-After"] == "30"
        assert live_codes(faulty_host) == 0
        assert [kwargs["result"].category.value for kwargs in failed] == ["network"]
    log = faulty_host.models.SendLog
    rows = faulty_host.query(sa.select(log.ok, log.category, log.code, log.message))
    assert len(rows) == 1
    ok, category, code, message = rows[0]
    assert (ok, category) == (False, "network"), rows
    assert code and message  # what the admin reads: an Aliyun/SDK code and what happened
    text = " ".join(r.getMessage() for r in caplog.records) + (message or "")
    assert KEY_SECRET not in text


def test_provider_fault_on_the_page_is_a_503_page(
    faulty_host: Host, emulator: DysmsapiEmulator, fault: str
) -> None:
    client = faulty_host.client()
    token = form_token(client.get("/alisms/register").get_data(as_text=True))
    _inject(fault, emulator)
    response = client.post(
        "/alisms/register",
        data={"csrf_token": token, "country_code": "86", "phone": "13800138000", "send": "Send"},
    )
    if fault in MAYBE_SENT:
        assert response.status_code == 200
        assert "may take a few minutes" in response.get_data(as_text=True)
        assert live_codes(faulty_host) == 1
    else:
        assert response.status_code == 503
        assert USER_TRY_LATER in response.get_data(as_text=True)
        assert live_codes(faulty_host) == 0


def test_slow_provider_answers_within_the_read_timeout(
    make_host: Any, emulator: DysmsapiEmulator
) -> None:
    """The user waits about ALISMS_READ_TIMEOUT, not for the provider; nothing is retried."""
    import time

    host = make_host(ALISMS_READ_TIMEOUT=READ_TIMEOUT)
    host.configure_sms()
    emulator.delay_next(3.0)
    served = emulator.requests_served
    started = time.perf_counter()
    response = api_post(host.client(), "send-code", {"phone": PHONE})
    elapsed = time.perf_counter() - started
    assert response.get_json()["maybe_late"] is True
    assert elapsed < 2.5, elapsed
    assert emulator.requests_served == served + 1  # SendSms is never retried


# -- the limiter's storage down (the API side is in test_limits.py) ------------------------------

DOWN = "redis://127.0.0.1:1/0"


def _page_send(client: Any, phone: str = "13800138000") -> Any:
    token = form_token(client.get("/alisms/register").get_data(as_text=True))
    return client.post(
        "/alisms/register",
        data={"csrf_token": token, "country_code": "86", "phone": phone, "send": "Send"},
    )


def test_limiter_down_fails_closed_on_the_page(make_host: Any, emulator: DysmsapiEmulator) -> None:
    host = make_host(ALISMS_LIMITER_STORAGE_URI=DOWN)
    host.configure_sms()
    response = _page_send(host.client())
    assert response.status_code == 503
    assert response.mimetype == "text/html"
    assert "paused for a moment" in response.get_data(as_text=True)
    assert emulator.messages == []
    assert live_codes(host) == 0


def test_limiter_down_fails_closed_for_code_checks_too(
    make_host: Any, emulator: DysmsapiEmulator
) -> None:
    """No guessing while the per-number verification limit cannot be counted."""
    host = make_host(ALISMS_LIMITER_STORAGE_URI=DOWN)
    host.configure_sms()
    client = host.client()
    response = api_post(
        client, "register", {"phone": PHONE, "code": "123456", "password": PASSWORD}
    )
    assert response.status_code == 503
    assert response.get_json()["error"] == "service_unavailable"
    token = form_token(client.get("/alisms/register").get_data(as_text=True))
    page = client.post(
        "/alisms/register",
        data={
            "csrf_token": token,
            "country_code": "86",
            "phone": "13800138000",
            "code": "123456",
            "password": PASSWORD,
            "submit": "Register",
        },
    )
    assert page.status_code == 503
    assert host.count(host.User) == 0


def test_limiter_down_can_fail_open_on_the_page(
    make_host: Any, emulator: DysmsapiEmulator, caplog: Any
) -> None:
    host = make_host(ALISMS_LIMITER_STORAGE_URI=DOWN, ALISMS_LIMITS_FAIL_OPEN=True)
    host.configure_sms()
    caplog.set_level(logging.ERROR)
    response = _page_send(host.client())
    assert response.status_code == 200
    assert len(emulator.messages) == 1
    assert live_codes(host) == 1
    assert any("letting the request through" in r.getMessage() for r in caplog.records)


# -- the database failing in the middle of a registration -----------------------------------------


class FailingUserAdapter(SQLAlchemyUserAdapter):
    """The host's adapter, whose database breaks after the user row was added."""

    def __init__(self) -> None:
        self.failing = True
        self.calls = 0

    def attach(self, host: Host) -> None:
        def login(user: Any) -> None:
            session["user_id"] = user.id

        super().__init__(host.db, host.User, login=login)

    def create_user(self, phone: str, password_hash: str, fields: Mapping[str, Any]) -> Any:
        self.calls += 1
        if not self.failing:
            return super().create_user(phone, password_hash, fields)
        self.db.session.add(self.model(phone=phone, password_hash=password_hash, **fields))
        self.db.session.flush()  # the row exists in the transaction...
        raise sa.exc.OperationalError(  # ... when the connection goes away
            "INSERT INTO host_user ...",
            {"phone": phone, "password_hash": password_hash},  # as SQLAlchemy reports them
            Exception("server closed the connection"),
        )

    def set_password(self, user: Any, password_hash: str) -> None:
        if not self.failing:
            super().set_password(user, password_hash)
            return
        user.password_hash = password_hash
        self.db.session.flush()
        raise sa.exc.OperationalError("UPDATE host_user ...", None, Exception("deadlock"))


@pytest.fixture
def flaky(make_host: Any) -> tuple[Host, FailingUserAdapter]:
    adapter = FailingUserAdapter()
    host = make_host(alisms_options={"user_adapter": adapter})
    adapter.attach(host)
    host.configure_sms()
    return host, adapter


def test_database_error_while_creating_the_user(
    flaky: tuple[Host, FailingUserAdapter], emulator: DysmsapiEmulator, caplog: Any
) -> None:
    """A clear 503, no half-made account, and a way forward: a new code.

    Decided behaviour: the code is consumed *before* ``create_user`` runs (single use is what
    stops two concurrent requests from both creating an account), so it is not given back when
    the database fails. The answer says so ("request a new code"), the old code is refused,
    and a new one can be requested as soon as the resend interval allows.
    """
    host, adapter = flaky
    client = host.client()
    with time_machine.travel(1_900_000_000, tick=False) as clock:
        assert api_post(client, "send-code", {"phone": PHONE}).status_code == 200
        code = emulator.last_param("13800138000")
        body = {"phone": PHONE, "code": code, "password": PASSWORD}

        caplog.set_level(logging.DEBUG)
        response = api_post(client, "register", body)
        assert response.status_code == 503
        assert response.get_json() == {
            "error": "registration_failed",
            "message": "Your account could not be created. Please request a new code and "
            "try again.",
        }
        assert adapter.calls == 1
        assert host.count(host.User) == 0  # the flushed row was rolled back
        assert client.get("/whoami").get_json() == {"user_id": None}
        assert any("create_user failed" in r.getMessage() for r in caplog.records)
        assert all(PASSWORD not in r.getMessage() for r in caplog.records)
        # The database error's text lists the SQL parameters: the hash must not reach the log.
        logged = " ".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
        assert "password_hash" not in logged and "scrypt:" not in logged
        assert "pbkdf2:" not in logged

        # The database is back, but the spent code stays spent.
        adapter.failing = False
        again = api_post(client, "register", body)
        assert again.status_code == 400
        assert again.get_json()["error"] == "invalid_code"
        assert host.count(host.User) == 0

        # A new code, once the resend interval has passed, completes the registration.
        assert api_post(client, "send-code", {"phone": PHONE}).status_code == 429
        clock.shift(61)
        assert api_post(client, "send-code", {"phone": PHONE}).status_code == 200
        fresh = emulator.last_param("13800138000")
        done = api_post(client, "register", {**body, "code": fresh})
        assert done.status_code == 201, done.get_json()
    assert host.query(sa.select(host.User.phone)) == [(PHONE,)]


def test_database_error_on_the_registration_page(
    flaky: tuple[Host, FailingUserAdapter], emulator: DysmsapiEmulator
) -> None:
    host, _adapter = flaky
    client = host.client()
    assert _page_send(client).status_code == 200
    token = form_token(client.get("/alisms/register").get_data(as_text=True))
    response = client.post(
        "/alisms/register",
        data={
            "csrf_token": token,
            "country_code": "86",
            "phone": "13800138000",
            "code": emulator.last_param("13800138000"),
            "password": PASSWORD,
            "submit": "Register",
        },
    )
    assert response.status_code == 503
    assert "could not be created" in response.get_data(as_text=True)
    assert host.count(host.User) == 0


def test_database_error_while_resetting_keeps_the_old_password(
    flaky: tuple[Host, FailingUserAdapter], emulator: DysmsapiEmulator
) -> None:
    host, _adapter = flaky
    with host.app.app_context():
        host.db.session.add(host.User(phone=OTHER_PHONE, password_hash="old-hash"))
        host.db.session.commit()
    client = host.client()
    assert api_post(
        client, "send-code", {"phone": OTHER_PHONE, "purpose": "reset"}
    ).status_code == (200)
    code = emulator.last_param("13900139000")
    response = api_post(
        client, "reset-password", {"phone": OTHER_PHONE, "code": code, "password": PASSWORD}
    )
    assert response.status_code == 503
    assert response.get_json()["error"] == "reset_failed"
    assert host.query(sa.select(host.User.password_hash)) == [("old-hash",)]
    assert client.get("/whoami").get_json() == {"user_id": None}


# -- the code store failing after the SMS went out ------------------------------------------------


def _break_code_writes(host: Host) -> None:
    """Make the database refuse every write to the codes table, as a lock timeout would."""
    with host.app.app_context():
        engine = host.db.engine

    @sa.event.listens_for(engine, "before_cursor_execute")
    def refuse(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE")) and (
            "alisms_verification_code" in statement
        ):
            raise sa.exc.OperationalError(statement, parameters, Exception("lock wait timeout"))


@pytest.fixture(params=["database", "redis down"])
def broken_store(request: pytest.FixtureRequest, make_host: Any) -> Host:
    if request.param == "database":
        host = make_host(ALISMS_CODE_STORAGE="database")
        _break_code_writes(host)
    else:
        host = make_host(ALISMS_CODE_STORAGE=f"redis://127.0.0.1:{_closed_port()}/0")
    host.configure_sms()
    return host


def test_code_store_failure_is_a_503_and_the_send_stays_logged(
    broken_store: Host, emulator: DysmsapiEmulator, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    response = api_post(broken_store.client(), "send-code", {"phone": PHONE})
    assert response.status_code == 503
    assert response.get_json() == {
        "error": "service_unavailable",
        "message": "Your code could not be saved. Please request a new one in a minute.",
    }
    code = emulator.last_param("13800138000")  # the SMS did go out, and was billed
    log = broken_store.models.SendLog
    rows = broken_store.query(sa.select(log.ok, log.category, log.code))
    assert rows == [(True, "sent", "OK")]
    logged = " ".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "Could not keep the code for +86138****8000" in logged
    assert code not in logged


def test_code_store_failure_on_the_page_is_a_503_page(
    broken_store: Host, emulator: DysmsapiEmulator
) -> None:
    client = broken_store.client()
    token = form_token(client.get("/alisms/register").get_data(as_text=True))
    response = client.post(
        "/alisms/register",
        data={"csrf_token": token, "country_code": "86", "phone": "13800138000", "send": "Send"},
    )
    assert response.status_code == 503
    assert "Your code could not be saved" in response.get_data(as_text=True)
