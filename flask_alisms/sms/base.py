"""The provider interface: one SMS in, one :class:`SendResult` out.

Why an interface: the extension must work against the real Alibaba Cloud SMS API in production,
print codes on the console in development and record them in memory in the host's tests, and a
host may plug in its own provider. Every sender answers with a :class:`SendResult`; none raises
for a provider or network outcome and none retries (SendSms is not idempotent: a timed-out send
may still have gone out).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .advice import Advice, Category, explain

__all__ = ["Credentials", "SendResult", "Sender", "SmsMessage"]

# --------------------------------------------------------------------------- value objects


@dataclass(frozen=True)
class Credentials:
    """An AccessKey pair. The secret never appears in the repr."""

    access_key_id: str
    access_key_secret: str = field(repr=False)


@dataclass(frozen=True)
class SmsMessage:
    """One verification SMS to one number.

    ``phone`` is already in Aliyun's format (``13800138000``, ``85290001234``). ``params`` are
    the template variables, all strings (Aliyun refuses other JSON types); they hold the code,
    so they are left out of the repr and frozen into a read-only mapping.
    """

    phone: str
    sign_name: str
    template_code: str
    params: Mapping[str, str] = field(repr=False, hash=False)
    out_id: str | None = None

    def __post_init__(self) -> None:
        for name, value in self.params.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError("SmsMessage.params names and values must all be strings")
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))


@dataclass(frozen=True)
class SendResult:
    """The outcome of one send, safe to log, store and show to an admin.

    ``ok`` only for HTTP 200 with ``Code == "OK"``. ``code`` is ``"OK"``, Aliyun's error code or
    the SDK's client error code (``SDK.HttpError``). ``message`` is scrubbed of template values,
    secrets and the recipient's number, and gateway messages are cut at their first ``:``.
    """

    ok: bool
    code: str
    message: str
    http_status: int | None
    request_id: str | None
    biz_id: str | None
    duration_ms: float
    advice: Advice | None
    #: The request may have reached the provider and the SMS may still arrive (a read
    #: timeout, a connection dropped after sending): an unknown outcome, not a failure.
    maybe_sent: bool = False

    @property
    def category(self) -> Category | None:
        """The failure category, None when the send succeeded."""
        return self.advice.category if self.advice is not None else None



# --------------------------------------------------------------------------- interface


class Sender(abc.ABC):
    """Sends one SMS and reports the outcome.

    Implementations must not raise for a provider or network outcome (return a failed
    :class:`SendResult` instead), must not retry, and must keep template values and secrets out
    of results and logs.
    """

    name: str = "sender"

    @abc.abstractmethod
    def send(self, message: SmsMessage, credentials: Credentials | None) -> SendResult:
        """Send ``message`` with ``credentials`` (None where the provider needs none)."""

    def prepare(self, credentials: Credentials | None) -> None:  # noqa: B027 - optional hook
        """Build what a send with ``credentials`` needs (a client), without sending.

        Called for every send-code request, real or not, so that a fresh worker's first real
        send is not slower than a skipped one by the client's construction.
        """

    def close(self) -> None:  # noqa: B027 - optional hook, most senders hold nothing
        """Release connections or other resources (no-op by default)."""


def failure(
    code: str,
    message: str,
    *,
    http_status: int | None,
    request_id: str | None = None,
    duration_ms: float = 0.0,
    maybe_sent: bool = False,
) -> SendResult:
    return SendResult(
        ok=False,
        code=code,
        message=message,
        http_status=http_status,
        request_id=request_id,
        biz_id=None,
        duration_ms=duration_ms,
        advice=explain(code, http_status),
        maybe_sent=maybe_sent,
    )



def elapsed_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0

