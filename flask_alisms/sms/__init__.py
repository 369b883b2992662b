"""The SMS provider layer: the :class:`Sender` interface, its implementations and the advice
table that turns Aliyun's codes into what an admin and a user are told.

Nothing here knows about Flask requests, the database or the flows built on top.
"""

from __future__ import annotations

import importlib

from ..exceptions import ConfigurationError
from .advice import Advice, Category, explain, known_codes
from .aliyun import DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, DEFAULT_REGION_ID, AliyunSender
from .base import Credentials, Sender, SendResult, SmsMessage
from .local import ConsoleSender, MemorySender, TestNumberSender

__all__ = [
    "Advice",
    "AliyunSender",
    "Category",
    "ConsoleSender",
    "Credentials",
    "MemorySender",
    "SendResult",
    "Sender",
    "SmsMessage",
    "TestNumberSender",
    "create_sender",
    "explain",
    "known_codes",
]

# --------------------------------------------------------------------------- factory


def create_sender(
    name: str,
    *,
    endpoint: str | None = None,
    region_id: str = DEFAULT_REGION_ID,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    reveal_codes: bool = False,
) -> Sender:
    """Build the sender named by the ``ALISMS_SENDER`` setting.

    ``"aliyun"``, ``"console"``, ``"memory"``, or ``"package.module:ClassName"`` naming a
    :class:`Sender` subclass constructible without arguments.
    """
    key = (name or "").strip()
    if key.lower() == "aliyun":
        return AliyunSender(
            endpoint=endpoint,
            region_id=region_id,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
    if key.lower() == "console":
        return ConsoleSender(reveal=reveal_codes)
    if key.lower() == "memory":
        return MemorySender()
    if ":" in key:
        module_name, _, class_name = key.partition(":")
        try:
            module = importlib.import_module(module_name)
            cls = getattr(module, class_name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigurationError(
                f"ALISMS_SENDER={name!r}: cannot import {class_name!r} from {module_name!r} "
                f"({type(exc).__name__})"
            ) from exc
        if not (isinstance(cls, type) and issubclass(cls, Sender)):
            raise ConfigurationError(
                f"ALISMS_SENDER={name!r}: {class_name!r} is not a subclass of "
                "flask_alisms.sms.Sender"
            )
        try:
            return cls()
        except TypeError as exc:
            raise ConfigurationError(
                f"ALISMS_SENDER={name!r}: {class_name!r} must be constructible without arguments"
            ) from exc
    raise ConfigurationError(
        f"ALISMS_SENDER={name!r} is not a known sender: use 'aliyun', 'console', 'memory' or "
        "'package.module:ClassName'"
    )

