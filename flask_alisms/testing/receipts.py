"""The emulator's delivery side: each accepted message's fate, pushed and queried receipts.

Why apart from :mod:`.emulator`: delivery is its own small state machine (waiting, then
delivered or failed after a delay) shared by QuerySendDetails and the SmsReport push, and it
is testable without a server. Standard library only, like the rest of the emulator.

A message waits ``delay`` seconds (on the emulator's clock, which ``advance_time`` moves),
then is delivered with probability ``success_rate`` unless its number was told to fail.
When a push URL is set, its report is POSTed there (as Aliyun's HTTP batch push does, a JSON
array) when it becomes due, ``duplicates`` extra times, with Aliyun's answer contract: a
report counts as received only on HTTP 200 with ``{"code": 0}``.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DeliveryBook", "Fate"]

_CHINA_OFFSET = 8 * 3600
_FAILURE_MESSAGES = {
    "UNDELIV": "用户无法接收",
    "EXPIRED": "短信超过有效期",
    "REJECTD": "运营商拒绝",
    "BLACK": "黑名单",
}


def _china_time(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch + _CHINA_OFFSET))


@dataclass
class Fate:
    """What happens to one accepted message."""

    biz_id: str
    number: str
    out_id: str
    accepted_at: float
    due_at: float
    success: bool
    err_code: str
    sms_size: int
    pushes_left: int = 0
    push_answers: list[int] = field(default_factory=list)

    def status(self, now: float) -> tuple[int, str, float | None]:
        """QuerySendDetails's (SendStatus, ErrCode, receive time) at emulator time ``now``."""
        if now < self.due_at:
            return 1, "", None
        return (3, "DELIVERED", self.due_at) if self.success else (2, self.err_code, self.due_at)

    def report(self) -> dict[str, Any]:
        """The SmsReport object Aliyun pushes for this message."""
        return {
            "phone_number": self.number,
            "send_time": _china_time(self.accepted_at),
            "report_time": _china_time(self.due_at),
            "success": self.success,
            "err_code": "DELIVERED" if self.success else self.err_code,
            "err_msg": "用户接收成功" if self.success else _FAILURE_MESSAGES.get(self.err_code, ""),
            "sms_size": str(self.sms_size),
            "biz_id": self.biz_id,
            "out_id": self.out_id,
        }


class DeliveryBook:
    """Decides, remembers and pushes the fates of accepted messages (thread-safe)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._fates: dict[tuple[str, str], Fate] = {}
        self._forced: dict[str, str] = {}
        self._random = random.Random(0)  # noqa: S311 - a test double, not security
        self.url: str | None = None
        self.delay = 0.0
        self.success_rate = 1.0
        self.duplicates = 0
        self.push_log: list[tuple[int, int]] = []  # (reports in the batch, HTTP status)
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()

    def configure(
        self,
        url: str | None,
        *,
        delay: float,
        success_rate: float,
        duplicates: int,
        seed: int | None,
    ) -> None:
        if not 0.0 <= success_rate <= 1.0 or delay < 0 or duplicates < 0:
            raise ValueError("success_rate must be 0-1, delay and duplicates at least 0")
        with self._lock:
            self.url, self.delay = url, delay
            self.success_rate, self.duplicates = success_rate, duplicates
            if seed is not None:
                self._random.seed(seed)

    def fail_number(self, number: str, err_code: str) -> None:
        with self._lock:
            self._forced[number] = err_code

    def accepted(self, biz_id: str, numbers: tuple[str, ...], out_id: str, now: float) -> None:
        """Record the fate of every recipient of a message accepted at ``now``."""
        with self._lock:
            for number in numbers:
                forced = self._forced.get(number)
                success = forced is None and self._random.random() < self.success_rate
                self._fates[(biz_id, number)] = Fate(
                    biz_id=biz_id,
                    number=number,
                    out_id=out_id,
                    accepted_at=now,
                    due_at=now + self.delay,
                    success=success,
                    err_code="" if success else (forced or "UNDELIV"),
                    sms_size=1,
                    pushes_left=(1 + self.duplicates) if self.url else 0,
                )

    def fate(self, biz_id: str, number: str) -> Fate | None:
        with self._lock:
            return self._fates.get((biz_id, number))

    def clear(self) -> None:
        with self._lock:
            self._fates.clear()
            self._forced.clear()
            self.push_log.clear()

    # -- pushing ----------------------------------------------------------------------------

    def push_due(self) -> int:
        """POST every due report still to push, in one batch per round; returns how many."""
        with self._lock:
            url = self.url
            now = self._clock()
            due = [f for f in self._fates.values() if f.pushes_left > 0 and f.due_at <= now]
        if not url or not due:
            return 0
        pushed = 0
        while due:
            batch = [f.report() for f in due]
            status = _post(url, batch)
            with self._lock:
                self.push_log.append((len(batch), status))
                for fate in due:
                    fate.push_answers.append(status)
                    # Aliyun stops once received; duplicates are pushed regardless.
                    fate.pushes_left = fate.pushes_left - 1 if status == 200 else 0
            pushed += len(batch)
            due = [f for f in due if f.pushes_left > 0]
        return pushed

    def start_worker(self, interval: float = 0.05) -> None:
        """Push due reports in the background (for the standalone emulator)."""
        if self._worker is not None:
            return
        self._stop.clear()

        def run() -> None:
            while not self._stop.wait(interval):
                self.push_due()

        self._worker = threading.Thread(target=run, name="dysmsapi-receipts", daemon=True)
        self._worker.start()

    def stop_worker(self) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=5)
        self._worker = None


def _post(url: str, batch: list[dict[str, Any]]) -> int:
    """POST a JSON array; the HTTP status, 200 only with Aliyun's ``{"code": 0}`` answer."""
    body = json.dumps(batch, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(  # noqa: S310 - the test's own URL
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            answer = json.loads(response.read() or b"null")
            ok = isinstance(answer, dict) and answer.get("code") == 0
            return int(response.status) if ok else 599
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return 0
