"""The example site in headless Chromium: sign in by SMS code, an account created at the first
sign-in, and a phone change (see tests/test_browser.py for the fixtures and how they run)."""

# The fixtures come from tests/test_browser.py; as arguments they shadow the imported names.
# ruff: noqa: F811

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from example_app import User, db

from .test_browser import (  # noqa: F401 - fixtures
    VISITOR,
    Site,
    _configure,
    browser,
    expect,
    flashes,
    make_site,
    page,
    send_button,
    shot,
    site,
)

NEW_NUMBER = "13900139000"


def _users(site: Site) -> list[tuple[str, str | None]]:
    with site.app.app_context():
        rows = db.session.execute(sa.select(User.phone, User.password_hash)).all()
        db.session.remove()
        return [tuple(row) for row in rows]


def _sign_in_by_code(page: Any, site: Site, number: str) -> None:
    page.goto(site("/login"))
    page.get_by_role("link", name="Sign in with an SMS code instead").click()
    expect(page.get_by_role("heading", name="Sign in with an SMS code")).to_be_visible()
    expect(page.get_by_label("Password")).to_have_count(0)
    page.get_by_label("Mobile number").fill(number)
    page.get_by_role("button", name="Send code").click()
    expect(flashes(page)).to_contain_text("We sent a code by SMS")
    expect(send_button(page)).to_be_disabled()
    expect(send_button(page)).to_have_text(re.compile(r"^Send again in \d+s$"))
    code = site.emulator.last_param(number)
    page.get_by_label("Verification code").fill(code)
    page.locator("#submit").click()
    page.wait_for_url(site("/"))


def test_visitor_signs_in_by_code(site: Site, page: Any, shot: Callable[..., None]) -> None:
    _configure(site)
    with site.app.app_context():
        db.session.add(User(phone="+86" + VISITOR, password_hash=None))
        db.session.commit()
        db.session.remove()
    _sign_in_by_code(page, site, VISITOR)
    expect(flashes(page)).to_contain_text("You are signed in.")
    expect(page.locator("main")).to_contain_text(f"Signed in as +86{VISITOR}")
    shot(page, "signed-in")
    assert len(_users(site)) == 1


def test_first_sign_in_creates_the_account(
    site: Site, page: Any, shot: Callable[..., None]
) -> None:
    _configure(site)
    assert _users(site) == []
    _sign_in_by_code(page, site, VISITOR)
    expect(flashes(page)).to_contain_text("Welcome! Your account is ready.")
    expect(page.locator("main")).to_contain_text(f"Signed in as +86{VISITOR}")
    shot(page, "created")
    assert _users(site) == [("+86" + VISITOR, None)]


def test_signed_in_user_changes_the_phone(
    site: Site, page: Any, shot: Callable[..., None]
) -> None:
    _configure(site)
    _sign_in_by_code(page, site, VISITOR)
    page.get_by_role("link", name="Your account").click()
    expect(page.locator("main")).to_contain_text("Mobile number: +86138****8000")
    page.get_by_role("link", name="Change your phone number").click()
    expect(page.get_by_role("heading", name="Your phone number")).to_be_visible()
    expect(page.locator("main")).to_contain_text("+86138****8000")
    page.get_by_label("Mobile number").fill(NEW_NUMBER)
    page.get_by_role("button", name="Send code").click()
    expect(flashes(page)).to_contain_text("We sent a code by SMS")
    expect(send_button(page)).to_be_disabled()
    code = site.emulator.last_param(NEW_NUMBER)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    page.get_by_label("Verification code").fill(wrong)
    page.get_by_role("button", name="Save this number").click()
    expect(page.locator("#code-errors")).to_contain_text("The code is wrong or has expired.")
    page.get_by_label("Verification code").fill(code)
    page.get_by_role("button", name="Save this number").click()
    expect(flashes(page)).to_contain_text("Your phone number is now +86139****9000.")
    expect(page.locator("main")).to_contain_text("Your account's number is +86139****9000.")
    shot(page, "changed")
    assert _users(site) == [("+86" + NEW_NUMBER, None)]
