"""Run-time parameters: the typed registry (:mod:`.registry`) and the cached, audited store
(:mod:`.store`) an admin changes through the panel or the CLI."""

from __future__ import annotations

from ..exceptions import InvalidParameter
from .registry import (
    ACCESS_KEY_ID,
    ACCESS_KEY_SECRET,
    ALLOW_REGISTER,
    ENABLE_MOBILE_LOGIN,
    ENABLE_MOBILE_REGISTER,
    GROUPS,
    PARAMETERS,
    REPORT_TOKEN,
    REQUIRED_FOR_SMS,
    SIGN_NAME,
    TEMPLATE_CODE,
    Parameter,
    ParameterRow,
    Values,
    parameter,
)
from .store import ParameterStore

__all__ = [
    "ACCESS_KEY_ID",
    "ACCESS_KEY_SECRET",
    "ALLOW_REGISTER",
    "ENABLE_MOBILE_LOGIN",
    "ENABLE_MOBILE_REGISTER",
    "GROUPS",
    "PARAMETERS",
    "REPORT_TOKEN",
    "REQUIRED_FOR_SMS",
    "SIGN_NAME",
    "TEMPLATE_CODE",
    "InvalidParameter",
    "Parameter",
    "ParameterRow",
    "ParameterStore",
    "Values",
    "parameter",
]
