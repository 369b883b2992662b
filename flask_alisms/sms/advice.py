"""What an Alibaba Cloud SMS outcome means, and what to do about it.

Why: Aliyun answers with terse codes (``isv.SMS_SIGNATURE_ILLEGAL``,
``InvalidAccessKeyId.NotFound``, ``SDK.HttpError``...). A site admin needs to be told which
panel parameter or console setting to fix; an end user must only see a short, safe sentence.
:func:`explain` turns any code into both, grouped into a few :class:`Category` values the host
can branch on.

The mapping is data: an exact-code table plus ordered prefix rules, so adding a code is one line.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any, cast

from babel.support import LazyProxy

from ..i18n import lazy_gettext as _l
from ..parameters import ACCESS_KEY_ID, ACCESS_KEY_SECRET, SIGN_NAME, TEMPLATE_CODE

__all__ = ["Advice", "Category", "explain", "known_codes"]

logger = logging.getLogger(__name__)

# The parameter keys the admin messages name, as ``{sign_name}``-style placeholders.
_KEYS = {
    "sign_name": SIGN_NAME,
    "template_code": TEMPLATE_CODE,
    "key_id": ACCESS_KEY_ID,
    "key_secret": ACCESS_KEY_SECRET,
}


def _format_now(text: str, fields: dict[str, Any]) -> str:
    translated = str(text)
    try:
        return translated.format(**_KEYS, **fields)
    except (KeyError, IndexError, ValueError):
        logger.warning("Advice translation does not fit its placeholders: %r", translated)
        return translated


def _formatted(text: str, **fields: Any) -> str:
    """``text`` (a lazy translation) ``str.format``-ed each time it is shown.

    Translated first, then formatted, so the admin panel shows the advice in the language of
    the page that displays it, not of the request that happened to send.
    """
    return cast(str, LazyProxy(_format_now, text, fields, enable_cache=False))


class Category(str, enum.Enum):
    """Why a send failed, at the granularity a site can act on."""

    SIGNATURE = "signature"
    """The SignName is missing, unapproved, unusable or of another account."""
    TEMPLATE = "template"
    """The TemplateCode or its variables/content were refused."""
    AUTHENTICATION = "authentication"
    """AccessKey ID/secret wrong or disabled, clock skew, replayed nonce."""
    PERMISSION = "permission"
    """Authenticated, but not allowed (RAM policy, IP region)."""
    RATE_LIMIT = "rate_limit"
    """Per-number flow control, account quotas or API throttling."""
    BALANCE = "balance"
    """Balance, account state or product activation."""
    INVALID_NUMBER = "invalid_number"
    """The recipient number cannot be sent to."""
    NETWORK = "network"
    """Transport failure or a transient Aliyun-side failure (5xx, ``isp.SYSTEM_ERROR``).

    The SMS may or may not have gone out (e.g. after a read timeout): never retry blindly.
    """
    UNKNOWN = "unknown"
    """A code this module does not recognise, or a client-side SDK problem."""


@dataclass(frozen=True)
class Advice:
    """What an outcome means: for the admin (actionable) and for the end user (safe).

    Both messages are lazy strings: they translate when turned into text (``str()``, a page).
    """

    category: Category
    admin_message: str
    user_message: str


# --------------------------------------------------------------------------- user messages

# In English, for callers that compare; the table below holds their lazy translations.
USER_TRY_LATER = "We could not send the SMS right now. Please try again later."
USER_TOO_MANY = "Too many codes were requested for this number. Please try again later."
USER_BAD_NUMBER = "This phone number cannot receive SMS."

_TRY_LATER = _l("We could not send the SMS right now. Please try again later.")
_TOO_MANY = _l("Too many codes were requested for this number. Please try again later.")
_BAD_NUMBER = _l("This phone number cannot receive SMS.")

_SECRET_WRONG = _l(
    "The AccessKey secret does not match {key_id}. Re-enter {key_secret} "
    "exactly (no spaces); the secret is shown only when the key is created, so create a new "
    "AccessKey in the RAM console if it is lost, and update both parameters."
)
_RAM_DENIED = _l(
    "The RAM user owning {key_id} is not allowed to send SMS. In the RAM console grant "
    "that user the AliyunDysmsFullAccess policy (or a custom policy allowing dysms:SendSms)."
)
_NOT_ACTIVATED = _l(
    "Alibaba Cloud SMS (Short Message Service) is not activated for the account owning "
    "{key_id}. Activate the SMS product in the Alibaba Cloud console, or use an "
    "AccessKey of the account where it is activated."
)
_TRANSPORT = _l(
    "The request to Aliyun failed in transit (timeout, refused, dropped or cut-off connection). "
    "Check this server's outbound access to dysmsapi.aliyuncs.com:443 (DNS, firewall, any "
    "HTTP(S)_PROXY variable) and the sender's timeouts. After a read timeout the SMS may still "
    "have been sent, so do not resend automatically."
)

# code -> (category, admin message, user message). Admin messages may use {code}.
_CODES: dict[str, tuple[Category, str, str]] = {
    # ---- signature
    "isv.SMS_SIGNATURE_ILLEGAL": (
        Category.SIGNATURE,
        _l("Aliyun refused the signature in {sign_name}: it does not exist in this account, is "
           "not approved yet, or belongs to another account. Set it to the signature name exactly "
           "as shown in the SMS console (without 【】) and check that it is approved. "
           "The real-name carrier filing of a new signature takes 5–7 (sometimes 7–10) working "
           "days; until it is approved every send fails."),
        _TRY_LATER,
    ),
    "isv.SMS_SIGN_ILLEGAL": (
        Category.SIGNATURE,
        _l("The signature in {sign_name} is not usable: wrong name, not approved, or of another "
           "account. Copy the approved signature name from the SMS console. "
           "The real-name carrier filing of a new signature takes 5–7 (sometimes 7–10) working "
           "days; until it is approved every send fails."),
        _TRY_LATER,
    ),
    "isv.SIGN_STATE_ILLEGAL": (
        Category.SIGNATURE,
        _l("The signature in {sign_name} is not in an approved state (still under review, "
           "rejected or disabled). Check its status in the SMS console. "
           "The real-name carrier filing of a new signature takes 5–7 (sometimes 7–10) working "
           "days; until it is approved every send fails."),
        _TRY_LATER,
    ),
    "isv.SMS_SIGNATURE_SCENE_ILLEGAL": (
        Category.SIGNATURE,
        _l("The signature in {sign_name} is not approved for the type of the template in "
           "{template_code} (e.g. a marketing signature with a verification-code template). Use a "
           "signature approved for verification codes."),
        _TRY_LATER,
    ),
    "MissingSignName": (
        Category.SIGNATURE,
        _l("{sign_name} is empty. Set it to your approved SMS signature name."),
        _TRY_LATER,
    ),
    # ---- template
    "isv.SMS_TEMPLATE_ILLEGAL": (
        Category.TEMPLATE,
        _l("Aliyun refused the template in {template_code}: the code is wrong, not approved yet, "
           "belongs to another account, or its variables do not match. Copy the template code "
           "(like SMS_153055065) from the SMS console, check that it is approved, and that it is "
           "a verification-code template with exactly one variable, the one this site fills."),
        _TRY_LATER,
    ),
    "isv.TEMPLATE_MISSING_PARAMETERS": (
        Category.TEMPLATE,
        _l("The template in {template_code} has a variable this site does not fill. A "
           "verification-code template must have exactly one variable, named as this site sends "
           "it (e.g. ${{code}}). Fix the template or choose a matching one."),
        _TRY_LATER,
    ),
    "isv.TEMPLATE_PARAMS_ILLEGAL": (
        Category.TEMPLATE,
        _l("A template variable value was refused by the variable's type: a verification-code "
           "variable takes 4–6 characters, digits recommended. Check the template in "
           "{template_code} and the code length/alphabet settings of this site."),
        _TRY_LATER,
    ),
    "isv.INVALID_JSON_PARAM": (
        Category.TEMPLATE,
        _l("TemplateParam was not a JSON object of string values. This is a bug in this site or "
           "in a custom sender: every template variable value must be a string."),
        _TRY_LATER,
    ),
    "isv.PARAM_LENGTH_LIMIT": (
        Category.TEMPLATE,
        _l("A template variable value exceeds its length limit. Keep verification codes to 4–6 "
           "characters and check the template in {template_code}."),
        _TRY_LATER,
    ),
    "isv.PARAM_NOT_SUPPORT_URL": (
        Category.TEMPLATE,
        _l("A template variable value contains a URL, which this template's variables do not "
           "accept. Verification codes must be plain; check the template in {template_code}."),
        _TRY_LATER,
    ),
    "isv.SMS_CONTENT_ILLEGAL": (
        Category.TEMPLATE,
        _l("The message content (template in {template_code} plus variables) contains forbidden "
           "words. Review the template text and the variable values."),
        _TRY_LATER,
    ),
    "isv.BLACK_KEY_CONTROL_LIMIT": (
        Category.TEMPLATE,
        _l("A template variable contains a keyword on Aliyun's blacklist. Verification codes "
           "should be plain digits; review the template in {template_code} and its variables."),
        _TRY_LATER,
    ),
    "MissingTemplateCode": (
        Category.TEMPLATE,
        _l("{template_code} is empty. Set it to your approved template code (like SMS_153055065)."),
        _TRY_LATER,
    ),
    # ---- phone numbers
    "isv.MOBILE_NUMBER_ILLEGAL": (
        Category.INVALID_NUMBER,
        _l("Aliyun refused the phone number as malformed. Mainland numbers are 11 digits; others "
           "are country code + number without '+'. Usually the user typed a wrong number."),
        _BAD_NUMBER,
    ),
    "isv.MOBILE_COUNT_OVER_LIMIT": (
        Category.INVALID_NUMBER,
        _l("Too many phone numbers in one request. Verification codes go to one number per "
           "request; this points at a bug in a custom sender."),
        _BAD_NUMBER,
    ),
    "isv.DOMESTIC_NUMBER_NOT_SUPPORTED": (
        Category.INVALID_NUMBER,
        _l("The template in {template_code} is an international / Hong Kong, Macao and Taiwan "
           "template, which cannot send to mainland China numbers. Use a mainland template (and "
           "signature) for mainland numbers."),
        _BAD_NUMBER,
    ),
    "MissingPhoneNumbers": (
        Category.INVALID_NUMBER,
        _l("The request had no phone number. This is a bug in this site or a custom sender."),
        _BAD_NUMBER,
    ),
    # ---- balance / account / product
    "isv.AMOUNT_NOT_ENOUGH": (
        Category.BALANCE,
        _l("The Alibaba Cloud account owning {key_id} has insufficient balance. Top it up "
           "(or buy an SMS resource package) in the billing console; every send fails until then."),
        _TRY_LATER,
    ),
    "isv.OUT_OF_SERVICE": (
        Category.BALANCE,
        _l("The account's SMS service is suspended, usually because of an overdue balance. Top up "
           "the account in the billing console; sending resumes once it is in credit."),
        _TRY_LATER,
    ),
    "isv.PRODUCT_UN_SUBSCRIPT": (Category.BALANCE, _NOT_ACTIVATED, _TRY_LATER),
    "isv.PRODUCT_UNSUBSCRIBE": (Category.BALANCE, _NOT_ACTIVATED, _TRY_LATER),
    "isv.ACCOUNT_NOT_EXISTS": (
        Category.BALANCE,
        _l("The Alibaba Cloud account behind {key_id} does not exist (any more). Create "
           "an AccessKey in the right account and update {key_id} and {key_secret}."),
        _TRY_LATER,
    ),
    "isv.ACCOUNT_ABNORMAL": (
        Category.BALANCE,
        _l("Aliyun flags the account as abnormal. Check the account status and notices in the "
           "Alibaba Cloud console, or contact Alibaba Cloud support."),
        _TRY_LATER,
    ),
    # ---- permission
    "isp.RAM_PERMISSION_DENY": (Category.PERMISSION, _RAM_DENIED, _TRY_LATER),
    "Forbidden.RAM": (Category.PERMISSION, _RAM_DENIED, _TRY_LATER),
    "isv.DENY_IP_RANGE": (
        Category.PERMISSION,
        _l("Aliyun refuses sends from this server's IP region: servers with overseas IP addresses "
           "cannot send mainland China SMS. Send from a server in mainland China, and check any "
           "IP restriction on the AccessKey's RAM policy."),
        _TRY_LATER,
    ),
    # ---- rate limits
    "isv.BUSINESS_LIMIT_CONTROL": (
        Category.RATE_LIMIT,
        _l("Aliyun's per-number flow control refused the send: by default one signature may send "
           "verification codes to the same number 1 per minute, 5 per hour and 10 per day (40 per "
           "day across all senders). Make this site's own resend limits at least as strict; test "
           "numbers (up to 300) can be whitelisted in the SMS console's flow-control settings."),
        _TOO_MANY,
    ),
    "isv.DAY_LIMIT_CONTROL": (
        Category.RATE_LIMIT,
        _l("The account-wide daily sending quota set in the SMS console is reached; every send "
           "fails until tomorrow. Raise the daily limit in the SMS console if the traffic is "
           "legitimate, otherwise look for SMS-pumping abuse."),
        _TRY_LATER,
    ),
    "isv.MONTH_LIMIT_CONTROL": (
        Category.RATE_LIMIT,
        _l("The account-wide monthly sending quota set in the SMS console is reached; every send "
           "fails until next month. Raise the monthly limit in the SMS console if the traffic is "
           "legitimate, otherwise look for SMS-pumping abuse."),
        _TRY_LATER,
    ),
    # ---- authentication
    "InvalidAccessKeyId.NotFound": (
        Category.AUTHENTICATION,
        _l("Aliyun does not know the AccessKey ID in {key_id}. Copy it again from the RAM "
           "console (no spaces) and check the key was not deleted."),
        _TRY_LATER,
    ),
    "InvalidAccessKeyId.Inactive": (
        Category.AUTHENTICATION,
        _l("The AccessKey in {key_id} is disabled. Enable it in the RAM console, or create "
           "a new one and update {key_id} and {key_secret}."),
        _TRY_LATER,
    ),
    "SignatureDoesNotMatch": (Category.AUTHENTICATION, _SECRET_WRONG, _TRY_LATER),
    "InvalidAccessKeySecret": (Category.AUTHENTICATION, _SECRET_WRONG, _TRY_LATER),
    "IncompleteSignature": (Category.AUTHENTICATION, _SECRET_WRONG, _TRY_LATER),
    "InvalidTimeStamp.Expired": (
        Category.AUTHENTICATION,
        _l("Aliyun refused the request timestamp: this server's clock is more than 15 minutes "
           "off. Synchronise the clock (NTP)."),
        _TRY_LATER,
    ),
    "SignatureNonceUsed": (
        Category.AUTHENTICATION,
        _l("Aliyun saw this request's nonce before, i.e. the same signed request arrived twice. "
           "Harmless if isolated; if it repeats, look for a proxy replaying requests."),
        _TRY_LATER,
    ),
    "MissingAccessKeyId": (
        Category.AUTHENTICATION,
        _l("{key_id} is empty. Set {key_id} and {key_secret}."),
        _TRY_LATER,
    ),
    "SDK.InvalidCredential": (
        Category.AUTHENTICATION,
        _l("No AccessKey is configured. Set {key_id} and {key_secret}."),
        _TRY_LATER,
    ),
    # ---- network / transient Aliyun-side failures
    "SDK.HttpError": (Category.NETWORK, _TRANSPORT, _TRY_LATER),
    "SDK.ServerUnreachable": (Category.NETWORK, _TRANSPORT, _TRY_LATER),
    "SDK.InvalidResponse": (
        Category.NETWORK,
        _l("Aliyun, or something between (a proxy, a captive portal), answered with a body that "
           "is not the expected JSON. The SMS may or may not have been sent. Check this server's "
           "outbound path to dysmsapi.aliyuncs.com and any HTTP(S)_PROXY variable."),
        _TRY_LATER,
    ),
    "InternalError": (
        Category.NETWORK,
        _l("Aliyun reported an internal error (HTTP 500). Usually transient: try again later; if "
           "it persists, contact Alibaba Cloud support with the request id."),
        _TRY_LATER,
    ),
    "ServiceUnavailable": (
        Category.NETWORK,
        _l("Aliyun's SMS API is temporarily unavailable (HTTP 503). Try again later; if it "
           "persists, check Alibaba Cloud's status page or contact support with the request id."),
        _TRY_LATER,
    ),
    "isp.SYSTEM_ERROR": (
        Category.NETWORK,
        _l("Aliyun reported a system error on its side. It may be retried later (not in a loop); "
           "if it persists, contact Alibaba Cloud support with the request id."),
        _TRY_LATER,
    ),
    # ---- other
    "isv.INVALID_PARAMETERS": (
        Category.UNKNOWN,
        _l("Aliyun refused a request parameter (isv.INVALID_PARAMETERS). Check the "
           "aliyun.sms.* parameters for stray spaces or odd characters; otherwise report it "
           "with the request id."),
        _TRY_LATER,
    ),
}

# Ordered (first match wins, most specific first): prefix -> (category, admin, user).
_PREFIXES: tuple[tuple[str, Category, str, str], ...] = (
    (
        "InvalidAccessKeyId",
        Category.AUTHENTICATION,
        _l("Aliyun refused the AccessKey ID in {key_id} ({code}). Copy it again from the "
           "RAM console and check that the key is enabled."),
        _TRY_LATER,
    ),
    (
        "InvalidTimeStamp",
        Category.AUTHENTICATION,
        _l("Aliyun refused the request timestamp ({code}). Synchronise this server's clock (NTP)."),
        _TRY_LATER,
    ),
    (
        "Throttling",
        Category.RATE_LIMIT,
        _l("Aliyun's API gateway throttled this account's request rate ({code}). Slow down: check "
           "this site's own send limits and whether something else uses the same AccessKey."),
        _TRY_LATER,
    ),
    (
        "Forbidden",
        Category.PERMISSION,
        _l("Aliyun forbade the request ({code}). Check the RAM policy of the user owning "
           "{key_id}: it needs AliyunDysmsFullAccess (or dysms:SendSms)."),
        _TRY_LATER,
    ),
    (
        "SDK.",
        Category.UNKNOWN,
        _l("The Aliyun SDK failed on the client side ({code}) before getting a usable answer. "
           "Check the sender's region id and endpoint settings and the installed "
           "aliyun-python-sdk-core version."),
        _TRY_LATER,
    ),
    (
        "Missing",
        Category.UNKNOWN,
        _l("Aliyun's gateway says a required request parameter is missing ({code}). Check that "
           "every aliyun.sms.* parameter is filled in; otherwise this is a bug in the sender."),
        _TRY_LATER,
    ),
    (
        "Invalid",
        Category.UNKNOWN,
        _l("Aliyun's gateway refused a request parameter ({code}). Check the aliyun.sms.* "
           "parameters for stray spaces or odd characters, and the region id."),
        _TRY_LATER,
    ),
    (
        "isv.",
        Category.UNKNOWN,
        _l("Aliyun refused the send with business code {code}, which this extension does not "
           "know. Look it up in Alibaba Cloud's SMS error-code reference."),
        _TRY_LATER,
    ),
    (
        "isp.",
        Category.UNKNOWN,
        _l("Aliyun reported platform error {code}, which this extension does not know. Look it up "
           "in Alibaba Cloud's SMS error-code reference; try again later."),
        _TRY_LATER,
    ),
)

_UNKNOWN_ADMIN = _l(
    "Aliyun answered with code “{code}”, which this extension does not recognise. "
    "Look it up in Alibaba Cloud's SMS error-code reference and keep the request id."
)
_UNKNOWN_HTTP_ADMIN = _l(
    "Aliyun answered with code “{code}” (HTTP {http_status}), which this extension does not "
    "recognise. "
    "Look it up in Alibaba Cloud's SMS error-code reference and keep the request id."
)
_SERVER_SIDE_ADMIN = _l(
    "Aliyun (or a proxy in between) failed with HTTP {http_status} (code “{code}”). Usually "
    "transient: try again later; if it persists, check Alibaba Cloud's status and this "
    "server's outbound path."
)

_CODES_FOLDED = {code.casefold(): code for code in _CODES}


def known_codes() -> tuple[str, ...]:
    """Every code with a dedicated entry (the prefix rules cover families beyond these)."""
    return tuple(_CODES)


def explain(code: str, http_status: int | None = None) -> Advice:
    """Return the category and admin/user advice for an Aliyun or SDK error ``code``.

    ``http_status`` refines unknown codes: an unrecognised code (including the SDK's
    ``SDK.UnknownServerError`` for an unparseable body) with HTTP 5xx is a transient
    server-side failure, :attr:`Category.NETWORK`.
    """
    code = (code or "").strip()
    server_side = http_status is not None and http_status >= 500

    entry = _CODES.get(code)
    if entry is None and code.casefold() in _CODES_FOLDED:
        entry = _CODES[_CODES_FOLDED[code.casefold()]]
    if entry is not None:
        category, admin, user = entry
        return Advice(category, _formatted(admin, code=code), user)

    if server_side:
        return Advice(
            Category.NETWORK,
            _formatted(_SERVER_SIDE_ADMIN, http_status=http_status, code=code),
            _TRY_LATER,
        )

    for prefix, category, admin, user in _PREFIXES:
        if code.startswith(prefix):
            return Advice(category, _formatted(admin, code=code), user)

    if http_status is not None:
        admin = _formatted(_UNKNOWN_HTTP_ADMIN, code=code, http_status=http_status)
    else:
        admin = _formatted(_UNKNOWN_ADMIN, code=code)
    return Advice(Category.UNKNOWN, admin, _TRY_LATER)
