"""``flask alisms ...``: parameters, readiness check, test SMS, key rotation and data purge."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import re
import unicodedata
from typing import Any

import click
import sqlalchemy as sa
from flask.cli import with_appcontext

from .exceptions import BudgetExhausted, DecryptionError, InvalidParameter, InvalidPhone
from .flows import receipts, sendlog
from .flows.guard import persistence_warning
from .models import transaction, utcnow
from .parameters import ALLOW_REGISTER, ENABLE_MOBILE_REGISTER, PARAMETERS
from .phones import parse_phone
from .sms.receipts import ReceiptQueryError
from .state import get_state


@click.group("alisms", help="Alibaba Cloud SMS sign-up: parameters, checks and maintenance.")
def alisms_cli() -> None:
    pass


@alisms_cli.group("params", help="Show and change the parameters the admin panel edits.")
def params_cli() -> None:
    pass


def _actor() -> str:
    try:
        return "cli:" + getpass.getuser()
    except (KeyError, OSError):
        return "cli"


@params_cli.command("show")
@with_appcontext
def params_show() -> None:
    """List every parameter with its value (secrets masked) and where it comes from."""
    table = [
        (
            row.parameter.key,
            row.shown if row.is_set or row.parameter.kind != "str" else "(empty)",
            row.source,
        )
        for row in get_state().params.rows()
    ]
    key_width = max(_columns(key) for key, _, _ in [*table, ("KEY", "", "")])
    value_width = max(_columns(shown) for _, shown, _ in [*table, ("", "VALUE", "")])
    for key, shown, source in [("KEY", "VALUE", "SOURCE"), *table]:
        click.echo(f"{_pad(key, key_width)}  {_pad(shown, value_width)}  {source}")


def _columns(text: str) -> int:
    """Terminal columns of ``text``: a Chinese signature name takes two per character."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _columns(text))


@params_cli.command("set")
@click.argument("key")
@click.argument("value", required=False)
@with_appcontext
def params_set(key: str, value: str | None) -> None:
    """Set KEY to VALUE. For a secret, leave VALUE out to be prompted without echo."""
    param = PARAMETERS.get(key)
    if param is None:
        raise click.BadParameter(
            "unknown parameter; `flask alisms params show` lists them", param_hint="KEY"
        )
    if value is None:
        if not param.secret:
            raise click.UsageError("VALUE is required for this parameter.")
        value = click.prompt(f"{key}", hide_input=True)
    try:
        changed = get_state().params.update({key: value}, actor=_actor())
    except InvalidParameter as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{key} {'updated' if changed else 'unchanged'}.")


@params_cli.command("unset")
@click.argument("key")
@with_appcontext
def params_unset(key: str) -> None:
    """Remove KEY's database value, so the configured default applies again."""
    try:
        changed = get_state().params.update({key: None}, actor=_actor())
    except InvalidParameter as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{key} {'removed' if changed else 'was not set'}.")


@alisms_cli.command("check")
@click.option(
    "--remote", is_flag=True, help="Also ask Aliyun whether the AccessKey, signature and "
    "template work (sends nothing)."
)
@with_appcontext
def check(remote: bool) -> None:
    """Say what is missing before codes can be sent; exit 1 unless everything is ready."""
    state = get_state()
    if remote and not _remote_check(state):
        raise SystemExit(1)
    params = state.params
    problems = []
    if not state.sms_ready():
        problems += [f"missing {p.key}: {p.help}" for p in params.missing()]
    values = params.values()
    switches = (
        (ALLOW_REGISTER, values.allow_user_register),
        (ENABLE_MOBILE_REGISTER, values.enable_mobile_register),
    )
    problems += [f"{key} is false" for key, on in switches if not on]
    if state.user_adapter is None:
        problems.append("no user adapter: pass AliSMS(user_adapter=...)")
    click.echo(f"Sender: {state.sender_for_send().name}")
    warning = persistence_warning(state.throttle.storage)
    if warning is not None:  # a warning, not a missing piece: the exit status stays
        click.echo(f"Warning: {warning}")
    click.echo(f"Sign-in by SMS code: {'on' if state.mobile_login_open() else 'off'}")
    if values.test_numbers:
        click.echo(
            f"Warning: {len(values.test_numbers)} test number(s) in phone.test_numbers never "
            "reach Aliyun and take a fixed code."
        )
    if state.mobile_registration_open():  # the verdict; the list above only says why not
        click.echo("Ready: mobile registration is open.")
        return
    for problem in problems:
        click.echo(f"- {problem}")
    click.echo("Mobile registration is closed.")
    raise SystemExit(1)


@alisms_cli.command("send-test")
@click.argument("phone")
@with_appcontext
def send_test(phone: str) -> None:
    """Send a test code SMS to PHONE with the saved parameters and print Aliyun's answer."""
    from .flows.messages import send_test_message

    state = get_state()
    try:
        parsed = parse_phone(phone, state.params.values().allowed_country_codes)
    except InvalidPhone as exc:
        raise click.BadParameter(exc.message, param_hint="PHONE") from None
    if not state.sms_ready():
        missing = ", ".join(p.key for p in state.params.missing())
        raise click.ClickException(f"Fill in these parameters first: {missing}")
    try:
        result = send_test_message(parsed)
    except BudgetExhausted as exc:
        raise click.ClickException(
            f"Not sent: the {exc.period} SMS budget is reached and budget.hard_stop is on."
        ) from None
    click.echo(f"Code: {result.code}")
    if result.request_id:
        click.echo(f"RequestId: {result.request_id}")
    if result.biz_id:
        click.echo(f"BizId: {result.biz_id}")
    if result.ok:
        click.echo(f"Sent to {parsed.masked} in {result.duration_ms:.0f} ms.")
        return
    if result.advice is not None:
        click.echo(f"Category: {result.advice.category.value}")
        click.echo(f"What to do: {result.advice.admin_message}")
    raise click.ClickException("Aliyun did not accept the message.")


@alisms_cli.command("rotate-key")
@with_appcontext
def rotate_key() -> None:
    """Re-encrypt stored secrets with ALISMS_ENCRYPTION_KEY (old keys in ..._FALLBACKS)."""
    try:
        count = get_state().params.rotate_encryption()
    except DecryptionError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Re-encrypted {count} secret value(s) with the current key.")


@alisms_cli.command("schema")
@click.option(
    "--missing", is_flag=True,
    help="Only the tables, columns and indexes the database lacks (for an upgrade).",
)
@with_appcontext
def schema_sql(missing: bool) -> None:
    """Print the SQL for the extension's tables, in the app's database dialect.

    For hosts that write or review their migrations; nothing is executed.
    """
    from . import schema

    state = get_state()
    session = state.db.session
    try:
        found = schema.statements(
            state.models, lambda table: session.get_bind(clause=table), missing=missing
        )
    except sa.exc.SQLAlchemyError as exc:  # the message may hold the URL's password
        raise click.ClickException(
            f"Could not read the database's tables ({type(exc).__name__})."
        ) from None
    click.echo("\n\n".join(found) if found else schema.UP_TO_DATE)


# ASCII digits only (\d takes "٣٠") and nothing after (re "$" would allow a final "\n").
_AGE = re.compile(r"([0-9]{1,5})([dh])")


@alisms_cli.command("purge")
@click.option(
    "--older-than", "older_than", default="30d", show_default=True, help="Age like 30d or 12h."
)
@with_appcontext
def purge(older_than: str) -> None:
    """Delete send-log rows and dead codes older than the given age."""
    match = _AGE.fullmatch(older_than)
    if not match or int(match.group(1)) == 0:  # "0d" would empty the whole log
        raise click.BadParameter(
            "use a whole number of days or hours from 1, e.g. 30d or 12h",
            param_hint="--older-than",
        )
    amount, unit = int(match.group(1)), match.group(2)
    cutoff = utcnow() - (dt.timedelta(days=amount) if unit == "d" else dt.timedelta(hours=amount))
    state = get_state()
    log = state.models.SendLog
    session = state.db.session
    with transaction(session):
        outcome: Any = session.execute(sa.delete(log).where(log.created_at < cutoff))
    deleted = outcome.rowcount
    codes = state.codes.purge(cutoff)
    sendlog.forget_totals(state)  # the hourly totals counted rows that are gone
    click.echo(f"Removed {deleted or 0} log row(s) and {codes} code(s).")


def _age(text: str, option: str) -> dt.timedelta:
    match = _AGE.fullmatch(text)
    if not match or int(match.group(1)) == 0:
        raise click.BadParameter(
            "use a whole number of days or hours from 1, e.g. 2h or 7d", param_hint=option
        )
    amount = int(match.group(1))
    return dt.timedelta(days=amount) if match.group(2) == "d" else dt.timedelta(hours=amount)


@alisms_cli.command("log")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@with_appcontext
def show_log(limit: int, as_json: bool) -> None:
    """Print the most recent send-log rows with their delivery state (numbers masked)."""
    state = get_state()
    receipts.match_pending(state)
    zone = sendlog.time_zone()
    now, wait = utcnow(), sendlog.wait_minutes()
    for row in sendlog.iter_rows(state, sendlog.Filters(days=36500), limit):
        created = sendlog.local_time(row.created_at, zone)
        item = {
            "time": created.isoformat() if created else None,
            "number": row.phone_masked,
            "purpose": row.purpose,
            "outcome": row.category,
            "code": row.code,
            "delivery": sendlog.delivery_state(row, now, wait),
            "receipt_code": row.receipt_code,
            "biz_id": row.biz_id,
        }
        if as_json:
            click.echo(json.dumps(item, ensure_ascii=False))
        else:
            click.echo(
                f"{(item['time'] or '')[:19]}  {row.phone_masked:<16} {row.purpose:<8} "
                f"{row.category:<14} {item['delivery'] or '-':<11} {row.receipt_code or ''}"
            )


@alisms_cli.group("receipts", help="Delivery receipts: poll Aliyun for sites it cannot push to.")
def receipts_cli() -> None:
    pass


@receipts_cli.command("sync")
@click.option("--since", default="2h", show_default=True, help="How far back, like 2h or 3d.")
@click.option(
    "--max-calls",
    default=200,
    show_default=True,
    type=click.IntRange(1, 10000),
    help="QuerySendDetails calls at most (one per waiting SMS).",
)
@with_appcontext
def receipts_sync(since: str, max_calls: int) -> None:
    """Ask QuerySendDetails about sends still waiting for a receipt (safe to run from cron)."""
    window = _age(since, "--since")
    try:
        result = receipts.sync(get_state(), window, max_calls=max_calls)
    except ReceiptQueryError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(
        f"Asked {result.asked}: {result.delivered} delivered, {result.failed} not delivered, "
        f"{result.waiting} still waiting, {result.errors} error(s)."
    )
    if result.errors and not (result.delivered or result.failed or result.waiting):
        raise SystemExit(1)


@alisms_cli.command("budget")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of lines.")
@with_appcontext
def budget_report(as_json: bool) -> None:
    """Print today's and this month's SMS spend against the budgets; fire due alerts (cron)."""
    from flask import current_app

    from . import signals
    from .flows import alerts, budget

    state = get_state()
    fired: list[dict[str, Any]] = []

    def collect(sender: Any, **alert: Any) -> None:
        fired.append({"period": alert["period"], "percent": alert["percent"]})

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    with signals.budget_alert.connected_to(collect, sender=app):
        receipts.match_pending(state)  # receipts that came before their send rows
        budget.evaluate(state)
    alerts.wait()  # the webhooks' threads would die with this process
    status = budget.status(state)
    if as_json:
        click.echo(json.dumps(status.as_json(fired)))
        return
    price = status.money(status.price) + " CNY" if status.price is not None else "unknown"
    click.echo(f"Price per billed SMS: {price}; hard stop: {'on' if status.hard_stop else 'off'}")
    if status.inactive_reason:
        click.echo(status.inactive_reason)
    for spend in status.periods:
        limit = "none" if spend.budget is None else status.money(spend.budget)
        used = "" if spend.percent is None else f" ({spend.percent}%)"
        click.echo(
            f"{spend.period:<5} from {spend.start}: spent {status.money(spend.spent)}, in "
            f"flight {status.money(spend.in_flight)}, committed {status.money(spend.committed)}"
            f" of budget {limit}{used}"
        )
    for alert in fired:
        click.echo(f"Alert fired: {alert['period']} {alert['percent']}%")


# -- Aliyun-checked setup and reconciliation -------------------------------------------------

_REMOTE_WORDS = {"ok": "ok", "bad": "FAILED", "unknown": "could not check"}


def _remote_check(state: Any) -> bool:
    """Print what Aliyun says about the saved setup; False when a line is red."""
    from .flows import setup_check

    report = setup_check.refresh(state)
    if report is None:
        click.echo("Aliyun check: skipped (the sender is not Aliyun or parameters are missing).")
        return True
    for line in report.lines:
        detail = line.code or line.why
        if line.name == "template_text":
            detail = "variables " + (", ".join(line.variables) or "none")
        elif line.reason:
            detail = f"{line.why}: {line.reason}"
        click.echo(f"Aliyun {line.name}: {_REMOTE_WORDS[line.verdict]} ({detail})")
    return not report.failed


@alisms_cli.group("stats", help="Aliyun's send statistics beside the send log.")
def stats_cli() -> None:
    pass


@stats_cli.command("sync")
@click.option(
    "--days", default=7, show_default=True, type=click.IntRange(1, 30),
    help="How many Beijing days back, today included.",
)
@with_appcontext
def stats_sync(days: int) -> None:
    """Read QuerySendStatistics and store Aliyun's daily totals beside ours (for cron)."""
    from .flows import reconcile

    try:
        rows = reconcile.sync(get_state(), days)
    except reconcile.SyncError as exc:
        raise click.ClickException(exc.message) from None
    differ = 0
    for row in rows:
        flag = "DIFFERS" if row.differs else ""
        differ += row.differs
        click.echo(f"{row.day}  aliyun={row.total:<6} ours={row.ours:<6} {flag}".rstrip())
    click.echo(f"Synced {len(rows)} day(s); {differ} differ.")


@stats_cli.command("rebuild")
@click.option(
    "--days", default=None, type=click.IntRange(1, 3660),
    help="Only the last N local days, today included.",
)
@click.option(
    "--all", "everything", is_flag=True,
    help="Every day in the log, the oldest one included even if a purge cut it.",
)
@with_appcontext
def stats_rebuild(days: int | None, everything: bool) -> None:
    """Recompute the daily totals behind monitoring and budgets from the send log.

    For an upgrade from a version without them, or a repair. Sends wait while it runs, so
    run a large one at a quiet time. By default the days the log covers in full: from the
    day after its oldest row, since `purge` may have cut that day and its totals must not
    shrink.
    """
    from .flows import totals

    state = get_state()
    if days is not None:
        since: dt.date | None = totals.today() - dt.timedelta(days=days - 1)
    else:
        oldest = totals.oldest_day(state)
        if oldest is None:
            click.echo("The send log is empty: nothing to rebuild.")
            return
        since = oldest if everything else oldest + dt.timedelta(days=1)
    read = totals.rebuild(state, since)
    click.echo(f"Rebuilt the daily totals since {since} from {read} send-log row(s).")
