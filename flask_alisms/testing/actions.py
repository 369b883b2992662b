"""The two API actions' business rules: SendSms's checks and QuerySendDetails's answer.

Why apart from :mod:`.emulator`: these rules are pure functions of the request and of the
accepted messages, so they read (and can be checked) without the emulator's lock, clock or
server; the emulator keeps only what needs state (nonces, flow control, the records).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .signing import KNOWN_MESSAGES, MAX_PHONE_NUMBERS, canonical_number, canonical_or_raw, missing

__all__ = ["AcceptedMessage", "Refused", "check_send_sms", "query_send_details"]

_CHINA_OFFSET = 8 * 3600  # SendDate/ReceiveDate and the SendDate filter are Beijing time.


@dataclass(frozen=True)
class AcceptedMessage:
    """One SendSms request the emulator accepted (what the real service would deliver)."""

    phone_numbers: str
    """``PhoneNumbers`` exactly as the client sent it (one number or a comma list)."""
    sign_name: str
    template_code: str
    template_param: dict[str, str]
    out_id: str | None
    biz_id: str
    request_id: str
    accepted_at: float
    """Seconds since the epoch on the emulator's clock (which :meth:`advance_time` moves)."""

    @property
    def numbers(self) -> tuple[str, ...]:
        """The recipients, canonical (mainland numbers without country prefix)."""
        return tuple(canonical_or_raw(n) for n in self.phone_numbers.split(","))


class Refused(Exception):
    """A business error: HTTP 200 with ``Code``/``Message``/``RequestId``, nothing sent."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.message = message if message is not None else KNOWN_MESSAGES[code]

    def body(self, request_id: str) -> dict[str, Any]:
        """The JSON body the service answers with."""
        return {"Code": self.code, "Message": self.message, "RequestId": request_id}


def check_send_sms(
    params: Mapping[str, str],
    sign_names: Iterable[str],
    templates: Mapping[str, tuple[str, ...]],
) -> tuple[list[str], dict[str, str]]:
    """Apply SendSms's checks in the service's order; raise GatewayError or Refused.

    Returns the canonical recipients, in the order sent, and the template variables.
    """
    for name in ("PhoneNumbers", "SignName", "TemplateCode"):
        if not params.get(name):
            raise missing(name)
    phone_numbers = params["PhoneNumbers"]
    sign_name = params["SignName"]
    template_code = params["TemplateCode"]
    if sign_name not in sign_names:
        raise Refused("isv.SMS_SIGNATURE_ILLEGAL")
    if template_code not in templates:
        raise Refused("isv.SMS_TEMPLATE_ILLEGAL")
    raw_numbers = phone_numbers.split(",")
    if len(raw_numbers) > MAX_PHONE_NUMBERS:
        raise Refused("isv.MOBILE_COUNT_OVER_LIMIT")
    numbers: list[str] = []
    for raw in raw_numbers:
        number = canonical_number(raw.strip())
        if number is None:
            raise Refused("isv.MOBILE_NUMBER_ILLEGAL")
        numbers.append(number)
    template_param: dict[str, str] = {}
    raw_param = params.get("TemplateParam")
    if raw_param:
        try:
            decoded = json.loads(raw_param)
        except ValueError:
            raise Refused("isv.INVALID_JSON_PARAM") from None
        if not isinstance(decoded, dict) or not all(
            isinstance(value, str) for value in decoded.values()
        ):
            raise Refused("isv.INVALID_JSON_PARAM")
        template_param = decoded
    absent = [name for name in templates[template_code] if name not in template_param]
    if absent:
        raise Refused("isv.TEMPLATE_MISSING_PARAMETERS", f"模板缺少变量:{','.join(absent)}")
    return numbers, template_param


def _china_time(epoch: float, fmt: str) -> str:
    return time.strftime(fmt, time.gmtime(epoch + _CHINA_OFFSET))


#: (SendStatus, ErrCode, receive time or None) of one message to one number.
Status = Callable[[AcceptedMessage, str], "tuple[int, str, float | None]"]


def _delivered_after_two_seconds(message: AcceptedMessage, number: str) -> tuple[int, str, float]:
    return 3, "DELIVERED", message.accepted_at + 2


def query_send_details(
    params: Mapping[str, str],
    messages: Iterable[AcceptedMessage],
    request_id: str,
    status: Status = _delivered_after_two_seconds,
) -> dict[str, Any]:
    """Answer QuerySendDetails from ``messages`` (oldest first); raise GatewayError or Refused.

    ``status`` says where each message stands (by default: delivered two seconds after it
    was accepted); a message still waiting has no ReceiveDate.
    """
    for name in ("PhoneNumber", "SendDate", "PageSize", "CurrentPage"):
        if not params.get(name):
            raise missing(name)
    send_date = params["SendDate"]
    if not re.fullmatch(r"\d{8}", send_date):
        raise Refused("isv.INVALID_PARAMETERS", "SendDate must be yyyyMMdd")
    try:
        page_size = int(params["PageSize"])
        current_page = int(params["CurrentPage"])
    except ValueError:
        raise Refused(
            "isv.INVALID_PARAMETERS", "PageSize and CurrentPage must be integers"
        ) from None
    if not 1 <= page_size <= 50 or current_page < 1:
        raise Refused("isv.INVALID_PARAMETERS", "PageSize must be 1-50 and CurrentPage at least 1")
    phone = canonical_or_raw(params["PhoneNumber"])
    biz_id = params.get("BizId")
    details: list[dict[str, Any]] = []
    for message in reversed(list(messages)):
        if phone not in message.numbers:
            continue
        if biz_id and message.biz_id != biz_id:
            continue
        if _china_time(message.accepted_at, "%Y%m%d") != send_date:
            continue
        variables = ", ".join(f"{k}: {v}" for k, v in message.template_param.items())
        send_status, err_code, received = status(message, phone)
        details.append(
            {
                "PhoneNum": phone,
                "SendStatus": send_status,
                "ErrCode": err_code,
                "TemplateCode": message.template_code,
                "Content": f"【{message.sign_name}】{variables}",
                "SendDate": _china_time(message.accepted_at, "%Y-%m-%d %H:%M:%S"),
                "ReceiveDate": ""
                if received is None
                else _china_time(received, "%Y-%m-%d %H:%M:%S"),
                "OutId": message.out_id or "",
            }
        )
    start = (current_page - 1) * page_size
    return {
        "Code": "OK",
        "Message": "OK",
        "RequestId": request_id,
        "TotalCount": len(details),
        "SmsSendDetailDTOs": {"SmsSendDetailDTO": details[start : start + page_size]},
    }
