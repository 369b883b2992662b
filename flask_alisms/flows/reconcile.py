"""Reconciliation: Aliyun's daily totals (QuerySendStatistics) beside the send log's.

Why: the send log says what this site asked Aliyun to send; Aliyun bills what it counted. A day
where the two differ points at another system using the same account, sends the log missed, or
a bill to question. ``flask alisms stats sync`` stores both figures for each day at the same
moment, so the panel compares like with like without calling Aliyun.

Days are Beijing dates, as Aliyun counts them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..models import transaction, utcnow
from ..sms import AliyunSender
from ..sms.account import AccountQueries, Answer, DayStatistics
from ..state import AliSMSState

__all__ = ["MAX_DAYS", "SyncError", "beijing_today", "stored_days", "sync"]

MAX_DAYS = 30
BEIJING = dt.timezone(dt.timedelta(hours=8))


class SyncError(Exception):
    """The sync could not read Aliyun's figures; nothing was stored."""

    def __init__(self, message: str, answer: Answer | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.answer = answer


@dataclass(frozen=True)
class Day:
    """One row as the panel and the CLI show it."""

    day: dt.date
    total: int
    success: int
    failed: int
    no_response: int
    ours: int
    synced_at: dt.datetime

    @property
    def differs(self) -> bool:
        return self.total != self.ours


def beijing_today() -> dt.date:
    return dt.datetime.now(BEIJING).date()


def _utc_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime(day.year, day.month, day.day, tzinfo=BEIJING)
    start = start.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return start, start + dt.timedelta(days=1)


def _our_count(state: AliSMSState, day: dt.date) -> int:
    """Sends Aliyun accepted that day according to the log (test sends included: Aliyun
    counts them too). One indexed range count per day."""
    log = state.models.SendLog
    start, end = _utc_bounds(day)
    query = (
        sa.select(sa.func.count())
        .select_from(log)
        .where(log.created_at >= start, log.created_at < end, log.ok.is_(True))
        .where(log.sender == "aliyun")
    )
    return int(state.db.session.scalar(query) or 0)


def sync(state: AliSMSState, days: int, *, today: dt.date | None = None) -> list[Day]:
    """Read the last ``days`` days from Aliyun (domestic and international) and store them."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}")
    sender = state.sender
    credentials = state.credentials()
    if not isinstance(sender, AliyunSender):
        raise SyncError(f"the sender is {sender.name!r}, not Aliyun: there is nothing to compare")
    if credentials is None:
        raise SyncError("fill in the AccessKey ID and secret first")
    end = today or beijing_today()
    start = end - dt.timedelta(days=days - 1)
    queries = AccountQueries(sender, timeout=max(sender.read_timeout, 5.0))
    figures: dict[dt.date, list[int]] = {
        start + dt.timedelta(days=n): [0, 0, 0, 0] for n in range(days)
    }
    for international in (False, True):
        answer, rows = queries.statistics(credentials, start, end, international=international)
        if not answer.ok:
            raise SyncError(f"Aliyun answered {answer.code}: {answer.message}", answer)
        _add(figures, rows)
    now = utcnow()
    model = state.models.AliyunDaily
    session = state.db.session
    result = []
    with transaction(session):
        for day, (total, success, failed, waiting) in sorted(figures.items()):
            ours = _our_count(state, day)
            row = session.get(model, day)
            if row is None:
                row = model(day=day)
                session.add(row)
            row.total, row.success, row.failed, row.no_response = total, success, failed, waiting
            row.ours, row.synced_at = ours, now
            result.append(Day(day, total, success, failed, waiting, ours, now))
    return result


def _add(figures: dict[dt.date, list[int]], rows: list[DayStatistics]) -> None:
    for row in rows:
        if row.day in figures:
            for index, value in enumerate((row.total, row.success, row.failed, row.no_response)):
                figures[row.day][index] += value


def stored_days(state: AliSMSState, limit: int = MAX_DAYS) -> list[Day]:
    """The synced days, newest first (a read of at most ``limit`` small rows)."""
    model = state.models.AliyunDaily
    rows: Any = state.db.session.scalars(sa.select(model).order_by(model.day.desc()).limit(limit))
    return [
        Day(r.day, r.total, r.success, r.failed, r.no_response, r.ours, r.synced_at) for r in rows
    ]
