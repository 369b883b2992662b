"""What every view shares: the API's error type, input checks, headers and safe redirects.

API views raise :class:`ApiError`; the blueprint renders it as ``{"error", "message"}`` JSON.
No helper here returns "a value or a response": a failed check is an exception.
"""

from __future__ import annotations

import importlib
import ipaddress
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Response, current_app, jsonify, request, url_for
from flask_wtf.csrf import validate_csrf
from wtforms import ValidationError

from ..exceptions import AliSMSError, GateClosed, InvalidPhone
from ..i18n import gettext as _
from ..phones import Phone, parse_phone
from ..state import get_state

MAX_JSON_BYTES = 16 * 1024
#: What the extension's routes read at most, whatever the framing (forms are a few KiB).
MAX_REPORT_BYTES = 4 * 1024 * 1024
MAX_BODY_BYTES = 64 * 1024

#: A lost or unreachable database, an exhausted pool: the service, not the request, is at fault
#: (a 503). A host can register the same for its own routes, as the example site does.
DATABASE_DOWN = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)

#: The HTTP status of each stable error code that a flow can raise.
STATUS = {
    "registration_disabled": 403,
    "login_disabled": 403,
    "not_signed_in": 401,
    "reauthentication_required": 401,
    "sms_not_configured": 503,
    "budget_exhausted": 503,
    "weak_password": 422,
    "invalid_code": 400,
    "phone_taken": 409,
    "too_many_attempts": 429,
    "rate_limited": 429,
}


class ApiError(AliSMSError):
    """An API answer other than success: ``status``, a stable ``error`` code and a message."""

    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(f"{status} {error}")
        self.status = status
        self.error = error
        self.message = message
        self.extra = extra
        self.headers: dict[str, str] = {}
        if "retry_after" in extra:
            self.headers["Retry-After"] = str(extra["retry_after"])

    def response(self) -> Response:
        response = jsonify({"error": self.error, "message": self.message, **self.extra})
        response.status_code = self.status
        response.headers.update(self.headers)
        return response


def gate_message(reason: str) -> str:
    """What a user is told when a gate is closed."""
    if reason == "registration_disabled":
        return _("Registration by phone is closed on this site.")
    if reason == "login_disabled":
        return _("Sign-in by SMS code is not available on this site.")
    if reason == "budget_exhausted":
        return _("This site cannot send more SMS codes for now. Please try again later.")
    return _("SMS is not set up on this site yet. Please try again later.")


def gate_error(exc: GateClosed) -> ApiError:
    return ApiError(STATUS[exc.reason], exc.reason, gate_message(exc.reason))


def throttled(retry_after: int, message: str | None = None) -> ApiError:
    return ApiError(
        429,
        "rate_limited",
        message or _("Too many codes were requested. Please wait before trying again."),
        retry_after=retry_after,
    )


def client_ip() -> str:
    """The client as the per-IP limits count it: an IPv4 address, or an IPv6 network.

    One IPv6 client usually holds a whole /64 (``ALISMS_IPV6_PREFIX``), so counting its
    addresses one by one would give it billions of budgets. An IPv4-mapped IPv6 address
    counts as the IPv4 address it carries.
    """
    address = request.remote_addr or "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        bits = current_app.config["ALISMS_IPV6_PREFIX"]
        return str(ipaddress.ip_network(f"{parsed}/{bits}", strict=False))
    return str(parsed)


def is_api_request() -> bool:
    prefix = current_app.config["ALISMS_URL_PREFIX"]
    return request.path.startswith(f"{prefix}/api/")


#: Set on every answer of the extension, replacing what the view set.
_PRIVATE_HEADERS = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))
#: Set unless the view set its own (a widget's wider CSP, for instance).
_DEFAULT_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    (
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    ),
)


def no_store(response: Response) -> Response:
    """Panel pages and API answers are private and must never be cached or framed.

    One look at the headers the view set, then appends: Werkzeug's ``setdefault`` scans
    them once per call (a third of this hook's cost on every API answer).
    """
    headers = response.headers
    present = {key.lower() for key in headers.keys()}  # noqa: SIM118 - iterating gives pairs
    for key, value in _PRIVATE_HEADERS:
        if key.lower() in present:
            headers[key] = value
        else:
            headers.add(key, value)
    for key, value in _DEFAULT_HEADERS:
        if key.lower() not in present:
            headers.add(key, value)
    return response


def bound_request_body(endpoint: str | None = None, values: Any = None) -> None:
    """Put Flask's own request size limit on the extension's routes, before anything reads.

    With a maximum set, Werkzeug reads the server's input through a ``LimitedStream``, which
    turns a read error of the server's stream (a bad chunk size, a body cut short) into
    ``ClientDisconnected``, a 400. The host's smaller ``MAX_CONTENT_LENGTH`` wins.
    Wired as a URL value preprocessor because those run before every ``before_request``
    function, the host's ``CSRFProtect`` (which reads the form) included.
    """
    # Aliyun's receipt push carries up to a few thousand reports in one body.
    limit = MAX_REPORT_BYTES if endpoint and endpoint.endswith(".sms_report") else MAX_BODY_BYTES
    host_limit = request.max_content_length
    if host_limit is None or host_limit > limit:
        request.max_content_length = limit


def server_body_errors() -> tuple[type[Exception], ...]:
    """What the known WSGI servers raise from their input stream besides ``OSError``.

    gunicorn's chunk parser raises ``InvalidChunkSize``, ``ChunkMissingTerminator`` and
    ``InvalidChunkExtension``, subclasses of its ``ParseException``: these get through
    Werkzeug's ``LimitedStream``, so the extension (and a host, for its own routes) maps them
    to a 400. The Werkzeug dev server raises ``OSError``, which the limit already turns into
    a 400.
    """
    try:
        errors = importlib.import_module("gunicorn.http.errors")
    except ImportError:
        return ()
    return (errors.ParseException,)


def json_body() -> dict[str, Any]:
    """The request's JSON object, read up to :data:`MAX_JSON_BYTES` whatever the framing."""
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
        raise ApiError(413, "too_large", _("The request body is too large."))
    try:
        data = current_app.json.loads(raw) if raw else None
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." past the stack's depth
        data = None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", _("Send a JSON object."))
    return data


def csrf_error() -> ApiError:
    return ApiError(
        400,
        "csrf_failed",
        _(
            "Missing or expired CSRF token: get one from GET %(url)s and send it in the "
            "X-CSRFToken header. Registering and resetting a password renew it.",
            url=url_for("alisms.api_csrf_token"),
        ),
    )


def check_csrf_header() -> None:
    try:
        validate_csrf(request.headers.get("X-CSRFToken") or request.headers.get("X-CSRF-Token"))
    except ValidationError:
        raise csrf_error() from None


def phone_from(data: dict[str, Any]) -> Phone:
    try:
        return parse_phone(
            data.get("phone"),
            get_state().params.values().allowed_country_codes,
            country_code=data.get("country_code"),
        )
    except InvalidPhone as exc:
        raise ApiError(400, exc.reason, exc.message) from None


def api_input() -> tuple[dict[str, Any], Phone]:
    """The checks every API POST starts with: a JSON object, the CSRF header, a valid phone."""
    data = json_body()
    check_csrf_header()
    return data, phone_from(data)


def storable(text: str) -> bool:
    """Text every database takes: valid UTF-8 (no lone surrogate) and no NUL (PostgreSQL)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def local_redirect_target(configured: str) -> str:
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
