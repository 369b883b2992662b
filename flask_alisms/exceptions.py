"""Every exception the package raises on purpose, under one base class.

A host can catch :class:`AliSMSError` for all of them. Messages never carry a code, a secret or
a full phone number: they are written for logs and tracebacks.
"""

from __future__ import annotations

__all__ = [
    "AccountError",
    "AliSMSError",
    "BudgetExhausted",
    "CodeStoreUnavailable",
    "ConfigurationError",
    "DecryptionError",
    "GateClosed",
    "HumanCheckRequired",
    "HumanCheckUnavailable",
    "InvalidParameter",
    "InvalidPhone",
    "LimiterUnavailable",
]


class AliSMSError(Exception):
    """Base class of every exception this package raises on purpose."""


class ConfigurationError(AliSMSError):
    """The extension is configured in a way that cannot work (named in the message)."""


class DecryptionError(AliSMSError):
    """A stored secret cannot be decrypted with the current or any fallback key."""


class InvalidParameter(AliSMSError):
    """A value an admin or the configuration gave for ``key`` is not acceptable."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class InvalidPhone(AliSMSError, ValueError):
    """The text is not a mobile number this site accepts; ``reason`` is a stable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class LimiterUnavailable(AliSMSError):
    """The limiter's storage did not answer; sends are refused unless configured otherwise."""


class CodeStoreUnavailable(AliSMSError):
    """The code store (database or Redis) did not answer."""


class GateClosed(AliSMSError):
    """The admin's switches or a missing Aliyun parameter forbid this action."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "registration_disabled" or "sms_not_configured"


class BudgetExhausted(GateClosed):
    """The day's or the month's SMS budget is spent and ``budget.hard_stop`` is on.

    ``period`` is ``"day"`` or ``"month"``; the reason (the API's error code) is
    ``budget_exhausted``.
    """

    def __init__(self, period: str) -> None:
        super().__init__("budget_exhausted")
        self.period = period


class AccountError(AliSMSError):
    """A registration or reset step failed; ``reason`` is the stable error code for the API."""

    def __init__(self, reason: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after  # set when a limit refused: seconds to wait


class HumanCheckRequired(AliSMSError):
    """Send-code needs a solved human check first; ``reason`` says why this one did not count.

    ``"missing"`` (no answer), ``"expired"`` (no live challenge in this session, or too old),
    ``"reused"`` (already spent) or ``"wrong"``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class HumanCheckUnavailable(AliSMSError):
    """The human check's provider did not give an answer; the send is refused, never waved on."""
