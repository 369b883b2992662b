"""The parameter registry: every key an admin can set, declared once, typed and checked.

The panel, the CLI and the code all go through :data:`PARAMETERS`; code reads the typed
:class:`Values` snapshot instead of key strings.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..exceptions import InvalidParameter
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from .costs import COST_PARAMETERS
from .kinds import Parameter

logger = logging.getLogger(__name__)

SIGN_NAME = "aliyun.sms.sign_name"
TEMPLATE_CODE = "aliyun.sms.sms_code_template_code"
ACCESS_KEY_ID = "aliyun.sms.access_key_id"
ACCESS_KEY_SECRET = "aliyun.sms.access_key_secret"  # noqa: S105 - a key name, not a secret
ALLOW_REGISTER = "server.allow_user_register"
ENABLE_MOBILE_REGISTER = "server.enable_mobile_register"
REPORT_TOKEN = "aliyun.sms.report_token"  # noqa: S105 - a key name, not a secret
ENABLE_MOBILE_LOGIN = "server.enable_mobile_login"
#: Switches that cannot be turned on while an Aliyun parameter is empty.
SMS_SWITCHES = (ENABLE_MOBILE_REGISTER, ENABLE_MOBILE_LOGIN)



#: The panel's collapsible sections, in order; each parameter names one as its ``group``.
GROUPS: dict[str, str] = {
    "aliyun": _l("Alibaba Cloud SMS"),
    "registration": _l("Registration switches"),
    "codes": _l("Verification codes"),
    "limits": _l("Send limits"),
    "phones": _l("Phone numbers"),
    "human_check": _l("Human check"),
    "budget": _l("Cost and budgets"),
    "alerts": _l("Budget alerts"),
}

PARAMETERS: dict[str, Parameter] = {
    p.key: p
    for p in (
        Parameter(
            SIGN_NAME,
            "str",
            "",
            "aliyun",
            _l("Signature name"),
            _l("The approved SMS signature (签名名称) exactly as the SMS console lists it."),
            required_for_sms=True,
            max_length=64,
        ),
        Parameter(
            TEMPLATE_CODE,
            "str",
            "",
            "aliyun",
            _l("Verification code template"),
            _l("The approved verification-code template's code (模版CODE), e.g. SMS_154950909."),
            required_for_sms=True,
            pattern=r"SMS_\d{3,20}",
            pattern_hint=_l("must look like SMS_154950909"),
        ),
        *(
            Parameter(
                f"aliyun.sms.template_code.{purpose}",
                "str",
                "",
                "aliyun",
                label,
                _l(
                    "Optional template for this purpose; empty means the verification "
                    "code template above."
                ),
                pattern=r"SMS_\d{3,20}",
                pattern_hint=_l("must look like SMS_154950909"),
                name=f"{purpose}_template_code",
            )
            for purpose, label in (
                ("register", _l("Sign-up code template")),
                ("login", _l("Sign-in code template")),
                ("reset", _l("Password reset code template")),
                ("change_phone", _l("Phone change code template")),
            )
        ),
        Parameter(
            "aliyun.sms.phone_changed_template_code",
            "str",
            "",
            "aliyun",
            _l("Phone changed notice template"),
            _l(
                "Optional notice template without variables, sent to the old number after a "
                "phone change; empty sends no notice."
            ),
            pattern=r"SMS_\d{3,20}",
            pattern_hint=_l("must look like SMS_154950909"),
        ),
        Parameter(
            "aliyun.sms.template_param_name",
            "str",
            "code",
            "aliyun",
            _l("Template variable"),
            _l("The template's variable that receives the code, without ${}: usually code."),
            pattern=r"[A-Za-z_][A-Za-z0-9_]{0,31}",
            pattern_hint=_l("must be a variable name such as code"),
        ),
        Parameter(
            ACCESS_KEY_ID,
            "str",
            "",
            "aliyun",
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
            "aliyun",
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
            ENABLE_MOBILE_LOGIN,
            "bool",
            False,
            "registration",
            _l("Enable sign-in by SMS code"),
            _l(
                "Sign-in with the phone number and an SMS code, no password; needs every "
                "Aliyun parameter above (true/false)."
            ),
        ),
        Parameter(
            "login.auto_register",
            "bool",
            False,
            "registration",
            _l("Create accounts at sign-in"),
            _l(
                "A number without an account gets one at its first sign-in by code, while "
                "registration is open (true/false)."
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
            "limits.ip_per_day",
            "int",
            50,
            "limits",
            _l("Codes per client IP per day"),
            _l("Keep it well below the daily budget, so a few clients cannot spend it all."),
            minimum=1,
            maximum=1000000,
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
            REPORT_TOKEN,
            "str",
            "",
            "aliyun",
            _l("Receipt push token"),
            _l(
                "Part of the URL Aliyun pushes delivery receipts to; made on first use. The "
                "send log page shows the full URL and can make a new one."
            ),
            masked=True,
            pattern=r"[A-Za-z0-9_\-]{16,64}",
            pattern_hint=_l("must be 16 to 64 letters, digits, - or _"),
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
            "phone.test_numbers",
            "test_numbers",
            (),
            "phones",
            _l("Test numbers"),
            _l(
                "For app-store reviewers and staging: +8613800000000=123456, ... These numbers "
                "never reach Aliyun and always take their fixed code; limits still apply."
            ),
            max_length=2000,
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
            options=("off", "always", "adaptive"),
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
        *COST_PARAMETERS,
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
    ip_per_day: int
    global_per_day: int
    verify_per_hour: int
    allowed_country_codes: tuple[int, ...]
    mode: str  # human_check.mode
    adaptive_share: int
    report_token: str = field(default="", repr=False)
    register_template_code: str = ""
    login_template_code: str = ""
    reset_template_code: str = ""
    change_phone_template_code: str = ""
    phone_changed_template_code: str = ""
    enable_mobile_login: bool = False
    auto_register: bool = False
    test_numbers: tuple[tuple[str, str], ...] = ()
    price_per_sms: Decimal | None = None  # the cost parameters: see .costs
    budget_daily: Decimal | None = None
    budget_monthly: Decimal | None = None
    alert_percent: tuple[int, ...] = (80, 100)
    hard_stop: bool = False
    webhook_url: str = field(default="", repr=False)
    webhook_format: str = ""
    dingtalk_secret: str = field(default="", repr=False)

    def template_for(self, purpose: str) -> str:
        """The code template for ``purpose``: its own if set, else the common one."""
        own: str = getattr(self, f"{purpose}_template_code", "")
        return own or self.sms_code_template_code

    def test_code(self, e164: str) -> str | None:
        """The fixed code of a test number, or None for a real number."""
        for number, code in self.test_numbers:
            if number == e164:
                return code
        return None

    @functools.cached_property  # an immutable snapshot: worked out once, read on every send
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
