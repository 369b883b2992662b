"""The Alibaba Cloud sender: Dysmsapi 2017-05-25 through the official SDK.

Safety: the verification code travels in the template parameters. Nothing here puts those
values, or the AccessKey secret, into a repr, a result message or a log record. That includes
the Aliyun SDK's own log records (see :mod:`.redaction`), which otherwise carry the
request's query string (with the code) and the gateway's string-to-sign.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ..exceptions import ConfigurationError
from ..phones import mask
from .base import Credentials, Sender, SendResult, SmsMessage, elapsed_ms, failure
from .redaction import (
    MAY_HAVE_BEEN_SENT,
    describe_transport_failure,
    gateway_message,
    redact_sdk_logs,
    scrub,
)

__all__ = ["AliyunSender"]

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "dysmsapi.aliyuncs.com"
DEFAULT_REGION_ID = "cn-hangzhou"
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 10.0
#: Clients kept per AliyunSender: the current credentials plus the previous ones, so a key
#: rotation in the panel does not thrash while requests with the old key finish.
MAX_CACHED_CLIENTS = 2


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- Aliyun


class AliyunSender(Sender):
    """Sends through Alibaba Cloud SMS (Dysmsapi 2017-05-25) with the official SDK.

    ``endpoint``: None for the real ``dysmsapi.aliyuncs.com`` over HTTPS; ``host:port`` or
    ``http://host:port`` for plain HTTP (an emulator); ``https://host[:port]`` for HTTPS.

    Timeouts are in seconds (floats allowed; the SDK passes them to its bundled ``requests``).

    ``proxies``: a requests-style mapping. None means: for a loopback endpoint, no proxy
    (the SDK would otherwise send 127.0.0.1 to ``HTTP_PROXY``, as it ignores ``NO_PROXY``);
    otherwise the SDK's behaviour of honouring ``HTTP(S)_PROXY``.

    One ``AcsClient`` is kept per credential set and reused, so consecutive sends share one
    keep-alive connection (and, against Aliyun, one TLS handshake).
    """

    name = "aliyun"

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        region_id: str = DEFAULT_REGION_ID,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        proxies: Mapping[str, str | None] | None = None,
        pool_size: int = 10,
    ) -> None:
        if not connect_timeout or connect_timeout <= 0 or not read_timeout or read_timeout <= 0:
            # The SDK treats 0 as "unset" and silently falls back to its defaults.
            raise ConfigurationError("AliyunSender timeouts must be positive numbers of seconds")
        if not region_id:
            raise ConfigurationError("AliyunSender needs a region_id such as 'cn-hangzhou'")
        self._host, self._https = self._parse_endpoint(endpoint)
        self.endpoint = endpoint
        self.region_id = region_id
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)
        if proxies is None and endpoint is not None:
            hostname = urlsplit(f"//{self._host}").hostname or ""
            if _is_loopback(hostname):
                proxies = {"http": None, "https": None}
        # A falsy mapping makes the SDK read the proxy variables, so keep None for "default".
        self._proxies = dict(proxies) if proxies else None
        self._pool_size = pool_size
        self._clients: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._local = threading.local()
        # Import here, not at module level: the SDK is only needed when sending for real.
        # Importing the client first creates the SDK's loggers, which the redaction needs.
        import aliyunsdkcore.client  # noqa: F401
        from aliyunsdkcore.http import protocol_type
        from aliyunsdkdysmsapi.request.v20170525.SendSmsRequest import SendSmsRequest

        self._protocol = protocol_type.HTTPS if self._https else protocol_type.HTTP
        self._request_class = SendSmsRequest
        redact_sdk_logs()

    def __repr__(self) -> str:
        return (
            f"AliyunSender(endpoint={self.endpoint!r}, region_id={self.region_id!r}, "
            f"connect_timeout={self.connect_timeout}, read_timeout={self.read_timeout})"
        )

    @staticmethod
    def _parse_endpoint(endpoint: str | None) -> tuple[str, bool]:
        """Return (``host[:port]``, use HTTPS) for the accepted endpoint spellings."""
        if endpoint is None:
            return DEFAULT_ENDPOINT, True
        text = endpoint.strip()
        parts = urlsplit(text if "://" in text else f"http://{text}")
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:  # not a number or out of range
            port_ok = False
        if (
            not port_ok
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or parts.username
            or parts.password
        ):
            raise ConfigurationError(
                f"Invalid SMS endpoint {endpoint!r}: use host:port, http://host:port or "
                "https://host[:port] (or nothing for dysmsapi.aliyuncs.com)"
            )
        return parts.netloc, parts.scheme == "https"

    # ----------------------------------------------------------------- clients

    def _client(self, credentials: Credentials) -> Any:
        """The cached AcsClient for these credentials, built on first use.

        The cache key holds a SHA-256 digest of the secret, never the secret itself.
        """
        digest = hashlib.sha256(credentials.access_key_secret.encode("utf-8")).hexdigest()
        key = (credentials.access_key_id, digest)
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client
            client = self._build_client(credentials)
            self._clients[key] = client
            while len(self._clients) > MAX_CACHED_CLIENTS:
                self._clients.popitem(last=False)  # in-flight users keep their reference
            return client

    def _build_client(self, credentials: Credentials) -> Any:
        from aliyunsdkcore.client import AcsClient

        redact_sdk_logs()  # again, for SDK loggers created since (idempotent and cheap)
        client = AcsClient(
            ak=credentials.access_key_id,
            secret=credentials.access_key_secret,
            region_id=self.region_id,
            auto_retry=False,  # SendSms is not idempotent
            max_retry_time=0,
            connect_timeout=self.connect_timeout,
            timeout=self.read_timeout,
            pool_size=self._pool_size,
            proxy=self._proxies,
        )
        # do_action_with_exception hides the status of 2xx answers; a response hook records it.
        client.session.hooks["response"].append(self._remember_status)
        return client

    def _remember_status(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self._local.status = response.status_code

    def client_for(self, credentials: Credentials) -> Any:
        """The shared AcsClient for ``credentials``: other Dysmsapi calls (the account checks
        in :mod:`.account`) reuse the same connection, timeouts and log redaction."""
        return self._client(credentials)

    def target(self, request: Any) -> Any:
        """Point an SDK request at this sender's endpoint and protocol; returns it."""
        request.set_endpoint(self._host)
        request.set_protocol_type(self._protocol)
        return request

    @property
    def cached_clients(self) -> int:
        """How many AcsClients are cached (for tests and diagnostics)."""
        with self._lock:
            return len(self._clients)

    def prepare(self, credentials: Credentials | None) -> None:
        if credentials is not None and credentials.access_key_id and credentials.access_key_secret:
            try:
                self._client(credentials)
            except Exception:  # send() reports the same problem properly
                logger.debug("Could not build the Aliyun client ahead of a send")

    def close(self) -> None:
        """Drop the cached clients; their connections close when they are collected."""
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            client.session.close()

    # ----------------------------------------------------------------- sending

    def send(self, message: SmsMessage, credentials: Credentials | None) -> SendResult:
        """Send one SendSms request; never raises for an Aliyun or network outcome."""
        start = time.perf_counter()
        if (
            credentials is None
            or not credentials.access_key_id
            or not credentials.access_key_secret
        ):
            result = failure("SDK.InvalidCredential", "no AccessKey configured", http_status=None)
            self._log(message, result)
            return result

        secrets = [*message.params.values(), credentials.access_key_secret]
        request = self.target(self._request_class())
        request.set_PhoneNumbers(message.phone)
        request.set_SignName(message.sign_name)
        request.set_TemplateCode(message.template_code)
        request.set_TemplateParam(
            json.dumps(dict(message.params), ensure_ascii=False, separators=(",", ":"))
        )
        if message.out_id:
            request.set_OutId(message.out_id)

        try:
            client = self._client(credentials)
            self._local.status = None
            result = self._call(client, request, secrets, message.phone, start)
        except Exception as exc:  # the contract is "never raise"
            # E.g. UnicodeDecodeError from the SDK parsing a non-UTF-8 error body.
            result = failure(
                "SDK.UnexpectedError",
                f"unexpected {type(exc).__name__} in the Aliyun SDK",
                http_status=getattr(self._local, "status", None),
                duration_ms=elapsed_ms(start),
            )
        self._log(message, result)
        return result

    def _call(
        self,
        client: Any,
        request: Any,
        secrets: list[str],
        phone: str,
        start: float,
    ) -> SendResult:
        from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException

        try:
            body = client.do_action_with_exception(request)
        except ServerException as exc:
            status = exc.get_http_status()
            code = exc.get_error_code() or "SDK.UnknownServerError"
            if code == "SDK.UnknownServerError":
                text = "unparseable error answer"
            else:
                text = scrub(gateway_message(exc.get_error_msg()), secrets, phone)
            return failure(
                code,
                text,
                http_status=status,
                request_id=exc.get_request_id(),
                duration_ms=elapsed_ms(start),
            )
        except ClientException as exc:
            code = exc.get_error_code() or "SDK.HttpError"
            maybe_sent = False
            if code == "SDK.HttpError":
                text = describe_transport_failure(exc.get_error_msg())
                # A read timeout or a connection dropped after the request went out: Aliyun
                # may have accepted it. A refused or timed-out connect is a known failure.
                maybe_sent = text.endswith(MAY_HAVE_BEEN_SENT)
            else:
                text = scrub(gateway_message(exc.get_error_msg()), secrets, phone)
            return failure(
                code,
                text,
                http_status=None,
                duration_ms=elapsed_ms(start),
                maybe_sent=maybe_sent,
            )
        except IndexError:
            # The SDK splits a SignatureDoesNotMatch message at ':' and crashes when there is
            # none; that branch is only reached for HTTP 400 with that code.
            return failure(
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation.",
                http_status=400,
                duration_ms=elapsed_ms(start),
            )
        return self._parse_body(body, secrets, phone, start)

    def _parse_body(self, body: Any, secrets: list[str], phone: str, start: float) -> SendResult:
        status = getattr(self._local, "status", None) or 200
        try:
            data = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
        except (ValueError, TypeError, AttributeError):
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("Code"), str):
            return failure(
                "SDK.InvalidResponse",
                "the answer is not the expected JSON object",
                http_status=status,
                duration_ms=elapsed_ms(start),
            )
        code = data["Code"]
        request_id = _str_or_none(data.get("RequestId"))
        duration_ms = elapsed_ms(start)
        if code == "OK" and status == 200:
            return SendResult(
                ok=True,
                code="OK",
                message="OK",
                http_status=status,
                request_id=request_id,
                biz_id=_str_or_none(data.get("BizId")),
                duration_ms=duration_ms,
                advice=None,
            )
        if code == "OK":
            code = "SDK.InvalidResponse"  # "OK" with a 2xx other than 200 is not a success
        raw_message = data.get("Message")
        text = scrub(raw_message if isinstance(raw_message, str) else "", secrets, phone)
        return failure(
            code, text, http_status=status, request_id=request_id, duration_ms=duration_ms
        )

    def _log(self, message: SmsMessage, result: SendResult) -> None:
        if result.ok:
            logger.info(
                "SMS to %s sent: code=%s request_id=%s biz_id=%s duration=%.0fms",
                mask(message.phone),
                result.code,
                result.request_id,
                result.biz_id,
                result.duration_ms,
            )
        else:
            logger.warning(
                "SMS to %s failed: code=%s category=%s http_status=%s request_id=%s "
                "message=%r duration=%.0fms",
                mask(message.phone),
                result.code,
                result.category.value if result.category else None,
                result.http_status,
                result.request_id,
                result.message,
                result.duration_ms,
            )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
