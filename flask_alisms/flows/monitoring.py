"""The monitoring page's figures: per day and per purpose, read from the running totals only.

Why: the page draws up to 90 days; :mod:`.totals` keeps one row per day and purpose, so the
page reads at most a few hundred small rows whatever the size of the send log (it never
reads the log itself). Days without a row are filled with zeros, so a chart's axis has no
gaps. "Sent" is what Aliyun accepted: console and test-number sends are ``local`` and never
count, nor do refused sends (``errors``) or answers given without sending (``skipped``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ..sms import explain
from ..state import AliSMSState
from . import sendlog, totals

#: The periods the page offers, in days; the first one shown is DEFAULT_DAYS.
PERIODS = (7, 30, 90)
DEFAULT_DAYS = 30
#: The send log's purposes, in the order the page lists them; others follow when they occur.
PURPOSES = ("register", "login", "reset", "change_phone", "phone_changed", "test")
#: Purposes listed even when the period has none of them.
ALWAYS_LISTED = ("register", "login", "reset", "change_phone", "test")
TOP_CODES = 10


@dataclass(frozen=True)
class Figures:
    """The counts of one day, one purpose or the whole period."""

    sent: int = 0
    delivered: int = 0
    failed: int = 0
    errors: int = 0
    local: int = 0
    skipped: int = 0
    billed: int = 0

    @property
    def pending(self) -> int:
        """Accepted messages without a receipt yet."""
        return max(0, self.sent - self.delivered - self.failed)

    @property
    def rate(self) -> float | None:
        """Delivered / sent (0 to 1), None when nothing was sent."""
        return self.delivered / self.sent if self.sent else None

    def __add__(self, other: Figures) -> Figures:
        return Figures(
            self.sent + other.sent,
            self.delivered + other.delivered,
            self.failed + other.failed,
            self.errors + other.errors,
            self.local + other.local,
            self.skipped + other.skipped,
            self.billed + other.billed,
        )


@dataclass(frozen=True)
class Day:
    day: dt.date
    figures: Figures


@dataclass(frozen=True)
class FailureCode:
    source: str  # totals.SEND (Aliyun refused the send) or totals.RECEIPT (not delivered)
    code: str
    count: int
    meaning: str


@dataclass(frozen=True)
class Report:
    first: dt.date
    last: dt.date
    purpose: str
    days: list[Day]
    total: Figures
    purposes: list[tuple[str, Figures]]
    failures: list[FailureCode]


#: The counters of a totals row, in the order of Figures' fields.
_COUNTS = ("sent", "delivered", "failed", "errors", "local", "skipped", "billed")


def _add(into: list[int], counts: list[int]) -> None:
    for index, value in enumerate(counts):
        into[index] += value


def code_meaning(source: str, code: str) -> str:
    """What a failure code means for the admin: the receipt's words, or Aliyun's advice."""
    if source == totals.RECEIPT:
        return sendlog.receipt_meaning(code)
    return str(explain(code).admin_message)


def report(
    state: AliSMSState, days: int = DEFAULT_DAYS, purpose: str = "", last: dt.date | None = None
) -> Report:
    """The last ``days`` site-local days up to ``last`` (today), for one purpose or all."""
    last = last or totals.today()
    first = last - dt.timedelta(days=days - 1)
    # Plain lists while adding up: a 90-day page adds a few hundred rows, and building a
    # frozen dataclass for each partial sum cost more than reading the rows.
    by_day: dict[dt.date, list[int]] = {}
    by_purpose: dict[str, list[int]] = {p: [0] * len(_COUNTS) for p in ALWAYS_LISTED}
    for row in totals.day_totals(state, first, last):
        counts = [getattr(row, name) for name in _COUNTS]
        _add(by_purpose.setdefault(row.purpose, [0] * len(_COUNTS)), counts)
        if not purpose or row.purpose == purpose:
            _add(by_day.setdefault(row.day, [0] * len(_COUNTS)), counts)
    zero = Figures()
    series = [
        Day(day, Figures(*by_day[day]) if day in by_day else zero)
        for day in (first + dt.timedelta(days=n) for n in range(days))
    ]
    order = {name: index for index, name in enumerate(PURPOSES)}
    listed = sorted(
        ((name, Figures(*counts)) for name, counts in by_purpose.items()),
        key=lambda item: (order.get(item[0], len(order)), item[0]),
    )
    total = Figures(*(sum(column) for column in zip(*by_day.values()))) if by_day else zero
    failures = [
        FailureCode(source, code, count, code_meaning(source, code))
        for source, code, count in totals.failure_codes(state, first, last, TOP_CODES)
    ]
    return Report(first, last, purpose, series, total, listed, failures)
