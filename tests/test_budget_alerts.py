"""Cost and budgets (issue 14): spend from the daily totals, once-only alerts (signal, banner,
webhook in each format), the hard stop, the CLI and the parameters' checks.

Sends go through the real SDK to the emulator, receipts are pushed to the hook, and webhooks
reach a local HTTP server. Not to be confused with tests/test_budgets.py (the send limits).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import html
import json
import logging
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from flask_alisms import signals
from flask_alisms.flows import alerts
from flask_alisms.testing import DysmsapiEmulator

from .conftest import PHONE, Host, api_post, form_token
from .test_parameters import _panel_form
from .test_receipts import push, report, send, token_of

PANEL = "/alisms/admin/"
NUMBERS = [f"+86137001370{i:02d}" for i in range(20)]
ROBOT_TOKEN = "robot-token-7f3a9c"


class Webhook:
    """A local HTTP server that records every POST: (path, query, headers, JSON body)."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received
        #: What the next POSTs are answered: status, extra headers, body.
        self.answers: list[tuple[int, dict[str, str], bytes]] = []
        answers = self.answers

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                split = urlsplit(self.path)
                received.append(
                    {
                        "path": split.path,
                        "query": parse_qs(split.query),
                        "raw_query": split.query,
                        "type": self.headers.get("Content-Type"),
                        "body": json.loads(self.rfile.read(length)),
                    }
                )
                status, headers, answer = (
                    answers.pop(0) if answers else (200, {}, b'{"errcode":0,"errmsg":"ok"}')
                )
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_port}"

    def url(self, path: str = "/hook") -> str:
        return f"{self.base}{path}?access_token={ROBOT_TOKEN}"

    def bodies(self) -> list[dict[str, Any]]:
        alerts.wait()
        return [item["body"] for item in self.received]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


@pytest.fixture
def fired(ready_host: Host) -> Iterator[list[dict[str, Any]]]:
    """The budget_alert signals this host's app sends."""
    seen: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs)

    signals.budget_alert.connect(receiver, sender=ready_host.app)
    yield seen
    signals.budget_alert.disconnect(receiver, sender=ready_host.app)


def send_code(host: Host, phone: str, purpose: str = "register") -> Any:
    return api_post(host.client(), "send-code", {"phone": phone, "purpose": purpose})


def cli(host: Host, *args: str) -> Any:
    return host.app.test_cli_runner().invoke(args=["alisms", *args])


def report_json(host: Host) -> dict[str, Any]:
    result = cli(host, "budget", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def alert_rows(host: Host) -> list[tuple[str, int]]:
    table = host.models.BudgetAlert.__table__
    rows = host.query(
        sa.select(table.c.period, table.c.percent).order_by(table.c.period, "percent")
    )
    return [(period, percent) for period, percent in rows]


def local_today() -> dt.date:
    return dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date()  # Asia/Shanghai


# -- spend ------------------------------------------------------------------------------------


def test_spend_counts_billed_segments_and_messages_in_flight(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    before = report_json(ready_host)
    assert before["price_per_sms"] is None and before["active"] is False
    assert before["day"]["spent"] is None  # no price: no amounts

    ready_host.set_params(
        billing__price_per_sms="0.045", budget__daily="10", budget__monthly="300.5"
    )
    delivered = send(ready_host, "+8613800138000")
    failed = send(ready_host, "+8613900139000")
    send(ready_host, "+8613700137000")  # no receipt: in flight
    assert send_code(ready_host, "+8613600136000").status_code == 200  # in flight too
    body = [
        report(delivered, "13800138000", sms_size="2"),
        report(failed, "13900139000", success=False),
    ]
    assert push(ready_host, token_of(ready_host), body).status_code == 200

    figures = report_json(ready_host)
    today = local_today()
    assert figures["price_per_sms"] == "0.045" and figures["active"] is True
    assert figures["day"] == {
        "start": today.isoformat(),
        "billed_segments": 2,
        "pending_messages": 2,
        "spent": "0.090",
        "in_flight": "0.090",
        "committed": "0.180",
        "budget": "10",
        "percent": "1.8",
        "thresholds_reached": [],
        "alerts_fired": [],
    }
    assert figures["month"]["start"] == today.replace(day=1).isoformat()
    assert figures["month"]["committed"] == "0.180" and figures["month"]["budget"] == "300.5"

    # The panel's cards, beside the budget parameters.
    page = ready_host.client(admin="root").get(PANEL).get_data(as_text=True)
    cards = page.split('id="budget-heading"', 1)[1].split("</section>", 1)[0]
    assert "0.09 CNY" in cards and "10.00 CNY" in cards and "1.8%" in cards
    assert "2 segments billed" in cards and "2 messages without a receipt" in cards


def test_without_a_price_the_panel_says_why_budgets_are_inactive(ready_host: Host) -> None:
    ready_host.set_params(budget__daily="5")
    page = ready_host.client(admin="root").get(PANEL).get_data(as_text=True)
    assert '<details class="param-section" id="section-budget">' in page  # nothing reached
    assert "Budgets are inactive: set billing.price_per_sms" in page
    result = cli(ready_host, "budget")
    assert result.exit_code == 0, result.output
    assert "Price per billed SMS: unknown" in result.output
    assert "Budgets are inactive" in result.output


def test_receipts_not_set_up_count_every_accepted_message(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    ready_host.set_params(billing__price_per_sms="0.05", budget__daily="1")
    for number in NUMBERS[:3]:
        assert send_code(ready_host, number).status_code == 200
    figures = report_json(ready_host)["day"]
    assert (figures["pending_messages"], figures["committed"]) == (3, "0.15")
    page = ready_host.client(admin="root").get(PANEL).get_data(as_text=True)
    assert "every accepted message counts as in flight" in page


# -- alerts -----------------------------------------------------------------------------------


def test_each_threshold_fires_once_per_period(
    ready_host: Host, emulator: DysmsapiEmulator, webhook: Webhook, fired: list[dict[str, Any]]
) -> None:
    ready_host.set_params(
        billing__price_per_sms="1",
        budget__daily="4",
        budget__monthly="100",
        budget__alert_percent="50, 100",
        alerts__webhook_url=webhook.url(),
    )
    assert send_code(ready_host, NUMBERS[0]).status_code == 200  # 25 %
    assert fired == [] and webhook.bodies() == []
    assert send_code(ready_host, NUMBERS[1]).status_code == 200  # 50 %
    assert send_code(ready_host, NUMBERS[2]).status_code == 200  # 75 %: nothing new
    today = local_today()
    assert fired == [
        {
            "period": "day",
            "percent": 50,
            "spent": Decimal(2),
            "budget": Decimal(4),
            "start": today,
        }
    ]
    assert all(isinstance(fired[0][k], Decimal) for k in ("spent", "budget"))
    assert webhook.bodies() == [
        {
            "event": "budget_alert",
            "period": "day",
            "percent": 50,
            "spent": "2.00",
            "budget": "4.00",
            "currency": "CNY",
            "start": today.isoformat(),
            "site": "host_app",
        }
    ]
    assert webhook.received[0]["type"] == "application/json"
    assert send_code(ready_host, NUMBERS[3]).status_code == 200  # 100 %
    assert send_code(ready_host, NUMBERS[4]).status_code == 200  # 125 %: nothing new
    assert [(a["period"], a["percent"]) for a in fired] == [("day", 50), ("day", 100)]

    # A receipt, the CLI and a lost process cache change nothing: the table decides.
    biz = emulator.messages[0].biz_id
    assert push(ready_host, token_of(ready_host), [report(biz, "13700137000")]).status_code == 200
    ready_host.app.extensions["alisms"].alerts_fired.clear()
    assert cli(ready_host, "budget").exit_code == 0
    assert len(fired) == 2 and len(webhook.bodies()) == 2
    assert alert_rows(ready_host) == [("day", 50), ("day", 100)]

    # The banner on every panel page: the highest threshold of the day.
    for path in (PANEL, "/alisms/admin/log", "/alisms/admin/test-sms"):
        page = ready_host.client(admin="root").get(path).get_data(as_text=True)
        assert "reached 100% of the daily budget (4.00 of 4.00 CNY)" in page, path
        assert ROBOT_TOKEN not in page
    assert "daily budget" not in ready_host.client().get("/alisms/register").get_data(as_text=True)
    page = ready_host.client(admin="root").get(PANEL).get_data(as_text=True)
    assert '<details class="param-section" id="section-budget" open>' in page  # the link's target


def test_the_monthly_budget_alerts_on_its_own(
    ready_host: Host, emulator: DysmsapiEmulator, fired: list[dict[str, Any]]
) -> None:
    ready_host.set_params(
        billing__price_per_sms="0.5", budget__monthly="1", budget__alert_percent="100"
    )
    for number in NUMBERS[:3]:
        assert send_code(ready_host, number).status_code == 200
    assert [(a["period"], a["percent"], a["start"]) for a in fired] == [
        ("month", 100, local_today().replace(day=1))
    ]
    assert alert_rows(ready_host) == [("month", 100)]
    page = ready_host.client(admin="root").get("/alisms/admin/log").get_data(as_text=True)
    assert "reached 100% of the monthly budget" in page


def test_raising_then_lowering_a_budget_does_not_fire_again(
    ready_host: Host, emulator: DysmsapiEmulator, fired: list[dict[str, Any]]
) -> None:
    ready_host.set_params(billing__price_per_sms="1", budget__daily="4")  # 80,100 by default
    for number in NUMBERS[:4]:
        send_code(ready_host, number)
    assert [a["percent"] for a in fired] == [80, 100]
    ready_host.set_params(budget__daily="100")
    assert cli(ready_host, "budget").exit_code == 0
    ready_host.set_params(budget__daily="4")
    result = cli(ready_host, "budget")
    assert result.exit_code == 0 and "Alert fired" not in result.output
    assert len(fired) == 2
    ready_host.set_params(budget__alert_percent="80,100,150", budget__daily="2")  # 200 %
    result = cli(ready_host, "budget")
    assert "Alert fired: day 150%" in result.output
    assert [a["percent"] for a in fired] == [80, 100, 150]


def test_a_delivered_receipt_can_cross_a_threshold(
    ready_host: Host, emulator: DysmsapiEmulator, fired: list[dict[str, Any]]
) -> None:
    ready_host.set_params(
        billing__price_per_sms="1", budget__daily="3", budget__alert_percent="100"
    )
    biz = send(ready_host, "+8613800138000")  # in flight: 1 of 3
    assert fired == []
    body = [report(biz, "13800138000", sms_size="3")]  # three segments billed
    assert push(ready_host, token_of(ready_host), body).status_code == 200
    assert [(a["period"], a["percent"], a["spent"]) for a in fired] == [("day", 100, Decimal(3))]


def test_dingtalk_robot_message_is_signed(
    make_host: Any, emulator: DysmsapiEmulator, webhook: Webhook
) -> None:
    host = make_host(ALISMS_LANGUAGE="en", SERVER_NAME="sms.example.com")
    host.configure_sms()
    secret = "SEC0123456789abcdef"
    host.set_params(
        billing__price_per_sms="1",
        budget__daily="1",
        budget__alert_percent="100",
        alerts__webhook_url=webhook.url("/robot/send"),
        alerts__webhook_format="dingtalk",
        alerts__dingtalk_secret=secret,
    )
    assert api_post(host.client(), "send-code", {"phone": PHONE}).status_code == 200
    bodies = webhook.bodies()
    assert len(bodies) == 1
    assert bodies[0] == {
        "msgtype": "text",
        "text": {
            "content": "SMS budget alert (sms.example.com): today's spend has reached 100% of "
            f"the daily budget: 1.00 of 1.00 CNY (day {local_today().isoformat()})."
        },
    }
    query = webhook.received[0]["query"]
    assert query["access_token"] == [ROBOT_TOKEN]
    timestamp = query["timestamp"][0]
    expected = base64.b64encode(
        hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    ).decode()
    sign = webhook.received[0]["raw_query"].split("sign=", 1)[1]
    assert unquote(sign) == expected  # URL-quoted once, as DingTalk asks
    assert abs(int(timestamp) / 1000 - dt.datetime.now().timestamp()) < 60


def test_wecom_robot_message_in_the_sites_language(
    make_host: Any, emulator: DysmsapiEmulator, webhook: Webhook
) -> None:
    host = make_host(ALISMS_LANGUAGE="zh_Hans")
    host.configure_sms()
    host.set_params(
        billing__price_per_sms="1",
        budget__monthly="1",
        budget__alert_percent="100",
        alerts__webhook_url=webhook.url("/cgi-bin/webhook/send"),
        alerts__webhook_format="wecom",
    )
    assert api_post(host.client(), "send-code", {"phone": PHONE}).status_code == 200
    bodies = webhook.bodies()
    assert [b["msgtype"] for b in bodies] == ["text"]
    content = bodies[0]["text"]["content"]
    assert "短信预算" in content and "100%" in content and "1.00" in content
    assert "sign" not in webhook.received[0]["query"]


def test_the_format_follows_the_robots_host() -> None:
    assert alerts.format_for("https://oapi.dingtalk.com/robot/send?access_token=x", "") == (
        "dingtalk"
    )
    assert alerts.format_for("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=x", "") == (
        "wecom"
    )
    assert alerts.format_for("https://hooks.example.com/x", "") == "generic"
    assert alerts.format_for("https://oapi.dingtalk.com/robot/send", "generic") == "generic"


def test_a_dead_webhook_is_a_warning_and_nothing_else(
    ready_host: Host,
    emulator: DysmsapiEmulator,
    fired: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = closed.server_port
    closed.server_close()  # nothing listens there now
    ready_host.set_params(
        billing__price_per_sms="1",
        budget__daily="1",
        budget__alert_percent="100",
        alerts__webhook_url=f"http://127.0.0.1:{port}/hook?access_token={ROBOT_TOKEN}",
    )
    caplog.set_level(logging.INFO)
    answer = send_code(ready_host, PHONE)
    alerts.wait()
    assert answer.status_code == 200 and answer.get_json()["sent"] is True
    assert len(emulator.messages) == 1
    assert [a["percent"] for a in fired] == [100]
    assert alert_rows(ready_host) == [("day", 100)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("Budget alert webhook on 127.0.0.1 failed" in w for w in warnings), warnings
    assert not any(ROBOT_TOKEN in r.getMessage() for r in caplog.records)


# -- the hard stop ----------------------------------------------------------------------------


def test_hard_stop_refuses_every_number_alike_before_the_limits(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    registered = "+8613500135000"
    with ready_host.app.app_context():
        ready_host.db.session.add(ready_host.User(phone=registered, password_hash="x"))
        ready_host.db.session.commit()
    ready_host.set_params(billing__price_per_sms="1", budget__daily="2", budget__hard_stop="true")
    for number in NUMBERS[:2]:
        assert send_code(ready_host, number).status_code == 200
    sent, logged = len(emulator.messages), ready_host.count(ready_host.models.SendLog)

    answers = [
        send_code(ready_host, number, purpose)
        for number, purpose in ((registered, "register"), (NUMBERS[5], "register"),
                                (registered, "reset"), (NUMBERS[5], "reset"))
    ]  # fmt: skip
    assert {a.status_code for a in answers} == {503}
    assert {json.dumps(a.get_json(), sort_keys=True) for a in answers} == {
        json.dumps(
            {
                "error": "budget_exhausted",
                "message": "This site cannot send more SMS codes for now. Please try again later.",
            },
            sort_keys=True,
        )
    }
    assert len(emulator.messages) == sent  # no provider call
    assert ready_host.count(ready_host.models.SendLog) == logged  # nothing skipped either

    # The HTML page says it too.
    client = ready_host.client()
    page = client.get("/alisms/register").get_data(as_text=True)
    form = {"csrf_token": form_token(page), "country_code": "86", "phone": "13700137005"}
    answer = client.post("/alisms/register", data={**form, "send": "1"})
    assert answer.status_code == 503
    assert "cannot send more SMS codes for now" in answer.get_data(as_text=True)

    # No limit was spent: with the stop lifted, the same numbers get a code at once.
    ready_host.set_params(budget__hard_stop="false")
    assert send_code(ready_host, NUMBERS[5]).status_code == 200
    assert send_code(ready_host, registered, "reset").status_code == 200
    assert len(emulator.messages) == sent + 2


def test_hard_stop_survives_a_lost_limiter_storage(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    ready_host.set_params(
        billing__price_per_sms="0.5", budget__monthly="1", budget__hard_stop="true"
    )
    for number in NUMBERS[:2]:
        assert send_code(ready_host, number).status_code == 200
    with ready_host.app.app_context():
        ready_host.app.extensions["alisms"].throttle.reset()  # the limiter storage is lost
    ready_host.app.extensions["alisms"].alerts_fired.clear()
    answer = send_code(ready_host, NUMBERS[3])
    assert (answer.status_code, answer.get_json()["error"]) == (503, "budget_exhausted")


def test_admin_test_sms_under_the_hard_stop(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    ready_host.set_params(billing__price_per_sms="1", budget__daily="1", budget__hard_stop="true")
    send(ready_host, "+8613800138000")
    client = ready_host.client(admin="root")
    page = client.get("/alisms/admin/test-sms").get_data(as_text=True)
    answer = client.post(
        "/alisms/admin/test-sms",
        data={"csrf_token": form_token(page), "country_code": "86", "phone": "13800138000",
              "send": "1"},
    )  # fmt: skip
    assert answer.status_code == 503
    assert "today's SMS budget is reached and budget.hard_stop is on" in html.unescape(
        answer.get_data(as_text=True)
    )
    result = cli(ready_host, "send-test", "+8613800138000")
    assert result.exit_code == 1 and "budget.hard_stop is on" in result.output
    assert len(emulator.messages) == 1


def test_without_the_hard_stop_a_spent_budget_only_alerts(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    ready_host.set_params(billing__price_per_sms="1", budget__daily="1")
    for number in NUMBERS[:3]:
        assert send_code(ready_host, number).status_code == 200
    assert len(emulator.messages) == 3


# -- parameters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("billing.price_per_sms", "0.04567", "at most 4 decimals"),
        ("billing.price_per_sms", "abc", "must be a number such as 0.045"),
        ("billing.price_per_sms", "-1", "must be a number such as 0.045"),
        ("billing.price_per_sms", "0,045", "must be a number such as 0.045"),
        ("budget.daily", "0", "must be more than 0"),
        ("budget.daily", "1.234", "at most 2 decimals"),
        ("budget.monthly", "1e3", "must be a number such as 0.045"),
        ("budget.alert_percent", "100,80", "must go up"),
        ("budget.alert_percent", "0,50", "0 must be from 1 to 1000"),
        ("budget.alert_percent", "1001", "1001 must be from 1 to 1000"),
        ("budget.alert_percent", "80.5", "80.5 is not a whole percentage"),
        ("alerts.webhook_url", "ftp://example.com/hook", "http:// or https:// URL"),
        ("alerts.webhook_format", "slack", "must be generic, dingtalk or wecom"),
    ],
)
def test_bad_values_are_refused_on_the_panel(host: Host, key: str, value: str, error: str) -> None:
    client = host.client(admin="root")
    data = _panel_form(client.get(PANEL).get_data(as_text=True), **{key: value})
    answer = client.post(PANEL, data=data)
    assert answer.status_code == 400
    assert error in answer.get_data(as_text=True)
    assert host.count(host.models.Parameter) == 0


def test_good_values_are_saved_typed_and_the_webhook_url_stays_secret(
    host: Host, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = host.client(admin="root")
    url = f"https://oapi.dingtalk.com/robot/send?access_token={ROBOT_TOKEN}"
    data = _panel_form(
        client.get(PANEL).get_data(as_text=True),
        **{
            "billing.price_per_sms": "0.0450",
            "budget.daily": "50",
            "budget.monthly": "1000.5",
            "budget.alert_percent": "50 80 100",
            "budget.hard_stop": "true",
            "alerts.webhook_url": url,
        },
    )
    assert client.post(PANEL, data=data).status_code == 302
    with host.app.app_context():
        values = host.alisms.params.values()
        assert values.price_per_sms == Decimal("0.045")
        assert (values.budget_daily, values.budget_monthly) == (Decimal(50), Decimal("1000.5"))
        assert values.alert_percent == (50, 80, 100) and values.hard_stop is True
        assert values.webhook_url == url and ROBOT_TOKEN not in repr(values)
    page = client.get(PANEL).get_data(as_text=True)
    assert ROBOT_TOKEN not in page
    assert 'value="0.045"' in page and 'value="50,80,100"' in page
    shown = host.app.test_cli_runner().invoke(args=["alisms", "params", "show"])
    assert ROBOT_TOKEN not in shown.output and "alerts.webhook_url" in shown.output
    assert not any(ROBOT_TOKEN in r.getMessage() for r in caplog.records)
    stored = host.query(sa.select(host.models.Parameter.value))
    assert not any(ROBOT_TOKEN in value for (value,) in stored)  # encrypted

    # Emptying a budget removes it: no budget again.
    data = _panel_form(page, **{"budget.daily": ""})
    assert client.post(PANEL, data=data).status_code == 302
    with host.app.app_context():
        assert host.alisms.params.values().budget_daily is None


# -- metric -----------------------------------------------------------------------------------


def test_billed_cny_metric(make_host: Any, emulator: DysmsapiEmulator) -> None:
    host = make_host(ALISMS_METRICS=True)
    host.configure_sms()
    host.set_params(billing__price_per_sms="0.05")
    before = REGISTRY.get_sample_value("alisms_sms_billed_cny_total") or 0.0
    biz = send(host, "+8613800138000")
    other = send(host, "+8613900139000")
    body = [report(biz, "13800138000", sms_size="3"), report(other, "13900139000", False)]
    assert push(host, token_of(host), body).status_code == 200
    after = REGISTRY.get_sample_value("alisms_sms_billed_cny_total") or 0.0
    assert after - before == pytest.approx(0.15)
    assert push(host, token_of(host), body).status_code == 200  # a repeat bills nothing more
    assert (REGISTRY.get_sample_value("alisms_sms_billed_cny_total") or 0.0) == after


def test_workers_racing_to_fire_send_one_alert(
    ready_host: Host, emulator: DysmsapiEmulator, fired: list[dict[str, Any]]
) -> None:
    """Each thread forgets what its process knew, as a fresh worker would: the table decides."""
    from flask_alisms.flows import budget

    ready_host.set_params(billing__price_per_sms="1", budget__daily="2", budget__alert_percent="50")
    assert send_code(ready_host, NUMBERS[0]).status_code == 200
    ready_host.set_params(budget__alert_percent="50,100")  # the next send crosses 100
    with ready_host.app.app_context():
        table = ready_host.models.DailyTotal.__table__
        ready_host.db.session.execute(sa.update(table).values(sent=table.c.sent + 1))
        ready_host.db.session.commit()  # as if another worker had just sent one more
    barrier = threading.Barrier(6)
    results: list[int] = []

    def worker() -> None:
        with ready_host.app.app_context():
            barrier.wait()
            ready_host.app.extensions["alisms"].alerts_fired.clear()
            state = ready_host.app.extensions["alisms"]
            results.append(len(budget.evaluate(state)))
            ready_host.db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(results) == 1 and len(results) == 6
    assert [a["percent"] for a in fired] == [50, 100]
    assert alert_rows(ready_host) == [("day", 50), ("day", 100)]


def test_a_robot_refusal_or_a_redirect_is_logged_not_followed(
    ready_host: Host,
    emulator: DysmsapiEmulator,
    webhook: Webhook,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ready_host.set_params(
        billing__price_per_sms="0.5",
        budget__daily="1",
        budget__alert_percent="50,100",
        alerts__webhook_url=webhook.url("/robot/send"),
        alerts__webhook_format="dingtalk",
    )
    webhook.answers.append((200, {}, b'{"errcode":310000,"errmsg":"keywords not in content"}'))
    webhook.answers.append((302, {"Location": f"{webhook.base}/elsewhere"}, b"{}"))
    caplog.set_level(logging.INFO)
    for number in NUMBERS[:2]:
        assert send_code(ready_host, number).status_code == 200
        alerts.wait()
    assert [item["path"] for item in webhook.received] == ["/robot/send", "/robot/send"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "Budget alert webhook on 127.0.0.1 refused the message: errcode 310000" in warnings
    assert "Budget alert webhook on 127.0.0.1 answered HTTP 302" in warnings
    assert not any(ROBOT_TOKEN in r.getMessage() for r in caplog.records)
