"""Per-app state, kept in ``app.extensions["alisms"]`` and reached through ``current_app``."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import current_app
from flask_limiter import Limiter
from flask_sqlalchemy import SQLAlchemy

from .codes import CodeStore
from .crypto import Keyring
from .errors import ConfigurationError
from .limits import Throttle
from .models import Models
from .sender import AliyunSender, Credentials, Sender
from .settings import (
    ACCESS_KEY_ID,
    ACCESS_KEY_SECRET,
    ALLOW_REGISTER,
    ENABLE_MOBILE_REGISTER,
    ParameterStore,
)
from .users import UserAdapter

if TYPE_CHECKING:
    from .extension import AliSMS


@dataclass
class AliSMSState:
    extension: AliSMS
    db: SQLAlchemy
    models: Models
    keyring: Keyring
    params: ParameterStore
    sender: Sender
    fallback_sender: Sender | None  # the console sender behind ALISMS_SENDER = "auto"
    codes: CodeStore
    limiter: Limiter
    throttle: Throttle
    user_adapter: UserAdapter | None
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
        key_id, secret = self.params.get(ACCESS_KEY_ID), self.params.get(ACCESS_KEY_SECRET)
        return Credentials(key_id, secret) if key_id and secret else None

    def sender_for_send(self) -> Sender:
        """The configured sender; under "auto", the console one until Aliyun is configured."""
        if self.fallback_sender is not None and not self.params.sms_ready():
            return self.fallback_sender
        return self.sender

    def sms_ready(self) -> bool:
        """Whether a code can be sent now: Aliyun needs its parameters, other senders do not."""
        return self.params.sms_ready() or not isinstance(self.sender_for_send(), AliyunSender)

    def mobile_registration_open(self) -> bool:
        """The guide's switches both on, and a sender able to send."""
        params = self.params
        switches = bool(params.get(ALLOW_REGISTER) and params.get(ENABLE_MOBILE_REGISTER))
        return switches and self.user_adapter is not None and self.sms_ready()

    def note_send_time(self, seconds: float) -> None:
        with self._lock:
            self.typical_send_seconds = 0.8 * self.typical_send_seconds + 0.2 * seconds


def get_state(app: Any = None) -> AliSMSState:
    """The state of ``app`` (default: the current app); a clear error if AliSMS is not set up."""
    target = app if app is not None else current_app
    try:
        return target.extensions["alisms"]
    except KeyError:
        raise RuntimeError(
            "flask-alisms is not initialised on this app: call AliSMS(app, db=db) or "
            "alisms.init_app(app) first."
        ) from None
