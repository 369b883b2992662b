"""Sign in by code, phone change, per-purpose templates and test numbers, through the real SDK
against the emulator, as JSON and as HTML."""

from __future__ import annotations

import re
import statistics
import time
from typing import Any

import pytest
import sqlalchemy as sa
from flask import session

from flask_alisms import signals
from flask_alisms.exceptions import InvalidParameter
from flask_alisms.testing import DysmsapiEmulator

from .conftest import OTHER_PHONE, PHONE, Host, api_post, csrf_token, form_token
from .test_i18n_pages import LANGUAGES, check_page

NOTICE_TEMPLATE = "SMS_200000001"  # the emulator's template without variables
LOGIN_TEMPLATE = "SMS_300000001"
TEST_NUMBER = "+8613700137000"
TEST_CODE = "246810"


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


def _add_user(host: Host, phone: str = PHONE, password_hash: str | None = "x") -> int:  # noqa: S107
    with host.app.app_context():
        user = host.User(phone=phone, password_hash=password_hash)
        host.db.session.add(user)
        host.db.session.commit()
        return int(user.id)


def _users(host: Host) -> list[tuple[str, str | None]]:
    return [tuple(row) for row in host.query(sa.select(host.User.phone, host.User.password_hash))]


def _log(host: Host) -> list[tuple[str, str, str]]:
    log = host.models.SendLog
    rows = host.query(sa.select(log.purpose, log.sender, log.category).order_by(log.id))
    return [tuple(row) for row in rows]


@pytest.fixture
def login_host(ready_host: Host) -> Host:
    ready_host.set_params(server__enable_mobile_login="true")
    return ready_host


def _with_user_loader(host: Host) -> Host:
    @host.alisms.current_user_loader
    def load_user() -> Any:
        user_id = session.get("user_id")
        return host.db.session.get(host.User, user_id) if user_id is not None else None

    return host


def _signed_in_client(host: Host, user_id: int) -> Any:
    client = host.client()
    with client.session_transaction() as sess:
        sess["user_id"] = user_id
    return client


# -- sign in by code: JSON ---------------------------------------------------------------------


def test_login_is_off_by_default_and_answers_403(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    _add_user(ready_host)
    client = ready_host.client()
    response = api_post(client, "send-code", {"phone": PHONE, "purpose": "login"})
    assert response.status_code == 403
    assert response.get_json()["error"] == "login_disabled"
    response = api_post(client, "login", {"phone": PHONE, "code": "123456"})
    assert response.status_code == 403
    assert response.get_json()["error"] == "login_disabled"
    assert emulator.messages == [] and _log(ready_host) == []


def test_login_switch_refused_while_aliyun_is_incomplete(host: Host) -> None:
    with pytest.raises(InvalidParameter) as caught:
        host.set_params(server__enable_mobile_login="true")
    assert caught.value.key == "server.enable_mobile_login"
    with host.app.app_context():
        assert host.alisms.params.values().enable_mobile_login is False
    response = host.client("root").post("/alisms/admin/", data={})
    assert response.status_code in (200, 400)  # the panel still renders
    host.configure_sms(open_registration=False)
    host.set_params(server__enable_mobile_login="true")
    with host.app.app_context():
        assert host.alisms.mobile_login_open()
    assert host.client().get("/alisms/api/status").get_json()["mobile_login_open"] is True


def test_login_by_code_end_to_end(login_host: Host, emulator: DysmsapiEmulator) -> None:
    user_id = _add_user(login_host)
    client = login_host.client()
    with client.session_transaction() as sess:
        sess["planted_by_attacker"] = "x"
    response = api_post(client, "send-code", {"phone": PHONE, "purpose": "login"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"sent": True, "resend_after": 60}
    code = emulator.last_param("13800138000")

    response = api_post(client, "login", {"phone": PHONE, "code": _wrong(code)})
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_code"
    assert client.get("/whoami").get_json() == {"user_id": None}

    response = api_post(client, "login", {"phone": PHONE, "code": code})
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert isinstance(answer.pop("csrf_token"), str)  # the renewed session's token
    assert answer == {"user_id": user_id, "created": False}
    assert client.get("/whoami").get_json() == {"user_id": user_id}
    with client.session_transaction() as sess:
        assert "planted_by_attacker" not in sess
    # Single use.
    response = api_post(client, "login", {"phone": PHONE, "code": code})
    assert response.status_code == 400


def test_login_resend_is_429(login_host: Host, emulator: DysmsapiEmulator) -> None:
    _add_user(login_host)
    client = login_host.client()
    assert api_post(client, "send-code", {"phone": PHONE, "purpose": "login"}).status_code == 200
    response = api_post(client, "send-code", {"phone": PHONE, "purpose": "login"})
    assert response.status_code == 429
    assert response.get_json()["error"] == "rate_limited"
    assert int(response.headers["Retry-After"]) > 0
    assert len(emulator.messages) == 1


def test_too_many_wrong_codes_is_429(login_host: Host, emulator: DysmsapiEmulator) -> None:
    login_host.set_params(limits__verify_per_hour="2")
    _add_user(login_host)
    client = login_host.client()
    api_post(client, "send-code", {"phone": PHONE, "purpose": "login"})
    code = emulator.last_param("13800138000")
    for _ in range(2):
        assert api_post(client, "login", {"phone": PHONE, "code": _wrong(code)}).status_code == 400
    response = api_post(client, "login", {"phone": PHONE, "code": code})
    assert response.status_code == 429
    assert response.get_json()["error"] == "rate_limited"


def test_unknown_number_without_auto_register_is_answered_alike(
    login_host: Host, emulator: DysmsapiEmulator
) -> None:
    _add_user(login_host, PHONE)
    answers = []
    for phone in (PHONE, OTHER_PHONE):
        client = login_host.client()
        sent = api_post(client, "send-code", {"phone": phone, "purpose": "login"})
        refused = api_post(client, "login", {"phone": phone, "code": "000000"})
        answers.append(
            (sent.status_code, sent.get_json(), refused.status_code, refused.get_json())
        )
    assert answers[0] == answers[1]
    assert [m.phone_numbers for m in emulator.messages] == ["13800138000"]
    assert _log(login_host) == [("login", "aliyun", "sent"), ("login", "none", "skipped")]
    assert _users(login_host) == [(PHONE, "x")]


def test_auto_register_creates_the_account_without_password(
    login_host: Host, emulator: DysmsapiEmulator
) -> None:
    login_host.set_params(login__auto_register="true")
    seen: list[dict[str, Any]] = []

    def receiver(sender: Any, **extra: Any) -> None:
        seen.append(extra)

    client = login_host.client()
    with signals.user_signed_in.connected_to(receiver), signals.user_registered.connected_to(
        receiver
    ):
        sent = api_post(client, "send-code", {"phone": PHONE, "purpose": "login"})
        assert sent.status_code == 200
        code = emulator.last_param("13800138000")
        response = api_post(client, "login", {"phone": PHONE, "code": code})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["created"] is True
    assert _users(login_host) == [(PHONE, None)]
    assert client.get("/whoami").get_json() == {"user_id": body["user_id"]}
    assert {"phone": PHONE, "purpose": "login", "user_id": body["user_id"]} in seen
    assert {
        "phone": PHONE,
        "purpose": "login",
        "user_id": body["user_id"],
        "created": True,
    } in seen
    assert all(code not in str(extra) for extra in seen)


def test_auto_register_needs_registration_open(
    login_host: Host, emulator: DysmsapiEmulator
) -> None:
    login_host.set_params(login__auto_register="true", server__allow_user_register="false")
    client = login_host.client()
    assert api_post(client, "send-code", {"phone": PHONE, "purpose": "login"}).status_code == 200
    assert emulator.messages == []
    assert api_post(client, "login", {"phone": PHONE, "code": "000000"}).status_code == 400
    assert _users(login_host) == []


def test_bad_input_is_refused_and_writes_nothing(
    login_host: Host, emulator: DysmsapiEmulator
) -> None:
    client = login_host.client()
    cases = [
        ("send-code", {"phone": "12", "purpose": "login"}, 400, "invalid_phone"),
        ("send-code", {"phone": PHONE, "purpose": "change_phone"}, 400, "invalid_purpose"),
        ("send-code", {"phone": PHONE, "purpose": ["login"]}, 400, "invalid_purpose"),
        ("login", {"phone": "+1 nope", "code": "123456"}, 400, "invalid_phone"),
        ("login", {"code": "123456"}, 400, "invalid_phone"),
        ("phone/send-code", {"phone": 5}, 400, "invalid_phone"),
    ]
    for path, payload, status, error in cases:
        response = api_post(client, path, payload)
        if path.startswith("phone/"):
            assert response.status_code == 401  # nobody signed in: refused before the phone
            continue
        assert response.status_code == status, (path, payload, response.get_json())
        assert response.get_json()["error"] == error
    response = client.post("/alisms/api/login", data="[]", content_type="application/json")
    assert response.status_code == 400
    response = client.post("/alisms/api/login", json={"phone": PHONE, "code": "123456"})
    assert response.get_json()["error"] == "csrf_failed"
    assert emulator.messages == [] and _log(login_host) == [] and _users(login_host) == []


# -- per-purpose templates and test numbers ------------------------------------------------------


def test_each_purpose_uses_its_template_or_the_common_one(
    login_host: Host, emulator: DysmsapiEmulator
) -> None:
    emulator.templates[LOGIN_TEMPLATE] = ("code",)
    login_host.set_params(aliyun__sms__template_code__login=LOGIN_TEMPLATE)
    _add_user(login_host)
    client = login_host.client()
    api_post(client, "send-code", {"phone": PHONE, "purpose": "login"})
    api_post(client, "send-code", {"phone": OTHER_PHONE, "purpose": "register"})
    assert [m.template_code for m in emulator.messages] == [LOGIN_TEMPLATE, "SMS_154950909"]
    with pytest.raises(InvalidParameter):
        login_host.set_params(aliyun__sms__template_code__reset="nope")

    html = login_host.client("root").get("/alisms/admin/").get_data(as_text=True)
    assert "aliyun.sms.template_code.login" in html
    assert f"Uses {LOGIN_TEMPLATE}." in html
    assert "Uses SMS_154950909." in html


def test_test_numbers_never_reach_aliyun_but_are_limited(
    login_host: Host, emulator: DysmsapiEmulator
) -> None:
    login_host.set_params(phone__test_numbers=f"{TEST_NUMBER}={TEST_CODE}")
    user_id = _add_user(login_host, TEST_NUMBER)
    sent: list[dict[str, Any]] = []
    test_sent: list[dict[str, Any]] = []

    def on_sent(sender: Any, **extra: Any) -> None:
        sent.append(extra)

    def on_test(sender: Any, **extra: Any) -> None:
        test_sent.append(extra)

    client = login_host.client()
    with signals.code_sent.connected_to(on_sent), signals.test_code_sent.connected_to(on_test):
        response = api_post(client, "send-code", {"phone": TEST_NUMBER, "purpose": "login"})
        assert response.status_code == 200
        again = api_post(client, "send-code", {"phone": TEST_NUMBER, "purpose": "login"})
    assert again.status_code == 429
    assert emulator.messages == []
    assert sent == [] and test_sent == [{"phone": TEST_NUMBER, "purpose": "login"}]
    assert _log(login_host) == [("login", "test-number", "test_number")]
    response = api_post(client, "login", {"phone": TEST_NUMBER, "code": TEST_CODE})
    answer = response.get_json()
    assert isinstance(answer.pop("csrf_token"), str)  # the renewed session's token
    assert answer == {"user_id": user_id, "created": False}

    html = login_host.client("root").get("/alisms/admin/").get_data(as_text=True)
    assert "Test numbers are active" in html and "+86137****7000" in html
    log_page = login_host.client("root").get("/alisms/admin/log?category=test_number")
    assert log_page.status_code == 200 and "test-number" in log_page.get_data(as_text=True)


def test_test_numbers_parameter_is_checked(host: Host) -> None:
    for bad in ("+8613700137000", "+8613700137000=12", "nonsense=123456"):
        with pytest.raises(InvalidParameter):
            host.set_params(phone__test_numbers=bad)
    host.set_params(phone__test_numbers="13700137000=1234 ,+8613700137001=987654")
    with host.app.app_context():
        values = host.alisms.params.values()
        assert values.test_code("+8613700137000") == "1234"
        assert values.test_code("+8613700137001") == "987654"
        assert values.test_code(PHONE) is None
    html = host.client("root").get("/alisms/admin/").get_data(as_text=True)
    assert "Test numbers are active" in html


# -- phone change: JSON ------------------------------------------------------------------------


def test_phone_change_needs_a_signed_in_user(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    _with_user_loader(ready_host)
    client = ready_host.client()
    for path, payload in (
        ("phone/send-code", {"phone": OTHER_PHONE}),
        ("phone", {"phone": OTHER_PHONE, "code": "123456"}),
    ):
        response = api_post(client, path, payload)
        assert response.status_code == 401
        assert response.get_json()["error"] == "not_signed_in"
    page = client.get("/alisms/account/phone")
    assert page.status_code == 401
    assert emulator.messages == [] and _log(ready_host) == []


def test_phone_change_bad_input_writes_nothing(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    user_id = _add_user(_with_user_loader(ready_host))
    client = _signed_in_client(ready_host, user_id)
    for path, payload in (
        ("phone/send-code", {"phone": "12"}),
        ("phone/send-code", {"phone": ["+8613900139000"]}),
        ("phone/send-code", {"phone": "+1 202 555 0100"}),
        ("phone", {"phone": "nope", "code": "123456"}),
        ("phone", {"code": "123456"}),
    ):
        response = api_post(client, path, payload)
        assert response.status_code == 400, (path, payload)
        assert response.get_json()["error"] in ("invalid_phone", "country_not_allowed")
    response = api_post(client, "phone", {"phone": OTHER_PHONE, "code": {"x": 1}})
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_code"
    response = client.post("/alisms/api/phone", data="nonsense", content_type="application/json")
    assert response.status_code == 400
    assert emulator.messages == [] and _log(ready_host) == []
    assert _users(ready_host) == [(PHONE, "x")]


def test_phone_change_end_to_end_with_notice(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    ready_host.set_params(aliyun__sms__phone_changed_template_code=NOTICE_TEMPLATE)
    user_id = _add_user(_with_user_loader(ready_host))
    seen: list[dict[str, Any]] = []

    def receiver(sender: Any, **extra: Any) -> None:
        seen.append(extra)

    client = _signed_in_client(ready_host, user_id)
    response = api_post(client, "phone/send-code", {"phone": OTHER_PHONE})
    assert response.status_code == 200, response.get_json()
    code = emulator.last_param("13900139000")
    response = api_post(client, "phone", {"phone": OTHER_PHONE, "code": _wrong(code)})
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_code"
    with signals.phone_changed.connected_to(receiver):
        response = api_post(client, "phone", {"phone": OTHER_PHONE, "code": code})
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"phone": OTHER_PHONE}
    assert _users(ready_host) == [(OTHER_PHONE, "x")]
    assert seen == [{"phone": OTHER_PHONE, "old_phone": PHONE, "user_id": user_id}]
    notice = emulator.last_message("13800138000")
    assert notice is not None and notice.template_code == NOTICE_TEMPLATE
    assert notice.template_param == {}
    assert [row[0] for row in _log(ready_host)] == ["change_phone", "phone_changed"]


def test_phone_taken_is_told_only_after_the_code(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    user_id = _add_user(_with_user_loader(ready_host), PHONE)
    _add_user(ready_host, OTHER_PHONE)
    client = _signed_in_client(ready_host, user_id)
    response = api_post(client, "phone/send-code", {"phone": OTHER_PHONE})
    assert response.get_json() == {"sent": True, "resend_after": 60}
    code = emulator.last_param("13900139000")
    response = api_post(client, "phone", {"phone": OTHER_PHONE, "code": _wrong(code)})
    assert response.status_code == 400
    response = api_post(client, "phone", {"phone": OTHER_PHONE, "code": code})
    assert response.status_code == 409 and response.get_json()["error"] == "phone_taken"
    assert sorted(_users(ready_host)) == sorted([(PHONE, "x"), (OTHER_PHONE, "x")])


def test_recent_sign_in_hook(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    user_id = _add_user(_with_user_loader(ready_host))
    fresh = {"ok": False}
    ready_host.alisms.recent_sign_in_check(lambda: fresh["ok"])
    client = _signed_in_client(ready_host, user_id)
    response = api_post(client, "phone/send-code", {"phone": OTHER_PHONE})
    assert response.status_code == 401
    assert response.get_json()["error"] == "reauthentication_required"
    assert emulator.messages == []
    fresh["ok"] = True
    assert api_post(client, "phone/send-code", {"phone": OTHER_PHONE}).status_code == 200


# -- HTML pages --------------------------------------------------------------------------------


def test_login_page_without_javascript(login_host: Host, emulator: DysmsapiEmulator) -> None:
    user_id = _add_user(login_host)
    client = login_host.client()
    page = client.get("/alisms/login")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Sign in with an SMS code" in html and 'name="password"' not in html
    token = form_token(html)
    form = {"csrf_token": token, "country_code": "86", "phone": "13800138000"}
    sent = client.post("/alisms/login", data={**form, "send": "1"})
    assert sent.status_code == 200
    assert 'data-resend-after="60"' in sent.get_data(as_text=True)
    code = emulator.last_param("13800138000")
    wrong = client.post("/alisms/login", data={**form, "code": _wrong(code), "submit": "1"})
    assert wrong.status_code == 400
    assert "The code is wrong or has expired" in wrong.get_data(as_text=True)
    done = client.post("/alisms/login?next=/home", data={**form, "code": code, "submit": "1"})
    assert done.status_code == 302 and done.headers["Location"] == "/home"
    assert client.get("/whoami").get_json() == {"user_id": user_id}


def test_login_page_closed_and_links(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    client = ready_host.client()
    page = client.get("/alisms/login")
    assert "Sign-in by SMS code is not available" in page.get_data(as_text=True)
    assert "/alisms/login" not in client.get("/alisms/register").get_data(as_text=True)
    posted = client.post("/alisms/login", data={"phone": "13800138000", "send": "1"})
    assert posted.status_code == 403 and emulator.messages == []
    ready_host.set_params(server__enable_mobile_login="true")
    assert 'href="/alisms/login"' in client.get("/alisms/register").get_data(as_text=True)
    assert 'href="/alisms/login"' in client.get("/alisms/reset-password").get_data(as_text=True)


def test_phone_page_changes_the_number(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    user_id = _add_user(_with_user_loader(ready_host))
    client = _signed_in_client(ready_host, user_id)
    page = client.get("/alisms/account/phone")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "+86138****8000" in html and PHONE not in html
    form = {"csrf_token": form_token(html), "country_code": "86", "phone": "13900139000"}
    assert client.post("/alisms/account/phone", data={**form, "send": "1"}).status_code == 200
    code = emulator.last_param("13900139000")
    done = client.post("/alisms/account/phone", data={**form, "code": code, "submit": "1"})
    assert done.status_code == 302
    assert _users(ready_host) == [(OTHER_PHONE, "x")]
    assert "+86139****9000" in client.get(done.headers["Location"]).get_data(as_text=True)


def test_phone_page_says_taken_after_the_code(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    user_id = _add_user(_with_user_loader(ready_host))
    _add_user(ready_host, OTHER_PHONE)
    client = _signed_in_client(ready_host, user_id)
    html = client.get("/alisms/account/phone").get_data(as_text=True)
    form = {"csrf_token": form_token(html), "country_code": "86", "phone": "13900139000"}
    assert client.post("/alisms/account/phone", data={**form, "send": "1"}).status_code == 200
    code = emulator.last_param("13900139000")
    taken = client.post("/alisms/account/phone", data={**form, "code": code, "submit": "1"})
    assert taken.status_code == 409
    page = taken.get_data(as_text=True)
    assert 'id="phone-errors"' in page and "belongs to another account" in page
    assert sorted(_users(ready_host)) == sorted([(PHONE, "x"), (OTHER_PHONE, "x")])


def test_cli_check_tells_sign_in_and_test_numbers(login_host: Host) -> None:
    runner = login_host.app.test_cli_runner()
    result = runner.invoke(args=["alisms", "check"])
    assert result.exit_code == 0, result.output
    assert "Sign-in by SMS code: on" in result.output
    assert "test number" not in result.output
    login_host.set_params(phone__test_numbers=f"{TEST_NUMBER}={TEST_CODE}")
    result = runner.invoke(args=["alisms", "check"])
    assert "Warning: 1 test number(s)" in result.output
    assert TEST_NUMBER not in result.output and TEST_CODE not in result.output


def test_phone_change_notice_to_a_test_number_stays_local(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    ready_host.set_params(
        aliyun__sms__phone_changed_template_code=NOTICE_TEMPLATE,
        phone__test_numbers=f"{TEST_NUMBER}={TEST_CODE}",
    )
    user_id = _add_user(_with_user_loader(ready_host), TEST_NUMBER)
    client = _signed_in_client(ready_host, user_id)
    assert api_post(client, "phone/send-code", {"phone": OTHER_PHONE}).status_code == 200
    code = emulator.last_param("13900139000")
    response = api_post(client, "phone", {"phone": OTHER_PHONE, "code": code})
    assert response.get_json() == {"phone": OTHER_PHONE}
    assert [m.phone_numbers for m in emulator.messages] == ["13900139000"]
    assert _log(ready_host)[-1] == ("phone_changed", "test-number", "test_number")


def test_same_number_again_is_no_change(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    ready_host.set_params(aliyun__sms__phone_changed_template_code=NOTICE_TEMPLATE)
    user_id = _add_user(_with_user_loader(ready_host))
    client = _signed_in_client(ready_host, user_id)
    api_post(client, "phone/send-code", {"phone": PHONE})
    code = emulator.last_param("13800138000")
    assert api_post(client, "phone", {"phone": PHONE, "code": code}).get_json() == {"phone": PHONE}
    assert len(emulator.messages) == 1  # the code; no notice to the very same number
    assert _users(ready_host) == [(PHONE, "x")]


def test_host_adapter_failure_is_a_clean_error(
    login_host: Host, emulator: DysmsapiEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    login_host.set_params(login__auto_register="true")
    adapter = login_host.app.extensions["alisms"].user_adapter

    def broken(*args: Any) -> Any:
        raise RuntimeError("database is gone")

    monkeypatch.setattr(adapter, "create_user", broken)
    client = login_host.client()
    api_post(client, "send-code", {"phone": PHONE, "purpose": "login"})
    code = emulator.last_param("13800138000")
    response = api_post(client, "login", {"phone": PHONE, "code": code})
    assert response.status_code == 503
    assert response.get_json()["error"] == "registration_failed"
    assert client.get("/whoami").get_json() == {"user_id": None}
    assert _users(login_host) == []


def test_login_send_code_takes_as_long_without_an_account(
    login_host: Host, emulator: DysmsapiEmulator
) -> None:
    """Numbers without an account get no SMS; their answer must not come measurably faster
    (same bound as the registration test in test_security.py)."""
    login_host.set_params(limits__ip_per_hour="100000")
    rounds = 12
    known = [f"+86138{n:08d}" for n in range(20_000_000, 20_000_000 + rounds + 4)]
    for phone in known:
        _add_user(login_host, phone)
    unknown = [f"+86138{n:08d}" for n in range(30_000_000, 30_000_000 + rounds)]
    client = login_host.client()
    token = csrf_token(client)
    for phone in known[rounds:]:  # warm up the connection and the moving average
        api_post(client, "send-code", {"phone": phone, "purpose": "login"}, token=token)
    timings: dict[str, list[float]] = {"known": [], "unknown": []}
    bodies = set()
    for with_account, without in zip(known, unknown):
        for kind, phone in (("known", with_account), ("unknown", without)):
            started = time.perf_counter()
            payload = {"phone": phone, "purpose": "login"}
            response = api_post(client, "send-code", payload, token=token)
            timings[kind].append(time.perf_counter() - started)
            assert response.status_code == 200
            bodies.add(response.get_data())
    assert len(bodies) == 1
    assert len(emulator.messages) == rounds + 4
    slow, fast = sorted((statistics.median(v) for v in timings.values()), reverse=True)
    assert slow <= 3 * fast or slow - fast <= 0.050, timings


# -- the new pages in every language -----------------------------------------------------------


@pytest.mark.parametrize("header", sorted(LANGUAGES))
def test_new_pages_are_translated(
    make_host: Any, emulator: DysmsapiEmulator, header: str
) -> None:
    host = make_host()
    locale = LANGUAGES[header]
    client = host.client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = header
    check_page(client.get("/alisms/login").get_data(as_text=True), locale, "login closed")
    host.configure_sms()
    host.set_params(server__enable_mobile_login="true", phone__test_numbers="13700137000=1234")
    user_id = _add_user(_with_user_loader(host))

    def post(path: str, **fields: str) -> Any:
        token = form_token(client.get(path).get_data(as_text=True))
        return client.post(path, data={"csrf_token": token, "country_code": "86", **fields})

    check_page(client.get("/alisms/login").get_data(as_text=True), locale, "login")
    check_page(client.get("/alisms/register").get_data(as_text=True), locale, "register")
    sent = post("/alisms/login", phone="13800138000", send="1")
    check_page(sent.get_data(as_text=True), locale, "login, code sent")
    wrong = post("/alisms/login", phone="13800138000", code="000000", submit="1")
    assert wrong.status_code == 400
    check_page(wrong.get_data(as_text=True), locale, "login, wrong code")
    denied = client.get("/alisms/account/phone")
    assert denied.status_code == 401
    check_page(denied.get_data(as_text=True), locale, "phone, not signed in")
    with client.session_transaction() as sess:
        sess["user_id"] = user_id
    check_page(client.get("/alisms/account/phone").get_data(as_text=True), locale, "phone")
    sent = post("/alisms/account/phone", phone="13900139000", send="1")
    check_page(sent.get_data(as_text=True), locale, "phone, code sent")
    admin = host.client("root")
    admin.environ_base["HTTP_ACCEPT_LANGUAGE"] = header
    check_page(admin.get("/alisms/admin/").get_data(as_text=True), locale, "panel")
    response = api_post(client, "login", {"phone": PHONE, "code": "000000"})
    assert response.status_code == 400
    if locale != "en":
        assert re.search(r"[\u4e00-\u9fff]", response.get_json()["message"])
