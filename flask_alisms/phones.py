"""Phone numbers: parsed and checked with ``phonenumbers``, kept in E.164, sent as Aliyun wants."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

from .exceptions import InvalidPhone
from .i18n import gettext as _

MOBILE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
MAX_INPUT_LENGTH = 32



def mask(number: str) -> str:
    """Hide the middle of a number for logs and pages: ``13800138000`` -> ``138****8000``.

    The one masking rule of the package, for E.164 (``+86138****8000``) and Aliyun's bare form
    alike; short strings keep at most their last two characters.
    """
    number = number or ""
    if len(number) >= 10:
        return f"{number[:-8]}****{number[-4:]}"
    if len(number) > 2:
        return "*" * (len(number) - 2) + number[-2:]
    return "*" * len(number)


@dataclass(frozen=True)
class Phone:
    e164: str
    country_code: int
    national_number: str

    @property
    def aliyun(self) -> str:
        """The form Dysmsapi documents: mainland numbers bare, others country code + number."""
        if self.country_code == 86:
            return self.national_number
        return f"{self.country_code}{self.national_number}"

    @property
    def masked(self) -> str:
        """The E.164 form with its middle hidden, for logs and pages."""
        return mask(self.e164)

    def __str__(self) -> str:
        return self.e164


def parse_phone(
    text: object, allowed_country_codes: Iterable[int], *, country_code: object = None
) -> Phone:
    """Parse user input (``+8613800138000``, ``13800138000`` with a country code, ...).

    A number without ``+`` is read in the given ``country_code`` or, failing that, the first
    allowed one. Only mobile numbers of allowed countries pass.
    """
    allowed = tuple(allowed_country_codes)
    if not isinstance(text, str) or not text.strip():
        raise InvalidPhone("invalid_phone", _("Enter a mobile phone number."))
    if len(text) > MAX_INPUT_LENGTH:
        raise InvalidPhone("invalid_phone", _("That phone number is too long."))
    calling_code = allowed[0]
    if country_code not in (None, ""):
        try:
            calling_code = int(str(country_code).strip().lstrip("+"))
        except ValueError:
            raise InvalidPhone("invalid_phone", _("Choose a country code from the list.")) from None
    region = phonenumbers.region_code_for_country_code(calling_code)
    cleaned = text.strip()
    if any(ch < " " or ch == "\x7f" for ch in cleaned):
        # phonenumbers skips leading junk, but nobody types a NUL or a control character.
        raise InvalidPhone("invalid_phone", _("That is not a valid phone number."))
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    try:
        number = phonenumbers.parse(cleaned, None if cleaned.startswith("+") else region)
    except NumberParseException:
        raise InvalidPhone("invalid_phone", _("That is not a valid phone number.")) from None
    if number.country_code not in allowed:
        raise InvalidPhone(
            "country_not_allowed",
            _("Numbers from this country cannot be used here."),
        )
    # A mobile type implies a valid number (number_type is UNKNOWN for an invalid one), so
    # the validity check, which repeats the type's pattern matching, runs only on a refusal.
    if phonenumbers.number_type(number) not in MOBILE_TYPES:
        if not phonenumbers.is_valid_number(number):
            raise InvalidPhone("invalid_phone", _("That is not a valid phone number."))
        raise InvalidPhone("invalid_phone", _("Enter a mobile number; SMS cannot reach this one."))
    national = phonenumbers.national_significant_number(number)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return Phone(e164=e164, country_code=number.country_code, national_number=national)
