"""The example site as a visitor and an admin would use it."""

from __future__ import annotations

from typing import Any

import pytest

from example_app import create_app
from flask_alisms.testing import DysmsapiEmulator

from .conftest import KEY_ID, KEY_SECRET, SIGN, TEMPLATE, api_post, csrf_token, form_token


@pytest.fixture
def example(tmp_path: Any) -> Any:
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "example-test-key",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/example.db",
            "ALISMS_SENDER": "memory",
        }
    )
    yield app
    with app.app_context():
        from example_app import db

        db.session.remove()
        db.engine.dispose()


def test_visitor_registers_by_phone_with_the_development_sender(example: Any) -> None:
    client = example.test_client()
    assert "Register by phone" in client.get("/").get_data(as_text=True)
    assert api_post(client, "send-code", {"phone": "+8613800138000"}).status_code == 200
    code = example.extensions["alisms"].sender.last_param("13800138000")
    response = api_post(
        client,
        "register",
        {"phone": "+8613800138000", "code": code, "password": "visitor pass 1"},
    )
    assert response.status_code == 201
    assert "+8613800138000" in client.get("/").get_data(as_text=True)


def test_admin_created_by_cli_reaches_the_panel(example: Any) -> None:
    runner = example.test_cli_runner()
    result = runner.invoke(args=["create-admin", "+8613900139000", "--password", "admin pass 1"])
    assert result.exit_code == 0, result.output
    client = example.test_client()
    to_login = client.get("/alisms/admin/log?days=1")
    assert to_login.status_code == 302
    assert to_login.location == "/login?next=/alisms/admin/log?days%3D1"
    token = form_token(client.get(to_login.location).get_data(as_text=True))
    signed_in = client.post(
        to_login.location,
        data={"csrf_token": token, "phone": "13900139000", "password": "admin pass 1"},
    )
    assert signed_in.status_code == 302
    assert signed_in.location == "/alisms/admin/log?days=1"
    assert client.get("/alisms/admin/").status_code == 200
    token = csrf_token(client)
    client.post("/logout", data={"csrf_token": token})
    assert client.get("/alisms/admin/").status_code == 302


def test_signed_in_visitor_who_is_not_an_admin_gets_403(example: Any) -> None:
    client = example.test_client()
    api_post(client, "send-code", {"phone": "+8613800138000"})
    code = example.extensions["alisms"].sender.last_param("13800138000")
    payload = {"phone": "+8613800138000", "code": code, "password": "visitor pass 1"}
    assert api_post(client, "register", payload).status_code == 201
    assert client.get("/alisms/admin/").status_code == 403


def test_login_page_offers_a_reset_and_the_site_has_a_favicon(example: Any) -> None:
    client = example.test_client()
    page = client.get("/login?next=/alisms/admin/").get_data(as_text=True)
    assert 'href="/alisms/reset-password?next=/alisms/admin/"' in page
    assert "Forgot password?" in page
    chinese = client.get("/login", headers={"Accept-Language": "zh-CN"}).get_data(as_text=True)
    assert "忘记密码？" in chinese
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.mimetype == "image/svg+xml"
    assert icon.get_data().startswith(b"<svg")


def test_environment_points_the_example_at_an_emulator(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, emulator: DysmsapiEmulator
) -> None:
    monkeypatch.setenv("FLASK_ALISMS_ENDPOINT", emulator.endpoint)
    monkeypatch.setenv("FLASK_ALISMS_SENDER", "auto")
    monkeypatch.setenv("FLASK_SQLALCHEMY_DATABASE_URI", f"sqlite:///{tmp_path}/env.db")
    app = create_app({"TESTING": True, "SECRET_KEY": "k"})
    with app.app_context():
        app.extensions["alisms"].params.update(
            {
                "aliyun.sms.sign_name": SIGN,
                "aliyun.sms.sms_code_template_code": TEMPLATE,
                "aliyun.sms.access_key_id": KEY_ID,
                "aliyun.sms.access_key_secret": KEY_SECRET,
            },
            actor="test",
        )
    client = app.test_client()
    assert api_post(client, "send-code", {"phone": "+8613800138000"}).status_code == 200
    assert emulator.last_param("13800138000").isdigit()


def test_database_url_and_flask_prefixed_variables(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/from-database-url.db")
    monkeypatch.setenv("FLASK_ALISMS_READ_TIMEOUT", "2.5")
    app = create_app({"TESTING": True, "SECRET_KEY": "k"})
    assert app.config["SQLALCHEMY_DATABASE_URI"].endswith("from-database-url.db")
    assert app.config["ALISMS_READ_TIMEOUT"] == 2.5
    assert (tmp_path / "from-database-url.db").exists()
    monkeypatch.setenv("FLASK_SQLALCHEMY_DATABASE_URI", f"sqlite:///{tmp_path}/flask.db")
    assert (
        create_app({"TESTING": True, "SECRET_KEY": "k"})
        .config["SQLALCHEMY_DATABASE_URI"]
        .endswith("flask.db")
    )


def test_sign_in_by_code_and_phone_change_on_the_example(example: Any) -> None:
    client = example.test_client()
    assert client.get("/account").status_code == 302  # signed out: to the login page
    login_page = client.get("/login").get_data(as_text=True)
    assert 'href="/alisms/login"' in login_page  # the sign-in-by-code part of the page
    sender = example.extensions["alisms"].sender
    sent = api_post(client, "send-code", {"phone": "+8613800138000", "purpose": "login"})
    assert sent.get_json()["sent"] is True
    code = sender.last_param("13800138000")
    answer = api_post(client, "login", {"phone": "+8613800138000", "code": code})
    assert answer.status_code == 200 and answer.get_json()["created"] is True
    # No password yet: the password form refuses, it does not crash.
    token = form_token(client.get("/login").get_data(as_text=True))
    refused = client.post(
        "/login", data={"csrf_token": token, "phone": "13800138000", "password": "x1x1x1x1"}
    )
    assert refused.status_code == 200
    assert "Wrong number or password." in refused.get_data(as_text=True)
    account = client.get("/account").get_data(as_text=True)
    assert "+86138****8000" in account and 'href="/alisms/account/phone"' in account
    assert api_post(client, "phone/send-code", {"phone": "+8613900139000"}).status_code == 200
    code = sender.last_param("13900139000")
    changed = api_post(client, "phone", {"phone": "+8613900139000", "code": code})
    assert changed.get_json() == {"phone": "+8613900139000"}
    assert "+86139****9000" in client.get("/account").get_data(as_text=True)
