"""``POST {prefix}/hooks/sms-report?token=...``: Aliyun's delivery receipts pushed to the site.

Why its own module: the caller is Aliyun, not a browser. There is no session and no CSRF
token (the blueprint exempts this view from a host's CSRFProtect); the secret token in the
URL, compared in constant time, is what proves the caller. Aliyun retries any answer other
than HTTP 200 with ``{"code": 0}``, so every refusal stores nothing at all.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, current_app, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from ..flows import receipts
from ..state import get_state
from .http import MAX_REPORT_BYTES, storable

logger = logging.getLogger(__name__)

#: A thousand reports take about 300 KB; leave room, refuse anything far beyond.


def _answer(status: int, code: int, msg: str) -> Response:
    response = jsonify({"code": code, "msg": msg})
    response.status_code = status
    return response


def _body() -> bytes | None:
    """The body up to the cap (whatever the framing), or None when it is over the cap."""
    if (request.content_length or 0) > MAX_REPORT_BYTES:
        return None
    raw = b""
    while len(raw) <= MAX_REPORT_BYTES:
        chunk = request.stream.read(MAX_REPORT_BYTES + 1 - len(raw))
        if not chunk:
            break
        raw += chunk
    return raw if len(raw) <= MAX_REPORT_BYTES else None


def sms_report() -> Response:
    """Store a pushed batch of SmsReport receipts; see the module docstring."""
    state = get_state()
    token = request.args.get("token", "")
    if not isinstance(token, str) or not storable(token) or not receipts.token_matches(
        state, token
    ):
        return _answer(403, 1, "forbidden")
    raw = _body()
    if raw is None:
        return _answer(413, 1, "body too large")
    try:
        data: Any = current_app.json.loads(raw) if raw else None
        reports = receipts.parse_reports(state, data)
    except (ValueError, RecursionError) as exc:  # MalformedReport is a ValueError
        message = str(exc) if isinstance(exc, receipts.MalformedReport) else "invalid JSON"
        return _answer(400, 1, message)
    try:
        added = receipts.store_reports(state, reports, source="push")
    except SQLAlchemyError as exc:  # Aliyun retries later; nothing half-stored
        state.db.session.rollback()
        logger.error("Could not store delivery receipts: %s", type(exc).__name__)
        return _answer(503, 1, "storage unavailable, retry later")
    logger.info("Stored %d new delivery receipt(s) of %d pushed", added, len(reports))
    return _answer(200, 0, "接收成功")
