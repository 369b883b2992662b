"""The admin panel: parameters with their checklist, the test SMS and the send log.

Every view is wrapped by :func:`admin_required`, which asks the host's ``admin_loader``.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from flask import abort, current_app, flash, redirect, render_template, request, url_for

from .. import signals
from ..exceptions import InvalidParameter
from ..flows import reconcile, verification
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..models import utcnow
from ..parameters import ALLOW_REGISTER, ENABLE_MOBILE_REGISTER
from ..sms import Category
from ..state import AliSMSState, get_state
from . import remote_checks
from .forms import (
    PURPOSE_LABELS,
    LogFilterForm,
    TestSmsForm,
    changes_from,
    choices,
    grouped,
    parameters_form,
)

#: The send log's outcome column: a send, a skipped send, or a failure category.
OUTCOMES = ("sent", "skipped", *(c.value for c in Category))


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse (403) anybody the host's ``admin_loader`` does not name."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if get_state().callbacks.current_admin() is None:
            abort(403)
        return view(*args, **kwargs)

    return wrapper


@admin_required
def admin_parameters() -> Any:
    state = get_state()
    rows = state.params.rows()
    status = 200
    if request.method == "POST":
        form = parameters_form(rows, request.form)
        if form.validate():
            changes = changes_from(form, rows)
            actor = state.callbacks.current_admin()
            try:
                changed = state.params.update(changes, actor=actor)
            except InvalidParameter as exc:
                field = getattr(form, exc.key.replace(".", "__"))
                field.errors = [*field.errors, exc.message]
                status = 400
            else:
                if changed:
                    signals.parameters_changed.send(
                        current_app._get_current_object(),  # type: ignore[attr-defined]
                        keys=changed,
                        actor=actor,
                    )
                    flash(_("Saved: %(keys)s.", keys=", ".join(changed)), "success")
                    remote_checks.after_save(state, changed)
                else:
                    flash(_("Nothing changed."), "info")
                return redirect(url_for(".admin_parameters"))
        else:
            status = 400
    else:
        form = parameters_form(rows)
    return render_template(
        "alisms/admin/parameters.html",
        form=form,
        groups=grouped(rows),
        checklist=checklist(state),
        remote=remote_checks.remote_checklist(state),
        effective=state.mobile_registration_open(),
        sender=state.sender_for_send().name,
        last_test=_last_test(state),
        changes=state.params.recent_changes(),
    ), status


@admin_required
def admin_recheck() -> Any:
    """Ask Aliyun again about the saved AccessKey, signature and template."""
    return remote_checks.recheck()


@admin_required
def admin_reconciliation() -> Any:
    """Aliyun's daily totals beside the send log's, as `flask alisms stats sync` stored them."""
    return render_template(
        "alisms/admin/reconciliation.html",
        days=reconcile.stored_days(get_state()),
        today=reconcile.beijing_today(),
    )


@admin_required
def admin_test_sms() -> Any:
    state = get_state()
    form = TestSmsForm()
    form.prepare_countries()
    result = None
    status = 200
    if request.method == "POST":
        if not form.validate_on_submit():
            status = 400
        elif not state.sms_ready():
            missing = ", ".join(p.key for p in state.params.missing())
            form.phone.errors = [_("Fill in these parameters first: %(keys)s.", keys=missing)]
            status = 400
        else:
            assert form.parsed_phone is not None  # set by the phone validator
            result = verification.send_test_message(form.parsed_phone)
            status = 200 if result.ok else 502
    return render_template(
        "alisms/admin/test_sms.html",
        form=form,
        result=result,
        sender=state.sender_for_send().name,
        outcome_label=outcome_label,
    ), status


@admin_required
def admin_log() -> Any:
    state = get_state()
    log = state.models.SendLog
    form = LogFilterForm(request.args)
    form.category.choices = choices([("", _("Any")), *((c, outcome_label(c)) for c in OUTCOMES)])
    query = sa.select(log).order_by(log.id.desc())
    status = 200
    if form.validate():
        since = utcnow() - dt.timedelta(days=int(form.days.data or 7))
        query = query.where(log.created_at >= since)
        if form.category.data:
            query = query.where(log.category == form.category.data)
        if form.purpose.data:
            query = query.where(log.purpose == form.purpose.data)
        if form.phone.data:
            query = query.where(log.phone_masked.endswith(form.phone.data[-4:]))
    else:
        status = 400
        query = query.where(sa.false())
    page = state.db.paginate(query, per_page=50, error_out=False, count=True)
    return render_template(
        "alisms/admin/log.html",
        form=form,
        page=page,
        summary=_summary(state),
        outcome_label=outcome_label,
        purpose_label=purpose_label,
    ), status


# -- what the pages show ---------------------------------------------------------------------

_OUTCOME_LABELS = {
    "sent": _l("sent"),
    "skipped": _l("skipped"),
    "signature": _l("signature"),
    "template": _l("template"),
    "authentication": _l("authentication"),
    "permission": _l("permission"),
    "rate_limit": _l("rate limit"),
    "balance": _l("balance or account"),
    "invalid_number": _l("invalid number"),
    "network": _l("network"),
    "unknown": _l("unknown"),
}


def outcome_label(value: str) -> str:
    """Human words for a send-log outcome or failure category."""
    label = _OUTCOME_LABELS.get(value)
    return str(label) if label is not None else value


def purpose_label(value: str) -> str:
    """Human words for a send-log purpose (register, reset, test)."""
    label = PURPOSE_LABELS.get(value)
    return str(label) if label is not None else value


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
        {
            "label": _("User adapter"),
            "ok": state.user_adapter is not None,
            "help": _(
                "The site passes AliSMS(user_adapter=...) so users can be found and created."
            ),
        },
    ]
    return items


def _last_test(state: AliSMSState) -> Any:
    log = state.models.SendLog
    return state.db.session.scalars(
        sa.select(log).where(log.purpose == "test").order_by(log.id.desc()).limit(1)
    ).first()


def _summary(state: AliSMSState) -> list[dict[str, Any]]:
    log = state.models.SendLog
    now = utcnow()
    figures = []
    for label, delta in (
        (_("Last 24 hours"), dt.timedelta(days=1)),
        (_("Last 7 days"), dt.timedelta(days=7)),
    ):
        counts: dict[str, int] = dict(
            state.db.session.execute(
                sa.select(log.category, sa.func.count())
                .where(log.created_at >= now - delta)
                .group_by(log.category)
            ).all()
        )
        failed = {k: v for k, v in counts.items() if k not in ("sent", "skipped")}
        figures.append(
            {
                "label": label,
                "sent": counts.get("sent", 0),
                "failed": sum(failed.values()),
                "by_category": failed,
            }
        )
    return figures
