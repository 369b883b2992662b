"""One parameter's type: how its text is parsed, stored and shown (used by the registry)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import phonenumbers

from ..exceptions import InvalidParameter
from ..i18n import gettext as _

#: Mainland China first, so a test number without + is read as a mainland one.
_ALL_CALLING_CODES = (86, *sorted(set(phonenumbers.COUNTRY_CODE_TO_REGION_CODE) - {86}))


def _parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(_("must be true or false"))


def _parse_test_numbers(value: object) -> tuple[tuple[str, str], ...]:
    """``"+8613800000000=123456, ..."`` as ((E.164, code), ...); each number once."""
    from ..exceptions import InvalidPhone
    from ..phones import parse_phone

    if isinstance(value, (list, tuple)):
        items = [
            f"{pair[0]}={pair[1]}" if isinstance(pair, (list, tuple)) else pair for pair in value
        ]
    elif isinstance(value, str):
        items = [part for part in re.split(r"[,;\s]+", value) if part]
    else:
        raise ValueError(_("must be a list such as +8613800000000=123456, +8613800000001=654321"))
    pairs: dict[str, str] = {}
    for item in items:
        number, sep, code = str(item).partition("=")
        code = code.strip()
        if not sep or not (code.isascii() and code.isdigit() and 4 <= len(code) <= 8):
            raise ValueError(
                _("%(item)s must be a number, = and a code of 4 to 8 digits", item=item)
            )
        try:
            phone = parse_phone(number.strip(), _ALL_CALLING_CODES)
        except InvalidPhone:
            raise ValueError(_("%(item)s is not a mobile number", item=number.strip())) from None
        pairs[phone.e164] = code
    return tuple(pairs.items())


def _list_items(value: object, wrong_type: str) -> Iterable[object]:
    """The items of a comma- or space-separated list, or of a list or tuple from the config."""
    if isinstance(value, str):
        return [part for part in re.split(r"[\s,]+", value) if part]
    if isinstance(value, (list, tuple)):
        return value
    raise ValueError(wrong_type)


def _parse_country_codes(value: object) -> tuple[int, ...]:
    items = _list_items(
        value, _("must be a comma-separated list of country calling codes, e.g. 86,852")
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


_DECIMAL = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,12})?")


def _parse_decimal(value: object, places: int, maximum: int | None, above_zero: bool) -> Any:
    """A money amount as :class:`~decimal.Decimal` (never a float), or None when empty."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise ValueError(_("must be a number such as 0.045"))
    if isinstance(value, str):
        text = value.strip()
    else:  # a typed config value; never "1E+1" for a Decimal
        text = format(value, "f") if isinstance(value, Decimal) else str(value)
    if not text:
        return None
    if not _DECIMAL.fullmatch(text):
        raise ValueError(_("must be a number such as 0.045, with a point for decimals"))
    try:
        number = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern lets only numbers through
        raise ValueError(_("must be a number such as 0.045")) from None
    if number != number.quantize(Decimal(1).scaleb(-places)):
        raise ValueError(_("must have at most %(count)s decimals", count=places))
    if above_zero and number == 0:
        raise ValueError(_("must be more than 0; leave it empty for none"))
    if maximum is not None and number > maximum:
        raise ValueError(_("must be at most %(number)s", number=maximum))
    return number


def _parse_percents(value: object) -> tuple[int, ...]:
    """``"80,100"`` as (80, 100): whole percents from 1 to 1000, each above the one before."""
    items = _list_items(value, _("must be a comma-separated list of percentages, e.g. 80,100"))
    percents: list[int] = []
    for item in items:
        text = str(item).strip().rstrip("%")
        if isinstance(item, bool) or not (text.isascii() and text.isdigit()):
            raise ValueError(_("%(item)s is not a whole percentage", item=item))
        number = int(text)
        if not 1 <= number <= 1000:
            raise ValueError(_("%(item)s must be from 1 to 1000", item=item))
        if percents and number <= percents[-1]:
            raise ValueError(_("must go up: each percentage above the one before"))
        percents.append(number)
    if not percents:
        raise ValueError(_("needs at least one percentage, e.g. 80,100"))
    return tuple(percents)


@dataclass(frozen=True)
class Parameter:
    """How one key is typed, shown and checked."""

    key: str
    kind: str  # "str", "int", "bool", "codes", "test_numbers", "decimal" or "percents"
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
    #: Decimals a "decimal" may have; ``above_zero`` refuses 0 (a budget of nothing).
    places: int = 2
    above_zero: bool = False
    #: The :class:`Values` attribute, where the key's last segment is not unique.
    name: str | None = None
    #: A "str" that takes one of a few words: the panel offers them in a list ("" = empty).
    options: tuple[str, ...] = ()

    @property
    def attr(self) -> str:
        """The attribute of :class:`Values` that holds this parameter's typed value."""
        return self.name or self.key.rsplit(".", 1)[-1]

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
        if self.kind == "decimal":
            return _parse_decimal(value, self.places, self.maximum, self.above_zero)
        if self.kind == "percents":
            return _parse_percents(value)
        if self.kind == "test_numbers":
            if isinstance(value, str) and len(value) > self.max_length:
                raise ValueError(
                    _("must be at most %(count)s characters", count=self.max_length)
                )
            return _parse_test_numbers(value)
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
        if self.kind in ("codes", "percents"):
            return ",".join(str(code) for code in value)
        if self.kind == "decimal":
            return "" if value is None else format(value.normalize(), "f")
        if self.kind == "test_numbers":
            return ", ".join(f"{number}={code}" for number, code in value)
        return str(value)

    def display(self, value: Any) -> str:
        """What a page or the CLI may show: never a secret, the AccessKey ID only in part."""
        if value is None or (self.kind == "str" and not value):
            return ""
        if self.secret:
            return "•••••••• (set)"
        if self.masked:
            text = str(value)
            return f"{text[:4]}****{text[-4:]}" if len(text) > 8 else "****"
        return self.dump(value)
