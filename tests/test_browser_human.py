"""The image captcha of adaptive mode in a real headless Chromium, on the example site.

Same machinery as :mod:`tests.test_browser` (Debian's Chromium, the example app served in a
thread, the Dysmsapi emulator); skipped where that module is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .test_browser import (  # the fixtures are used by name
    TIMEOUT_MS,
    VIEWPORT,
    Site,
    _configure,
    browser,  # noqa: F401
    expect,
    flashes,
    make_site,  # noqa: F401
    register_form,
    send_button,
    shot,  # noqa: F401
)

pytestmark = pytest.mark.browser

FIRST, SECOND = "13800138000", "13700137000"


@pytest.fixture(params=[True, False], ids=["js", "no-js"])
def any_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:  # noqa: F811
    context = browser.new_context(
        viewport=VIEWPORT, locale="en-US", java_script_enabled=request.param
    )
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def picture(page: Any) -> Any:
    return page.locator("img.human-check-image")


def answer_shown(site: Site, page: Any) -> str:
    nonce = picture(page).get_attribute("src").rsplit("/", 1)[-1]
    return str(site.app.extensions["alisms"].human.check.text_for(nonce))


def test_adaptive_mode_shows_the_captcha_once_the_ip_spent_half_its_budget(
    make_site: Callable[..., Site],  # noqa: F811
    any_page: Any,
    shot: Callable[..., None],  # noqa: F811
) -> None:
    site = make_site(
        ALISMS_PARAMS={
            "human_check.mode": "adaptive",
            "human_check.adaptive_share": 50,
            "limits.ip_per_hour": 2,
        }
    )
    _configure(site)
    page = any_page

    register_form(page, site)
    expect(picture(page)).to_have_count(0)
    page.get_by_label("Mobile number").fill(FIRST)
    send_button(page).click()
    expect(flashes(page)).to_contain_text("We sent a code by SMS")
    assert site.emulator.last_message(FIRST) is not None

    # One of two sends spent: the site now asks this browser for the picture's characters.
    expect(picture(page)).to_be_visible()
    page.wait_for_function(  # the picture really arrived and decoded
        "() => { const img = document.querySelector('img.human-check-image');"
        " return img && img.complete && img.naturalWidth === 160; }"
    )
    shot(page, "captcha-shown")

    # A fresh visit (the send button is not counting down then) shows a picture too.
    register_form(page, site)
    expect(picture(page)).to_be_visible()
    page.get_by_label("Mobile number").fill(SECOND)
    right = answer_shown(site, page)
    page.get_by_label("Type the characters in the picture").fill(
        "22222" if right != "22222" else "33333"
    )
    first_src = picture(page).get_attribute("src")
    send_button(page).click()
    expect(flashes(page)).to_contain_text("That was not right")
    expect(picture(page)).not_to_have_attribute("src", first_src)
    expect(page.get_by_label("Mobile number")).to_have_value(SECOND)
    assert site.emulator.last_message(SECOND) is None
    shot(page, "captcha-wrong")

    page.get_by_label("Type the characters in the picture").fill(answer_shown(site, page).lower())
    send_button(page).click()
    expect(flashes(page)).to_contain_text("We sent a code by SMS")
    assert site.emulator.last_message(SECOND) is not None
    expect(page.get_by_label("Verification code")).to_be_visible()
    shot(page, "captcha-solved")
