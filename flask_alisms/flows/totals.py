"""Running totals per local day: what monitoring and budgets read instead of the send log.

Why: the monitoring page draws 30 days and a budget needs today's and this month's spend on
every send; counting a million log rows for that is out of the question. So every send-log
row adds one to its day's and purpose's row in the same transaction (the send path pays one
upsert), every receipt adds to the day of the send it reports on when it is matched, and
``flask alisms stats rebuild`` recomputes the rows from the log (after an upgrade, or when
the two were edited apart by hand).

Counts by kind of row: ``sent`` (the provider accepted it), ``errors`` (it refused it or did
not answer), ``skipped`` (the account rule answered as if sent), ``local`` (the console
sender or a test number: nothing left the site). Receipts: ``delivered``, ``failed`` and
``billed``, the segments Aliyun bills: delivered mainland messages, ``sms_size`` each (one
when the receipt does not say).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects import mysql, postgresql, sqlite

from ..models import connection_for, transaction, utcnow
from ..sms.local import ConsoleSender, TestNumberSender
from ..state import AliSMSState

COUNTERS = ("sent", "errors", "skipped", "local", "delivered", "failed", "billed")
#: Senders whose messages never leave the site.
LOCAL_SENDERS = frozenset({ConsoleSender.name, TestNumberSender.name})
SEND, RECEIPT = "send", "receipt"
_DOMESTIC = "+86"  # the masked E.164 form keeps the country code


@dataclass(frozen=True)
class DayTotal:
    day: dt.date
    purpose: str
    sent: int = 0
    errors: int = 0
    skipped: int = 0
    local: int = 0
    delivered: int = 0
    failed: int = 0
    billed: int = 0

    @property
    def pending(self) -> int:
        """Accepted messages without a receipt yet (all of them where receipts are off)."""
        return max(0, self.sent - self.delivered - self.failed)


@dataclass(frozen=True)
class Transition:
    """A send row that a receipt turned from accepted into delivered or failed."""

    at: dt.datetime  # the send's naive-UTC time
    purpose: str
    phone_masked: str
    success: bool
    sms_size: int | None
    err_code: str | None


def zone() -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(current_app.config["ALISMS_TIMEZONE"])


def local_day(at: dt.datetime, tz: zoneinfo.ZoneInfo) -> dt.date:
    """The site's calendar day of a naive-UTC time."""
    return at.replace(tzinfo=dt.timezone.utc).astimezone(tz).date()


def today(now: dt.datetime | None = None) -> dt.date:
    return local_day(now or utcnow(), zone())


def kind_of(sender: str, category: str, ok: bool) -> str:
    """Which counter a send-log row adds to."""
    if category == "skipped":
        return "skipped"
    if sender in LOCAL_SENDERS or category == "test_number":
        return "local"
    return "sent" if ok else "errors"


def billed_segments(phone_masked: str, success: bool, sms_size: int | None) -> int:
    return max(1, sms_size or 1) if success and phone_masked.startswith(_DOMESTIC) else 0


# -- writing --------------------------------------------------------------------------------

_statements: dict[tuple[str, str], Any] = {}


def _upsert(
    session: Any, table: sa.Table, keys: tuple[str, ...], rows: list[dict[str, Any]]
) -> None:
    """Add each row's counters to the stored ones, creating the row when it is missing.

    Rows must have distinct keys (PostgreSQL refuses to touch one row twice in a statement);
    they are written in key order so two writers never wait for each other in a cycle.
    """
    if not rows:
        return
    if len(rows) > 1:
        rows = sorted(rows, key=lambda row: tuple(str(row[k]) for k in keys))
    # The Core statement goes straight to the transaction's connection (see connection_for).
    connection = connection_for(session, table)
    dialect = connection.dialect.name
    counters = [c.name for c in table.columns if c.name not in keys]
    statement = _statements.get((dialect, table.name))
    if statement is None:
        statement = _statements[(dialect, table.name)] = _build(dialect, table, keys, counters)
    if statement is not None:
        connection.execute(statement, rows[0] if len(rows) == 1 else rows)
        return
    for row in rows:  # another database: update, else insert
        match = sa.and_(*(table.c[k] == row[k] for k in keys))
        done: Any = session.execute(
            sa.update(table).where(match).values({c: table.c[c] + row[c] for c in counters})
        )
        if not done.rowcount:
            session.execute(sa.insert(table), row)


def _build(dialect: str, table: sa.Table, keys: tuple[str, ...], counters: list[str]) -> Any:
    """Built once per dialect and table: building costs about as much CPU as running it."""
    if dialect in ("postgresql", "sqlite"):
        module: Any = postgresql if dialect == "postgresql" else sqlite
        insert = module.insert(table)
        return insert.on_conflict_do_update(
            index_elements=list(keys),
            set_={c: table.c[c] + insert.excluded[c] for c in counters},
        )
    if dialect in ("mysql", "mariadb"):
        my_insert = mysql.insert(table)
        return my_insert.on_duplicate_key_update(
            {c: table.c[c] + my_insert.inserted[c] for c in counters}
        )
    return None


def _day_rows(counts: Counter[tuple[dt.date, str, str]]) -> list[dict[str, Any]]:
    rows: dict[tuple[dt.date, str], dict[str, Any]] = {}
    for (day, purpose, counter), n in counts.items():
        row = rows.setdefault(
            (day, purpose), {"day": day, "purpose": purpose, **dict.fromkeys(COUNTERS, 0)}
        )
        row[counter] += n
    return list(rows.values())


def _failure_rows(counts: Counter[tuple[dt.date, str, str]]) -> list[dict[str, Any]]:
    return [
        {"day": day, "source": source, "code": code[:64], "count": n}
        for (day, source, code), n in counts.items()
    ]


def count_send(
    state: AliSMSState, *, purpose: str, sender: str, category: str, ok: bool, code: str
) -> None:
    """Add one send-log row to today's totals, in the caller's transaction."""
    day = today()
    kind = kind_of(sender, category, ok)
    session = state.db.session
    _upsert(
        session,
        state.models.DailyTotal.__table__,
        ("day", "purpose"),
        _day_rows(Counter({(day, purpose, kind): 1})),
    )
    if kind == "errors":
        failures = Counter({(day, SEND, code or "unknown"): 1})
        _upsert(
            session,
            state.models.FailureTotal.__table__,
            ("day", "source", "code"),
            _failure_rows(failures),
        )


def count_receipts(state: AliSMSState, transitions: Iterable[Transition]) -> None:
    """Add matched receipts to the days of the sends they report on (caller's transaction)."""
    tz = zone()
    days: Counter[tuple[dt.date, str, str]] = Counter()
    failures: Counter[tuple[dt.date, str, str]] = Counter()
    for t in transitions:
        day = local_day(t.at, tz)
        days[(day, t.purpose, "delivered" if t.success else "failed")] += 1
        billed = billed_segments(t.phone_masked, t.success, t.sms_size)
        if billed:
            days[(day, t.purpose, "billed")] += billed
        if not t.success:
            failures[(day, RECEIPT, t.err_code or "unknown")] += 1
    session = state.db.session
    _upsert(session, state.models.DailyTotal.__table__, ("day", "purpose"), _day_rows(days))
    _upsert(
        session,
        state.models.FailureTotal.__table__,
        ("day", "source", "code"),
        _failure_rows(failures),
    )


# -- reading --------------------------------------------------------------------------------


def day_totals(state: AliSMSState, first: dt.date, last: dt.date) -> list[DayTotal]:
    """The stored rows from ``first`` to ``last`` (inclusive); days without sends have none."""
    table = state.models.DailyTotal.__table__  # plain rows: ORM objects cost 5-8 times more
    rows = state.db.session.execute(
        sa.select(table.c.day, table.c.purpose, *(table.c[c] for c in COUNTERS))
        .where(table.c.day >= first, table.c.day <= last)
        .order_by(table.c.day, table.c.purpose)
    )
    return [DayTotal(*row) for row in rows]


def failure_codes(
    state: AliSMSState, first: dt.date, last: dt.date, limit: int = 10
) -> list[tuple[str, str, int]]:
    """The most frequent (source, code, count) of the period, most frequent first."""
    model = state.models.FailureTotal
    total = sa.func.sum(model.count)
    rows = state.db.session.execute(
        sa.select(model.source, model.code, total)
        .where(model.day >= first, model.day <= last)
        .group_by(model.source, model.code)
        .order_by(total.desc(), model.source, model.code)
        .limit(limit)
    )
    return [(source, code, int(n)) for source, code, n in rows]


# -- rebuilding -----------------------------------------------------------------------------


def oldest_day(state: AliSMSState) -> dt.date | None:
    """The local day of the send log's oldest row (one index probe), None when it is empty."""
    log = state.models.SendLog
    first = state.db.session.scalar(sa.select(sa.func.min(log.created_at)))
    return None if first is None else local_day(first, zone())


def rebuild(state: AliSMSState, since: dt.date | None = None) -> int:
    """Recompute the totals of ``since`` onwards (all days when None) from the send log.

    Returns how many log rows were read. Safe while the site sends: the totals are locked
    for writing before the log is read and until the new ones are committed, so every send
    or receipt either committed before the read, and is in it, or waits and adds itself to
    the rebuilt row afterwards. Sends wait meanwhile (about 30 s per million rows read), so
    a large rebuild is still best run at a quiet time.
    """
    log = state.models.SendLog
    days_model, failures_model = state.models.DailyTotal, state.models.FailureTotal
    tz = zone()
    query = sa.select(
        log.created_at,
        log.purpose,
        log.sender,
        log.category,
        log.ok,
        log.code,
        log.delivery,
        log.sms_size,
        log.phone_masked,
        log.receipt_code,
    )
    if since is not None:
        start = dt.datetime.combine(since, dt.time(), tz).astimezone(dt.timezone.utc)
        query = query.where(log.created_at >= start.replace(tzinfo=None))
    days: Counter[tuple[dt.date, str, str]] = Counter()
    failures: Counter[tuple[dt.date, str, str]] = Counter()
    read = 0
    session = state.db.session
    # A new transaction: MariaDB's REPEATABLE READ fixes what it reads at the first read, and
    # that must come after the lock below.
    session.commit()
    with transaction(session):
        _lock_for_rebuild(session, (days_model, failures_model), since)
        for row in session.execute(query.execution_options(yield_per=5000)):
            read += 1
            day = local_day(row.created_at, tz)
            kind = kind_of(row.sender, row.category, row.ok)
            days[(day, row.purpose, kind)] += 1
            if kind == "errors":
                failures[(day, SEND, row.code or "unknown")] += 1
            if row.delivery in ("delivered", "failed"):
                success = row.delivery == "delivered"
                days[(day, row.purpose, "delivered" if success else "failed")] += 1
                days[(day, row.purpose, "billed")] += billed_segments(
                    row.phone_masked, success, row.sms_size
                )
                if not success:
                    failures[(day, RECEIPT, row.receipt_code or "unknown")] += 1
        day_rows, failure_rows = _day_rows(days), _failure_rows(failures)
        if day_rows:
            session.execute(sa.insert(days_model.__table__), day_rows)
        if failure_rows:
            session.execute(sa.insert(failures_model.__table__), failure_rows)
    return read


def _lock_for_rebuild(session: Any, models: tuple[Any, ...], since: dt.date | None) -> None:
    """Delete the totals to be rebuilt so that no send can change them until the commit.

    The delete is the lock on SQLite (the database's one write lock) and on MariaDB/MySQL (under
    REPEATABLE READ, their default, it locks the range with its gaps, so a send cannot add a
    row to it either). PostgreSQL locks no gaps, so there the tables are locked first, in a
    mode that lets pages read them but makes writers wait.
    """
    connection = connection_for(session, models[0])
    if connection.dialect.name == "postgresql":
        names = ", ".join(
            connection.dialect.identifier_preparer.format_table(model.__table__)
            for model in models
        )
        connection.exec_driver_sql(f"LOCK TABLE {names} IN SHARE ROW EXCLUSIVE MODE")
    for model in models:
        delete = sa.delete(model)
        if since is not None:
            delete = delete.where(model.day >= since)
        session.execute(delete)
