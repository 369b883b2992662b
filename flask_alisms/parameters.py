"""The parameter store: what an admin sets at run time, typed, validated, cached and audited.

Every key is declared once in :data:`PARAMETERS`; the panel, the CLI and the code that reads a
value all go through that registry. Values come, strongest first, from ``ALISMS_PARAMS`` in the
app config, the database, ``ALISMS_PARAM_DEFAULTS``, and the registry default.

Each process keeps the values in memory and re-reads them when they are older than
``ALISMS_PARAMS_CACHE_SECONDS``: a change made by another process (another worker, the CLI) is
seen within that many seconds, and a change made by this process at once.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import phonenumbers
import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy

from .crypto import DecryptionError, Keyring
from .exceptions import ConfigurationError, InvalidParameter
from .i18n import gettext as _
from .i18n import lazy_gettext as _l
from .models import Models, transaction, utcnow

logger = logging.getLogger(__name__)

SIGN_NAME = "aliyun.sms.sign_name"
TEMPLATE_CODE = "aliyun.sms.sms_code_template_code"
ACCESS_KEY_ID = "aliyun.sms.access_key_id"
ACCESS_KEY_SECRET = "aliyun.sms.access_key_secret"  # noqa: S105 - a key name, not a secret
ALLOW_REGISTER = "server.allow_user_register"
ENABLE_MOBILE_REGISTER = "server.enable_mobile_register"



def _parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(_("must be true or false"))


def _parse_country_codes(value: object) -> tuple[int, ...]:
    items: Iterable[object]
    if isinstance(value, str):
        items = [part for part in re.split(r"[\s,]+", value) if part]
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise ValueError(
            _("must be a comma-separated list of country calling codes, e.g. 86,852")
        )
    codes: list[int] = []
    for item in items:
        text = str(item).strip().lstrip("+")
        # isascii: "²" is a digit to str.isdigit() but not to int().
        digits = text.isascii() and text.isdigit()
        if not digits or int(text) not in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            raise ValueError(
                _(
                    "%(item)s is not a country calling code (86 is mainland China)", item=item
                )
            )
        if int(text) not in codes:
            codes.append(int(text))
    if not codes:
        raise ValueError(_("needs at least one country calling code, e.g. 86"))
    return tuple(codes)


@dataclass(frozen=True)
class Parameter:
    """How one key is typed, shown and checked."""

    key: str
    kind: str  # "str", "int", "bool" or "codes"
    default: Any
    group: str
    label: str
    help: str
    secret: bool = False
    masked: bool = False
    required_for_sms: bool = False
    pattern: str | None = None
    pattern_hint: str = ""
    minimum: int | None = None
    maximum: int | None = None
    max_length: int = 200

    @property
    def attr(self) -> str:
        """The attribute of :class:`Values` that holds this parameter's typed value."""
        return self.key.rsplit(".", 1)[-1]

    def parse(self, value: object) -> Any:
        """The typed value for ``value`` (text from a form or CLI, or a typed config value)."""
        try:
            return self._parse(value)
        except ValueError as exc:
            raise InvalidParameter(self.key, str(exc)) from None

    def _parse(self, value: object) -> Any:
        if self.kind == "bool":
            return _parse_bool(value)
        if self.kind == "codes":
            return _parse_country_codes(value)
        if self.kind == "int":
            if isinstance(value, bool):
                raise ValueError(_("must be a whole number"))
            try:
                number = int(str(value).strip())
            except ValueError:
                raise ValueError(_("must be a whole number")) from None
            if self.minimum is not None and number < self.minimum:
                raise ValueError(_("must be at least %(number)s", number=self.minimum))
            if self.maximum is not None and number > self.maximum:
                raise ValueError(_("must be at most %(number)s", number=self.maximum))
            return number
        if not isinstance(value, str):
            raise ValueError(_("must be text"))
        text = value if self.secret else value.strip()
        if len(text) > self.max_length:
            raise ValueError(
                _("must be at most %(count)s characters", count=self.max_length)
            )
        if any(ch in text for ch in "\r\n\t\x00"):
            raise ValueError(_("must be one line without control characters"))
        if text and self.pattern and not re.fullmatch(self.pattern, text):
            raise ValueError(str(self.pattern_hint) or _("has the wrong format"))
        return text

    def dump(self, value: Any) -> str:
        """Canonical text for storage and display."""
        if self.kind == "bool":
            return "true" if value else "false"
        if self.kind == "codes":
            return ",".join(str(code) for code in value)
        return str(value)

    def display(self, value: Any) -> str:
        """What a page or the CLI may show: never a secret, the AccessKey ID only in part."""
        if self.kind == "str" and not value:
            return ""
        if self.secret:
            return "•••••••• (set)"
        if self.masked:
            text = str(value)
            return f"{text[:4]}****{text[-4:]}" if len(text) > 8 else "****"
        return self.dump(value)


GROUPS: dict[str, str] = {
    "signature": _l("Signature"),
    "template": _l("Template"),
    "accesskey": _l("AccessKey"),
    "registration": _l("Registration switches"),
    "codes": _l("Verification codes"),
    "limits": _l("Send limits"),
    "phones": _l("Phone numbers"),
}

PARAMETERS: dict[str, Parameter] = {
    p.key: p
    for p in (
        Parameter(
            SIGN_NAME,
            "str",
            "",
            "signature",
            _l("Signature name"),
            _l("The approved SMS signature (签名名称) exactly as the SMS console lists it."),
            required_for_sms=True,
            max_length=64,
        ),
        Parameter(
            TEMPLATE_CODE,
            "str",
            "",
            "template",
            _l("Verification code template"),
            _l("The approved verification-code template's code (模版CODE), e.g. SMS_154950909."),
            required_for_sms=True,
            pattern=r"SMS_\d{3,20}",
            pattern_hint=_l("must look like SMS_154950909"),
        ),
        Parameter(
            "aliyun.sms.template_param_name",
            "str",
            "code",
            "template",
            _l("Template variable"),
            _l("The template's variable that receives the code, without ${}: usually code."),
            pattern=r"[A-Za-z_][A-Za-z0-9_]{0,31}",
            pattern_hint=_l("must be a variable name such as code"),
        ),
        Parameter(
            ACCESS_KEY_ID,
            "str",
            "",
            "accesskey",
            _l("AccessKey ID"),
            _l("A RAM user's AccessKey ID; the user needs the AliyunDysmsFullAccess policy."),
            masked=True,
            required_for_sms=True,
            pattern=r"[A-Za-z0-9]{4,128}",
            pattern_hint=_l("must be letters and digits only, as the RAM console shows it"),
        ),
        Parameter(
            ACCESS_KEY_SECRET,
            "str",
            "",
            "accesskey",
            _l("AccessKey secret"),
            _l("Shown once when the AccessKey is created. Stored encrypted; never shown again."),
            secret=True,
            required_for_sms=True,
            pattern=r"[A-Za-z0-9+/=_\-]{4,128}",
            pattern_hint=_l("must be the secret exactly as the RAM console showed it, no spaces"),
        ),
        Parameter(
            ALLOW_REGISTER,
            "bool",
            False,
            "registration",
            _l("Allow user registration"),
            _l("Master switch for new accounts (true or false)."),
        ),
        Parameter(
            ENABLE_MOBILE_REGISTER,
            "bool",
            False,
            "registration",
            _l("Enable mobile registration"),
            _l(
                "Sign-up by phone with an SMS code; needs every Aliyun parameter above "
                "(true/false)."
            ),
        ),
        Parameter(
            "sms.code_length",
            "int",
            6,
            "codes",
            _l("Code length"),
            _l("Digits in a code; Aliyun's code templates take 4 to 8."),
            minimum=4,
            maximum=8,
        ),
        Parameter(
            "sms.code_ttl",
            "int",
            300,
            "codes",
            _l("Code lifetime (seconds)"),
            _l("How long a code can be used after it was sent."),
            minimum=60,
            maximum=600,
        ),
        Parameter(
            "sms.max_attempts",
            "int",
            5,
            "codes",
            _l("Wrong tries per code"),
            _l("After this many wrong tries the code is burnt and a new one is needed."),
            minimum=1,
            maximum=10,
        ),
        Parameter(
            "limits.resend_interval",
            "int",
            60,
            "limits",
            _l("Resend interval (seconds)"),
            _l("Minimum wait between two codes to one number (Aliyun allows 1 per minute)."),
            minimum=30,
            maximum=3600,
        ),
        Parameter(
            "limits.phone_per_hour",
            "int",
            5,
            "limits",
            _l("Codes per number per hour"),
            _l("Aliyun's own default is 5; keep this at or below it."),
            minimum=1,
            maximum=100,
        ),
        Parameter(
            "limits.phone_per_day",
            "int",
            10,
            "limits",
            _l("Codes per number per day"),
            _l("Aliyun's own default is 10; keep this at or below it."),
            minimum=1,
            maximum=1000,
        ),
        Parameter(
            "limits.ip_per_hour",
            "int",
            20,
            "limits",
            _l("Codes per client IP per hour"),
            _l("Stops one client from spraying codes at many numbers."),
            minimum=1,
            maximum=100000,
        ),
        Parameter(
            "limits.global_per_day",
            "int",
            1000,
            "limits",
            _l("Daily budget (all numbers)"),
            _l("Total codes per day for the whole site: a ceiling on the SMS bill."),
            minimum=1,
            maximum=10000000,
        ),
        Parameter(
            "limits.verify_per_hour",
            "int",
            20,
            "limits",
            _l("Code checks per number per hour"),
            _l("Bounds guessing across several codes."),
            minimum=1,
            maximum=1000,
        ),
        Parameter(
            "phone.allowed_country_codes",
            "codes",
            (86,),
            "phones",
            _l("Allowed country codes"),
            _l("Comma-separated calling codes users may register with; 86 is mainland China."),
        ),
    )
}

REQUIRED_FOR_SMS = tuple(p.key for p in PARAMETERS.values() if p.required_for_sms)


@dataclass(frozen=True)
class Values:
    """Every parameter's current typed value, as one immutable snapshot.

    Code reads ``params.values().code_length`` (an ``int``), never a key string: a typo is an
    attribute error that mypy sees, and one request sees one consistent set of values.
    """

    sign_name: str
    sms_code_template_code: str
    template_param_name: str
    access_key_id: str
    access_key_secret: str = field(repr=False)
    allow_user_register: bool
    enable_mobile_register: bool
    code_length: int
    code_ttl: int
    max_attempts: int
    resend_interval: int
    phone_per_hour: int
    phone_per_day: int
    ip_per_hour: int
    global_per_day: int
    verify_per_hour: int
    allowed_country_codes: tuple[int, ...]

    @property
    def sms_ready(self) -> bool:
        """Every Aliyun parameter a send needs is filled in."""
        return all(getattr(self, PARAMETERS[key].attr) for key in REQUIRED_FOR_SMS)

    @property
    def registration_switches_on(self) -> bool:
        """Both of the guide's switches: ``server.allow_user_register`` and
        ``server.enable_mobile_register``."""
        return self.allow_user_register and self.enable_mobile_register


def parameter(key: str) -> Parameter:
    try:
        return PARAMETERS[key]
    except KeyError:
        raise InvalidParameter(
            key, _("unknown parameter; `flask alisms params show` lists them")
        ) from None


@dataclass(frozen=True)
class ParameterRow:
    """One parameter as the panel and the CLI show it."""

    parameter: Parameter
    value: Any
    shown: str
    source: str  # "config", "database", "config default" or "default"

    @property
    def is_set(self) -> bool:
        return self.value not in ("", None)

    @property
    def locked(self) -> bool:
        return self.source == "config"


@dataclass(frozen=True)
class _Snapshot:
    values: dict[str, Any]
    sources: dict[str, str]
    loaded_at: float
    typed: Values


class ParameterStore:
    """Reads and writes parameters on the host's database through its ``db`` session."""

    def __init__(
        self,
        *,
        db: SQLAlchemy,
        models: Models,
        keyring: Keyring,
        overrides: Mapping[str, Any],
        defaults: Mapping[str, Any],
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._models = models
        self._keyring = keyring
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._overrides = self._validated(overrides, "ALISMS_PARAMS")
        self._defaults = self._validated(defaults, "ALISMS_PARAM_DEFAULTS")

    @staticmethod
    def _validated(values: Mapping[str, Any], config_key: str) -> dict[str, Any]:
        checked = {}
        for key, value in values.items():
            try:
                checked[key] = parameter(key).parse(value)
            except InvalidParameter as exc:
                raise ConfigurationError(f"{config_key}[{key!r}] {exc.message}.") from None
        return checked

    # -- reading -----------------------------------------------------------------------------

    def _load(self) -> _Snapshot:
        model = self._models.Parameter
        # Its own short connection: the host's session may hold a transaction whose snapshot
        # (REPEATABLE READ on MariaDB) would hide another process's change.
        with self._db.engine.connect() as connection:
            stored: dict[str, str] = dict(
                connection.execute(sa.select(model.key, model.value)).all()
            )
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for key, param in PARAMETERS.items():
            if key in self._overrides:
                values[key], sources[key] = self._overrides[key], "config"
                continue
            if key in stored:
                try:
                    text = self._keyring.decrypt(stored[key]) if param.secret else stored[key]
                    values[key], sources[key] = param.parse(text), "database"
                    continue
                except (DecryptionError, InvalidParameter) as exc:
                    message = exc.message if isinstance(exc, InvalidParameter) else str(exc)
                    logger.error("Ignoring stored parameter %s: %s", key, message)
            if key in self._defaults:
                values[key], sources[key] = self._defaults[key], "config default"
            else:
                values[key], sources[key] = param.default, "default"
        typed = Values(**{PARAMETERS[key].attr: value for key, value in values.items()})
        return _Snapshot(values, sources, self._clock(), typed)

    def _current(self) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is not None and self._clock() - snapshot.loaded_at < self._max_age:
            return snapshot
        with self._lock:
            snapshot = self._snapshot
            if snapshot is None or self._clock() - snapshot.loaded_at >= self._max_age:
                snapshot = self._snapshot = self._load()
        return snapshot

    def invalidate(self) -> None:
        """Forget the cached values; the next read goes to the database."""
        self._snapshot = None

    def values(self) -> Values:
        """The current typed values (cached; see the module docstring)."""
        return self._current().typed

    def get(self, key: str) -> Any:
        """One value by key, for the panel and the CLI; code reads :meth:`values` instead."""
        parameter(key)
        return self._current().values[key]

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def rows(self) -> list[ParameterRow]:
        snapshot = self._current()
        return [
            ParameterRow(
                param,
                snapshot.values[key],
                param.display(snapshot.values[key]),
                snapshot.sources[key],
            )
            for key, param in PARAMETERS.items()
        ]

    def missing(self) -> list[Parameter]:
        """Required Aliyun parameters that are still empty."""
        values = self._current().values
        return [PARAMETERS[key] for key in REQUIRED_FOR_SMS if not values[key]]

    def sms_ready(self) -> bool:
        return not self.missing()

    # -- writing -----------------------------------------------------------------------------

    def update(self, changes: Mapping[str, Any], *, actor: str | None) -> list[str]:
        """Validate and save several values at once; all or nothing.

        A value of ``None`` (or empty text for a text key) removes the database value. Returns
        the keys that really changed. Raises :class:`InvalidParameter` for the first bad key.
        """
        parsed: dict[str, Any] = {}
        for key, value in changes.items():
            param = parameter(key)
            if key in self._overrides:
                raise InvalidParameter(
                    key, _("is fixed by ALISMS_PARAMS in the app config; change it there")
                )
            parsed[key] = None if value is None or value == "" else param.parse(value)

        current = self._load()
        future = dict(current.values)
        for key, value in parsed.items():
            if value is not None:
                future[key] = value
            elif key in self._defaults:
                future[key] = self._defaults[key]
            else:
                future[key] = PARAMETERS[key].default
        if future[ENABLE_MOBILE_REGISTER] and not current.values[ENABLE_MOBILE_REGISTER]:
            missing = [key for key in REQUIRED_FOR_SMS if not future[key]]
            if missing:
                raise InvalidParameter(
                    ENABLE_MOBILE_REGISTER,
                    _(
                        "cannot be switched on while these are empty: %(keys)s",
                        keys=", ".join(missing),
                    ),
                )

        model, change = self._models.Parameter, self._models.ParameterChange
        session = self._db.session
        changed: list[str] = []
        try:
            with transaction(session):
                for key, value in parsed.items():
                    param = PARAMETERS[key]
                    row = session.get(model, key)
                    if value is None:
                        if row is None:
                            continue
                        session.delete(row)
                        action, logged = "unset", None
                    else:
                        text = param.dump(value)
                        if row is not None and not param.secret and row.value == text:
                            continue
                        stored = self._keyring.encrypt(text) if param.secret else text
                        if row is None:
                            session.add(model(key=key, value=stored, updated_by=actor))
                        else:
                            row.value, row.updated_by, row.updated_at = stored, actor, utcnow()
                        action, logged = "set", None if param.secret or param.masked else text
                    session.add(change(key=key, action=action, value=logged, actor=actor))
                    changed.append(key)
        finally:
            self.invalidate()
        for key in changed:
            logger.info("Parameter %s changed by %s", key, actor or "unknown")
        return changed

    def recent_changes(self, limit: int = 20) -> list[Any]:
        change = self._models.ParameterChange
        query = sa.select(change).order_by(change.changed_at.desc(), change.id.desc())
        return list(self._db.session.scalars(query.limit(limit)))

    def rotate_encryption(self) -> int:
        """Re-encrypt every secret value under the current key; returns how many."""
        model = self._models.Parameter
        secret_keys = [key for key, param in PARAMETERS.items() if param.secret]
        session = self._db.session
        rows = session.scalars(sa.select(model).where(model.key.in_(secret_keys))).all()
        try:
            with transaction(session):
                for row in rows:
                    row.value = self._keyring.rotate(row.value)
        finally:
            self.invalidate()
        return len(rows)
