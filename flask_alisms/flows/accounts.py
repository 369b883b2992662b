"""Registration and password reset by SMS code, through the host's user adapter.

The order matters: gates, then the password rules (a weak password must not burn the code),
then the code, then the account. The session is cleared before the host logs the user in, so a
session fixed by an attacker before registration is worth nothing after it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from blinker import NamedSignal
from flask import current_app, session

from .. import signals
from ..exceptions import AccountError
from ..i18n import gettext as _
from ..phones import Phone
from ..state import get_state
from ..users import SessionEnder
from .verification import check_code, check_gate

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class AccountResult:
    user: Any
    user_id: Any


def password_problem(password: object) -> str | None:
    """The first password rule ``password`` breaks, as a sentence, or None."""
    config = current_app.config
    low, high = config["ALISMS_PASSWORD_MIN_LENGTH"], config["ALISMS_PASSWORD_MAX_LENGTH"]
    if not isinstance(password, str) or not password:
        return _("Enter a password.")
    if len(password) < low:
        return _("Use at least %(count)s characters.", count=low)
    if len(password) > high:
        return _("Use at most %(count)s characters.", count=high)
    if password.isdigit() or password.isalpha():
        return _("Mix letters with digits or symbols.")
    if any(ch < " " or ch == "\x7f" or "\ud800" <= ch <= "\udfff" for ch in password):
        # Control characters and lone surrogates (possible in JSON): a hasher may truncate at
        # a NUL or fail to encode, and that must not happen after the code was spent.
        return _("Use letters, digits, spaces and symbols only.")
    extra = get_state().callbacks.password_validator
    return extra(password) if extra is not None else None


def _verify(phone: Phone, purpose: str, code: object, password: object) -> None:
    problem = password_problem(password)
    if problem is not None:
        raise AccountError("weak_password", problem)
    outcome = check_code(phone, purpose, code)
    if outcome.refusal is not None:
        raise AccountError(
            "too_many_attempts",
            _("Too many attempts for this number. Please try again later."),
            retry_after=outcome.refusal.retry_after,
        )
    if not outcome.accepted:
        raise AccountError(
            "invalid_code", _("The code is wrong or has expired. Request a new code if needed.")
        )


@contextmanager
def _host_step(what: str, phone: Phone, reason: str, message: str) -> Iterator[None]:
    """Turn a failure in the host's user code into a clean AccountError, nothing half-saved."""
    try:
        yield
    except Exception as exc:
        get_state().db.session.rollback()
        # Only the exception's type: a database error's text carries the SQL parameters,
        # here the password hash.
        logger.error("The host's %s failed for %s: %s", what, phone.masked, type(exc).__name__)
        raise AccountError(reason, message) from None


def _signed_in(user: Any, phone: Phone, purpose: str, signal: NamedSignal) -> AccountResult:
    """Log the user in on a fresh session (no fixation) and announce it."""
    users = get_state().users
    user_id = users.get_id(user)
    session.clear()
    users.login(user)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    signal.send(app, phone=phone.e164, purpose=purpose, user_id=user_id)
    return AccountResult(user, user_id)


def register(
    phone: Phone, code: object, password: str, fields: Mapping[str, Any] | None = None
) -> AccountResult:
    """Create the host's user for a verified phone, then log them in as the host does."""
    state = get_state()
    check_gate("register", state)
    _verify(phone, "register", code, password)
    users = state.users
    if users.find_by_phone(phone.e164) is not None:
        raise AccountError(
            "phone_taken", _("This number already has an account. Sign in instead.")
        )
    with _host_step(
        "create_user",
        phone,
        "registration_failed",
        _("Your account could not be created. Please request a new code and try again."),
    ):
        user = users.create_user(
            phone.e164, state.callbacks.hash_password(password), dict(fields or {})
        )
    return _signed_in(user, phone, "register", signals.user_registered)


def reset_password(phone: Phone, code: object, password: str) -> AccountResult:
    """Set a new password for the account of a verified phone."""
    state = get_state()
    check_gate("reset", state)
    _verify(phone, "reset", code, password)
    users = state.users
    user = users.find_by_phone(phone.e164)
    if user is None:
        # Only reachable if the account vanished after the code was sent.
        raise AccountError(
            "invalid_code", _("The code is wrong or has expired. Request a new code if needed.")
        )
    with _host_step(
        "set_password",
        phone,
        "reset_failed",
        _("Your password could not be changed. Please request a new code and try again."),
    ):
        # Sessions first: if setting the password then fails, the user signs in again with
        # the old one, rather than an attacker's session outliving the new one.
        if isinstance(users, SessionEnder):
            users.end_sessions(user)
        users.set_password(user, state.callbacks.hash_password(password))
    return _signed_in(user, phone, "reset", signals.password_reset)
