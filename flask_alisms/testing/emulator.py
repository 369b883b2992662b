"""A local emulator of the Alibaba Cloud SMS HTTP API (Dysmsapi 2017-05-25), for tests.

Why: the real service costs money, needs an approved signature and template, rate-limits
numbers and cannot be made to fail on demand. This emulator speaks the same HTTP dialect as
``dysmsapi.aliyuncs.com`` closely enough that the *unpatched* official SDK
(aliyun-python-sdk-core + aliyun-python-sdk-dysmsapi) talks to it: it verifies signature v1.0,
timestamps and nonces, applies the gateway and business checks in the real order with the real
HTTP statuses, codes and body shapes, applies per-number flow control, records accepted messages,
answers ``QuerySendDetails`` and can inject faults (error codes, HTTP errors, slow answers,
dropped or truncated responses). It uses the standard library only.

Use from a test (the ``dysmsapi_emulator`` pytest fixture of
:mod:`flask_alisms.testing.pytest_plugin` does the start/stop and clears the proxy variables
for you)::

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

import contextlib
import socket
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from .account import AccountActions
from .actions import AcceptedMessage, Refused, check_send_sms, query_send_details
from .receipts import DeliveryBook
from .server import Fault, Server
from .signing import (
    API_VERSION,
    FLOW_CONTROL_WINDOWS,
    KNOWN_MESSAGES,
    TIMESTAMP_TOLERANCE,
    GatewayError,
    canonical_or_raw,
    check_signature,
    gateway_body,
    missing,
    new_request_id,
)

__all__ = ["AcceptedMessage", "DysmsapiEmulator"]


class DysmsapiEmulator(AccountActions):
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
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._messages: list[AcceptedMessage] = []
        self._faults: list[Fault] = []
        self._nonces: dict[str, float] = {}
        self._sent: dict[tuple[str, str], list[float]] = {}
        self._clock_offset = 0.0
        self._connections_opened = 0
        self._requests_served = 0
        self._biz_seq = 0
        self.deliveries = DeliveryBook(self.now)
        self._setup_account(self.sign_names, self.templates)

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> DysmsapiEmulator:
        """Bind and serve in a background thread; returns self so it can be chained."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = Server((self._host, self._port), self)
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
        self.deliveries.stop_worker()
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
        wanted = canonical_or_raw(phone) if phone is not None else None
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
        self.deliveries.clear()

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
        self._add_fault(Fault("error", times, status=status, code=code, message=text))

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
        self._add_fault(Fault("delay", times, seconds=seconds))

    def drop_next(self, *, times: int = 1) -> None:
        """Close the connection without any response (nothing is sent or recorded)."""
        self._add_fault(Fault("drop", times))

    def truncate_next(self, *, times: int = 1) -> None:
        """Send headers announcing more body than is sent, then close (nothing recorded)."""
        self._add_fault(Fault("truncate", times))

    def _add_fault(self, fault: Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self) -> Fault | None:
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
        request_id = new_request_id()
        try:
            return 200, self._process(method, params, request_id)
        except GatewayError as error:
            return error.status, gateway_body(error.code, error.message, request_id)
        except Refused as refusal:
            return 200, refusal.body(request_id)

    def _process(self, method: str, params: Mapping[str, str], request_id: str) -> dict[str, Any]:
        # Routing first: the gateway must know the API before it can authenticate for it.
        action = params.get("Action")
        if not action:
            raise missing("Action")
        version = params.get("Version")
        if not version:
            raise missing("Version")
        if version != API_VERSION:
            raise GatewayError(400, "InvalidVersion", "Specified parameter Version is not valid.")
        handlers = {"SendSms": self._send_sms, "QuerySendDetails": self._query_send_details}
        handlers.update(self._account_handlers())
        if action not in handlers:
            raise GatewayError(
                404,
                "InvalidAction.NotFound",
                "Specified api is not found, please check your url and method.",
            )
        self._authenticate(method, params)
        return handlers[action](params, request_id)

    def _authenticate(self, method: str, params: Mapping[str, str]) -> None:
        real_now = time.time()
        check_signature(method, params, self.access_keys, real_now)
        nonce = params["SignatureNonce"]
        with self._lock:
            # Nonces only need remembering as long as their timestamp would be accepted.
            horizon = real_now - 2 * TIMESTAMP_TOLERANCE
            for old in [n for n, seen in self._nonces.items() if seen < horizon]:
                del self._nonces[old]
            if nonce in self._nonces:
                raise GatewayError(
                    400, "SignatureNonceUsed", "Specified signature nonce was used already."
                )
            self._nonces[nonce] = real_now

    def _send_sms(self, params: Mapping[str, str], request_id: str) -> dict[str, Any]:
        numbers, template_param = check_send_sms(params, self.sign_names, self.templates)
        self._check_reviews(params)
        sign_name = params["SignName"]
        with self._lock:
            now = time.time() + self._clock_offset
            if self.flow_control:
                for number in numbers:
                    history = self._sent.get((number, sign_name), [])
                    for window, permits, message in FLOW_CONTROL_WINDOWS:
                        if sum(1 for at in history if at > now - window) >= permits:
                            raise Refused("isv.BUSINESS_LIMIT_CONTROL", message)
            for number in numbers:
                history = self._sent.setdefault((number, sign_name), [])
                history[:] = [at for at in history if at > now - FLOW_CONTROL_WINDOWS[-1][0]]
                history.append(now)
            self._biz_seq += 1
            biz_id = f"{int(now * 1000) % 10**12:012d}{self._biz_seq % 10**6:06d}^0"
            self._messages.append(
                AcceptedMessage(
                    phone_numbers=params["PhoneNumbers"],
                    sign_name=sign_name,
                    template_code=params["TemplateCode"],
                    template_param=dict(template_param),
                    out_id=params.get("OutId"),
                    biz_id=biz_id,
                    request_id=request_id,
                    accepted_at=now,
                )
            )
            self.deliveries.accepted(biz_id, tuple(numbers), params.get("OutId") or "", now)
        return {"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": request_id}

    def _query_send_details(self, params: Mapping[str, str], request_id: str) -> dict[str, Any]:
        now = self.now()

        def status(message: AcceptedMessage, number: str) -> tuple[int, str, float | None]:
            fate = self.deliveries.fate(message.biz_id, number)
            return fate.status(now) if fate is not None else (3, "DELIVERED", now)

        return query_send_details(params, self.messages, request_id, status)

    # ----------------------------------------------------------------- delivery receipts

    def configure_receipts(
        self,
        url: str | None = None,
        *,
        delay: float = 0.0,
        success_rate: float = 1.0,
        duplicates: int = 0,
        seed: int | None = None,
        background: bool = False,
    ) -> None:
        """How accepted messages end: delivered after ``delay`` seconds (emulator clock) with
        probability ``success_rate``; with ``url``, their SmsReport is POSTed there
        (``1 + duplicates`` times) by :meth:`push_receipts` or, with ``background``, by a
        thread as soon as it is due. Applies to messages accepted afterwards."""
        self.deliveries.configure(
            url, delay=delay, success_rate=success_rate, duplicates=duplicates, seed=seed
        )
        if background:
            self.deliveries.start_worker()

    def fail_delivery(self, phone: str, err_code: str = "UNDELIV") -> None:
        """Make every later message to ``phone`` fail delivery with ``err_code``."""
        self.deliveries.fail_number(canonical_or_raw(phone), err_code)

    def push_receipts(self) -> int:
        """POST the receipts that are due now to the configured URL; returns how many."""
        return self.deliveries.push_due()

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
