"""Read-only questions to Alibaba Cloud about the account: signature, template, statistics.

Why: a wrong AccessKey secret or an unapproved template otherwise shows up only when the first
user asks for a code. QuerySmsSign / QuerySmsTemplate (or the newer GetSmsSign /
GetSmsTemplate) are signed like SendSms, so a wrong key fails them the same way, and they send
nothing. QuerySendStatistics gives Aliyun's daily totals for reconciliation.

The calls go through the :class:`~.aliyun.AliyunSender`'s cached client (same endpoint, proxy
rules and log redaction) with short per-request timeouts: a check must never make a panel save
slow. Like the sender, nothing here raises for an Aliyun or network outcome, and no answer
carries the secret.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import time
from dataclasses import dataclass, field
from typing import Any

from .advice import Category, explain
from .aliyun import AliyunSender
from .base import Credentials, elapsed_ms
from .redaction import describe_transport_failure, gateway_message, scrub

__all__ = [
    "AccountQueries",
    "Answer",
    "DayStatistics",
    "Review",
    "Verdict",
]

#: Seconds; a check runs while an admin waits for the page after saving.
DEFAULT_CHECK_TIMEOUT = 3.0
#: Aliyun's review states (SignStatus / TemplateStatus).
_REVIEW = {0: "pending", 1: "approved", 2: "rejected"}
#: GetSmsSign / GetSmsTemplate spell the same states as AuditStatus.
_AUDIT = {
    "AUDIT_STATE_INIT": "pending",
    "AUDIT_STATE_PASS": "approved",
    "AUDIT_STATE_NOT_PASS": "rejected",
    "AUDIT_STATE_CANCEL": "rejected",
}


class Verdict(str, enum.Enum):
    """What one answer means for the setup checklist."""

    OK = "ok"
    """Aliyun answered and the thing checked is fine."""
    BAD = "bad"
    """Aliyun answered and something is wrong: the admin must act (a red line)."""
    UNKNOWN = "unknown"
    """No usable answer (network, timeout, Aliyun-side error, no read permission)."""


@dataclass(frozen=True)
class Answer:
    """One Dysmsapi call's outcome: ``code`` is ``OK``, Aliyun's code or an ``SDK.*`` code."""

    code: str
    message: str
    http_status: int | None
    request_id: str | None
    duration_ms: float
    data: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.code == "OK"

    @property
    def category(self) -> Category | None:
        return None if self.ok else explain(self.code, self.http_status).category

    @property
    def reached(self) -> bool:
        """Aliyun authenticated the call and gave a business answer.

        False for transport failures, Aliyun-side errors and throttling, and for an AccessKey
        Aliyun refused (then :attr:`key_refused` is True).
        """
        return self.ok or self.category not in (
            Category.NETWORK,
            Category.AUTHENTICATION,
            Category.RATE_LIMIT,
            Category.PERMISSION,
        )

    @property
    def key_refused(self) -> bool:
        """The AccessKey ID or secret is wrong or disabled."""
        return self.category is Category.AUTHENTICATION

    @property
    def needs_read_access(self) -> bool:
        """The key works but its RAM policy does not allow this read-only call."""
        return self.category is Category.PERMISSION


@dataclass(frozen=True)
class Review:
    """A signature or template as Aliyun knows it."""

    answer: Answer
    state: str | None  # "approved", "pending", "rejected", or None when unknown / missing
    reason: str = ""
    content: str | None = None  # the template's text, when Aliyun returns it
    template_type: int | None = None

    @property
    def exists(self) -> bool:
        return self.answer.ok


@dataclass(frozen=True)
class DayStatistics:
    """One day of QuerySendStatistics (Beijing date)."""

    day: dt.date
    total: int
    success: int
    failed: int
    no_response: int


class AccountQueries:
    """Ask Dysmsapi about the account with the sender's client and short timeouts."""

    def __init__(self, sender: AliyunSender, *, timeout: float = DEFAULT_CHECK_TIMEOUT) -> None:
        self.sender = sender
        self.connect_timeout = min(timeout, sender.connect_timeout)
        self.read_timeout = min(timeout, sender.read_timeout)

    # -- the questions ---------------------------------------------------------------------

    def sign(self, credentials: Credentials, sign_name: str, *, newer_api: bool = False) -> Review:
        """Whether ``sign_name`` exists in this account and how its review went."""
        action = "GetSmsSign" if newer_api else "QuerySmsSign"
        answer = self.call(credentials, action, {"SignName": sign_name})
        return _review(answer, "SignStatus")

    def template(
        self, credentials: Credentials, template_code: str, *, newer_api: bool = False
    ) -> Review:
        """Whether ``template_code`` exists, its review state and its text."""
        action = "GetSmsTemplate" if newer_api else "QuerySmsTemplate"
        answer = self.call(credentials, action, {"TemplateCode": template_code})
        review = _review(answer, "TemplateStatus")
        content = answer.data.get("TemplateContent")
        kind = _int_or_none(answer.data.get("TemplateType"))
        return Review(
            answer,
            review.state,
            review.reason,
            content if isinstance(content, str) else None,
            kind,
        )

    def statistics(
        self,
        credentials: Credentials,
        start: dt.date,
        end: dt.date,
        *,
        international: bool = False,
        max_pages: int = 10,
    ) -> tuple[Answer, list[DayStatistics]]:
        """Aliyun's daily totals from ``start`` to ``end`` (Beijing dates, inclusive).

        Returns the last answer (not OK when a page failed; the days read so far are kept)
        and the days, oldest first.
        """
        days: dict[dt.date, DayStatistics] = {}
        answer: Answer | None = None
        for page in range(1, max_pages + 1):
            answer = self.call(
                credentials,
                "QuerySendStatistics",
                {
                    "IsGlobe": "2" if international else "1",
                    "StartDate": start.strftime("%Y%m%d"),
                    "EndDate": end.strftime("%Y%m%d"),
                    "PageIndex": str(page),
                    "PageSize": "50",
                },
            )
            if not answer.ok:
                break
            data = answer.data.get("Data")
            rows = data.get("TargetList") if isinstance(data, dict) else None
            if not isinstance(rows, list):
                break
            for row in rows:
                day = _day(row)
                if day is not None:
                    days[day.day] = day
            total = _int_or_none(data.get("TotalSize")) if isinstance(data, dict) else None
            if len(rows) < 50 or total is None or page * 50 >= total:
                break
        assert answer is not None  # max_pages >= 1
        return answer, sorted(days.values(), key=lambda item: item.day)

    # -- one call --------------------------------------------------------------------------

    def call(self, credentials: Credentials, action: str, params: dict[str, str]) -> Answer:
        """One signed Dysmsapi call; never raises for an Aliyun or network outcome."""
        start = time.perf_counter()
        if not credentials.access_key_id or not credentials.access_key_secret:
            return Answer("SDK.InvalidCredential", "no AccessKey configured", None, None, 0.0)
        secrets = [credentials.access_key_secret]
        try:
            request = self._request(action, params)
            client = self.sender.client_for(credentials)
            return self._exchange(client, request, secrets, start)
        except Exception as exc:  # the contract is "never raise"
            return Answer(
                "SDK.UnexpectedError",
                f"unexpected {type(exc).__name__} in the Aliyun SDK",
                None,
                None,
                elapsed_ms(start),
            )

    def _request(self, action: str, params: dict[str, str]) -> Any:
        request: Any
        if action in _REQUEST_CLASSES:
            module = __import__(
                f"aliyunsdkdysmsapi.request.v20170525.{action}Request", fromlist=["_"]
            )
            request = getattr(module, f"{action}Request")()
        else:  # the installed SDK has no class for the newer actions: a signed CommonRequest
            from aliyunsdkcore.request import CommonRequest

            request = CommonRequest(version="2017-05-25", action_name=action, product="Dysmsapi")
            request.set_method("POST")
        self.sender.target(request)
        for name, value in params.items():
            request.add_query_param(name, value)
        request.set_connect_timeout(self.connect_timeout)
        request.set_read_timeout(self.read_timeout)
        return request

    def _exchange(self, client: Any, request: Any, secrets: list[str], start: float) -> Answer:
        from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException

        try:
            body = client.do_action_with_exception(request)
        except ServerException as exc:
            code = exc.get_error_code() or "SDK.UnknownServerError"
            text = scrub(gateway_message(exc.get_error_msg()), secrets, "")
            return Answer(
                code, text, exc.get_http_status(), exc.get_request_id(), elapsed_ms(start)
            )
        except ClientException as exc:
            code = exc.get_error_code() or "SDK.HttpError"
            if code == "SDK.HttpError":
                text = describe_transport_failure(exc.get_error_msg())
            else:
                text = scrub(gateway_message(exc.get_error_msg()), secrets, "")
            return Answer(code, text, None, None, elapsed_ms(start))
        except IndexError:  # the SDK's own crash on a SignatureDoesNotMatch without ':'
            return Answer(
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation.",
                400,
                None,
                elapsed_ms(start),
            )
        try:
            data = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
        except (ValueError, TypeError, AttributeError):
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("Code"), str):
            return Answer(
                "SDK.InvalidResponse",
                "the answer is not the expected JSON object",
                200,
                None,
                elapsed_ms(start),
            )
        message = data.get("Message")
        return Answer(
            data["Code"],
            scrub(message if isinstance(message, str) else "", secrets, ""),
            200,
            data.get("RequestId") if isinstance(data.get("RequestId"), str) else None,
            elapsed_ms(start),
            data,
        )


_REQUEST_CLASSES = ("QuerySmsSign", "QuerySmsTemplate", "QuerySendStatistics")


def _review(answer: Answer, status_field: str) -> Review:
    if not answer.ok:
        return Review(answer, None)
    data = answer.data
    state = _AUDIT.get(str(data.get("AuditStatus") or ""))
    if state is None:
        number = _int_or_none(data.get(status_field))
        state = _REVIEW.get(number) if number is not None else None
    reason = data.get("Reason")
    audit = data.get("AuditInfo")
    if isinstance(audit, dict) and audit.get("RejectInfo"):
        reason = audit.get("RejectInfo")
    text = reason if isinstance(reason, str) and state == "rejected" else ""
    return Review(answer, state, text[:300])


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _day(row: Any) -> DayStatistics | None:
    if not isinstance(row, dict):
        return None
    try:
        day = dt.datetime.strptime(str(row.get("SendDate")), "%Y%m%d").date()
    except ValueError:
        return None
    figures = [
        _int_or_none(row.get(name)) or 0
        for name in (
            "TotalCount",
            "RespondedSuccessCount",
            "RespondedFailCount",
            "NoRespondedCount",
        )
    ]
    return DayStatistics(day, *figures)
