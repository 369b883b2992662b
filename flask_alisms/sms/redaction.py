"""What the Aliyun sender may say: secrets scrubbed from messages, the SDK's logs redacted.

Why apart from :mod:`.aliyun`: these rules are the package's promise that a verification code
or an AccessKey secret never reaches a result message or a log record, and they read (and are
reviewed) best on their own, away from the sending logic.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

from ..phones import mask

__all__ = [
    "MAY_HAVE_BEEN_SENT",
    "describe_transport_failure",
    "gateway_message",
    "redact_sdk_logs",
    "scrub",
]

_MAX_MESSAGE_LENGTH = 300
_REDACTED = "***"


def _percent_encode(value: str) -> str:
    return quote(value, safe="-_.~")


def _secret_forms(value: str) -> set[str]:
    """A value as it may appear in messages: raw, URL-encoded, or twice encoded (string-to-sign)."""
    once = _percent_encode(value)
    return {value, once, _percent_encode(once), quote_plus(value), quote(value, safe="")}


def scrub(text: str, secrets: Iterable[str], phone: str | None = None) -> str:
    """Replace every form of every secret value in ``text``; mask the recipient's number."""
    forms: set[str] = set()
    for value in secrets:
        if value:
            forms |= _secret_forms(value)
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, _REDACTED)
    if phone:
        text = text.replace(phone, mask(phone))
    if len(text) > _MAX_MESSAGE_LENGTH:
        text = text[:_MAX_MESSAGE_LENGTH] + "…"
    return text


_COLON = re.compile("[:：]")


def gateway_message(text: str) -> str:
    """Keep a gateway message only up to its first colon.

    What follows a colon can be the server's string-to-sign (every request parameter, the
    code included) or the raw response body.
    """
    return _COLON.split(text or "", maxsplit=1)[0].strip()


#: How a transport failure whose outcome is unknown ends its description.
MAY_HAVE_BEEN_SENT = "it may have been sent"

# Ordered: the first matching needle names the transport failure.
_TRANSPORT_FAILURES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("read timed out", "read timeout"),
        "timed out waiting for the answer; " + MAY_HAVE_BEEN_SENT,
    ),
    (("connect timeout", "connecttimeout", "timed out"), "timed out connecting"),
    (("connection refused", "errno 111", "winerror 10061"), "connection refused"),
    (("incompleteread", "connection broken", "chunkedencoding"), "answer cut off"),
    (
        ("remotedisconnected", "connection aborted", "connection reset", "closed connection"),
        "connection dropped before an answer; " + MAY_HAVE_BEEN_SENT,
    ),
    (("name or service not known", "nodename", "getaddrinfo", "resolve"), "DNS lookup failed"),
    (("ssl", "certificate", "tls"), "TLS error"),
    (("proxy",), "proxy error"),
)


def describe_transport_failure(text: str) -> str:
    """Name a transport failure without quoting the SDK text (it contains the request URL)."""
    lowered = re.sub(r"\?\S*", "", text or "").lower()  # not the request's query string
    for needles, description in _TRANSPORT_FAILURES:
        if any(needle in lowered for needle in needles):
            return description
    return "HTTP transport error"


# --------------------------------------------------------------------------- SDK log redaction


class _SdkLogRedactor(logging.Filter):
    """Rewrites the Aliyun SDK's log records before any handler sees them.

    The SDK logs request parameters (with TemplateParam) at DEBUG, the gateway's
    string-to-sign inside ServerException text at ERROR, and request URLs (query string
    included) inside transport errors; its vendored urllib3 logs the URL too. Each record is
    cut before its first detail-bearing ``:`` and stripped of query strings.
    """

    _QUERY = re.compile(r"\?[^\s\"')]*")
    _DETAIL = re.compile(r":(?!//)")

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a broken format string must not break logging
            text = str(record.msg)
        text = self._QUERY.sub("?…", text)
        head = self._DETAIL.split(text, maxsplit=1)[0].rstrip()
        if head != text:
            head += ": [details removed by flask_alisms]"
        record.msg = head
        record.args = None
        return True


_redactor_lock = threading.Lock()


def redact_sdk_logs() -> None:
    """Attach :class:`_SdkLogRedactor` to every logger of the SDK (idempotent).

    Logger filters apply only to records created on that very logger, hence every one of them;
    the SDK creates them at import time, which has happened before this runs.
    """
    with _redactor_lock:
        names = [
            name
            for name in list(logging.root.manager.loggerDict)
            if name == "aliyunsdkcore" or name.startswith("aliyunsdkcore.")
        ]
        for name in names:
            sdk_logger = logging.getLogger(name)
            if not any(isinstance(f, _SdkLogRedactor) for f in sdk_logger.filters):
                sdk_logger.addFilter(_SdkLogRedactor())
