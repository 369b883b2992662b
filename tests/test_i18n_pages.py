"""Every page and state of the extension and the example site, read in Chinese: no English left."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from typing import Any

import pytest

from flask_alisms.exceptions import LimiterUnavailable
from flask_alisms.flows import verification

from .conftest import PHONE, Host, api_post, csrf_token, form_token

LANGUAGES = {"zh-CN": "zh_Hans", "zh-TW": "zh_Hant"}
SHOWN_ATTRIBUTES = {"placeholder", "aria-label", "title", "alt", "data-resend-label"}
# Codes, product names and identifiers that stay as they are in every language.
ALLOWED_PATTERNS = re.compile(
    r"`[^`]*`"  # a CLI command
    r"|\S+@\S+"  # an email address
    r"|https?://\S+|(?<![\w/])/[\w/.-]+"  # a URL or a local path
    r"|[\w*-]+(?:\.[\w*-]+)+(?::\d+)?"  # aliyun.sms.sign_name, isv.X, dysmsapi.aliyuncs.com
    r"|\$\{+\w+\}+"  # a template variable, ${code}
    r"|ALISMS_\w+|SMS_\d+|HTTP\(S\)_PROXY|dysms:SendSms|AliSMS\(user_adapter=\.\.\.\)"
    r"|X-CSRFToken|aliyun-python-sdk-core"
    r"|\+\d+ [A-Z]{2}\b"  # a country choice, "+86 CN"
    r"|%\(\w+\)s"  # the countdown template the script fills in
)
ALLOWED_WORDS = {
    "AccessKey", "Secret", "ID", "BizId", "RAM", "AliyunDysmsFullAccess", "HTTP", "JSON",
    "CSRF", "URL", "API", "SDK", "DNS", "NTP", "IP", "CODE", "TemplateParam", "nonce", "true",
    "AliyunDysmsReadOnlyAccess",
    "false", "ms", "UTC", "code", "purpose", "register", "reset", "login",
    "CSV",  # the export's file format
    "off", "always", "adaptive",  # the values of human_check.mode, typed as they are
    "generic", "dingtalk", "wecom",  # the values of alerts.webhook_format, typed as they are
    "Nickname",  # the test host's own sign-up field, labelled by the host
}  # fmt: skip
WORD = re.compile(r"[A-Za-z][A-Za-z'’]*")


class _Text(HTMLParser):
    """The text a visitor sees or hears: data, the title, and the attributes that are shown."""

    SKIP = frozenset({"script", "style", "code"})
    VOID = frozenset({"input", "meta", "link", "br", "img", "hr"})

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skipping: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag not in self.VOID and (tag in self.SKIP or values.get("translate") == "no"):
            self._skipping.append(tag)
        if self._skipping:
            return
        self.parts.extend(str(values[name]) for name in SHOWN_ATTRIBUTES if values.get(name))
        if tag == "input" and values.get("type") in ("submit", "button") and values.get("value"):
            self.parts.append(str(values["value"]))

    def handle_endtag(self, tag: str) -> None:
        if self._skipping and self._skipping[-1] == tag:
            self._skipping.pop()

    def handle_data(self, data: str) -> None:
        if not self._skipping and data.strip():
            self.parts.append(data.strip())


def english_left(text: str) -> list[str]:
    return [w for w in WORD.findall(ALLOWED_PATTERNS.sub(" ", text)) if w not in ALLOWED_WORDS]


def check_page(html: str, locale: str, what: str) -> None:
    parser = _Text()
    parser.feed(html)
    text = "\n".join(parser.parts)
    assert english_left(text) == [], f"{what}: English left in {locale}:\n{text}"
    assert re.search(r"[\u4e00-\u9fff]", text), what
    tag = locale.replace("_", "-")
    assert f'<html lang="{tag}">' in html, what


def check_message(message: str, what: str) -> None:
    assert re.search(r"[\u4e00-\u9fff]", message), (what, message)
    assert english_left(message) == [], (what, message)


def form_fields(html: str) -> dict[str, str]:
    """What a browser would post back from the page's form, unchanged."""
    fields: dict[str, str] = {}
    for tag in re.findall(r"<input\b[^>]*>", html):
        attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', tag))
        if "disabled" in tag or attrs.get("type") in ("submit", "password", "checkbox"):
            continue
        if "name" in attrs:
            fields[attrs["name"]] = attrs.get("value", "")
    for name, body in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', html, re.S):
        options = re.findall(r"<option\b[^>]*>", body)
        chosen = [o for o in options if re.search(r"\sselected\b", o)] or options[:1]
        value = re.search(r'value="([^"]*)"', chosen[0]) if chosen else None
        fields[name] = value.group(1) if value else ""
    return fields


@pytest.fixture(params=sorted(LANGUAGES))
def header(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def memory_host(make_host: Callable[..., Host]) -> Host:
    host = make_host(ALISMS_SENDER="memory")
    host.configure_sms()
    return host


def _client(host: Host, header: str, admin: str | None = None) -> Any:
    client = host.client(admin)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = header
    return client


def _post_form(client: Any, path: str, **fields: str) -> Any:
    token = form_token(client.get(path).get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, "country_code": "86", **fields})


@pytest.mark.parametrize("path", ["/alisms/register", "/alisms/reset-password"])
def test_user_pages_in_every_state(memory_host: Host, header: str, path: str) -> None:
    locale = LANGUAGES[header]
    client = _client(memory_host, header)
    check_page(client.get(path).get_data(as_text=True), locale, f"{path} GET")

    empty = _post_form(client, path, phone="", submit="1")
    assert empty.status_code == 400
    check_page(empty.get_data(as_text=True), locale, f"{path} required fields")

    bad = _post_form(client, path, phone="12", submit="1")
    assert bad.status_code == 400
    check_page(bad.get_data(as_text=True), locale, f"{path} bad phone")

    weak = _post_form(client, path, phone="13800138000", code="123456", password="abc", submit="1")
    assert weak.status_code == 422
    check_page(weak.get_data(as_text=True), locale, f"{path} weak password")

    sent = _post_form(client, path, phone="13800138000", send="1")
    assert sent.status_code == 200
    check_page(sent.get_data(as_text=True), locale, f"{path} code sent")

    wrong = _post_form(
        client, path, phone="13800138000", code="000000", password="good pass 1", submit="1"
    )
    assert wrong.status_code == 400
    check_page(wrong.get_data(as_text=True), locale, f"{path} wrong code")

    again = _post_form(client, path, phone="13800138000", send="1")
    assert again.status_code == 429
    check_page(again.get_data(as_text=True), locale, f"{path} throttled")


@pytest.mark.parametrize("path", ["/alisms/register", "/alisms/reset-password"])
def test_user_pages_when_closed(host: Host, header: str, path: str) -> None:
    client = _client(host, header)
    check_page(client.get(path).get_data(as_text=True), LANGUAGES[header], f"{path} closed")
    host.configure_sms(open_registration=False)
    check_page(client.get(path).get_data(as_text=True), LANGUAGES[header], f"{path} closed")


def test_the_unavailable_page(
    memory_host: Host, header: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise LimiterUnavailable("down")

    monkeypatch.setattr(verification, "request_code", down)
    response = _post_form(
        _client(memory_host, header), "/alisms/register", phone="13800138000", send="1"
    )
    assert response.status_code == 503
    check_page(response.get_data(as_text=True), LANGUAGES[header], "503 page")


def test_the_parameters_page(memory_host: Host, header: str) -> None:
    locale = LANGUAGES[header]
    client = _client(memory_host, header, admin="root")
    page = client.get("/alisms/admin/").get_data(as_text=True)
    check_page(page, locale, "parameters")
    fields = form_fields(page)

    invalid = client.post("/alisms/admin/", data={**fields, "sms__code_length": "99"})
    assert invalid.status_code == 400
    check_page(invalid.get_data(as_text=True), locale, "parameters, invalid")

    nothing = client.post("/alisms/admin/", data=fields, follow_redirects=True)
    assert nothing.status_code == 200
    check_page(nothing.get_data(as_text=True), locale, "parameters, nothing changed")

    saved = client.post(
        "/alisms/admin/", data={**fields, "sms__code_length": "5"}, follow_redirects=True
    )
    assert saved.status_code == 200
    check_page(saved.get_data(as_text=True), locale, "parameters, saved")


# One Aliyun code per failure category, plus the prefix rules and an unknown code.
FAILURES = [
    "isv.SMS_SIGNATURE_ILLEGAL",
    "isv.SMS_TEMPLATE_ILLEGAL",
    "InvalidAccessKeyId.NotFound",
    "isp.RAM_PERMISSION_DENY",
    "isv.BUSINESS_LIMIT_CONTROL",
    "isv.AMOUNT_NOT_ENOUGH",
    "isv.MOBILE_NUMBER_ILLEGAL",
    "SDK.HttpError",
    "InternalError",
    "isv.SOMETHING_NEW",
    "Throttling.User",
    "Totally.Unknown",
]


@pytest.fixture
def admin_pages(memory_host: Host) -> Iterator[tuple[Host, Any]]:
    yield memory_host, memory_host.app.extensions["alisms"].sender


def test_the_test_sms_page_and_the_log(admin_pages: tuple[Host, Any], header: str) -> None:
    host, sender = admin_pages
    locale = LANGUAGES[header]
    client = _client(host, header, admin="root")
    check_page(client.get("/alisms/admin/test-sms").get_data(as_text=True), locale, "test SMS")
    for code in FAILURES:
        sender.fail_with(code)
        response = _post_form(client, "/alisms/admin/test-sms", phone="13800138000", send="1")
        assert response.status_code == 502, code
        check_page(response.get_data(as_text=True), locale, f"test SMS failing with {code}")
    ok = _post_form(client, "/alisms/admin/test-sms", phone="13800138000", send="1")
    assert ok.status_code == 200
    check_page(ok.get_data(as_text=True), locale, "test SMS accepted")
    bad = _post_form(client, "/alisms/admin/test-sms", phone="12", send="1")
    check_page(bad.get_data(as_text=True), locale, "test SMS, bad phone")

    # A sent code, a skipped one (reset for a number without an account) and the failures.
    visitor = _client(host, header)
    assert api_post(visitor, "send-code", {"phone": PHONE}).status_code == 200
    assert (
        api_post(visitor, "send-code", {"phone": "+8613900139000", "purpose": "reset"}).status_code
        == 200
    )
    log = client.get("/alisms/admin/log").get_data(as_text=True)
    for outcome in ("rate_limit", "invalid_number", "skipped"):
        assert outcome not in log.replace(f'value="{outcome}"', "")
    check_page(log, locale, "send log")
    check_page(
        client.get("/alisms/admin/log?category=sent&purpose=test&days=1").get_data(as_text=True),
        locale,
        "send log filtered",
    )
    check_page(
        client.get("/alisms/admin/log?phone=abc").get_data(as_text=True),
        locale,
        "send log, bad filter",
    )
    check_page(
        client.get("/alisms/admin/").get_data(as_text=True), locale, "parameters after tests"
    )


# -- the JSON API ---------------------------------------------------------------------------------


def _api_messages(host: Host, header: str) -> dict[str, str]:
    client = _client(host, header)
    messages: dict[str, str] = {}

    def record(what: str, response: Any, status: int) -> None:
        assert response.status_code == status, (what, response.get_json())
        messages[what] = response.get_json()["message"]

    record("bad phone", api_post(client, "send-code", {"phone": "12"}), 400)
    record("purpose", api_post(client, "send-code", {"phone": PHONE, "purpose": "x"}), 400)
    record("csrf", client.post("/alisms/api/send-code", json={"phone": PHONE}), 400)
    record(
        "not json",
        client.post("/alisms/api/send-code", data="x", headers={"X-CSRFToken": csrf_token(client)}),
        400,
    )
    record(
        "weak",
        api_post(client, "register", {"phone": PHONE, "code": "123456", "password": "abc"}),
        422,
    )
    record("no password", api_post(client, "reset-password", {"phone": PHONE, "code": "1"}), 422)
    assert api_post(client, "send-code", {"phone": PHONE}).status_code == 200
    record("throttled", api_post(client, "send-code", {"phone": PHONE}), 429)
    record(
        "wrong code",
        api_post(client, "register", {"phone": PHONE, "code": "000000", "password": "good pass 1"}),
        400,
    )
    host.app.extensions["alisms"].sender.fail_with("isv.AMOUNT_NOT_ENOUGH")
    record("sms failed", api_post(client, "send-code", {"phone": "+8613900139000"}), 503)
    record("not found", client.get("/alisms/api/nothing-here"), 404)
    record("method", client.get("/alisms/api/send-code"), 405)
    return messages


def test_api_messages_are_translated(make_host: Callable[..., Host]) -> None:
    by_language = {}
    for header in LANGUAGES:
        host = make_host(ALISMS_SENDER="memory")
        host.configure_sms()
        # The hosts share a Redis limiter storage when CI selects one: start each afresh.
        host.app.extensions["alisms"].throttle.reset()
        by_language[header] = _api_messages(host, header)
        for what, message in by_language[header].items():
            check_message(message, f"{header} {what}")
    for what, simplified in by_language["zh-CN"].items():
        assert by_language["zh-TW"][what] != simplified, what


def test_api_messages_when_closed(host: Host) -> None:
    for header in LANGUAGES:
        response = api_post(_client(host, header), "send-code", {"phone": PHONE})
        assert response.status_code in (403, 503)
        check_message(response.get_json()["message"], f"{header} closed")


# -- the example site ---------------------------------------------------------------------------


@pytest.fixture
def example(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in list(os.environ):
        if name.startswith(("FLASK_", "ALISMS_")) or name in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(name)
    from example_app import User, create_app, db

    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "example-test-key",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/example.db",
            "ALISMS_SENDER": "memory",
        }
    )
    with app.app_context():
        from werkzeug.security import generate_password_hash

        db.session.add(
            User(phone=PHONE, password_hash=generate_password_hash("good pass 1"), is_admin=True)
        )
        db.session.commit()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_the_example_site(example: Any, header: str) -> None:
    locale = LANGUAGES[header]
    client = example.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = header
    check_page(client.get("/").get_data(as_text=True), locale, "example index")
    check_page(client.get("/login").get_data(as_text=True), locale, "example login")
    token = form_token(client.get("/login").get_data(as_text=True))
    empty = client.post("/login", data={"csrf_token": token})
    check_page(empty.get_data(as_text=True), locale, "example login, empty")
    wrong = client.post(
        "/login", data={"csrf_token": token, "phone": "13800138000", "password": "nope"}
    )
    check_page(wrong.get_data(as_text=True), locale, "example login, wrong")
    signed_in = client.post(
        "/login",
        data={"csrf_token": token, "phone": "13800138000", "password": "good pass 1"},
        follow_redirects=True,
    )
    check_page(signed_in.get_data(as_text=True), locale, "example index, admin")
    match = re.search(r'name="csrf_token" value="([^"]+)"', signed_in.get_data(as_text=True))
    assert match is not None
    out = client.post("/logout", data={"csrf_token": match.group(1)}, follow_redirects=True)
    check_page(out.get_data(as_text=True), locale, "example index, signed out")
    check_page(client.get("/alisms/register").get_data(as_text=True), locale, "example register")
