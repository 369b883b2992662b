"""The blueprint: admin panel, end-user pages and the JSON API, built per app by a function."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException
from wtforms import ValidationError

from . import accounts, verification
from .accounts import AccountError
from .codes import CodeStoreUnavailable
from .forms import (
    LogFilterForm,
    RegisterForm,
    ResetPasswordForm,
    TestSmsForm,
    changes_from,
    choices,
    grouped,
    parameters_form,
)
from .i18n import install as install_i18n
from .limits import LimiterUnavailable
from .models import utcnow
from .phones import InvalidPhone, Phone, parse_phone
from .settings import InvalidParameter
from .signals import parameters_changed
from .state import AliSMSState, get_state
from .verification import GateClosed

logger = logging.getLogger(__name__)

MAX_JSON_BYTES = 16 * 1024

GATE_MESSAGES = {
    "registration_disabled": "Registration by phone is closed on this site.",
    "sms_not_configured": "SMS is not set up on this site yet. Please try again later.",
}


# -- helpers shared by the views ----------------------------------------------------------------


def _client_ip() -> str:
    return request.remote_addr or "unknown"


def api_error(status: int, error: str, message: str, **extra: Any) -> Response:
    response = jsonify({"error": error, "message": message, **extra})
    response.status_code = status
    return response


def _throttled(retry_after: int, message: str) -> Response:
    response = api_error(429, "rate_limited", message, retry_after=retry_after)
    response.headers["Retry-After"] = str(retry_after)
    return response


def _no_store(response: Response) -> Response:
    """Panel pages and API answers are private and must never be cached or framed."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    )
    return response


def _admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if get_state().extension.current_admin() is None:
            abort(403)
        return view(*args, **kwargs)

    return wrapper


def _json_body() -> dict[str, Any] | Response:
    declared = request.content_length or 0
    raw = b""
    if declared <= MAX_JSON_BYTES and request.is_json:
        # One byte past the cap and no more: a chunked body has no Content-Length, and a
        # server that terminates the input (gunicorn) would let get_json() read all of it.
        # The stream may answer a read with less than asked, hence the loop.
        while len(raw) <= MAX_JSON_BYTES:
            chunk = request.stream.read(MAX_JSON_BYTES + 1 - len(raw))
            if not chunk:
                break
            raw += chunk
    if max(declared, len(raw)) > MAX_JSON_BYTES:
        return api_error(413, "too_large", "The request body is too large.")
    try:
        data = current_app.json.loads(raw) if raw else None
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." past the stack's depth
        data = None
    if not isinstance(data, dict):
        return api_error(400, "invalid_request", "Send a JSON object.")
    return data


def _csrf_or_error() -> Response | None:
    try:
        validate_csrf(request.headers.get("X-CSRFToken") or request.headers.get("X-CSRF-Token"))
    except ValidationError:
        return api_error(
            400,
            "csrf_failed",
            "Missing or expired CSRF token: get one from /api/csrf-token and send it in "
            "the X-CSRFToken header.",
        )
    return None


def _phone_from(data: dict[str, Any]) -> Phone | Response:
    try:
        return parse_phone(
            data.get("phone"),
            get_state().params.get("phone.allowed_country_codes"),
            country_code=data.get("country_code"),
        )
    except InvalidPhone as exc:
        return api_error(400, exc.reason, exc.message)


def _api_input() -> tuple[dict[str, Any], Phone] | Response:
    """The checks every API POST starts with: a JSON object, the CSRF header, a valid phone."""
    data = _json_body()
    if isinstance(data, Response):
        return data
    error = _csrf_or_error()
    if error is not None:
        return error
    phone = _phone_from(data)
    if isinstance(phone, Response):
        return phone
    return data, phone


def _gate_closed(exc: GateClosed) -> Response:
    status = 403 if exc.reason == "registration_disabled" else 503
    return api_error(status, exc.reason, GATE_MESSAGES[exc.reason])


def _purpose_from(data: dict[str, Any]) -> str | Response:
    purpose = data.get("purpose", "register")
    if purpose not in verification.PURPOSES:
        return api_error(400, "invalid_purpose", "purpose must be 'register' or 'reset'.")
    return str(purpose)


def _send_failed_message(outcome: verification.SendOutcome) -> str:
    if outcome.result is not None and outcome.result.advice is not None:
        return outcome.result.advice.user_message
    return "We could not send the SMS right now. Please try again later."


def _local_redirect_target(configured: str) -> str:
    """Honour ``?next=`` only for local paths, so the flow cannot be an open redirect."""
    target = request.args.get("next", "")
    if (
        target.startswith("/")
        and not target.startswith(("//", "/\\"))
        and "\\" not in target
        # Browsers drop tabs and newlines inside URLs ("/\t/evil.com" is "//evil.com"), and a
        # CR or LF cannot go into a Location header at all.
        and target.isprintable()
        and not urlsplit(target).netloc
    ):
        return target
    return configured


# -- the blueprint ------------------------------------------------------------------------------


def create_blueprint(app: Flask) -> Blueprint:
    """Build the ``alisms`` blueprint for ``app`` according to its ``ALISMS_*`` config."""
    bp = Blueprint(
        "alisms",
        __name__,
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )
    install_i18n(bp)
    cfg = app.config

    @bp.after_request
    def security_headers(response: Response) -> Response:
        return _no_store(response)

    @bp.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> Any:
        if request.blueprint == "alisms" and request.path.startswith(
            f"{cfg['ALISMS_URL_PREFIX']}/api/"
        ):
            return api_error(400, "csrf_failed", "Missing or expired CSRF token.")
        return exc

    def unavailable(message: str) -> Any:
        if request.path.startswith(f"{cfg['ALISMS_URL_PREFIX']}/api/"):
            return api_error(503, "service_unavailable", message)
        return render_template("alisms/message.html", title="Unavailable", message=message), 503

    @bp.errorhandler(LimiterUnavailable)
    def limiter_down(exc: LimiterUnavailable) -> Any:
        return unavailable("Sending codes is paused for a moment. Please try again shortly.")

    @bp.errorhandler(CodeStoreUnavailable)
    def code_store_down(exc: CodeStoreUnavailable) -> Any:
        return unavailable("Your code could not be saved. Please request a new one in a minute.")

    @bp.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        if request.path.startswith(f"{cfg['ALISMS_URL_PREFIX']}/api/"):
            return api_error(
                exc.code or 500, exc.name.lower().replace(" ", "_"), exc.description or exc.name
            )
        return exc

    # -- JSON API -------------------------------------------------------------------------------

    @bp.route("/api/", defaults={"rest": ""}, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    @bp.route("/api/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def api_fallback(rest: str) -> Response:
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
            response = api_error(405, "method_not_allowed", "This method is not allowed here.")
            response.headers["Allow"] = ", ".join(allowed)
            return response
        return api_error(404, "not_found", "There is no such API endpoint.")

    @bp.get("/api/csrf-token")
    def api_csrf_token() -> Response:
        return jsonify({"csrf_token": generate_csrf()})

    @bp.get("/api/status")
    def api_status() -> Response:
        state = get_state()
        return jsonify(
            {
                "mobile_registration_open": state.mobile_registration_open(),
                "code_length": state.params.get("sms.code_length"),
                "resend_interval": state.params.get("limits.resend_interval"),
                "country_codes": list(state.params.get("phone.allowed_country_codes")),
            }
        )

    @bp.post("/api/send-code")
    def api_send_code() -> Response:
        checked = _api_input()
        if isinstance(checked, Response):
            return checked
        data, phone = checked
        purpose = _purpose_from(data)
        if isinstance(purpose, Response):
            return purpose
        try:
            outcome = verification.request_code(phone, purpose, _client_ip())
        except GateClosed as exc:
            return _gate_closed(exc)
        if outcome.refusal is not None:
            return _throttled(
                outcome.refusal.retry_after,
                "Too many codes were requested. Please wait before trying again.",
            )
        if not outcome.sent:
            return api_error(502, "sms_failed", _send_failed_message(outcome))
        return jsonify({"sent": True, "resend_after": outcome.resend_after})

    def _account_api(purpose: str) -> Response:
        checked = _api_input()
        if isinstance(checked, Response):
            return checked
        data, phone = checked
        password = data.get("password")
        if not isinstance(password, str):
            return api_error(422, "weak_password", "Enter a password.")
        try:
            if purpose == "register":
                extra = _extra_fields(data)
                if isinstance(extra, Response):
                    return extra
                result = accounts.register(phone, data.get("code"), password, extra)
            else:
                result = accounts.reset_password(phone, data.get("code"), password)
        except GateClosed as exc:
            return _gate_closed(exc)
        except AccountError as exc:
            if exc.refusal is not None:
                return _throttled(exc.refusal.retry_after, exc.message)
            status = {"weak_password": 422, "invalid_code": 400, "phone_taken": 409}.get(
                exc.reason, 503
            )
            return api_error(status, exc.reason, exc.message)
        if purpose == "register":
            response = jsonify({"user_id": result.user_id})
            response.status_code = 201
            return response
        return jsonify({"reset": True, "user_id": result.user_id})

    @bp.post("/api/register")
    def api_register() -> Response:
        return _account_api("register")

    @bp.post("/api/reset-password")
    def api_reset_password() -> Response:
        return _account_api("reset")

    # -- end-user pages -------------------------------------------------------------------------

    if cfg["ALISMS_USER_VIEWS"]:
        _add_user_views(bp, cfg)
    if cfg["ALISMS_ADMIN_VIEWS"]:
        _add_admin_views(bp)
    return bp


def _extra_fields(data: dict[str, Any]) -> dict[str, Any] | Response:
    """The host's extra sign-up fields from a JSON body, validated by the host's form."""
    form_class = get_state().extension.register_form or RegisterForm
    names = _extra_field_names(form_class)
    if not names:
        return {}
    supplied = {name: data[name] for name in names if name in data}
    formdata: MultiDict[str, str] = MultiDict()
    for name, value in supplied.items():
        if not isinstance(value, (str, int, float, bool)):
            return api_error(422, "invalid_field", f"{name} has the wrong type.", field=name)
        if isinstance(value, str) and not _storable(value):
            return api_error(422, "invalid_field", f"{name} has invalid characters.", field=name)
        # As a browser would post it, so that the host's validators (Optional, Length, ...)
        # see raw input: with data= alone, Optional() ends the chain and Length never runs.
        formdata[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    form = form_class(formdata=formdata, meta={"csrf": False})
    values = {}
    for name in names:
        field = form[name]
        if not field.validate(form):
            return api_error(422, "invalid_field", f"{name}: {field.errors[0]}", field=name)
        values[name] = field.data
    return values


def _storable(text: str) -> bool:
    """Text every database takes: valid UTF-8 (no lone surrogate) and no NUL (PostgreSQL)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _extra_field_names(form_class: type) -> list[str]:
    own = RegisterForm.own_fields
    names = []
    for name in dir(form_class):
        if name.startswith("_") or name in own:
            continue
        value = getattr(form_class, name, None)
        if getattr(value, "field_class", None) is not None:
            names.append(name)
    return names


def _extras_storable(form: Any) -> bool:
    """The host's extra fields must fit any database; checked before the code is spent."""
    storable = True
    for name, value in form.extra_data().items():
        if isinstance(value, str) and not _storable(value):
            form[name].errors = [*form[name].errors, "Remove the invalid characters."]
            storable = False
    return storable


def _phone_part_valid(form: Any) -> bool:
    """ "Send code" needs only the token and the phone, not the host's other sign-up fields."""
    checks = [
        form.csrf_token.validate(form) if hasattr(form, "csrf_token") else True,
        form.country_code.validate(form),
        form.phone.validate(form, [type(form).validate_phone]),
    ]
    return all(checks)


def _account_page(purpose: str, form: Any, template: str, redirect_to: str) -> Any:
    """One page for both flows: "Send code" posts the same form, so it works without JS."""
    state = get_state()
    form.prepare_countries()
    gate_message = None
    try:
        verification.check_gate(purpose, state)
    except GateClosed as exc:
        gate_message = GATE_MESSAGES[exc.reason]
    resend_after = 0
    status = 200
    headers: dict[str, str] = {}
    sending = request.method == "POST" and bool(form.send.data)
    valid = _phone_part_valid(form) if sending else form.validate_on_submit()
    if valid and not sending and purpose == "register":
        valid = _extras_storable(form)
    if request.method == "POST" and gate_message is None and valid:
        phone = form.parsed_phone
        if sending:
            outcome = verification.request_code(phone, purpose, _client_ip())
            if outcome.refusal is not None:
                resend_after = outcome.refusal.retry_after
                flash(
                    f"Too many codes were requested. Try again in {resend_after} seconds.", "error"
                )
                status = 429
                headers["Retry-After"] = str(resend_after)
            elif outcome.sent:
                resend_after = outcome.resend_after
                flash("We sent a code by SMS. It is valid for a few minutes.", "success")
            else:
                flash(_send_failed_message(outcome), "error")
                status = 502
        else:
            try:
                if purpose == "register":
                    accounts.register(
                        phone, form.code.data, form.password.data or "", form.extra_data()
                    )
                    flash("Welcome! Your account is ready.", "success")
                else:
                    accounts.reset_password(phone, form.code.data, form.password.data or "")
                    flash("Your password was changed.", "success")
                return redirect(_local_redirect_target(redirect_to))
            except AccountError as exc:
                field = form.password if exc.reason == "weak_password" else form.code
                field.errors = [*field.errors, exc.message]
                status = {
                    "weak_password": 422,
                    "invalid_code": 400,
                    "phone_taken": 409,
                    "too_many_attempts": 429,
                }.get(exc.reason, 503)
                if exc.refusal is not None:
                    headers["Retry-After"] = str(exc.refusal.retry_after)
    elif request.method == "POST" and gate_message is None:
        status = 400
    elif request.method == "POST":
        status = 403
    page = render_template(
        template,
        form=form,
        gate_message=gate_message,
        resend_after=resend_after,
        code_length=state.params.get("sms.code_length"),
    )
    return page, status, headers


def _add_user_views(bp: Blueprint, cfg: Any) -> None:
    @bp.route("/register", methods=["GET", "POST"])
    def register() -> Any:
        form_class = get_state().extension.register_form or RegisterForm
        return _account_page(
            "register", form_class(), "alisms/register.html", cfg["ALISMS_REGISTER_REDIRECT"]
        )

    @bp.route("/reset-password", methods=["GET", "POST"])
    def reset_password() -> Any:
        return _account_page(
            "reset", ResetPasswordForm(), "alisms/reset_password.html", cfg["ALISMS_RESET_REDIRECT"]
        )


# -- admin panel --------------------------------------------------------------------------------


def _checklist(state: AliSMSState) -> list[dict[str, Any]]:
    params = state.params
    items = [
        {"label": f"{p.label} ({p.key})", "ok": not_missing, "help": p.help}
        for p, not_missing in (
            (row.parameter, row.is_set) for row in params.rows() if row.parameter.required_for_sms
        )
    ]
    items.append(
        {
            "label": "Registration allowed (server.allow_user_register)",
            "ok": bool(params.get("server.allow_user_register")),
            "help": "Set it to true to let new users sign up.",
        }
    )
    items.append(
        {
            "label": "Mobile registration switch (server.enable_mobile_register)",
            "ok": bool(params.get("server.enable_mobile_register")),
            "help": "Set it to true once every Aliyun parameter is filled in.",
        }
    )
    items.append(
        {
            "label": "User adapter",
            "ok": state.user_adapter is not None,
            "help": "The site passes AliSMS(user_adapter=...) so users can be found and created.",
        }
    )
    return items


def _last_test(state: AliSMSState) -> Any:
    log = state.models.SendLog
    return state.db.session.scalars(
        sa.select(log).where(log.purpose == "test").order_by(log.id.desc()).limit(1)
    ).first()


def _add_admin_views(bp: Blueprint) -> None:
    @bp.route("/admin/", methods=["GET", "POST"])
    @_admin_required
    def admin_parameters() -> Any:
        state = get_state()
        rows = state.params.rows()
        status = 200
        if request.method == "POST":
            form = parameters_form(rows, request.form)
            if form.validate():
                changes = changes_from(form, rows)
                actor = state.extension.current_admin()
                try:
                    changed = state.params.update(changes, actor=actor)
                except InvalidParameter as exc:
                    field = getattr(form, exc.key.replace(".", "__"))
                    field.errors = [*field.errors, exc.message]
                    status = 400
                else:
                    if changed:
                        parameters_changed.send(
                            current_app._get_current_object(),  # type: ignore[attr-defined]
                            keys=changed,
                            actor=actor,
                        )
                        flash(f"Saved: {', '.join(changed)}.", "success")
                    else:
                        flash("Nothing changed.", "info")
                    return redirect(url_for(".admin_parameters"))
            else:
                status = 400
        else:
            form = parameters_form(rows)
        return render_template(
            "alisms/admin/parameters.html",
            form=form,
            groups=grouped(rows),
            checklist=_checklist(state),
            effective=state.mobile_registration_open(),
            sender=state.sender_for_send().name,
            last_test=_last_test(state),
            changes=state.params.recent_changes(),
        ), status

    @bp.route("/admin/test-sms", methods=["GET", "POST"])
    @_admin_required
    def admin_test_sms() -> Any:
        state = get_state()
        form = TestSmsForm()
        form.prepare_countries()
        result = None
        status = 200
        if request.method == "POST":
            if form.validate_on_submit():
                if not state.sms_ready():
                    missing = ", ".join(p.key for p in state.params.missing())
                    form.phone.errors = [f"Fill in these parameters first: {missing}."]
                    status = 400
                else:
                    result = verification.send_test_message(cast(Phone, form.parsed_phone))
                    status = 200 if result.ok else 502
            else:
                status = 400
        return render_template(
            "alisms/admin/test_sms.html",
            form=form,
            result=result,
            sender=state.sender_for_send().name,
        ), status

    @bp.get("/admin/log")
    @_admin_required
    def admin_log() -> Any:
        state = get_state()
        log = state.models.SendLog
        form = LogFilterForm(request.args)
        categories = [("", "Any")] + [(c, c) for c in _categories()]
        form.category.choices = choices(categories)
        query = sa.select(log).order_by(log.id.desc())
        status = 200
        if form.validate():
            since = utcnow() - dt.timedelta(days=int(form.days.data or 7))
            query = query.where(log.created_at >= since)
            if form.category.data:
                query = query.where(log.category == form.category.data)
            if form.purpose.data:
                query = query.where(log.purpose == form.purpose.data)
            if form.phone.data:
                query = query.where(log.phone_masked.endswith(form.phone.data[-4:]))
        else:
            status = 400
            query = query.where(sa.false())
        page = state.db.paginate(query, per_page=50, error_out=False, count=True)
        return render_template(
            "alisms/admin/log.html", form=form, page=page, summary=_summary(state)
        ), status


def _categories() -> list[str]:
    from .errors import Category

    return ["sent", "skipped", *[c.value for c in Category]]


def _summary(state: AliSMSState) -> list[dict[str, Any]]:
    log = state.models.SendLog
    now = utcnow()
    figures = []
    for label, delta in (
        ("Last 24 hours", dt.timedelta(days=1)),
        ("Last 7 days", dt.timedelta(days=7)),
    ):
        counts: dict[str, int] = dict(
            state.db.session.execute(
                sa.select(log.category, sa.func.count())
                .where(log.created_at >= now - delta)
                .group_by(log.category)
            ).all()
        )
        failed = {k: v for k, v in counts.items() if k not in ("sent", "skipped")}
        figures.append(
            {
                "label": label,
                "sent": counts.get("sent", 0),
                "failed": sum(failed.values()),
                "by_category": failed,
            }
        )
    return figures
