"""Phone sign-up for Flask with SMS codes sent through Alibaba Cloud SMS.

The names below are imported lazily, so that ``flask_alisms.testing`` (the Dysmsapi emulator,
loaded by the pytest plugin) stays cheap to import for projects that only want the emulator.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "AliSMS": ".extension",
    "SQLAlchemyUserAdapter": ".users",
    "UserAdapter": ".users",
    "AliSMSError": ".errors",
    "ConfigurationError": ".errors",
    "Category": ".errors",
    "Sender": ".sender",
    "SendResult": ".sender",
    "SmsMessage": ".sender",
    "signals": ".signals",
}

if TYPE_CHECKING:
    from . import signals
    from .errors import AliSMSError, Category, ConfigurationError
    from .extension import AliSMS
    from .sender import Sender, SendResult, SmsMessage
    from .users import SQLAlchemyUserAdapter, UserAdapter

__all__ = [
    "AliSMS",
    "AliSMSError",
    "Category",
    "ConfigurationError",
    "SQLAlchemyUserAdapter",
    "SendResult",
    "Sender",
    "SmsMessage",
    "UserAdapter",
    "__version__",
    "signals",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flask_alisms' has no attribute {name!r}")
    if name == "signals":
        return importlib.import_module(module, __name__)
    return getattr(importlib.import_module(module, __name__), name)
