"""The :class:`AliSMS` extension object: options, callbacks and the wiring done by ``init_app``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from limits.errors import ConfigurationError as LimitsConfigurationError
from limits.storage import MemoryStorage, Storage, storage_from_string
from werkzeug.security import generate_password_hash

from . import config as alisms_config
from .crypto import Keyring
from .exceptions import ConfigurationError
from .flows.codes import create_code_store
from .flows.human import HumanGate, create_human_check
from .flows.throttle import Throttle
from .flows.windows import MemoryWindows
from .models import build_models
from .parameters import ParameterStore
from .sms import Sender, create_sender
from .state import AliSMSState, Callbacks, get_state
from .users import UserAdapter

if TYPE_CHECKING:  # only the host imports Flask-Limiter; the limits need just its storage
    from flask_limiter import Limiter

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


class AliSMS:
    """Phone sign-up with Alibaba Cloud SMS codes for one or more Flask apps.

    ``db`` is the host's Flask-SQLAlchemy object; the extension adds its tables to it and never
    creates a user table. ``user_adapter`` says how users are found and created; ``limiter`` is
    an optional Flask-Limiter whose storage the send limits share (the extension never hooks
    the host's requests itself); ``register_form`` may be a subclass of
    :class:`~flask_alisms.web.forms.RegisterForm` with the host's extra fields.

    The object keeps only options and callbacks; everything that belongs to one app lives in
    ``app.extensions["alisms"]`` (:class:`~flask_alisms.state.AliSMSState`).
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
        self.callbacks = Callbacks(
            hash_password=password_hasher,
            password_validator=password_validator,
            register_form=register_form,
        )
        if app is not None:
            self.init_app(app)

    def admin_loader(self, callback: F) -> F:
        """Register the callback that names the current admin, or returns None for non-admins.

        Without one the panel refuses everybody. The name is what the change log records::

            @alisms.admin_loader
            def load_admin():
                return current_user.email if current_user.is_admin else None
        """
        self.callbacks.admin_loader = callback
        return callback

    def signed_in_loader(self, callback: F) -> F:
        """Register the callback that says whether anybody is signed in.

        Only needed without Flask-Login (whose ``current_user`` is asked otherwise): the panel
        sends anonymous visitors to ``ALISMS_LOGIN_VIEW`` and answers 403 to signed-in users
        who are not admins.
        """
        self.callbacks.signed_in_loader = callback
        return callback

    def current_user_loader(self, callback: F) -> F:
        """Register the callback that returns the host's signed-in user, or None.

        Phone change (``{prefix}/account/phone`` and its API) answers 401 without one::

            @alisms.current_user_loader
            def load_user():
                return current_user if current_user.is_authenticated else None
        """
        self.callbacks.current_user_loader = callback
        return callback

    def recent_sign_in_check(self, callback: F) -> F:
        """Register a check that the user signed in recently enough to change their phone.

        Optional; when it returns False the phone change answers 401
        ``reauthentication_required``::

            @alisms.recent_sign_in_check
            def signed_in_recently():
                return time.time() - session.get("signed_in_at", 0) < 600
        """
        self.callbacks.recent_sign_in = callback
        return callback

    def current_admin(self) -> str | None:
        """The current app's admin name, or None (see :meth:`admin_loader`)."""
        return get_state().callbacks.current_admin()

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

        storage, enabled = self._limit_storage(app)
        throttle = Throttle(
            storage, params, fail_open=bool(cfg["ALISMS_LIMITS_FAIL_OPEN"]), enabled=enabled
        )
        human = HumanGate(
            create_human_check(cfg), params, throttle, ttl=int(cfg["ALISMS_HUMAN_CHECK_TTL"])
        )
        app.extensions["alisms"] = AliSMSState(
            db=self.db,
            models=models,
            keyring=keyring,
            params=params,
            sender=sender,
            fallback_sender=fallback,
            codes=create_code_store(cfg["ALISMS_CODE_STORAGE"], self.db, models),
            throttle=throttle,
            user_adapter=self.user_adapter,
            callbacks=self.callbacks,
            human=human,
        )

        if self.user_adapter is None:
            logger.warning(
                "AliSMS has no user_adapter: phone registration and reset stay closed. Pass "
                "AliSMS(user_adapter=SQLAlchemyUserAdapter(db, User)) to open them."
            )

        from .cli import alisms_cli
        from .web import create_blueprint

        app.register_blueprint(create_blueprint(app), url_prefix=cfg["ALISMS_URL_PREFIX"])
        app.cli.add_command(alisms_cli)
        app.context_processor(self._template_globals)
        if cfg["ALISMS_METRICS"]:
            from .metrics import install

            install(app)

    def _limit_storage(self, app: Flask) -> tuple[Storage | MemoryWindows, Callable[[], bool]]:
        """The storage for the send limits, and whether limits are on.

        No Limiter is created or initialised here: a Limiter hooks every request of the app,
        and the limits are needed by two views only. The storage comes from
        ``ALISMS_LIMITER_STORAGE_URI``, else from the host's Limiter, else ``memory://``. A host
        Limiter also lends its ``RATELIMIT_ENABLED`` switch, so turning the host's limits off
        (as test suites do) turns these off too; without one the limits are always on.

        ``memory://`` (named, or the host Limiter's) becomes the extension's own bounded
        :class:`MemoryWindows`: a process's memory is not shared with anyone anyway, and
        ``limits``' MemoryStorage walks all its keys after every operation.
        """
        storage_uri = app.config["ALISMS_LIMITER_STORAGE_URI"]
        max_keys = int(app.config["ALISMS_LIMITS_MEMORY_MAX_KEYS"])
        limiter = self.limiter
        enabled: Callable[[], bool] = (
            (lambda: True) if limiter is None else (lambda: bool(limiter.enabled))
        )
        if storage_uri or limiter is None or not limiter.enabled:
            # A disabled Limiter skips init_app and has no storage: nothing to share, and
            # nothing to count until the host turns it on.
            return _storage_from_uri(storage_uri or "memory://", max_keys), enabled
        if not getattr(limiter, "initialized", False):
            raise ConfigurationError(
                "Pass a Limiter that is already initialised on this app (limiter.init_app(app) "
                "before AliSMS), or set ALISMS_LIMITER_STORAGE_URI."
            )
        if isinstance(limiter.storage, MemoryStorage):
            return MemoryWindows(max_keys=max_keys), enabled
        return limiter.storage, enabled

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
        return {
            "alisms_mobile_registration_open": self.mobile_registration_open,
            "alisms_mobile_login_open": self.mobile_login_open,
        }

    # -- the programmatic interface, always for the current app ---------------------------------

    @property
    def params(self) -> ParameterStore:
        """The current app's parameter store (``alisms.params.values().code_ttl``)."""
        return get_state().params

    def mobile_registration_open(self) -> bool:
        """Whether the host should offer "register by phone" right now (for login pages)."""
        return get_state().mobile_registration_open()

    def mobile_login_open(self) -> bool:
        """Whether the host should offer "sign in by SMS code" right now (for login pages)."""
        return get_state().mobile_login_open()


def _storage_from_uri(uri: str, max_keys: int) -> Storage | MemoryWindows:
    """A synchronous ``limits`` storage, or a ConfigurationError naming the setting."""
    if uri.split("://", 1)[0] == "memory":
        return MemoryWindows(max_keys=max_keys)
    try:
        storage = storage_from_string(uri)
    except LimitsConfigurationError as exc:
        raise ConfigurationError(f"ALISMS_LIMITER_STORAGE_URI={uri!r}: {exc}") from exc
    if not isinstance(storage, Storage):
        raise ConfigurationError(
            "ALISMS_LIMITER_STORAGE_URI must name a synchronous storage such as "
            f"redis:// or memory://, not {uri!r}."
        )
    return storage
