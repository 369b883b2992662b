"""The HTML pages: registration and reset without JavaScript, test SMS and the send log."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from flask_alisms.testing import DysmsapiEmulator

from .conftest import KEY_SECRET, PHONE, Host, csrf_token, form_token

REGISTER = "/alisms/register"


def _post(client: Any, path: str, **fields: str) -> Any:
    token = form_token(client.get(path).get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, "country_code": "86", **fields})


def test_register_page_flow_without_javascript(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    client = ready_host.client()
    page = client.get(REGISTER)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'name="phone"' in html and 'name="code"' in html and 'name="send"' in html

    sent = _post(client, REGISTER, phone="13800138000", send="Send code")
    assert sent.status_code == 200
    assert 'data-resend-after="60"' in sent.get_data(as_text=True)
    code = emulator.last_param("13800138000")

    wrong = _post(
        client,
        REGISTER,
        phone="13800138000",
        code="000000" if code != "000000" else "111111",
        password="good pass 1",
        submit="Register",
    )
    assert wrong.status_code == 400
    assert "wrong or has expired" in wrong.get_data(as_text=True)

    done = _post(
        client, REGISTER, phone="13800138000", code=code, password="good pass 1", submit="Register"
    )
    assert done.status_code == 302
    assert done.headers["Location"] == "/"
    assert ready_host.query(sa.select(ready_host.User.phone)) == [(PHONE,)]
    assert client.get("/whoami").get_json()["user_id"] is not None


def test_register_page_refuses_open_redirects(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    client = ready_host.client()
    _post(client, REGISTER, phone="13800138000", send="Send code")
    code = emulator.last_param("13800138000")
    path = REGISTER + "?next=//evil.example/steal"
    token = form_token(client.get(path).get_data(as_text=True))
    done = client.post(
        path,
        data={
            "csrf_token": token,
            "country_code": "86",
            "phone": "13800138000",
            "code": code,
            "password": "good pass 1",
            "submit": "Register",
        },
    )
    assert done.status_code == 302
    assert done.headers["Location"] == "/"


def test_register_page_shows_throttling(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    client = ready_host.client()
    assert _post(client, REGISTER, phone="13800138000", send="Send code").status_code == 200
    again = _post(client, REGISTER, phone="13800138000", send="Send code")
    assert again.status_code == 429
    assert "Too many codes" in again.get_data(as_text=True)
    assert len(emulator.messages) == 1


def test_register_page_says_plainly_when_closed(host: Host, emulator: DysmsapiEmulator) -> None:
    host.configure_sms(open_registration=False)
    client = host.client()
    page = client.get(REGISTER)
    assert "Registration by phone is closed" in page.get_data(as_text=True)
    response = client.post(
        REGISTER,
        data={
            "csrf_token": csrf_token(client),
            "country_code": "86",
            "phone": "13800138000",
            "send": "Send code",
        },
    )
    assert response.status_code == 403
    assert "Registration by phone is closed" in response.get_data(as_text=True)
    assert emulator.messages == []


def test_register_form_needs_csrf(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    response = ready_host.client().post(
        REGISTER, data={"country_code": "86", "phone": "13800138000", "send": "Send code"}
    )
    assert response.status_code == 400
    assert emulator.messages == []


def test_bad_phone_is_a_form_error(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    response = _post(ready_host.client(), REGISTER, phone="12", send="Send code")
    assert response.status_code == 400
    assert "not a valid phone number" in response.get_data(as_text=True)
    assert emulator.messages == []


def test_reset_page_flow(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    client = ready_host.client()
    _post(client, REGISTER, phone="13800138000", send="Send code")
    _post(
        client,
        REGISTER,
        phone="13800138000",
        code=emulator.last_param("13800138000"),
        password="good pass 1",
        submit="Register",
    )
    emulator.advance_time(3600)
    with ready_host.app.app_context():
        ready_host.app.extensions["alisms"].throttle.reset()
    path = "/alisms/reset-password"
    assert _post(client, path, phone="13800138000", send="Send code").status_code == 200
    done = _post(
        client,
        path,
        phone="13800138000",
        code=emulator.last_param("13800138000"),
        password="other pass 2",
        submit="Set new password",
    )
    assert done.status_code == 302


def test_admin_test_sms_shows_outcome_and_advice(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    client = ready_host.client(admin="root")
    path = "/alisms/admin/test-sms"
    ok = _post(client, path, phone="13800138000", send="Send test SMS")
    assert ok.status_code == 200
    html = ok.get_data(as_text=True)
    assert "OK" in html and emulator.messages[-1].biz_id in html
    code = emulator.last_param("13800138000")
    assert code not in html

    emulator.fail_next("isv.SMS_SIGNATURE_ILLEGAL", "签名不合法")
    failed = _post(client, path, phone="13900139000", send="Send test SMS")
    assert failed.status_code == 502
    html = failed.get_data(as_text=True)
    assert "isv.SMS_SIGNATURE_ILLEGAL" in html
    assert "aliyun.sms.sign_name" in html  # the advice names what to fix
    assert KEY_SECRET not in html


def test_cli_send_test(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    runner = ready_host.app.test_cli_runner()
    result = runner.invoke(args=["alisms", "send-test", "+8613800138000"])
    assert result.exit_code == 0, result.output
    assert "Code: OK" in result.output and emulator.messages[-1].biz_id in result.output
    assert emulator.last_param("13800138000") not in result.output
    emulator.fail_next("isv.SMS_TEMPLATE_ILLEGAL")
    failed = runner.invoke(args=["alisms", "send-test", "+8613900139000"])
    assert failed.exit_code != 0
    assert "isv.SMS_TEMPLATE_ILLEGAL" in failed.output
    assert "aliyun.sms.sms_code_template_code" in failed.output
    bad = runner.invoke(args=["alisms", "send-test", "not-a-phone"])
    assert bad.exit_code != 0


def test_send_log_page_filters_and_summary(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    client = ready_host.client(admin="root")
    path = "/alisms/admin/test-sms"
    _post(client, path, phone="13800138000", send="Send test SMS")
    emulator.fail_next("isp.RAM_PERMISSION_DENY")
    _post(client, path, phone="13900139000", send="Send test SMS")
    page = client.get("/alisms/admin/log")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "+86138****8000" in html and "isp.RAM_PERMISSION_DENY" in html
    only_failed = client.get("/alisms/admin/log?category=permission").get_data(as_text=True)
    assert "isp.RAM_PERMISSION_DENY" in only_failed and "+86138****8000" not in only_failed
    by_phone = client.get("/alisms/admin/log?phone=8000").get_data(as_text=True)
    assert "+86138****8000" in by_phone and "+86139****9000" not in by_phone
    bad = client.get("/alisms/admin/log?phone=abc&days=999")
    assert bad.status_code == 400
    assert 'id="phone-errors"' in bad.get_data(as_text=True)  # shown next to the field


def test_cli_purge_removes_old_rows(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    runner = ready_host.app.test_cli_runner()
    runner.invoke(args=["alisms", "send-test", "+8613800138000"])
    log = ready_host.models.SendLog
    with ready_host.app.app_context():
        import datetime as dt

        from flask_alisms.models import utcnow

        ready_host.db.session.execute(
            sa.update(log).values(created_at=utcnow() - dt.timedelta(days=40))
        )
        ready_host.db.session.commit()
    assert runner.invoke(args=["alisms", "purge", "--older-than", "30d"]).exit_code == 0
    assert ready_host.count(log) == 0
    assert runner.invoke(args=["alisms", "purge", "--older-than", "soon"]).exit_code != 0


def test_send_code_does_not_demand_the_hosts_other_fields(
    make_host: Any, emulator: DysmsapiEmulator
) -> None:
    from wtforms import StringField
    from wtforms.validators import InputRequired

    from flask_alisms.web.forms import RegisterForm

    class StrictForm(RegisterForm):
        nickname = StringField("Nickname", validators=[InputRequired()])

    host = make_host(alisms_options={"register_form": StrictForm})
    host.configure_sms()
    client = host.client()
    sent = _post(client, REGISTER, phone="13800138000", send="Send code")
    assert sent.status_code == 200
    assert len(emulator.messages) == 1
    code = emulator.last_param("13800138000")
    missing = _post(
        client, REGISTER, phone="13800138000", code=code, password="good pass 1", submit="Register"
    )
    assert missing.status_code == 400
    assert host.count(host.User) == 0
