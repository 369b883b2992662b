"""The running daily totals behind monitoring and budgets: kept by sends and receipts,
equal to what the send log says, and rebuilt from it by `flask alisms stats rebuild`."""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa

from flask_alisms.testing import DysmsapiEmulator

from .conftest import Host, api_post
from .test_receipts import push, report, send, token_of

TEST_NUMBER, TEST_CODE = "+8613012345678", "246810"


def totals(host: Host) -> dict[tuple[str, str], dict[str, int]]:
    table = host.models.DailyTotal.__table__
    rows = host.query(sa.select(table).order_by(table.c.day, table.c.purpose))
    return {
        (str(r.day), r.purpose): {
            k: getattr(r, k)
            for k in ("sent", "errors", "skipped", "local", "delivered", "failed", "billed")
        }
        for r in rows
    }


def failures(host: Host) -> list[tuple[str, str, int]]:
    table = host.models.FailureTotal.__table__
    rows = host.query(sa.select(table).order_by(table.c.source, table.c.code))
    return [(r.source, r.code, r.count) for r in rows]


def by_purpose(host: Host) -> dict[str, dict[str, int]]:
    result: dict[str, dict[str, int]] = {}
    for (_day, purpose), counts in totals(host).items():
        into = result.setdefault(purpose, dict.fromkeys(counts, 0))
        for key, value in counts.items():
            into[key] += value
    return result


def _send_code(host: Host, phone: str, purpose: str) -> Any:
    return api_post(host.client(), "send-code", {"phone": phone, "purpose": purpose})


def test_every_kind_of_send_and_receipt_is_counted_once(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    ready_host.set_params(phone__test_numbers=f"{TEST_NUMBER}={TEST_CODE}")
    delivered = send(ready_host, "+8613800138000")
    undelivered = send(ready_host, "+8613900139000")
    assert _send_code(ready_host, "+8613700137000", "register").status_code == 200
    assert _send_code(ready_host, "+8613600136000", "reset").status_code == 200  # no account
    assert _send_code(ready_host, TEST_NUMBER, "register").status_code == 200
    emulator.fail_next("isv.BUSINESS_LIMIT_CONTROL")
    assert _send_code(ready_host, "+8613500135000", "register").status_code == 200

    token = token_of(ready_host)
    body = [
        report(delivered, "13800138000", sms_size="2"),
        report(undelivered, "13900139000", success=False),
    ]
    assert push(ready_host, token, body).status_code == 200
    assert push(ready_host, token, body).status_code == 200  # Aliyun repeats itself

    counts = by_purpose(ready_host)
    assert counts["test"] == {
        "sent": 2, "errors": 0, "skipped": 0, "local": 0,
        "delivered": 1, "failed": 1, "billed": 2,
    }  # fmt: skip
    assert counts["register"] == {
        "sent": 1, "errors": 1, "skipped": 0, "local": 1,
        "delivered": 0, "failed": 0, "billed": 0,
    }  # fmt: skip
    assert counts["reset"]["skipped"] == 1 and counts["reset"]["sent"] == 0
    assert failures(ready_host) == [
        ("receipt", "UNDELIV", 1),
        ("send", "isv.BUSINESS_LIMIT_CONTROL", 1),
    ]


def test_rebuild_gives_what_the_sends_and_receipts_counted(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    first = send(ready_host, "+8613800138000")
    send(ready_host, "+8613900139000")
    emulator.fail_next("isv.MOBILE_NUMBER_ILLEGAL")
    _send_code(ready_host, "+8613700137000", "register")
    assert push(ready_host, token_of(ready_host), [report(first, sms_size="3")]).status_code == 200
    kept, kept_failures = totals(ready_host), failures(ready_host)
    assert kept and kept_failures

    with ready_host.app.app_context():  # as an upgrade finds them: nothing counted yet
        for model in (ready_host.models.DailyTotal, ready_host.models.FailureTotal):
            ready_host.db.session.execute(sa.delete(model))
        ready_host.db.session.commit()
    assert totals(ready_host) == {}

    runner = ready_host.app.test_cli_runner()
    result = runner.invoke(args=["alisms", "stats", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "from 0 send-log row(s)" in result.output  # today may have been cut by a purge
    assert totals(ready_host) == {}
    result = runner.invoke(args=["alisms", "stats", "rebuild", "--all"])
    assert result.exit_code == 0, result.output
    assert "from 3 send-log row(s)" in result.output
    assert totals(ready_host) == kept
    assert failures(ready_host) == kept_failures

    again = runner.invoke(args=["alisms", "stats", "rebuild", "--days", "1"])
    assert again.exit_code == 0, again.output
    assert totals(ready_host) == kept  # recomputed, not added twice


def test_rebuild_keeps_the_totals_of_purged_days(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    send(ready_host, "+8613800138000")
    kept = totals(ready_host)
    with ready_host.app.app_context():  # the day's rows purged, as `purge` would
        ready_host.db.session.execute(sa.delete(ready_host.models.SendLog))
        ready_host.db.session.commit()
    runner = ready_host.app.test_cli_runner()
    for args in ([], ["--all"]):
        result = runner.invoke(args=["alisms", "stats", "rebuild", *args])
        assert result.exit_code == 0, result.output
        assert "nothing to rebuild" in result.output
    assert totals(ready_host) == kept


def test_a_send_made_while_the_rebuild_reads_waits_and_is_counted(
    ready_host: Host, emulator: DysmsapiEmulator, monkeypatch: Any
) -> None:
    """The rebuild holds the totals from before its read to its commit: a send in between
    waits for it and then adds itself, instead of being counted by neither."""
    from flask_alisms.flows import totals as module
    from flask_alisms.state import get_state

    assert _send_code(ready_host, "+8613800138000", "register").status_code == 200
    reading, go_on = threading.Event(), threading.Event()
    real_local_day = module.local_day

    def pause_in_the_read(at: Any, tz: Any) -> Any:
        if not reading.is_set():  # the rebuild's first row; the send below passes through
            reading.set()
            go_on.wait(30)
        return real_local_day(at, tz)

    monkeypatch.setattr(module, "local_day", pause_in_the_read)
    problems: list[BaseException] = []
    answers: list[Any] = []

    def rebuild() -> None:
        try:
            with ready_host.app.app_context():
                module.rebuild(get_state())
        except BaseException as exc:  # reported below, in the test's thread
            problems.append(exc)

    def send_during_the_read() -> None:
        answers.append(_send_code(ready_host, "+8613900139000", "register"))

    rebuilder = threading.Thread(target=rebuild)
    rebuilder.start()
    assert reading.wait(30), problems
    sender = threading.Thread(target=send_during_the_read)
    sender.start()
    sender.join(1.5)
    waited = sender.is_alive()
    go_on.set()
    rebuilder.join(60)
    sender.join(60)
    assert problems == []
    assert [answer.status_code for answer in answers] == [200]
    assert waited, "the send went through while the rebuild was reading the log"
    assert by_purpose(ready_host)["register"]["sent"] == 2
    counted = totals(ready_host)
    with ready_host.app.app_context():
        module.rebuild(get_state())
    assert totals(ready_host) == counted
