"""Reconciliation: `flask alisms stats sync` reads QuerySendStatistics through the real SDK and
the emulator, and the panel shows Aliyun's daily totals beside the send log's."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import sqlalchemy as sa

from flask_alisms.flows.reconcile import beijing_today
from flask_alisms.testing import DysmsapiEmulator

from .conftest import KEY_SECRET, PHONE, Host


def _send_test(host: Host) -> None:
    result = host.app.test_cli_runner().invoke(args=["alisms", "send-test", PHONE])
    assert result.exit_code == 0, result.output


def test_sync_stores_both_figures_and_flags_days_that_differ(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    _send_test(ready_host)
    today = beijing_today()
    earlier = today - dt.timedelta(days=2)
    emulator.set_statistics(earlier, 5, failed=1)
    emulator.set_statistics(earlier, 2, international=True)
    runner = ready_host.app.test_cli_runner()
    result = runner.invoke(args=["alisms", "stats", "sync", "--days", "3"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"{today}  aliyun=1      ours=1" in lines
    assert f"{earlier}  aliyun=7      ours=0      DIFFERS" in lines
    assert lines[-1] == "Synced 3 day(s); 1 differ."
    model = ready_host.models.AliyunDaily
    rows = {r.day: r for (r,) in ready_host.query(sa.select(model))}
    assert sorted(rows) == [earlier, earlier + dt.timedelta(days=1), today]
    assert (rows[earlier].total, rows[earlier].success, rows[earlier].failed) == (7, 6, 1)

    page = ready_host.client("root").get("/alisms/admin/reconciliation")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    body = html[html.index("<tbody>") : html.index("</tbody>")]
    rows_html = re.findall(r"<tr[^>]*>.*?</tr>", body, re.S)
    assert len(rows_html) == 3
    assert "row-differs" in rows_html[2] and "Differs by +7" in rows_html[2]
    assert "Same" in rows_html[0] and "row-differs" not in rows_html[0]

    # A second sync replaces the figures (no duplicate days) once the log catches up.
    emulator.set_statistics(earlier, 0)
    emulator.set_statistics(earlier, 0, international=True)
    result = runner.invoke(args=["alisms", "stats", "sync", "--days", "3"])
    assert result.output.splitlines()[-1] == "Synced 3 day(s); 0 differ."
    assert ready_host.count(model) == 3


def test_sync_failure_changes_nothing_and_keeps_the_secret_out(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    runner = ready_host.app.test_cli_runner()
    emulator.read_access = False
    result = runner.invoke(args=["alisms", "stats", "sync"])
    assert result.exit_code == 1 and "isp.RAM_PERMISSION_DENY" in result.output
    emulator.read_access = True
    ready_host.set_params(aliyun__sms__access_key_secret="WrongSecretValue000000000000")
    result = runner.invoke(args=["alisms", "stats", "sync"])
    assert result.exit_code == 1 and "InvalidAccessKeySecret" in result.output
    assert "WrongSecretValue000000000000" not in result.output
    assert KEY_SECRET not in result.output
    emulator.stop()
    result = runner.invoke(args=["alisms", "stats", "sync"])
    assert result.exit_code == 1 and "SDK.HttpError" in result.output
    assert ready_host.count(ready_host.models.AliyunDaily) == 0


def test_sync_refuses_bad_days_and_other_senders(make_host: Any) -> None:
    host = make_host(ALISMS_SENDER="memory")
    host.configure_sms()
    runner = host.app.test_cli_runner()
    for days in ("0", "31", "x"):
        result = runner.invoke(args=["alisms", "stats", "sync", "--days", days])
        assert result.exit_code == 2, result.output
    result = runner.invoke(args=["alisms", "stats", "sync"])
    assert result.exit_code == 1 and "not Aliyun" in result.output


def test_panel_page_before_any_sync_and_for_non_admins(host: Host) -> None:
    assert host.client().get("/alisms/admin/reconciliation").status_code == 403
    page = host.client("root").get("/alisms/admin/reconciliation")
    assert page.status_code == 200
    assert "Nothing synced yet" in page.get_data(as_text=True)


def test_our_count_uses_beijing_days(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    """A send at 23:30 UTC belongs to the next Beijing day."""
    model = ready_host.models.SendLog
    today = beijing_today()
    midnight_utc = dt.datetime(today.year, today.month, today.day) - dt.timedelta(hours=8)
    with ready_host.app.app_context():
        session = ready_host.db.session
        for at, ok in (
            (midnight_utc - dt.timedelta(minutes=30), True),
            (midnight_utc + dt.timedelta(minutes=30), True),
            (midnight_utc + dt.timedelta(minutes=40), False),
        ):
            session.add(
                model(
                    created_at=at,
                    phone_masked="138****8000",
                    purpose="register",
                    sender="aliyun",
                    ok=ok,
                    category="sent" if ok else "network",
                    code="OK" if ok else "SDK.HttpError",
                )
            )
        session.commit()
    result = ready_host.app.test_cli_runner().invoke(
        args=["alisms", "stats", "sync", "--days", "2"]
    )
    lines = result.output.splitlines()
    assert f"{today}  aliyun=0      ours=1      DIFFERS" in lines
    assert f"{today - dt.timedelta(days=1)}  aliyun=0      ours=1      DIFFERS" in lines
