"""Tests of the Dysmsapi emulator, driven mostly by the real aliyun SDK."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkdysmsapi.request.v20170525.QuerySendDetailsRequest import QuerySendDetailsRequest
from aliyunsdkdysmsapi.request.v20170525.SendSmsRequest import SendSmsRequest

from flask_alisms.testing import (
    DysmsapiEmulator,
    compute_signature,
    percent_encode,
    string_to_sign,
)

SIGN = "阿里云短信测试"
TEMPLATE = "SMS_154950909"
PHONE = "13800138000"
CODE_PARAM = '{"code":"123456"}'


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK honours HTTP(S)_PROXY even for 127.0.0.1 and ignores NO_PROXY.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def client() -> AcsClient:
    return AcsClient("testId", "testSecret", "cn-hangzhou")


def sms_request(
    emulator: DysmsapiEmulator,
    phone: str = PHONE,
    *,
    sign: str = SIGN,
    template: str = TEMPLATE,
    param: str | None = CODE_PARAM,
    out_id: str | None = None,
) -> SendSmsRequest:
    request = SendSmsRequest()
    request.set_endpoint(emulator.endpoint)
    request.set_PhoneNumbers(phone)
    request.set_SignName(sign)
    request.set_TemplateCode(template)
    if param is not None:
        request.set_TemplateParam(param)
    if out_id is not None:
        request.set_OutId(out_id)
    return request


def send(client: AcsClient, emulator: DysmsapiEmulator, *args: Any, **kwargs: Any) -> dict:
    return json.loads(client.do_action_with_exception(sms_request(emulator, *args, **kwargs)))


def signed_params(
    *,
    method: str = "POST",
    secret: str | None = None,
    nonce: str | None = None,
    timestamp: str | None = None,
    **overrides: str,
) -> dict[str, str]:
    """Common + SendSms parameters signed like the SDK does (an override of None drops one)."""
    params = {
        "AccessKeyId": "testId",
        "Action": "SendSms",
        "Format": "JSON",
        "RegionId": "cn-hangzhou",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": nonce or str(uuid.uuid4()),
        "SignatureType": "",
        "SignatureVersion": "1.0",
        "Timestamp": timestamp or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "Version": "2017-05-25",
        "PhoneNumbers": PHONE,
        "SignName": SIGN,
        "TemplateCode": TEMPLATE,
        "TemplateParam": CODE_PARAM,
    }
    params.update(overrides)
    params = {k: v for k, v in params.items() if v is not None}
    params["Signature"] = compute_signature(method, params, secret or "testSecret")
    return params


def raw_call(
    emulator: DysmsapiEmulator,
    params: dict[str, str],
    *,
    method: str = "POST",
    body: dict[str, str] | None = None,
) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
    try:
        headers = {}
        data = None
        if body is not None:
            data = urlencode(body, quote_via=quote).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, "/?" + urlencode(params, quote_via=quote), body=data, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def server_error(client: AcsClient, request: Any) -> ServerException:
    with pytest.raises(ServerException) as caught:
        client.do_action_with_exception(request)
    return caught.value


# --------------------------------------------------------------------------- signature


OFFICIAL_VECTOR = {
    "AccessKeyId": "testId",
    "Action": "SendSms",
    "Format": "XML",
    "OutId": "123",
    "PhoneNumbers": "15300000001",
    "RegionId": "cn-hangzhou",
    "SignName": "阿里云短信测试专用",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
    "SignatureVersion": "1.0",
    "TemplateCode": "SMS_71390007",
    "TemplateParam": '{"customer":"test"}',
    "Timestamp": "2017-07-12T02:42:19Z",
    "Version": "2017-05-25",
}


def test_official_signature_vector() -> None:
    assert compute_signature("GET", OFFICIAL_VECTOR, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    # Signature itself is never part of what is signed.
    with_signature = dict(OFFICIAL_VECTOR, Signature="anything")
    assert compute_signature("GET", with_signature, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    assert string_to_sign("GET", OFFICIAL_VECTOR).startswith("GET&%2F&AccessKeyId%3DtestId%26")


def test_percent_encoding_is_rfc3986() -> None:
    assert percent_encode("a b*c~d-e_f.g/h+") == "a%20b%2Ac~d-e_f.g%2Fh%2B"
    assert percent_encode("短") == "%E7%9F%AD"


# --------------------------------------------------------------------------- SendSms success


def test_success_stores_message_and_param(dysmsapi_emulator: DysmsapiEmulator, client) -> None:
    body = send(client, dysmsapi_emulator, out_id="order-1")

    assert body["Code"] == "OK"
    assert body["Message"] == "OK"
    assert re.fullmatch(r"\d+\^0", body["BizId"])
    assert body["RequestId"] == str(uuid.UUID(body["RequestId"])).upper()
    [message] = dysmsapi_emulator.messages
    assert message.phone_numbers == PHONE
    assert message.sign_name == SIGN
    assert message.template_code == TEMPLATE
    assert message.template_param == {"code": "123456"}
    assert message.out_id == "order-1"
    assert message.biz_id == body["BizId"]
    assert message.request_id == body["RequestId"]
    assert dysmsapi_emulator.last_param(PHONE) == "123456"
    assert dysmsapi_emulator.last_message("+86" + PHONE) == message
    assert dysmsapi_emulator.last_message() == message


def test_last_message_and_param_when_nothing_sent(dysmsapi_emulator: DysmsapiEmulator) -> None:
    assert dysmsapi_emulator.last_message() is None
    with pytest.raises(LookupError):
        dysmsapi_emulator.last_param(PHONE)


def test_endpoint_and_url(dysmsapi_emulator: DysmsapiEmulator) -> None:
    assert dysmsapi_emulator.endpoint == f"127.0.0.1:{dysmsapi_emulator.port}"
    assert dysmsapi_emulator.url == f"http://127.0.0.1:{dysmsapi_emulator.port}"
    assert dysmsapi_emulator.port > 0


def test_client_add_endpoint_also_works(dysmsapi_emulator: DysmsapiEmulator, client) -> None:
    client.add_endpoint("cn-hangzhou", "Dysmsapi", dysmsapi_emulator.endpoint)
    request = sms_request(dysmsapi_emulator)
    request.set_endpoint(None)
    assert json.loads(client.do_action_with_exception(request))["Code"] == "OK"


# --------------------------------------------------------------------------- authentication


def test_wrong_secret_is_reported_as_invalid_access_key_secret(
    dysmsapi_emulator: DysmsapiEmulator,
) -> None:
    # The server says SignatureDoesNotMatch; the SDK compares the server's string-to-sign with
    # its own and, as they are equal, renames the error.
    error = server_error(
        AcsClient("testId", "wrong", "cn-hangzhou"), sms_request(dysmsapi_emulator)
    )
    assert error.get_http_status() == 400
    assert error.get_error_code() == "InvalidAccessKeySecret"
    assert error.get_request_id()
    assert dysmsapi_emulator.messages == []


def test_signature_mismatch_gateway_body(dysmsapi_emulator: DysmsapiEmulator) -> None:
    params = signed_params(secret="wrong")
    status, body = raw_call(dysmsapi_emulator, params)
    assert status == 400
    assert body["Code"] == "SignatureDoesNotMatch"
    prefix, _, server_sts = body["Message"].partition(":")
    assert (
        prefix
        == "Specified signature is not matched with our calculation. server string to sign is"
    )
    assert server_sts == string_to_sign("POST", params)
    assert body["HostId"] == "dysmsapi.aliyuncs.com"
    assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}


def test_unknown_access_key(dysmsapi_emulator: DysmsapiEmulator) -> None:
    error = server_error(
        AcsClient("nobody", "testSecret", "cn-hangzhou"), sms_request(dysmsapi_emulator)
    )
    assert error.get_http_status() == 404
    assert error.get_error_code() == "InvalidAccessKeyId.NotFound"
    assert error.get_error_msg() == "Specified access key is not found."


def test_replayed_nonce_is_refused(dysmsapi_emulator: DysmsapiEmulator) -> None:
    params = signed_params()
    status, body = raw_call(dysmsapi_emulator, params)
    assert (status, body["Code"]) == (200, "OK")
    status, body = raw_call(dysmsapi_emulator, params)
    assert (status, body["Code"]) == (400, "SignatureNonceUsed")
    assert len(dysmsapi_emulator.messages) == 1
    # A request refused before authentication does not burn its nonce.
    fresh = signed_params(secret="wrong")
    assert raw_call(dysmsapi_emulator, fresh)[1]["Code"] == "SignatureDoesNotMatch"
    retry = signed_params(nonce=fresh["SignatureNonce"], PhoneNumbers="13900139000")
    assert raw_call(dysmsapi_emulator, retry)[1]["Code"] == "OK"


def test_stale_timestamp_is_refused(dysmsapi_emulator: DysmsapiEmulator) -> None:
    stale = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 16 * 60))
    status, body = raw_call(dysmsapi_emulator, signed_params(timestamp=stale))
    assert (status, body["Code"]) == (400, "InvalidTimeStamp.Expired")
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 16 * 60))
    status, body = raw_call(dysmsapi_emulator, signed_params(timestamp=future))
    assert (status, body["Code"]) == (400, "InvalidTimeStamp.Expired")
    recent = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 10 * 60))
    status, body = raw_call(dysmsapi_emulator, signed_params(timestamp=recent))
    assert (status, body["Code"]) == (200, "OK")
    status, body = raw_call(dysmsapi_emulator, signed_params(timestamp="2024-01-01 00:00:00"))
    assert (status, body["Code"]) == (400, "InvalidTimeStamp.Format")


@pytest.mark.parametrize(
    "name", ["AccessKeyId", "Signature", "SignatureMethod", "SignatureNonce", "Timestamp"]
)
def test_missing_common_parameter(dysmsapi_emulator: DysmsapiEmulator, name: str) -> None:
    params = signed_params()
    del params[name]
    if name != "Signature":
        params["Signature"] = compute_signature("POST", params, "testSecret")
    status, body = raw_call(dysmsapi_emulator, params)
    assert (status, body["Code"]) == (400, f"Missing{name}")
    assert body["Message"] == f"{name} is mandatory for this action."
    assert "Recommend" in body


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"SignatureMethod": "HMAC-SHA256"}, 400, "InvalidSignatureMethod"),
        ({"SignatureVersion": "2.0"}, 400, "InvalidSignatureVersion"),
        ({"Version": "2018-01-01"}, 400, "InvalidVersion"),
        ({"Action": "SendSmsPlease"}, 404, "InvalidAction.NotFound"),
        ({"Action": None}, 400, "MissingAction"),
    ],
)
def test_invalid_common_parameter(
    dysmsapi_emulator: DysmsapiEmulator, overrides: dict, status: int, code: str
) -> None:
    got_status, body = raw_call(dysmsapi_emulator, signed_params(**overrides))
    assert (got_status, body["Code"]) == (status, code)


def test_blank_values_are_signed_and_get_and_form_body_work(
    dysmsapi_emulator: DysmsapiEmulator,
) -> None:
    # SignatureType= is blank: dropping it while parsing would break the signature.
    assert raw_call(dysmsapi_emulator, signed_params(method="GET"), method="GET")[1]["Code"] == "OK"
    dysmsapi_emulator.advance_time(61)
    params = signed_params()
    business = {k: params.pop(k) for k in ("PhoneNumbers", "SignName", "TemplateParam")}
    status, body = raw_call(dysmsapi_emulator, params, body=business)
    assert (status, body["Code"]) == (200, "OK")
    assert len(dysmsapi_emulator.messages) == 2


# --------------------------------------------------------------------------- business checks


@pytest.mark.parametrize("name", ["PhoneNumbers", "SignName", "TemplateCode"])
def test_missing_business_parameter(dysmsapi_emulator: DysmsapiEmulator, name: str) -> None:
    status, body = raw_call(dysmsapi_emulator, signed_params(**{name: None}))
    assert (status, body["Code"]) == (400, f"Missing{name}")


def test_missing_business_parameter_through_sdk(
    dysmsapi_emulator: DysmsapiEmulator, client
) -> None:
    request = SendSmsRequest()
    request.set_endpoint(dysmsapi_emulator.endpoint)
    request.set_PhoneNumbers(PHONE)
    request.set_TemplateCode(TEMPLATE)
    error = server_error(client, request)
    assert (error.get_http_status(), error.get_error_code()) == (400, "MissingSignName")
    assert error.get_error_msg() == "SignName is mandatory for this action."


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"sign": "未审核签名"}, "isv.SMS_SIGNATURE_ILLEGAL"),
        ({"template": "SMS_000000000"}, "isv.SMS_TEMPLATE_ILLEGAL"),
        ({"param": '{"code":123456}'}, "isv.INVALID_JSON_PARAM"),
        ({"param": "{code:'123456'}"}, "isv.INVALID_JSON_PARAM"),
        ({"param": '["123456"]'}, "isv.INVALID_JSON_PARAM"),
        ({"param": '{"other":"123456"}'}, "isv.TEMPLATE_MISSING_PARAMETERS"),
        ({"param": None}, "isv.TEMPLATE_MISSING_PARAMETERS"),
    ],
)
def test_business_refusal_is_http_200_without_biz_id(
    dysmsapi_emulator: DysmsapiEmulator, client, kwargs: dict, code: str
) -> None:
    body = send(client, dysmsapi_emulator, **kwargs)  # the SDK raises nothing on HTTP 200
    assert body["Code"] == code
    assert set(body) == {"Code", "Message", "RequestId"}
    assert dysmsapi_emulator.messages == []


@pytest.mark.parametrize(
    "phone",
    [
        "1380013800",  # 10 digits
        "138001380000",  # 12 digits starting with 1, no country code
        "861380013800",  # +86 with a digit short
        "+85290001234",  # international numbers take no +
        "0085290001234",
        "138-0013-8000",
        "1380013800a",
        "123456",
        "13800138000,",
    ],
)
def test_bad_phone_number(dysmsapi_emulator: DysmsapiEmulator, client, phone: str) -> None:
    assert send(client, dysmsapi_emulator, phone)["Code"] == "isv.MOBILE_NUMBER_ILLEGAL"


@pytest.mark.parametrize(
    "phone", [PHONE, "+" + PHONE, "+86" + PHONE, "0086" + PHONE, "86" + PHONE, "85290001234"]
)
def test_accepted_phone_spellings(dysmsapi_emulator: DysmsapiEmulator, client, phone: str) -> None:
    assert send(client, dysmsapi_emulator, phone)["Code"] == "OK"
    assert dysmsapi_emulator.last_message().phone_numbers == phone
    assert dysmsapi_emulator.last_param(phone) == "123456"


def test_phone_number_list(dysmsapi_emulator: DysmsapiEmulator, client) -> None:
    numbers = ",".join(f"138{i:08d}" for i in range(1001))
    assert send(client, dysmsapi_emulator, numbers)["Code"] == "isv.MOBILE_COUNT_OVER_LIMIT"
    numbers = "13800000001,+8613800000002,85290001234"
    assert send(client, dysmsapi_emulator, numbers)["Code"] == "OK"
    message = dysmsapi_emulator.last_message("13800000002")
    assert message is not None
    assert message.numbers == ("13800000001", "13800000002", "85290001234")


# --------------------------------------------------------------------------- flow control


def test_flow_control_minute_hour_day(dysmsapi_emulator: DysmsapiEmulator, client) -> None:
    emulator = dysmsapi_emulator

    def code_and_message() -> tuple[str, str]:
        body = send(client, emulator)
        return body["Code"], body["Message"]

    assert code_and_message() == ("OK", "OK")
    assert code_and_message() == ("isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控Permits:1")
    # Another number and another signature have their own budgets.
    assert send(client, emulator, "13900139000")["Code"] == "OK"
    emulator.advance_time(61)
    for _ in range(4):
        assert code_and_message() == ("OK", "OK")
        emulator.advance_time(61)
    assert code_and_message() == ("isv.BUSINESS_LIMIT_CONTROL", "触发小时级流控Permits:5")
    emulator.advance_time(3600)
    for _ in range(5):
        assert code_and_message() == ("OK", "OK")
        emulator.advance_time(61)
    emulator.advance_time(3600)
    assert code_and_message() == ("isv.BUSINESS_LIMIT_CONTROL", "触发天级流控Permits:10")
    emulator.advance_time(86400)
    assert code_and_message() == ("OK", "OK")
    assert len(emulator.messages) == 12


def test_flow_control_is_per_signature_and_can_be_disabled(client) -> None:
    with DysmsapiEmulator(sign_names=["A", "B"], flow_control=False) as emulator:
        for _ in range(12):
            assert send(client, emulator, sign="A")["Code"] == "OK"
    with DysmsapiEmulator(sign_names=["A", "B"]) as emulator:
        assert send(client, emulator, sign="A")["Code"] == "OK"
        assert send(client, emulator, sign="B")["Code"] == "OK"
        assert send(client, emulator, sign="A")["Code"] == "isv.BUSINESS_LIMIT_CONTROL"


# --------------------------------------------------------------------------- fault injection


def test_fail_next_business_code(dysmsapi_emulator: DysmsapiEmulator, client) -> None:
    dysmsapi_emulator.fail_next("isv.AMOUNT_NOT_ENOUGH", times=2)
    for _ in range(2):
        body = send(client, dysmsapi_emulator)
        assert body["Code"] == "isv.AMOUNT_NOT_ENOUGH"
        assert body["Message"] == "账户余额不足"
        assert "BizId" not in body
    assert dysmsapi_emulator.messages == []
    assert send(client, dysmsapi_emulator)["Code"] == "OK"


def test_fail_next_with_http_status_uses_gateway_shape(
    dysmsapi_emulator: DysmsapiEmulator, client
) -> None:
    dysmsapi_emulator.fail_next("Throttling.User", "custom text", status=400)
    status, body = raw_call(dysmsapi_emulator, signed_params())
    assert status == 400
    assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
    assert (body["Code"], body["Message"]) == ("Throttling.User", "custom text")
    dysmsapi_emulator.fail_next("Throttling.User", status=400)
    error = server_error(client, sms_request(dysmsapi_emulator))
    assert (error.get_http_status(), error.get_error_code()) == (400, "Throttling.User")


def test_fail_next_http_is_not_retried(dysmsapi_emulator: DysmsapiEmulator, client) -> None:
    dysmsapi_emulator.fail_next_http()
    error = server_error(client, sms_request(dysmsapi_emulator))
    assert (error.get_http_status(), error.get_error_code()) == (503, "ServiceUnavailable")
    assert dysmsapi_emulator.requests_served == 1  # SendSms is never retried by the SDK
    dysmsapi_emulator.fail_next_http(500, "InternalError")
    error = server_error(client, sms_request(dysmsapi_emulator))
    assert (error.get_http_status(), error.get_error_code()) == (500, "InternalError")


def test_faults_apply_to_send_sms_only(dysmsapi_emulator: DysmsapiEmulator, client) -> None:
    dysmsapi_emulator.fail_next_http()
    request = QuerySendDetailsRequest()
    request.set_endpoint(dysmsapi_emulator.endpoint)
    request.set_PhoneNumber(PHONE)
    request.set_SendDate(time.strftime("%Y%m%d"))
    request.set_PageSize(10)
    request.set_CurrentPage(1)
    assert json.loads(client.do_action_with_exception(request))["Code"] == "OK"
    assert server_error(client, sms_request(dysmsapi_emulator)).get_http_status() == 503


def test_drop_next(dysmsapi_emulator: DysmsapiEmulator, client) -> None:
    dysmsapi_emulator.drop_next()
    with pytest.raises(ClientException) as caught:
        client.do_action_with_exception(sms_request(dysmsapi_emulator))
    assert caught.value.get_error_code() == "SDK.HttpError"
    assert dysmsapi_emulator.messages == []
    assert send(client, dysmsapi_emulator)["Code"] == "OK"


def test_delay_next_causes_read_timeout_but_still_sends(
    dysmsapi_emulator: DysmsapiEmulator, client
) -> None:
    dysmsapi_emulator.delay_next(0.4)
    request = sms_request(dysmsapi_emulator)
    request.set_read_timeout(0.1)
    with pytest.raises(ClientException) as caught:
        client.do_action_with_exception(request)
    assert caught.value.get_error_code() == "SDK.HttpError"
    assert "timed out" in caught.value.get_error_msg()
    # Like the real service, the request is processed anyway: a timeout is no proof of failure.
    deadline = time.monotonic() + 2
    while not dysmsapi_emulator.messages and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(dysmsapi_emulator.messages) == 1


def test_truncate_next(dysmsapi_emulator: DysmsapiEmulator, client) -> None:
    # The SDK's vendored urllib3 does not enforce Content-Length: it returns the cut body
    # without raising, so callers must treat undecodable JSON as an unknown outcome.
    dysmsapi_emulator.truncate_next()
    body = client.do_action_with_exception(sms_request(dysmsapi_emulator))
    with pytest.raises(ValueError):
        json.loads(body)
    # A strict client notices.
    dysmsapi_emulator.truncate_next()
    conn = http.client.HTTPConnection("127.0.0.1", dysmsapi_emulator.port, timeout=5)
    try:
        conn.request("POST", "/?" + urlencode(signed_params(), quote_via=quote))
        response = conn.getresponse()
        with pytest.raises(http.client.IncompleteRead):
            response.read()
    finally:
        conn.close()
    assert dysmsapi_emulator.messages == []


def test_fault_times_must_be_positive(dysmsapi_emulator: DysmsapiEmulator) -> None:
    with pytest.raises(ValueError):
        dysmsapi_emulator.drop_next(times=0)


# --------------------------------------------------------------------------- connections


def test_one_reused_client_is_one_connection(dysmsapi_emulator: DysmsapiEmulator, client) -> None:
    started = time.monotonic()
    for i in range(20):
        assert send(client, dysmsapi_emulator, f"138{i:08d}")["Code"] == "OK"
    elapsed = time.monotonic() - started
    assert dysmsapi_emulator.connections_opened == 1
    assert dysmsapi_emulator.requests_served == 20
    assert elapsed < 2  # ~40 ms each without TCP_NODELAY; a few ms with it
    send(AcsClient("testId", "testSecret"), dysmsapi_emulator, "13900000000")
    assert dysmsapi_emulator.connections_opened == 2


def test_concurrent_clients(dysmsapi_emulator: DysmsapiEmulator) -> None:
    results: list[str] = []

    def worker(i: int) -> None:
        own = AcsClient("testId", "testSecret")
        results.append(send(own, dysmsapi_emulator, f"1370000000{i}")["Code"])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["OK"] * 8
    assert len(dysmsapi_emulator.messages) == 8
    assert dysmsapi_emulator.connections_opened == 8


def test_reset(dysmsapi_emulator: DysmsapiEmulator, client) -> None:
    params = signed_params()
    assert raw_call(dysmsapi_emulator, params)[1]["Code"] == "OK"
    dysmsapi_emulator.fail_next("isp.SYSTEM_ERROR")
    dysmsapi_emulator.advance_time(10)
    dysmsapi_emulator.reset()
    assert dysmsapi_emulator.messages == []
    assert dysmsapi_emulator.requests_served == 0
    assert dysmsapi_emulator.connections_opened == 0
    assert abs(dysmsapi_emulator.now() - time.time()) < 1
    # Fault gone, flow control and nonces forgotten.
    assert raw_call(dysmsapi_emulator, params)[1]["Code"] == "OK"


def test_stop_is_idempotent_and_closes_idle_connections(client) -> None:
    emulator = DysmsapiEmulator().start()
    assert send(client, emulator)["Code"] == "OK"
    emulator.stop()
    emulator.stop()
    with pytest.raises(ClientException):
        client.do_action_with_exception(sms_request(emulator))


# --------------------------------------------------------------------------- QuerySendDetails


def query_request(
    emulator: DysmsapiEmulator, phone: str, date: str, biz_id: str | None = None, size: int = 10
) -> QuerySendDetailsRequest:
    request = QuerySendDetailsRequest()
    request.set_endpoint(emulator.endpoint)
    request.set_PhoneNumber(phone)
    request.set_SendDate(date)
    request.set_PageSize(size)
    request.set_CurrentPage(1)
    if biz_id:
        request.set_BizId(biz_id)
    return request


def test_query_send_details(dysmsapi_emulator: DysmsapiEmulator, client) -> None:
    # Both messages on one Beijing day: near its midnight, move the emulator's clock past it.
    into_day = (dysmsapi_emulator.now() + 8 * 3600) % 86400
    if into_day > 86400 - 300:
        dysmsapi_emulator.advance_time(86400 - into_day + 5)
    first = send(client, dysmsapi_emulator, out_id="o-1")
    send(client, dysmsapi_emulator, "13900139000")
    dysmsapi_emulator.advance_time(61)
    second = send(client, dysmsapi_emulator, param='{"code":"654321"}')
    message = dysmsapi_emulator.last_message(PHONE)
    assert message is not None
    date = time.strftime("%Y%m%d", time.gmtime(message.accepted_at + 8 * 3600))

    body = json.loads(
        client.do_action_with_exception(query_request(dysmsapi_emulator, PHONE, date))
    )
    assert body["Code"] == "OK"
    assert body["TotalCount"] == 2
    details = body["SmsSendDetailDTOs"]["SmsSendDetailDTO"]
    assert [d["Content"] for d in details] == [f"【{SIGN}】code: 654321", f"【{SIGN}】code: 123456"]
    latest = details[0]
    assert latest["PhoneNum"] == PHONE
    assert (latest["SendStatus"], latest["ErrCode"]) == (3, "DELIVERED")
    assert latest["TemplateCode"] == TEMPLATE
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", latest["SendDate"])
    assert latest["ReceiveDate"] >= latest["SendDate"]
    assert details[1]["OutId"] == "o-1"

    one = json.loads(
        client.do_action_with_exception(
            query_request(dysmsapi_emulator, PHONE, date, biz_id=first["BizId"])
        )
    )
    assert one["TotalCount"] == 1
    assert one["SmsSendDetailDTOs"]["SmsSendDetailDTO"][0]["OutId"] == "o-1"
    page = json.loads(
        client.do_action_with_exception(query_request(dysmsapi_emulator, PHONE, date, size=1))
    )
    assert page["TotalCount"] == 2
    assert len(page["SmsSendDetailDTOs"]["SmsSendDetailDTO"]) == 1
    assert second["BizId"] != first["BizId"]

    other_day = json.loads(
        client.do_action_with_exception(query_request(dysmsapi_emulator, PHONE, "20000101"))
    )
    assert other_day["TotalCount"] == 0
    assert other_day["SmsSendDetailDTOs"]["SmsSendDetailDTO"] == []
    bad = json.loads(
        client.do_action_with_exception(query_request(dysmsapi_emulator, PHONE, date, size=51))
    )
    assert bad["Code"] == "isv.INVALID_PARAMETERS"


# --------------------------------------------------------------------------- standalone


@pytest.fixture
def standalone() -> Iterator[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flask_alisms.testing",
            "--port",
            "0",
            "--access-key",
            "devId:devSecret",
            "--sign",
            "MyApp",
            "--template",
            "SMS_1:code,minutes",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        yield line.rsplit(" ", 1)[-1].strip()
    finally:
        process.terminate()
        process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


def test_standalone_main(standalone: str) -> None:
    request = SendSmsRequest()
    request.set_endpoint(standalone)
    request.set_PhoneNumbers(PHONE)
    request.set_SignName("MyApp")
    request.set_TemplateCode("SMS_1")
    request.set_TemplateParam('{"code":"1234"}')
    body = json.loads(AcsClient("devId", "devSecret").do_action_with_exception(request))
    assert body["Code"] == "isv.TEMPLATE_MISSING_PARAMETERS"
    request.set_TemplateParam('{"code":"1234","minutes":"5"}')
    body = json.loads(AcsClient("devId", "devSecret").do_action_with_exception(request))
    assert body["Code"] == "OK"
