"""The parameter store through the panel and the CLI: typing, secrecy, audit, caching."""

from __future__ import annotations

import logging
import multiprocessing
import time
from typing import Any

import pytest
import sqlalchemy as sa

from .conftest import KEY_ID, KEY_SECRET, SIGN, TEMPLATE, Host, form_token

PANEL = "/alisms/admin/"


def _panel_form(html: str, **fields: str) -> dict[str, str]:
    """What a browser would post: the current values plus the changed ones."""
    import re

    data = {}
    for tag in re.findall(r"<input[^>]*>", html):
        found = re.search(r'name="([^"]+)"[^>]*value="([^"]*)"', tag)
        if found is None or ('type="checkbox"' in tag and " checked" not in tag):
            continue  # a browser posts a checkbox only when it is ticked
        data[found.group(1)] = found.group(2)
    for name in re.findall(r'<select[^>]*name="([^"]+)"', html):
        block = html.split(f'name="{name}"', 1)[1].split("</select>", 1)[0]
        chosen = re.search(r'<option selected value="([^"]*)"', block) or re.search(
            r'<option value="([^"]*)" selected', block
        )
        data[name] = chosen.group(1) if chosen else "false"
    data.pop("clear__aliyun__sms__access_key_secret", None)
    data["csrf_token"] = form_token(html)
    data.update({key.replace(".", "__"): value for key, value in fields.items()})
    return data


def _columns(text: str) -> int:
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _stored(host: Host) -> dict[str, str]:
    model = host.models.Parameter
    return dict(host.query(sa.select(model.key, model.value)))


def test_non_admin_gets_403_everywhere_in_the_panel(host: Host) -> None:
    for client in (host.client(), host.client(admin="mallory")):
        for path in (PANEL, "/alisms/admin/test-sms", "/alisms/admin/log"):
            assert client.get(path).status_code == 403
        assert client.post(PANEL, data={"x": "1"}).status_code == 403


def test_without_an_admin_loader_the_panel_refuses_everyone(make_host: Any) -> None:
    host = make_host()
    host.alisms.callbacks.admin_loader = None
    assert host.client(admin="root").get(PANEL).status_code == 403


def test_checklist_lists_what_is_missing(host: Host) -> None:
    page = host.client(admin="root").get(PANEL)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for key in (
        "aliyun.sms.sign_name",
        "aliyun.sms.sms_code_template_code",
        "aliyun.sms.access_key_id",
        "aliyun.sms.access_key_secret",
    ):
        assert key in html
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["X-Frame-Options"] == "DENY"


def test_admin_sets_every_parameter_in_the_panel(host: Host) -> None:
    client = host.client(admin="root")
    html = client.get(PANEL).get_data(as_text=True)
    data = _panel_form(
        html,
        **{
            "aliyun.sms.sign_name": SIGN,
            "aliyun.sms.sms_code_template_code": TEMPLATE,
            "aliyun.sms.access_key_id": KEY_ID,
            "aliyun.sms.access_key_secret": KEY_SECRET,
            "server.allow_user_register": "True",
            "server.enable_mobile_register": "TRUE",
            "sms.code_length": "4",
            "phone.allowed_country_codes": "86, +852",
        },
    )
    response = client.post(PANEL, data=data)
    assert response.status_code == 302, response.get_data(as_text=True)
    stored = _stored(host)
    assert stored["server.allow_user_register"] == "true"
    assert stored["server.enable_mobile_register"] == "true"
    assert stored["sms.code_length"] == "4"
    assert stored["phone.allowed_country_codes"] == "86,852"
    page = client.get(PANEL).get_data(as_text=True)
    assert "LTAI****0001" in page
    assert KEY_ID not in page
    assert KEY_SECRET not in page
    with host.app.app_context():
        assert host.alisms.mobile_registration_open() is True


def test_secret_is_encrypted_at_rest_and_never_shown(host: Host, log_records: Any) -> None:
    host.configure_sms()
    stored = _stored(host)
    assert stored["aliyun.sms.access_key_secret"] != KEY_SECRET
    assert KEY_SECRET not in stored["aliyun.sms.access_key_secret"]
    assert stored["aliyun.sms.access_key_secret"].startswith("gAAAA")  # a Fernet token
    client = host.client(admin="root")
    for path in (PANEL, "/alisms/admin/test-sms", "/alisms/admin/log"):
        assert KEY_SECRET not in client.get(path).get_data(as_text=True)
    changes = host.models.ParameterChange
    values = [v for (v,) in host.query(sa.select(changes.value))]
    assert KEY_SECRET not in values and KEY_ID not in values
    assert all(KEY_SECRET not in record.getMessage() for record in log_records.records)
    with host.app.app_context():
        assert host.alisms.params.get("aliyun.sms.access_key_secret") == KEY_SECRET


def test_blank_secret_field_keeps_the_secret_and_checkbox_clears_it(host: Host) -> None:
    host.configure_sms(open_registration=False)
    client = host.client(admin="root")
    data = _panel_form(client.get(PANEL).get_data(as_text=True))
    assert data.get("aliyun__sms__access_key_secret", "") == ""
    assert client.post(PANEL, data=data).status_code == 302
    with host.app.app_context():
        assert host.alisms.params.get("aliyun.sms.access_key_secret") == KEY_SECRET
    data = _panel_form(client.get(PANEL).get_data(as_text=True))
    data["clear__aliyun__sms__access_key_secret"] = "y"
    assert client.post(PANEL, data=data).status_code == 302
    with host.app.app_context():
        assert host.alisms.params.get("aliyun.sms.access_key_secret") == ""


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("server.allow_user_register", "yes-ish", "true or false"),
        ("sms.code_length", "9", "at most 8"),
        ("sms.code_length", "six", "whole number"),
        ("sms.code_ttl", "3600", "at most 600"),
        ("aliyun.sms.sms_code_template_code", "TPL-1", "SMS_154950909"),
        ("phone.allowed_country_codes", "86,999", "not a country calling code"),
        ("aliyun.sms.access_key_id", "has space", "letters and digits"),
    ],
)
def test_invalid_value_is_a_field_error_and_changes_nothing(
    host: Host, key: str, value: str, error: str
) -> None:
    client = host.client(admin="root")
    data = _panel_form(
        client.get(PANEL).get_data(as_text=True),
        **{key: value, "aliyun.sms.sign_name": "ShouldNotBeSaved"},
    )
    response = client.post(PANEL, data=data)
    assert response.status_code == 400
    assert error in response.get_data(as_text=True)
    assert _stored(host) == {}
    assert host.count(host.models.ParameterChange) == 0


def test_mobile_switch_cannot_go_on_while_aliyun_is_incomplete(host: Host) -> None:
    client = host.client(admin="root")
    data = _panel_form(
        client.get(PANEL).get_data(as_text=True),
        **{
            "aliyun.sms.sign_name": SIGN,
            "server.allow_user_register": "true",
            "server.enable_mobile_register": "true",
        },
    )
    response = client.post(PANEL, data=data)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "cannot be switched on while these are empty" in html
    assert "aliyun.sms.access_key_secret" in html
    assert _stored(host) == {}


def test_csrf_is_required_in_the_panel(host: Host) -> None:
    client = host.client(admin="root")
    data = _panel_form(client.get(PANEL).get_data(as_text=True), **{"aliyun.sms.sign_name": "X"})
    data.pop("csrf_token")
    assert client.post(PANEL, data=data).status_code == 400
    data["csrf_token"] = "forged"
    assert client.post(PANEL, data=data).status_code == 400
    assert _stored(host) == {}


def test_changes_are_audited_with_who_and_which_key(host: Host) -> None:
    client = host.client(admin="root")
    data = _panel_form(
        client.get(PANEL).get_data(as_text=True),
        **{"aliyun.sms.sign_name": SIGN, "aliyun.sms.access_key_secret": KEY_SECRET},
    )
    assert client.post(PANEL, data=data).status_code == 302
    change = host.models.ParameterChange
    rows = host.query(sa.select(change.key, change.action, change.value, change.actor))
    assert sorted(rows) == sorted(
        [
            ("aliyun.sms.sign_name", "set", SIGN, "root"),
            ("aliyun.sms.access_key_secret", "set", None, "root"),
        ]
    )
    html = client.get(PANEL).get_data(as_text=True)
    assert "aliyun.sms.sign_name" in html and "root" in html


def test_config_override_wins_and_is_read_only(make_host: Any) -> None:
    host = make_host(ALISMS_PARAMS={"aliyun.sms.sign_name": "FromConfig"})
    with host.app.app_context():
        assert host.alisms.params.get("aliyun.sms.sign_name") == "FromConfig"
        from flask_alisms.exceptions import InvalidParameter

        with pytest.raises(InvalidParameter, match="ALISMS_PARAMS"):
            host.alisms.params.update({"aliyun.sms.sign_name": "Other"}, actor="x")
    html = host.client(admin="root").get(PANEL).get_data(as_text=True)
    assert "FromConfig" in html and "config" in html


def test_cli_params_show_set_unset(host: Host) -> None:
    runner = host.app.test_cli_runner()
    result = runner.invoke(args=["alisms", "params", "set", "aliyun.sms.sign_name", SIGN])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        args=["alisms", "params", "set", "aliyun.sms.access_key_secret", KEY_SECRET]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["alisms", "params", "set", "aliyun.sms.access_key_id", KEY_ID])
    assert result.exit_code == 0
    shown = runner.invoke(args=["alisms", "params", "show"])
    assert shown.exit_code == 0
    assert SIGN in shown.output and "database" in shown.output
    # Aligned columns: the source starts in the same terminal column on every line, even
    # after a Chinese signature name (two columns per character).
    lines = shown.output.splitlines()
    assert lines[0].split() == ["KEY", "VALUE", "SOURCE"]
    starts = {
        _columns(line[: line.rindex(" ") + 1]) for line in lines if line.strip()
    }
    assert len(starts) == 1, shown.output
    assert KEY_SECRET not in shown.output and KEY_ID not in shown.output
    assert "LTAI****0001" in shown.output
    bad = runner.invoke(args=["alisms", "params", "set", "server.allow_user_register", "yes-ish"])
    assert bad.exit_code != 0 and "true or false" in bad.output
    ok = runner.invoke(args=["alisms", "params", "set", "server.allow_user_register", "True"])
    assert ok.exit_code == 0
    assert _stored(host)["server.allow_user_register"] == "true"
    unknown = runner.invoke(args=["alisms", "params", "set", "no.such", "1"])
    assert unknown.exit_code != 0 and "unknown parameter" in unknown.output
    removed = runner.invoke(args=["alisms", "params", "unset", "aliyun.sms.sign_name"])
    assert removed.exit_code == 0
    assert "aliyun.sms.sign_name" not in _stored(host)


def test_cli_prompts_for_a_secret_without_echo(host: Host) -> None:
    runner = host.app.test_cli_runner()
    result = runner.invoke(
        args=["alisms", "params", "set", "aliyun.sms.access_key_secret"], input=KEY_SECRET + "\n"
    )
    assert result.exit_code == 0, result.output
    assert KEY_SECRET not in result.output
    with host.app.app_context():
        assert host.alisms.params.get("aliyun.sms.access_key_secret") == KEY_SECRET


def test_cli_check_exit_code_follows_readiness(host: Host) -> None:
    runner = host.app.test_cli_runner()
    result = runner.invoke(args=["alisms", "check"])
    assert result.exit_code == 1
    assert "missing aliyun.sms.access_key_secret" in result.output
    host.configure_sms()
    result = runner.invoke(args=["alisms", "check"])
    assert result.exit_code == 0, result.output
    assert "Ready" in result.output


def _write_from_another_process(uri: str, secret_key: str) -> None:
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy

    from flask_alisms import AliSMS

    app = Flask("other_process")
    app.config.update(SECRET_KEY=secret_key, SQLALCHEMY_DATABASE_URI=uri)
    db = SQLAlchemy(app)
    alisms = AliSMS(app, db=db)
    with app.app_context():
        alisms.params.update({"sms.code_ttl": "120"}, actor="other")


def test_cache_sees_another_process_change_within_the_bound(make_host: Any) -> None:
    host = make_host(ALISMS_PARAMS_CACHE_SECONDS=0.5)
    with host.app.app_context():
        params = host.alisms.params
        assert params.get("sms.code_ttl") == 300
        uri = host.app.config["SQLALCHEMY_DATABASE_URI"]
        process = multiprocessing.get_context("spawn").Process(
            target=_write_from_another_process, args=(uri, host.app.config["SECRET_KEY"])
        )
        process.start()
        process.join(60)
        assert process.exitcode == 0
        # Still cached: no database read on this call ...
        changed_at = time.monotonic()
        values = {params.get("sms.code_ttl")}
        # ... and seen once the documented bound has passed.
        while time.monotonic() - changed_at < 2.0 and 120 not in values:
            time.sleep(0.05)
            values.add(params.get("sms.code_ttl"))
        assert 120 in values
        assert time.monotonic() - changed_at <= 0.5 + 0.5


def test_warm_cache_reads_do_not_query_the_database(make_host: Any) -> None:
    host = make_host(ALISMS_PARAMS_CACHE_SECONDS=60)
    statements: list[str] = []
    with host.app.app_context():
        engine = host.db.engine
        sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        host.alisms.params.get("sms.code_ttl")
        loaded = len(statements)
        for _ in range(100):
            host.alisms.params.get("sms.code_ttl")
            host.alisms.params.get("aliyun.sms.sign_name")
        assert loaded >= 1
        assert len(statements) == loaded


def test_logs_never_contain_the_secret_when_set_via_cli(host: Host, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    runner = host.app.test_cli_runner()
    runner.invoke(args=["alisms", "params", "set", "aliyun.sms.access_key_secret", KEY_SECRET])
    assert caplog.records
    assert all(KEY_SECRET not in r.getMessage() for r in caplog.records)


def test_panel_saves_while_a_switch_is_fixed_by_config(make_host: Any) -> None:
    host = make_host(ALISMS_PARAMS={"server.allow_user_register": True, "sms.code_ttl": 120})
    client = host.client(admin="root")
    data = _panel_form(client.get(PANEL).get_data(as_text=True), **{"aliyun.sms.sign_name": SIGN})
    data.pop("server__allow_user_register", None)  # disabled: a browser does not post it
    data.pop("sms__code_ttl", None)
    response = client.post(PANEL, data=data)
    assert response.status_code == 302, response.get_data(as_text=True)
    assert _stored(host) == {"aliyun.sms.sign_name": SIGN}
