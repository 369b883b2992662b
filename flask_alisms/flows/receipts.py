"""Delivery receipts: pushed by Aliyun (SmsReport) or polled (QuerySendDetails), stored once.

Why this shape:

- A receipt is stored in its own table, deduplicated on BizId + a keyed digest of the number
  (Aliyun repeats pushes, and a poll may see what a push already brought). The number itself
  is never stored from a receipt.
- Receipts reach the send log by one set-based UPDATE over the receipts not yet matched, so a
  batch of 1,000 costs a handful of statements, and a receipt that arrives before its send
  row was committed is matched on a later batch, poll or page view.
- Polling needs the full number (QuerySendDetails asks about one number). The send row keeps
  it Fernet-encrypted with the deployment's key only while a poll can still use it: a final
  receipt clears it, and so does its 30th day (Aliyun answers nothing older).
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from .. import signals
from ..exceptions import DecryptionError, InvalidParameter
from ..models import transaction, utcnow
from ..parameters import REPORT_TOKEN
from ..phones import Phone
from ..sms import AliyunSender, SendResult
from ..sms.receipts import DELIVERED, FAILED, ReceiptQueryError, query_send_details
from ..state import AliSMSState
from . import totals

logger = logging.getLogger(__name__)

#: Reports accepted in one push; Aliyun sends at most a few hundred at a time.
MAX_REPORTS = 5000
#: How far back Aliyun answers QuerySendDetails, and so how long a sealed number is kept.
POLL_DAYS = 30
#: Unmatched receipts are retried against the log for this long, then left alone.
MATCH_WINDOW = dt.timedelta(days=3)
_CHINA = dt.timedelta(hours=8)  # report_time and SendDate are Beijing time
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class MalformedReport(ValueError):
    """The pushed body is not an array of SmsReport objects; nothing of it is stored."""


@dataclass(frozen=True)
class Report:
    """One delivery report, with the number already turned into its digest."""

    biz_id: str
    phone_digest: str
    success: bool
    err_code: str | None
    err_msg: str | None
    sms_size: int | None
    report_time: dt.datetime | None


def receipt_fields(
    state: AliSMSState, phone: Phone, result: SendResult, sender: str
) -> dict[str, Any]:
    """The send-log columns the receipts need, for the send path's one INSERT."""
    waiting = result.ok and bool(result.biz_id) and sender == AliyunSender.name
    return {
        "phone_tail": phone.e164[-4:],
        "delivery": "accepted" if waiting else None,
        "phone_sealed": state.keyring.encrypt(phone.aliyun) if waiting else None,
    }


def _digest(state: AliSMSState, number: str) -> str:
    """A keyed digest of a number in Aliyun's form: dedupes receipts, reveals no number."""
    return state.keyring.code_digest(_aliyun_form(number), "receipt", "")


def _aliyun_form(number: str) -> str:
    digits = number.strip().lstrip("+")
    if digits.startswith("0086"):
        digits = digits[4:]
    if len(digits) == 13 and digits.startswith("861"):
        digits = digits[2:]
    return digits


def _text(item: Mapping[str, Any], key: str, limit: int, *, required: bool = False) -> str | None:
    value = item.get(key)
    if value is None or value == "":
        if required:
            raise MalformedReport(f"{key} is required")
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise MalformedReport(f"{key} must be text")
    text = str(value)
    if "\x00" in text or not text.isprintable():
        raise MalformedReport(f"{key} has control characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedReport(f"{key} is not valid text") from None
    return text[:limit]


def _beijing_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.strptime(text, _TIME_FORMAT) - _CHINA
    except ValueError:
        raise MalformedReport("times must look like 2026-12-01 10:00:00") from None


def parse_reports(state: AliSMSState, data: Any) -> list[Report]:
    """Check a pushed body (decoded JSON) whole; raise MalformedReport for any bad item."""
    if not isinstance(data, list) or not data:
        raise MalformedReport("send a non-empty JSON array of reports")
    if len(data) > MAX_REPORTS:
        raise MalformedReport(f"at most {MAX_REPORTS} reports per request")
    reports = []
    for item in data:
        if not isinstance(item, dict):
            raise MalformedReport("every report must be a JSON object")
        success = item.get("success")
        if not isinstance(success, bool):
            raise MalformedReport("success must be true or false")
        phone = _text(item, "phone_number", 32, required=True) or ""
        if not _aliyun_form(phone).isdigit() or not phone.isascii():
            raise MalformedReport("phone_number must be digits")
        size = _text(item, "sms_size", 4)
        if size is not None and not (size.isascii() and size.isdigit()):
            raise MalformedReport("sms_size must be a whole number")
        reports.append(
            Report(
                biz_id=_text(item, "biz_id", 64, required=True) or "",
                phone_digest=_digest(state, phone),
                success=success,
                err_code=_text(item, "err_code", 64),
                err_msg=_text(item, "err_msg", 200),
                sms_size=int(size) if size is not None else None,
                report_time=_beijing_time(_text(item, "report_time", 19)),
            )
        )
    return reports


def store_reports(state: AliSMSState, reports: Iterable[Report], *, source: str) -> int:
    """Keep the reports not seen before and match them to the log; returns how many were new.

    Safe against the same batch pushed twice at once: the unique key refuses the loser,
    which then retries and finds everything already there.
    """
    unique: dict[tuple[str, str], Report] = {}
    for report in reports:
        unique.setdefault((report.biz_id, report.phone_digest), report)
    for attempt in (1, 2):
        try:
            added = _insert_new(state, unique, source)
            break
        except IntegrityError:
            if attempt == 2:
                raise
    match_pending(state)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    for report in added:  # after the commit: a receiver never sees a receipt that was undone
        signals.receipt_received.send(
            app, state="delivered" if report.success else "failed", err_code=report.err_code
        )
    return len(added)


def _insert_new(
    state: AliSMSState, unique: dict[tuple[str, str], Report], source: str
) -> list[Report]:
    receipt = state.models.Receipt
    session = state.db.session
    now = utcnow()
    with transaction(session):
        biz_ids = sorted({key[0] for key in unique})
        seen: set[tuple[str, str]] = set()
        for start in range(0, len(biz_ids), 1000):
            chunk = biz_ids[start : start + 1000]
            seen.update(
                (row[0], row[1])
                for row in session.execute(
                    sa.select(receipt.biz_id, receipt.phone_digest).where(receipt.biz_id.in_(chunk))
                )
            )
        new = [r for key, r in unique.items() if key not in seen]
        rows = [
            {
                "biz_id": r.biz_id,
                "phone_digest": r.phone_digest,
                "success": r.success,
                "err_code": r.err_code,
                "err_msg": r.err_msg,
                "sms_size": r.sms_size,
                "report_time": r.report_time,
                "received_at": now,
                "source": source,
                "matched": False,
            }
            for r in new
        ]
        if rows:
            session.execute(sa.insert(receipt.__table__), rows)
    return new


def match_pending(state: AliSMSState) -> int:
    """Copy unmatched receipts onto their send rows (two set-based statements)."""
    log, receipt = state.models.SendLog, state.models.Receipt
    session = state.db.session
    recent = receipt.received_at >= utcnow() - MATCH_WINDOW
    pending = session.execute(
        sa.select(receipt.id).where(receipt.matched.is_(False), recent).limit(1)
    ).first()
    if pending is None:  # the usual case on a page view: one index probe, no UPDATE
        return 0
    accepted = log.delivery == "accepted"  # a row changes state once: counted once
    with transaction(session):
        # Locked, so two matchers running at once cannot both count the same receipt.
        changing = session.execute(
            sa.select(
                log.created_at,
                log.purpose,
                log.phone_masked,
                receipt.success,
                receipt.sms_size,
                receipt.err_code,
            )
            .where(log.biz_id == receipt.biz_id, receipt.matched.is_(False), recent, accepted)
            .with_for_update()
        ).all()
        totals.count_receipts(state, (totals.Transition(*row) for row in changing))
        outcome: Any = session.execute(
            sa.update(log)
            .where(log.biz_id == receipt.biz_id, receipt.matched.is_(False), recent, accepted)
            .values(
                delivery=sa.case((receipt.success, "delivered"), else_="failed"),
                delivered_at=receipt.report_time,
                receipt_code=receipt.err_code,
                receipt_message=receipt.err_msg,
                sms_size=receipt.sms_size,
                phone_sealed=None,
            )
            .execution_options(synchronize_session=False)
        )
        session.execute(
            sa.update(receipt)
            .where(
                receipt.matched.is_(False),
                recent,
                sa.exists().where(log.biz_id == receipt.biz_id),
            )
            .values(matched=True)
            .execution_options(synchronize_session=False)
        )
    return int(outcome.rowcount or 0)


# -- the push endpoint's token ----------------------------------------------------------------


def report_token(state: AliSMSState, *, create: bool = True) -> str:
    """The push URL's token; made (and saved) on first use when ``create``."""
    token = state.params.values().report_token
    if not token and create:
        try:
            token = regenerate_token(state, actor="system")
        except InvalidParameter:  # fixed (empty) by ALISMS_PARAMS: pushes stay refused
            return ""
    return token


def regenerate_token(state: AliSMSState, *, actor: str | None) -> str:
    """A fresh random token; the old URL stops working at once."""
    token = secrets.token_urlsafe(24)
    state.params.update({REPORT_TOKEN: token}, actor=actor)
    return token


def token_matches(state: AliSMSState, given: str) -> bool:
    """Constant-time comparison; an unset token matches nothing."""
    expected = state.params.values().report_token
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


# -- polling ----------------------------------------------------------------------------------


@dataclass
class SyncResult:
    asked: int = 0
    delivered: int = 0
    failed: int = 0
    waiting: int = 0
    errors: int = 0
    cleared: int = 0


def sync(state: AliSMSState, since: dt.timedelta, *, max_calls: int = 200) -> SyncResult:
    """Ask QuerySendDetails about sends still waiting for a receipt; at most ``max_calls``.

    Idempotent: rows with a final state are not asked about again, receipts are deduplicated,
    so running it from cron every few minutes costs only the waiting rows.
    """
    log = state.models.SendLog
    session = state.db.session
    now = utcnow()
    result = SyncResult()
    horizon = now - dt.timedelta(days=POLL_DAYS)
    with transaction(session):  # numbers Aliyun no longer answers for are not kept
        cleared: Any = session.execute(
            sa.update(log)
            .where(log.phone_sealed.is_not(None), log.created_at < horizon)
            .values(phone_sealed=None)
            .execution_options(synchronize_session=False)
        )
    result.cleared = int(cleared.rowcount or 0)
    sender, credentials = state.sender, state.credentials()
    if not isinstance(sender, AliyunSender) or credentials is None:
        raise ReceiptQueryError(
            "NotConfigured", "polling needs ALISMS_SENDER = aliyun and the AccessKey parameters"
        )
    rows = session.execute(
        sa.select(log.biz_id, log.phone_sealed, log.created_at)
        .where(
            log.delivery == "accepted",
            log.phone_sealed.is_not(None),
            log.created_at >= max(now - since, horizon),
        )
        .order_by(log.created_at)
        .limit(max_calls)
    ).all()
    session.rollback()  # end the read transaction before the network calls
    reports = []
    for biz_id, sealed, created_at in rows:
        try:
            number = state.keyring.decrypt(sealed)
        except DecryptionError:
            result.errors += 1
            continue
        result.asked += 1
        send_date = (created_at + _CHINA).strftime("%Y%m%d")
        try:
            _, details = query_send_details(
                sender, credentials, phone=number, send_date=send_date, biz_id=biz_id
            )
        except ReceiptQueryError as exc:
            result.errors += 1
            logger.warning("QuerySendDetails failed for BizId %s: %s", biz_id, exc.code)
            if exc.code.startswith(("SDK.", "InvalidAccessKey", "SignatureDoesNotMatch")):
                break  # the next calls would fail the same way
            continue
        final = [d for d in details if d.status in (DELIVERED, FAILED)]
        if not final:
            result.waiting += 1
            continue
        detail = final[0]
        ok = detail.status == DELIVERED
        result.delivered += ok
        result.failed += not ok
        reports.append(
            Report(
                biz_id=biz_id,
                phone_digest=_digest(state, number),
                success=ok,
                err_code=detail.err_code or None,
                err_msg=None,
                sms_size=None,
                report_time=_parse_optional(detail.receive_date),
            )
        )
    if reports:
        store_reports(state, reports, source="poll")
    return result


def _parse_optional(text: str) -> dt.datetime | None:
    try:
        return _beijing_time(text)
    except MalformedReport:
        return None
