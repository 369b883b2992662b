"""Budget alert webhooks: the body for each format, DingTalk's signature, the background POST.

Why a thread: a webhook is a third party's server; the request that crossed a threshold (a
user asking for a code, Aliyun pushing receipts) must not wait for it or fail with it. The
POST runs in a daemon thread with a short timeout, and a failure is a warning in the log that
names the host only: the URL's path and query hold the robot's token.

Formats: ``generic`` (a JSON object, see :func:`body`), ``dingtalk`` and ``wecom`` (their
group robots' ``{"msgtype": "text", "text": {"content": ...}}``). DingTalk robots with the
"sign" security setting need ``timestamp`` and ``sign`` query parameters: base64 of
HMAC-SHA256(secret, timestamp + "\\n" + secret), the timestamp in milliseconds.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote_plus, urlsplit

from ..i18n import catalogue, normalise

logger = logging.getLogger(__name__)

#: Seconds to connect and, again, to read the answer.
TIMEOUT = 5.0
FORMATS = ("generic", "dingtalk", "wecom")
_HOSTS = {"oapi.dingtalk.com": "dingtalk", "qyapi.weixin.qq.com": "wecom"}
_threads: set[threading.Thread] = set()
_lock = threading.Lock()


@dataclass(frozen=True)
class Alert:
    """One threshold crossed: what the signal, the banner and the webhook tell."""

    period: str  # "day" or "month"
    start: dt.date
    percent: int
    spent: Decimal  # committed spend when it fired, CNY
    budget: Decimal


def format_for(url: str, chosen: str) -> str:
    """The admin's choice, else the one the URL's host implies, else ``generic``."""
    if chosen in FORMATS:
        return chosen
    return _HOSTS.get((urlsplit(url).hostname or "").lower(), "generic")


def money(value: Decimal) -> str:
    """CNY with two decimals, or more when the amount has them (0.135 stays 0.135)."""
    cents = value.quantize(Decimal("0.01"))
    return str(cents) if cents == value else format(value.normalize(), "f")


def text(alert: Alert, site: str, language: str | None) -> str:
    """The robot message, in ``language`` (ALISMS_LANGUAGE; Simplified Chinese without it)."""
    translations = catalogue((normalise(language) if language else None) or "zh_Hans")
    values = {
        "site": site,
        "percent": alert.percent,
        "spent": money(alert.spent),
        "budget": money(alert.budget),
        "start": alert.start.isoformat(),
    }
    if alert.period == "day":
        message = translations.gettext(
            "SMS budget alert (%(site)s): today's spend has reached %(percent)s%% of the daily "
            "budget: %(spent)s of %(budget)s CNY (day %(start)s)."
        )
    else:
        message = translations.gettext(
            "SMS budget alert (%(site)s): this month's spend has reached %(percent)s%% of the "
            "monthly budget: %(spent)s of %(budget)s CNY (month from %(start)s)."
        )
    try:
        return message % values
    except (KeyError, ValueError, TypeError):  # a host's translation that does not fit
        return f"SMS budget alert ({site}): {alert.percent}% of the {alert.period} budget"


def body(alert: Alert, kind: str, site: str, language: str | None) -> dict[str, Any]:
    """The JSON the webhook receives."""
    if kind in ("dingtalk", "wecom"):
        return {"msgtype": "text", "text": {"content": text(alert, site, language)}}
    return {
        "event": "budget_alert",
        "period": alert.period,
        "percent": alert.percent,
        "spent": money(alert.spent),
        "budget": money(alert.budget),
        "currency": "CNY",
        "start": alert.start.isoformat(),
        "site": site,
    }


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's ``sign``: base64(HMAC-SHA256(secret, "timestamp\\nsecret")), not URL-quoted."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signed_url(url: str, secret: str, now: float | None = None) -> str:
    timestamp = int((time.time() if now is None else now) * 1000)
    separator = "&" if urlsplit(url).query else ("" if url.endswith("?") else "?")
    sign = quote_plus(dingtalk_sign(secret, timestamp))
    return f"{url}{separator}timestamp={timestamp}&sign={sign}"


def post_in_background(url: str, payload: dict[str, Any], *, kind: str, secret: str) -> None:
    """POST ``payload`` to ``url`` from a daemon thread; never raises, never blocks."""
    if kind == "dingtalk" and secret:
        url = signed_url(url, secret)
    thread = threading.Thread(
        target=_post, args=(url, payload), name="alisms-budget-alert", daemon=True
    )
    with _lock:
        _threads.add(thread)
    thread.start()


def wait(timeout: float = TIMEOUT * 2 + 1) -> None:
    """Wait for the webhooks still being sent (the CLI, before it exits; tests)."""
    deadline = time.monotonic() + timeout
    with _lock:
        pending = list(_threads)
    for thread in pending:
        thread.join(max(0.0, deadline - time.monotonic()))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A robot answers where it was asked; a redirect is an error, not a new destination."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _post(url: str, payload: dict[str, Any]) -> None:
    host = urlsplit(url).hostname or "?"
    data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(  # noqa: S310 - the admin's http(s) URL, checked
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with _OPENER.open(request, timeout=TIMEOUT) as answer:
            raw = answer.read(64 * 1024)
        error = _robot_error(raw)
        if error is not None:
            logger.warning("Budget alert webhook on %s refused the message: %s", host, error)
        else:
            logger.info("Budget alert sent to the webhook on %s", host)
    except urllib.error.HTTPError as exc:
        logger.warning("Budget alert webhook on %s answered HTTP %s", host, exc.code)
    except Exception as exc:  # a dead server, DNS, TLS, timeout: a warning, nothing more
        # The type only: some messages repeat the URL, whose path holds the robot's token.
        logger.warning("Budget alert webhook on %s failed: %s", host, type(exc).__name__)
    finally:
        with _lock:
            _threads.discard(threading.current_thread())


def _robot_error(raw: bytes) -> str | None:
    """DingTalk and WeCom answer HTTP 200 with ``errcode``; anything else is fine."""
    try:
        answer = json.loads(raw.decode("utf-8"))
    except ValueError:
        return None
    if isinstance(answer, dict) and answer.get("errcode") not in (None, 0):
        return f"errcode {answer.get('errcode')!s:.20}"
    return None
