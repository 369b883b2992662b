"""The JSON API: module-level views that a host can import, wrap or replace.

Each view runs the same flow as its HTML page (:mod:`flask_alisms.flows`) and raises
:class:`~flask_alisms.web.http.ApiError` for anything but success; the blueprint renders it.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, g, jsonify, request
from flask_wtf.csrf import generate_csrf
from werkzeug.datastructures import MultiDict

from ..exceptions import AccountError, GateClosed
from ..flows import accounts, messages, verification
from ..i18n import gettext as _
from ..phones import Phone
from ..state import get_state
from .forms import RegisterForm, extra_field_names
from .http import (
    STATUS,
    ApiError,
    api_input,
    check_csrf_header,
    client_ip,
    gate_error,
    json_body,
    phone_from,
    storable,
    throttled,
)
from .human import human_check_status, require_human_check_api


def api_fallback(rest: str = "") -> Response:
    """JSON, not Werkzeug's HTML, for an unknown API path or a known one's wrong method.

    Routing errors happen before the blueprint is known, so its error handlers never see
    them; this rule catches what the real API rules do not match.
    """
    allowed = sorted(
        method
        for rule in current_app.url_map.iter_rules()
        if rule.rule == request.path and rule.endpoint != request.endpoint
        for method in rule.methods or ()
    )
    if allowed:
        error = ApiError(405, "method_not_allowed", _("This method is not allowed here."))
        error.headers["Allow"] = ", ".join(allowed)
        raise error
    raise ApiError(404, "not_found", _("There is no such API endpoint."))


def api_csrf_token() -> Response:
    return jsonify({"csrf_token": generate_csrf()})


def api_status() -> Response:
    state = get_state()
    values = state.params.values()
    return jsonify(
        {
            "mobile_registration_open": state.mobile_registration_open(),
            "mobile_login_open": state.mobile_login_open(),
            "code_length": values.code_length,
            "resend_interval": values.resend_interval,
            "country_codes": list(values.allowed_country_codes),
            "human_check": human_check_status(),
        }
    )


def api_send_code() -> Response:
    data, phone = api_input()
    purpose = data.get("purpose", "register")
    if purpose not in verification.PUBLIC_PURPOSES:
        raise ApiError(
            400, "invalid_purpose", _("purpose must be 'register', 'reset' or 'login'.")
        )
    require_human_check_api(data, str(purpose))
    return _send_code(phone, str(purpose))


def api_register() -> Response:
    data, phone = api_input()
    password = _password_from(data)
    extra = _extra_fields(data)
    result = _run_account_flow(accounts.register, phone, data.get("code"), password, extra)
    response = jsonify({"user_id": result.user_id, "csrf_token": _renewed_csrf_token()})
    response.status_code = 201
    return response


def api_reset_password() -> Response:
    data, phone = api_input()
    password = _password_from(data)
    result = _run_account_flow(accounts.reset_password, phone, data.get("code"), password)
    return jsonify({"reset": True, "user_id": result.user_id, "csrf_token": _renewed_csrf_token()})


def api_login() -> Response:
    """Sign in with a phone and its code: ``{"user_id", "created"}``."""
    data, phone = api_input()
    result: accounts.LoginResult = _run_account_flow(
        accounts.login_by_code, phone, data.get("code")
    )
    return jsonify(
        {"user_id": result.user_id, "created": result.created, "csrf_token": _renewed_csrf_token()}
    )


def api_phone_send_code() -> Response:
    """Send a code to the number the signed-in user wants as theirs."""
    data = json_body()
    check_csrf_header()
    _signed_in_user()
    phone = phone_from(data)
    require_human_check_api(data, "change_phone")
    return _send_code(phone, "change_phone")


def api_phone_change() -> Response:
    """Give the signed-in user the number its code verifies: ``{"phone"}``."""
    data = json_body()
    check_csrf_header()
    user = _signed_in_user()
    phone = phone_from(data)
    change: accounts.PhoneChange = _run_account_flow(
        lambda phone, code: accounts.change_phone(user, phone, code), phone, data.get("code")
    )
    return jsonify({"phone": change.phone.e164})


# -- helpers ---------------------------------------------------------------------------------


def _send_code(phone: Any, purpose: str) -> Response:
    """One answer for every send-code route: sent (perhaps late), refused, or unavailable."""
    try:
        outcome = verification.request_code(phone, purpose, client_ip())
    except GateClosed as exc:
        raise gate_error(exc) from None
    if outcome.refusal is not None:
        raise throttled(outcome.refusal.retry_after)
    if not outcome.sent:
        raise ApiError(
            503,
            "sms_unavailable",
            messages.failure_message(outcome),
            retry_after=outcome.resend_after,
        )
    answer: dict[str, Any] = {"sent": True, "resend_after": outcome.resend_after}
    if outcome.maybe_late:
        answer.update(maybe_late=True, message=messages.late_message())
    return jsonify(answer)


def _renewed_csrf_token() -> str:
    """The token of the session the flow just renewed: the one sent with this request is dead.

    Flask-WTF caches a request's token in ``g``; drop it so the new session gets its own.
    """
    g.pop("csrf_token", None)
    return str(generate_csrf())


def _password_from(data: dict[str, Any]) -> str:
    password = data.get("password")
    if not isinstance(password, str):
        raise ApiError(422, "weak_password", _("Enter a password."))
    return password


def _signed_in_user() -> Any:
    try:
        return accounts.signed_in_user()
    except AccountError as exc:
        raise ApiError(STATUS[exc.reason], exc.reason, exc.message) from None


def _run_account_flow(flow: Any, phone: Phone, *args: Any) -> Any:
    """Run a flow, turning its refusals into :class:`ApiError`."""
    try:
        result = flow(phone, *args)
    except GateClosed as exc:
        raise gate_error(exc) from None
    except AccountError as exc:
        if exc.retry_after is not None:
            raise throttled(exc.retry_after, exc.message) from None
        raise ApiError(STATUS.get(exc.reason, 503), exc.reason, exc.message) from None
    return result


def _extra_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The host's extra sign-up fields from a JSON body, validated by the host's form."""
    form_class = get_state().callbacks.register_form or RegisterForm
    names = extra_field_names(form_class)
    if not names:
        return {}
    formdata: MultiDict[str, str] = MultiDict()
    for name in names:
        if name not in data:
            continue
        value = data[name]
        if not isinstance(value, (str, int, float, bool)):
            raise ApiError(
                422, "invalid_field", _("%(name)s has the wrong type.", name=name), field=name
            )
        if isinstance(value, str) and not storable(value):
            raise ApiError(
                422,
                "invalid_field",
                _("%(name)s has invalid characters.", name=name),
                field=name,
            )
        # As a browser would post it, so that the host's validators (Optional, Length, ...)
        # see raw input: with data= alone, Optional() ends the chain and Length never runs.
        formdata[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    form = form_class(formdata=formdata, meta={"csrf": False})
    values = {}
    for name in names:
        field = form[name]
        if not field.validate(form):
            raise ApiError(422, "invalid_field", f"{name}: {field.errors[0]}", field=name)
        values[name] = field.data
    return values
