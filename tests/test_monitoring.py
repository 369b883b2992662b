"""The admin panel's Monitoring page: figures per day and purpose from the running totals,
two SVG charts with their numbers, the top failure codes, and the usual refusals."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import sqlalchemy as sa

from flask_alisms.flows import totals
from flask_alisms.testing import DysmsapiEmulator

from .conftest import Host, api_post
from .test_receipts import push, report, send, token_of

URL = "/alisms/admin/monitoring"
SVG = "{http://www.w3.org/2000/svg}"
TEST_NUMBER, TEST_CODE = "+8613012345678", "246810"


def page(host: Host, **query: Any) -> str:
    response = host.client(admin="root").get(URL, query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    return response.get_data(as_text=True)


def charts(html: str) -> list[ET.Element]:
    """Every inline SVG of the page, parsed as XML (which fails on a malformed one)."""
    found = re.findall(r"<svg\b.*?</svg>", html, flags=re.S)
    assert len(found) == 2, "expected the bar chart and the rate chart"
    return [ET.fromstring(svg) for svg in found]  # noqa: S314 - our own page under test


def bars_by_day(html: str) -> dict[str, dict[str, int]]:
    """The bar chart's data attributes per day."""
    bars = charts(html)[0]
    return {
        g.get("data-day", ""): {
            key: int(g.get(f"data-{key}", "-1"))
            for key in ("sent", "delivered", "failed", "pending", "errors")
        }
        for g in bars.iter(f"{SVG}g")
        if g.get("class") == "chart-day"
    }


def table_by_day(html: str) -> dict[str, dict[str, int]]:
    """The bar chart's data table: one row per day, with its numbers."""
    table = html[html.index('id="messages-table"') :]
    table = table[: table.index("</table>")]
    result = {}
    for day, row in re.findall(r'<tr data-day="([0-9-]+)">(.*?)</tr>', table, flags=re.S):
        result[day] = {k: int(v) for k, v in re.findall(r'data-(\w+)="(\d+)"', row)}
    return result


def purposes(html: str) -> dict[str, dict[str, int]]:
    table = html[html.index('id="purposes-table"') :]
    table = table[: table.index("</table>")]
    return {
        purpose: {k: int(v) for k, v in re.findall(r'data-(\w+)="(\d+)"', row)}
        for purpose, row in re.findall(r'<tr data-purpose="([^"]+)"[^>]*>(.*?)</tr>', table, re.S)
    }


def today(host: Host) -> str:
    with host.app.app_context():
        return totals.today().isoformat()


def _send_code(host: Host, phone: str, purpose: str = "register") -> Any:
    return api_post(host.client(), "send-code", {"phone": phone, "purpose": purpose})


# -- real sends through the emulator ---------------------------------------------------------


def test_page_shows_what_was_sent_delivered_and_refused(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    ready_host.set_params(phone__test_numbers=f"{TEST_NUMBER}={TEST_CODE}")
    delivered = send(ready_host, "+8613800138000")
    undelivered = send(ready_host, "+8613900139000")
    send(ready_host, "+8613600136000")  # no receipt yet
    assert _send_code(ready_host, "+8613700137000").status_code == 200
    assert _send_code(ready_host, TEST_NUMBER).status_code == 200  # never leaves the site
    emulator.fail_next("isv.BUSINESS_LIMIT_CONTROL")
    assert _send_code(ready_host, "+8613500135000").status_code == 200
    body = [report(delivered), report(undelivered, "13900139000", success=False)]
    assert push(ready_host, token_of(ready_host), body).status_code == 200

    html = page(ready_host)
    day = today(ready_host)
    expected = {"sent": 4, "delivered": 1, "failed": 1, "pending": 2, "errors": 1}
    assert bars_by_day(html)[day] == expected
    assert table_by_day(html)[day] == expected
    assert 'data-total="sent"><strong>4</strong>' in html
    assert 'data-total="rate"><strong>25%</strong>' in html
    rate = charts(html)[1]
    points = {c.get("data-day"): c.get("data-rate") for c in rate.iter(f"{SVG}circle")}
    assert points == {day: "0.2500"}

    by_purpose = purposes(html)
    assert by_purpose["test"]["sent"] == 3 and by_purpose["test"]["local"] == 0
    assert by_purpose["register"]["sent"] == 1  # the test number is not "sent" ...
    assert by_purpose["register"]["local"] == 1  # ... it is counted apart

    codes = html[html.index('id="codes-table"') :]
    assert 'data-code="UNDELIV" data-source="receipt" data-count="1"' in codes
    assert "could not deliver it" in codes  # the receipt code's meaning
    assert 'data-code="isv.BUSINESS_LIMIT_CONTROL" data-source="send"' in codes
    assert "flow control" in codes.lower()  # Aliyun's advice for the send code


def test_console_sends_are_not_sent(make_host: Any) -> None:
    host = make_host(ALISMS_SENDER="console")
    host.configure_sms()
    assert _send_code(host, "+8613700137000").status_code == 200
    html = page(host)
    assert bars_by_day(html)[today(host)]["sent"] == 0
    assert purposes(html)["register"] == {"sent": 0, "local": 1}
    assert 'data-total="rate"><strong>–</strong>' in html  # nothing sent: no rate


# -- log rows over several days, counted by `flask alisms stats rebuild` --------------------


def _log(host: Host, rows: list[dict[str, Any]]) -> None:
    defaults = {
        "phone_masked": "+86138****8000",
        "sender": "aliyun",
        "ok": True,
        "category": "sent",
        "code": "OK",
        "purpose": "register",
        "delivery": None,
        "receipt_code": None,
    }
    with host.app.app_context():
        host.db.session.execute(
            sa.insert(host.models.SendLog.__table__), [{**defaults, **row} for row in rows]
        )
        host.db.session.commit()
    result = host.app.test_cli_runner().invoke(args=["alisms", "stats", "rebuild", "--all"])
    assert result.exit_code == 0, result.output


@pytest.fixture
def spread(host: Host) -> dict[str, str]:
    """Log rows on days 0, 2 and 40 back (noon in Shanghai), as an upgrade would find them."""
    with host.app.app_context():
        now = totals.today()

    def at(days_back: int) -> dt.datetime:
        return dt.datetime.combine(now - dt.timedelta(days=days_back), dt.time(4))  # 12:00 +8

    failed = {"ok": False, "category": "rate_limit", "code": "isv.BUSINESS_LIMIT_CONTROL"}
    _log(
        host,
        [
            {"created_at": at(0), "delivery": "delivered", "receipt_code": "DELIVERED"},
            {"created_at": at(0), "delivery": "failed", "receipt_code": "UNDELIV"},
            {"created_at": at(0), "delivery": "accepted", "purpose": "reset"},
            {"created_at": at(0), "sender": "console", "delivery": None},
            {"created_at": at(2), "delivery": "delivered", "purpose": "login"},
            {"created_at": at(2), "delivery": "delivered", "purpose": "login"},
            {"created_at": at(2), **failed},
            {"created_at": at(40), "delivery": "delivered"},
        ],
    )
    return {
        n: (now - dt.timedelta(days=b)).isoformat() for n, b in (("0", 0), ("2", 2), ("40", 40))
    }


def test_days_are_continuous_and_match_the_log(host: Host, spread: dict[str, str]) -> None:
    html = page(host, days="7")
    bars, table = bars_by_day(html), table_by_day(html)
    assert len(bars) == 7 and bars == table  # every day, zeros included, chart = table
    assert bars[spread["0"]] == {"sent": 3, "delivered": 1, "failed": 1, "pending": 1, "errors": 0}
    assert bars[spread["2"]] == {"sent": 2, "delivered": 2, "failed": 0, "pending": 0, "errors": 1}
    quiet = [day for day, figures in bars.items() if not any(figures.values())]
    assert len(quiet) == 5
    days = sorted(bars)
    assert (
        days[-1] == spread["0"]
        and days[0] == (dt.date.fromisoformat(spread["0"]) - dt.timedelta(days=6)).isoformat()
    )
    assert spread["40"] not in bars_by_day(page(host))  # 30 days by default
    ninety = bars_by_day(page(host, days="90"))
    assert len(ninety) == 90 and ninety[spread["40"]]["delivered"] == 1


def test_purpose_filter(host: Host, spread: dict[str, str]) -> None:
    html = page(host, days="7", purpose="login")
    bars = bars_by_day(html)
    assert bars[spread["0"]]["sent"] == 0
    assert bars[spread["2"]] == {"sent": 2, "delivered": 2, "failed": 0, "pending": 0, "errors": 0}
    assert 'value="login" selected' in html
    assert "Failure codes are counted for all purposes together." in html
    # The per-purpose table still shows every purpose of the period.
    assert purposes(html)["reset"]["sent"] == 1


def test_charts_are_well_formed_and_accessible(host: Host, spread: dict[str, str]) -> None:
    html = page(host, days="30")
    assert "<script" not in "".join(re.findall(r"<svg\b.*?</svg>", html, flags=re.S))
    for chart in charts(html):
        assert chart.get("role") == "img"
        title_id, desc_id = chart.get("aria-labelledby", "").split()
        assert chart.find(f"{SVG}title").get("id") == title_id
        assert chart.find(f"{SVG}desc").get("id") == desc_id
        assert not list(chart.iter(f"{SVG}script")) and not list(chart.iter(f"{SVG}foreignObject"))
        assert all("style" not in element.attrib for element in chart.iter())  # CSP: no inline
        assert all(not v.startswith(("http:", "https:", "//")) for e in chart.iter()
                   for v in e.attrib.values() if e.tag != f"{SVG}svg")  # fmt: skip
    bars = charts(html)[0]
    assert {p.get("id") for p in bars.iter(f"{SVG}pattern")} == {
        f"chart-messages-{key}" for key in ("delivered", "failed", "pending", "errors")
    }
    assert "<details" in html and "chart-legend" in html


def test_odd_purposes_and_codes_are_escaped(host: Host) -> None:
    with host.app.app_context():
        now = dt.datetime.combine(totals.today(), dt.time(4))
    _log(
        host,
        [
            {"created_at": now, "purpose": "<b>x</b>", "ok": False, "category": "unknown",
             "code": '<script>alert("1")</script>'},
        ],
    )  # fmt: skip
    html = page(host)
    assert "<script>alert" not in html and "<b>x</b>" not in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "&lt;script&gt;" in html
    charts(html)  # still well-formed


# -- refusals and languages -------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [{"days": "5"}, {"days": "abc"}, {"days": ""}, {"purpose": "nope"}, {"purpose": "\x00"},
     {"days": "30", "purpose": "<script>"}, {"days": "9" * 400}],
)  # fmt: skip
def test_bad_parameters_are_a_400_with_the_form_errors(host: Host, query: dict[str, str]) -> None:
    response = host.client(admin="root").get(URL, query_string=query)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert 'aria-invalid="true"' in html and "Not a valid choice" in html
    assert "<svg" not in html


def test_only_admins(host: Host) -> None:
    assert host.client().get(URL).status_code == 403
    assert host.client(admin="mallory").get(URL).status_code == 403
    assert host.client(admin="mallory").get(URL, query_string={"days": "x"}).status_code == 403
    assert host.client(admin="root").post(URL).status_code == 405


def test_nav_links_to_the_page(host: Host) -> None:
    html = host.client(admin="root").get("/alisms/admin/log").get_data(as_text=True)
    assert f'href="{URL}"' in html and ">Monitoring</a>" in html
    assert f'href="{URL}" aria-current="page"' in page(host)


@pytest.mark.parametrize(
    ("language", "words"),
    [("zh-CN", ("监控", "每日短信", "送达率")), ("zh-TW", ("監控", "每日簡訊", "送達率"))],
)
def test_chinese_page(host: Host, spread: dict[str, str], language: str, words: tuple) -> None:
    response = host.client(admin="root").get(
        URL, query_string={"days": "7"}, headers={"Accept-Language": language}
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    for word in words:
        assert word in html, word
    assert "Messages per day" not in html and "Delivery rate" not in html
    day = dt.date.fromisoformat(spread["0"])
    assert f"{day.month}月{day.day}日" in html  # dates in the locale's form
    charts(html)


def test_page_never_reads_the_send_log(host: Host, spread: dict[str, str]) -> None:
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    with host.app.app_context():
        engine = host.db.engine
    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        page(host, days="90", purpose="login")
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert any("alisms_daily_total" in s for s in statements)
    assert any("alisms_failure_total" in s for s in statements)
    assert not any("alisms_send_log" in s for s in statements), statements


def test_large_numbers_are_grouped_and_the_axis_has_whole_steps(host: Host) -> None:
    with host.app.app_context():
        day = totals.today()
        host.db.session.execute(
            sa.insert(host.models.DailyTotal.__table__),
            [{"day": day, "purpose": "register", "sent": 12345, "errors": 678, "skipped": 0,
              "local": 0, "delivered": 12000, "failed": 300, "billed": 12000}],
        )  # fmt: skip
        host.db.session.commit()
    html = page(host, days="7")
    assert table_by_day(html)[day.isoformat()] == {
        "sent": 12345, "delivered": 12000, "failed": 300, "pending": 45, "errors": 678,
    }  # fmt: skip
    assert ">12,345<" in html and ">97.2%<" in html  # grouped digits, one decimal
    ticks = [t.text for t in charts(html)[0].iter(f"{SVG}text") if t.get("text-anchor") == "end"]
    assert ticks == ["0", "4K", "8K", "12K", "16K"]  # 13,023 in a day: top of 16,000
