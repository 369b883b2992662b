"""Delivery receipts: pushed to the hook, polled with QuerySendDetails, shown in the send log.

Sends go through the real SDK to the emulator; pushes come from the emulator over real HTTP
to the host app served on a local port, as Aliyun's SmsReport push would.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from flask_alisms.exceptions import ConfigurationError
from flask_alisms.models import utcnow
from flask_alisms.testing import DysmsapiEmulator

from .conftest import Host, form_token

NUMBERS = ["+8613800138000", "+8613900139000", "+8613700137000", "+8613600136000"]


def send(host: Host, phone: str) -> str:
    """A test SMS through the CLI (real SDK, emulator); returns its BizId."""
    result = host.app.test_cli_runner().invoke(args=["alisms", "send-test", phone])
    assert result.exit_code == 0, result.output
    match = re.search(r"BizId: (\S+)", result.output)
    assert match, result.output
    return match.group(1)


def rows(host: Host) -> list[Any]:
    table = host.models.SendLog.__table__
    return host.query(sa.select(table).order_by(table.c.id))


def receipts(host: Host) -> list[Any]:
    table = host.models.Receipt.__table__
    return host.query(sa.select(table).order_by(table.c.id))


def token_of(host: Host) -> str:
    """The push token, made by the first look at the send log."""
    html = host.client(admin="root").get("/alisms/admin/log").get_data(as_text=True)
    match = re.search(r"/alisms/hooks/sms-report\?token=([A-Za-z0-9_\-]+)", html)
    assert match, "no push URL on the send log page"
    return match.group(1)


def report(biz_id: str, phone: str = "13800138000", success: bool = True, **extra: Any) -> dict:
    item = {
        "phone_number": phone,
        "send_time": "2026-12-01 10:00:00",
        "report_time": "2026-12-01 10:00:05",
        "success": success,
        "err_code": "DELIVERED" if success else "UNDELIV",
        "err_msg": "用户接收成功" if success else "用户无法接收",
        "sms_size": "1",
        "biz_id": biz_id,
        "out_id": "",
    }
    item.update(extra)
    return item


def push(host: Host, token: str, body: Any) -> Any:
    return host.client().post(
        "/alisms/hooks/sms-report", query_string={"token": token}, json=body
    )


@pytest.fixture
def served(ready_host: Host) -> Iterator[str]:
    """The host app on a real local port, so the emulator can push to it."""
    server = make_server("127.0.0.1", 0, ready_host.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


# -- push ------------------------------------------------------------------------------------


def test_pushed_receipts_mark_the_send_log(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    delivered = send(ready_host, NUMBERS[0])
    failed = send(ready_host, NUMBERS[1])
    token = token_of(ready_host)
    body = [report(delivered), report(failed, "13900139000", success=False)]
    response = push(ready_host, token, body)
    assert response.status_code == 200
    assert response.get_json() == {"code": 0, "msg": "接收成功"}
    by_biz = {row.biz_id: row for row in rows(ready_host)}
    assert by_biz[delivered].delivery == "delivered"
    assert by_biz[failed].delivery == "failed" and by_biz[failed].receipt_code == "UNDELIV"
    # A final receipt ends the need for the sealed number.
    assert by_biz[delivered].phone_sealed is None and by_biz[failed].phone_sealed is None
    assert by_biz[delivered].delivered_at == dt.datetime(2026, 12, 1, 2, 0, 5)  # Beijing -> UTC
    stored = receipts(ready_host)
    assert len(stored) == 2 and all(r.matched for r in stored)
    # The receipts table never holds a number, only a keyed digest.
    assert not any("13800138000" in str(value) for r in stored for value in r)
    html = ready_host.client(admin="root").get("/alisms/admin/log").get_data(as_text=True)
    assert "delivered" in html and "UNDELIV" in html
    only = ready_host.client(admin="root").get("/alisms/admin/log?delivery=failed")
    assert "+86139****9000" in only.get_data(as_text=True)
    assert "+86138****8000" not in only.get_data(as_text=True)


def test_duplicates_are_stored_once(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    biz = send(ready_host, NUMBERS[0])
    token = token_of(ready_host)
    assert push(ready_host, token, [report(biz), report(biz)]).status_code == 200
    assert push(ready_host, token, [report(biz, "+8613800138000")]).status_code == 200
    assert len(receipts(ready_host)) == 1
    # Another number under the same BizId is another receipt (a multi-number send).
    assert push(ready_host, token, [report(biz, "13900139000")]).status_code == 200
    assert len(receipts(ready_host)) == 2


def test_wrong_token_and_malformed_bodies_store_nothing(ready_host: Host) -> None:
    client = ready_host.client()
    # No token exists yet: nothing matches, not even an empty one.
    for query in ({}, {"token": ""}, {"token": "x" * 32}):
        answer = client.post("/alisms/hooks/sms-report", query_string=query, json=[report("1")])
        assert answer.status_code == 403
    token = token_of(ready_host)
    wrong = token[:-1] + ("B" if token.endswith("A") else "A")  # one character off
    assert push(ready_host, wrong, [report("1")]).status_code == 403
    for body in (
        {},
        [],
        [1],
        [report("1", success="true")],
        [{**report("1"), "biz_id": ""}],
        [report("1", phone_number="13800138000x")],
        [report("1", report_time="yesterday")],
        [report("1"), report("2", sms_size="two")],
        [{k: v for k, v in report("1").items() if k != "biz_id"}],
    ):
        answer = push(ready_host, token, body)
        assert answer.status_code == 400, body
        assert answer.get_json()["code"] != 0
    raw = ready_host.client().post(
        "/alisms/hooks/sms-report",
        query_string={"token": token},
        data=b"[{",
        content_type="application/json",
    )
    assert raw.status_code == 400
    assert receipts(ready_host) == []


def test_a_database_failure_is_a_503_that_aliyun_retries(ready_host: Host) -> None:
    token = token_of(ready_host)
    with ready_host.app.app_context():
        ready_host.models.Receipt.__table__.drop(ready_host.db.engine)
    try:
        response = push(ready_host, token, [report("1")])
        assert response.status_code == 503
        assert response.get_json()["code"] != 0
    finally:
        with ready_host.app.app_context():
            ready_host.models.Receipt.__table__.create(ready_host.db.engine)
    assert push(ready_host, token, [report("1")]).status_code == 200


def test_a_receipt_before_its_send_row_is_matched_later(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    token = token_of(ready_host)
    assert push(ready_host, token, [report("900000000000000001^0")]).status_code == 200
    assert [r.matched for r in receipts(ready_host)] == [False]
    biz = send(ready_host, NUMBERS[0])
    # The send row appears with its BizId (here: rewritten to the early receipt's).
    log = ready_host.models.SendLog
    with ready_host.app.app_context():
        ready_host.db.session.execute(
            sa.update(log).where(log.biz_id == biz).values(biz_id="900000000000000001^0")
        )
        ready_host.db.session.commit()
    assert rows(ready_host)[0].delivery == "accepted"
    ready_host.client(admin="root").get("/alisms/admin/log")  # any later batch or view matches
    assert rows(ready_host)[0].delivery == "delivered"
    assert [r.matched for r in receipts(ready_host)] == [True]


def test_a_batch_of_a_thousand_takes_a_few_statements(ready_host: Host) -> None:
    token = token_of(ready_host)
    body = [report(f"{i:018d}^0", f"138{i:08d}") for i in range(1000)]
    statements: list[str] = []
    with ready_host.app.app_context():
        engine = ready_host.db.engine

        def count(*args: Any) -> None:
            statements.append(args[2])

        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            response = push(ready_host, token, body)
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
    assert response.status_code == 200
    assert len(receipts(ready_host)) == 1000
    assert len(statements) <= 12, statements
    # The same batch again (Aliyun's retry) adds nothing.
    assert push(ready_host, token, body).status_code == 200
    assert len(receipts(ready_host)) == 1000


def test_the_token_is_regenerated_from_the_panel(ready_host: Host) -> None:
    old = token_of(ready_host)
    client = ready_host.client(admin="root")
    page = client.get("/alisms/admin/log").get_data(as_text=True)
    assert f"http://localhost/alisms/hooks/sms-report?token={old}" in page
    assert client.post("/alisms/admin/receipts/token", data={}).status_code == 400
    response = client.post("/alisms/admin/receipts/token", data={"csrf_token": form_token(page)})
    assert response.status_code == 302
    new = token_of(ready_host)
    assert new != old and len(new) >= 16
    assert push(ready_host, old, [report("1")]).status_code == 403
    assert push(ready_host, new, [report("1")]).status_code == 200
    # The parameters page shows it masked; the change log never holds it.
    params = client.get("/alisms/admin/").get_data(as_text=True)
    assert new not in params


def test_a_token_fixed_empty_by_the_config_refuses_every_push(make_host: Any) -> None:
    host = make_host(ALISMS_PARAMS={"aliyun.sms.report_token": ""})
    assert host.client(admin="root").get("/alisms/admin/log").status_code == 200
    for query in ({}, {"token": ""}):
        answer = host.client().post("/alisms/hooks/sms-report", query_string=query, json=[])
        assert answer.status_code == 403


def test_the_hook_works_beside_a_hosts_csrf_protection(tmp_path: Any) -> None:
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy
    from flask_wtf.csrf import CSRFProtect

    from flask_alisms import AliSMS

    app = Flask("csrf_host")
    app.config.update(
        SECRET_KEY="csrf-host-secret",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/csrf.db",
        ALISMS_SENDER="memory",
    )
    db = SQLAlchemy(app)
    CSRFProtect(app)  # before the extension, which then exempts its hook
    alisms = AliSMS(app, db=db)
    with app.app_context():
        db.create_all()
        alisms.params.update({"aliyun.sms.report_token": "t" * 24}, actor="test")
    client = app.test_client()
    answer = client.post(
        "/alisms/hooks/sms-report", query_string={"token": "t" * 24}, json=[report("1")]
    )
    assert answer.status_code == 200, answer.get_data()
    # The host's own POST routes stay protected.
    assert client.post("/alisms/api/send-code", json={}).status_code == 400


# -- the emulator pushing over HTTP ----------------------------------------------------------


def test_emulator_pushes_with_duplicates_and_failures(
    ready_host: Host, emulator: DysmsapiEmulator, served: str
) -> None:
    token = token_of(ready_host)
    emulator.configure_receipts(
        f"{served}/alisms/hooks/sms-report?token={token}", delay=5, duplicates=2
    )
    emulator.fail_delivery(NUMBERS[1], "EXPIRED")
    first = send(ready_host, NUMBERS[0])
    second = send(ready_host, NUMBERS[1])
    assert emulator.push_receipts() == 0  # not due yet
    emulator.advance_time(6)
    assert emulator.push_receipts() == 6  # two reports, each pushed three times
    assert [status for _, status in emulator.deliveries.push_log] == [200, 200, 200]
    by_biz = {row.biz_id: row for row in rows(ready_host)}
    assert by_biz[first].delivery == "delivered"
    assert (by_biz[second].delivery, by_biz[second].receipt_code) == ("failed", "EXPIRED")
    assert len(receipts(ready_host)) == 2


def test_emulator_push_with_a_wrong_token_is_refused(
    ready_host: Host, emulator: DysmsapiEmulator, served: str
) -> None:
    token_of(ready_host)
    emulator.configure_receipts(f"{served}/alisms/hooks/sms-report?token=wrong-token-00000000")
    send(ready_host, NUMBERS[0])
    assert emulator.push_receipts() == 1
    assert emulator.deliveries.push_log == [(1, 403)]
    assert receipts(ready_host) == [] and rows(ready_host)[0].delivery == "accepted"


def test_emulator_pushes_in_the_background_after_the_delay(
    ready_host: Host, emulator: DysmsapiEmulator, served: str
) -> None:
    token = token_of(ready_host)
    url = f"{served}/alisms/hooks/sms-report?token={token}"
    emulator.configure_receipts(url, delay=0.3, background=True)
    send(ready_host, NUMBERS[0])  # (that nothing comes before the delay: the test above)
    deadline = time.monotonic() + 10
    # The push is logged once its answer is back, which is just after the row changed.
    while time.monotonic() < deadline and not (
        rows(ready_host)[0].delivery != "accepted" and emulator.deliveries.push_log
    ):
        time.sleep(0.05)
    assert rows(ready_host)[0].delivery == "delivered"
    assert emulator.deliveries.push_log == [(1, 200)]


def test_emulator_success_rate_is_applied(emulator: DysmsapiEmulator) -> None:
    emulator.configure_receipts(success_rate=0.5, seed=7)
    emulator.deliveries.accepted("b", tuple(f"1380000{i:04d}" for i in range(400)), "", 0.0)
    fates = [emulator.deliveries.fate("b", f"1380000{i:04d}") for i in range(400)]
    delivered = sum(1 for fate in fates if fate is not None and fate.success)
    assert 150 < delivered < 250
    with pytest.raises(ValueError):
        emulator.configure_receipts(success_rate=1.5)


# -- polling ---------------------------------------------------------------------------------


def sync(host: Host, *args: str) -> Any:
    return host.app.test_cli_runner().invoke(args=["alisms", "receipts", "sync", *args])


def test_polling_finds_delivery_states(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    emulator.configure_receipts(delay=60)
    emulator.fail_delivery(NUMBERS[1], "UNDELIV")
    send(ready_host, NUMBERS[0])
    send(ready_host, NUMBERS[1])
    calls = emulator.requests_served
    result = sync(ready_host)
    assert result.exit_code == 0, result.output
    assert "Asked 2: 0 delivered, 0 not delivered, 2 still waiting" in result.output
    assert emulator.requests_served - calls == 2  # one number per call
    emulator.advance_time(61)
    result = sync(ready_host)
    assert "Asked 2: 1 delivered, 1 not delivered, 0 still waiting" in result.output
    states = [(row.delivery, row.receipt_code, row.phone_sealed) for row in rows(ready_host)]
    assert states == [("delivered", "DELIVERED", None), ("failed", "UNDELIV", None)]
    # Idempotent: nothing is waiting any more, so cron runs cost no call.
    calls = emulator.requests_served
    assert "Asked 0:" in sync(ready_host).output
    assert emulator.requests_served == calls


def test_polling_is_bounded_and_forgets_old_numbers(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    emulator.configure_receipts(delay=600)
    for phone in NUMBERS:
        send(ready_host, phone)
    assert "Asked 3:" in sync(ready_host, "--max-calls", "3").output
    log = ready_host.models.SendLog
    with ready_host.app.app_context():
        first = ready_host.db.session.scalar(sa.select(sa.func.min(log.id)))
        ready_host.db.session.execute(
            sa.update(log)
            .where(log.id == first)
            .values(created_at=utcnow() - dt.timedelta(days=31))
        )
        ready_host.db.session.commit()
    result = sync(ready_host, "--since", "40d")
    assert "Asked 3:" in result.output  # the 31-day-old one is past what Aliyun answers
    assert rows(ready_host)[0].phone_sealed is None
    assert all(row.phone_sealed for row in rows(ready_host)[1:])
    assert sync(ready_host, "--since", "soon").exit_code != 0
    assert sync(ready_host, "--since", "0h").exit_code != 0


def test_polling_reports_a_wrong_secret(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    send(ready_host, NUMBERS[0])
    ready_host.set_params(aliyun__sms__access_key_secret="WrongSecretValue0000")
    result = sync(ready_host)
    assert result.exit_code == 1
    assert "1 error(s)" in result.output
    assert rows(ready_host)[0].delivery == "accepted"


def test_sealed_numbers_are_encrypted(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    send(ready_host, NUMBERS[0])
    row = rows(ready_host)[0]
    assert row.phone_sealed and "13800138000" not in row.phone_sealed
    assert row.phone_tail == "8000"
    with ready_host.app.app_context():
        state = ready_host.app.extensions["alisms"]
        assert state.keyring.decrypt(row.phone_sealed) == "13800138000"


# -- the send log: states, time zone, pages, CSV, CLI ----------------------------------------


def test_no_receipt_after_the_wait(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    send(ready_host, NUMBERS[0])
    send(ready_host, NUMBERS[1])
    log = ready_host.models.SendLog
    with ready_host.app.app_context():
        first = ready_host.db.session.scalar(sa.select(sa.func.min(log.id)))
        ready_host.db.session.execute(
            sa.update(log)
            .where(log.id == first)
            .values(created_at=utcnow() - dt.timedelta(minutes=20))
        )
        ready_host.db.session.commit()
    client = ready_host.client(admin="root")
    late = client.get("/alisms/admin/log?delivery=no_receipt").get_data(as_text=True)
    assert "+86138****8000" in late and "+86139****9000" not in late
    assert "no receipt after 15 min" in late
    waiting = client.get("/alisms/admin/log?delivery=accepted").get_data(as_text=True)
    assert "+86139****9000" in waiting and "+86138****8000" not in waiting
    assert client.get("/alisms/admin/log?delivery=lost").status_code == 400


def test_times_follow_the_configured_zone(make_host: Any, emulator: DysmsapiEmulator) -> None:
    for zone, offset in (("Asia/Shanghai", "+08:00"), ("Europe/London", "+00:00")):
        host = make_host(ALISMS_TIMEZONE=zone)
        host.configure_sms()
        send(host, NUMBERS[0])
        emulator.reset()
        html = host.client(admin="root").get("/alisms/admin/log").get_data(as_text=True)
        assert re.search(rf'<time datetime="[0-9T:.\-]+{re.escape(offset)}">', html), zone
        assert f"<code>{zone}</code>" in html
    for bad in ("Mars/Olympus", "", 8, "../etc/passwd", "Asia"):
        with pytest.raises(ConfigurationError, match="ALISMS_TIMEZONE"):
            make_host(ALISMS_TIMEZONE=bad)
    with pytest.raises(ConfigurationError, match="ALISMS_RECEIPT_WAIT_MINUTES"):
        make_host(ALISMS_RECEIPT_WAIT_MINUTES=0)


def _add_rows(host: Host, count: int, **values: Any) -> None:
    log = host.models.SendLog
    now = utcnow()
    base = {
        "phone_masked": "+86138****8000",
        "purpose": "register",
        "sender": "aliyun",
        "ok": True,
        "category": "sent",
        "code": "OK",
        "duration_ms": 1.0,
    }
    with host.app.app_context():
        host.db.session.execute(
            sa.insert(log.__table__),
            [
                {**base, "created_at": now - dt.timedelta(seconds=i), "biz_id": f"b{i}", **values}
                for i in range(count)
            ],
        )
        host.db.session.commit()


def test_keyset_pages_walk_the_whole_log(ready_host: Host) -> None:
    _add_rows(ready_host, 120)
    client = ready_host.client(admin="root")
    seen: list[str] = []
    url = "/alisms/admin/log"
    for _ in range(5):
        html = client.get(url).get_data(as_text=True)
        seen += re.findall(r"BizId <code class=\"id\">(b\d+)</code>", html)
        match = re.search(r'href="([^"]*before=\d+[^"]*)" rel="next"', html)
        if not match:
            break
        url = match.group(1).replace("&amp;", "&")
    assert seen == [f"b{i}" for i in range(120)]
    assert client.get("/alisms/admin/log?before=999999").status_code == 200
    assert client.get("/alisms/admin/log?before=abc").status_code == 200


def test_csv_export_has_the_filtered_rows_and_masked_numbers(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    send(ready_host, NUMBERS[0])
    emulator.fail_next("isv.BUSINESS_LIMIT_CONTROL")
    ready_host.app.test_cli_runner().invoke(args=["alisms", "send-test", NUMBERS[1]])
    _add_rows(ready_host, 1, code="=HYPERLINK(\"x\")", ok=False, category="unknown")
    client = ready_host.client(admin="root")
    response = client.get("/alisms/admin/log.csv?category=sent")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    table = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [row["number"] for row in table] == ["'+86138****8000"]
    assert table[0]["delivery"] == "accepted" and table[0]["time"].endswith("+08:00")
    everything = client.get("/alisms/admin/log.csv").get_data(as_text=True)
    assert "13800138000" not in everything and "13900139000" not in everything
    assert "'=HYPERLINK" in everything  # a spreadsheet shows it, never runs it
    assert client.get("/alisms/admin/log.csv?phone=abc").status_code == 400
    assert ready_host.client().get("/alisms/admin/log.csv").status_code == 403


def test_cli_log_prints_recent_rows_with_delivery(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    biz = send(ready_host, NUMBERS[0])
    send(ready_host, NUMBERS[1])
    push(ready_host, token_of(ready_host), [report(biz)])
    runner = ready_host.app.test_cli_runner()
    result = runner.invoke(args=["alisms", "log", "--json", "--limit", "5"])
    assert result.exit_code == 0, result.output
    items = [json.loads(line) for line in result.output.splitlines()]
    assert [(i["number"], i["delivery"]) for i in items] == [
        ("+86139****9000", "accepted"),
        ("+86138****8000", "delivered"),
    ]
    assert items[0]["time"].endswith("+08:00")
    text = runner.invoke(args=["alisms", "log", "--limit", "1"]).output
    assert len(text.splitlines()) == 1 and "+86139****9000" in text and "13900139000" not in text
    assert runner.invoke(args=["alisms", "log", "--limit", "0"]).exit_code != 0


def test_the_summary_counts_closed_hours_once(ready_host: Host) -> None:
    log = ready_host.models.SendLog
    _add_rows(ready_host, 3)
    _add_rows(ready_host, 2, category="balance", ok=False)
    with ready_host.app.app_context():
        ready_host.db.session.execute(
            sa.update(log).where(log.category == "balance").values(
                created_at=utcnow() - dt.timedelta(hours=30)
            )
        )
        ready_host.db.session.commit()
    client = ready_host.client(admin="root")
    html = client.get("/alisms/admin/log").get_data(as_text=True)
    pattern = r"<strong>(\d+)</strong> sent</span>\s*<span[^>]*><strong>(\d+)</strong>"
    day, week = re.findall(pattern, html)
    assert day == ("3", "0") and week == ("3", "2")
    _add_rows(ready_host, 4)  # the current hour is counted live
    html = client.get("/alisms/admin/log").get_data(as_text=True)
    figures = re.findall(r"<strong>(\d+)</strong> sent", html)
    assert figures == ["7", "7"]


def test_the_cold_grouped_count_equals_the_bucket_by_bucket_count(
    ready_host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask_alisms.flows import sendlog

    _add_rows(ready_host, 40)
    log = ready_host.models.SendLog
    with ready_host.app.app_context():
        ids = ready_host.db.session.scalars(sa.select(log.id)).all()
        for number, row_id in enumerate(ids):  # spread over five days, across bucket edges
            ready_host.db.session.execute(
                sa.update(log)
                .where(log.id == row_id)
                .values(created_at=utcnow() - dt.timedelta(minutes=5 * number * number + 16))
            )
        ready_host.db.session.commit()
        state = ready_host.app.extensions["alisms"]
        with ready_host.app.test_request_context():
            sendlog.forget_totals(state)
            grouped = sendlog.summary(state)
            sendlog.forget_totals(state)
            monkeypatch.setattr(sendlog, "_bucket_index", lambda *args: None)
            one_by_one = sendlog.summary(state)
    assert grouped == one_by_one
    assert grouped[1]["sent"] == 40 and 0 < grouped[0]["sent"] < 40


def test_the_standalone_emulator_pushes_receipts(tmp_path: Any) -> None:
    """``python -m flask_alisms.testing --push-url ...``, driven through the real SDK."""
    import http.server
    import socket
    import subprocess
    import sys

    from aliyunsdkcore.client import AcsClient
    from aliyunsdkdysmsapi.request.v20170525.SendSmsRequest import SendSmsRequest

    received: list[Any] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            body = b'{"code": 0, "msg": "ok"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bad = subprocess.run(
        [sys.executable, "-m", "flask_alisms.testing", "--success-rate", "2"],
        capture_output=True,
        timeout=60,
    )
    assert bad.returncode == 2 and b"success_rate" in bad.stderr
    url = f"http://127.0.0.1:{hook.server_port}/hook"
    args = ["--port", str(port), "--push-url", url, "--receipt-delay", "0.2", "--duplicates", "1"]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "flask_alisms.testing", *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and "listening" in process.stdout.readline()
        no_proxy = {"http": None, "https": None}
        client = AcsClient("testId", "testSecret", "cn-hangzhou", proxy=no_proxy)
        request = SendSmsRequest()
        request.set_endpoint(f"127.0.0.1:{port}")
        request.set_PhoneNumbers("13800138000")
        request.set_SignName("阿里云短信测试")
        request.set_TemplateCode("SMS_154950909")
        request.set_TemplateParam('{"code":"123456"}')
        biz_id = json.loads(client.do_action_with_exception(request))["BizId"]
        deadline = time.monotonic() + 15
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(timeout=10)
        hook.shutdown()
    assert [[item["biz_id"] for item in batch] for batch in received] == [[biz_id], [biz_id]]
    assert received[0][0]["success"] is True and received[0][0]["phone_number"] == "13800138000"


def test_each_new_receipt_is_signalled_once_without_its_number(ready_host: Host) -> None:
    from flask_alisms import signals

    seen: list[dict[str, Any]] = []

    def receive(sender: Any, **extra: Any) -> None:
        seen.append(extra)

    signals.receipt_received.connect(receive, ready_host.app)
    try:
        token = token_of(ready_host)
        batch = [report("71"), report("72", success=False), report("71")]  # one repeat
        assert push(ready_host, token, batch).status_code == 200
        assert push(ready_host, token, batch).status_code == 200  # Aliyun's retry: nothing new
    finally:
        signals.receipt_received.disconnect(receive)
    assert sorted(seen, key=lambda e: e["state"]) == [
        {"state": "delivered", "err_code": "DELIVERED"},
        {"state": "failed", "err_code": "UNDELIV"},
    ]
