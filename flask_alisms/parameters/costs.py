"""The cost, budget and alert parameters (issue 14), declared beside the registry.

They join :data:`~flask_alisms.parameters.registry.PARAMETERS` through :data:`COST_PARAMETERS`;
:mod:`flask_alisms.flows.budget` reads them from the typed values.
"""

from __future__ import annotations

from ..i18n import lazy_gettext as _l
from .kinds import Parameter

PRICE_PER_SMS = "billing.price_per_sms"
BUDGET_DAILY = "budget.daily"
BUDGET_MONTHLY = "budget.monthly"
ALERT_PERCENT = "budget.alert_percent"
HARD_STOP = "budget.hard_stop"
WEBHOOK_URL = "alerts.webhook_url"
WEBHOOK_FORMAT = "alerts.webhook_format"
DINGTALK_SECRET = "alerts.dingtalk_secret"  # noqa: S105 - a key name, not a secret

#: An http(s) URL: a host name, IPv4 or [IPv6] address, an optional port, then anything
#: without spaces or control characters.
_URL = (
    r"https?://(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?)"
    r"(?::[0-9]{1,5})?(?:[/?#][^\s\x00-\x1f\x7f]*)?"
)

COST_PARAMETERS = (
    Parameter(
        PRICE_PER_SMS,
        "decimal",
        None,
        "budget",
        _l("Price per billed SMS (CNY)"),
        _l(
            "What Aliyun charges for one delivered mainland message segment, e.g. 0.045. Empty: "
            "unknown, and the budgets below are inactive."
        ),
        places=4,
        maximum=100,
    ),
    Parameter(
        BUDGET_DAILY,
        "decimal",
        None,
        "budget",
        _l("Daily budget (CNY)"),
        _l("Spend per day in the site's time zone; empty: no daily budget."),
        maximum=100_000_000,
        above_zero=True,
        name="budget_daily",
    ),
    Parameter(
        BUDGET_MONTHLY,
        "decimal",
        None,
        "budget",
        _l("Monthly budget (CNY)"),
        _l("Spend per calendar month in the site's time zone; empty: no monthly budget."),
        maximum=100_000_000,
        above_zero=True,
        name="budget_monthly",
    ),
    Parameter(
        ALERT_PERCENT,
        "percents",
        (80, 100),
        "budget",
        _l("Alert thresholds (percent)"),
        _l(
            "Comma-separated percentages of a budget, ascending, e.g. 80,100: each one alerts "
            "once per day or month when the spend reaches it."
        ),
    ),
    Parameter(
        HARD_STOP,
        "bool",
        False,
        "budget",
        _l("Stop sending at the budget"),
        _l(
            "true: once a budget is reached, code requests are refused (503) until the day or "
            "month ends or the budget is raised (true/false)."
        ),
    ),
    Parameter(
        WEBHOOK_URL,
        "str",
        "",
        "alerts",
        _l("Alert webhook URL"),
        _l(
            "Optional: budget alerts are POSTed here, e.g. a DingTalk or WeCom group robot's "
            "URL. Stored encrypted, since it holds the robot's token."
        ),
        secret=True,
        pattern=_URL,
        pattern_hint=_l("must be an http:// or https:// URL without spaces"),
        max_length=1000,
    ),
    Parameter(
        WEBHOOK_FORMAT,
        "str",
        "",
        "alerts",
        _l("Alert webhook format"),
        _l(
            "generic (JSON), dingtalk or wecom (group robot text messages). Empty: dingtalk "
            "for oapi.dingtalk.com, wecom for qyapi.weixin.qq.com, generic otherwise."
        ),
        pattern=r"generic|dingtalk|wecom",
        pattern_hint=_l("must be generic, dingtalk or wecom"),
        max_length=10,
        options=("", "generic", "dingtalk", "wecom"),
    ),
    Parameter(
        DINGTALK_SECRET,
        "str",
        "",
        "alerts",
        _l("DingTalk signing secret"),
        _l(
            "Only for a DingTalk robot with the “sign” security setting: its secret (SEC...). "
            "Stored encrypted."
        ),
        secret=True,
        pattern=r"[A-Za-z0-9+/=_\-]{8,200}",
        pattern_hint=_l("must be the secret exactly as DingTalk shows it, no spaces"),
    ),
)
