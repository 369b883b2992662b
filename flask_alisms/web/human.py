"""The human check on the web: the hook the send-code views call, the inline partial and the
captcha picture. The rules themselves are in :mod:`flask_alisms.flows.human`."""

from __future__ import annotations

from typing import Any

from flask import Response, after_this_request, flash, render_template, request
from markupsafe import Markup
from werkzeug.exceptions import NotFound

from ..exceptions import (
    GateClosed,
    HumanCheckRequired,
    HumanCheckUnavailable,
    LimiterUnavailable,
)
from ..flows import verification
from ..i18n import gettext as _
from ..state import get_state
from .http import ApiError, client_ip, gate_error


def refusal_message(reason: str) -> str:
    """What a user is told when the send waits for a (new) solved check."""
    if reason == "missing":
        return _("Please complete the check below, then send the code again.")
    if reason == "wrong":
        return _("That was not right. Please try the new check.")
    return _("The check expired. Please complete the new one.")


def unavailable_message() -> str:
    return _("The human check is not answering right now. Please try again in a minute.")


def human_check_status() -> dict[str, Any]:
    """What ``/api/status`` tells a client about the check: the mode, the kind of puzzle and
    whether this client's next send-code must bring a solved one (so a SPA shows it first).
    A limiter that does not answer makes it ``required``: showing a puzzle is the safe side.
    """
    gate = get_state().human
    mode = get_state().params.values().mode
    try:
        required = gate.required(_subject(client_ip()))
    except LimiterUnavailable:
        required = mode != "off"
    return {"mode": mode, "kind": gate.check.kind, "required": required}


def require_human_check_api(data: dict[str, Any], purpose: str) -> None:
    """Raise the API's answer unless this send-code may go on.

    A closed gate answers first (nobody is asked to solve a puzzle for nothing); then, when
    the mode asks for it, the session's challenge is spent on ``data["human_check"]``.
    """
    state = get_state()
    try:
        verification.check_gate(purpose, state)
    except GateClosed as exc:
        raise gate_error(exc) from None
    gate = state.human
    ip = client_ip()
    if gate.never() or not gate.required(_subject(ip)):
        return
    try:
        gate.consume(data.get("human_check"), ip)
    except HumanCheckUnavailable:
        raise ApiError(503, "human_check_unavailable", unavailable_message()) from None
    except HumanCheckRequired as exc:
        message, challenge = refusal_message(exc.reason), gate.new_challenge()
        if exc.reason == "missing":
            raise ApiError(
                400, "human_check_required", message, reason=exc.reason, human_check=challenge
            ) from None
        raise ApiError(
            400, "human_check_failed", message, reason=exc.reason, human_check=challenge
        ) from None


def require_human_check_page() -> tuple[int, dict[str, str], int] | None:
    """For the HTML pages: None when the send may go on, else (status, headers, 0) with the
    reason flashed; the page then shows a new challenge through :func:`human_check_widget`."""
    gate = get_state().human
    ip = client_ip()
    if not gate.required(_subject(ip)):
        return None
    try:
        gate.consume(request.form.get(gate.check.form_field), ip)
    except HumanCheckUnavailable:
        flash(unavailable_message(), "error")
        return 503, {}, 0
    except HumanCheckRequired as exc:
        flash(refusal_message(exc.reason), "error")
        return 400, {}, 0
    return None


def human_check_widget() -> Markup:
    """The challenge to show inside a send-code form, or nothing when none is needed now.

    A template global of the blueprint's pages; each call starts a new challenge. A widget
    from another origin (Turnstile, hCaptcha) widens this response's CSP for it alone.
    """
    gate = get_state().human
    try:
        if not gate.required(_subject(client_ip())):
            return Markup("")
    except LimiterUnavailable:
        return Markup("")  # the page still shows; "Send code" then answers 503 as the limits do
    challenge = gate.new_challenge()
    policy = gate.check.content_security_policy()
    if policy is not None:

        @after_this_request
        def allow_widget(response: Response) -> Response:
            response.headers["Content-Security-Policy"] = policy
            return response

    return Markup(  # noqa: S704 - an autoescaped template's output
        render_template(
            gate.check.template, human_check=challenge, field_name=gate.check.form_field
        )
    )


def human_check_context() -> dict[str, Any]:
    return {"alisms_human_check": human_check_widget}


def human_check_image(nonce: str) -> Response:
    """The captcha picture of this session's live challenge; 404 for any other."""
    picture = get_state().human.image(nonce)
    if picture is None:
        raise NotFound()
    return Response(picture, mimetype="image/png")


def _subject(ip: str) -> str:
    """The client as the send limits key it (a keyed digest), to read its usage."""
    return get_state().keyring.subject_digest("client", ip)
