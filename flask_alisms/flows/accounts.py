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

import phonenumbers
from blinker import NamedSignal
from flask import current_app, session

from .. import signals
from ..exceptions import AccountError, InvalidPhone
from ..i18n import gettext as _
from ..phones import Phone, parse_phone
from ..state import get_state
from ..users import SessionEnder
from .messages import send_notice
from .verification import auto_register_open, check_code, check_gate

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class AccountResult:
    user: Any
    user_id: Any


@dataclass(frozen=True)
class LoginResult(AccountResult):
    #: True when this sign-in created the account (``login.auto_register``).
    created: bool = False


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
    _verify_code(phone, purpose, code)


def _verify_code(phone: Phone, purpose: str, code: object) -> None:
    """Consume the code or raise the AccountError the user sees."""
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


# -- sign in by code and phone change ---------------------------------------------------------


def _invalid_code() -> AccountError:
    return AccountError(
        "invalid_code", _("The code is wrong or has expired. Request a new code if needed.")
    )


def login_by_code(phone: Phone, code: object) -> LoginResult:
    """Sign in with a verified phone, no password; create the account when allowed.

    A number without an account never got a real code (the skip path), so the code check
    refuses it exactly as it refuses a wrong code for a number with one.
    """
    state = get_state()
    check_gate("login", state)
    _verify_code(phone, "login", code)
    users = state.users
    user = users.find_by_phone(phone.e164)
    created = False
    if user is None:
        if not auto_register_open(state):
            # Reached only by a test number or an account removed after the code was sent.
            raise _invalid_code()
        with _host_step(
            "create_user",
            phone,
            "registration_failed",
            _("Your account could not be created. Please request a new code and try again."),
        ):
            user = users.create_user(phone.e164, None, {})
        created = True
    user_id = users.get_id(user)
    session.clear()
    users.login(user)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if created:
        signals.user_registered.send(app, phone=phone.e164, purpose="login", user_id=user_id)
    signals.user_signed_in.send(
        app, phone=phone.e164, purpose="login", user_id=user_id, created=created
    )
    return LoginResult(user, user_id, created)


@dataclass(frozen=True)
class PhoneChange:
    user_id: Any
    phone: Phone
    old_phone: str | None


def signed_in_user() -> Any:
    """The host's signed-in user, or an AccountError (401) for the page or API to show."""
    callbacks = get_state().callbacks
    user = callbacks.current_user()
    if user is None:
        raise AccountError("not_signed_in", _("Sign in first to change your phone number."))
    if not callbacks.signed_in_recently():
        raise AccountError(
            "reauthentication_required",
            _("For your safety, sign in again before changing your phone number."),
        )
    return user


def change_phone(user: Any, phone: Phone, code: object) -> PhoneChange:
    """Give ``user`` the verified ``phone``; tell the old number when a notice template is set.

    ``phone_taken`` is told only after the code was verified: nobody learns whether a number
    has an account without holding it.
    """
    state = get_state()
    check_gate("change_phone", state)
    _verify_code(phone, "change_phone", code)
    users = state.users
    owner = users.find_by_phone(phone.e164)
    user_id = users.get_id(user)
    if owner is not None and users.get_id(owner) != user_id:
        raise AccountError("phone_taken", _("This number belongs to another account."))
    phone_of = getattr(users, "phone_of", None)
    old = phone_of(user) if phone_of is not None else None
    with _host_step(
        "set_phone",
        phone,
        "phone_change_failed",
        _("Your number could not be changed. Please request a new code and try again."),
    ):
        users.set_phone(user, phone.e164)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    signals.phone_changed.send(app, phone=phone.e164, old_phone=old, user_id=user_id)
    template = state.params.values().phone_changed_template_code
    if template and old and old != phone.e164:
        try:
            old_phone = parse_phone(old, phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
        except InvalidPhone:
            logger.warning("The old number of user %s is not a phone number", user_id)
        else:
            send_notice(old_phone, template, "phone_changed")
    return PhoneChange(user_id, phone, old)
