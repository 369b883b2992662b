"""The example site is worth copying (issue 12, points 7 and 11).

* A password reset signs out every other session of the account (a session version).
* Security headers on every page of the site, not only on the extension's.
* The session cookie is ``SameSite=Lax``, ``HttpOnly`` and, outside debug, ``Secure``.
* Password sign-in is throttled in the extension's limits storage (per address, and failures
  per number, unknown numbers included), and an unknown number costs the same password-hash
  check as a known one (counted, not timed: timings belong in benchmarks).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.security import generate_password_hash

import example_app
from example_app import create_app

from .conftest import PHONE, api_post, form_token

PASSWORD = "admin pass 1"
NEW_PASSWORD = "new pass 2"
UNKNOWN = "13700137000"


def _app(tmp_path: Any, **config: Any) -> Any:
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "example-security-key",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/example.db",
            "ALISMS_SENDER": "memory",
            **config,
        }
    )


@pytest.fixture
def example(tmp_path: Any) -> Iterator[Any]:
    app = _app(tmp_path)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-admin", PHONE, "--password", PASSWORD])
    assert result.exit_code == 0, result.output
    yield app
    with app.app_context():
        example_app.db.session.remove()
        example_app.db.engine.dispose()


def _sign_in(client: Any, phone: str, password: str, ip: str = "10.0.0.1") -> Any:
    page = client.get("/login", environ_base={"REMOTE_ADDR": ip}).get_data(as_text=True)
    return client.post(
        "/login",
        data={"csrf_token": form_token(page), "phone": phone, "password": password},
        environ_base={"REMOTE_ADDR": ip},
    )


def _signed_in(client: Any) -> bool:
    return PHONE in client.get("/").get_data(as_text=True)


# -- point 7: a reset ends the other sessions --------------------------------------------------


def test_a_password_reset_signs_out_every_other_session(example: Any) -> None:
    laptop, phone, thief = example.test_client(), example.test_client(), example.test_client()
    for client in (laptop, thief):
        assert _sign_in(client, PHONE[3:], PASSWORD).status_code == 302
        assert _signed_in(client)
    # The owner resets the password from a third device.
    assert api_post(phone, "send-code", {"phone": PHONE, "purpose": "reset"}).status_code == 200
    code = example.extensions["alisms"].sender.last_param(PHONE[3:])
    response = api_post(
        phone, "reset-password", {"phone": PHONE, "code": code, "password": NEW_PASSWORD}
    )
    assert response.status_code == 200, response.get_json()
    assert _signed_in(phone)  # the device that reset is signed in, on a new session
    assert not _signed_in(laptop) and not _signed_in(thief)
    # The old cookie stays worthless; the new password works.
    assert not _signed_in(thief)
    assert _sign_in(laptop, PHONE[3:], NEW_PASSWORD).status_code == 302
    assert _signed_in(laptop)


def test_session_tokens_refuse_garbage(example: Any) -> None:
    users = example_app.users
    with example.app_context():
        user = users.find_by_phone(PHONE)
        token = users.session_token(user)
        assert users.load_by_session_token(token) is user
        for bad in (None, 5, "", ":", "x", "abc:0", f"{user.id}:", f"{user.id}:1", "1:0:0"):
            assert users.load_by_session_token(bad) is None, bad
        users.end_sessions(user)
        assert users.load_by_session_token(token) is None
        assert users.load_by_session_token(users.session_token(user)) is user


# -- point 11: headers, cookie, throttle, equal work ----------------------------------------------


def test_every_page_of_the_site_has_the_security_headers(example: Any) -> None:
    client = example.test_client()
    answers = {
        "index": client.get("/"),
        "login": client.get("/login"),
        "login failed": _sign_in(client, UNKNOWN, "wrong pass 1"),
        "not found": client.get("/no-such-page"),
        "logout without token": client.post("/logout"),
        "extension page": client.get("/alisms/register"),
    }
    for label, response in answers.items():
        headers = response.headers
        assert "frame-ancestors 'none'" in headers.get("Content-Security-Policy", ""), label
        assert "default-src 'self'" in headers["Content-Security-Policy"], label
        assert headers.get("X-Content-Type-Options") == "nosniff", label
        assert headers.get("X-Frame-Options") == "DENY", label
        assert headers.get("Referrer-Policy") == "same-origin", label


def _session_cookie(app: Any) -> str:
    client = app.test_client()
    response = client.get("/login")  # the CSRF token opens a session
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert cookies, response.headers
    return cookies[0]


def test_session_cookie_is_lax_httponly_and_secure_outside_debug(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    cookie = _session_cookie(_app(tmp_path))
    assert "SameSite=Lax" in cookie and "HttpOnly" in cookie and "Secure" in cookie
    monkeypatch.setenv("FLASK_DEBUG", "1")  # what `flask run --debug` sets
    cookie = _session_cookie(_app(tmp_path))
    assert "SameSite=Lax" in cookie and "Secure" not in cookie


@pytest.mark.parametrize("number", [PHONE[3:], UNKNOWN])
def test_failed_sign_ins_per_number_are_limited_alike(example: Any, number: str) -> None:
    """Ten failures per number per hour, from any address; known or not, the same answers."""
    client = example.test_client()
    statuses = [
        _sign_in(client, number, "wrong pass 1", ip=f"10.0.1.{i}").status_code for i in range(12)
    ]
    assert statuses == [200] * 10 + [429] * 2
    # Refused even with the right password, and without checking it.
    refused = _sign_in(client, number, PASSWORD, ip="10.0.2.1")
    assert refused.status_code == 429
    assert "Too many attempts" in refused.get_data(as_text=True)
    # Another number is not affected.
    assert _sign_in(client, "13900139000", "wrong pass 1", ip="10.0.2.2").status_code == 200


def test_sign_ins_per_address_are_limited(example: Any) -> None:
    client = example.test_client()
    statuses = [
        _sign_in(client, f"1370013{i:04d}", "wrong pass 1", ip="10.0.3.1").status_code
        for i in range(11)
    ]
    assert statuses == [200] * 10 + [429]
    assert _sign_in(client, PHONE[3:], PASSWORD, ip="10.0.3.2").status_code == 302


def test_limiter_storage_down_refuses_sign_in(
    example: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask_alisms.exceptions import LimiterUnavailable
    from flask_alisms.state import get_state

    with example.app_context():
        throttle = get_state().throttle

    def broken(*args: Any, **kwargs: Any) -> Any:  # what any storage's failure turns into
        raise LimiterUnavailable("storage down")

    monkeypatch.setattr(throttle, "_apply", broken)
    response = _sign_in(example.test_client(), PHONE[3:], PASSWORD)
    assert response.status_code == 503
    assert not _signed_in(example.test_client())


def test_unknown_numbers_cost_the_same_hash_check(
    example: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []
    real = example_app.check_password_hash

    def counting(pwhash: str, password: str) -> bool:
        checked.append(pwhash.split("$", 1)[0])
        return real(pwhash, password)

    monkeypatch.setattr(example_app, "check_password_hash", counting)
    client = example.test_client()
    for number in (PHONE[3:], UNKNOWN, "not a number"):
        checked.clear()
        assert _sign_in(client, number, "wrong pass 1").status_code == 200
        # Exactly one check, with the same method (so the same work) as a real account's.
        assert checked == [generate_password_hash("x").split("$", 1)[0]], number


def test_a_locked_database_is_a_503_page_on_the_site(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlite3

    app = _app(tmp_path, SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"timeout": 0.1}})
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    holder = sqlite3.connect(f"{tmp_path}/example.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        response = client.post(
            "/login",
            data={"csrf_token": form_token(page), "phone": PHONE[3:], "password": PASSWORD},
        )
        assert response.status_code == 503
        assert "text/html" in response.content_type
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        with app.app_context():
            example_app.db.session.remove()
            example_app.db.engine.dispose()
    assert all(PHONE[3:] not in record.getMessage() for record in caplog.records)
    assert any("Database unavailable" in record.getMessage() for record in caplog.records)
