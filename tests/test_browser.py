"""The example site in a real headless Chromium: an admin sets Aliyun up, a visitor signs up.

Playwright drives Debian's own ``/usr/bin/chromium`` (no Playwright browser download); the
site is the real ``example_app`` served by werkzeug on 127.0.0.1 in a thread, sending through
the real Aliyun SDK to a local :class:`~flask_alisms.testing.DysmsapiEmulator`.

The module skips when Playwright or ``/usr/bin/chromium`` is missing, or when
``ALISMS_BROWSER_TESTS=0`` (``.ci/run`` sets that for its service runs). Each key step is saved
as a screenshot in ``test-artifacts/browser/``. With ``ALISMS_README_SCREENSHOTS=1`` the tests
also rewrite the README's pictures in ``docs/screenshots/``, which are otherwise left alone so
that a test run does not change the checkout.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from example_app import create_app, db
from flask_alisms.testing import DysmsapiEmulator

from .conftest import EMULATOR_READ_TIMEOUT, KEY_ID, KEY_SECRET, SIGN, TEMPLATE

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

if os.environ.get("ALISMS_BROWSER_TESTS") == "0":
    pytest.skip("browser tests switched off (ALISMS_BROWSER_TESTS=0)", allow_module_level=True)
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(
        f"no Chromium at {CHROMIUM}: install it to run the browser tests "
        "(Debian/Ubuntu: sudo apt-get install chromium)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason='Playwright is not installed: pip install -e ".[test]"'
)
expect = sync_api.expect

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "browser"
README_SHOTS = ROOT / "docs" / "screenshots"
README_SHOT_LIMIT = 200_000  # bytes
README_PICTURES = os.environ.get("ALISMS_README_SCREENSHOTS") == "1"

VIEWPORT = {"width": 1100, "height": 800}
ADMIN_PHONE = "13900139000"
ADMIN_PASSWORD = "admin pass 1"
VISITOR = "13800138000"
VISITOR_PASSWORD = "visitor pass 1"
TIMEOUT_MS = 10_000
#: Checklist lines missing on a fresh site whose registration switches default to off.
MISSING_AT_FIRST = [
    "Signature name (aliyun.sms.sign_name)",
    "Verification code template (aliyun.sms.sms_code_template_code)",
    "AccessKey ID (aliyun.sms.access_key_id)",
    "AccessKey secret (aliyun.sms.access_key_secret)",
    "Registration allowed (server.allow_user_register)",
    "Mobile registration switch (server.enable_mobile_register)",
]


# -- the browser, the site and the pages --------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=LAUNCH_ARGS, timeout=30_000
        )
        try:
            yield browser
        finally:
            browser.close()


class Site:
    """The example app served over HTTP, with its emulator."""

    def __init__(self, app: Any, url: str, emulator: DysmsapiEmulator) -> None:
        self.app = app
        self.url = url
        self.emulator = emulator

    def __call__(self, path: str) -> str:
        return self.url + path


@pytest.fixture
def make_site(tmp_path: Path, emulator: DysmsapiEmulator) -> Iterator[Callable[..., Site]]:
    """Start the example app; keyword arguments are extra config. Stopped after the test."""
    running: list[tuple[Any, threading.Thread, Any]] = []

    def factory(**config: Any) -> Site:
        app = create_app(
            {
                "SECRET_KEY": "browser-test-secret-key",
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/browser.db",
                "ALISMS_SENDER": "aliyun",
                "ALISMS_ENDPOINT": emulator.endpoint,
                "ALISMS_READ_TIMEOUT": EMULATOR_READ_TIMEOUT,
                **config,
            }
        )
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="example-site",
            daemon=True,
        )
        thread.start()
        running.append((server, thread, app))
        return Site(app, f"http://127.0.0.1:{server.server_port}", emulator)

    yield factory
    for server, thread, app in running:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        assert not thread.is_alive(), "the site's server thread did not stop"
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def site(make_site: Callable[..., Site]) -> Site:
    return make_site()


def _new_page(browser: Any, locale: str) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT, locale=locale)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    yield from _new_page(browser, "en-US")


@pytest.fixture
def zh_page(browser: Any) -> Iterator[Any]:
    yield from _new_page(browser, "zh-CN")


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Save a screenshot of a step as a test artefact: ``shot(page, "step")``."""
    prefix = request.node.name.removeprefix("test_")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def save(page: Any, step: str, *, full_page: bool = True) -> None:
        page.screenshot(path=ARTIFACTS / f"{prefix}--{step}.png", full_page=full_page)

    return save


def readme_shot(page: Any, name: str, **options: Any) -> None:
    """Rewrite ``docs/screenshots/NAME.png`` when ALISMS_README_SCREENSHOTS=1."""
    if not README_PICTURES:
        return
    README_SHOTS.mkdir(parents=True, exist_ok=True)
    path = README_SHOTS / f"{name}.png"
    page.screenshot(path=path, **options)
    size = path.stat().st_size
    assert size < README_SHOT_LIMIT, f"{path.name} is {size} bytes, keep it under 200 KB"


def register_form(page: Any, site: Site) -> None:
    page.goto(site("/alisms/register"))
    expect(page.get_by_role("heading", name="Create an account")).to_be_visible()


def send_button(page: Any) -> Any:
    return page.locator("#send")


def countdown_seconds(page: Any) -> int:
    match = re.search(r"(\d+)", send_button(page).inner_text())
    assert match, f"no seconds in {send_button(page).inner_text()!r}"
    return int(match.group(1))


def admin_nav(page: Any, name: str) -> Any:
    return page.get_by_role("navigation").get_by_role("link", name=name, exact=True)


def flashes(page: Any) -> Any:
    return page.locator(".flashes")


def _configure(site: Site) -> None:
    """What the admin test does through the panel, done directly for the visitor tests."""
    with site.app.app_context():
        site.app.extensions["alisms"].params.update(
            {
                "aliyun.sms.sign_name": SIGN,
                "aliyun.sms.sms_code_template_code": TEMPLATE,
                "aliyun.sms.access_key_id": KEY_ID,
                "aliyun.sms.access_key_secret": KEY_SECRET,
            },
            actor="test",
        )


# -- scenarios ----------------------------------------------------------------------------------


def test_admin_sets_up_aliyun_and_sends_a_test_sms(
    make_site: Callable[..., Site], page: Any, shot: Callable[..., None]
) -> None:
    # Registration starts switched off here, so that the admin really switches it on.
    site = make_site(ALISMS_PARAM_DEFAULTS={})
    result = site.app.test_cli_runner().invoke(
        args=["create-admin", ADMIN_PHONE, "--password", ADMIN_PASSWORD]
    )
    assert result.exit_code == 0, result.output

    def no_secret(step: str) -> None:
        html = page.content()
        assert KEY_SECRET not in html, f"the AccessKey secret is in the HTML at {step}"
        shot(page, step)

    page.goto(site("/login"))
    page.get_by_label("Mobile number").fill(ADMIN_PHONE)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    no_secret("login")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("You are an administrator.")).to_be_visible()
    no_secret("signed-in")

    page.get_by_role("link", name="Admin panel").click()
    page.wait_for_url(site("/alisms/admin/"))
    checklist = page.locator("ul.checklist")
    summary = page.locator(".checklist-summary .badge")
    expect(summary).to_have_class(re.compile("badge-warn"))
    expect(checklist.locator("li.check-missing")).to_contain_text(MISSING_AT_FIRST)
    total = checklist.locator("li").count()
    done = total - checklist.locator("li.check-missing").count()
    expect(summary).to_have_text(f"{done} of {total} done")
    expect(page.locator(".status-card").first.locator(".badge")).to_have_text(re.compile("Off"))
    no_secret("panel-empty")

    page.get_by_label("Signature name").fill(SIGN)
    page.get_by_label("Verification code template").fill(TEMPLATE)
    page.get_by_label("AccessKey ID").fill(KEY_ID)
    page.get_by_label("AccessKey secret").fill(KEY_SECRET)
    page.get_by_label("Allow user registration").select_option("true")
    page.get_by_label("Enable mobile registration").select_option("true")
    no_secret("panel-filled")  # typed into the input, the secret is no attribute of the HTML
    page.get_by_role("button", name="Save").click()

    expect(flashes(page)).to_contain_text("Saved:")
    expect(summary).to_have_text(f"{total} of {total} done")
    expect(summary).to_have_class(re.compile("badge-ok"))
    expect(checklist.locator("li.check-ok")).to_have_count(total)
    expect(checklist.locator("li.check-missing")).to_have_count(0)
    expect(page.locator(".status-card").first.locator(".badge")).to_have_text(re.compile("On"))
    # Saving asked Aliyun (the emulator): key, signature, template and its text are green.
    remote = page.locator("ul.remote-checklist")
    expect(remote.locator("li.check-ok")).to_have_count(4)
    expect(remote).to_contain_text("AccessKey: accepted by Aliyun")
    expect(remote.locator("q")).to_contain_text("${code}")
    secret = page.get_by_label("AccessKey secret")
    expect(secret).to_have_value("")
    expect(secret).to_have_attribute("placeholder", re.compile("Stored"))
    key_id = page.get_by_label("AccessKey ID").input_value()
    assert key_id != KEY_ID, "the AccessKey ID is shown in full"
    assert key_id[-4:] == KEY_ID[-4:]
    no_secret("panel-saved")

    page.get_by_role("link", name="Send a test SMS").click()
    page.wait_for_url(site("/alisms/admin/test-sms"))
    page.get_by_label("Mobile number").fill(VISITOR)
    no_secret("test-sms-form")
    page.get_by_role("button", name="Send test SMS").click()
    result_box = page.locator("section.result")
    expect(result_box).to_have_class(re.compile("result-ok"))
    expect(result_box.get_by_role("heading")).to_contain_text("Aliyun accepted the message")
    message = site.emulator.last_message(VISITOR)
    assert message is not None, "the emulator received no test SMS"
    facts = result_box.locator("dl.facts")
    expect(facts.locator("dt:has-text('Code') + dd")).to_have_text("OK")
    expect(facts.locator("dt:has-text('BizId') + dd")).to_have_text(message.biz_id)
    assert message.sign_name == SIGN
    assert message.template_code == TEMPLATE
    no_secret("test-sms-sent")
    readme_shot(page, "test-sms", full_page=True)

    # Back on the panel: the last test is reported, and the secret is still only "Set".
    admin_nav(page, "Parameters").click()
    expect(page.locator(".status-card").nth(2)).to_contain_text("Accepted")
    no_secret("panel-after-test")
    panel_picture(page)

    admin_nav(page, "Send log").click()
    expect(page.locator("table.log-table tbody tr")).to_have_count(1)
    no_secret("send-log")


def panel_picture(page: Any) -> None:
    """The panel from the top to the last parameter section, the Aliyun one open, for the README.

    It is rendered again in a context sharing the admin's cookies, with a viewport taller than
    the picture (a full-page screenshot paints the sticky Save bar across the parameters, where
    the first viewport ended) and a device scale of 0.8 to stay under 200 KB.
    """
    if not README_PICTURES:
        return
    context = page.context.browser.new_context(
        viewport={"width": VIEWPORT["width"], "height": 2400},
        device_scale_factor=0.8,
        locale="en-US",
        storage_state=page.context.storage_state(),
    )
    try:
        picture = context.new_page()
        picture.goto(page.url)
        aliyun = picture.locator("details#section-aliyun")
        aliyun.evaluate("e => { e.open = true; }")  # complete, so closed: show what it holds
        bottom = picture.locator("details.param-section").last.evaluate(
            "e => e.getBoundingClientRect().bottom + window.scrollY"
        )
        height = int(bottom + 16)
        picture.set_viewport_size({"width": VIEWPORT["width"], "height": height + 200})
        picture.evaluate("window.scrollTo(0, 0)")
        assert KEY_SECRET not in picture.content()
        readme_shot(
            picture, "panel", clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height}
        )
    finally:
        context.close()


def _sign_in_as_admin(site: Site, page: Any) -> None:
    """From the panel's address: redirected to the login page, signed in, back on the panel."""
    result = site.app.test_cli_runner().invoke(
        args=["create-admin", ADMIN_PHONE, "--password", ADMIN_PASSWORD]
    )
    assert result.exit_code == 0, result.output
    page.goto(site("/alisms/admin/"))
    page.wait_for_url(re.compile(r"/login\?next=/alisms/admin/$"))
    expect(page.get_by_role("link", name="Forgot password?")).to_be_visible()
    page.get_by_label("Mobile number").fill(ADMIN_PHONE)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(site("/alisms/admin/"))


def test_anonymous_admin_is_sent_to_a_styled_login_page(
    site: Site, page: Any, shot: Callable[..., None]
) -> None:
    icon = page.request.get(site("/favicon.ico"))
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    page.goto(site("/alisms/admin/log"))
    page.wait_for_url(re.compile(r"/login\?next=/alisms/admin/log$"))
    card = page.locator(".card")
    expect(card.get_by_role("heading", name="Sign in")).to_be_visible()
    forgot = page.get_by_role("link", name="Forgot password?")
    expect(forgot).to_have_attribute("href", "/alisms/reset-password?next=/alisms/admin/log")
    button = page.get_by_role("button", name="Sign in")
    expect(button).to_have_class(re.compile("button-primary"))
    assert card.evaluate("e => getComputedStyle(e).borderRadius") != "0px"  # styled, not bare
    shot(page, "login")
    forgot.click()
    expect(page.get_by_role("heading", name="Reset your password")).to_be_visible()


def test_panel_error_summary_sections_and_sources(
    site: Site, page: Any, shot: Callable[..., None]
) -> None:
    _configure(site)
    _sign_in_as_admin(site, page)
    sections = page.locator("details.param-section")
    # Aliyun filled in, switches on by the example's ALISMS_PARAM_DEFAULTS: all complete.
    expect(sections).to_have_count(8)  # and the human check, cost and budgets, budget alerts
    for index in range(8):
        expect(sections.nth(index)).not_to_have_attribute("open", "")
    codes = page.locator("details#section-codes")
    codes.locator("summary").click()
    page.get_by_label("Code length").fill("9")
    page.get_by_role("button", name="Save").click()

    summary = page.locator(".error-summary")
    expect(summary).to_be_visible()
    assert summary.bounding_box()["y"] < VIEWPORT["height"], "the summary is below the fold"
    expect(codes).to_have_attribute("open", "")
    shot(page, "error-summary")
    readme_shot(page, "error-summary")  # the viewport the admin sees after Save
    summary.get_by_role("link", name="Code length").click()
    expect(page.get_by_label("Code length")).to_be_in_viewport()

    # Saving what a default already gives stores nothing and says so; ticking stores it.
    page.goto(site("/alisms/admin/"))
    switches = page.locator("details#section-registration")
    switches.locator("summary").click()
    source = switches.locator("#server__allow_user_register-source")
    expect(source).to_contain_text("ALISMS_PARAM_DEFAULTS")
    page.get_by_role("button", name="Save").click()
    expect(flashes(page)).to_contain_text("every value sent is already in effect")
    switches.locator("summary").click()
    switches.get_by_label("Save this value here").first.check()
    page.get_by_role("button", name="Save").click()
    expect(flashes(page)).to_contain_text("Saved: server.allow_user_register.")
    switches.locator("summary").click()
    expect(source).to_contain_text("Saved in this panel")
    shot(page, "saved-default")


def test_failed_test_sms_is_explained_in_words(
    site: Site, page: Any, zh_page: Any, shot: Callable[..., None]
) -> None:
    _configure(site)
    _sign_in_as_admin(site, page)
    site.emulator.fail_next("isv.AMOUNT_NOT_ENOUGH")
    page.goto(site("/alisms/admin/test-sms"))
    page.get_by_label("Mobile number").fill(VISITOR)
    page.get_by_role("button", name="Send test SMS").click()
    expect(page.locator(".advice-category .badge")).to_have_text("Account balance or quota")
    shot(page, "test-sms-failed")
    page.goto(site("/alisms/admin/log"))
    expect(page.locator("table.log-table tbody tr").first).to_contain_text(
        "Account balance or quota"
    )


def test_login_page_in_chinese(site: Site, zh_page: Any, shot: Callable[..., None]) -> None:
    zh_page.goto(site("/login"))
    expect(zh_page.get_by_role("link", name="忘记密码？")).to_be_visible()
    expect(zh_page.locator(".lead")).to_have_text("请使用手机号和密码登录。")
    shot(zh_page, "login-zh")


def test_visitor_registers_by_phone(site: Site, page: Any, shot: Callable[..., None]) -> None:
    _configure(site)
    page.goto(site("/"))
    page.get_by_role("link", name="Register by phone").click()
    expect(page.get_by_role("heading", name="Create an account")).to_be_visible()
    page.get_by_label("Mobile number").fill(VISITOR)
    shot(page, "form")
    page.get_by_role("button", name="Send code").click()

    expect(flashes(page)).to_contain_text("We sent a code by SMS")
    button = send_button(page)
    expect(button).to_be_disabled()
    expect(button).to_have_text(re.compile(r"^Send again in \d+s$"))
    first = countdown_seconds(page)
    assert 55 <= first <= 60
    shot(page, "countdown")
    readme_shot(page, "register", full_page=True)
    started = time.monotonic()
    page.wait_for_function(
        "n => parseInt(document.getElementById('send').textContent.match(/\\d+/)[0]) < n",
        arg=first,
        timeout=2_500,
    )
    assert time.monotonic() - started < 2.5
    assert countdown_seconds(page) < first
    expect(button).to_be_disabled()

    code = site.emulator.last_param(VISITOR)
    assert re.fullmatch(r"\d{6}", code)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    page.get_by_label("Verification code").fill(wrong)
    page.get_by_label("Password").fill(VISITOR_PASSWORD)
    page.get_by_role("button", name="Register").click()
    error = page.locator("#code-errors")
    expect(error).to_have_text("The code is wrong or has expired. Request a new code if needed.")
    expect(page.get_by_label("Verification code")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Mobile number")).to_have_value(VISITOR)
    shot(page, "wrong-code")

    page.get_by_label("Verification code").fill(code)
    page.get_by_label("Password").fill(VISITOR_PASSWORD)
    page.get_by_role("button", name="Register").click()
    page.wait_for_url(site("/"))
    expect(flashes(page)).to_contain_text("Welcome! Your account is ready.")
    expect(page.locator("main")).to_contain_text("Signed in as +8613800138000")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    shot(page, "signed-in")


def test_impatient_visitor_is_throttled(site: Site, page: Any, shot: Callable[..., None]) -> None:
    _configure(site)
    register_form(page, site)
    page.get_by_label("Mobile number").fill(VISITOR)
    page.get_by_role("button", name="Send code").click()
    expect(send_button(page)).to_be_disabled()
    assert len(site.emulator.messages) == 1

    # An impatient user with devtools re-enables the counting button and clicks it.
    page.evaluate("document.getElementById('send').removeAttribute('disabled')")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        send_button(page).click()
    assert answer.value.status == 429
    expect(flashes(page)).to_contain_text(
        re.compile(r"Too many codes were requested\. Try again in \d+ seconds\.")
    )
    expect(page.locator(".flash-error")).to_have_attribute("role", "alert")
    # The refusal restarts the countdown with what is left of the interval.
    expect(send_button(page)).to_be_disabled()
    assert 50 <= countdown_seconds(page) <= 60
    shot(page, "devtools-resend")

    # Reloading the form brings an enabled button back, but the server still says no.
    register_form(page, site)
    page.get_by_label("Mobile number").fill(VISITOR)
    expect(send_button(page)).to_be_enabled()
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        send_button(page).click()
    assert answer.value.status == 429
    expect(flashes(page)).to_contain_text("Too many codes were requested")
    shot(page, "reload-resend")
    assert len(site.emulator.messages) == 1, "a throttled request reached Aliyun"


def test_register_page_in_chinese(site: Site, zh_page: Any, shot: Callable[..., None]) -> None:
    _configure(site)
    zh_page.goto(site("/alisms/register"))
    expect(zh_page.locator("html")).to_have_attribute("lang", "zh-Hans")
    expect(zh_page.get_by_role("heading", name="注册账号")).to_be_visible()
    expect(zh_page.get_by_label("手机号")).to_be_visible()
    expect(zh_page.get_by_label("验证码")).to_be_visible()
    expect(zh_page.get_by_label("密码")).to_be_visible()
    expect(send_button(zh_page)).to_have_text("获取验证码")
    expect(zh_page.locator("#submit")).to_have_text("注册")
    shot(zh_page, "form")

    zh_page.get_by_label("手机号").fill(VISITOR)
    send_button(zh_page).click()
    expect(send_button(zh_page)).to_have_text(re.compile(r"^\d+ 秒后可重新发送$"))
    shot(zh_page, "countdown")
