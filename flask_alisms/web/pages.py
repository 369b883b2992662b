"""The end-user pages: register, reset password, sign in by code and phone change, working
without JavaScript.

"Send code" posts the same form as the final submit, so a browser without JS can do the whole
flow. Each page runs the very flows the JSON API runs (:mod:`flask_alisms.flows`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm

from ..exceptions import AccountError, GateClosed
from ..flows import accounts, messages, verification
from ..i18n import gettext as _
from ..phones import mask
from ..state import get_state
from .forms import (
    ChangePhoneForm,
    LoginCodeForm,
    RegisterForm,
    ResetPasswordForm,
    extra_field_names,
)
from .http import STATUS, client_ip, gate_message, local_redirect_target, storable
from .human import require_human_check_page


def register() -> Any:
    form_class = get_state().callbacks.register_form or RegisterForm
    return account_page(
        "register",
        form_class(),
        "alisms/register.html",
        current_app.config["ALISMS_REGISTER_REDIRECT"],
    )


def reset_password() -> Any:
    return account_page(
        "reset",
        ResetPasswordForm(),
        "alisms/reset_password.html",
        current_app.config["ALISMS_RESET_REDIRECT"],
    )


def account_page(purpose: str, form: Any, template: str, redirect_to: str) -> Any:
    """One page for a code flow with a password: register and reset."""
    return code_page(
        purpose,
        form,
        template,
        lambda form: _finish(form, purpose, redirect_to),
        validate=lambda form: _whole_form_valid(form, purpose),
        extra_fields=extra_field_names(type(form)),
    )


def code_page(
    purpose: str,
    form: Any,
    template: str,
    finish: Callable[[Any], Any],
    *,
    validate: Callable[[Any], bool] | None = None,
    number_errors: tuple[str, ...] = (),
    **context: Any,
) -> Any:
    """One page for a code flow: GET shows it, "Send code" sends, the submit finishes.

    ``number_errors`` are refusals about the number rather than the code (shown on its field).
    """
    state = get_state()
    form.prepare_countries()
    closed = None
    try:
        verification.check_gate(purpose, state)
    except GateClosed as exc:
        closed = gate_message(exc.reason)
    status, resend_after = 200, 0
    headers: dict[str, str] = {}
    if request.method == "POST" and closed is not None:
        status = 403
    elif request.method == "POST":
        sending = bool(form.send.data)
        valid = validate(form) if validate is not None else form.validate_on_submit()
        if not (_phone_part_valid(form) if sending else valid):
            status = 400
        elif sending:
            status, headers, resend_after = _send_code(form, purpose)
        else:
            try:
                return finish(form)
            except AccountError as exc:
                if exc.reason in number_errors:
                    form.phone.errors = [*form.phone.errors, exc.message]
                    status = STATUS[exc.reason]
                else:
                    status, headers = _show_account_error(form, exc)
    page = render_template(
        template,
        form=form,
        gate_message=closed,
        resend_after=resend_after,
        code_length=state.params.values().code_length,
        **context,
    )
    return page, status, headers


def _send_code(form: Any, purpose: str) -> tuple[int, dict[str, str], int]:
    refused = require_human_check_page()
    if refused is not None:
        return refused
    try:
        outcome = verification.request_code(form.parsed_phone, purpose, client_ip())
    except GateClosed as exc:  # a budget's hard stop (the page checked the switches)
        flash(gate_message(exc.reason), "error")
        return 503, {}, 0
    if outcome.refusal is not None:
        wait = outcome.refusal.retry_after
        flash(
            _("Too many codes were requested. Try again in %(seconds)s seconds.", seconds=wait),
            "error",
        )
        return 429, {"Retry-After": str(wait)}, wait
    if outcome.maybe_late:
        flash(messages.late_message(), "info")
        return 200, {}, outcome.resend_after
    if outcome.sent:
        flash(_("We sent a code by SMS. It is valid for a few minutes."), "success")
        return 200, {}, outcome.resend_after
    flash(messages.failure_message(outcome), "error")
    return 503, {"Retry-After": str(outcome.resend_after)}, 0


def _finish(form: Any, purpose: str, redirect_to: str) -> Any:
    """Run the flow and redirect; raises :class:`AccountError` when it refuses."""
    phone, code, password = form.parsed_phone, form.code.data, form.password.data or ""
    if purpose == "register":
        accounts.register(phone, code, password, form.extra_data())
        flash(_("Welcome! Your account is ready."), "success")
    else:
        accounts.reset_password(phone, code, password)
        flash(_("Your password was changed."), "success")
    return redirect(local_redirect_target(redirect_to))


def _show_account_error(form: Any, exc: AccountError) -> tuple[int, dict[str, str]]:
    """Put the flow's refusal on the field it concerns; the status and headers to answer."""
    field = form.password if exc.reason == "weak_password" else form.code
    field.errors = [*field.errors, exc.message]
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
    return STATUS.get(exc.reason, 503), headers


def _phone_part_valid(form: FlaskForm) -> bool:
    """ "Send code" needs only the token and the phone, not the host's other sign-up fields."""
    checks = [
        form.csrf_token.validate(form) if hasattr(form, "csrf_token") else True,
        form.country_code.validate(form),
        form.phone.validate(form, [type(form).validate_phone]),
    ]
    return all(checks)


def _whole_form_valid(form: Any, purpose: str) -> bool:
    if not form.validate_on_submit():
        return False
    if purpose != "register":
        return True
    # The host's extra fields must fit any database; checked before the code is spent.
    storable_all = True
    for name, value in form.extra_data().items():
        if isinstance(value, str) and not storable(value):
            form[name].errors = [*form[name].errors, _("Remove the invalid characters.")]
            storable_all = False
    return storable_all


# -- sign in by code and phone change ---------------------------------------------------------


def login() -> Any:
    """Sign in with the phone and an SMS code (``server.enable_mobile_login``)."""
    return code_page("login", LoginCodeForm(), "alisms/login.html", _finish_login)


def change_phone() -> Any:
    """Add or change the signed-in user's phone; 401 with a message for anybody else."""
    try:
        user = accounts.signed_in_user()
    except AccountError as exc:
        page = render_template(
            "alisms/message.html", title=_("Sign in first"), message=exc.message
        )
        return page, STATUS[exc.reason]
    users = get_state().users
    phone_of = getattr(users, "phone_of", None)
    current = phone_of(user) if phone_of is not None else None
    return code_page(
        "change_phone",
        ChangePhoneForm(),
        "alisms/change_phone.html",
        lambda form: _finish_change(form, user),
        number_errors=("phone_taken",),  # told only after the code was verified
        current_phone=mask(current) if current else None,
    )


def _finish_login(form: Any) -> Any:
    result = accounts.login_by_code(form.parsed_phone, form.code.data)
    if result.created:
        flash(_("Welcome! Your account is ready."), "success")
    else:
        flash(_("You are signed in."), "success")
    return redirect(local_redirect_target(current_app.config["ALISMS_LOGIN_REDIRECT"]))


def _finish_change(form: Any, user: Any) -> Any:
    change = accounts.change_phone(user, form.parsed_phone, form.code.data)
    flash(_("Your phone number is now %(phone)s.", phone=change.phone.masked), "success")
    return redirect(local_redirect_target(url_for("alisms.change_phone")))
