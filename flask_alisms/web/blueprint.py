"""``create_blueprint``: wires the module-level views of :mod:`.api`, :mod:`.pages` and
:mod:`.admin` to URLs, with the error handlers that turn failures into clean answers.

A host replaces one view after ``init_app`` with
``app.view_functions["alisms.register"] = my_register`` (the endpoint names are the view
functions' names), or wraps the original, imported from :mod:`.api`, :mod:`.pages` or
:mod:`.admin`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from ..exceptions import CodeStoreUnavailable, LimiterUnavailable
from ..i18n import gettext as _
from ..i18n import install as install_i18n
from . import admin, api, human, pages
from .http import ApiError, csrf_error, is_api_request, no_store

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
    bp.after_request(no_store)
    bp.register_error_handler(ApiError, _api_error)
    bp.register_error_handler(CSRFError, _csrf_failed)
    bp.register_error_handler(LimiterUnavailable, _limiter_down)
    bp.register_error_handler(CodeStoreUnavailable, _code_store_down)
    bp.register_error_handler(HTTPException, _http_error)
    bp.context_processor(human.human_check_context)

    bp.add_url_rule(
        "/api/", "api_fallback", api.api_fallback, defaults={"rest": ""}, methods=_API_METHODS
    )
    bp.add_url_rule("/api/<path:rest>", "api_fallback", api.api_fallback, methods=_API_METHODS)
    bp.add_url_rule("/api/csrf-token", view_func=api.api_csrf_token, methods=["GET"])
    bp.add_url_rule("/api/status", view_func=api.api_status, methods=["GET"])
    bp.add_url_rule("/api/send-code", view_func=api.api_send_code, methods=["POST"])
    bp.add_url_rule("/api/register", view_func=api.api_register, methods=["POST"])
    bp.add_url_rule("/api/reset-password", view_func=api.api_reset_password, methods=["POST"])
    bp.add_url_rule(
        "/human-check/image/<nonce>", view_func=human.human_check_image, methods=["GET"]
    )

    if app.config["ALISMS_USER_VIEWS"]:
        bp.add_url_rule("/register", view_func=pages.register, methods=["GET", "POST"])
        bp.add_url_rule(
            "/reset-password", view_func=pages.reset_password, methods=["GET", "POST"]
        )
    if app.config["ALISMS_ADMIN_VIEWS"]:
        bp.add_url_rule("/admin/", view_func=admin.admin_parameters, methods=["GET", "POST"])
        bp.add_url_rule("/admin/test-sms", view_func=admin.admin_test_sms, methods=["GET", "POST"])
        bp.add_url_rule("/admin/log", view_func=admin.admin_log, methods=["GET"])
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


def _http_error(exc: HTTPException) -> Any:
    if is_api_request():
        name = exc.name.lower().replace(" ", "_")
        return ApiError(exc.code or 500, name, exc.description or exc.name).response()
    return exc
