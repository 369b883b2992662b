"""Per-app state, kept in ``app.extensions["alisms"]`` and reached through ``current_app``.

Everything a flow or a view needs for one app lives here, including the host's callbacks, so
no lower layer ever reaches back to the :class:`~flask_alisms.AliSMS` object.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from flask_sqlalchemy import SQLAlchemy
from werkzeug.security import generate_password_hash

from .crypto import Keyring
from .exceptions import ConfigurationError
from .flows.codes import CodeStore
from .flows.human import HumanGate
from .flows.throttle import Throttle
from .models import Models
from .parameters import ParameterStore
from .sms import AliyunSender, Credentials, Sender
from .users import UserAdapter


@dataclass
class Callbacks:
    """The host's hooks. One object per :class:`~flask_alisms.AliSMS`, shared by every app it
    is registered on, so a decorator used after ``init_app`` still reaches each app's state."""

    admin_loader: Callable[[], str | None] | None = None
    hash_password: Callable[[str], str] = generate_password_hash
    password_validator: Callable[[str], str | None] | None = None
    #: A subclass of :class:`~flask_alisms.web.forms.RegisterForm` with the host's fields.
    register_form: type | None = None

    def current_admin(self) -> str | None:
        """The signed-in admin's name for the change log, or None (the panel then refuses)."""
        return self.admin_loader() if self.admin_loader is not None else None


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
    #: Moving average of real send times, so a skipped send can take as long as a real one.
    typical_send_seconds: float = 0.05
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

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

    def note_send_time(self, seconds: float) -> None:
        with self._lock:
            self.typical_send_seconds = 0.8 * self.typical_send_seconds + 0.2 * seconds


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
