"""The Monitoring page in a real headless Chromium: charts on a desktop and on a phone.

Same machinery as :mod:`tests.test_browser` (Debian's Chromium, the example app served in a
thread); skipped where that module is. The send log gets a month of rows, counted into the
daily totals by ``flask alisms stats rebuild``. With ``ALISMS_SCREENSHOT_DIR`` set, the
pictures of the README (``monitoring-en.png``, ``monitoring-zh-phone.png``) are written there.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from example_app import db
from flask_alisms.flows import totals

from .test_browser import (  # the fixtures are used by name
    ADMIN_PASSWORD,
    ADMIN_PHONE,
    TIMEOUT_MS,
    Site,
    browser,  # noqa: F401
    expect,
    make_site,  # noqa: F401
    shot,  # noqa: F401
)

pytestmark = pytest.mark.browser

URL = "/alisms/admin/monitoring"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SHOT_LIMIT = 200_000  # bytes
SHOT_DIRECTORY = os.environ.get("ALISMS_SCREENSHOT_DIR")  # read before conftest cleans it


def _seed(site: Site) -> None:
    """A month of sends: mostly delivered, some not, the newest still waiting, a quiet day."""
    app = site.app
    with app.app_context():
        model = app.extensions["alisms"].models.SendLog
        today = dt.datetime.combine(totals.today(), dt.time(4))  # noon in Shanghai
        rows = []
        for back in range(30):
            if back == 11:
                continue  # a day without sends
            day = today - dt.timedelta(days=back)
            count = 40 + (back * 37) % 60
            for i in range(count):
                failed, waiting, refused = i % 17 == 3, back < 2 and i % 5 == 0, i % 41 == 7
                rows.append(
                    {
                        "created_at": day + dt.timedelta(minutes=i),
                        "phone_masked": "+86138****8000",
                        "purpose": ("register", "login", "reset", "change_phone")[i % 4],
                        "sender": "aliyun",
                        "ok": not refused,
                        "category": "rate_limit" if refused else "sent",
                        "code": "isv.BUSINESS_LIMIT_CONTROL" if refused else "OK",
                        "delivery": None
                        if refused
                        else "accepted"
                        if waiting
                        else "failed"
                        if failed
                        else "delivered",
                        "receipt_code": "UNDELIV" if failed and not refused else None,
                    }
                )
        db.session.execute(sa.insert(model.__table__), rows)
        db.session.commit()
    result = app.test_cli_runner().invoke(args=["alisms", "stats", "rebuild", "--all"])
    assert result.exit_code == 0, result.output
    # A price and budgets, so the cards show spend and the daily budget's alerts have fired.
    runner = app.test_cli_runner()
    for key, value in (
        ("billing.price_per_sms", "0.045"),
        ("budget.daily", "2"),
        ("budget.monthly", "150"),
    ):
        result = runner.invoke(args=["alisms", "params", "set", key, value])
        assert result.exit_code == 0, result.output
    result = runner.invoke(args=["alisms", "budget"])
    assert result.exit_code == 0 and "Alert fired: day 80%" in result.output, result.output


def _sign_in(page: Any, site: Site) -> None:
    page.goto(site("/login"))
    form = page.locator("form", has=page.locator("input[name=password]"))
    form.locator("input[name=phone]").fill(ADMIN_PHONE)
    form.locator("input[name=password]").fill(ADMIN_PASSWORD)
    with page.expect_navigation():
        form.locator("button.button-primary").click()
    page.goto(site(URL))


@pytest.fixture
def monitored(make_site: Callable[..., Site]) -> Site:  # noqa: F811
    site = make_site()
    result = site.app.test_cli_runner().invoke(
        args=["create-admin", ADMIN_PHONE, "--password", ADMIN_PASSWORD]
    )
    assert result.exit_code == 0, result.output
    _seed(site)
    return site


def _page(browser: Any, viewport: dict[str, int], locale: str) -> Iterator[Any]:  # noqa: F811
    context = browser.new_context(viewport=viewport, locale=locale)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def _no_horizontal_scroll(page: Any) -> None:
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px"


def _charts_fit(page: Any) -> None:
    charts = page.locator("svg.chart")
    expect(charts).to_have_count(2)
    width = page.evaluate("() => document.documentElement.clientWidth")
    for index in range(2):
        chart = charts.nth(index)
        expect(chart).to_be_visible()
        box = chart.bounding_box()
        assert box and box["width"] > 200 and box["x"] >= 0 and box["x"] + box["width"] <= width
    expect(page.locator("svg.chart g.chart-day")).to_have_count(30)


def _save(page: Any, name: str) -> None:
    if not SHOT_DIRECTORY:
        return
    path = Path(SHOT_DIRECTORY) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=path)
    assert path.stat().st_size < SHOT_LIMIT, f"{name} is {path.stat().st_size} bytes"


def test_monitoring_on_a_desktop(
    browser: Any,  # noqa: F811
    monitored: Site,
    shot: Callable[..., None],  # noqa: F811
) -> None:
    for page in _page(browser, DESKTOP, "en-US"):
        _sign_in(page, monitored)
        expect(page.get_by_role("heading", name="Monitoring", exact=True)).to_be_visible()
        _charts_fit(page)
        _no_horizontal_scroll(page)
        expect(page.locator("nav a[aria-current=page]")).to_have_text("Monitoring")
        expect(page.locator(".budget-cards .budget-card")).to_have_count(2)
        expect(page.locator(".budget-banner")).to_be_visible()
        table = page.locator("#messages-table")
        expect(table).to_be_hidden()
        page.locator("details.chart-data summary").first.click()
        expect(table).to_be_visible()
        expect(table.locator("tbody tr")).to_have_count(30)
        _no_horizontal_scroll(page)
        page.locator("details.chart-data summary").first.click()  # closed for the picture
        shot(page, "desktop")
        page.set_viewport_size({"width": 1280, "height": 1520})  # down to the bar chart's key
        page.evaluate("() => window.scrollTo(0, 0)")
        _save(page, "monitoring-en.png")
        page.set_viewport_size(DESKTOP)

        page.get_by_label("Period", exact=True).select_option("7")
        page.get_by_role("button", name="Show").click()
        expect(page.locator("svg.chart g.chart-day")).to_have_count(7)
        _no_horizontal_scroll(page)


def test_monitoring_on_a_phone_in_chinese(
    browser: Any,  # noqa: F811
    monitored: Site,
    shot: Callable[..., None],  # noqa: F811
) -> None:
    for page in _page(browser, PHONE, "zh-CN"):
        _sign_in(page, monitored)
        expect(page.get_by_role("heading", name="监控", exact=True)).to_be_visible()
        _charts_fit(page)
        _no_horizontal_scroll(page)
        rate = page.locator("details.chart-data summary").nth(1)
        rate.scroll_into_view_if_needed()
        rate.click()
        expect(page.locator("#rate-table")).to_be_visible()
        _no_horizontal_scroll(page)  # the table scrolls inside its own box
        rate.click()
        page.evaluate(
            "() => window.scrollTo(0, document.querySelector('.summary-grid').offsetTop - 8)"
        )
        shot(page, "phone-zh")
        _save(page, "monitoring-zh-phone.png")
