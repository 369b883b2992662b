"""Tests of flask_alisms.sms: the advice table and the senders.

The AliyunSender tests drive the real, unpatched Aliyun SDK against the local Dysmsapi emulator
(``dysmsapi_emulator`` fixture) or, for malformed answers the emulator cannot produce, against a
tiny raw HTTP server defined here.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest

from flask_alisms.exceptions import AliSMSError, ConfigurationError
from flask_alisms.phones import mask as mask_phone
from flask_alisms.sms import (
    Advice,
    AliyunSender,
    Category,
    ConsoleSender,
    Credentials,
    MemorySender,
    Sender,
    SendResult,
    SmsMessage,
    create_sender,
    explain,
    known_codes,
)
from flask_alisms.testing import DysmsapiEmulator

SIGN = "阿里云短信测试"
TEMPLATE = "SMS_154950909"
PHONE = "13800138000"
GOOD = Credentials("testId", "testSecret")
# Letters that are not hex digits: cannot collide with request ids, biz ids or durations.
CODE = "Q7X9K2"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY")


def message(phone: str = PHONE, code: str = CODE, **overrides: object) -> SmsMessage:
    fields: dict = {
        "phone": phone,
        "sign_name": SIGN,
        "template_code": TEMPLATE,
        "params": {"code": code},
    }
    fields.update(overrides)
    return SmsMessage(**fields)


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sender(dysmsapi_emulator: DysmsapiEmulator) -> Iterator[AliyunSender]:
    aliyun = AliyunSender(endpoint=dysmsapi_emulator.endpoint, connect_timeout=2, read_timeout=2)
    yield aliyun
    aliyun.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# =========================================================================== errors.explain

# Every code of the facts file, with the category it must map to.
FACT_CODES: dict[str, Category] = {
    "isv.BUSINESS_LIMIT_CONTROL": Category.RATE_LIMIT,
    "isv.DAY_LIMIT_CONTROL": Category.RATE_LIMIT,
    "isv.MONTH_LIMIT_CONTROL": Category.RATE_LIMIT,
    "isv.SMS_SIGNATURE_ILLEGAL": Category.SIGNATURE,
    "isv.SIGN_STATE_ILLEGAL": Category.SIGNATURE,
    "isv.SMS_SIGN_ILLEGAL": Category.SIGNATURE,
    "isv.SMS_SIGNATURE_SCENE_ILLEGAL": Category.SIGNATURE,
    "isv.SMS_TEMPLATE_ILLEGAL": Category.TEMPLATE,
    "isv.TEMPLATE_MISSING_PARAMETERS": Category.TEMPLATE,
    "isv.TEMPLATE_PARAMS_ILLEGAL": Category.TEMPLATE,
    "isv.INVALID_JSON_PARAM": Category.TEMPLATE,
    "isv.PARAM_LENGTH_LIMIT": Category.TEMPLATE,
    "isv.PARAM_NOT_SUPPORT_URL": Category.TEMPLATE,
    "isv.SMS_CONTENT_ILLEGAL": Category.TEMPLATE,
    "isv.BLACK_KEY_CONTROL_LIMIT": Category.TEMPLATE,
    "isv.MOBILE_NUMBER_ILLEGAL": Category.INVALID_NUMBER,
    "isv.MOBILE_COUNT_OVER_LIMIT": Category.INVALID_NUMBER,
    "isv.DOMESTIC_NUMBER_NOT_SUPPORTED": Category.INVALID_NUMBER,
    "isv.AMOUNT_NOT_ENOUGH": Category.BALANCE,
    "isv.OUT_OF_SERVICE": Category.BALANCE,
    "isv.PRODUCT_UN_SUBSCRIPT": Category.BALANCE,
    "isv.PRODUCT_UNSUBSCRIBE": Category.BALANCE,
    "isv.ACCOUNT_NOT_EXISTS": Category.BALANCE,
    "isv.ACCOUNT_ABNORMAL": Category.BALANCE,
    "isv.DENY_IP_RANGE": Category.PERMISSION,
    "isp.RAM_PERMISSION_DENY": Category.PERMISSION,
    "Forbidden.RAM": Category.PERMISSION,
    "isp.SYSTEM_ERROR": Category.NETWORK,
    "InvalidAccessKeyId.NotFound": Category.AUTHENTICATION,
    "InvalidAccessKeyId.Inactive": Category.AUTHENTICATION,
    "SignatureDoesNotMatch": Category.AUTHENTICATION,
    "IncompleteSignature": Category.AUTHENTICATION,
    "InvalidAccessKeySecret": Category.AUTHENTICATION,
    "InvalidTimeStamp.Expired": Category.AUTHENTICATION,
    "SignatureNonceUsed": Category.AUTHENTICATION,
    "MissingSignName": Category.SIGNATURE,
    "MissingTemplateCode": Category.TEMPLATE,
    "MissingPhoneNumbers": Category.INVALID_NUMBER,
    "MissingAccessKeyId": Category.AUTHENTICATION,
    "MissingSomethingElse": Category.UNKNOWN,
    "InvalidVersion": Category.UNKNOWN,
    "InvalidSignatureMethod": Category.UNKNOWN,
    "Throttling": Category.RATE_LIMIT,
    "Throttling.User": Category.RATE_LIMIT,
    "Throttling.Api": Category.RATE_LIMIT,
    "InternalError": Category.NETWORK,
    "ServiceUnavailable": Category.NETWORK,
    "SDK.HttpError": Category.NETWORK,
    "SDK.ServerUnreachable": Category.NETWORK,
    "SDK.InvalidResponse": Category.NETWORK,
    "SDK.InvalidCredential": Category.AUTHENTICATION,
    "SDK.InvalidRegionId": Category.UNKNOWN,
    "SDK.EndpointResolvingError": Category.UNKNOWN,
}


@pytest.mark.parametrize(("code", "category"), sorted(FACT_CODES.items()))
def test_fact_codes_map_to_expected_category(code: str, category: Category) -> None:
    advice = explain(code)
    assert advice.category is category
    assert advice.admin_message.strip()
    assert advice.user_message.strip()


@pytest.mark.parametrize("code", known_codes())
def test_every_mapped_code_has_admin_and_user_messages(code: str) -> None:
    advice = explain(code)
    assert isinstance(advice, Advice)
    assert advice.category is not Category.UNKNOWN or code == "isv.INVALID_PARAMETERS"
    assert len(advice.admin_message) > 40  # actionable, not a label
    assert "{" not in advice.admin_message.replace("${code}", "")  # no unformatted placeholder
    # The user message is short and reveals no internals.
    assert 10 < len(advice.user_message) <= 80
    for internal in ("aliyun", "isv", "isp", "AccessKey", "SDK", code):
        assert internal.lower() not in advice.user_message.lower()


@pytest.mark.parametrize(
    ("code", "needles"),
    [
        ("isv.SMS_SIGNATURE_ILLEGAL", ["aliyun.sms.sign_name", "5–7", "7–10", "working days"]),
        ("isv.SIGN_STATE_ILLEGAL", ["aliyun.sms.sign_name", "5–7"]),
        ("isv.SMS_TEMPLATE_ILLEGAL", ["aliyun.sms.sms_code_template_code"]),
        ("isp.RAM_PERMISSION_DENY", ["AliyunDysmsFullAccess", "dysms:SendSms", "RAM"]),
        ("Forbidden.RAM", ["AliyunDysmsFullAccess"]),
        ("InvalidAccessKeyId.NotFound", ["aliyun.sms.access_key_id"]),
        ("InvalidAccessKeyId.Inactive", ["aliyun.sms.access_key_id", "RAM console"]),
        ("SignatureDoesNotMatch", ["aliyun.sms.access_key_secret"]),
        ("InvalidAccessKeySecret", ["aliyun.sms.access_key_secret"]),
        ("isv.DENY_IP_RANGE", ["overseas", "mainland"]),
        ("isv.DAY_LIMIT_CONTROL", ["daily", "console"]),
        ("isv.MONTH_LIMIT_CONTROL", ["monthly", "console"]),
        ("isv.BUSINESS_LIMIT_CONTROL", ["1 per minute", "5 per hour", "10 per day", "300"]),
        ("isv.AMOUNT_NOT_ENOUGH", ["balance", "Top it up"]),
        ("InvalidTimeStamp.Expired", ["clock", "NTP"]),
        ("SDK.HttpError", ["timeout", "do not resend"]),
    ],
)
def test_admin_messages_say_what_to_fix(code: str, needles: list[str]) -> None:
    admin = explain(code).admin_message
    for needle in needles:
        assert needle in admin


def test_user_messages() -> None:
    assert explain("isv.BUSINESS_LIMIT_CONTROL").user_message == (
        "Too many codes were requested for this number. Please try again later."
    )
    assert explain("isv.MOBILE_NUMBER_ILLEGAL").user_message == (
        "This phone number cannot receive SMS."
    )
    assert explain("isv.AMOUNT_NOT_ENOUGH").user_message == (
        "We could not send the SMS right now. Please try again later."
    )


def test_unknown_code_is_quoted_for_the_admin() -> None:
    advice = explain("Totally.New.Code")
    assert advice.category is Category.UNKNOWN
    assert "Totally.New.Code" in advice.admin_message
    assert advice.user_message == "We could not send the SMS right now. Please try again later."
    assert "isv.BRAND_NEW" in explain("isv.BRAND_NEW").admin_message
    assert "HTTP 418" in explain("Teapot", 418).admin_message


def test_unknown_code_with_5xx_is_a_transient_network_failure() -> None:
    assert explain("SDK.UnknownServerError", 502).category is Category.NETWORK
    assert explain("Whatever", 503).category is Category.NETWORK
    assert explain("SDK.UnknownServerError", 400).category is Category.UNKNOWN
    # Known codes keep their category whatever the status.
    assert explain("isv.AMOUNT_NOT_ENOUGH", 500).category is Category.BALANCE


def test_explain_tolerates_spacing_and_case() -> None:
    assert explain(" isv.amount_not_enough ").category is Category.BALANCE
    assert explain("").category is Category.UNKNOWN


def test_category_values() -> None:
    assert Category.RATE_LIMIT.value == "rate_limit"
    assert Category.SIGNATURE == "signature"
    assert {c.value for c in Category} == {
        "signature",
        "template",
        "authentication",
        "permission",
        "rate_limit",
        "balance",
        "invalid_number",
        "network",
        "unknown",
    }


def test_every_exception_has_one_base_class() -> None:
    from flask_alisms import exceptions

    raised = [
        value
        for name, value in vars(exceptions).items()
        if isinstance(value, type) and issubclass(value, Exception) and name in exceptions.__all__
    ]
    assert len(raised) == len(exceptions.__all__) >= 9
    assert all(issubclass(cls, AliSMSError) for cls in raised)
    assert issubclass(ConfigurationError, AliSMSError)


# =========================================================================== value objects


def test_credentials_repr_hides_secret() -> None:
    creds = Credentials("LTAIexampleId", "superSecretValue")
    assert "superSecretValue" not in repr(creds)
    assert "LTAIexampleId" in repr(creds)


def test_sms_message_repr_hides_params_and_freezes_them() -> None:
    msg = message(out_id="order-1")
    assert CODE not in repr(msg)
    assert "order-1" in repr(msg)
    with pytest.raises(TypeError):
        msg.params["code"] = "000000"  # type: ignore[index]
    assert hash(msg) == hash(message(out_id="order-1"))


def test_sms_message_refuses_non_string_params() -> None:
    with pytest.raises(TypeError):
        message(params={"code": 123456})


def test_send_result_category() -> None:
    ok = SendResult(True, "OK", "OK", 200, "r", "b", 1.0, None)
    assert ok.category is None
    bad = SendResult(False, "isv.X", "m", 200, "r", None, 1.0, explain("isv.AMOUNT_NOT_ENOUGH"))
    assert bad.category is Category.BALANCE


def test_mask_phone() -> None:
    assert mask_phone("13800138000") == "138****8000"
    assert mask_phone("85290001234") == "852****1234"
    assert mask_phone("12345") == "***45"
    assert mask_phone("") == ""


# =========================================================================== MemorySender


def test_memory_sender_records_and_fails_on_demand() -> None:
    memory = MemorySender()
    assert isinstance(memory, Sender)
    assert memory.name == "memory"
    first = memory.send(message(code="111111"), None)
    assert first.ok
    assert first.code == "OK"
    assert first.advice is None
    assert first.biz_id
    assert memory.last_param(PHONE) == "111111"

    memory.fail_with("isv.BUSINESS_LIMIT_CONTROL", times=2)
    for _ in range(2):
        failed = memory.send(message(code="222222"), None)
        assert not failed.ok
        assert failed.code == "isv.BUSINESS_LIMIT_CONTROL"
        assert failed.category is Category.RATE_LIMIT
        assert failed.http_status == 200
    assert memory.send(message(code="333333"), None).ok

    assert [m.params["code"] for m in memory.outbox] == ["111111", "333333"]
    assert len(memory.attempts) == 4
    assert memory.last_param(PHONE) == "333333"
    with pytest.raises(LookupError):
        memory.last_param("13900000000")
    with pytest.raises(LookupError):
        memory.last_param(PHONE, name="nope")

    memory.fail_with("InvalidAccessKeyId.NotFound")
    memory.clear()
    assert memory.outbox == []
    assert memory.attempts == []
    assert memory.send(message(), None).ok  # pending failures are cleared too


def test_memory_sender_simulated_statuses() -> None:
    memory = MemorySender()
    for code, status in [
        ("InvalidAccessKeyId.NotFound", 404),
        ("SignatureDoesNotMatch", 400),
        ("ServiceUnavailable", 503),
        ("SDK.HttpError", None),
        ("isp.RAM_PERMISSION_DENY", 200),
    ]:
        memory.fail_with(code)
        result = memory.send(message(), None)
        assert (result.code, result.http_status) == (code, status)
    with pytest.raises(ValueError):
        memory.fail_with("isv.X", times=0)


def test_memory_sender_is_thread_safe() -> None:
    memory = MemorySender()

    def worker(n: int) -> None:
        for i in range(50):
            memory.send(message(phone=f"1390000{n:02d}{i:02d}"), None)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(memory.outbox) == 400


# =========================================================================== ConsoleSender


def test_console_sender_masks_code(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    console = ConsoleSender()
    result = console.send(message(), None)
    assert result.ok
    assert result.biz_id is not None
    assert result.biz_id.startswith("console-")
    assert CODE not in caplog.text
    assert PHONE not in caplog.text
    assert "138****8000" in caplog.text
    assert "******" in caplog.text
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_console_sender_reveals_code_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    result = ConsoleSender(reveal=True).send(message(), None)
    assert result.ok
    assert CODE in caplog.text
    assert PHONE in caplog.text
    assert CODE not in repr(result)


# =========================================================================== create_sender


class _NeedsArgs(Sender):
    def __init__(self, required: str) -> None:
        self.required = required

    def send(self, message: SmsMessage, credentials: Credentials | None) -> SendResult:
        raise NotImplementedError


def test_create_sender_by_name() -> None:
    aliyun = create_sender(
        "aliyun",
        endpoint="127.0.0.1:8500",
        region_id="cn-hangzhou",
        connect_timeout=1.5,
        read_timeout=3,
        reveal_codes=False,
    )
    assert isinstance(aliyun, AliyunSender)
    assert (aliyun.connect_timeout, aliyun.read_timeout) == (1.5, 3.0)
    console = create_sender("console", reveal_codes=True)
    assert isinstance(console, ConsoleSender)
    assert console.reveal is True
    assert isinstance(create_sender("memory"), MemorySender)
    assert isinstance(create_sender(" Memory "), MemorySender)


def test_create_sender_by_import_path() -> None:
    assert isinstance(create_sender("flask_alisms.sms:MemorySender"), MemorySender)


@pytest.mark.parametrize(
    "name",
    [
        "twilio",
        "",
        "no.such.module:Sender",
        "flask_alisms.sms:NoSuchClass",
        "collections:OrderedDict",
        "flask_alisms.sms:explain",
        f"{__name__}:_NeedsArgs",
    ],
)
def test_create_sender_rejects_with_setting_name(name: str) -> None:
    with pytest.raises(ConfigurationError, match="ALISMS_SENDER"):
        create_sender(name)


# =========================================================================== AliyunSender setup


@pytest.mark.parametrize(
    ("endpoint", "host", "https"),
    [
        (None, "dysmsapi.aliyuncs.com", True),
        ("127.0.0.1:8500", "127.0.0.1:8500", False),
        ("http://127.0.0.1:8500", "127.0.0.1:8500", False),
        ("http://127.0.0.1:8500/", "127.0.0.1:8500", False),
        ("https://sms.example.com", "sms.example.com", True),
        ("https://sms.example.com:8443", "sms.example.com:8443", True),
        ("[::1]:8500", "[::1]:8500", False),
    ],
)
def test_endpoint_spellings(endpoint: str | None, host: str, https: bool) -> None:
    aliyun = AliyunSender(endpoint=endpoint)
    assert (aliyun._host, aliyun._https) == (host, https)


@pytest.mark.parametrize(
    "endpoint", ["ftp://host", "host/path", "host:notaport", "http://", "http://u:p@host", "h:0"]
)
def test_bad_endpoints(endpoint: str) -> None:
    with pytest.raises(ConfigurationError):
        AliyunSender(endpoint=endpoint)


@pytest.mark.parametrize(("connect", "read"), [(0, 1), (1, 0), (-1, 1)])
def test_timeouts_must_be_positive(connect: float, read: float) -> None:
    with pytest.raises(ConfigurationError):
        AliyunSender(connect_timeout=connect, read_timeout=read)


def test_repr_has_no_secret(sender: AliyunSender) -> None:
    sender.send(message(), GOOD)
    assert "testSecret" not in repr(sender)
    assert all("testSecret" not in str(key) for key in sender._clients)


# =========================================================================== AliyunSender sends


def test_success(sender: AliyunSender, dysmsapi_emulator: DysmsapiEmulator) -> None:
    params = {"code": CODE, "product": "测试 & *"}
    result = sender.send(message(params=params, out_id="signup-42"), GOOD)
    assert result.ok
    assert result.code == "OK"
    assert result.message == "OK"
    assert result.http_status == 200
    assert result.advice is None
    assert result.category is None
    accepted = dysmsapi_emulator.messages[-1]
    assert result.biz_id == accepted.biz_id
    assert result.request_id == accepted.request_id
    assert result.duration_ms > 0
    assert accepted.template_param == params
    assert accepted.out_id == "signup-42"
    assert dysmsapi_emulator.last_param(PHONE) == CODE


def test_wrong_secret(sender: AliyunSender) -> None:
    result = sender.send(message(), Credentials("testId", "wrongSecret"))
    assert not result.ok
    assert result.category is Category.AUTHENTICATION
    assert result.http_status == 400
    # The SDK recognises its own string-to-sign in the answer and renames the code.
    assert result.code in ("InvalidAccessKeySecret", "SignatureDoesNotMatch")
    assert result.request_id


def test_unknown_key_id(sender: AliyunSender) -> None:
    result = sender.send(message(), Credentials("nobody", "testSecret"))
    assert not result.ok
    assert result.code == "InvalidAccessKeyId.NotFound"
    assert result.http_status == 404
    assert result.category is Category.AUTHENTICATION


def test_missing_credentials(sender: AliyunSender, dysmsapi_emulator: DysmsapiEmulator) -> None:
    for creds in (None, Credentials("", ""), Credentials("testId", "")):
        result = sender.send(message(), creds)
        assert not result.ok
        assert result.category is Category.AUTHENTICATION
        assert "aliyun.sms.access_key_id" in result.advice.admin_message
    assert dysmsapi_emulator.requests_served == 0


def test_unapproved_sign(sender: AliyunSender) -> None:
    result = sender.send(message(sign_name="未备案的签名"), GOOD)
    assert not result.ok
    assert result.code == "isv.SMS_SIGNATURE_ILLEGAL"
    assert result.http_status == 200
    assert result.category is Category.SIGNATURE
    assert result.biz_id is None


def test_unapproved_template(sender: AliyunSender) -> None:
    result = sender.send(message(template_code="SMS_000000001"), GOOD)
    assert not result.ok
    assert result.code == "isv.SMS_TEMPLATE_ILLEGAL"
    assert result.category is Category.TEMPLATE


def test_invalid_number_message_masks_the_number(sender: AliyunSender) -> None:
    result = sender.send(message(phone="0000123456789012345"), GOOD)
    assert not result.ok
    assert result.category is Category.INVALID_NUMBER
    assert "0000123456789012345" not in result.message


def test_throttled_number(sender: AliyunSender, dysmsapi_emulator: DysmsapiEmulator) -> None:
    assert sender.send(message(), GOOD).ok
    second = sender.send(message(code="A1B2C3"), GOOD)
    assert not second.ok
    assert second.code == "isv.BUSINESS_LIMIT_CONTROL"
    assert second.category is Category.RATE_LIMIT
    assert second.advice.user_message.startswith("Too many codes")
    assert "Permits" in second.message  # business messages are kept (scrubbed)
    dysmsapi_emulator.advance_time(61)
    assert sender.send(message(code="D4E5F6"), GOOD).ok


@pytest.mark.parametrize(
    ("code", "category"),
    [
        ("isv.AMOUNT_NOT_ENOUGH", Category.BALANCE),
        ("isp.RAM_PERMISSION_DENY", Category.PERMISSION),
        ("isv.DENY_IP_RANGE", Category.PERMISSION),
        ("isv.DAY_LIMIT_CONTROL", Category.RATE_LIMIT),
        ("isp.SYSTEM_ERROR", Category.NETWORK),
    ],
)
def test_injected_business_failures(
    sender: AliyunSender, dysmsapi_emulator: DysmsapiEmulator, code: str, category: Category
) -> None:
    dysmsapi_emulator.fail_next(code)
    result = sender.send(message(), GOOD)
    assert not result.ok
    assert (result.code, result.category, result.http_status) == (code, category, 200)
    assert result.request_id


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_error_is_network(
    sender: AliyunSender, dysmsapi_emulator: DysmsapiEmulator, status: int
) -> None:
    """5xx answers count as NETWORK: transient, Aliyun-side, nothing for the admin to fix."""
    dysmsapi_emulator.fail_next_http(status=status)
    result = sender.send(message(), GOOD)
    assert not result.ok
    assert result.http_status == status
    assert result.category is Category.NETWORK


def test_gateway_throttling(sender: AliyunSender, dysmsapi_emulator: DysmsapiEmulator) -> None:
    dysmsapi_emulator.fail_next("Throttling.User", status=400)
    result = sender.send(message(), GOOD)
    assert (result.code, result.http_status, result.category) == (
        "Throttling.User",
        400,
        Category.RATE_LIMIT,
    )


def test_read_timeout(dysmsapi_emulator: DysmsapiEmulator) -> None:
    aliyun = AliyunSender(endpoint=dysmsapi_emulator.endpoint, read_timeout=0.5)
    dysmsapi_emulator.delay_next(2)
    result = aliyun.send(message(), GOOD)
    assert not result.ok
    assert result.code == "SDK.HttpError"
    assert result.category is Category.NETWORK
    assert result.http_status is None
    assert "timed out" in result.message
    assert 400 < result.duration_ms < 1900


def test_refused_connection() -> None:
    aliyun = AliyunSender(endpoint=f"127.0.0.1:{closed_port()}")
    result = aliyun.send(message(), GOOD)
    assert not result.ok
    assert result.code == "SDK.HttpError"
    assert result.category is Category.NETWORK
    assert result.message == "connection refused"


def test_dropped_connection(sender: AliyunSender, dysmsapi_emulator: DysmsapiEmulator) -> None:
    dysmsapi_emulator.drop_next()
    result = sender.send(message(), GOOD)
    assert not result.ok
    assert result.code == "SDK.HttpError"
    assert result.category is Category.NETWORK
    assert "dropped" in result.message
    # The sender recovers on the next call (a fresh connection).
    assert sender.send(message(phone="13800138001"), GOOD).ok


def test_truncated_body(sender: AliyunSender, dysmsapi_emulator: DysmsapiEmulator) -> None:
    dysmsapi_emulator.truncate_next()
    result = sender.send(message(), GOOD)
    assert not result.ok
    # The SDK's bundled urllib3 does not enforce Content-Length, so the cut body reaches the
    # JSON parser (SDK.InvalidResponse); a stricter stack reports SDK.HttpError. Both: NETWORK.
    assert result.code in ("SDK.InvalidResponse", "SDK.HttpError")
    assert result.category is Category.NETWORK
    assert sender.send(message(phone="13800138001"), GOOD).ok


@pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLS is deprecated:DeprecationWarning")
def test_https_endpoint_really_uses_tls(dysmsapi_emulator: DysmsapiEmulator) -> None:
    aliyun = AliyunSender(endpoint=f"https://{dysmsapi_emulator.endpoint}", read_timeout=2)
    result = aliyun.send(message(), GOOD)
    assert not result.ok  # the emulator speaks plain HTTP
    assert result.code == "SDK.HttpError"
    assert result.category is Category.NETWORK
    assert dysmsapi_emulator.messages == []


# =========================================================================== connections & clients


def test_one_connection_for_many_sends(
    sender: AliyunSender, dysmsapi_emulator: DysmsapiEmulator
) -> None:
    for i in range(100):
        assert sender.send(message(phone=f"138001{i:05d}"), GOOD).ok
    assert len(dysmsapi_emulator.messages) == 100
    assert dysmsapi_emulator.connections_opened == 1
    assert sender.cached_clients == 1


def test_changing_credentials_builds_a_new_client() -> None:
    keys = {"idA": "secretA", "idB": "secretB", "idC": "secretC"}
    with DysmsapiEmulator(access_keys=keys) as emulator:
        aliyun = AliyunSender(endpoint=emulator.endpoint)
        a, b, c = (Credentials(k, v) for k, v in keys.items())
        assert aliyun.send(message(phone="13800000001"), a).ok
        assert aliyun.send(message(phone="13800000002"), a).ok
        assert emulator.connections_opened == 1
        assert aliyun.send(message(phone="13800000003"), b).ok
        assert emulator.connections_opened == 2
        assert aliyun.cached_clients == 2
        assert aliyun.send(message(phone="13800000004"), a).ok  # A's client is still cached
        assert emulator.connections_opened == 2
        assert aliyun.send(message(phone="13800000005"), c).ok  # evicts B (least recent)
        assert emulator.connections_opened == 3
        assert aliyun.cached_clients == 2
        assert aliyun.send(message(phone="13800000006"), b).ok
        assert emulator.connections_opened == 4
        # Same id, new secret: a new client too (the key includes a digest of the secret).
        wrong = aliyun.send(message(phone="13800000007"), Credentials("idA", "rotated"))
        assert wrong.category is Category.AUTHENTICATION
        assert emulator.connections_opened == 5
        aliyun.close()
        assert aliyun.cached_clients == 0


def test_concurrent_sends(sender: AliyunSender, dysmsapi_emulator: DysmsapiEmulator) -> None:
    results: list[SendResult] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(10):
            result = sender.send(message(phone=f"1370000{n:02d}{i:02d}"), GOOD)
            with lock:
                results.append(result)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 80
    assert all(r.ok for r in results)
    assert sender.cached_clients == 1
    assert dysmsapi_emulator.connections_opened <= 8


# =========================================================================== proxies


def test_loopback_endpoint_bypasses_proxy_variables(
    monkeypatch: pytest.MonkeyPatch, dysmsapi_emulator: DysmsapiEmulator
) -> None:
    dead_proxy = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, dead_proxy)
    aliyun = AliyunSender(endpoint=dysmsapi_emulator.endpoint)
    assert aliyun.send(message(), GOOD).ok


def test_explicit_proxies_are_used(dysmsapi_emulator: DysmsapiEmulator) -> None:
    dead_proxy = f"http://127.0.0.1:{closed_port()}"
    aliyun = AliyunSender(endpoint=dysmsapi_emulator.endpoint, proxies={"http": dead_proxy})
    result = aliyun.send(message(), GOOD)
    assert not result.ok
    assert result.category is Category.NETWORK
    assert dysmsapi_emulator.requests_served == 0


# =========================================================================== malformed answers


class _RawServer:
    """Answers each request with the next queued (status, body) and closes the connection."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                status, body = outer.answers.pop(0)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def raw_server() -> Iterator[_RawServer]:
    server = _RawServer()
    yield server
    server.close()


@pytest.mark.parametrize(
    ("status", "body", "code", "category"),
    [
        (200, b"<html>captive portal</html>", "SDK.InvalidResponse", Category.NETWORK),
        (200, b'{"Code":"OK","Mess', "SDK.InvalidResponse", Category.NETWORK),
        (200, b"[1, 2]", "SDK.InvalidResponse", Category.NETWORK),
        (200, b'{"Message":"no code"}', "SDK.InvalidResponse", Category.NETWORK),
        (201, b'{"Code":"OK","RequestId":"r"}', "SDK.InvalidResponse", Category.NETWORK),
        (502, b"<html>Bad Gateway</html>", "SDK.UnknownServerError", Category.NETWORK),
        (400, b"\xff\xfe not utf-8", "SDK.UnexpectedError", Category.UNKNOWN),
    ],
)
def test_malformed_answers_are_failures(
    raw_server: _RawServer, status: int, body: bytes, code: str, category: Category
) -> None:
    raw_server.answers.append((status, body))
    result = AliyunSender(endpoint=raw_server.endpoint).send(message(), GOOD)
    assert not result.ok
    assert result.code == code
    assert result.category is category
    assert result.http_status == status


def test_signature_mismatch_without_colon_does_not_crash(
    sender: AliyunSender, dysmsapi_emulator: DysmsapiEmulator
) -> None:
    """The SDK itself raises IndexError on such a message; the sender still answers."""
    dysmsapi_emulator.fail_next("SignatureDoesNotMatch", message="no colon here", status=400)
    result = sender.send(message(), GOOD)
    assert not result.ok
    assert (result.code, result.http_status) == ("SignatureDoesNotMatch", 400)
    assert result.category is Category.AUTHENTICATION


# =========================================================================== safety


def _leaky_string_to_sign(params: dict[str, str]) -> str:
    template_param = json.dumps(params, separators=(",", ":"))
    inner = f"AccessKeyId=testId&PhoneNumbers={PHONE}&TemplateParam={quote(template_param, '')}"
    return f"POST&%2F&{quote(inner, '')}"


def test_codes_and_secrets_never_leak(
    sender: AliyunSender,
    dysmsapi_emulator: DysmsapiEmulator,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("DEBUG", "sdk")  # the SDK then also dumps requests on stderr
    params = {"code": CODE, "product": "测试 & *"}
    secret_forms = {CODE, "测试 & *", quote("测试 & *", safe=""), quote("测试 & *"), "testSecret"}
    results: list[SendResult] = []

    def send(phone: str, creds: Credentials = GOOD, **kwargs: object) -> None:
        results.append(sender.send(message(phone=phone, params=params, **kwargs), creds))

    send("13800000001")  # success
    send("13800000001")  # flow control
    send("13800000002", Credentials("testId", "wrongSecret"))
    send("13800000003", Credentials("nobody", "testSecret"))
    dysmsapi_emulator.fail_next(
        "SignatureDoesNotMatch",
        message="Specified signature is not matched with our calculation. "
        f"server string to sign is:{_leaky_string_to_sign(params)}",
        status=400,
    )
    send("13800000004")
    dysmsapi_emulator.fail_next("isv.TEMPLATE_PARAMS_ILLEGAL", message=f"bad value {CODE}")
    send("13800000005")
    dysmsapi_emulator.fail_next_http(status=500, code="InternalError", message=f"oops:{CODE}")
    send("13800000006")
    dysmsapi_emulator.drop_next()
    send("13800000007")
    dysmsapi_emulator.truncate_next()
    send("13800000008")
    dysmsapi_emulator.delay_next(1.5)
    results.append(
        AliyunSender(endpoint=dysmsapi_emulator.endpoint, read_timeout=0.3).send(
            message(phone="13800000009", params=params), GOOD
        )
    )
    results.append(
        AliyunSender(endpoint=f"127.0.0.1:{closed_port()}").send(
            message(phone="13800000010", params=params), GOOD
        )
    )

    assert results[0].ok
    assert [r.ok for r in results[1:]] == [False] * (len(results) - 1)
    assert results[4].code == "SignatureDoesNotMatch"
    assert results[4].message.startswith("Specified signature is not matched")
    assert "testId" not in results[4].message

    stderr = capsys.readouterr().err
    texts = [repr(r) for r in results] + [r.message for r in results] + [caplog.text, stderr]
    texts += [record.getMessage() for record in caplog.records]
    for text in texts:
        for form in secret_forms:
            assert form not in text
    # The SDK did log (redacted) records, and our own outcome records are there.
    assert any(r.name.startswith("aliyunsdkcore") for r in caplog.records)
    ours = [r for r in caplog.records if r.name == "flask_alisms.sms.aliyun"]
    assert len(ours) == len(results)
    assert {r.levelno for r in ours} == {logging.INFO, logging.WARNING}
    assert "138****0001" in caplog.text
