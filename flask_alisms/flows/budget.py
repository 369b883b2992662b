"""Cost and budgets: today's and this month's SMS spend, the hard stop, and budget alerts.

Spend comes from the durable daily totals (:mod:`.totals`), never from a cache, so neither a
config change nor a lost limiter storage can reset a budget:

- *spent* = segments Aliyun bills (delivered mainland messages, ``sms_size`` each) x
  ``billing.price_per_sms``;
- *in flight* = messages accepted without a receipt yet x the price, one segment each: an
  estimate. Where receipts are not set up every accepted message stays in flight, so the
  budget then counts every accepted message;
- *committed* = spent + in flight: what budgets, alerts and the hard stop compare.

Periods are the local day and calendar month in ``ALISMS_TIMEZONE``. Everything is inactive
(and costs nothing) until a price and a budget are set.

Alerts: crossing a threshold of ``budget.alert_percent`` fires once per threshold and period
across every worker: the INSERT into ``alisms_budget_alert`` that succeeds decides who fires
(the primary key refuses the others). Firing sends :data:`~flask_alisms.signals.budget_alert`
and POSTs to ``alerts.webhook_url`` in the background (:mod:`.alerts`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from .. import signals
from ..exceptions import BudgetExhausted
from ..i18n import gettext as _
from ..models import read_retrying, transaction
from ..parameters import Values
from ..state import AliSMSState
from . import alerts, totals
from .alerts import Alert

logger = logging.getLogger(__name__)

DAY, MONTH = "day", "month"
_PERCENT = Decimal("0.1")


@dataclass(frozen=True)
class Spend:
    """One period's figures; amounts are None while the price is unknown."""

    period: str  # "day" or "month"
    start: dt.date
    billed: int  # segments
    pending: int  # accepted messages without a receipt
    price: Decimal | None
    budget: Decimal | None
    thresholds: tuple[int, ...] = ()
    fired: tuple[int, ...] = ()

    @property
    def spent(self) -> Decimal | None:
        return None if self.price is None else self.price * self.billed

    @property
    def in_flight(self) -> Decimal | None:
        return None if self.price is None else self.price * self.pending

    @property
    def committed(self) -> Decimal | None:
        return None if self.price is None else self.price * (self.billed + self.pending)

    @property
    def active(self) -> bool:
        return self.price is not None and self.budget is not None

    @property
    def percent(self) -> Decimal | None:
        """Committed spend as a percentage of the budget, to a tenth."""
        if self.committed is None or self.budget is None:
            return None
        return (self.committed * 100 / self.budget).quantize(_PERCENT)

    @property
    def crossed(self) -> tuple[int, ...]:
        """The thresholds the committed spend has reached."""
        committed = self.committed
        if committed is None or self.budget is None:
            return ()
        return tuple(p for p in self.thresholds if committed * 100 >= self.budget * p)

    @property
    def exhausted(self) -> bool:
        committed = self.committed
        return committed is not None and self.budget is not None and committed >= self.budget


@dataclass(frozen=True)
class Status:
    """What the panel's budget cards show (``templates/alisms/admin/_budget_cards.html``)."""

    price: Decimal | None
    hard_stop: bool
    day: Spend
    month: Spend
    #: Messages were accepted this month but no receipt came: all of them count as in flight.
    no_receipts: bool

    @property
    def active(self) -> bool:
        return self.day.active or self.month.active

    @property
    def inactive_reason(self) -> str | None:
        if self.price is None:
            return _(
                "Budgets are inactive: set billing.price_per_sms, the price of one billed SMS."
            )
        if self.day.budget is None and self.month.budget is None:
            return _("No budget is set: set budget.daily or budget.monthly to get alerts.")
        return None

    @staticmethod
    def money(value: Decimal | None) -> str:
        return "—" if value is None else alerts.money(value)

    @property
    def periods(self) -> tuple[Spend, Spend]:
        return (self.day, self.month)

    @property
    def reached(self) -> bool:
        """A threshold of the day or the month is reached."""
        return bool(self.day.crossed or self.month.crossed)

    def as_json(self, fired: list[dict[str, Any]]) -> dict[str, Any]:
        """What ``flask alisms budget --json`` prints: amounts as strings, never floats."""

        def amount(value: Any) -> str | None:
            return None if value is None else str(value)

        return {
            "currency": "CNY",
            "price_per_sms": amount(self.price),
            "hard_stop": self.hard_stop,
            "active": self.active,
            **{
                spend.period: {
                    "start": spend.start.isoformat(),
                    "billed_segments": spend.billed,
                    "pending_messages": spend.pending,
                    "spent": amount(spend.spent),
                    "in_flight": amount(spend.in_flight),
                    "committed": amount(spend.committed),
                    "budget": amount(spend.budget),
                    "percent": amount(spend.percent),
                    "thresholds_reached": list(spend.crossed),
                    "alerts_fired": list(spend.fired),
                }
                for spend in self.periods
            },
            "fired_now": fired,
        }


def configured(values: Values) -> bool:
    """A price and at least one budget: only then do alerts and the hard stop cost a query."""
    return values.price_per_sms is not None and (
        values.budget_daily is not None or values.budget_monthly is not None
    )


def period_starts(day: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """Today (local) and the first day of its month."""
    today = day or totals.today()
    return today, today.replace(day=1)


def spends(
    state: AliSMSState, values: Values | None = None, *, fired: bool = False
) -> tuple[Spend, Spend, bool]:
    """Today's and this month's spend from the daily totals (one indexed range SELECT).

    The third value says whether messages were accepted this month without any receipt.
    ``fired`` also reads which thresholds have already alerted (a second small SELECT).
    """
    values = values or state.params.values()
    today, first = period_starts()
    model = state.models.DailyTotal
    query = sa.select(model.day, model.sent, model.delivered, model.failed, model.billed).where(
        model.day >= first, model.day <= today
    )
    session = state.db.session
    rows = read_retrying(lambda: session.execute(query).all(), session)
    counts = {DAY: [0, 0], MONTH: [0, 0]}
    accepted = receipts = 0
    for day, sent, delivered, failed, billed in rows:
        pending = max(0, sent - delivered - failed)
        accepted, receipts = accepted + sent, receipts + delivered + failed
        for period in (MONTH, DAY) if day == today else (MONTH,):
            counts[period][0] += billed
            counts[period][1] += pending
    done = _fired(state, today, first) if fired else {}
    price, thresholds = values.price_per_sms, values.alert_percent
    made = tuple(
        Spend(
            period,
            start,
            counts[period][0],
            counts[period][1],
            price,
            budget,
            thresholds,
            tuple(sorted(a.percent for a in done.get(period, ()))),
        )
        for period, start, budget in (
            (DAY, today, values.budget_daily),
            (MONTH, first, values.budget_monthly),
        )
    )
    return made[0], made[1], bool(accepted and not receipts)


def status(state: AliSMSState) -> Status:
    """The budget cards' figures (two small SELECTs)."""
    values = state.params.values()
    day, month, no_receipts = spends(state, values, fired=True)
    return Status(values.price_per_sms, values.hard_stop, day, month, no_receipts)


# -- the hard stop ----------------------------------------------------------------------------


def enforce(state: AliSMSState) -> None:
    """Raise :class:`BudgetExhausted` when the hard stop is on and a budget is reached.

    Free while the hard stop is off or no price and budget are set; one SELECT otherwise.
    """
    values = state.params.values()
    if not (values.hard_stop and configured(values)):
        return
    day, month, _none = spends(state, values)
    for spend in (day, month):
        if spend.exhausted:
            logger.info("Code refused: the %s budget is reached (hard stop)", spend.period)
            raise BudgetExhausted(spend.period)


# -- alerts -----------------------------------------------------------------------------------


def after_send(state: AliSMSState) -> None:
    """After a send's log row was committed: fire the alerts it made due. Never raises."""
    if configured(state.params.values()):
        _safely(state, lambda: evaluate(state))


def after_receipts(state: AliSMSState, transitions: Iterable[totals.Transition]) -> None:
    """After matched receipts were committed: the billed signal, then due alerts. Never raises."""
    segments = sum(
        totals.billed_segments(t.phone_masked, t.success, t.sms_size) for t in transitions
    )
    values = state.params.values()
    price = values.price_per_sms
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if segments:
        cost = None if price is None else price * segments
        signals.sms_billed.send(app, segments=segments, cost=cost)
    if configured(values):
        _safely(state, lambda: evaluate(state))


def _safely(state: AliSMSState, work: Any) -> None:
    try:
        work()
    except Exception as exc:  # the send or the receipts are done; an alert is not worth a 500
        state.db.session.rollback()
        # The type only: a database error's text lists the statement's parameters.
        logger.error("Could not evaluate the SMS budget alerts: %s", type(exc).__name__)


def evaluate(state: AliSMSState) -> list[Alert]:
    """Fire every alert that is due and was not fired yet; returns those this call fired."""
    values = state.params.values()
    if not configured(values):
        return []
    day, month, _none = spends(state, values)
    known = state.alerts_fired
    # Past periods are forgotten. tuple() copies in one step: other threads may add to it.
    for old in [key for key in tuple(known) if key[1] < month.start]:
        known.discard(old)
    fired = []
    for spend in (day, month):
        for percent in spend.crossed:
            key = (spend.period, spend.start, percent)
            if key in known:
                continue
            assert spend.committed is not None and spend.budget is not None  # crossed says so
            alert = Alert(spend.period, spend.start, percent, spend.committed, spend.budget)
            if _claim(state, alert):
                fired.append(alert)
            known.add(key)  # fired by this call or by another worker: never again here
    for alert in fired:
        _announce(state, values, alert)
    return fired


def _claim(state: AliSMSState, alert: Alert) -> bool:
    """Insert the alert's row; False when another worker (or an earlier run) already did."""
    table = state.models.BudgetAlert.__table__
    session = state.db.session
    row = {
        "period": alert.period,
        "start": alert.start,
        "percent": alert.percent,
        "spent": alert.spent,
        "budget": alert.budget,
    }
    try:
        with transaction(session):
            session.execute(sa.insert(table), row)
    except IntegrityError:
        return False
    return True


def _announce(state: AliSMSState, values: Values, alert: Alert) -> None:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    logger.warning(
        "SMS budget alert: the %s spend reached %s%% of its budget (%s of %s CNY)",
        alert.period,
        alert.percent,
        alerts.money(alert.spent),
        alerts.money(alert.budget),
    )
    signals.budget_alert.send(
        app,
        period=alert.period,
        percent=alert.percent,
        spent=alert.spent,
        budget=alert.budget,
        start=alert.start,
    )
    url = values.webhook_url
    if url:
        kind = alerts.format_for(url, values.webhook_format)
        site = str(app.config.get("SERVER_NAME") or app.name)
        payload = alerts.body(alert, kind, site, app.config.get("ALISMS_LANGUAGE"))
        alerts.post_in_background(url, payload, kind=kind, secret=values.dingtalk_secret)


def _fired(state: AliSMSState, today: dt.date, first: dt.date) -> dict[str, list[Alert]]:
    model = state.models.BudgetAlert
    query = (
        sa.select(model.period, model.start, model.percent, model.spent, model.budget)
        .where(
            sa.or_(
                sa.and_(model.period == DAY, model.start == today),
                sa.and_(model.period == MONTH, model.start == first),
            )
        )
        .order_by(model.period, model.percent)
    )
    session = state.db.session
    found: dict[str, list[Alert]] = {}
    for period, start, percent, spent, budget in read_retrying(
        lambda: session.execute(query).all(), session
    ):
        found.setdefault(period, []).append(
            Alert(period, start, percent, Decimal(str(spent)), Decimal(str(budget)))
        )
    return found


def current_alerts(state: AliSMSState) -> list[Alert]:
    """The highest alert fired in the current day and month, for the panel's banner."""
    today, first = period_starts()
    found = _fired(state, today, first)
    return [found[period][-1] for period in (DAY, MONTH) if found.get(period)]
