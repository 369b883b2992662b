"""The wire dialect of Dysmsapi 2017-05-25 that the emulator speaks.

Why a module of its own: signature v1.0, the number rules and the gateway's error shapes are
what a test may want to reproduce by hand (to forge a request, or to check what the SDK
signs) without starting a server. Standard library only.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

__all__ = [
    "API_VERSION",
    "FLOW_CONTROL_WINDOWS",
    "HOST_ID",
    "KNOWN_MESSAGES",
    "MAX_PHONE_NUMBERS",
    "TIMESTAMP_TOLERANCE",
    "GatewayError",
    "canonical_number",
    "canonical_or_raw",
    "check_signature",
    "compute_signature",
    "gateway_body",
    "missing",
    "new_request_id",
    "percent_encode",
    "string_to_sign",
]

HOST_ID = "dysmsapi.aliyuncs.com"
API_VERSION = "2017-05-25"
#: How far a request's Timestamp may be from the server clock, as on the real gateway.
TIMESTAMP_TOLERANCE = 15 * 60
#: Flow-control windows for verification codes: (seconds, permits, message).
FLOW_CONTROL_WINDOWS: tuple[tuple[int, int, str], ...] = (
    (60, 1, "触发分钟级流控Permits:1"),
    (3600, 5, "触发小时级流控Permits:5"),
    (86400, 10, "触发天级流控Permits:10"),
)
MAX_PHONE_NUMBERS = 1000

_MAINLAND = re.compile(r"(?:\+86|0086|86|\+)?(1\d{10})")
_INTERNATIONAL = re.compile(r"[1-9]\d{6,14}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")

#: Messages the real service gives for the codes this emulator produces or is told to inject.
KNOWN_MESSAGES: dict[str, str] = {
    "OK": "OK",
    "isv.SMS_SIGNATURE_ILLEGAL": "该账号下找不到对应签名",
    "isv.SMS_TEMPLATE_ILLEGAL": "该账号下找不到对应模板",
    "isv.MOBILE_NUMBER_ILLEGAL": "非法手机号",
    "isv.MOBILE_COUNT_OVER_LIMIT": "手机号码数量超过限制",
    "isv.INVALID_JSON_PARAM": "JSON参数不合法，只接受字符串值",
    "isv.TEMPLATE_MISSING_PARAMETERS": "模板缺少变量",
    "isv.BUSINESS_LIMIT_CONTROL": "触发分钟级流控Permits:1",
    "isv.DAY_LIMIT_CONTROL": "触发日发送限额",
    "isv.MONTH_LIMIT_CONTROL": "触发月发送限额",
    "isv.AMOUNT_NOT_ENOUGH": "账户余额不足",
    "isv.OUT_OF_SERVICE": "业务停机",
    "isv.DENY_IP_RANGE": "源IP地址所在的地区被禁用",
    "isv.INVALID_PARAMETERS": "参数异常",
    "isp.RAM_PERMISSION_DENY": "RAM权限DENY",
    "isp.SYSTEM_ERROR": "系统错误",
    "InternalError": "The request processing has failed due to some unknown error.",
    "ServiceUnavailable": "The request has failed due to a temporary failure of the server.",
    "Throttling": "Request was denied due to request throttling.",
    "Throttling.User": "Request was denied due to user flow control.",
}


# --------------------------------------------------------------------------- signature v1.0


def percent_encode(value: str) -> str:
    """Percent-encode UTF-8 per RFC 3986, the way signature v1.0 needs it.

    Only ``A-Z a-z 0-9 - _ . ~`` stay; a space becomes ``%20`` (not ``+``) and ``*`` ``%2A``.
    """
    return quote(value, safe="-_.~", encoding="utf-8")


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """Build the v1.0 string to sign from every parameter except ``Signature``.

    Blank values are kept (``SignatureType=``): the SDK signs them.
    """
    canonical = "&".join(
        f"{percent_encode(name)}={percent_encode(value)}"
        for name, value in sorted(params.items())
        if name != "Signature"
    )
    return f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonical)}"


def compute_signature(method: str, params: Mapping[str, str], secret: str) -> str:
    """Return the v1.0 ``Signature`` (Base64 HMAC-SHA1 keyed with ``secret + "&"``)."""
    digest = hmac.new(
        f"{secret}&".encode(), string_to_sign(method, params).encode(), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode("ascii")


# --------------------------------------------------------------------------- gateway answers


class GatewayError(Exception):
    """Raised inside request processing to answer with the gateway's 4xx/5xx shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message


def missing(name: str) -> GatewayError:
    """The gateway's answer to a request without the mandatory parameter ``name``."""
    return GatewayError(400, f"Missing{name}", f"{name} is mandatory for this action.")


def new_request_id() -> str:
    """A RequestId in the service's spelling (an upper-case UUID)."""
    return str(uuid.uuid4()).upper()


def gateway_body(code: str, message: str, request_id: str) -> dict[str, Any]:
    """The body the gateway sends with a 4xx/5xx status (business errors are smaller)."""
    return {
        "RequestId": request_id,
        "HostId": HOST_ID,
        "Code": code,
        "Message": message,
        "Recommend": (
            f"https://api.aliyun.com/troubleshoot?q={code}&product=Dysmsapi&requestId={request_id}"
        ),
    }


def _bad_timestamp() -> GatewayError:
    return GatewayError(
        400,
        "InvalidTimeStamp.Format",
        "Specified time stamp or date value is not well formatted.",
    )


def check_signature(
    method: str, params: Mapping[str, str], access_keys: Mapping[str, str], real_now: float
) -> None:
    """Apply the gateway's authentication checks in its order; raise GatewayError on the first.

    The nonce is not checked here: remembering nonces is state, which the emulator keeps.
    """
    for name in (
        "AccessKeyId",
        "Signature",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "Timestamp",
    ):
        if not params.get(name):
            raise missing(name)
    if params["SignatureMethod"] != "HMAC-SHA1":
        raise GatewayError(
            400, "InvalidSignatureMethod", "Specified signature method is not supported."
        )
    if params["SignatureVersion"] != "1.0":
        raise GatewayError(
            400, "InvalidSignatureVersion", "Specified signature version is not valid."
        )
    stamp = params["Timestamp"]
    if not _TIMESTAMP.fullmatch(stamp):
        raise _bad_timestamp()
    try:
        sent_at = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        raise _bad_timestamp() from None
    if abs(real_now - sent_at) > TIMESTAMP_TOLERANCE:
        raise GatewayError(
            400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
        )
    secret = access_keys.get(params["AccessKeyId"])
    if secret is None:
        raise GatewayError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
    expected = compute_signature(method, params, secret)
    if not hmac.compare_digest(expected.encode(), params["Signature"].encode()):
        raise GatewayError(
            400,
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation. "
            f"server string to sign is:{string_to_sign(method, params)}",
        )


# --------------------------------------------------------------------------- phone numbers


def canonical_number(number: str) -> str | None:
    """Return the number the service delivers to, or None if it would refuse it.

    Mainland numbers lose their ``+``/``+86``/``0086``/``86`` prefix (11 digits starting with
    1); others must be country code + number, digits only, 7-15 digits, not starting with 0.
    Other digit strings starting with 1 or 86 are refused rather than taken as international:
    they are mistyped mainland numbers (country code 1 would need exactly 11 digits, which
    always mean mainland), and that mistake is exactly what tests should catch.
    """
    mainland = _MAINLAND.fullmatch(number)
    if mainland:
        return mainland.group(1)
    if _INTERNATIONAL.fullmatch(number) and not number.startswith(("1", "86")):
        return number
    return None


def canonical_or_raw(number: str) -> str:
    """The canonical number, or the stripped input when the service would refuse it."""
    return canonical_number(number.strip()) or number.strip()
