"""The OpenAPI document matches the API: every route, every method, every error code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from werkzeug.security import generate_password_hash

from flask_alisms.web import openapi

from .conftest import PHONE, Host, api_post, csrf_token

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "flask_alisms"


def _documented(doc: dict[str, Any], path: str, method: str) -> dict[int, set[str]]:
    """Status -> error codes the document allows for one operation (success: empty set)."""
    responses = doc["paths"][path][method]["responses"]
    result: dict[int, set[str]] = {}
    for status, response in responses.items():
        schema = response["content"]["application/json"]["schema"]
        codes = schema["allOf"][1]["properties"]["error"]["enum"] if "allOf" in schema else []
        result[int(status)] = set(codes)
    return result


def test_document_is_served_and_covers_every_api_route_of_the_url_map(host: Host) -> None:
    answer = host.client().get("/alisms/api/openapi.json")
    assert answer.status_code == 200
    doc = answer.get_json()
    assert doc["openapi"] == "3.1.0"
    routes = {
        (rule.rule, method.lower())
        for rule in host.app.url_map.iter_rules()
        if rule.rule.startswith("/alisms/api/") and rule.endpoint != "alisms.api_fallback"
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    documented = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert routes == documented


def test_prefix_follows_the_config(make_host: Any) -> None:
    host = make_host(ALISMS_URL_PREFIX="/sms")
    doc = host.app.test_client().get("/sms/api/openapi.json").get_json()
    assert "/sms/api/send-code" in doc["paths"]


def test_every_error_code_raised_in_the_code_is_documented_with_its_status() -> None:
    """Scan the sources for each way an API error code is made; the table must know each."""
    sources = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py") if "testing" not in p.parts)
    found: dict[str, int | None] = {}
    for status, code in re.findall(r'ApiError\(\s*(\d+),\s*"(\w+)"', sources):
        found[code] = int(status)
    for pattern in (
        r'AccountError\(\s*"(\w+)"',
        r'InvalidPhone\(\s*"(\w+)"',
        r'GateClosed\("(\w+)"\)',
        r'_host_step\(\s*"\w+",\s*\w+,\s*"(\w+)"',
    ):
        for code in re.findall(pattern, sources):
            found.setdefault(code, None)
    from flask_alisms.web.http import STATUS

    for code, status in STATUS.items():
        found[code] = status
    assert len(found) > 15
    for code, status in found.items():
        assert code in openapi.ERRORS, f"error code {code!r} is not in web/openapi.py ERRORS"
        if status is not None:
            assert openapi.ERRORS[code][0] == status, code
    assert set(openapi.ERRORS) == set(found), "ERRORS lists codes nothing raises"


def _check(doc: dict[str, Any], path: str, method: str, answer: Any) -> None:
    allowed = _documented(doc, path, method)
    assert answer.status_code in allowed, (path, answer.status_code)
    if answer.status_code >= 400:
        error = answer.get_json()["error"]
        assert error in allowed[answer.status_code], (path, answer.status_code, error)
        assert answer.get_json()["message"]


def test_answers_of_the_running_api_are_documented(ready_host: Host, emulator: Any) -> None:
    client = ready_host.client()
    doc = client.get("/alisms/api/openapi.json").get_json()
    p = "/alisms/api/"
    token = csrf_token(client)
    cases: list[tuple[str, Any]] = [
        ("send-code", {"phone": PHONE, "purpose": "nope"}),
        ("send-code", {"phone": "12"}),
        ("send-code", {"phone": "+12025550123"}),
        ("send-code", {"phone": PHONE}),
        ("send-code", {"phone": PHONE}),  # resend too soon
        ("register", {"phone": PHONE, "code": "000000", "password": "a good pass 1"}),
        ("register", {"phone": PHONE, "code": "000000", "password": "short"}),
        ("register", {"phone": PHONE, "code": "1", "password": "a good pass 1", "nickname": ["x"]}),
        ("reset-password", {"phone": PHONE, "code": "000000", "password": "a good pass 1"}),
    ]
    for name, payload in cases:
        _check(doc, p + name, "post", api_post(client, name, payload, token=token))
    for name in ("send-code", "register", "reset-password"):
        _check(doc, p + name, "post", client.post(p + name, json={"phone": PHONE}))  # no token
        _check(
            doc,
            p + name,
            "post",
            client.post(
                p + name, data="[]", headers={"X-CSRFToken": token}, content_type="application/json"
            ),
        )
        _check(
            doc,
            p + name,
            "post",
            client.post(
                p + name,
                data=b"x" * 20000,
                headers={"X-CSRFToken": token},
                content_type="application/json",
            ),
        )
    for name in ("csrf-token", "status", "openapi.json"):
        _check(doc, p + name, "get", client.get(p + name))
    emulator.fail_next("isv.AMOUNT_NOT_ENOUGH")
    _check(doc, p + "send-code", "post", api_post(client, "send-code", {"phone": "+8613700137000"}))


def test_csrf_error_names_the_full_path(make_host: Any) -> None:
    host = make_host(ALISMS_URL_PREFIX="/accounts/sms")
    answer = host.app.test_client().post("/accounts/sms/api/send-code", json={"phone": PHONE})
    assert answer.status_code == 400
    assert "GET /accounts/sms/api/csrf-token" in answer.get_json()["message"]


@pytest.mark.parametrize("flow", ["register", "reset-password"])
def test_register_and_reset_answer_with_the_renewed_csrf_token(
    ready_host: Host, emulator: Any, flow: str
) -> None:
    client = ready_host.client()
    if flow == "reset-password":
        with ready_host.app.app_context():
            user = ready_host.User(phone=PHONE, password_hash=generate_password_hash("old pass 12"))
            ready_host.db.session.add(user)
            ready_host.db.session.commit()
    token = csrf_token(client)
    purpose = "register" if flow == "register" else "reset"
    sent = api_post(client, "send-code", {"phone": PHONE, "purpose": purpose}, token=token)
    assert sent.status_code == 200
    payload = {
        "phone": PHONE,
        "code": emulator.last_param("13800138000"),
        "password": "new pass 123",
    }
    answer = api_post(client, flow, payload, token=token)
    assert answer.status_code in (200, 201), answer.get_json()
    fresh = answer.get_json()["csrf_token"]
    assert fresh != token
    stale = api_post(client, "send-code", {"phone": "+8613900139000"}, token=token)
    assert stale.get_json()["error"] == "csrf_failed"
    assert (
        api_post(client, "send-code", {"phone": "+8613900139000"}, token=fresh).status_code == 200
    )
