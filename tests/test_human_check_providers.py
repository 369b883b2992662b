"""Turnstile and hCaptcha checked on a local fake siteverify server (never the internet): what
is sent, what counts as solved, and every way the provider can fail (a 503, never a pass)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

from flask_alisms.testing import DysmsapiEmulator

from .conftest import PHONE, Host, api_post, form_token

SITE_KEY = "1x00000000000000000000AA"
SECRET = "0x4AAAAAAAtest-secret-never-logged"


class FakeSiteverify:
    """A siteverify endpoint on 127.0.0.1 answering what the test sets in ``reply``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.reply: Any = {"success": True}
        self.status = 200
        self.delay = 0.0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                fields = parse_qs(self.rfile.read(length).decode())
                fake.requests.append({name: values[0] for name, values in fields.items()})
                time.sleep(fake.delay)
                reply = fake.reply(fields) if callable(fake.reply) else fake.reply
                body = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/siteverify"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeSiteverify:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def siteverify() -> Iterator[FakeSiteverify]:
    with FakeSiteverify() as server:
        yield server


def provider_host(make_host: Any, kind: str, url: str, **config: Any) -> Host:
    host = make_host(
        ALISMS_HUMAN_CHECK=kind,
        ALISMS_HUMAN_CHECK_SITE_KEY=SITE_KEY,
        ALISMS_HUMAN_CHECK_SECRET_KEY=SECRET,
        ALISMS_HUMAN_CHECK_VERIFY_URL=url,
        ALISMS_HUMAN_CHECK_TIMEOUT=config.pop("timeout", 1.0),
        **config,
    )
    host.configure_sms()
    host.set_params(human_check__mode="always")
    return host


def send(client: Any, token: Any = None) -> Any:
    payload = {"phone": PHONE, "purpose": "register"}
    if token is not None:
        payload["human_check"] = token
    return api_post(client, "send-code", payload)


def challenge(client: Any) -> dict[str, Any]:
    body = send(client).get_json()
    assert body["error"] == "human_check_required", body
    return dict(body["human_check"])


# -- Turnstile ---------------------------------------------------------------------------------


def test_turnstile_token_checked_on_siteverify(
    make_host: Any, siteverify: FakeSiteverify, emulator: DysmsapiEmulator
) -> None:
    host = provider_host(make_host, "turnstile", siteverify.url)
    client = host.client()
    shown = challenge(client)
    assert shown["kind"] == "turnstile"
    assert shown["site_key"] == SITE_KEY
    assert shown["script_url"] == "https://challenges.cloudflare.com/turnstile/v0/api.js"
    assert SECRET not in json.dumps(shown)
    siteverify.reply = {"success": True, "cdata": shown["cdata"], "hostname": "localhost"}

    response = send(client, "XXXX.DUMMY.TOKEN.XXXX")
    assert response.status_code == 200, response.get_json()
    assert siteverify.requests == [
        {"secret": SECRET, "response": "XXXX.DUMMY.TOKEN.XXXX", "remoteip": "127.0.0.1"}
    ]
    assert len(emulator.messages) == 1


def test_turnstile_token_made_for_another_session_is_refused(
    make_host: Any, siteverify: FakeSiteverify, emulator: DysmsapiEmulator
) -> None:
    host = provider_host(make_host, "turnstile", siteverify.url)
    alice, mallory = host.client(), host.client()
    alices = challenge(alice)
    challenge(mallory)
    # Cloudflare hands back the cData of the widget that made the token: Alice's nonce.
    siteverify.reply = {"success": True, "cdata": alices["cdata"]}
    response = send(mallory, "token-solved-by-alice")
    assert (response.status_code, response.get_json()["reason"]) == (400, "wrong")
    siteverify.reply = {"success": True}  # no cData at all
    challenge(alice)
    assert send(alice, "token-without-cdata").get_json()["reason"] == "wrong"
    assert emulator.messages == []


@pytest.mark.parametrize("codes", [["invalid-input-response"], ["timeout-or-duplicate"], []])
def test_turnstile_refused_token_asks_again(
    make_host: Any, siteverify: FakeSiteverify, emulator: DysmsapiEmulator, codes: list[str]
) -> None:
    host = provider_host(make_host, "turnstile", siteverify.url)
    client = host.client()
    challenge(client)
    siteverify.reply = {"success": False, "error-codes": codes}
    response = send(client, "bad-token")
    assert response.status_code == 400
    body = response.get_json()
    assert (body["error"], body["reason"]) == ("human_check_failed", "wrong")
    assert body["human_check"]["kind"] == "turnstile"
    assert emulator.messages == []


# -- hCaptcha ----------------------------------------------------------------------------------


def test_hcaptcha_token_checked_with_the_site_key(
    make_host: Any, siteverify: FakeSiteverify, emulator: DysmsapiEmulator
) -> None:
    host = provider_host(make_host, "hcaptcha", siteverify.url)
    client = host.client()
    shown = challenge(client)
    assert (shown["kind"], shown["site_key"]) == ("hcaptcha", SITE_KEY)
    assert shown["script_url"] == "https://js.hcaptcha.com/1/api.js"
    siteverify.reply = {"success": True, "hostname": "localhost"}
    assert send(client, "P1_hcaptcha-token").status_code == 200
    assert siteverify.requests == [
        {
            "secret": SECRET,
            "response": "P1_hcaptcha-token",
            "remoteip": "127.0.0.1",
            "sitekey": SITE_KEY,
        }
    ]
    # Single use on our side too, whatever the provider would say of a replay.
    assert send(client, "P1_hcaptcha-token").get_json()["reason"] == "expired"
    assert len(siteverify.requests) == 1
    assert len(emulator.messages) == 1


def test_hcaptcha_4xx_with_a_verdict_is_a_refusal(
    make_host: Any, siteverify: FakeSiteverify, emulator: DysmsapiEmulator
) -> None:
    host = provider_host(make_host, "hcaptcha", siteverify.url)
    client = host.client()
    challenge(client)
    siteverify.status = 400
    siteverify.reply = {"success": False, "error-codes": ["invalid-or-already-seen-response"]}
    assert send(client, "old-token").get_json()["error"] == "human_check_failed"
    assert emulator.messages == []


# -- the provider failing: 503, never a pass ---------------------------------------------------


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/siteverify"


@pytest.mark.parametrize("kind", ["turnstile", "hcaptcha"])
@pytest.mark.parametrize(
    "failure", ["refused", "slow", "http 500", "http 429", "not json", "bad secret"]
)
def test_provider_down_gives_503_and_sends_nothing(
    make_host: Any,
    siteverify: FakeSiteverify,
    emulator: DysmsapiEmulator,
    kind: str,
    failure: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = _closed_port_url() if failure == "refused" else siteverify.url
    host = provider_host(make_host, kind, url, timeout=0.3)
    client = host.client()
    shown = challenge(client)
    siteverify.reply = {"success": True, "cdata": shown.get("cdata")}  # were it to answer
    if failure == "slow":
        siteverify.delay = 1.0
    elif failure.startswith("http"):
        siteverify.status = int(failure.split()[1])
    elif failure == "not json":
        siteverify.reply = b"<html>502 Bad Gateway</html>"
    elif failure == "bad secret":
        siteverify.reply = {"success": False, "error-codes": ["invalid-input-secret"]}

    started = time.monotonic()
    response = send(client, "a-token")
    assert time.monotonic() - started < 0.9  # the timeout bounds the wait
    assert response.status_code == 503
    body = response.get_json()
    assert body["error"] == "human_check_unavailable"
    assert "minute" in body["message"]
    assert emulator.messages == []
    assert any(kind in record.getMessage() for record in caplog.records)
    assert all(SECRET not in record.getMessage() for record in caplog.records)


# -- the pages ---------------------------------------------------------------------------------


def test_pages_show_the_widget_and_allow_its_origin(
    make_host: Any, siteverify: FakeSiteverify
) -> None:
    host = provider_host(make_host, "turnstile", siteverify.url)
    page = host.client().get("/alisms/register")
    html = page.get_data(as_text=True)
    assert 'class="cf-turnstile"' in html
    assert f'data-sitekey="{SITE_KEY}"' in html
    assert 'data-cdata="' in html
    assert "https://challenges.cloudflare.com/turnstile/v0/api.js" in html
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self' https://challenges.cloudflare.com" in policy
    assert "frame-src https://challenges.cloudflare.com" in policy
    assert "frame-ancestors 'none'" in policy
    # Pages without a widget keep the strict policy.
    host.set_params(human_check__mode="off")
    plain = host.client().get("/alisms/register")
    assert "cloudflare" not in plain.headers["Content-Security-Policy"]


def test_page_posts_the_widgets_own_field(
    make_host: Any, siteverify: FakeSiteverify, emulator: DysmsapiEmulator
) -> None:
    host = provider_host(make_host, "hcaptcha", siteverify.url)
    client = host.client()
    html = client.get("/alisms/register").get_data(as_text=True)
    assert 'class="h-captcha"' in html
    form = {"csrf_token": form_token(html), "country_code": "86", "phone": "13800138000"}
    siteverify.reply = {"success": True}
    response = client.post("/alisms/register", data={**form, "send": "1"})
    assert response.status_code == 400  # no token posted: nothing asked of siteverify
    assert siteverify.requests == []
    response = client.post(
        "/alisms/register", data={**form, "send": "1", "h-captcha-response": "P1_token"}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert siteverify.requests[0]["response"] == "P1_token"
    assert len(emulator.messages) == 1
    siteverify.status = 500
    response = client.post(
        "/alisms/register", data={**form, "send": "1", "h-captcha-response": "P1_token2"}
    )
    assert response.status_code == 503
    assert "not answering" in response.get_data(as_text=True)
