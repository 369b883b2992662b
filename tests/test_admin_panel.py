"""The admin panel guides: login redirect, error summary, sections, value sources, wording."""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_login import LoginManager, UserMixin, login_user

from flask_alisms import AliSMS
from flask_alisms.exceptions import ConfigurationError

from .conftest import Host, form_token
from .test_parameters import _panel_form

PANEL = "/alisms/admin/"


class _Member(UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


def _flask_login_host(make_host: Any, **config: Any) -> Host:
    """A host that signs people in with Flask-Login; "root" is its admin."""
    host: Host = make_host(**config)
    manager = LoginManager(host.app)
    manager.login_view = "sign_in"
    manager.user_loader(_Member)
    from flask_login import current_user

    host.alisms.admin_loader(
        lambda: (
            current_user.id if current_user.is_authenticated and current_user.id == "root" else None
        )
    )

    @host.app.get("/sign-in")
    def sign_in() -> str:
        return "login page"

    @host.app.get("/as/<name>")
    def sign_in_as(name: str) -> str:
        login_user(_Member(name))
        return "ok"

    return host


def test_anonymous_visitors_go_to_flask_logins_login_view(make_host: Any) -> None:
    host = _flask_login_host(make_host)
    client = host.app.test_client()
    for path in (PANEL, "/alisms/admin/log?days=30", "/alisms/admin/test-sms"):
        answer = client.get(path)
        assert answer.status_code == 302, path
        assert answer.location.startswith("/sign-in?next=/alisms/admin/")
    assert (
        client.get("/alisms/admin/log?days=30").location
        == "/sign-in?next=/alisms/admin/log?days%3D30"
    )
    client.get("/as/mallory")
    assert client.get(PANEL).status_code == 403  # signed in, not an admin
    client.get("/as/root")
    assert client.get(PANEL).status_code == 200


def test_alisms_login_view_wins_and_may_be_a_path(make_host: Any) -> None:
    host = _flask_login_host(make_host, ALISMS_LOGIN_VIEW="/accounts/login?from=panel")
    answer = host.app.test_client().get(PANEL)
    assert answer.location == "/accounts/login?from=panel&next=%2Falisms%2Fadmin%2F"


def test_without_a_login_page_or_a_way_to_tell_the_panel_answers_403(host: Host) -> None:
    assert host.client().get(PANEL).status_code == 403
    host.app.config["ALISMS_LOGIN_VIEW"] = "no_such_endpoint"
    assert host.client().get(PANEL).status_code == 403  # nobody says who is signed in


def test_signed_in_loader_without_flask_login(make_host: Any) -> None:
    host = make_host(ALISMS_LOGIN_VIEW="whoami")
    host.alisms.signed_in_loader(lambda: False)
    assert host.client().get(PANEL).location == "/whoami?next=/alisms/admin/"
    host.alisms.signed_in_loader(lambda: True)
    assert host.client().get(PANEL).status_code == 403


@pytest.mark.parametrize("value", ["", " login", "//evil.com/login", "https://evil.com/", 3])
def test_bad_login_view_is_refused_at_init(value: Any) -> None:
    app = Flask("bad")
    app.config.update(SECRET_KEY="k", SQLALCHEMY_DATABASE_URI="sqlite://", ALISMS_LOGIN_VIEW=value)
    from flask_sqlalchemy import SQLAlchemy

    with pytest.raises(ConfigurationError, match="ALISMS_LOGIN_VIEW"):
        AliSMS(app, db=SQLAlchemy(app))


def test_error_summary_links_to_each_field_at_the_top(host: Host) -> None:
    client = host.client(admin="root")
    data = _panel_form(
        client.get(PANEL).get_data(as_text=True),
        **{"sms.code_length": "9", "limits.phone_per_day": "-1"},
    )
    answer = client.post(PANEL, data=data)
    assert answer.status_code == 400
    page = answer.get_data(as_text=True)
    summary = page.index('class="notice notice-error error-summary"')
    assert summary < page.index('class="status-grid"')  # before everything else
    assert summary < page.index('href="#sms__code_length"') < page.index('id="sms__code_length"')
    assert 'href="#limits__phone_per_day"' in page
    sections = re.findall(r'<details class="param-section" id="section-(\w+)"( open)?>', page)
    assert dict(sections) == {
        "aliyun": " open",  # four values missing
        "registration": " open",  # switches off
        "codes": " open",  # the error
        "limits": " open",  # the error
        "phones": "",
        "human_check": "",
        "budget": "",
        "alerts": "",
    }


def test_complete_sections_start_closed(ready_host: Host) -> None:
    page = ready_host.client(admin="root").get(PANEL).get_data(as_text=True)
    assert re.findall(r'<details class="param-section"[^>]*>', page)
    assert '<details class="param-section" id="section-aliyun">' in page
    assert " open>" not in page


def test_each_value_says_where_it_comes_from_and_how_to_change_it(make_host: Any) -> None:
    host = make_host(
        ALISMS_PARAMS={"phone.allowed_country_codes": "86,852"},
        ALISMS_PARAM_DEFAULTS={"server.allow_user_register": True},
    )
    host.set_params(sms__code_ttl="120")
    page = host.client(admin="root").get(PANEL).get_data(as_text=True)

    def meta(field: str) -> str:
        return page.split(f'id="{field}-source"', 1)[1].split("</p>", 1)[0]

    assert "edit ALISMS_PARAMS in the app config" in meta("phone__allowed_country_codes")
    assert "ALISMS_PARAM_DEFAULTS" in meta("server__allow_user_register")
    assert "a change of the app config changes it" in meta("server__allow_user_register")
    assert "remove it to go back to the default" in meta("sms__code_ttl")
    assert "Built-in default" in meta("sms__code_length")
    assert 'name="clear__sms__code_ttl"' in page
    assert 'name="pin__server__allow_user_register"' in page
    assert 'name="pin__phone__allowed_country_codes"' not in page


def test_saving_a_default_is_explicit(make_host: Any) -> None:
    host = make_host(ALISMS_PARAM_DEFAULTS={"server.allow_user_register": True})
    client = host.client(admin="root")
    model = host.models.Parameter
    stored = lambda: dict(host.query(sa.select(model.key, model.value)))  # noqa: E731

    # Choosing the value a default already gives: nothing stored, and the page says why.
    data = _panel_form(client.get(PANEL).get_data(as_text=True), server__allow_user_register="true")
    page = client.post(PANEL, data=data, follow_redirects=True).get_data(as_text=True)
    assert "every value sent is already in effect" in page
    assert "Save this value here" in page
    assert stored() == {}

    data = _panel_form(page, server__allow_user_register="true")
    data["pin__server__allow_user_register"] = "y"
    page = client.post(PANEL, data=data, follow_redirects=True).get_data(as_text=True)
    assert "Saved: server.allow_user_register." in page
    assert stored() == {"server.allow_user_register": "true"}

    data = _panel_form(page)
    data["clear__server__allow_user_register"] = "y"
    page = client.post(PANEL, data=data, follow_redirects=True).get_data(as_text=True)
    assert "Saved: server.allow_user_register." in page
    assert stored() == {}
    with host.app.app_context():
        assert host.alisms.params.values().allow_user_register is True  # the default again


def test_send_failure_categories_are_in_words(ready_host: Host, emulator: Any) -> None:
    client = ready_host.client(admin="root")
    emulator.fail_next("isv.AMOUNT_NOT_ENOUGH")
    page = client.get("/alisms/admin/test-sms").get_data(as_text=True)
    answer = client.post(
        "/alisms/admin/test-sms",
        data={
            "csrf_token": form_token(page),
            "country_code": "86",
            "phone": "13800138000",
            "send": "1",
        },
    )
    assert answer.status_code == 502
    text = answer.get_data(as_text=True)
    assert "Account balance or quota" in text
    assert ">balance<" not in text
    log = client.get("/alisms/admin/log").get_data(as_text=True)
    assert "Account balance or quota" in log
    chinese = client.get("/alisms/admin/log", headers={"Accept-Language": "zh-CN"})
    assert "账户余额或额度" in chinese.get_data(as_text=True)


def test_every_parameter_belongs_to_a_section_of_the_panel() -> None:
    """GROUPS lists the panel's sections; a parameter naming another group would end up in a
    catch-all "Other settings" section: give it one of these instead."""
    from flask_alisms.parameters import GROUPS, PARAMETERS

    assert list(GROUPS) == [
        "aliyun", "registration", "codes", "limits", "phones", "human_check", "budget", "alerts"
    ]
    strays = {p.key: p.group for p in PARAMETERS.values() if p.group not in GROUPS}
    assert not strays, f"parameters outside GROUPS: {strays}"


def test_a_parameter_of_a_few_words_is_a_list_of_them(host: Host) -> None:
    client = host.client(admin="root")
    page = client.get(PANEL).get_data(as_text=True)
    mode = page.split('name="human_check__mode"', 1)[1].split("</select>", 1)[0]
    assert re.findall(r'<option[^>]*value="([^"]*)"', mode) == ["off", "always", "adaptive"]
    webhook = page.split('name="alerts__webhook_format"', 1)[1].split("</select>", 1)[0]
    assert re.findall(r'<option[^>]*value="([^"]*)"', webhook) == [
        "", "generic", "dingtalk", "wecom"
    ]  # fmt: skip
    assert "(not set)" in webhook
    answer = client.post(PANEL, data=_panel_form(page, human_check__mode="sometimes"))
    assert answer.status_code == 400
    assert "must be off, always or adaptive" in answer.get_data(as_text=True)
    saved = client.post(PANEL, data=_panel_form(page, human_check__mode="adaptive"))
    assert saved.status_code == 302
    with host.app.app_context():
        assert host.alisms.params.values().mode == "adaptive"
