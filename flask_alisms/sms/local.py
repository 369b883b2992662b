"""Senders that send nothing: the console one for development, the memory one for tests."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any

from ..phones import mask
from .base import Credentials, Sender, SendResult, SmsMessage, elapsed_ms, failure

__all__ = ["ConsoleSender", "MemorySender", "TestNumberSender"]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- development


class ConsoleSender(Sender):
    """Development sender: logs the SMS at WARNING instead of sending it.

    The template values (the code) and the number are masked unless ``reveal`` is true; the
    extension passes ``reveal=app.debug`` so codes show only on a developer's machine.
    """

    name = "console"

    def __init__(self, *, reveal: bool = False) -> None:
        self.reveal = reveal

    def send(self, message: SmsMessage, credentials: Credentials | None) -> SendResult:
        start = time.perf_counter()
        if self.reveal:
            phone = message.phone
            params = dict(message.params)
        else:
            phone = mask(message.phone)
            params = {name: "*" * len(value) for name, value in message.params.items()}
        biz_id = f"console-{uuid.uuid4().hex[:16]}"
        logger.warning(
            "[console SMS, not sent] to=%s sign=%s template=%s params=%s out_id=%s biz_id=%s",
            phone,
            message.sign_name,
            message.template_code,
            json.dumps(params, ensure_ascii=False),
            message.out_id,
            biz_id,
        )
        return SendResult(
            ok=True,
            code="OK",
            message="OK",
            http_status=None,
            request_id=None,
            biz_id=biz_id,
            duration_ms=elapsed_ms(start),
            advice=None,
        )


# --------------------------------------------------------------------------- test numbers


class TestNumberSender(Sender):
    """The sender of the admin's test numbers (``phone.test_numbers``): never reaches Aliyun.

    It answers OK at once and logs nothing but the masked number, so a reviewer's number can go
    through every flow while the bill and Aliyun's own flow control stay untouched.
    """

    __test__ = False  # not a pytest class, whatever its name
    name = "test-number"

    def send(self, message: SmsMessage, credentials: Credentials | None) -> SendResult:
        start = time.perf_counter()
        logger.info("Test number %s: no SMS sent", mask(message.phone))
        return SendResult(
            ok=True,
            code="OK",
            message="Test number: not sent",
            http_status=None,
            request_id=None,
            biz_id=f"test-{uuid.uuid4().hex[:16]}",
            duration_ms=elapsed_ms(start),
            advice=None,
        )


# --------------------------------------------------------------------------- tests


def _simulated_status(code: str) -> int | None:
    """The HTTP status Aliyun would answer ``code`` with (None for client-side SDK codes)."""
    if code.startswith("SDK."):
        return None
    if code.startswith(("isv.", "isp.")):
        return 200
    return {
        "InvalidAccessKeyId.NotFound": 404,
        "Forbidden.RAM": 403,
        "InternalError": 500,
        "ServiceUnavailable": 503,
    }.get(code, 400)


class MemorySender(Sender):
    """Test sender: keeps accepted messages in :attr:`outbox` and can simulate failures.

    ``outbox`` holds only the messages a real provider would have accepted; ``attempts``
    holds every message passed to :meth:`send`, failed ones included.
    """

    name = "memory"

    def __init__(self) -> None:
        self.outbox: list[SmsMessage] = []
        self.attempts: list[SmsMessage] = []
        self._failures: list[list[Any]] = []  # [code, remaining]
        self._lock = threading.Lock()
        self._seq = 0

    def fail_with(self, code: str, times: int = 1) -> None:
        """Make the next ``times`` sends fail with the Aliyun (or SDK) ``code``."""
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._failures.append([code, times])

    def send(self, message: SmsMessage, credentials: Credentials | None) -> SendResult:
        start = time.perf_counter()
        with self._lock:
            self.attempts.append(message)
            self._seq += 1
            request_id = f"memory-{self._seq}"
            if self._failures:
                pending = self._failures[0]
                pending[1] -= 1
                if pending[1] == 0:
                    self._failures.pop(0)
                code = str(pending[0])
                return failure(
                    code,
                    "simulated failure",
                    http_status=_simulated_status(code),
                    request_id=request_id,
                    duration_ms=elapsed_ms(start),
                )
            self.outbox.append(message)
        return SendResult(
            ok=True,
            code="OK",
            message="OK",
            http_status=200,
            request_id=request_id,
            biz_id=f"memory-biz-{self._seq}",
            duration_ms=elapsed_ms(start),
            advice=None,
        )

    def last_message(self, phone: str | None = None) -> SmsMessage | None:
        """The latest accepted message (to ``phone`` if given), or None."""
        with self._lock:
            for message in reversed(self.outbox):
                if phone is None or message.phone == phone:
                    return message
        return None

    def last_param(self, phone: str, name: str = "code") -> str:
        """The template variable ``name`` of the latest accepted message to ``phone``.

        Raises LookupError when nothing was accepted for ``phone`` or the variable is absent.
        """
        message = self.last_message(phone)
        if message is None:
            raise LookupError(f"no message was accepted for {mask(phone)}")
        try:
            return message.params[name]
        except KeyError:
            raise LookupError(f"the last message has no {name!r} variable") from None

    def clear(self) -> None:
        """Forget messages, attempts and pending failures."""
        with self._lock:
            self.outbox.clear()
            self.attempts.clear()
            self._failures.clear()


