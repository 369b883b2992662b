"""QuerySendDetails through the official SDK: the delivery state of one sent message.

Why a client of its own: polling is for sites Aliyun cannot push receipts to. It reuses the
:class:`~.aliyun.AliyunSender`'s cached ``AcsClient`` (one keep-alive connection for a whole
sync run) and its endpoint, so tests reach the emulator exactly as sends do. One call asks
about one number, as the API demands; nothing here logs the number unmasked.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .aliyun import AliyunSender
from .base import Credentials
from .redaction import describe_transport_failure, gateway_message, scrub

__all__ = ["DeliveryDetail", "ReceiptQueryError", "query_send_details"]

#: ``SendStatus`` values: 1 waiting for the carrier's receipt, 2 failed, 3 delivered.
WAITING, FAILED, DELIVERED = 1, 2, 3
MAX_PAGE_SIZE = 50


class ReceiptQueryError(Exception):
    """QuerySendDetails did not answer ``OK``: Aliyun's (or the SDK's) code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class DeliveryDetail:
    """One ``SmsSendDetailDTO``: what Aliyun knows of one message to the number asked about."""

    status: int
    err_code: str
    send_date: str
    receive_date: str
    out_id: str


def query_send_details(
    sender: AliyunSender,
    credentials: Credentials,
    *,
    phone: str,
    send_date: str,
    biz_id: str | None = None,
    page: int = 1,
    page_size: int = 10,
) -> tuple[int, list[DeliveryDetail]]:
    """One QuerySendDetails call: (TotalCount, the page's details). Raises ReceiptQueryError.

    ``phone`` in Aliyun's form, ``send_date`` as ``yyyyMMdd`` (Beijing date, at most 30 days
    back), ``page_size`` 1 to 50.
    """
    from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException
    from aliyunsdkdysmsapi.request.v20170525.QuerySendDetailsRequest import (
        QuerySendDetailsRequest,
    )

    if not re.fullmatch(r"[0-9]{8}", send_date):
        raise ValueError("send_date must be yyyyMMdd")
    if not 1 <= page_size <= MAX_PAGE_SIZE or page < 1:
        raise ValueError("page_size must be 1-50 and page at least 1")
    request = QuerySendDetailsRequest()
    request.set_endpoint(sender._host)
    request.set_protocol_type(sender._protocol)
    request.set_PhoneNumber(phone)
    request.set_SendDate(send_date)
    request.set_PageSize(page_size)
    request.set_CurrentPage(page)
    if biz_id:
        request.set_BizId(biz_id)
    secrets = [credentials.access_key_secret]
    try:
        body = sender._client(credentials).do_action_with_exception(request)
    except ServerException as exc:
        text = scrub(gateway_message(exc.get_error_msg() or ""), secrets, phone)
        raise ReceiptQueryError(exc.get_error_code() or "SDK.UnknownServerError", text) from None
    except ClientException as exc:
        code = exc.get_error_code() or "SDK.HttpError"
        text = describe_transport_failure(exc.get_error_msg() or "")
        raise ReceiptQueryError(code, scrub(text, secrets, phone)) from None
    except IndexError:  # the SDK's own crash on a SignatureDoesNotMatch without ":"
        raise ReceiptQueryError("SignatureDoesNotMatch", "signature not matched") from None
    return _parse(body, secrets, phone)


def _parse(body: Any, secrets: list[str], phone: str) -> tuple[int, list[DeliveryDetail]]:
    try:
        data = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
    except (ValueError, TypeError, AttributeError):
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("Code"), str):
        raise ReceiptQueryError("SDK.InvalidResponse", "the answer is not a JSON object")
    if data["Code"] != "OK":
        message = data.get("Message")
        text = scrub(message if isinstance(message, str) else "", secrets, phone)
        raise ReceiptQueryError(data["Code"], text)
    holder = data.get("SmsSendDetailDTOs")
    items = holder.get("SmsSendDetailDTO") if isinstance(holder, dict) else None
    details = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        try:
            status = int(item.get("SendStatus", 0))
        except (TypeError, ValueError):
            continue
        details.append(
            DeliveryDetail(
                status=status,
                err_code=str(item.get("ErrCode") or ""),
                send_date=str(item.get("SendDate") or ""),
                receive_date=str(item.get("ReceiveDate") or ""),
                out_id=str(item.get("OutId") or ""),
            )
        )
    try:
        total = int(data.get("TotalCount", len(details)))
    except (TypeError, ValueError):
        total = len(details)
    return total, details

