"""Flask-WTF forms for the panel and the end-user pages (CSRF on, as Flask-WTF does by default)."""

from __future__ import annotations

import functools
from typing import Any

from flask_wtf import FlaskForm
from markupsafe import Markup, escape
from wtforms import (
    BooleanField,
    Field,
    Form,
    PasswordField,
    SelectField,
    StringField,
    SubmitField,
)
from wtforms.i18n import get_translations
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError
from wtforms.widgets import CheckboxInput, PasswordInput, TextInput
from wtforms.widgets.core import clean_key

from ..exceptions import InvalidParameter, InvalidPhone
from ..i18n import current_locale
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..parameters import GROUPS, PARAMETERS, Parameter, ParameterRow
from ..phones import Phone, parse_phone
from ..state import get_state

try:  # WTForms >= 3.3 deprecates (value, label) tuples in favour of SelectChoice.
    from wtforms.fields.choices import SelectChoice
except ImportError:  # pragma: no cover - older WTForms
    SelectChoice = None


#: The send log's purpose column, in words.
PURPOSE_LABELS = {
    "register": _l("register"),
    "reset": _l("reset"),
    "login": _l("sign-in"),
    "change_phone": _l("phone change"),
    "phone_changed": _l("phone changed notice"),
    "test": _l("test"),
}

# WTForms' own catalogue names for our locales (its messages, e.g. "This field is required.").
_WTFORMS_LOCALES = {"en": None, "zh_Hans": "zh", "zh_Hant": "zh_TW"}


@functools.lru_cache(maxsize=16)
def _wtforms_translations(locale: str) -> Any:
    name = _WTFORMS_LOCALES.get(locale, locale)
    return get_translations([name]) if name else None


def html_attributes(**attributes: Any) -> Markup:
    """WTForms' ``html_params``, the same text, built without a ``Markup.format`` per attribute.

    That formatting was a third of the parameters page's time: the page renders about 110
    inputs of five attributes each.
    """
    parts = []
    for key, value in sorted(attributes.items()):
        if value is True:
            parts.append(clean_key(key))
        elif value is not False:
            text = str(escape(value)).replace('"', "&quot;")  # as WTForms: Markup keeps quotes
            parts.append(f'{clean_key(key)}="{text}"')
    # Safe: every value went through escape(); the keys are the code's own attribute names.
    return Markup(" ".join(parts))  # noqa: S704


class _QuickAttributes:
    html_params = staticmethod(html_attributes)  # the hook WTForms' Input offers


class QuickTextInput(_QuickAttributes, TextInput):
    """A text input rendered like WTForms' own (see html_attributes)."""


class QuickPasswordInput(_QuickAttributes, PasswordInput):
    """A password input rendered like WTForms' own, value never echoed."""


class QuickCheckboxInput(_QuickAttributes, CheckboxInput):
    """A checkbox rendered like WTForms' own."""


class TranslatedMeta:
    """Form meta that gives WTForms' built-in messages the page's language.

    Flask-WTF translates them only through an initialised Flask-Babel; this follows the same
    choice as the rest of the extension, with or without Flask-Babel.
    """

    def get_translations(self, form: Any) -> Any:
        return _wtforms_translations(current_locale())


def choices(pairs: list[tuple[str, str]]) -> list[Any]:
    """Select options in the form the installed WTForms prefers."""
    if SelectChoice is None:
        return pairs
    return [SelectChoice(value, label) for value, label in pairs]


def country_choices() -> list[Any]:
    import phonenumbers

    pairs = []
    for code in get_state().params.values().allowed_country_codes:
        regions = phonenumbers.region_codes_for_country_code(code)
        pairs.append((str(code), f"+{code} {regions[0] if regions else ''}".strip()))
    return choices(pairs)


class PhoneMixin:
    """A country-code select plus a number, parsed into :class:`~flask_alisms.phones.Phone`."""

    Meta = TranslatedMeta

    country_code = SelectField(_l("Country code"), choices=[], validate_choice=True)
    phone = StringField(_l("Mobile number"), validators=[InputRequired(), Length(max=32)])
    parsed_phone: Phone | None = None

    def prepare_countries(self) -> None:
        self.country_code.choices = country_choices()

    def validate_phone(self, field: Field) -> None:
        try:
            self.parsed_phone = parse_phone(
                field.data,
                get_state().params.values().allowed_country_codes,
                country_code=self.country_code.data,
            )
        except InvalidPhone as exc:
            raise ValidationError(exc.message) from None


class RegisterForm(PhoneMixin, FlaskForm):
    """Subclass it and add fields to collect more at sign-up; they reach ``create_user``."""

    code = StringField(_l("Verification code"), validators=[Optional(), Length(max=8)])
    password = PasswordField(_l("Password"), validators=[Optional(), Length(max=256)])
    send = SubmitField(_l("Send code"))
    submit = SubmitField(_l("Register"))

    #: Field names handled by the extension itself; every other field is the host's.
    own_fields = frozenset(
        {"country_code", "phone", "code", "password", "send", "submit", "csrf_token"}
    )

    def extra_data(self) -> dict[str, Any]:
        return {name: self[name].data for name in extra_field_names(type(self))}


def extra_field_names(form_class: type) -> list[str]:
    """The fields a host added by subclassing :class:`RegisterForm`, in declaration order.

    The one place that tells the extension's own fields from the host's: the page renders
    these generically and the JSON API validates them with the host's form.
    """
    own = RegisterForm.own_fields
    declared = getattr(form_class, "_unbound_fields", None) or [
        (name, getattr(form_class, name))
        for name in dir(form_class)
        if not name.startswith("_") and hasattr(getattr(form_class, name, None), "field_class")
    ]
    return [name for name, _ in declared if name not in own]


class ResetPasswordForm(PhoneMixin, FlaskForm):
    code = StringField(_l("Verification code"), validators=[Optional(), Length(max=8)])
    password = PasswordField(_l("New password"), validators=[Optional(), Length(max=256)])
    send = SubmitField(_l("Send code"))
    submit = SubmitField(_l("Set new password"))


class LoginCodeForm(PhoneMixin, FlaskForm):
    """Sign in with a phone and an SMS code, no password."""

    code = StringField(_l("Verification code"), validators=[Optional(), Length(max=8)])
    send = SubmitField(_l("Send code"))
    submit = SubmitField(_l("Sign in"))


class ChangePhoneForm(PhoneMixin, FlaskForm):
    """The new number of a signed-in user and the code sent to it."""

    code = StringField(_l("Verification code"), validators=[Optional(), Length(max=8)])
    send = SubmitField(_l("Send code"))
    submit = SubmitField(_l("Save this number"))


class TestSmsForm(PhoneMixin, FlaskForm):
    send = SubmitField(_l("Send test SMS"))


class ReportTokenForm(FlaskForm):
    """The send log's one POST: replace the receipt push URL's token."""

    regenerate = SubmitField(_l("Make a new push URL"))


class LogFilterForm(Form):
    """Filters for the send log (GET, no state change, so no CSRF)."""

    Meta = TranslatedMeta

    # The view fills in the choices; only those reach the query (not, e.g., a NUL PostgreSQL
    # refuses). Optional() lets "" (any) through.
    category = SelectField(_l("Outcome"), choices=[], validators=[Optional()])
    purpose = SelectField(
        _l("Purpose"),
        choices=choices([("", _l("Any")), *PURPOSE_LABELS.items()]),
        validators=[Optional()],
    )
    phone = StringField(_l("Number ends with"), validators=[Optional(), Length(max=8)])
    days = SelectField(
        _l("Period"),
        choices=choices(
            [
                ("1", _l("24 hours")),
                ("7", _l("7 days")),
                ("30", _l("30 days")),
                ("365", _l("1 year")),
            ]
        ),
        default="7",
    )

    delivery = SelectField(
        _l("Delivery"),
        choices=choices(
            [
                ("", _l("Any")),
                ("accepted", _l("waiting for receipt")),
                ("delivered", _l("delivered")),
                ("failed", _l("not delivered")),
                ("no_receipt", _l("no receipt")),
            ]
        ),
        validators=[Optional()],
    )

    def validate_phone(self, field: Field) -> None:
        if field.data and not field.data.isdigit():
            raise ValidationError(_("Digits only."))


def _param_validator(param: Parameter, unchanged: str | None = None) -> Any:
    def check(form: Form, field: Field) -> None:
        if (param.kind == "str" and not field.data) or field.data == unchanged:
            return
        try:
            param.parse(field.data)
        except InvalidParameter as exc:
            raise ValidationError(exc.message) from None

    return check


def _toggle(label: Any) -> BooleanField:
    return BooleanField(label, widget=QuickCheckboxInput())


def parameters_form(rows: list[ParameterRow], data: Any = None) -> FlaskForm:
    """A form with one field per parameter, built from the registry so it never drifts."""

    class ParametersForm(FlaskForm):
        Meta = TranslatedMeta
        submit = SubmitField(_l("Save"))

    for row in rows:
        param, name = row.parameter, row.parameter.key.replace(".", "__")
        if row.locked:
            # Fixed by ALISMS_PARAMS: shown, never posted back (browsers skip disabled fields),
            # never validated and ignored by changes_from().
            setattr(
                ParametersForm,
                name,
                StringField(param.label, render_kw={"disabled": True}, widget=QuickTextInput()),
            )
            continue
        render_kw: dict[str, Any] = {}
        if param.secret:
            field: Any = PasswordField(
                param.label,
                validators=[Optional(), _param_validator(param)],
                render_kw={**render_kw, "autocomplete": "new-password"},
                widget=QuickPasswordInput(),
            )
            setattr(ParametersForm, f"clear__{name}", _toggle(_l("Remove the stored secret")))
        elif param.kind == "bool":
            field = SelectField(
                param.label,
                choices=choices([("false", "false"), ("true", "true")]),
                validate_choice=False,
                render_kw=render_kw,
                validators=[DataRequired(), _param_validator(param)],
            )
        elif param.options:
            field = SelectField(
                param.label,
                choices=choices([(value, value or _l("(not set)")) for value in param.options]),
                validate_choice=False,  # the parameter's own check words the refusal
                render_kw=render_kw,
                validators=[_param_validator(param)],
            )
        else:
            unchanged = row.shown if param.masked else None
            field = StringField(
                param.label,
                validators=[_param_validator(param, unchanged)],
                render_kw=render_kw,
                widget=QuickTextInput(),
            )
        setattr(ParametersForm, name, field)
        if not param.secret:
            # How to leave a default or go back to one, offered next to the value it concerns.
            if row.source == "database":
                toggle = (f"clear__{name}", _toggle(_l("Remove the saved value")))
            else:
                toggle = (f"pin__{name}", _toggle(_l("Save this value here")))
            setattr(ParametersForm, *toggle)

    form = ParametersForm(formdata=data) if data is not None else ParametersForm()
    if data is None:
        for row in rows:
            if row.parameter.secret:
                continue
            name = row.parameter.key.replace(".", "__")
            getattr(form, name).data = (
                row.shown if row.parameter.masked else row.parameter.dump(row.value)
            )
    return form


def changes_from(form: FlaskForm, rows: list[ParameterRow]) -> dict[str, Any]:
    """The values the admin actually changed; blank secret means "keep", masked id unchanged.

    A ticked "Remove the saved value" removes it (the default applies again); a ticked "Save
    this value here" stores a value equal to its default, which then no longer follows it.
    """
    changes: dict[str, Any] = {}
    for row in rows:
        param, name = row.parameter, row.parameter.key.replace(".", "__")
        if row.locked:
            continue
        value = getattr(form, name).data
        if not param.secret:
            clear, pin = form._fields.get(f"clear__{name}"), form._fields.get(f"pin__{name}")
            if clear is not None and clear.data:
                changes[param.key] = None
                continue
            if pin is not None and pin.data and (value or "").strip():
                pinned = (value or "").strip()
                if param.masked and pinned == row.shown:
                    pinned = param.dump(row.value)  # the whole ID, not its masked form
                changes[param.key] = pinned
                continue
        if param.secret:
            if form[f"clear__{name}"].data:
                changes[param.key] = None
            elif value:
                changes[param.key] = value
            continue
        if param.masked and value == row.shown:
            continue
        text = (value or "").strip()
        current = param.dump(row.value) if row.is_set or param.kind != "str" else ""
        if text != current:
            changes[param.key] = text
    return changes


def grouped(rows: list[ParameterRow]) -> list[tuple[str, str, list[ParameterRow]]]:
    """The panel's sections: ``(key, label, rows)`` in GROUPS order, empty ones left out.

    A parameter whose group is not in GROUPS still shows, in a last "Other" section.
    """
    sections = [
        (group, str(label), [r for r in rows if r.parameter.group == group])
        for group, label in GROUPS.items()
    ]
    others = [r for r in rows if r.parameter.group not in GROUPS]
    sections.append(("other", _("Other settings"), others))
    return [section for section in sections if section[2]]


__all__ = [
    "PARAMETERS",
    "ChangePhoneForm",
    "LogFilterForm",
    "LoginCodeForm",
    "RegisterForm",
    "ResetPasswordForm",
    "TestSmsForm",
    "changes_from",
    "extra_field_names",
    "grouped",
    "parameters_form",
]
