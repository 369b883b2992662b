"""What the parameters page shows beside the form: its sections, the error summary and the
checklist that says why mobile registration is (not yet) open."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from ..flows import alerts, budget
from ..i18n import gettext as _
from ..parameters import ALLOW_REGISTER, ENABLE_MOBILE_REGISTER, TEMPLATE_CODE, ParameterRow
from ..state import AliSMSState, get_state
from .forms import grouped

logger = logging.getLogger(__name__)


def _incomplete(row: ParameterRow) -> bool:
    """A value that keeps mobile registration closed: a missing Aliyun value, a switch off."""
    if row.parameter.required_for_sms:
        return not row.is_set
    return row.parameter.key in (ALLOW_REGISTER, ENABLE_MOBILE_REGISTER) and not row.value


def sections(rows: list[ParameterRow], form: Any) -> list[dict[str, Any]]:
    """The parameters page's collapsible sections; those with an error or a gap start open."""
    result = []
    for key, label, members in grouped(rows):
        missing = sum(1 for row in members if _incomplete(row))
        errors = sum(1 for row in members if form[_field_name(row)].errors)
        result.append(
            {
                "key": key,
                "label": label,
                "rows": members,
                "missing": missing,
                "errors": errors,
                "open": bool(missing or errors),
            }
        )
    return result


def error_summary(rows: list[ParameterRow], form: Any) -> list[dict[str, str]]:
    """One link per field in error, for the summary at the top of the page."""
    return [
        {"id": field.id, "label": str(row.parameter.label), "error": str(field.errors[0])}
        for row in rows
        for field in (form[_field_name(row)],)
        if field.errors
    ]


def _field_name(row: ParameterRow) -> str:
    return row.parameter.key.replace(".", "__")


_TEMPLATE_PURPOSES = ("register", "login", "reset", "change_phone")


def checklist(state: AliSMSState) -> list[dict[str, Any]]:
    """What must be true before users can sign up, each with how to fix it."""
    values = state.params.values()
    items: list[dict[str, Any]] = [
        {
            "label": _("%(label)s (%(key)s)", label=row.parameter.label, key=row.parameter.key),
            "ok": row.is_set,
            "help": row.parameter.help,
        }
        for row in state.params.rows()
        if row.parameter.required_for_sms
    ]
    items += [
        {
            "label": _("%(label)s (%(key)s)", label=_("Registration allowed"), key=ALLOW_REGISTER),
            "ok": values.allow_user_register,
            "help": _("Set it to true to let new users sign up."),
        },
        {
            "label": _(
                "%(label)s (%(key)s)",
                label=_("Mobile registration switch"),
                key=ENABLE_MOBILE_REGISTER,
            ),
            "ok": values.enable_mobile_register,
            "help": _("Set it to true once every Aliyun parameter is filled in."),
        },
        *(
            {
                "label": _("%(label)s (%(key)s)", label=row.parameter.label, key=row.parameter.key),
                "ok": bool(values.template_for(purpose)),
                "help": _("Optional; falls back to %(key)s, which is empty.", key=TEMPLATE_CODE),
                "note": _("Uses %(template)s.", template=values.template_for(purpose)),
            }
            for row in state.params.rows()
            for purpose in _TEMPLATE_PURPOSES
            if row.parameter.key == f"aliyun.sms.template_code.{purpose}"
        ),
        {
            "label": _("User adapter"),
            "ok": state.user_adapter is not None,
            "help": _(
                "The site passes AliSMS(user_adapter=...) so users can be found and created."
            ),
        },
    ]
    return items


def last_test(state: AliSMSState) -> Any:
    log = state.models.SendLog
    return state.db.session.scalars(
        sa.select(log)
        .where(log.purpose == "test")  # newest first through (purpose, created_at)
        .order_by(log.created_at.desc(), log.id.desc())
        .limit(1)
    ).first()


def budget_context() -> dict[str, Any]:
    """The budget banner's helpers for every page of the blueprint; the query runs only when
    a template calls ``alisms_budget_alerts()`` (the panel's base template does)."""
    return {"alisms_budget_alerts": _budget_alerts, "alisms_money": alerts.money}


def _budget_alerts() -> list[alerts.Alert]:
    state = get_state()
    if not budget.configured(state.params.values()):
        return []
    try:
        return budget.current_alerts(state)
    except sa.exc.SQLAlchemyError as exc:  # a missing table after an upgrade: no banner
        state.db.session.rollback()
        logger.error("Could not read the budget alerts: %s", type(exc).__name__)
        return []
