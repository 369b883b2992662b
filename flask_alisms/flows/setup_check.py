"""The Aliyun-checked setup: ask Alibaba Cloud whether the saved parameters work.

Why: a new admin with a wrong AccessKey secret otherwise sees a green checklist until the first
user's send fails. After the Aliyun parameters are saved (and on ``flask alisms check
--remote``) this asks QuerySmsSign and QuerySmsTemplate, which are signed like SendSms and send
nothing, and keeps the answer in the database keyed by a keyed digest of the values checked:
the panel reads it without calling Aliyun, and changing any checked value makes it stale.

A check never makes saving fail or hang: the calls have short timeouts, and anything short of
an answer (network, timeout, Aliyun-side error, a key without read permission) is "could not
check", never a red line.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from flask import current_app

from ..models import transaction, utcnow
from ..parameters import ACCESS_KEY_ID, ACCESS_KEY_SECRET, SIGN_NAME, TEMPLATE_CODE
from ..sms import AliyunSender
from ..sms.account import DEFAULT_CHECK_TIMEOUT, AccountQueries, Answer, Review, Verdict
from ..state import AliSMSState

__all__ = ["CHECKED_KEYS", "Line", "Report", "cached", "refresh", "run"]

logger = logging.getLogger(__name__)

#: Saving any of these re-checks.
CHECKED_KEYS = frozenset(
    {ACCESS_KEY_ID, ACCESS_KEY_SECRET, SIGN_NAME, TEMPLATE_CODE, "aliyun.sms.template_param_name"}
)
_VARIABLE = re.compile(r"\$\{([^}]*)\}")


@dataclass(frozen=True)
class Line:
    """One remote check. ``name``: accesskey, signature, template or template_text.

    ``why`` says what kind of answer it was, for the advice shown: ``approved``, ``pending``,
    ``rejected``, ``missing``, ``refused`` (the key), ``read_access``, ``unreachable``,
    ``blocked`` (not checked because the key failed), ``variables`` (template text).
    """

    name: str
    verdict: str  # a Verdict value
    why: str
    code: str | None = None
    reason: str = ""
    content: str | None = None
    variables: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    checked_at: dt.datetime
    lines: tuple[Line, ...]

    def line(self, name: str) -> Line | None:
        return next((line for line in self.lines if line.name == name), None)

    @property
    def failed(self) -> bool:
        """Some line is red: the setup does not work as saved."""
        return any(line.verdict == Verdict.BAD.value for line in self.lines)


def _sender(state: AliSMSState) -> AliyunSender | None:
    return state.sender if isinstance(state.sender, AliyunSender) else None


def _fingerprint(state: AliSMSState, sender: AliyunSender) -> str | None:
    values = state.params.values()
    if not values.sms_ready:
        return None
    return state.keyring.fingerprint(
        str(sender.endpoint),
        values.access_key_id,
        values.access_key_secret,
        values.sign_name,
        values.sms_code_template_code,
        values.template_param_name,
    )


def _timeout() -> float:
    return float(current_app.config.get("ALISMS_REMOTE_CHECK_TIMEOUT", DEFAULT_CHECK_TIMEOUT))


# -- asking --------------------------------------------------------------------------------


def run(state: AliSMSState) -> Report | None:
    """Ask Aliyun now; None when the sender is not Aliyun or parameters are missing."""
    sender = _sender(state)
    credentials = state.credentials()
    values = state.params.values()
    if sender is None or credentials is None or not values.sms_ready:
        return None
    queries = AccountQueries(sender, timeout=_timeout())
    sign = queries.sign(credentials, values.sign_name)
    lines = [_key_line(sign.answer)]
    if sign.answer.reached or sign.answer.needs_read_access:
        lines.append(_review_line("signature", sign))
        template = queries.template(credentials, values.sms_code_template_code)
        lines.append(_review_line("template", template))
        if template.content is not None:
            lines.append(_text_line(template.content, values.template_param_name))
    else:  # the key failed or Aliyun did not answer: the rest cannot be told apart
        why = "blocked" if sign.answer.key_refused else "unreachable"
        lines += [Line("signature", Verdict.UNKNOWN.value, why), Line("template", "unknown", why)]
    report = Report(utcnow(), tuple(lines))
    logger.info(
        "Aliyun setup check: %s",
        ", ".join(f"{line.name}={line.verdict}({line.code or line.why})" for line in lines),
    )
    return report


def _key_line(answer: Answer) -> Line:
    if answer.key_refused:
        return Line("accesskey", Verdict.BAD.value, "refused", answer.code)
    if answer.reached or answer.needs_read_access:
        return Line("accesskey", Verdict.OK.value, "approved")
    return Line("accesskey", Verdict.UNKNOWN.value, "unreachable", answer.code)


def _review_line(name: str, review: Review) -> Line:
    answer = review.answer
    if answer.needs_read_access:
        return Line(name, Verdict.UNKNOWN.value, "read_access", answer.code)
    if not answer.reached:
        return Line(name, Verdict.UNKNOWN.value, "unreachable", answer.code)
    if not answer.ok:
        return Line(name, Verdict.BAD.value, "missing", answer.code)
    if review.state == "approved":
        return Line(name, Verdict.OK.value, "approved")
    if review.state in ("pending", "rejected"):
        return Line(name, Verdict.BAD.value, review.state, None, review.reason)
    return Line(name, Verdict.UNKNOWN.value, "unreachable", "SDK.InvalidResponse")


def _text_line(content: str, param_name: str) -> Line:
    variables = tuple(_VARIABLE.findall(content))
    ok = variables == (param_name,)
    verdict = Verdict.OK if ok else Verdict.BAD
    return Line(
        "template_text", verdict.value, "variables", content=content[:500], variables=variables
    )


# -- the cache -----------------------------------------------------------------------------


def refresh(state: AliSMSState) -> Report | None:
    """Check now and remember the answer for the values checked."""
    sender = _sender(state)
    fingerprint = _fingerprint(state, sender) if sender is not None else None
    report = run(state)
    if report is None or fingerprint is None:
        return report
    model = state.models.RemoteCheck
    session = state.db.session
    payload = json.dumps([asdict(line) for line in report.lines], ensure_ascii=False)
    try:
        with transaction(session):
            session.execute(sa.delete(model))  # one setup, one answer
            session.add(
                model(fingerprint=fingerprint, checked_at=report.checked_at, result=payload)
            )
    except sa.exc.SQLAlchemyError:
        # Two saves at once: the other one's answer is as good as this one.
        logger.warning("Could not store the Aliyun setup check", exc_info=True)
    return report


def cached(state: AliSMSState) -> Report | None:
    """The stored answer for the current values, without calling Aliyun; None if none."""
    sender = _sender(state)
    fingerprint = _fingerprint(state, sender) if sender is not None else None
    if fingerprint is None:
        return None
    row = state.db.session.get(state.models.RemoteCheck, fingerprint)
    if row is None:
        return None
    try:
        lines = tuple(_line(item) for item in json.loads(row.result))
    except (ValueError, TypeError, KeyError):
        return None
    return Report(row.checked_at, lines)


def _line(item: dict[str, Any]) -> Line:
    item = dict(item)
    item["variables"] = tuple(item.get("variables") or ())
    return Line(**item)
