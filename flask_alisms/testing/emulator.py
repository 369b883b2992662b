"""A local emulator of the Alibaba Cloud SMS HTTP API (Dysmsapi 2017-05-25), for tests.

Why: the real service costs money, needs an approved signature and template, rate-limits
numbers and cannot be made to fail on demand. This emulator speaks the same HTTP dialect as
``dysmsapi.aliyuncs.com`` closely enough that the *unpatched* official SDK
(aliyun-python-sdk-core + aliyun-python-sdk-dysmsapi) talks to it: it verifies signature v1.0,
timestamps and nonces, applies the gateway and business checks in the real order with the real
HTTP statuses, codes and body shapes, applies per-number flow control, records accepted messages,
answers ``QuerySendDetails`` and can inject faults (error codes, HTTP errors, slow answers,
dropped or truncated responses). It uses the standard library only.

Use from a test (the ``dysmsapi_emulator`` pytest fixture of :mod:`flask_alisms.pytest_plugin`
does the start/stop and clears the proxy variables for you)::

    from aliyunsdkcore.client import AcsClient
    from aliyunsdkdysmsapi.request.v20170525.SendSmsRequest import SendSmsRequest

    def test_send(dysmsapi_emulator):
        client = AcsClient("testId", "testSecret", "cn-hangzhou")
        request = SendSmsRequest()
        request.set_endpoint(dysmsapi_emulator.endpoint)  # plain HTTP to 127.0.0.1:PORT
        request.set_PhoneNumbers("13800138000")
        request.set_SignName("阿里云短信测试")
        request.set_TemplateCode("SMS_154950909")
        request.set_TemplateParam('{"code":"123456"}')
        client.do_action_with_exception(request)
        assert dysmsapi_emulator.last_param("13800138000") == "123456"

Outside pytest::

    with DysmsapiEmulator(sign_names=["MyApp"]) as emulator:
        ...  # point the SDK at emulator.endpoint

Proxies: the SDK reads ``HTTP_PROXY``/``HTTPS_PROXY`` (and lower-case forms) itself and ignores
``NO_PROXY``, so with a proxy variable set it sends even ``127.0.0.1`` requests to the proxy.
Tests must delete those variables (``monkeypatch.delenv``) or build the client with
``AcsClient(..., proxy={"http": None, "https": None})``.

Standalone, for developing an app by hand::

    python -m flask_alisms.testing --port 8500 --access-key testId:testSecret \\
        --sign MyApp --template SMS_154950909:code
"""

from __future__ import annotations

import argparse
import base64
import calendar
import contextlib
import hashlib
import hmac
import json
import re
import socket
import socketserver
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

__all__ = [
    "AcceptedMessage",
    "DysmsapiEmulator",
    "compute_signature",
    "main",
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
_CHINA_OFFSET = 8 * 3600  # SendDate/ReceiveDate and the SendDate filter are Beijing time.

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


def _canonical_or_raw(number: str) -> str:
    return canonical_number(number.strip()) or number.strip()


# --------------------------------------------------------------------------- records & faults


@dataclass(frozen=True)
class AcceptedMessage:
    """One SendSms request the emulator accepted (what the real service would deliver)."""

    phone_numbers: str
    """``PhoneNumbers`` exactly as the client sent it (one number or a comma list)."""
    sign_name: str
    template_code: str
    template_param: dict[str, str]
    out_id: str | None
    biz_id: str
    request_id: str
    accepted_at: float
    """Seconds since the epoch on the emulator's clock (which :meth:`advance_time` moves)."""

    @property
    def numbers(self) -> tuple[str, ...]:
        """The recipients, canonical (mainland numbers without country prefix)."""
        return tuple(_canonical_or_raw(n) for n in self.phone_numbers.split(","))


@dataclass
class _Fault:
    kind: str  # "error", "delay", "drop" or "truncate"
    remaining: int
    status: int = 200
    code: str = ""
    message: str = ""
    seconds: float = 0.0


class _GatewayError(Exception):
    """Raised inside request processing to answer with the gateway's 4xx/5xx shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message


def _missing(name: str) -> _GatewayError:
    return _GatewayError(400, f"Missing{name}", f"{name} is mandatory for this action.")


def _new_request_id() -> str:
    return str(uuid.uuid4()).upper()


def _gateway_body(code: str, message: str, request_id: str) -> dict[str, Any]:
    return {
        "RequestId": request_id,
        "HostId": HOST_ID,
        "Code": code,
        "Message": message,
        "Recommend": (
            f"https://api.aliyun.com/troubleshoot?q={code}&product=Dysmsapi&requestId={request_id}"
        ),
    }


def _china_time(epoch: float, fmt: str) -> str:
    return time.strftime(fmt, time.gmtime(epoch + _CHINA_OFFSET))


# --------------------------------------------------------------------------- the emulator


class DysmsapiEmulator:
    """An HTTP server that behaves like ``dysmsapi.aliyuncs.com`` for SendSms/QuerySendDetails.

    Point the SDK at :attr:`endpoint` (``request.set_endpoint(emulator.endpoint)``) and
    inspect :attr:`messages` afterwards. Faults queue up and apply, in order, to the next
    SendSms requests. All state is guarded by one lock, so requests may come from many threads.
    """

    def __init__(
        self,
        *,
        access_keys: Mapping[str, str] | None = None,
        sign_names: Iterable[str] = ("阿里云短信测试",),
        templates: Mapping[str, Sequence[str]] | None = None,
        flow_control: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.access_keys: dict[str, str] = dict(
            access_keys if access_keys is not None else {"testId": "testSecret"}
        )
        # A lone string is one name, not a set of characters.
        names = (sign_names,) if isinstance(sign_names, str) else sign_names
        self.sign_names: frozenset[str] = frozenset(names)
        self.templates: dict[str, tuple[str, ...]] = {
            code: tuple(names)
            for code, names in (
                templates if templates is not None else {"SMS_154950909": ("code",)}
            ).items()
        }
        self.flow_control = flow_control
        self._host = host
        self._port = port
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._messages: list[AcceptedMessage] = []
        self._faults: list[_Fault] = []
        self._nonces: dict[str, float] = {}
        self._sent: dict[tuple[str, str], list[float]] = {}
        self._clock_offset = 0.0
        self._connections_opened = 0
        self._requests_served = 0
        self._biz_seq = 0

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> DysmsapiEmulator:
        """Bind and serve in a background thread; returns self so it can be chained."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self._host, self._port), _Handler)
        server.emulator = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},  # stop() waits up to one interval
            name=f"dysmsapi-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (idempotent)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # wakes delayed answers
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> DysmsapiEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the one the OS chose when created with ``port=0``)."""
        if self._server is None:
            return self._port
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        """``host:port``, what ``request.set_endpoint`` / ``client.add_endpoint`` take."""
        return f"{self._host}:{self.port}"

    @property
    def url(self) -> str:
        """``http://host:port``, for raw HTTP clients."""
        return f"http://{self.endpoint}"

    # ----------------------------------------------------------------- inspection

    @property
    def messages(self) -> list[AcceptedMessage]:
        """A snapshot of the accepted messages, oldest first."""
        with self._lock:
            return list(self._messages)

    def last_message(self, phone: str | None = None) -> AcceptedMessage | None:
        """The latest accepted message (to ``phone``, in any accepted spelling), or None."""
        wanted = _canonical_or_raw(phone) if phone is not None else None
        with self._lock:
            for message in reversed(self._messages):
                if wanted is None or wanted in message.numbers:
                    return message
        return None

    def last_param(self, phone: str, name: str = "code") -> str:
        """The template variable ``name`` of the latest message to ``phone``: the code sent.

        Raises LookupError if nothing was sent to ``phone`` or the variable is absent.
        """
        message = self.last_message(phone)
        if message is None:
            raise LookupError(f"no message was accepted for {phone!r}")
        try:
            return message.template_param[name]
        except KeyError:
            raise LookupError(f"the last message to {phone!r} has no {name!r} variable") from None

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted so far: 1 for any number of sends through one AcsClient."""
        with self._lock:
            return self._connections_opened

    @property
    def requests_served(self) -> int:
        """HTTP requests received so far (faulted ones included)."""
        with self._lock:
            return self._requests_served

    def reset(self) -> None:
        """Forget messages, counters, flow-control history, pending faults, nonces and clock."""
        with self._lock:
            self._messages.clear()
            self._faults.clear()
            self._nonces.clear()
            self._sent.clear()
            self._clock_offset = 0.0
            self._connections_opened = 0
            self._requests_served = 0

    def advance_time(self, seconds: float) -> None:
        """Move the flow-control clock forward so tests need not sleep.

        Only flow-control windows and recorded times move; Timestamp checking uses the real
        clock, because the SDK stamps requests with it.
        """
        with self._lock:
            self._clock_offset += seconds

    def now(self) -> float:
        """The emulator's clock: real time plus everything :meth:`advance_time` added."""
        with self._lock:
            return time.time() + self._clock_offset

    # ----------------------------------------------------------------- fault injection

    def fail_next(
        self, code: str, message: str | None = None, status: int = 200, *, times: int = 1
    ) -> None:
        """Answer the next ``times`` SendSms requests with error ``code`` instead of sending.

        With ``status`` 200 the body has the business shape (Code, Message, RequestId), as for
        ``isv.*`` codes; with ``status >= 400`` the gateway shape (plus HostId, Recommend).
        """
        text = message if message is not None else KNOWN_MESSAGES.get(code, code)
        self._add_fault(_Fault("error", times, status=status, code=code, message=text))

    def fail_next_http(
        self,
        status: int = 503,
        code: str = "ServiceUnavailable",
        message: str | None = None,
        *,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` SendSms requests with an HTTP error (the SDK raises)."""
        self.fail_next(code, message, status, times=times)

    def delay_next(self, seconds: float, *, times: int = 1) -> None:
        """Wait ``seconds`` before answering, to provoke client read timeouts.

        The request is still processed afterwards, as on the real service: a client that
        timed out cannot know whether its SMS went out (so it must not blindly retry).
        """
        self._add_fault(_Fault("delay", times, seconds=seconds))

    def drop_next(self, *, times: int = 1) -> None:
        """Close the connection without any response (nothing is sent or recorded)."""
        self._add_fault(_Fault("drop", times))

    def truncate_next(self, *, times: int = 1) -> None:
        """Send headers announcing more body than is sent, then close (nothing recorded)."""
        self._add_fault(_Fault("truncate", times))

    def _add_fault(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.remaining -= 1
            if fault.remaining == 0:
                self._faults.pop(0)
            return fault

    # ----------------------------------------------------------------- request processing

    def handle_request(self, method: str, params: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """Process one API call given its merged parameters: returns (HTTP status, body).

        Public so the checks can be exercised without HTTP; faults are not applied here.
        """
        request_id = _new_request_id()
        try:
            return 200, self._process(method, params, request_id)
        except _GatewayError as error:
            return error.status, _gateway_body(error.code, error.message, request_id)

    def _process(self, method: str, params: Mapping[str, str], request_id: str) -> dict[str, Any]:
        # Routing first: the gateway must know the API before it can authenticate for it.
        action = params.get("Action")
        if not action:
            raise _missing("Action")
        version = params.get("Version")
        if not version:
            raise _missing("Version")
        if version != API_VERSION:
            raise _GatewayError(400, "InvalidVersion", "Specified parameter Version is not valid.")
        handlers = {"SendSms": self._send_sms, "QuerySendDetails": self._query_send_details}
        if action not in handlers:
            raise _GatewayError(
                404,
                "InvalidAction.NotFound",
                "Specified api is not found, please check your url and method.",
            )
        self._authenticate(method, params)
        return handlers[action](params, request_id)

    def _authenticate(self, method: str, params: Mapping[str, str]) -> None:
        for name in (
            "AccessKeyId",
            "Signature",
            "SignatureMethod",
            "SignatureVersion",
            "SignatureNonce",
            "Timestamp",
        ):
            if not params.get(name):
                raise _missing(name)
        if params["SignatureMethod"] != "HMAC-SHA1":
            raise _GatewayError(
                400, "InvalidSignatureMethod", "Specified signature method is not supported."
            )
        if params["SignatureVersion"] != "1.0":
            raise _GatewayError(
                400, "InvalidSignatureVersion", "Specified signature version is not valid."
            )
        stamp = params["Timestamp"]
        if not _TIMESTAMP.fullmatch(stamp):
            raise _GatewayError(
                400,
                "InvalidTimeStamp.Format",
                "Specified time stamp or date value is not well formatted.",
            )
        try:
            sent_at = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            raise _GatewayError(
                400,
                "InvalidTimeStamp.Format",
                "Specified time stamp or date value is not well formatted.",
            ) from None
        real_now = time.time()
        if abs(real_now - sent_at) > TIMESTAMP_TOLERANCE:
            raise _GatewayError(
                400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
            )
        secret = self.access_keys.get(params["AccessKeyId"])
        if secret is None:
            raise _GatewayError(
                404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."
            )
        expected = compute_signature(method, params, secret)
        if not hmac.compare_digest(expected.encode(), params["Signature"].encode()):
            raise _GatewayError(
                400,
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation. "
                f"server string to sign is:{string_to_sign(method, params)}",
            )
        nonce = params["SignatureNonce"]
        with self._lock:
            # Nonces only need remembering as long as their timestamp would be accepted.
            horizon = real_now - 2 * TIMESTAMP_TOLERANCE
            for old in [n for n, seen in self._nonces.items() if seen < horizon]:
                del self._nonces[old]
            if nonce in self._nonces:
                raise _GatewayError(
                    400, "SignatureNonceUsed", "Specified signature nonce was used already."
                )
            self._nonces[nonce] = real_now

    def _send_sms(self, params: Mapping[str, str], request_id: str) -> dict[str, Any]:
        for name in ("PhoneNumbers", "SignName", "TemplateCode"):
            if not params.get(name):
                raise _missing(name)
        phone_numbers = params["PhoneNumbers"]
        sign_name = params["SignName"]
        template_code = params["TemplateCode"]

        def refuse(code: str, message: str | None = None) -> dict[str, Any]:
            text = message if message is not None else KNOWN_MESSAGES[code]
            return {"Code": code, "Message": text, "RequestId": request_id}

        if sign_name not in self.sign_names:
            return refuse("isv.SMS_SIGNATURE_ILLEGAL")
        if template_code not in self.templates:
            return refuse("isv.SMS_TEMPLATE_ILLEGAL")
        raw_numbers = phone_numbers.split(",")
        if len(raw_numbers) > MAX_PHONE_NUMBERS:
            return refuse("isv.MOBILE_COUNT_OVER_LIMIT")
        numbers: list[str] = []
        for raw in raw_numbers:
            number = canonical_number(raw.strip())
            if number is None:
                return refuse("isv.MOBILE_NUMBER_ILLEGAL")
            numbers.append(number)
        template_param: dict[str, str] = {}
        raw_param = params.get("TemplateParam")
        if raw_param:
            try:
                decoded = json.loads(raw_param)
            except ValueError:
                return refuse("isv.INVALID_JSON_PARAM")
            if not isinstance(decoded, dict) or not all(
                isinstance(value, str) for value in decoded.values()
            ):
                return refuse("isv.INVALID_JSON_PARAM")
            template_param = decoded
        missing = [name for name in self.templates[template_code] if name not in template_param]
        if missing:
            return refuse("isv.TEMPLATE_MISSING_PARAMETERS", f"模板缺少变量:{','.join(missing)}")

        with self._lock:
            now = time.time() + self._clock_offset
            if self.flow_control:
                for number in numbers:
                    history = self._sent.get((number, sign_name), [])
                    for window, permits, message in FLOW_CONTROL_WINDOWS:
                        if sum(1 for at in history if at > now - window) >= permits:
                            return refuse("isv.BUSINESS_LIMIT_CONTROL", message)
            for number in numbers:
                history = self._sent.setdefault((number, sign_name), [])
                history[:] = [at for at in history if at > now - FLOW_CONTROL_WINDOWS[-1][0]]
                history.append(now)
            self._biz_seq += 1
            biz_id = f"{int(now * 1000) % 10**12:012d}{self._biz_seq % 10**6:06d}^0"
            self._messages.append(
                AcceptedMessage(
                    phone_numbers=phone_numbers,
                    sign_name=sign_name,
                    template_code=template_code,
                    template_param=dict(template_param),
                    out_id=params.get("OutId"),
                    biz_id=biz_id,
                    request_id=request_id,
                    accepted_at=now,
                )
            )
        return {"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": request_id}

    def _query_send_details(self, params: Mapping[str, str], request_id: str) -> dict[str, Any]:
        for name in ("PhoneNumber", "SendDate", "PageSize", "CurrentPage"):
            if not params.get(name):
                raise _missing(name)

        def refuse(message: str) -> dict[str, Any]:
            return {"Code": "isv.INVALID_PARAMETERS", "Message": message, "RequestId": request_id}

        send_date = params["SendDate"]
        if not re.fullmatch(r"\d{8}", send_date):
            return refuse("SendDate must be yyyyMMdd")
        try:
            page_size = int(params["PageSize"])
            current_page = int(params["CurrentPage"])
        except ValueError:
            return refuse("PageSize and CurrentPage must be integers")
        if not 1 <= page_size <= 50 or current_page < 1:
            return refuse("PageSize must be 1-50 and CurrentPage at least 1")
        phone = _canonical_or_raw(params["PhoneNumber"])
        biz_id = params.get("BizId")
        details: list[dict[str, Any]] = []
        for message in reversed(self.messages):
            if phone not in message.numbers:
                continue
            if biz_id and message.biz_id != biz_id:
                continue
            if _china_time(message.accepted_at, "%Y%m%d") != send_date:
                continue
            variables = ", ".join(f"{k}: {v}" for k, v in message.template_param.items())
            details.append(
                {
                    "PhoneNum": phone,
                    "SendStatus": 3,
                    "ErrCode": "DELIVERED",
                    "TemplateCode": message.template_code,
                    "Content": f"【{message.sign_name}】{variables}",
                    "SendDate": _china_time(message.accepted_at, "%Y-%m-%d %H:%M:%S"),
                    "ReceiveDate": _china_time(message.accepted_at + 2, "%Y-%m-%d %H:%M:%S"),
                    "OutId": message.out_id or "",
                }
            )
        start = (current_page - 1) * page_size
        return {
            "Code": "OK",
            "Message": "OK",
            "RequestId": request_id,
            "TotalCount": len(details),
            "SmsSendDetailDTOs": {"SmsSendDetailDTO": details[start : start + page_size]},
        }

    # ----------------------------------------------------------------- connection bookkeeping

    def _connection_opened(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections_opened += 1
            self._connections.add(conn)

    def _connection_closed(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _request_received(self) -> None:
        with self._lock:
            self._requests_served += 1


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    emulator: DysmsapiEmulator

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall on DNS; skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Keep quiet about clients that hung up (read timeouts), report anything else."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one reused AcsClient = one TCP connection
    server_version = "Tengine"
    sys_version = ""
    disable_nagle_algorithm = True  # TCP_NODELAY, else ~40 ms per reused-connection call
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.emulator._connection_opened(self.request)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.emulator._connection_closed(self.request)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request log lines on stderr."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        emulator = self.server.emulator
        emulator._request_received()
        length_header = self.headers.get("Content-Length") or "0"
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower() or not (
            length_header.isdigit()
        ):
            # Neither the SDK nor a form post needs chunked bodies; refuse rather than guess.
            self.close_connection = True
            message = "A request body needs a valid Content-Length."
            self._send(411, _gateway_body("MissingContentLength", message, _new_request_id()))
            return
        length = int(length_header)
        body = self.rfile.read(length) if length > 0 else b""
        params: dict[str, str] = dict(
            parse_qsl(urlsplit(self.path).query, keep_blank_values=True, errors="replace")
        )
        content_type = self.headers.get("Content-Type", "")
        if body and (not content_type or "x-www-form-urlencoded" in content_type):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))

        fault = emulator._take_fault() if params.get("Action") == "SendSms" else None
        if fault is not None:
            if fault.kind == "drop":
                self.close_connection = True
                return
            if fault.kind == "truncate":
                self._send_truncated()
                return
            if fault.kind == "delay":
                emulator._stopping.wait(fault.seconds)
            elif fault.kind == "error":
                request_id = _new_request_id()
                if fault.status >= 400:
                    payload = _gateway_body(fault.code, fault.message, request_id)
                else:
                    payload = {
                        "Code": fault.code,
                        "Message": fault.message,
                        "RequestId": request_id,
                    }
                self._send(fault.status, payload)
                return
        status, payload = emulator.handle_request(self.command, params)
        self._send(status, payload)

    def _send(self, status: int, payload: Mapping[str, Any]) -> None:
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-acs-request-id", str(payload.get("RequestId", "")))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _send_truncated(self) -> None:
        payload = {"Code": "OK", "Message": "OK", "RequestId": _new_request_id()}
        data = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data) + 100))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True


# --------------------------------------------------------------------------- command line


def _parse_template(spec: str) -> tuple[str, tuple[str, ...]]:
    code, _, names = spec.partition(":")
    return code, tuple(name for name in names.split(",") if name)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the emulator standalone until Ctrl-C, for developing an app against it by hand."""
    parser = argparse.ArgumentParser(
        prog="python -m flask_alisms.testing",
        description="Local emulator of the Alibaba Cloud SMS API (Dysmsapi 2017-05-25).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument(
        "--access-key", action="append", metavar="ID:SECRET", help="repeatable; testId:testSecret"
    )
    parser.add_argument("--sign", action="append", metavar="NAME", help="approved signature")
    parser.add_argument(
        "--template", action="append", metavar="CODE:VAR[,VAR]", help="approved template"
    )
    parser.add_argument("--no-flow-control", action="store_true")
    args = parser.parse_args(argv)

    access_keys = None
    if args.access_key:
        access_keys = dict(key.partition(":")[::2] for key in args.access_key)
    emulator = DysmsapiEmulator(
        access_keys=access_keys,
        sign_names=args.sign or ("阿里云短信测试",),
        templates=dict(_parse_template(t) for t in args.template) if args.template else None,
        flow_control=not args.no_flow_control,
        host=args.host,
        port=args.port,
    )
    with emulator:
        print(f"Dysmsapi emulator listening on {emulator.endpoint}", flush=True)
        print(f"  access keys: {', '.join(emulator.access_keys)}", flush=True)
        print(f"  signatures:  {', '.join(sorted(emulator.sign_names))}", flush=True)
        print(f"  templates:   {', '.join(emulator.templates)}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping", flush=True)


if __name__ == "__main__":
    main()
