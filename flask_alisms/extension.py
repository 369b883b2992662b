"""The :class:`AliSMS` extension object: options, callbacks and the wiring done by ``init_app``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask
from flask_limiter import Limiter
from flask_sqlalchemy import SQLAlchemy
from werkzeug.security import generate_password_hash

from . import config as alisms_config
from .codes import create_code_store
from .crypto import Keyring
from .errors import ConfigurationError
from .limits import Throttle, create_limiter
from .models import build_models
from .sender import Sender, create_sender
from .settings import ParameterStore
from .state import AliSMSState, get_state
from .users import UserAdapter

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


class AliSMS:
    """Phone sign-up with Alibaba Cloud SMS codes for one or more Flask apps.

    ``db`` is the host's Flask-SQLAlchemy object; the extension adds its tables to it and never
    creates a user table. ``user_adapter`` says how users are found and created; ``limiter`` is
    an optional Flask-Limiter whose storage the send limits share; ``register_form`` may be a
    subclass of :class:`~flask_alisms.forms.RegisterForm` with the host's extra fields.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        db: SQLAlchemy,
        user_adapter: UserAdapter | None = None,
        limiter: Limiter | None = None,
        sender: Sender | None = None,
        password_hasher: Callable[[str], str] = generate_password_hash,
        password_validator: Callable[[str], str | None] | None = None,
        register_form: type | None = None,
    ) -> None:
        if not isinstance(db, SQLAlchemy):
            raise TypeError("AliSMS(db=...) needs the app's flask_sqlalchemy.SQLAlchemy object.")
        self.db = db
        self.user_adapter = user_adapter
        self.limiter = limiter
        self.sender = sender
        self.hash_password = password_hasher
        self.password_validator = password_validator
        self.register_form = register_form
        self._admin_loader: Callable[[], str | None] | None = None
        if app is not None:
            self.init_app(app)

    def admin_loader(self, callback: F) -> F:
        """Register the callback that names the current admin, or returns None for non-admins.

        Without one the panel refuses everybody. The name is what the change log records::

            @alisms.admin_loader
            def load_admin():
                return current_user.email if current_user.is_admin else None
        """
        self._admin_loader = callback
        return callback

    def current_admin(self) -> str | None:
        return self._admin_loader() if self._admin_loader is not None else None

    def init_app(self, app: Flask) -> None:
        if "alisms" in app.extensions:
            raise RuntimeError(
                "AliSMS is already registered on this app; create one AliSMS object and call "
                "init_app once per app."
            )
        if "sqlalchemy" not in app.extensions:
            raise ConfigurationError(
                "Call db.init_app(app) (Flask-SQLAlchemy) before initialising AliSMS."
            )
        alisms_config.apply_defaults(app.config)
        alisms_config.validate(app.config)
        cfg = app.config

        models = build_models(self.db)
        keyring = Keyring(
            cfg["ALISMS_ENCRYPTION_KEY"] or cfg["SECRET_KEY"],
            cfg["ALISMS_ENCRYPTION_KEY_FALLBACKS"],
        )
        params = ParameterStore(
            db=self.db,
            models=models,
            keyring=keyring,
            overrides=cfg["ALISMS_PARAMS"],
            defaults=cfg["ALISMS_PARAM_DEFAULTS"],
            max_age=float(cfg["ALISMS_PARAMS_CACHE_SECONDS"]),
        )
        sender, fallback = self._make_senders(app)

        limiter = self.limiter
        storage_uri = cfg["ALISMS_LIMITER_STORAGE_URI"]
        if limiter is None or storage_uri:
            limiter = create_limiter(storage_uri or "memory://")
            limiter.init_app(app)
        elif not getattr(limiter, "initialized", False):
            raise ConfigurationError(
                "Pass a Limiter that is already initialised on this app (limiter.init_app(app) "
                "before AliSMS), or set ALISMS_LIMITER_STORAGE_URI."
            )

        app.extensions["alisms"] = AliSMSState(
            extension=self,
            db=self.db,
            models=models,
            keyring=keyring,
            params=params,
            sender=sender,
            fallback_sender=fallback,
            codes=create_code_store(cfg["ALISMS_CODE_STORAGE"], self.db, models),
            limiter=limiter,
            throttle=Throttle(limiter, params, fail_open=bool(cfg["ALISMS_LIMITS_FAIL_OPEN"])),
            user_adapter=self.user_adapter,
        )

        if self.user_adapter is None:
            logger.warning(
                "AliSMS has no user_adapter: phone registration and reset stay closed. Pass "
                "AliSMS(user_adapter=SQLAlchemyUserAdapter(db, User)) to open them."
            )

        from .cli import alisms_cli
        from .views import create_blueprint

        app.register_blueprint(create_blueprint(app), url_prefix=cfg["ALISMS_URL_PREFIX"])
        app.cli.add_command(alisms_cli)
        app.context_processor(self._template_globals)

    def _make_senders(self, app: Flask) -> tuple[Sender, Sender | None]:
        if self.sender is not None:
            return self.sender, None
        cfg = app.config
        name = cfg["ALISMS_SENDER"]
        options = {
            "endpoint": cfg["ALISMS_ENDPOINT"],
            "region_id": cfg["ALISMS_REGION_ID"],
            "connect_timeout": float(cfg["ALISMS_CONNECT_TIMEOUT"]),
            "read_timeout": float(cfg["ALISMS_READ_TIMEOUT"]),
            "reveal_codes": bool(app.debug),
        }
        if name == "auto":
            return create_sender("aliyun", **options), create_sender("console", **options)
        if name in ("console", "memory") and not (app.debug or app.testing):
            logger.warning("ALISMS_SENDER=%r sends no real SMS; use it only in development.", name)
        return create_sender(name, **options), None

    def _template_globals(self) -> dict[str, Any]:
        return {"alisms_mobile_registration_open": self.mobile_registration_open}

    # -- the programmatic interface, always for the current app ---------------------------------

    @property
    def params(self) -> ParameterStore:
        """The current app's parameter store (``alisms.params.get("sms.code_ttl")``)."""
        return get_state().params

    def mobile_registration_open(self) -> bool:
        """Whether the host should offer "register by phone" right now (for login pages)."""
        return get_state().mobile_registration_open()
