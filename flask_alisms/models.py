"""Tables the extension keeps in the host's database, declared on the host's ``db``.

The host owns the database and its migrations: these models join ``db.metadata`` so that
``db.create_all()`` (or Alembic autogenerate) picks them up. They are built once per ``db``
object, so two apps sharing one ``db`` share one set of classes.
"""

from __future__ import annotations

import datetime as dt
import logging
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
import sqlalchemy.orm
from flask import current_app
from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.session import Session as FlaskSession

_built: weakref.WeakKeyDictionary[SQLAlchemy, Models] = weakref.WeakKeyDictionary()
logger = logging.getLogger(__name__)
T = TypeVar("T")


def read_retrying(read: Callable[[], T], session: Any | None = None) -> T:
    """Run a read-only query; if its pooled connection was dead, run it once more.

    Why retry and not ``pool_pre_ping``: pre-ping costs a round trip on every checkout and is
    an option of the host's engine, which the extension does not change; a dead connection is
    rare, and SQLAlchemy invalidates the whole pool on the first disconnect, so one retry gets
    a fresh connection and the requests after it find a clean pool. Only a read that starts a
    transaction is retried: work done earlier in the same transaction died with the connection
    and must fail, not be silently carried on.
    """
    if isinstance(session, sa.orm.scoped_session):
        session = session()
    fresh = session is None or not session.in_transaction()
    try:
        return read()
    except sa.exc.DBAPIError as exc:
        if not (fresh and exc.connection_invalidated):
            raise
        if session is not None:
            session.rollback()
        logger.warning("A pooled database connection was dead; reading again on a new one")
        return read()


@contextmanager
def transaction(session: Any) -> Iterator[None]:
    """Commit what the block did, or roll it back and re-raise: never a half-open session."""
    try:
        yield
        session.commit()
    except BaseException:
        session.rollback()
        raise


#: Per app, the engine Flask-SQLAlchemy's ``get_bind`` picks for a model (see connection_for).
_engines: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()


def connection_for(session: Any, model: Any) -> Any:
    """The connection of the session's transaction for ``model``'s database (a mapped class or
    a table), begun if need be.

    The send path runs its Core statements (the user lookup, the log row, the day's totals,
    the code) on it: through ``session.execute`` each statement pays the session's bind
    lookup, execution options and event dispatch, a fifth of the CPU of a send. They stay in
    the session's transaction, which the caller commits or rolls back through the session.

    Flask-SQLAlchemy's own ``get_bind`` maps a model to an engine by the app's config, which
    does not change, so its answer is kept per app (it costs about as much as a statement's
    own Python work); a session class with its own ``get_bind`` is asked every time.
    """
    if isinstance(session, sa.orm.scoped_session):
        session = session()
    if type(session).get_bind is not FlaskSession.get_bind:
        return session.connection(bind_arguments=_bind_arguments(model))
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    engines = _engines.get(app)
    if engines is None:
        engines = _engines.setdefault(app, {})
    engine = engines.get(model)
    if engine is None:
        engine = engines[model] = session.get_bind(**_bind_arguments(model))
    return session.connection(bind_arguments={"bind": engine})


def _bind_arguments(model: Any) -> dict[str, Any]:
    return {"clause": model} if isinstance(model, sa.Table) else {"mapper": model}


def utcnow() -> dt.datetime:
    """Naive UTC, so values compare the same on SQLite, PostgreSQL and MariaDB."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class Models:
    Parameter: Any
    ParameterChange: Any
    SendLog: Any
    VerificationCode: Any
    Receipt: Any = None
    RemoteCheck: Any = None
    AliyunDaily: Any = None
    DailyTotal: Any = None
    FailureTotal: Any = None
    BudgetAlert: Any = None


def build_models(db: SQLAlchemy) -> Models:
    """Declare the extension's tables on ``db`` (once per ``db``)."""
    if db in _built:
        return _built[db]

    class Parameter(db.Model):  # type: ignore[name-defined]
        """One admin-set value; secret ones hold a Fernet token, never plaintext."""

        __tablename__ = "alisms_parameter"
        key = sa.Column(sa.String(100), primary_key=True)
        value = sa.Column(sa.Text, nullable=False)
        updated_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)
        updated_by = sa.Column(sa.String(200), nullable=True)

    class ParameterChange(db.Model):  # type: ignore[name-defined]
        """Audit trail: who changed which key when; the new value only for non-secret keys."""

        __tablename__ = "alisms_parameter_change"
        id = sa.Column(sa.Integer, primary_key=True)
        key = sa.Column(sa.String(100), nullable=False, index=True)
        action = sa.Column(sa.String(10), nullable=False)  # "set" or "unset"
        value = sa.Column(sa.Text, nullable=True)
        actor = sa.Column(sa.String(200), nullable=True)
        changed_at = sa.Column(sa.DateTime, nullable=False, default=utcnow, index=True)

    class SendLog(db.Model):  # type: ignore[name-defined]
        """One SMS attempt and what Aliyun said; never the code itself."""

        __tablename__ = "alisms_send_log"
        # Delivery receipts: the panel's filters walk these newest first and stop early.
        __table_args__ = (
            sa.Index("ix_alisms_send_log_category_created", "category", "created_at"),
            sa.Index("ix_alisms_send_log_purpose_created", "purpose", "created_at"),
            sa.Index("ix_alisms_send_log_delivery_created", "delivery", "created_at"),
            sa.Index("ix_alisms_send_log_tail_created", "phone_tail", "created_at"),
            sa.Index("ix_alisms_send_log_biz_id", "biz_id"),
            # Recent real send times are read by category, newest first (see flows.guard).
            sa.Index("ix_alisms_send_log_category_id", "category", "id"),
        )
        id = sa.Column(sa.Integer, primary_key=True)
        created_at = sa.Column(sa.DateTime, nullable=False, default=utcnow, index=True)
        phone_masked = sa.Column(sa.String(32), nullable=False)
        purpose = sa.Column(sa.String(20), nullable=False)
        sender = sa.Column(sa.String(40), nullable=False)
        ok = sa.Column(sa.Boolean, nullable=False)
        category = sa.Column(sa.String(20), nullable=False, index=True)
        code = sa.Column(sa.String(100), nullable=False)
        message = sa.Column(sa.String(500), nullable=True)
        request_id = sa.Column(sa.String(64), nullable=True)
        biz_id = sa.Column(sa.String(64), nullable=True)
        http_status = sa.Column(sa.Integer, nullable=True)
        duration_ms = sa.Column(sa.Float, nullable=False, default=0.0)
        # Keyed digests (Keyring.subject_digest) of the number and the client network, for a
        # send that spent the budgets: they are rebuilt from here if the limiter loses them.
        phone_digest = sa.Column(sa.String(32), nullable=True)
        client_digest = sa.Column(sa.String(32), nullable=True)
        # Delivery receipts: "accepted" (waiting), "delivered", "failed"; None when no SMS left.
        delivery = sa.Column(sa.String(10), nullable=True)
        delivered_at = sa.Column(sa.DateTime, nullable=True)
        receipt_code = sa.Column(sa.String(64), nullable=True)
        receipt_message = sa.Column(sa.String(200), nullable=True)
        sms_size = sa.Column(sa.Integer, nullable=True)
        # The number's last four digits, for the "ends with" filter through an index.
        phone_tail = sa.Column(sa.String(4), nullable=True)
        # The number Fernet-encrypted, kept only while QuerySendDetails may still be asked
        # about it (a final receipt or 30 days clear it).
        phone_sealed = sa.Column(sa.Text, nullable=True)

    class VerificationCode(db.Model):  # type: ignore[name-defined]
        """The live code for one phone and purpose, kept only as a keyed digest."""

        __tablename__ = "alisms_verification_code"
        __table_args__ = (sa.UniqueConstraint("phone", "purpose", name="uq_alisms_code_phone"),)
        id = sa.Column(sa.Integer, primary_key=True)
        phone = sa.Column(sa.String(32), nullable=False)
        purpose = sa.Column(sa.String(20), nullable=False)
        digest = sa.Column(sa.String(64), nullable=False)
        created_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)
        expires_at = sa.Column(sa.DateTime, nullable=False, index=True)
        attempts_left = sa.Column(sa.Integer, nullable=False)

    class Receipt(db.Model):  # type: ignore[name-defined]
        """One delivery report (pushed or polled), kept once per BizId and number.

        The number is only a keyed digest. A report whose BizId has no send row yet stays
        ``matched = False`` until the row appears.
        """

        __tablename__ = "alisms_receipt"
        __table_args__ = (
            sa.UniqueConstraint("biz_id", "phone_digest", name="uq_alisms_receipt_biz_phone"),
            sa.Index("ix_alisms_receipt_pending", "matched", "received_at"),
        )
        id = sa.Column(sa.Integer, primary_key=True)
        biz_id = sa.Column(sa.String(64), nullable=False)
        phone_digest = sa.Column(sa.String(64), nullable=False)
        success = sa.Column(sa.Boolean, nullable=False)
        err_code = sa.Column(sa.String(64), nullable=True)
        err_msg = sa.Column(sa.String(200), nullable=True)
        sms_size = sa.Column(sa.Integer, nullable=True)
        report_time = sa.Column(sa.DateTime, nullable=True)
        received_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)
        source = sa.Column(sa.String(10), nullable=False)  # "push" or "poll"
        matched = sa.Column(sa.Boolean, nullable=False, default=False)

    class RemoteCheck(db.Model):  # type: ignore[name-defined]
        """What Aliyun said about the saved AccessKey, signature and template.

        Keyed by a keyed digest of the values checked, so changing any of them re-checks and
        the row reveals none of them.
        """

        __tablename__ = "alisms_remote_check"
        fingerprint = sa.Column(sa.String(64), primary_key=True)
        checked_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)
        result = sa.Column(sa.Text, nullable=False)  # JSON: the lines, never a secret

    class AliyunDaily(db.Model):  # type: ignore[name-defined]
        """One Beijing day of Aliyun's QuerySendStatistics beside our own count."""

        __tablename__ = "alisms_aliyun_daily"
        day = sa.Column(sa.Date, primary_key=True)
        total = sa.Column(sa.Integer, nullable=False, default=0)
        success = sa.Column(sa.Integer, nullable=False, default=0)
        failed = sa.Column(sa.Integer, nullable=False, default=0)
        no_response = sa.Column(sa.Integer, nullable=False, default=0)
        ours = sa.Column(sa.Integer, nullable=False, default=0)
        synced_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)

    class DailyTotal(db.Model):  # type: ignore[name-defined]
        """Running totals of one local day and purpose, kept beside the send log.

        Why: the monitoring page and the budgets read 30 days and a month at any log size;
        each send adds to its row in the send's own transaction, each receipt when it is
        matched, and ``flask alisms stats rebuild`` recomputes them from the log.
        """

        __tablename__ = "alisms_daily_total"
        day = sa.Column(sa.Date, primary_key=True)  # in ALISMS_TIMEZONE
        purpose = sa.Column(sa.String(20), primary_key=True)
        sent = sa.Column(sa.Integer, nullable=False, default=0)  # accepted by the provider
        errors = sa.Column(sa.Integer, nullable=False, default=0)  # refused or unreachable
        skipped = sa.Column(sa.Integer, nullable=False, default=0)  # the account rule
        local = sa.Column(sa.Integer, nullable=False, default=0)  # console, test numbers
        delivered = sa.Column(sa.Integer, nullable=False, default=0)
        failed = sa.Column(sa.Integer, nullable=False, default=0)  # failed receipts
        billed = sa.Column(sa.Integer, nullable=False, default=0)  # segments, see totals

    class FailureTotal(db.Model):  # type: ignore[name-defined]
        """How often one error code was seen on one local day: a refused send or a receipt."""

        __tablename__ = "alisms_failure_total"
        day = sa.Column(sa.Date, primary_key=True)
        source = sa.Column(sa.String(10), primary_key=True)  # "send" or "receipt"
        code = sa.Column(sa.String(64), primary_key=True)
        count = sa.Column(sa.Integer, nullable=False, default=0)

    class BudgetAlert(db.Model):  # type: ignore[name-defined]
        """A budget alert that fired: one row per period, period start and threshold.

        The primary key decides, across every worker, who sends an alert: the INSERT that
        succeeds (see :mod:`flask_alisms.flows.budget`).
        """

        __tablename__ = "alisms_budget_alert"
        period = sa.Column(sa.String(5), primary_key=True)  # "day" or "month"
        start = sa.Column(sa.Date, primary_key=True)  # the period's first day, ALISMS_TIMEZONE
        percent = sa.Column(sa.Integer, primary_key=True)
        fired_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)
        spent = sa.Column(sa.Numeric(14, 4), nullable=False)  # committed spend, CNY
        budget = sa.Column(sa.Numeric(14, 2), nullable=False)  # CNY

    models = Models(
        Parameter,
        ParameterChange,
        SendLog,
        VerificationCode,
        Receipt=Receipt,
        RemoteCheck=RemoteCheck,
        AliyunDaily=AliyunDaily,
        DailyTotal=DailyTotal,
        FailureTotal=FailureTotal,
        BudgetAlert=BudgetAlert,
    )
    _built[db] = models
    return models
