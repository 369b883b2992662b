"""The account queries (QuerySmsSign/Template, Get*, QuerySendStatistics) through the real SDK
against the emulator: every answer the setup check and the reconciliation rely on."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
import time
from typing import Any

import pytest

from flask_alisms.sms import AliyunSender, Category, Credentials
from flask_alisms.sms.account import AccountQueries
from flask_alisms.testing import DysmsapiEmulator

from .conftest import KEY_ID, KEY_SECRET, SIGN, TEMPLATE

GOOD = Credentials(KEY_ID, KEY_SECRET)


@pytest.fixture
def queries(emulator: DysmsapiEmulator) -> AccountQueries:
    return AccountQueries(AliyunSender(endpoint=emulator.endpoint))


@pytest.mark.parametrize("newer", [False, True])
def test_sign_states(queries: AccountQueries, emulator: DysmsapiEmulator, newer: bool) -> None:
    review = queries.sign(GOOD, SIGN, newer_api=newer)
    assert review.exists and review.state == "approved" and review.reason == ""
    emulator.set_sign_review(SIGN, 0)
    assert queries.sign(GOOD, SIGN, newer_api=newer).state == "pending"
    emulator.set_sign_review(SIGN, 2, "证明文件不清晰")
    review = queries.sign(GOOD, SIGN, newer_api=newer)
    assert (review.state, review.reason) == ("rejected", "证明文件不清晰")
    missing = queries.sign(GOOD, "别人的签名", newer_api=newer)
    assert not missing.exists and missing.state is None
    assert missing.answer.code == "isv.SMS_SIGN_ILLEGAL"
    assert missing.answer.reached and missing.answer.category is Category.SIGNATURE


@pytest.mark.parametrize("newer", [False, True])
def test_template_states(queries: AccountQueries, emulator: DysmsapiEmulator, newer: bool) -> None:
    review = queries.template(GOOD, TEMPLATE, newer_api=newer)
    assert review.state == "approved"
    assert review.content is not None and "${code}" in review.content
    assert review.template_type == 0
    emulator.set_template_review(TEMPLATE, 0, content="您的验证码为${number}")
    review = queries.template(GOOD, TEMPLATE, newer_api=newer)
    assert (review.state, review.content) == ("pending", "您的验证码为${number}")
    emulator.set_template_review(TEMPLATE, 2, "模板内容不规范")
    review = queries.template(GOOD, TEMPLATE, newer_api=newer)
    assert (review.state, review.reason) == ("rejected", "模板内容不规范")
    missing = queries.template(GOOD, "SMS_999999", newer_api=newer)
    assert missing.answer.code == "isv.SMS_TEMPLATE_ILLEGAL" and missing.state is None


@pytest.mark.parametrize(
    ("credentials", "code"),
    [
        (Credentials(KEY_ID, "WrongSecret000000000000000000"), "InvalidAccessKeySecret"),
        (Credentials("LTAI5tUnknownKey", KEY_SECRET), "InvalidAccessKeyId.NotFound"),
    ],
)
def test_wrong_key_is_refused_and_secret_stays_out(
    queries: AccountQueries, credentials: Credentials, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    review = queries.sign(credentials, SIGN)
    assert review.answer.code == code
    assert review.answer.key_refused and not review.answer.reached
    assert review.state is None
    text = repr(review) + review.answer.message + caplog.text
    assert credentials.access_key_secret not in text


def test_send_only_key_needs_read_access(
    queries: AccountQueries, emulator: DysmsapiEmulator
) -> None:
    emulator.read_access = False
    answer = queries.template(GOOD, TEMPLATE).answer
    assert answer.code == "isp.RAM_PERMISSION_DENY"
    assert answer.needs_read_access and not answer.key_refused and not answer.reached


def test_unreachable_is_not_a_verdict() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    queries = AccountQueries(AliyunSender(endpoint=f"127.0.0.1:{port}"))
    answer = queries.sign(GOOD, SIGN).answer
    assert answer.code == "SDK.HttpError" and answer.category is Category.NETWORK
    assert not answer.reached and not answer.key_refused


def test_a_silent_server_costs_at_most_the_check_timeout() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    try:
        sender = AliyunSender(endpoint=f"127.0.0.1:{listener.getsockname()[1]}")
        queries = AccountQueries(sender, timeout=0.5)
        start = time.perf_counter()
        answer = queries.template(GOOD, TEMPLATE).answer
        elapsed = time.perf_counter() - start
    finally:
        for conn in accepted:
            conn.close()
        listener.close()
    assert answer.code == "SDK.HttpError" and not answer.reached
    assert elapsed < 3.0  # the sender's own read timeout is 10 s


def test_statistics_count_accepted_messages_and_overrides(
    queries: AccountQueries, emulator: DysmsapiEmulator
) -> None:
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkdysmsapi.request.v20170525.SendSmsRequest import SendSmsRequest

    client = AcsClient(KEY_ID, KEY_SECRET, "cn-hangzhou")
    for phone in ("13800138000", "13900139000", "85290001234"):
        request = SendSmsRequest()
        request.set_endpoint(emulator.endpoint)
        request.set_PhoneNumbers(phone)
        request.set_SignName(SIGN)
        request.set_TemplateCode(TEMPLATE)
        request.set_TemplateParam('{"code":"123456"}')
        client.do_action_with_exception(request)
    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date()
    earlier = today - dt.timedelta(days=3)
    emulator.set_statistics(earlier, 12, failed=2, no_response=1)
    answer, days = queries.statistics(GOOD, today - dt.timedelta(days=6), today)
    assert answer.ok
    figures = {d.day: (d.total, d.success, d.failed, d.no_response) for d in days}
    assert figures == {today: (2, 2, 0, 0), earlier: (12, 9, 2, 1)}
    answer, days = queries.statistics(GOOD, today, today, international=True)
    assert [(d.day, d.total) for d in days] == [(today, 1)]


def test_statistics_pages_and_failures(queries: AccountQueries, emulator: DysmsapiEmulator) -> None:
    start = dt.date(2026, 1, 1)
    for offset in range(60):
        emulator.set_statistics(start + dt.timedelta(days=offset), offset + 1)
    answer, days = queries.statistics(GOOD, start, start + dt.timedelta(days=59))
    assert answer.ok and len(days) == 60 and days[0].day == start and days[-1].total == 60
    wrong = Credentials(KEY_ID, "WrongSecret000000000000000000")
    answer, days = queries.statistics(wrong, start, start)
    assert answer.key_refused and days == []


def _send(emulator: DysmsapiEmulator, **params: str) -> str:
    import json

    from aliyunsdkcore.client import AcsClient
    from aliyunsdkdysmsapi.request.v20170525.SendSmsRequest import SendSmsRequest

    request = SendSmsRequest()
    request.set_endpoint(emulator.endpoint)
    request.set_PhoneNumbers(params.get("phone", "13800138000"))
    request.set_SignName(params.get("sign", SIGN))
    request.set_TemplateCode(params.get("template", TEMPLATE))
    request.set_TemplateParam(json.dumps({params.get("name", "code"): "123456"}))
    body = AcsClient(KEY_ID, KEY_SECRET, "cn-hangzhou").do_action_with_exception(request)
    return str(json.loads(body)["Code"])


def test_send_sms_follows_the_reviews(emulator: DysmsapiEmulator) -> None:
    emulator.set_template_review(TEMPLATE, 0)
    assert _send(emulator) == "isv.SMS_TEMPLATE_ILLEGAL"
    emulator.set_template_review(TEMPLATE, 1)
    emulator.set_sign_review(SIGN, 2, "资质不全")
    assert _send(emulator) == "isv.SMS_SIGNATURE_ILLEGAL"
    emulator.set_sign_review("新签名", 1)
    assert _send(emulator, sign="新签名") == "OK"
    emulator.set_template_review("SMS_300000001", content="您的验证码为${number}")
    assert _send(emulator, sign="新签名", template="SMS_300000001") == (
        "isv.TEMPLATE_MISSING_PARAMETERS"
    )
    assert (
        _send(emulator, sign="新签名", template="SMS_300000001", name="number", phone="13900139000")
        == "OK"
    )
    assert len(emulator.messages) == 2


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (
            503,
            {"Code": "ServiceUnavailable", "Message": "The request has failed."},
            "ServiceUnavailable",
        ),
        (200, {"Code": "isp.SYSTEM_ERROR", "Message": "系统异常"}, "isp.SYSTEM_ERROR"),
        (400, {"Code": "Throttling.User", "Message": "Request was denied."}, "Throttling.User"),
        (200, "not json", "SDK.InvalidResponse"),
    ],
)
def test_aliyun_side_failures_are_not_verdicts(status: int, body: Any, code: str) -> None:
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            payload = (
                body
                if isinstance(body, str)
                else json.dumps({**body, "RequestId": "R-1", "HostId": "dysmsapi.aliyuncs.com"})
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        queries = AccountQueries(AliyunSender(endpoint=f"127.0.0.1:{server.server_address[1]}"))
        review = queries.sign(GOOD, SIGN)
    finally:
        server.shutdown()
        server.server_close()
    assert review.answer.code == code
    assert not review.answer.reached and not review.answer.key_refused
    assert review.state is None
