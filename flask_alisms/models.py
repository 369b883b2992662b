"""Tables the extension keeps in the host's database, declared on the host's ``db``.

The host owns the database and its migrations: these models join ``db.metadata`` so that
``db.create_all()`` (or Alembic autogenerate) picks them up. They are built once per ``db``
object, so two apps sharing one ``db`` share one set of classes.
"""

from __future__ import annotations

import datetime as dt
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy

_built: weakref.WeakKeyDictionary[SQLAlchemy, Models] = weakref.WeakKeyDictionary()


@contextmanager
def transaction(session: Any) -> Iterator[None]:
    """Commit what the block did, or roll it back and re-raise: never a half-open session."""
    try:
        yield
        session.commit()
    except BaseException:
        session.rollback()
        raise


def utcnow() -> dt.datetime:
    """Naive UTC, so values compare the same on SQLite, PostgreSQL and MariaDB."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class Models:
    Parameter: Any
    ParameterChange: Any
    SendLog: Any
    VerificationCode: Any
    RemoteCheck: Any = None
    AliyunDaily: Any = None


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

    models = Models(
        Parameter,
        ParameterChange,
        SendLog,
        VerificationCode,
        RemoteCheck=RemoteCheck,
        AliyunDaily=AliyunDaily,
    )
    _built[db] = models
    return models
