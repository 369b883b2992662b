"""Test tools: a local Dysmsapi emulator and the pytest plugin that starts it.

Importing this package is cheap (standard library only), so a project can use the emulator
without loading Flask. The pieces: :mod:`.signing` (signature v1.0, number rules, the
gateway's answers), :mod:`.actions` (SendSms and QuerySendDetails rules), :mod:`.emulator`
(state, faults, records), :mod:`.server` (HTTP), :mod:`.cli` (``python -m``) and
:mod:`.pytest_plugin` (the ``dysmsapi_emulator`` fixture).
"""

from __future__ import annotations

from .actions import AcceptedMessage
from .cli import main
from .emulator import DysmsapiEmulator
from .signing import compute_signature, percent_encode, string_to_sign

__all__ = [
    "AcceptedMessage",
    "DysmsapiEmulator",
    "compute_signature",
    "main",
    "percent_encode",
    "string_to_sign",
]
