"""Reading the send log at any size: filters, keyset pages, hourly totals, delivery states.

Why: with a million rows a page must not count them all or scan seven days per request.
Pages walk ``(created_at, id)`` newest first through an index per filter and stop after one
page (no ``count(*)``); the summary adds up 15-minute bucket totals that each process counts
once per closed bucket and counts only the open bucket live, so a page never scans seven
days and a GET writes nothing.
"""

from __future__ import annotations

import datetime as dt
import threading
import weakref
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from flask import current_app

from ..i18n import lazy_gettext as _l
from ..models import utcnow
from ..sms import explain, known_codes
from ..state import AliSMSState
from . import totals

#: What the delivery filter offers; "no_receipt" is "accepted" past the configured wait.
DELIVERY_STATES = ("accepted", "delivered", "failed", "no_receipt")
#: The summary adds up closed buckets of this size; only the open one is counted live.
BUCKET = dt.timedelta(minutes=15)
SUMMARY_SPAN = dt.timedelta(days=7)

_RECEIPT_CODES = {
    "DELIVERED": _l("Delivered to the handset."),
    "UNDELIV": _l("The carrier could not deliver it (number off, out of service or barred)."),
    "EXPIRED": _l("The handset stayed unreachable until the message expired."),
    "REJECTD": _l("The carrier rejected it (often a blocked or cancelled number)."),
    "MK:0000": _l("The carrier reported a handset-side failure."),
    "BLACK": _l("The number is on a block list (the user or the carrier blocked SMS)."),
}


@dataclass(frozen=True)
class Filters:
    """The send log's filters, already validated by the form or the CLI."""

    days: int = 7
    category: str = ""
    purpose: str = ""
    phone_tail: str = ""
    delivery: str = ""


def wait_minutes() -> int:
    return int(current_app.config["ALISMS_RECEIPT_WAIT_MINUTES"])


def time_zone() -> zoneinfo.ZoneInfo:
    """The site's time zone (``ALISMS_TIMEZONE``); the daily totals read the same one."""
    return totals.zone()


def local_time(value: dt.datetime | None, zone: zoneinfo.ZoneInfo) -> dt.datetime | None:
    """A stored naive-UTC time in the site's time zone."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.timezone.utc).astimezone(zone)


def delivery_state(row: Any, now: dt.datetime, wait: int) -> str | None:
    """accepted / delivered / failed / no_receipt, or None when no SMS was handed over."""
    if row.delivery == "accepted" and row.created_at < now - dt.timedelta(minutes=wait):
        return "no_receipt"
    return str(row.delivery) if row.delivery else None


def receipt_meaning(code: str | None) -> str:
    """What a receipt's ``err_code`` means, for the admin."""
    if not code:
        return ""
    text = _RECEIPT_CODES.get(code)
    if text is not None:
        return str(text)
    if code in known_codes():
        return str(explain(code).admin_message)
    return str(_l("A carrier error code; Aliyun's console lists what it means."))


def _query(state: AliSMSState, filters: Filters, now: dt.datetime) -> Any:
    log = state.models.SendLog
    query = sa.select(log).where(log.created_at >= now - dt.timedelta(days=filters.days))
    if filters.category:
        query = query.where(log.category == filters.category)
    if filters.purpose:
        query = query.where(log.purpose == filters.purpose)
    if filters.phone_tail:
        tail = filters.phone_tail
        query = query.where(
            log.phone_tail == tail[-4:]
            if len(tail) >= 4
            else log.phone_masked.endswith(tail, autoescape=True)
        )
    if filters.delivery:
        cutoff = now - dt.timedelta(minutes=wait_minutes())
        if filters.delivery == "no_receipt":
            query = query.where(log.delivery == "accepted", log.created_at < cutoff)
        elif filters.delivery == "accepted":
            query = query.where(log.delivery == "accepted", log.created_at >= cutoff)
        else:
            query = query.where(log.delivery == filters.delivery)
    return query.order_by(log.created_at.desc(), log.id.desc())


def page(
    state: AliSMSState, filters: Filters, before: int | None = None, per_page: int = 50
) -> tuple[list[Any], int | None]:
    """One page, newest first, of rows older than row ``before``: (rows, next cursor)."""
    log = state.models.SendLog
    session = state.db.session
    query = _query(state, filters, utcnow())
    if before is not None:
        anchor = session.execute(
            sa.select(log.created_at).where(log.id == before)
        ).scalar_one_or_none()
        if anchor is None:
            return [], None
        query = query.where(
            sa.or_(log.created_at < anchor, sa.and_(log.created_at == anchor, log.id < before))
        )
    rows = list(session.scalars(query.limit(per_page + 1)))
    more = len(rows) > per_page
    rows = rows[:per_page]
    return rows, (rows[-1].id if more and rows else None)


def iter_rows(state: AliSMSState, filters: Filters, limit: int) -> Iterator[Any]:
    """Up to ``limit`` matching rows, newest first, fetched a thousand at a time."""
    cursor: int | None = None
    sent = 0
    while sent < limit:
        rows, cursor = page(state, filters, cursor, per_page=min(1000, limit - sent))
        yield from rows
        sent += len(rows)
        state.db.session.expunge_all()  # keep memory flat over a long export
        if cursor is None:
            return


def summary(state: AliSMSState) -> list[dict[str, Any]]:
    """Sent / failed per outcome for the last 24 hours and 7 days, from bucket totals."""
    now = utcnow()
    current = now - dt.timedelta(
        minutes=now.minute % 15, seconds=now.second, microseconds=now.microsecond
    )
    buckets, live_from = _closed_buckets(state, current)
    log = state.models.SendLog
    live: dict[str, int] = {
        row[0]: int(row[1])
        for row in state.db.session.execute(
            sa.select(log.category, sa.func.count())
            .where(log.created_at >= live_from)
            .group_by(log.category)
        )
    }
    figures = []
    spans = ((_l("Last 24 hours"), dt.timedelta(days=1)), (_l("Last 7 days"), SUMMARY_SPAN))
    for label, span in spans:
        counts = dict(live)
        since = current - span + BUCKET
        for (bucket, category), count in buckets.items():
            if bucket >= since:
                counts[category] = counts.get(category, 0) + count
        failed = {k: v for k, v in counts.items() if k not in ("sent", "skipped")}
        figures.append(
            {
                "label": str(label),
                "sent": counts.get("sent", 0),
                "failed": sum(failed.values()),
                "by_category": failed,
            }
        )
    return figures


@dataclass
class _Totals:
    """Counts per closed bucket and outcome, kept per send-log table in this process."""

    buckets: dict[dt.datetime, dict[str, int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


#: Keyed by the SendLog model: one set of totals per table, whatever apps share it.
_totals: weakref.WeakKeyDictionary[Any, _Totals] = weakref.WeakKeyDictionary()


def _closed_buckets(
    state: AliSMSState, current: dt.datetime
) -> tuple[dict[tuple[Any, str], int], dt.datetime]:
    """Counts per closed bucket and outcome over the summary's span, and where the live count
    starts. Each bucket is counted once per process (an index range over 15 minutes) and
    kept: a closed bucket's rows no longer change, except by a purge (which forgets them).

    A bucket is closed a minute after it ends (a send stamps its row just before commit).
    """
    log = state.models.SendLog
    session = state.db.session
    start = current - SUMMARY_SPAN + BUCKET
    last = current - BUCKET
    if utcnow() < current + dt.timedelta(minutes=1):
        last -= BUCKET  # the previous bucket may still see late commits
    totals = _totals.setdefault(log, _Totals())
    with totals.lock:
        missing = []
        bucket = start
        while bucket <= last:
            if bucket not in totals.buckets:
                missing.append(bucket)
            bucket += BUCKET
        index = _bucket_index(state, log.created_at)
        if len(missing) > 4 and index is not None:  # a cold start: one grouped scan
            first, end = missing[0], missing[-1] + BUCKET
            found: dict[dt.datetime, dict[str, int]] = {b: {} for b in missing}
            for number, category, count in session.execute(
                sa.select(index, log.category, sa.func.count())
                .where(log.created_at >= first, log.created_at < end)
                .group_by(index, log.category)
            ):
                moment = _EPOCH + BUCKET * int(number)
                if moment in found:
                    counts = found[moment]
                    counts[category] = counts.get(category, 0) + int(count)
            totals.buckets.update(found)
            missing = []
        for bucket in missing:
            if bucket not in totals.buckets:
                totals.buckets[bucket] = {
                    category: int(count)
                    for category, count in session.execute(
                        sa.select(log.category, sa.func.count())
                        .where(log.created_at >= bucket, log.created_at < bucket + BUCKET)
                        .group_by(log.category)
                    )
                }
        for old in [b for b in totals.buckets if b < start]:
            del totals.buckets[old]
        result = {
            (bucket, category): count
            for bucket, counts in totals.buckets.items()
            if bucket <= last
            for category, count in counts.items()
        }
    return result, last + BUCKET


_EPOCH = dt.datetime(1970, 1, 1)


def _bucket_index(state: AliSMSState, column: Any) -> Any:
    """SQL for the 15-minute bucket number of a naive-UTC time, or None for other databases."""
    seconds = int(BUCKET.total_seconds())
    name = state.db.engine.dialect.name
    if name == "postgresql":
        # date_part is float8; extract() is numeric on PostgreSQL 14+, several times slower.
        return sa.func.floor(sa.func.date_part("epoch", column) / seconds)
    if name == "sqlite":
        return sa.cast(sa.func.strftime("%s", column), sa.Integer) // seconds
    if name in ("mysql", "mariadb"):
        since_epoch = sa.func.timestampdiff(
            sa.literal_column("SECOND"), sa.literal("1970-01-01 00:00:00"), column
        )
        return sa.func.floor(since_epoch / seconds)
    return None


def forget_totals(state: AliSMSState) -> None:
    """Drop this process's bucket totals (after rows were deleted); the next summary recounts."""
    _totals.pop(state.models.SendLog, None)
