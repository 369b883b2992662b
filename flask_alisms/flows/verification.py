"""Sending a code and checking it: limits, the provider, the code store, the log and signals.

These functions are the one path every caller takes (JSON API, HTML pages, the host's own
code), so each rule holds everywhere: limits are spent before the provider is called, a code
is kept only after the provider said ``OK``, and nothing here ever logs or signals a code.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app

from .. import signals
from ..exceptions import CodeStoreUnavailable, GateClosed
from ..i18n import gettext as _
from ..phones import Phone
from ..sms import Category, SendResult, SmsMessage
from ..state import AliSMSState, get_state
from .codes import Verdict, generate_code
from .throttle import Refusal

logger = logging.getLogger(__name__)

PURPOSES = ("register", "reset")



@dataclass(frozen=True)
class SendOutcome:
    """What happened to a code request, as much as the caller may tell the user."""

    sent: bool
    resend_after: int
    refusal: Refusal | None = None
    result: SendResult | None = None


def failure_message(outcome: SendOutcome) -> str:
    """The short, safe sentence a user sees when a send failed."""
    if outcome.result is not None and outcome.result.advice is not None:
        return str(outcome.result.advice.user_message)
    return _("We could not send the SMS right now. Please try again later.")


def check_gate(purpose: str, state: AliSMSState | None = None) -> None:
    """Raise :class:`GateClosed` when the switches do not allow ``purpose`` right now."""
    state = state or get_state()
    if state.user_adapter is None or (
        purpose == "register" and not state.params.values().registration_switches_on
    ):
        # Without a user adapter there is nobody to register or reset: closed, not a crash.
        raise GateClosed("registration_disabled")
    if not state.sms_ready():
        raise GateClosed("sms_not_configured")


def _add_log_row(
    state: AliSMSState,
    phone: Phone,
    purpose: str,
    result: SendResult,
    sender: str,
    *,
    category: str | None = None,
) -> None:
    """Add the send-log row to the session's transaction; the caller commits.

    A log that cannot be written must not fail the request: the error is logged instead.
    """
    session = state.db.session
    try:
        session.execute(
            sa.insert(state.models.SendLog.__table__),
            {
                "phone_masked": phone.masked,
                "purpose": purpose,
                "sender": sender,
                "ok": result.ok,
                "category": category
                or ("sent" if result.ok else (result.category or Category.UNKNOWN).value),
                "code": result.code[:100],
                "message": (result.message or "")[:500],
                "request_id": result.request_id,
                "biz_id": result.biz_id,
                "http_status": result.http_status,
                "duration_ms": result.duration_ms,
            },
        )
    except Exception:
        session.rollback()
        logger.exception("Could not write the SMS send log")


def _commit_log(state: AliSMSState) -> None:
    """Commit the pending log row, if the code store's commit has not carried it already."""
    session = state.db.session
    if not session().in_transaction():
        return
    try:
        session.commit()
    except Exception:
        session.rollback()
        logger.exception("Could not write the SMS send log")


def _record(
    state: AliSMSState,
    phone: Phone,
    purpose: str,
    result: SendResult,
    sender: str,
    *,
    category: str | None = None,
    keep: tuple[str, int, int] | None = None,
) -> None:
    """Log the attempt and, with ``keep`` (digest, ttl, attempts), make that code the live one.

    With the database code store the log row and the code share the store's one commit, so a
    send costs a single transaction. Should keeping the code fail, the log row is written on
    its own (the SMS was sent and billed) and :class:`CodeStoreUnavailable` is raised.
    """
    _add_log_row(state, phone, purpose, result, sender, category=category)
    if keep is not None:
        digest, ttl, attempts = keep
        try:
            state.codes.save(phone.e164, purpose, digest, ttl=ttl, attempts=attempts)
        except Exception as exc:
            state.db.session.rollback()  # what was left of the transaction; the row goes alone
            _add_log_row(state, phone, purpose, result, sender, category=category)
            _commit_log(state)
            # The type only: a database error's text lists the statement's parameters.
            logger.error("Could not keep the code for %s: %s", phone.masked, type(exc).__name__)
            raise CodeStoreUnavailable("the code store did not answer") from exc
    _commit_log(state)


def _skip_like_a_send(state: AliSMSState, phone: Phone, purpose: str, code_length: int) -> None:
    """Spend about the time and writes a real send would, without sending a code.

    Used where telling "this number has an account" apart from "it has none" would let anyone
    enumerate users: the caller answers exactly as for a real send.
    """
    started = time.perf_counter()
    time.sleep(state.typical_send_seconds * random.uniform(0.85, 1.15))  # noqa: S311
    reason = "has an account" if purpose == "register" else "has no account"
    skipped = SendResult(
        ok=False,
        code="SKIPPED",
        message=f"No SMS sent: the number {reason}; the user was answered as if sent.",
        http_status=None,
        request_id=None,
        biz_id=None,
        duration_ms=(time.perf_counter() - started) * 1000.0,
        advice=None,
    )
    # An unknowable code keeps the store's write pattern identical; nobody can use it.
    digest = state.keyring.code_digest(phone.e164, purpose, generate_code(code_length) + "x")
    keep = (digest, state.params.values().code_ttl, 1)
    _record(state, phone, purpose, skipped, "none", category="skipped", keep=keep)


def send_test_message(phone: Phone) -> SendResult:
    """Send a real code SMS with the saved parameters, for the admin's test button and CLI."""
    state = get_state()
    code = generate_code(state.params.values().code_length)
    sender = state.sender_for_send()
    result = sender.send(_message(state, phone, code, "test"), state.credentials())
    _record(state, phone, "test", result, sender.name)
    return result


def _sends_sms(state: AliSMSState, phone: Phone, purpose: str) -> bool:
    """The account rule: whether ``purpose`` sends a real SMS to this number.

    register sends only to a number without an account, reset only to one with an account;
    every other case is answered exactly as if sent (see :func:`_skip_like_a_send`).
    """
    has_account = state.users.find_by_phone(phone.e164) is not None
    return has_account != (purpose == "register")


def _message(state: AliSMSState, phone: Phone, code: str, purpose: str) -> SmsMessage:
    """The code SMS for ``purpose``."""
    values = state.params.values()
    return SmsMessage(
        phone=phone.aliyun,
        sign_name=values.sign_name,
        template_code=values.sms_code_template_code,
        params={values.template_param_name: code},
    )


def request_code(phone: Phone, purpose: str, client_ip: str) -> SendOutcome:
    """Send a fresh code to ``phone`` for ``purpose`` unless a gate or a limit says no.

    Raises :class:`GateClosed`, :class:`~flask_alisms.limits.LimiterUnavailable` and
    :class:`~flask_alisms.codes.CodeStoreUnavailable`.
    """
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}")
    state = get_state()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    check_gate(purpose, state)
    values = state.params.values()
    interval = values.resend_interval

    refusal = state.throttle.hit_send(phone.e164, client_ip)
    if refusal is not None:
        signals.send_refused.send(app, purpose=purpose, rule=refusal.scope)
        return SendOutcome(False, refusal.retry_after, refusal=refusal)

    code_length = values.code_length
    if not _sends_sms(state, phone, purpose):
        _skip_like_a_send(state, phone, purpose, code_length)
        logger.info("No code sent to %s for %s (account rule)", phone.masked, purpose)
        return SendOutcome(True, interval)

    code = generate_code(code_length)
    sender = state.sender_for_send()
    result = sender.send(_message(state, phone, code, purpose), state.credentials())
    if not result.ok:
        # The older code (if any) stays as it was; the new one was never stored.
        _record(state, phone, purpose, result, sender.name)
        signals.code_send_failed.send(app, phone=phone.e164, purpose=purpose, result=result)
        return SendOutcome(False, interval, result=result)

    state.note_send_time(result.duration_ms / 1000.0)
    digest = state.keyring.code_digest(phone.e164, purpose, code)
    keep = (digest, values.code_ttl, values.max_attempts)
    _record(state, phone, purpose, result, sender.name, keep=keep)
    signals.code_sent.send(app, phone=phone.e164, purpose=purpose, result=result)
    return SendOutcome(True, interval, result=result)


@dataclass(frozen=True)
class CheckOutcome:
    accepted: bool
    refusal: Refusal | None = None


def check_code(phone: Phone, purpose: str, code: object) -> CheckOutcome:
    """Consume ``code`` if it is the live one; every failure looks the same to the caller."""
    state = get_state()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    refusal = state.throttle.hit_verify(phone.e164)
    if refusal is not None:
        signals.code_rejected.send(app, phone=phone.e164, purpose=purpose, reason="throttled")
        return CheckOutcome(False, refusal)
    text = code.strip() if isinstance(code, str) else ""
    if not (text.isascii() and text.isdigit() and 4 <= len(text) <= 8):
        signals.code_rejected.send(app, phone=phone.e164, purpose=purpose, reason="malformed")
        return CheckOutcome(False)
    verdict = state.codes.check(
        phone.e164, purpose, state.keyring.code_digest(phone.e164, purpose, text)
    )
    if verdict is Verdict.ACCEPTED:
        signals.code_verified.send(app, phone=phone.e164, purpose=purpose)
        return CheckOutcome(True)
    signals.code_rejected.send(app, phone=phone.e164, purpose=purpose, reason=verdict.value)
    return CheckOutcome(False)
