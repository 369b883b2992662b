"""The checklist's Aliyun lines: what Alibaba Cloud said about the saved parameters.

The stored answer (:mod:`..flows.setup_check`) holds facts only; the words are chosen here, at
display time, so the panel shows them in the page's language.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, url_for
from flask_wtf import FlaskForm
from wtforms import SubmitField

from ..flows import setup_check
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..sms import AliyunSender, explain
from ..sms.account import Verdict
from ..state import AliSMSState, get_state
from .forms import TranslatedMeta


class RecheckForm(FlaskForm):
    Meta = TranslatedMeta
    recheck = SubmitField(_l("Check with Aliyun again"))


_WHAT = {
    "signature": _l("Signature"),
    "template": _l("Template"),
}


def _item(state: str, label: str, help_text: str = "", detail: str | None = None) -> dict[str, Any]:
    return {
        "label": label,
        "state": state,
        "ok": state == "ok",
        "help": help_text,
        "detail": detail,
    }


def _unknown_help(why: str) -> str:
    if why == "read_access":
        return _(
            "The AccessKey works but its RAM user may not read signatures and templates. "
            "Grant AliyunDysmsReadOnlyAccess to let this panel check; sending does not need it."
        )
    if why == "blocked":
        return _("Checked once Aliyun accepts the AccessKey.")
    return _(
        "Aliyun did not answer in time or could not be reached. This says nothing against "
        "the saved values; check again later."
    )


def _review_item(line: setup_check.Line) -> dict[str, Any]:
    what = str(_WHAT[line.name])
    if line.verdict == Verdict.OK.value:
        return _item("ok", _("%(what)s: approved by Aliyun", what=what))
    if line.verdict == Verdict.UNKNOWN.value:
        return _item("unknown", _("%(what)s: could not check", what=what), _unknown_help(line.why))
    if line.why == "pending":
        return _item(
            "missing",
            _("%(what)s: still under review at Aliyun", what=what),
            _(
                "Codes cannot be sent until Aliyun approves it; carrier registration can take "
                "7 to 15 working days."
            ),
        )
    if line.why == "rejected":
        return _item(
            "missing",
            _("%(what)s: rejected by Aliyun", what=what),
            _(
                "Reason given: %(reason)s. Fix it in the SMS console and submit it again.",
                reason=line.reason or "—",
            ),
        )
    advice = explain(line.code or "", None).admin_message
    return _item(
        "missing", _("%(what)s: unknown to Aliyun", what=what), advice
    )


def _line_item(line: setup_check.Line, param_name: str) -> dict[str, Any]:
    item = _words(line, param_name)
    item["code"] = None if item["ok"] else line.code
    return item


def _words(line: setup_check.Line, param_name: str) -> dict[str, Any]:
    if line.name == "accesskey":
        if line.verdict == Verdict.OK.value:
            return _item("ok", _("AccessKey: accepted by Aliyun"))
        if line.verdict == Verdict.BAD.value:
            return _item(
                "missing",
                _("AccessKey: refused by Aliyun"),
                explain(line.code or "", None).admin_message,
            )
        return _item("unknown", _("AccessKey: could not check"), _unknown_help(line.why))
    if line.name == "template_text":
        shown = ", ".join("${" + name + "}" for name in line.variables) or "—"
        if line.verdict == Verdict.OK.value:
            return _item(
                "ok",
                _("Template text: one variable %(variable)s", variable=shown),
                detail=line.content,
            )
        return _item(
            "missing",
            _("Template text: variables %(found)s", found=shown),
            _(
                "A code template needs exactly one variable, named as "
                "aliyun.sms.template_param_name says (now %(name)s).",
                name=param_name,
            ),
            detail=line.content,
        )
    return _review_item(line)


def remote_checklist(state: AliSMSState) -> dict[str, Any] | None:
    """The stored Aliyun answer as checklist items, or None when there is nothing to show."""
    if not isinstance(state.sender, AliyunSender) or not state.params.values().sms_ready:
        return None
    report = setup_check.cached(state)
    name = state.params.values().template_param_name
    return {
        "checked_at": report.checked_at if report is not None else None,
        "items": [_line_item(line, name) for line in report.lines] if report else [],
        "form": RecheckForm(),
    }


def after_save(state: AliSMSState, changed: list[str]) -> None:
    """The hook after the parameters are saved: re-check when a checked value changed."""
    if setup_check.CHECKED_KEYS & set(changed):
        report = setup_check.refresh(state)
        if report is not None and report.failed:
            flash(_("Aliyun does not accept the saved setup: see the checklist."), "error")


def recheck() -> Any:
    """POST: ask Aliyun again (the page only shows the stored answer)."""
    state = get_state()
    form = RecheckForm()
    if not form.validate_on_submit():
        abort(400)
    if setup_check.refresh(state) is None:
        flash(_("Nothing to check: fill in every Aliyun parameter first."), "info")
    else:
        flash(_("Checked with Aliyun."), "success")
    return redirect(url_for(".admin_parameters"))
