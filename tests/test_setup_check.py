"""The Aliyun-checked setup: saving parameters (and `flask alisms check --remote`) asks Aliyun,
through the real SDK and the emulator, and the checklist says what it answered."""

from __future__ import annotations

import logging
import re
import socket
import time
from typing import Any

import pytest
import sqlalchemy as sa

from flask_alisms.testing import DysmsapiEmulator

from .conftest import KEY_ID, KEY_SECRET, SIGN, TEMPLATE, Host, form_token
from .test_i18n_pages import form_fields

WRONG_SECRET = "WrongSecretValue0123456789abcd"


def _save(host: Host, **values: str) -> Any:
    client = host.client("root")
    page = client.get("/alisms/admin/")
    data = form_fields(page.get_data(as_text=True))
    data.update(submit="1", **values)
    return client, client.post("/alisms/admin/", data=data, follow_redirects=True)


def _fill(**extra: str) -> dict[str, str]:
    values = {
        "aliyun__sms__sign_name": SIGN,
        "aliyun__sms__sms_code_template_code": TEMPLATE,
        "aliyun__sms__access_key_id": KEY_ID,
        "aliyun__sms__access_key_secret": KEY_SECRET,
    }
    values.update(extra)
    return values


def _checklist(html: str) -> str:
    start = html.index('id="remote-heading"')
    return html[start : html.index("</section>", start)]


def test_saving_good_values_shows_green_remote_lines(
    host: Host, emulator: DysmsapiEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, response = _save(host, **_fill())
    assert response.status_code == 200
    assert KEY_SECRET not in response.get_data(as_text=True) and KEY_SECRET not in caplog.text
    remote = _checklist(response.get_data(as_text=True))
    assert "AccessKey: accepted by Aliyun" in remote
    assert "Signature: approved by Aliyun" in remote
    assert "Template: approved by Aliyun" in remote
    assert "Template text: one variable ${code}" in remote
    assert "您的验证码为${code}" in remote
    assert "check-missing" not in remote and "check-unknown" not in remote
    # One QuerySmsSign and one QuerySmsTemplate; nothing was sent.
    assert emulator.requests_served == 2 and emulator.messages == []


def test_wrong_secret_turns_the_line_red_before_any_send(
    host: Host, emulator: DysmsapiEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, response = _save(host, **_fill(aliyun__sms__access_key_secret=WRONG_SECRET))
    html = response.get_data(as_text=True)
    remote = _checklist(html)
    assert re.search(r"AccessKey: refused by Aliyun</span>\s*<code>InvalidAccessKeySecret<", remote)
    assert "Aliyun does not accept the saved setup" in html
    assert "Signature: could not check" in remote
    assert WRONG_SECRET not in html and WRONG_SECRET not in caplog.text
    assert emulator.messages == []


@pytest.mark.parametrize(
    ("status", "label", "advice"),
    [
        (0, "Template: still under review at Aliyun", "7 to 15 working days"),
        (2, "Template: rejected by Aliyun", "Reason given: 模板内容不规范"),
    ],
)
def test_pending_or_rejected_template_says_so(
    host: Host, emulator: DysmsapiEmulator, status: int, label: str, advice: str
) -> None:
    emulator.set_template_review(TEMPLATE, status, "模板内容不规范")
    _, response = _save(host, **_fill())
    remote = _checklist(response.get_data(as_text=True))
    assert label in remote and advice in remote
    assert "Signature: approved by Aliyun" in remote


def test_unknown_signature_and_wrong_variable(host: Host, emulator: DysmsapiEmulator) -> None:
    emulator.set_template_review(TEMPLATE, content="您的验证码为${number}，5分钟内有效。")
    _, response = _save(host, **_fill(aliyun__sms__sign_name="别家签名"))
    remote = _checklist(response.get_data(as_text=True))
    assert re.search(r"Signature: unknown to Aliyun</span>\s*<code>isv.SMS_SIGN_ILLEGAL<", remote)
    assert "Template text: variables ${number}" in remote
    assert "(now code)" in remote
    # Renaming the variable re-checks, and the line turns green.
    _, response = _save(host, aliyun__sms__template_param_name="number")
    assert "Template text: one variable ${number}" in _checklist(response.get_data(as_text=True))


def test_send_only_key_is_not_red(host: Host, emulator: DysmsapiEmulator) -> None:
    emulator.read_access = False
    _, response = _save(host, **_fill())
    remote = _checklist(response.get_data(as_text=True))
    assert "AccessKey: accepted by Aliyun" in remote
    assert "AliyunDysmsReadOnlyAccess" in remote
    assert "check-missing" not in remote


def test_aliyun_down_saves_fast_and_says_could_not_check(make_host: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    host = make_host(ALISMS_ENDPOINT=f"127.0.0.1:{port}")
    start = time.perf_counter()
    _, response = _save(host, **_fill())
    elapsed = time.perf_counter() - start
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "Saved:" in html
    remote = _checklist(html)
    assert "AccessKey: could not check" in remote and "check-missing" not in remote
    assert "Aliyun does not accept" not in html
    assert elapsed < 5
    with host.app.app_context():
        assert host.alisms.params.values().sign_name == SIGN


def test_a_hanging_aliyun_is_cut_by_the_check_timeout(make_host: Any) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    try:
        host = make_host(
            ALISMS_ENDPOINT=f"127.0.0.1:{listener.getsockname()[1]}",
            ALISMS_READ_TIMEOUT=6.0,
            ALISMS_REMOTE_CHECK_TIMEOUT=0.5,
        )
        start = time.perf_counter()
        _, response = _save(host, **_fill())
        elapsed = time.perf_counter() - start
    finally:
        listener.close()
    assert "AccessKey: could not check" in _checklist(response.get_data(as_text=True))
    assert elapsed < 4  # one call of at most 0.5 s, not the 6 s read timeout


def test_page_reads_the_stored_answer_and_a_change_makes_it_stale(
    host: Host, emulator: DysmsapiEmulator
) -> None:
    client, _ = _save(host, **_fill())
    served = emulator.requests_served
    page = client.get("/alisms/admin/").get_data(as_text=True)
    assert "Template: approved by Aliyun" in _checklist(page)
    assert emulator.requests_served == served  # a page view never calls Aliyun
    with host.app.app_context():
        row = host.db.session.scalars(sa.select(host.models.RemoteCheck)).one()
        assert KEY_SECRET not in row.result and KEY_ID not in row.fingerprint
    host.set_params(aliyun__sms__sms_code_template_code="SMS_200000001")  # outside the panel
    page = client.get("/alisms/admin/").get_data(as_text=True)
    assert "Not checked with Aliyun yet" in _checklist(page)
    # "Check again" asks now.
    token = form_token(page)
    response = client.post(
        "/alisms/admin/check-remote", data={"csrf_token": token}, follow_redirects=True
    )
    remote = _checklist(response.get_data(as_text=True))
    assert "Template: approved by Aliyun" in remote
    assert "Template text: variables —" in remote  # SMS_200000001 has no variable


def test_check_again_needs_an_admin_and_a_token(host: Host, emulator: DysmsapiEmulator) -> None:
    host.configure_sms()
    assert host.client().post("/alisms/admin/check-remote").status_code == 403
    response = host.client("root").post("/alisms/admin/check-remote", data={})
    assert response.status_code == 400
    assert emulator.requests_served == 0


def test_other_senders_show_no_remote_lines(make_host: Any) -> None:
    host = make_host(ALISMS_SENDER="memory")
    host.configure_sms()
    page = host.client("root").get("/alisms/admin/").get_data(as_text=True)
    assert 'id="remote-heading"' not in page
    result = host.app.test_cli_runner().invoke(args=["alisms", "check", "--remote"])
    assert "Aliyun check: skipped" in result.output


@pytest.mark.parametrize("value", [0, -1, "3", True])
def test_check_timeout_must_be_positive_seconds(make_host: Any, value: Any) -> None:
    from flask_alisms.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="ALISMS_REMOTE_CHECK_TIMEOUT"):
        make_host(ALISMS_REMOTE_CHECK_TIMEOUT=value)


def test_cli_check_remote(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    runner = ready_host.app.test_cli_runner()
    result = runner.invoke(args=["alisms", "check", "--remote"])
    assert result.exit_code == 0, result.output
    assert "Aliyun accesskey: ok" in result.output
    assert "Aliyun template_text: ok (variables code)" in result.output
    emulator.set_sign_review(SIGN, 2, "资质不全")
    result = runner.invoke(args=["alisms", "check", "--remote"])
    assert result.exit_code == 1
    assert "Aliyun signature: FAILED (rejected: 资质不全)" in result.output
    ready_host.set_params(aliyun__sms__access_key_secret=WRONG_SECRET)
    result = runner.invoke(args=["alisms", "check", "--remote"])
    assert result.exit_code == 1
    assert "Aliyun accesskey: FAILED (InvalidAccessKeySecret)" in result.output
    assert WRONG_SECRET not in result.output
    # The panel shows what the CLI found.
    page = ready_host.client("root").get("/alisms/admin/").get_data(as_text=True)
    assert "AccessKey: refused by Aliyun" in _checklist(page)


def test_cli_check_remote_when_aliyun_is_down(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    emulator.stop()
    result = ready_host.app.test_cli_runner().invoke(args=["alisms", "check", "--remote"])
    assert "Aliyun accesskey: could not check (SDK.HttpError)" in result.output
    assert result.exit_code == 0, result.output  # not a verdict against the setup


@pytest.mark.parametrize("language", ["zh-CN", "zh-TW"])
def test_remote_lines_and_totals_page_are_translated(
    host: Host, emulator: DysmsapiEmulator, language: str
) -> None:
    from .test_i18n_pages import check_page

    locale = {"zh-CN": "zh_Hans", "zh-TW": "zh_Hant"}[language]
    emulator.set_template_review(TEMPLATE, 2, "模板内容不规范", content="验证码${number}")
    emulator.read_access = True
    host.configure_sms()
    runner = host.app.test_cli_runner()
    runner.invoke(args=["alisms", "check", "--remote"])
    runner.invoke(args=["alisms", "stats", "sync", "--days", "2"])
    client = host.client("root")
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    html = client.get("/alisms/admin/").get_data(as_text=True)
    assert "模板内容不规范" in html
    check_page(html, locale, "parameters with Aliyun lines")
    check_page(client.get("/alisms/admin/reconciliation").get_data(as_text=True), locale, "totals")
    emulator.set_sign_review(SIGN, 0)
    host.set_params(aliyun__sms__sign_name="别家签名")
    runner.invoke(args=["alisms", "check", "--remote"])
    check_page(client.get("/alisms/admin/").get_data(as_text=True), locale, "unknown sign")
    host.set_params(aliyun__sms__sign_name=SIGN)
    runner.invoke(args=["alisms", "check", "--remote"])
    check_page(client.get("/alisms/admin/").get_data(as_text=True), locale, "pending sign")
    host.set_params(aliyun__sms__access_key_secret="WrongSecretValue000000000000")
    runner.invoke(args=["alisms", "check", "--remote"])
    check_page(client.get("/alisms/admin/").get_data(as_text=True), locale, "wrong key")
    emulator.read_access = False
    host.set_params(aliyun__sms__access_key_secret=KEY_SECRET)
    runner.invoke(args=["alisms", "check", "--remote"])
    check_page(client.get("/alisms/admin/").get_data(as_text=True), locale, "read access")
    emulator.stop()
    runner.invoke(args=["alisms", "check", "--remote"])
    check_page(client.get("/alisms/admin/").get_data(as_text=True), locale, "could not check")


def test_saving_other_parameters_does_not_ask_again(host: Host, emulator: DysmsapiEmulator) -> None:
    _save(host, **_fill())
    served = emulator.requests_served
    _, response = _save(host, sms__code_length="4")
    assert "Saved: sms.code_length" in response.get_data(as_text=True)
    assert emulator.requests_served == served
    assert "Template: approved by Aliyun" in _checklist(response.get_data(as_text=True))
