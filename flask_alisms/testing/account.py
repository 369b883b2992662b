"""The emulator's account actions: signature and template reviews, and send statistics.

Why apart from :mod:`.emulator`: like :mod:`.actions`, these answers are pure functions of the
request and of what the emulator holds, so they can be read and tested on their own.

- ``QuerySmsSign`` / ``GetSmsSign``: ``SignStatus`` 0 reviewing, 1 approved, 2 rejected (with
  ``Reason``); the Get* form also ``AuditStatus`` (``AUDIT_STATE_INIT`` / ``_PASS`` /
  ``_NOT_PASS``) and ``AuditInfo.RejectInfo``. An unknown name is a business error.
- ``QuerySmsTemplate`` / ``GetSmsTemplate``: the same states, ``TemplateContent`` and
  ``TemplateType`` (0 verification code).
- ``QuerySendStatistics``: per Beijing day, counted from the accepted messages (mainland
  numbers for ``IsGlobe`` 1, others for 2), unless a test set a day's figures itself.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .actions import AcceptedMessage, Refused
from .signing import missing

__all__ = [
    "AccountActions",
    "Review",
    "query_send_statistics",
    "query_sign",
    "query_template",
]

_AUDIT = {0: "AUDIT_STATE_INIT", 1: "AUDIT_STATE_PASS", 2: "AUDIT_STATE_NOT_PASS"}
_CHINA = dt.timezone(dt.timedelta(hours=8))


@dataclass(frozen=True)
class Review:
    """A signature's or template's review as the console would show it."""

    status: int = 1  # 0 reviewing, 1 approved, 2 rejected
    reason: str = ""
    content: str = ""  # templates only
    template_type: int = 0


def template_text(variables: Iterable[str]) -> str:
    """A plausible code-template text with these variables."""
    names = list(variables)
    if not names:
        return "您的账户已完成注册。"
    return "您的验证码为" + "".join(f"${{{n}}}" for n in names) + "，5分钟内有效，请勿泄露。"


def query_sign(
    params: Mapping[str, str], reviews: Mapping[str, Review], request_id: str, *, newer: bool
) -> dict[str, Any]:
    name = params.get("SignName")
    if not name:
        raise missing("SignName")
    review = reviews.get(name)
    if review is None:
        raise Refused("isv.SMS_SIGN_ILLEGAL", "该账号下找不到对应签名")
    body: dict[str, Any] = {
        "Code": "OK",
        "Message": "OK",
        "RequestId": request_id,
        "SignName": name,
        "SignStatus": review.status,
        "CreateDate": "2024-01-02 10:00:00",
    }
    return {**body, **_review_fields(review, newer)}


def _review_fields(review: Review, newer: bool) -> dict[str, Any]:
    """How a review's outcome is told: Get* (``newer``) and Query* name it differently."""
    if newer:
        return {
            "AuditStatus": _AUDIT[review.status],
            "AuditInfo": {"RejectInfo": review.reason, "AuditDate": "2024-01-03 10:00:00"},
        }
    return {"Reason": review.reason or "无审批备注"}


def query_template(
    params: Mapping[str, str], reviews: Mapping[str, Review], request_id: str, *, newer: bool
) -> dict[str, Any]:
    code = params.get("TemplateCode")
    if not code:
        raise missing("TemplateCode")
    review = reviews.get(code)
    if review is None:
        raise Refused("isv.SMS_TEMPLATE_ILLEGAL")
    body: dict[str, Any] = {
        "Code": "OK",
        "Message": "OK",
        "RequestId": request_id,
        "TemplateCode": code,
        "TemplateName": "验证码",
        "TemplateStatus": review.status,
        "TemplateContent": review.content,
        "TemplateType": review.template_type,
        "CreateDate": "2024-01-02 10:00:00",
    }
    return {**body, **_review_fields(review, newer)}


def query_send_statistics(
    params: Mapping[str, str],
    messages: Iterable[AcceptedMessage],
    overrides: Mapping[tuple[str, int], tuple[int, int, int, int]],
    request_id: str,
) -> dict[str, Any]:
    """Daily totals between StartDate and EndDate (``yyyyMMdd``, Beijing), newest first."""
    for name in ("IsGlobe", "StartDate", "EndDate", "PageIndex", "PageSize"):
        if not params.get(name):
            raise missing(name)
    if params["IsGlobe"] not in ("1", "2"):
        raise Refused("isv.INVALID_PARAMETERS", "IsGlobe must be 1 or 2")
    scope = int(params["IsGlobe"])
    start, end = params["StartDate"], params["EndDate"]
    if not (re.fullmatch(r"\d{8}", start) and re.fullmatch(r"\d{8}", end)) or start > end:
        raise Refused("isv.INVALID_PARAMETERS", "StartDate and EndDate must be yyyyMMdd")
    try:
        index, size = int(params["PageIndex"]), int(params["PageSize"])
    except ValueError:
        raise Refused("isv.INVALID_PARAMETERS", "PageIndex and PageSize must be integers") from None
    if index < 1 or not 1 <= size <= 50:
        raise Refused("isv.INVALID_PARAMETERS", "PageSize must be 1-50, PageIndex at least 1")
    counted: dict[str, int] = {}
    for message in messages:
        day = dt.datetime.fromtimestamp(message.accepted_at, _CHINA).strftime("%Y%m%d")
        for number in message.numbers:
            domestic = len(number) == 11 and number.startswith("1")
            if (scope == 1) == domestic:
                counted[day] = counted.get(day, 0) + 1
    figures = {day: (n, n, 0, 0) for day, n in counted.items()}
    figures.update({day: f for (day, s), f in overrides.items() if s == scope})
    rows = [
        {
            "SendDate": day,
            "TotalCount": total,
            "RespondedSuccessCount": success,
            "RespondedFailCount": failed,
            "NoRespondedCount": waiting,
        }
        for day, (total, success, failed, waiting) in sorted(figures.items(), reverse=True)
        if start <= day <= end
    ]
    first = (index - 1) * size
    return {
        "Code": "OK",
        "Message": "OK",
        "RequestId": request_id,
        "Data": {"TotalSize": len(rows), "TargetList": rows[first : first + size]},
    }


Handler = Callable[[Mapping[str, str], str], dict[str, Any]]


class AccountActions:
    """The emulator's side of the account actions: review states and statistics overrides.

    Every signature starts approved and every template approved with a text holding its
    variables; tests change them with :meth:`set_sign_review` / :meth:`set_template_review`.
    """

    _lock: threading.RLock
    _messages: list[AcceptedMessage]

    def _setup_account(self, sign_names: Iterable[str], templates: Mapping[str, Any]) -> None:
        self.sign_reviews: dict[str, Review] = {name: Review() for name in sign_names}
        self.template_reviews: dict[str, Review] = {
            code: Review(content=template_text(names)) for code, names in templates.items()
        }
        self._statistics: dict[tuple[str, int], tuple[int, int, int, int]] = {}
        #: False answers every account action with isp.RAM_PERMISSION_DENY, as for a RAM
        #: user with a send-only policy.
        self.read_access = True

    sign_names: frozenset[str]
    templates: dict[str, tuple[str, ...]]

    def set_sign_review(self, name: str, status: int = 1, reason: str = "") -> None:
        """Set a signature's review: 0 reviewing, 1 approved, 2 rejected (with ``reason``).

        A new name joins the account; SendSms refuses it until it is approved.
        """
        with self._lock:
            self.sign_names = self.sign_names | {name}
            self.sign_reviews[name] = Review(status, reason)

    def set_template_review(
        self,
        code: str,
        status: int = 1,
        reason: str = "",
        *,
        content: str | None = None,
        template_type: int = 0,
    ) -> None:
        """Set a template's review state and, optionally, its text."""
        with self._lock:
            old = self.template_reviews.get(code)
            text = content if content is not None else (old.content if old else "")
            self.template_reviews[code] = Review(status, reason, text, template_type)
            if content is not None or code not in self.templates:
                # SendSms then wants the variables the text names.
                self.templates[code] = tuple(re.findall(r"\$\{([^}]*)\}", text))

    def _check_reviews(self, params: Mapping[str, str]) -> None:
        """SendSms refuses a signature or template that is not approved (yet)."""
        with self._lock:
            sign = self.sign_reviews.get(params.get("SignName", ""))
            template = self.template_reviews.get(params.get("TemplateCode", ""))
        if sign is not None and sign.status != 1:
            raise Refused("isv.SMS_SIGNATURE_ILLEGAL")
        if template is not None and template.status != 1:
            raise Refused("isv.SMS_TEMPLATE_ILLEGAL")

    def set_statistics(
        self,
        day: dt.date,
        total: int,
        success: int | None = None,
        failed: int = 0,
        no_response: int = 0,
        *,
        international: bool = False,
    ) -> None:
        """Make QuerySendStatistics report these figures for ``day`` (Beijing date)."""
        with self._lock:
            self._statistics[(day.strftime("%Y%m%d"), 2 if international else 1)] = (
                total,
                total - failed - no_response if success is None else success,
                failed,
                no_response,
            )

    def _account_handlers(self) -> dict[str, Handler]:
        def readable(handler: Handler) -> Handler:
            def handle(params: Mapping[str, str], request_id: str) -> dict[str, Any]:
                if not self.read_access:
                    raise Refused("isp.RAM_PERMISSION_DENY")
                return handler(params, request_id)

            return handle

        def sign(newer: bool) -> Handler:
            def handle(params: Mapping[str, str], request_id: str) -> dict[str, Any]:
                with self._lock:
                    return query_sign(params, self.sign_reviews, request_id, newer=newer)

            return handle

        def template(newer: bool) -> Handler:
            def handle(params: Mapping[str, str], request_id: str) -> dict[str, Any]:
                with self._lock:
                    return query_template(params, self.template_reviews, request_id, newer=newer)

            return handle

        def statistics(params: Mapping[str, str], request_id: str) -> dict[str, Any]:
            with self._lock:
                overrides, messages = dict(self._statistics), list(self._messages)
            return query_send_statistics(params, messages, overrides, request_id)

        handlers = {
            "QuerySmsSign": sign(False),
            "GetSmsSign": sign(True),
            "QuerySmsTemplate": template(False),
            "GetSmsTemplate": template(True),
            "QuerySendStatistics": statistics,
        }
        return {action: readable(handler) for action, handler in handlers.items()}
