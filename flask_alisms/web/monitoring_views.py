"""The admin panel's Monitoring page: messages, delivery rate and failure codes per day.

The figures come from :mod:`..flows.monitoring` (the running daily totals, never the send
log); the charts are server-rendered SVG from :mod:`.charts`, each followed by its numbers.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, render_template, request
from wtforms import Form, SelectField
from wtforms.validators import Optional

from ..flows import budget, monitoring, totals
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..state import get_state
from . import charts
from .admin import admin_required, purpose_label
from .forms import TranslatedMeta, choices


class MonitoringForm(Form):
    """The page's period and purpose (GET, no state change, so no CSRF)."""

    Meta = TranslatedMeta

    days = SelectField(
        _l("Period"),
        choices=choices([("7", _l("7 days")), ("30", _l("30 days")), ("90", _l("90 days"))]),
        default=str(monitoring.DEFAULT_DAYS),
    )
    purpose = SelectField(_l("Purpose"), choices=[], validators=[Optional()])


def _form() -> MonitoringForm:
    form = MonitoringForm(request.args)
    form.purpose.choices = choices(
        [("", _("Any")), *((p, purpose_label(p)) for p in monitoring.PURPOSES)]
    )
    return form


@admin_required
def admin_monitoring() -> Any:
    form = _form()
    if not form.validate():
        return _render(form, None), 400
    state = get_state()
    report = monitoring.report(
        state, days=int(form.days.data or monitoring.DEFAULT_DAYS), purpose=form.purpose.data or ""
    )
    return _render(form, report), 200


def _render(form: MonitoringForm, report: monitoring.Report | None) -> str:
    fmt = charts.Formatter()
    return render_template(
        "alisms/admin/monitoring.html",
        form=form,
        report=report,
        budget=budget.status(get_state()),
        bars=charts.stacked_bars(report.days, fmt) if report else None,
        rate=charts.rate_line(report.days, fmt) if report else None,
        legend=charts.legend(),
        labels=charts.series_labels(),
        zone_name=current_app.config["ALISMS_TIMEZONE"],
        number=fmt.number,
        percent=fmt.percent,
        day_label=fmt.day,
        purpose_label=purpose_label,
        source_labels={totals.SEND: _("Send refused"), totals.RECEIPT: _("Not delivered")},
    )
