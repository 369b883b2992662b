"""Phone sign-up for Flask with SMS codes sent through Alibaba Cloud SMS.

The names below are imported lazily, so that ``flask_alisms.testing`` (the Dysmsapi emulator,
loaded by the pytest plugin) stays cheap to import for projects that only want the emulator.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import _compat

__version__ = "0.2.0"

_EXPORTS = {
    "AliSMS": ".extension",
    "SQLAlchemyUserAdapter": ".users",
    "UserAdapter": ".users",
    "AliSMSError": ".exceptions",
    "ConfigurationError": ".exceptions",
    "Category": ".sms",
    "Sender": ".sms",
    "SendResult": ".sms",
    "SmsMessage": ".sms",
    "signals": ".signals",
}

if TYPE_CHECKING:
    from . import signals
    from .exceptions import AliSMSError, ConfigurationError
    from .extension import AliSMS
    from .sms import Category, Sender, SendResult, SmsMessage
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

_compat.install(__name__)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flask_alisms' has no attribute {name!r}")
    if name == "signals":
        return importlib.import_module(module, __name__)
    return getattr(importlib.import_module(module, __name__), name)
