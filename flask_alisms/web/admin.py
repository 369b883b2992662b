"""The admin panel: parameters with their checklist, the test SMS and the send log.

Every view is wrapped by :func:`admin_required`, which asks the host's ``admin_loader``.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

from flask import (
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from werkzeug.routing import BuildError

from .. import signals
from ..exceptions import BudgetExhausted, InvalidParameter
from ..flows import budget, messages, receipts, reconcile, sendlog
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..models import utcnow
from ..phones import mask
from ..sms import Category
from ..state import get_state
from . import remote_checks
from .forms import (
    PURPOSE_LABELS,
    LogFilterForm,
    ReportTokenForm,
    TestSmsForm,
    changes_from,
    choices,
    parameters_form,
)
from .panel import checklist, error_summary, last_test, sections

log = logging.getLogger(__name__)

#: The send log's outcome column: a send, a skipped send, or a failure category.
OUTCOMES = ("sent", "skipped", "test_number", *(c.value for c in Category))


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse anybody the host's ``admin_loader`` does not name: anonymous visitors go to the
    host's login page when there is one (as Django admin and Flask-Admin do), others get 403."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        callbacks = get_state().callbacks
        if callbacks.current_admin() is None:
            login_url = _login_url()
            if login_url is not None and callbacks.signed_in() is False:
                return redirect(login_url)
            abort(403)
        return view(*args, **kwargs)

    return wrapper


def _login_url() -> str | None:
    """The host's login page with ``next`` back to this page, or None if it has none."""
    target = current_app.config["ALISMS_LOGIN_VIEW"]
    if target is None:
        manager = getattr(current_app, "login_manager", None)
        target = getattr(manager, "login_view", None)
    if not target:
        return None
    next_path = request.full_path if request.query_string else request.path
    if target.startswith("/"):
        separator = "&" if "?" in target else "?"
        return f"{target}{separator}{urlencode({'next': next_path})}"
    try:
        return url_for(target, next=next_path)
    except BuildError:
        log.warning("ALISMS_LOGIN_VIEW names no endpoint: %r", target)
        return None


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
                    flash(
                        _(
                            "Nothing was saved: every value sent is already in effect. A value "
                            "that comes from a default stays a default until you tick “Save "
                            "this value here” beside it."
                        ),
                        "info",
                    )
                return redirect(url_for(".admin_parameters"))
        else:
            status = 400
    else:
        form = parameters_form(rows)
    return render_template(
        "alisms/admin/parameters.html",
        form=form,
        sections=sections(rows, form),
        error_summary=error_summary(rows, form),
        checklist=checklist(state),
        test_numbers=[mask(number) for number, _code in state.params.values().test_numbers],
        remote=remote_checks.remote_checklist(state),
        effective=state.mobile_registration_open(),
        sender=state.sender_for_send().name,
        last_test=last_test(state),
        changes=state.params.recent_changes(),
        budget=budget.status(state),
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
            try:
                result = messages.send_test_message(form.parsed_phone)
            except BudgetExhausted as exc:
                form.phone.errors = [_budget_refusal(exc.period)]
                status = 503
            else:
                status = 200 if result.ok else 502
    return render_template(
        "alisms/admin/test_sms.html",
        form=form,
        result=result,
        sender=state.sender_for_send().name,
        outcome_label=outcome_label,
    ), status


def _budget_refusal(period: str) -> str:
    if period == "day":
        return _(
            "Not sent: today's SMS budget is reached and budget.hard_stop is on. Raise "
            "budget.daily or turn the hard stop off to send."
        )
    return _(
        "Not sent: this month's SMS budget is reached and budget.hard_stop is on. Raise "
        "budget.monthly or turn the hard stop off to send."
    )


@admin_required
def admin_log() -> Any:
    state = get_state()
    form, filters, status = _log_filters()
    before = request.args.get("before", "")
    cursor = int(before) if before.isascii() and before.isdigit() and len(before) < 19 else None
    receipts.match_pending(state)  # receipts that came before their send row
    rows, next_cursor = sendlog.page(state, filters, cursor) if filters else ([], None)
    zone = sendlog.time_zone()
    token = receipts.report_token(state)
    return render_template(
        "alisms/admin/log.html",
        form=form,
        rows=rows,
        next_cursor=next_cursor,
        first_page=cursor is None,
        summary=sendlog.summary(state),
        now=utcnow(),
        wait=sendlog.wait_minutes(),
        zone=zone,
        zone_name=current_app.config["ALISMS_TIMEZONE"],
        local_time=sendlog.local_time,
        delivery_state=sendlog.delivery_state,
        receipt_meaning=_memo(sendlog.receipt_meaning),
        push_url=url_for(".sms_report", token=token, _external=True),
        token_form=ReportTokenForm(),
        outcome_label=_memo(outcome_label),  # fifty rows, a handful of distinct labels
        purpose_label=_memo(purpose_label),
    ), status


def _memo(label: Callable[[Any], str]) -> Callable[[Any], str]:
    """``label`` translated once per value for this page."""
    seen: dict[Any, str] = {}

    def get(value: Any) -> str:
        if value not in seen:
            seen[value] = label(value)
        return seen[value]

    return get


#: Rows one CSV export may hold; narrow the filters for more.
CSV_LIMIT = 100_000


@admin_required
def admin_log_csv() -> Any:
    """The filtered rows as CSV: masked numbers only, times in the site's time zone."""
    state = get_state()
    _form, filters, _status = _log_filters()
    if filters is None:
        abort(400)
    zone = sendlog.time_zone()
    now, wait = utcnow(), sendlog.wait_minutes()

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(_CSV_HEADER)
        for row in sendlog.iter_rows(state, filters, CSV_LIMIT):
            created = sendlog.local_time(row.created_at, zone)
            delivered = sendlog.local_time(row.delivered_at, zone)
            writer.writerow(
                _csv_safe(value)
                for value in (
                    created.isoformat() if created else "",
                    row.phone_masked,
                    row.purpose,
                    row.category,
                    row.code,
                    sendlog.delivery_state(row, now, wait) or "",
                    row.receipt_code or "",
                    delivered.isoformat() if delivered else "",
                    row.sms_size if row.sms_size is not None else "",
                    row.sender,
                    row.http_status if row.http_status is not None else "",
                    f"{row.duration_ms or 0:.0f}",
                    row.request_id or "",
                    row.biz_id or "",
                )
            )
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        if buffer.getvalue():
            yield buffer.getvalue()

    response = Response(stream_with_context(lines()), mimetype="text/csv")
    stamp = utcnow().strftime("%Y%m%d-%H%M")
    response.headers["Content-Disposition"] = f"attachment; filename=alisms-log-{stamp}.csv"
    return response


@admin_required
def admin_report_token() -> Any:
    form = ReportTokenForm()
    if not form.validate_on_submit():
        abort(400)
    state = get_state()
    try:
        receipts.regenerate_token(state, actor=state.callbacks.current_admin())
    except InvalidParameter as exc:  # fixed by ALISMS_PARAMS
        flash(exc.message, "error")
    else:
        flash(_("A new push URL was made: paste it in the Aliyun console."), "success")
    return redirect(url_for(".admin_log"))


_CSV_HEADER = (
    "time", "number", "purpose", "outcome", "code", "delivery", "receipt_code",
    "delivered_at", "sms_size", "sender", "http_status", "duration_ms", "request_id", "biz_id",
)  # fmt: skip


def _csv_safe(value: object) -> str:
    """Text a spreadsheet shows as text: no leading =, +, -, @ that it would run as a formula."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _log_filters() -> tuple[LogFilterForm, sendlog.Filters | None, int]:
    form = LogFilterForm(request.args)
    form.category.choices = choices([("", _("Any")), *((c, outcome_label(c)) for c in OUTCOMES)])
    if not form.validate():
        return form, None, 400
    filters = sendlog.Filters(
        days=int(form.days.data or 7),
        category=form.category.data or "",
        purpose=form.purpose.data or "",
        phone_tail=form.phone.data or "",
        delivery=form.delivery.data or "",
    )
    return form, filters, 200


# -- what the pages show ---------------------------------------------------------------------

_OUTCOME_LABELS = {
    "sent": _l("Sent"),
    "skipped": _l("Not sent (no account or already registered)"),
    "test_number": _l("Test number (never sent to Aliyun)"),
    "signature": _l("Signature not approved or wrong"),
    "template": _l("Template not approved or wrong"),
    "authentication": _l("AccessKey wrong"),
    "permission": _l("AccessKey lacks the SMS permission"),
    "rate_limit": _l("Too many messages (Aliyun flow control)"),
    "balance": _l("Account balance or quota"),
    "invalid_number": _l("Number cannot receive SMS"),
    "network": _l("Network or timeout"),
    "unknown": _l("Other Aliyun error"),
}


def outcome_label(value: str) -> str:
    """Human words for a send-log outcome or failure category."""
    label = _OUTCOME_LABELS.get(value)
    return str(label) if label is not None else value


def purpose_label(value: str) -> str:
    """Human words for a send-log purpose (register, reset, test)."""
    label = PURPOSE_LABELS.get(value)
    return str(label) if label is not None else value
