"""Sending a code and checking it: limits, the provider, the code store, the log and signals.

These functions are the one path every caller takes (JSON API, HTML pages, the host's own
code), so each rule holds everywhere: whatever can fail before the provider is called (the
user lookup, the send log, the limiter) runs before any budget is spent; limits are spent
before the provider is called; a code is kept only after the provider said ``OK`` or may have
(a read timeout); and nothing here ever logs or signals a code.

The answer never tells whether a number has an account (see README, Security): a skipped send
takes a real send's time and writes; a failure of one number is answered as a send; a failure
of the provider itself opens a breaker shared by every worker (:mod:`.guard`), which answers
every send 503 until a real send succeeds again.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from functools import partial

import sqlalchemy as sa
from flask import current_app

from .. import signals
from ..exceptions import CodeStoreUnavailable, GateClosed
from ..models import connection_for, utcnow
from ..phones import Phone
from ..sms import Category, SendResult, SmsMessage
from ..state import AliSMSState, get_state
from ..users import has_user_with_phone
from . import breaker, budget, guard, totals
from .codes import Verdict, generate_code
from .receipts import receipt_fields
from .throttle import Refusal

logger = logging.getLogger(__name__)

PURPOSES = ("register", "reset", "login", "change_phone")
#: What anybody may ask a code for; ``change_phone`` codes go only to a signed-in user.
PUBLIC_PURPOSES = ("register", "reset", "login")


@dataclass(frozen=True)
class SendOutcome:
    """What happened to a code request, as much as the caller may tell the user."""

    #: Answer "sent": a code went out, or the number is not told apart from one where it did.
    sent: bool
    #: Seconds before another request makes sense (the cooldown when ``unavailable``).
    resend_after: int
    refusal: Refusal | None = None
    result: SendResult | None = None
    #: The provider did not answer in time but may have sent it: the code is kept.
    maybe_late: bool = False
    #: The provider fails for every number: answer 503, the same for every number.
    unavailable: bool = False


def check_gate(purpose: str, state: AliSMSState | None = None) -> None:
    """Raise :class:`GateClosed` when the switches do not allow ``purpose`` right now."""
    state = state or get_state()
    values = state.params.values()
    if purpose == "login" and (state.user_adapter is None or not values.enable_mobile_login):
        raise GateClosed("login_disabled")
    if state.user_adapter is None or (
        purpose == "register" and not values.registration_switches_on
    ):
        # Without a user adapter there is nobody to register or reset: closed, not a crash.
        raise GateClosed("registration_disabled")
    if not state.sms_ready():
        raise GateClosed("sms_not_configured")


def auto_register_open(state: AliSMSState) -> bool:
    """Whether sign-in by code creates the account of a number that has none."""
    return state.params.values().auto_register and state.mobile_registration_open()


def _add_log_row(
    state: AliSMSState,
    phone: Phone,
    purpose: str,
    result: SendResult,
    sender: str,
    *,
    category: str | None = None,
    keys: tuple[str, str] | None = None,
) -> None:
    """Add the send-log row to the session's transaction; the caller commits.

    ``keys`` (the number's and the client's digests) mark a send that spent the budgets, so
    they can be rebuilt from the log.

    A log that cannot be written must not fail the request: the error is logged instead.
    """
    session = state.db.session
    row_category = category or (
        "sent" if result.ok else (result.category or Category.UNKNOWN).value
    )
    log = state.models.SendLog
    try:
        connection_for(session, log).execute(
            _insert_of(log.__table__),
            {
                "created_at": utcnow(),  # the column's default, without its per-row call
                "phone_masked": phone.masked,
                "purpose": purpose,
                "sender": sender,
                "ok": result.ok,
                "category": row_category,
                "code": result.code[:100],
                "message": (result.message or "")[:500],
                "request_id": result.request_id,
                "biz_id": result.biz_id,
                "http_status": result.http_status,
                "duration_ms": result.duration_ms,
                "phone_digest": keys[0] if keys else None,
                "client_digest": keys[1] if keys else None,
                **receipt_fields(state, phone, result, sender),
            },
        )
        totals.count_send(
            state,
            purpose=purpose,
            sender=sender,
            category=row_category,
            ok=result.ok,
            code=result.code,
        )
    except Exception as exc:
        session.rollback()
        # The type only: a database error's text lists the statement's parameters.
        logger.error(
            "Could not write the SMS send log for %s: %s", phone.masked, type(exc).__name__
        )


@functools.cache
def _insert_of(table: sa.Table) -> sa.Insert:
    """One INSERT object per table: the statement's cache key is computed once, not per row.

    ``inline()``: the new row's id is never read, so PostgreSQL is not asked for it
    (``RETURNING``, a result set to send, fetch and parse on every send).
    """
    return sa.insert(table).inline()


def _commit_log(state: AliSMSState) -> None:
    """Commit the pending log row, if the code store's commit has not carried it already."""
    session = state.db.session
    if not session().in_transaction():
        return
    try:
        session.commit()
    except Exception as exc:
        session.rollback()
        logger.error("Could not write the SMS send log: %s", type(exc).__name__)


def _record(
    state: AliSMSState,
    phone: Phone,
    purpose: str,
    result: SendResult,
    sender: str,
    *,
    category: str | None = None,
    keep: tuple[str, int, int] | None = None,
    keys: tuple[str, str] | None = None,
) -> None:
    """Log the attempt and, with ``keep`` (digest, ttl, attempts), make that code the live one.

    With the database code store the log row and the code share the store's one commit, so a
    send costs a single transaction. Should keeping the code fail, the log row is written on
    its own (the SMS was sent and billed) and :class:`CodeStoreUnavailable` is raised.
    """
    _add_log_row(state, phone, purpose, result, sender, category=category, keys=keys)
    if keep is not None:
        digest, ttl, attempts = keep
        try:
            state.codes.save(phone.e164, purpose, digest, ttl=ttl, attempts=attempts)
        except Exception as exc:
            state.db.session.rollback()  # what was left of the transaction; the row goes alone
            _add_log_row(state, phone, purpose, result, sender, category=category, keys=keys)
            _commit_log(state)
            # The type only: a database error's text lists the statement's parameters.
            logger.error("Could not keep the code for %s: %s", phone.masked, type(exc).__name__)
            raise CodeStoreUnavailable("the code store did not answer") from exc
    _commit_log(state)
    budget.after_send(state)  # alerts the send made due (only while a budget is set)


def _skip_like_a_send(
    state: AliSMSState,
    phone: Phone,
    purpose: str,
    code_length: int,
    seconds: float,
    keys: tuple[str, str],
    code_ttl: int,
) -> None:
    """Spend a real send's time (``seconds``, drawn from real ones) and writes, sending nothing.

    Used where telling "this number has an account" apart from "it has none" would let anyone
    enumerate users: the caller answers exactly as for a real send.
    """
    started = time.perf_counter()
    state.times.sleep(seconds)
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
    keep = (digest, code_ttl, 1)
    _record(state, phone, purpose, skipped, "none", category="skipped", keep=keep, keys=keys)


def _sends_sms(state: AliSMSState, phone: Phone, purpose: str) -> bool:
    """The account rule: whether ``purpose`` sends a real SMS to this number.

    register sends only to a number without an account, reset only to one with an account,
    login to one with an account or, while accounts are created at sign-in, to any number;
    every other case is answered exactly as if sent (see :func:`_skip_like_a_send`).
    change_phone always sends: the user proves they hold the number before being told it is
    taken, and the signed-in user learns nothing about numbers they do not hold.
    """
    if purpose == "change_phone":
        return True
    has_account = has_user_with_phone(state.users, phone.e164)
    if purpose == "login":
        return has_account or auto_register_open(state)
    return has_account != (purpose == "register")


def _message(state: AliSMSState, phone: Phone, code: str, purpose: str) -> SmsMessage:
    """The code SMS for ``purpose``, on its own template when the admin set one."""
    values = state.params.values()
    return SmsMessage(
        phone=phone.aliyun,
        sign_name=values.sign_name,
        template_code=values.template_for(purpose),
        params={values.template_param_name: code},
    )


def _send_to_test_number(
    state: AliSMSState,
    phone: Phone,
    purpose: str,
    code: str,
    interval: int,
    keys: tuple[str, str],
) -> SendOutcome:
    """A test number's "send": its fixed code becomes the live one, nothing reaches Aliyun.

    The limits were spent as for any number; the log row is marked ``test_number``.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    values = state.params.values()
    sender = state.test_sender
    result = sender.send(_message(state, phone, code, purpose), None)
    digest = state.keyring.code_digest(phone.e164, purpose, code)
    keep = (digest, values.code_ttl, values.max_attempts)
    _record(
        state, phone, purpose, result, sender.name, category="test_number", keep=keep, keys=keys
    )
    signals.test_code_sent.send(app, phone=phone.e164, purpose=purpose)
    return SendOutcome(True, interval, result=result)


def request_code(phone: Phone, purpose: str, client_ip: str) -> SendOutcome:
    """Send a fresh code to ``phone`` for ``purpose`` unless a gate or a limit says no.

    ``client_ip`` is the client as the per-IP limits count it (an IPv6 /64, see
    :func:`flask_alisms.web.http.client_ip`). Raises :class:`GateClosed` (its subclass
    ``BudgetExhausted`` under a budget's hard stop), ``LimiterUnavailable``,
    ``CodeStoreUnavailable`` and, for a database failure before the provider is called, the
    database's error, with no limit spent.
    """
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}")
    state = get_state()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    check_gate(purpose, state)
    budget.enforce(state)  # the same answer for every number: before the account rule
    values = state.params.values()
    interval = values.resend_interval

    # First what may fail without a send (database, limiter), so a failure spends nothing;
    # both paths do all of it, so neither takes longer.
    started = time.perf_counter()
    real = _sends_sms(state, phone, purpose)
    # Finding a user costs more than finding none: the faster path waits the difference.
    pad = state.times.even_out((purpose, real), time.perf_counter() - started)
    if pad > 0:  # before every answer below: 503, 429 or a send
        state.times.sleep(pad)
    log = (state.db.session, state.models.SendLog)
    seconds = state.times.sample(partial(guard.recent_send_times, *log))
    code = generate_code(values.code_length)
    sender = state.sender_for_send()
    message = _message(state, phone, code, purpose)
    credentials = state.credentials()
    sender.prepare(credentials)
    keys = (
        state.keyring.subject_digest("phone", phone.e164),
        state.keyring.subject_digest("client", client_ip),
    )
    # Warm and closed (the usual case): the budgets are spent in the breaker's read.
    taken, refusal = breaker.hit_if_closed(state, keys, purpose)
    health = guard.Health.CLOSED
    if not taken:
        health = breaker.prepare(state)
        if health is guard.Health.OPEN or (
            health is guard.Health.HALF_OPEN and not (real and breaker.take_probe(state))
        ):
            # Only a real send can tell whether the provider is back; a skip cannot, so it
            # keeps the closed answer and a number with an account looks like one without.
            return SendOutcome(False, breaker.cooldown(), unavailable=True)
        refusal = state.throttle.hit_send(keys[0], keys[1], purpose)
    if refusal is not None:
        signals.send_refused.send(app, purpose=purpose, rule=refusal.scope)
        return SendOutcome(False, refusal.retry_after, refusal=refusal)

    if not real:
        _skip_like_a_send(state, phone, purpose, values.code_length, seconds, keys, values.code_ttl)
        logger.info("No code sent to %s for %s (account rule)", phone.masked, purpose)
        return SendOutcome(True, interval)

    # Test numbers (phone.test_numbers): after the limits and the account rule, never Aliyun.
    test_code = values.test_code(phone.e164)
    if test_code is not None:
        return _send_to_test_number(state, phone, purpose, test_code, interval, keys)

    result = sender.send(message, credentials)
    if result.ok or result.maybe_sent:
        if result.ok:
            state.times.add(result.duration_ms)
            if health is not guard.Health.CLOSED:
                breaker.set_health(state, healthy=True)
        else:
            # Aliyun may have sent it: keep the code. But the next users would each wait a
            # read timeout (and a skipped send would not): stop calling it for a while.
            logger.warning(
                "SMS to %s for %s may arrive late (%s); its code stays valid",
                phone.masked,
                purpose,
                result.message,
            )
            breaker.set_health(state, healthy=False)
        digest = state.keyring.code_digest(phone.e164, purpose, code)
        keep = (digest, values.code_ttl, values.max_attempts)
        _record(state, phone, purpose, result, sender.name, keep=keep, keys=keys)
        signals.code_sent.send(app, phone=phone.e164, purpose=purpose, result=result)
        return SendOutcome(True, interval, result=result, maybe_late=not result.ok)

    # The older code (if any) stays as it was; the new one was never stored.
    _record(state, phone, purpose, result, sender.name, keys=keys)
    signals.code_send_failed.send(app, phone=phone.e164, purpose=purpose, result=result)
    if _about_this_number(result):
        # A skipped send of this purpose would have said "sent": so does this one.
        if health is not guard.Health.CLOSED:
            breaker.set_health(state, healthy=True)
        return SendOutcome(True, interval, result=result)
    breaker.set_health(state, healthy=False)
    return SendOutcome(False, breaker.cooldown(), result=result, unavailable=True)


def _about_this_number(result: SendResult) -> bool:
    """A failure that says something about the recipient, not about the provider.

    Keep in step with :func:`.guard.failing_for`, which reads the same from the log.
    """
    return result.category is Category.INVALID_NUMBER or result.code == "isv.BUSINESS_LIMIT_CONTROL"


@dataclass(frozen=True)
class CheckOutcome:
    accepted: bool
    refusal: Refusal | None = None


def check_code(phone: Phone, purpose: str, code: object) -> CheckOutcome:
    """Consume ``code`` if it is the live one; every failure looks the same to the caller."""
    state = get_state()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    refusal = state.throttle.hit_verify(state.keyring.subject_digest("phone", phone.e164))
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
