"""``create_blueprint``: wires the module-level views of :mod:`.api`, :mod:`.pages`,
:mod:`.admin` and :mod:`.monitoring_views` to URLs, with the error handlers that turn
failures into clean answers.

A host replaces one view after ``init_app`` with
``app.view_functions["alisms.register"] = my_register`` (the endpoint names are the view
functions' names), or wraps the original, imported from :mod:`.api`, :mod:`.pages` or
:mod:`.admin`.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import BadRequest, HTTPException

from ..exceptions import CodeStoreUnavailable, LimiterUnavailable
from ..i18n import gettext as _
from ..i18n import install as install_i18n
from ..state import get_state
from . import admin, api, hooks, human, monitoring_views, openapi, pages, panel
from .http import (
    DATABASE_DOWN,
    ApiError,
    bound_request_body,
    csrf_error,
    is_api_request,
    no_store,
    server_body_errors,
)

logger = logging.getLogger(__name__)

_API_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


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
    bp.url_value_preprocessor(bound_request_body)
    bp.after_request(no_store)
    bp.register_error_handler(ApiError, _api_error)
    bp.register_error_handler(CSRFError, _csrf_failed)
    bp.register_error_handler(LimiterUnavailable, _limiter_down)
    bp.register_error_handler(CodeStoreUnavailable, _code_store_down)
    bp.register_error_handler(HTTPException, _http_error)
    for db_error in DATABASE_DOWN:
        bp.register_error_handler(db_error, _database_down)
    for error in server_body_errors():
        bp.register_error_handler(error, _unreadable_body)
    bp.context_processor(human.human_check_context)
    bp.context_processor(panel.budget_context)

    bp.add_url_rule(
        "/api/", "api_fallback", api.api_fallback, defaults={"rest": ""}, methods=_API_METHODS
    )
    bp.add_url_rule("/api/<path:rest>", "api_fallback", api.api_fallback, methods=_API_METHODS)
    bp.add_url_rule("/api/csrf-token", view_func=api.api_csrf_token, methods=["GET"])
    bp.add_url_rule("/api/status", view_func=api.api_status, methods=["GET"])
    bp.add_url_rule("/api/openapi.json", view_func=openapi.api_openapi, methods=["GET"])
    bp.add_url_rule("/api/send-code", view_func=api.api_send_code, methods=["POST"])
    bp.add_url_rule("/api/register", view_func=api.api_register, methods=["POST"])
    bp.add_url_rule("/api/reset-password", view_func=api.api_reset_password, methods=["POST"])
    bp.add_url_rule("/api/login", view_func=api.api_login, methods=["POST"])
    bp.add_url_rule("/api/phone/send-code", view_func=api.api_phone_send_code, methods=["POST"])
    bp.add_url_rule("/api/phone", view_func=api.api_phone_change, methods=["POST"])
    bp.add_url_rule(  # no slash merging: "image//x" is a 404, not a redirect to "image/x"
        "/human-check/image/<nonce>",
        view_func=human.human_check_image,
        methods=["GET"],
        merge_slashes=False,
    )

    bp.add_url_rule("/hooks/sms-report", view_func=hooks.sms_report, methods=["POST"])
    csrf = app.extensions.get("csrf")
    if csrf is not None:  # Aliyun cannot send a CSRF token; the URL's token proves it
        csrf.exempt(hooks.sms_report)
    if app.config["ALISMS_USER_VIEWS"]:
        bp.add_url_rule("/register", view_func=pages.register, methods=["GET", "POST"])
        bp.add_url_rule(
            "/reset-password", view_func=pages.reset_password, methods=["GET", "POST"]
        )
        bp.add_url_rule("/login", view_func=pages.login, methods=["GET", "POST"])
        bp.add_url_rule("/account/phone", view_func=pages.change_phone, methods=["GET", "POST"])
    if app.config["ALISMS_ADMIN_VIEWS"]:
        bp.add_url_rule("/admin/", view_func=admin.admin_parameters, methods=["GET", "POST"])
        bp.add_url_rule("/admin/test-sms", view_func=admin.admin_test_sms, methods=["GET", "POST"])
        bp.add_url_rule("/admin/log", view_func=admin.admin_log, methods=["GET"])
        bp.add_url_rule("/admin/log.csv", view_func=admin.admin_log_csv, methods=["GET"])
        bp.add_url_rule(
            "/admin/receipts/token", view_func=admin.admin_report_token, methods=["POST"]
        )
        bp.add_url_rule("/admin/check-remote", view_func=admin.admin_recheck, methods=["POST"])
        bp.add_url_rule(
            "/admin/reconciliation", view_func=admin.admin_reconciliation, methods=["GET"]
        )
        bp.add_url_rule(
            "/admin/monitoring", view_func=monitoring_views.admin_monitoring, methods=["GET"]
        )
    return bp


# -- error handlers ---------------------------------------------------------------------------


def _api_error(exc: ApiError) -> Response:
    return exc.response()


def _csrf_failed(exc: CSRFError) -> Any:
    if is_api_request():
        return csrf_error().response()
    return exc


def _unavailable(message: str) -> Any:
    if is_api_request():
        return ApiError(503, "service_unavailable", message).response()
    return render_template("alisms/message.html", title=_("Unavailable"), message=message), 503


def _limiter_down(exc: LimiterUnavailable) -> Any:
    return _unavailable(_("Sending codes is paused for a moment. Please try again shortly."))


def _code_store_down(exc: CodeStoreUnavailable) -> Any:
    return _unavailable(_("Your code could not be saved. Please request a new one in a minute."))


def _database_down(exc: Exception) -> Any:
    """503, and a log line without the exception's text: it carries the SQL parameters."""
    with contextlib.suppress(sa.exc.SQLAlchemyError):  # the teardown removes the session anyway
        get_state().db.session.rollback()
    orig = getattr(exc, "orig", None)
    logger.error(
        "Database unavailable on %s: %s%s",
        request.endpoint,
        type(exc).__name__,
        f" ({type(orig).__module__}.{type(orig).__name__})" if orig is not None else "",
    )
    return _unavailable(_("The service is unavailable for a moment. Please try again shortly."))


def _unreadable_body(exc: Exception) -> Any:
    """A body the server could not decode (bad chunking): the client's fault, a 400."""
    return _http_error(BadRequest(_("The request body could not be read.")))


def _http_error(exc: HTTPException) -> Any:
    if is_api_request():
        name = "too_large" if exc.code == 413 else exc.name.lower().replace(" ", "_")
        return ApiError(exc.code or 500, name, exc.description or exc.name).response()
    return exc
