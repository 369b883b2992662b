"""Per-app state, kept in ``app.extensions["alisms"]`` and reached through ``current_app``.

Everything a flow or a view needs for one app lives here, including the host's callbacks, so
no lower layer ever reaches back to the :class:`~flask_alisms.AliSMS` object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from flask_sqlalchemy import SQLAlchemy
from werkzeug.security import generate_password_hash

from .crypto import Keyring
from .exceptions import ConfigurationError
from .flows.codes import CodeStore
from .flows.guard import SendTimes
from .flows.human import HumanGate
from .flows.throttle import Throttle
from .models import Models
from .parameters import ParameterStore
from .sms import AliyunSender, Credentials, Sender, TestNumberSender
from .users import UserAdapter


@dataclass
class Callbacks:
    """The host's hooks. One object per :class:`~flask_alisms.AliSMS`, shared by every app it
    is registered on, so a decorator used after ``init_app`` still reaches each app's state."""

    admin_loader: Callable[[], str | None] | None = None
    #: Whether somebody is signed in (the panel sends anonymous visitors to the login page);
    #: None asks Flask-Login when the host uses it.
    signed_in_loader: Callable[[], bool] | None = None
    hash_password: Callable[[str], str] = generate_password_hash
    password_validator: Callable[[str], str | None] | None = None
    #: A subclass of :class:`~flask_alisms.web.forms.RegisterForm` with the host's fields.
    register_form: type | None = None
    #: Who is signed in on the host (its user object), or None; phone change needs it.
    current_user_loader: Callable[[], Any] | None = None
    #: Whether the signed-in user signed in recently enough to change their phone.
    recent_sign_in: Callable[[], bool] | None = None

    def current_user(self) -> Any:
        """The host's signed-in user, or None (also when no loader was registered)."""
        return self.current_user_loader() if self.current_user_loader is not None else None

    def signed_in_recently(self) -> bool:
        """The host's recent-sign-in hook; True when the host registered none."""
        return self.recent_sign_in() if self.recent_sign_in is not None else True

    def current_admin(self) -> str | None:
        """The signed-in admin's name for the change log, or None (the panel then refuses)."""
        return self.admin_loader() if self.admin_loader is not None else None

    def signed_in(self) -> bool | None:
        """True or False when the host can tell (its hook, else Flask-Login), None otherwise."""
        if self.signed_in_loader is not None:
            return bool(self.signed_in_loader())
        if getattr(current_app, "login_manager", None) is None:
            return None
        from flask_login import current_user  # only hosts that set up Flask-Login get here

        return bool(current_user.is_authenticated)


@dataclass
class AliSMSState:
    db: SQLAlchemy
    models: Models
    keyring: Keyring
    params: ParameterStore
    sender: Sender
    fallback_sender: Sender | None  # the console sender behind ALISMS_SENDER = "auto"
    codes: CodeStore
    throttle: Throttle
    user_adapter: UserAdapter | None
    callbacks: Callbacks
    #: The human check before send-code (``ALISMS_HUMAN_CHECK``, ``human_check.mode``).
    human: HumanGate
    #: Recent real send times (from the send log), so a skipped send takes as long as one.
    times: SendTimes = field(default_factory=SendTimes)
    #: Where codes for the admin's test numbers go: nowhere.
    test_sender: Sender = field(default_factory=TestNumberSender)
    #: Budget alerts this process knows were fired, (period, start, percent): each is claimed
    #: in the database once; this only saves asking again (see flows.budget.evaluate).
    alerts_fired: set[tuple[str, Any, int]] = field(default_factory=set)

    @property
    def users(self) -> UserAdapter:
        if self.user_adapter is None:
            raise ConfigurationError(
                "Phone registration needs to know the host's users: pass "
                "AliSMS(user_adapter=SQLAlchemyUserAdapter(db, User)) or your own adapter."
            )
        return self.user_adapter

    def credentials(self) -> Credentials | None:
        values = self.params.values()
        if values.access_key_id and values.access_key_secret:
            return Credentials(values.access_key_id, values.access_key_secret)
        return None

    def sender_for_send(self) -> Sender:
        """The configured sender; under "auto", the console one until Aliyun is configured."""
        if self.fallback_sender is not None and not self.params.values().sms_ready:
            return self.fallback_sender
        return self.sender

    def sms_ready(self) -> bool:
        """Whether a code can be sent now: Aliyun needs its parameters, other senders do not."""
        return self.params.values().sms_ready or not isinstance(
            self.sender_for_send(), AliyunSender
        )

    def mobile_registration_open(self) -> bool:
        """The one answer to "is sign-up by phone open": the guide's two switches, a user
        adapter, and a sender able to send."""
        return (
            self.params.values().registration_switches_on
            and self.user_adapter is not None
            and self.sms_ready()
        )

    def mobile_login_open(self) -> bool:
        """Whether the host should offer "sign in by SMS code" right now."""
        return (
            self.params.values().enable_mobile_login
            and self.user_adapter is not None
            and self.sms_ready()
        )


def get_state(app: Any = None) -> AliSMSState:
    """The state of ``app`` (default: the current app); a clear error if AliSMS is not set up."""
    target = app if app is not None else current_app
    try:
        state: AliSMSState = target.extensions["alisms"]
    except KeyError:
        raise RuntimeError(
            "flask-alisms is not initialised on this app: call AliSMS(app, db=db) or "
            "alisms.init_app(app) first."
        ) from None
    return state
