"""The parameter registry: every key an admin can set, declared once, typed and checked.

The panel, the CLI and the code all go through :data:`PARAMETERS`; code reads the typed
:class:`Values` snapshot instead of key strings.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import phonenumbers

from ..exceptions import InvalidParameter
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l

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
    "human_check": _l("Human check"),
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
        Parameter(
            "human_check.mode",
            "str",
            "off",
            "human_check",
            _l("Human check before sending"),
            _l(
                "off; always (every send-code); adaptive (only once a client IP or the whole "
                "site has spent the share below of its send budget)."
            ),
            pattern=r"off|always|adaptive",
            pattern_hint=_l("must be off, always or adaptive"),
            max_length=10,
        ),
        Parameter(
            "human_check.adaptive_share",
            "int",
            50,
            "human_check",
            _l("Adaptive threshold (percent of budget)"),
            _l(
                "In adaptive mode, the check is asked for once a client IP has spent this "
                "percentage of its hourly sends, or the site of its daily budget."
            ),
            minimum=1,
            maximum=100,
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
    mode: str  # human_check.mode
    adaptive_share: int

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
