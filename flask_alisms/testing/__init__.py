"""Test tools: a local Dysmsapi emulator and the pytest plugin that starts it.

Importing this package is cheap (standard library only), so a project can use the emulator
without loading Flask.
"""

from __future__ import annotations

from .emulator import (
    AcceptedMessage,
    DysmsapiEmulator,
    compute_signature,
    main,
    percent_encode,
    string_to_sign,
)

__all__ = [
    "AcceptedMessage",
    "DysmsapiEmulator",
    "compute_signature",
    "main",
    "percent_encode",
    "string_to_sign",
]
