"""The image captcha inline on the register and reset pages, working without JavaScript."""

from __future__ import annotations

import re
from typing import Any

import pytest

from flask_alisms.state import get_state
from flask_alisms.testing import DysmsapiEmulator

from .conftest import OTHER_PHONE, Host, form_token

PAGES = ["/alisms/register", "/alisms/reset-password"]
#: A number each page really sends to: a new one for register, the user's for reset.
SENDS_TO = {"/alisms/register": "13700137000", "/alisms/reset-password": "13900139000"}


def picture_url(html: str) -> str | None:
    match = re.search(r'<img class="human-check-image" src="([^"]+)"', html)
    return match.group(1) if match else None


def answer_for(host: Host, html: str) -> str:
    url = picture_url(html)
    assert url is not None, "no captcha on the page"
    return str(get_state(host.app).human.check.text_for(url.rsplit("/", 1)[-1]))


def send_form(html: str, phone: str, **extra: str) -> dict[str, str]:
    return {
        "csrf_token": form_token(html),
        "country_code": "86",
        "phone": phone,
        "send": "1",
        **extra,
    }


@pytest.fixture
def user_host(ready_host: Host) -> Host:
    """A site with a registered user, so the reset page sends too."""
    with ready_host.app.app_context():
        ready_host.db.session.add(ready_host.User(phone=OTHER_PHONE, password_hash="x"))
        ready_host.db.session.commit()
    return ready_host


@pytest.mark.parametrize("path", PAGES)
def test_off_shows_no_check(user_host: Host, path: str) -> None:
    html = user_host.client().get(path).get_data(as_text=True)
    assert picture_url(html) is None
    assert 'name="human_check"' not in html


@pytest.mark.parametrize("path", PAGES)
def test_always_shows_the_picture_and_sends_once_solved(
    user_host: Host, emulator: DysmsapiEmulator, path: str
) -> None:
    user_host.set_params(human_check__mode="always")
    phone = SENDS_TO[path]
    client = user_host.client()
    html = client.get(path).get_data(as_text=True)
    url = picture_url(html)
    assert url is not None
    assert 'name="human_check"' in html
    assert "Type the characters in the picture" in html
    picture = client.get(url)
    assert (picture.status_code, picture.mimetype) == (200, "image/png")

    # Without an answer: 400, the reason, a new picture, the number kept, nothing sent.
    response = client.post(path, data=send_form(html, phone))
    assert response.status_code == 400
    refused = response.get_data(as_text=True)
    assert "Please complete the check below" in refused
    assert picture_url(refused) not in (None, url)
    assert f'value="{phone}"' in refused
    assert emulator.messages == []

    # A wrong answer: the same, with its own reason.
    response = client.post(path, data=send_form(refused, phone, human_check="ZZZZ"))
    assert response.status_code == 400
    wrong = response.get_data(as_text=True)
    assert "That was not right" in wrong

    answer = answer_for(user_host, wrong)
    response = client.post(path, data=send_form(wrong, phone, human_check=answer))
    assert response.status_code == 200, response.get_data(as_text=True)
    sent = response.get_data(as_text=True)
    assert "We sent a code by SMS" in sent
    assert picture_url(sent) is not None  # the next send needs a new one
    assert len(emulator.messages) == 1
    # The answer that worked is spent.
    response = client.post(path, data=send_form(sent, phone, human_check=answer))
    assert response.status_code == 400
    assert len(emulator.messages) == 1


def test_adaptive_page_shows_the_picture_only_under_attack(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    ready_host.set_params(
        human_check__mode="adaptive", human_check__adaptive_share="50", limits__ip_per_hour="2"
    )
    client = ready_host.client()
    html = client.get("/alisms/register").get_data(as_text=True)
    assert picture_url(html) is None
    response = client.post("/alisms/register", data=send_form(html, "13800138000"))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert picture_url(html) is not None  # 1 of 2 sends spent: half the IP's budget
    response = client.post("/alisms/register", data=send_form(html, "13700137000"))
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    response = client.post(
        "/alisms/register",
        data=send_form(html, "13700137000", human_check=answer_for(ready_host, html)),
    )
    assert response.status_code == 200
    assert len(emulator.messages) == 2


def test_final_submit_needs_no_check(user_host: Host, emulator: DysmsapiEmulator) -> None:
    """Only "Send code" is guarded: the code itself is the proof at the final step."""
    client = user_host.client()
    html = client.get("/alisms/register").get_data(as_text=True)
    client.post("/alisms/register", data=send_form(html, "13700137000"))
    code = emulator.last_param("13700137000")
    user_host.set_params(human_check__mode="always")
    html = client.get("/alisms/register").get_data(as_text=True)
    data: dict[str, Any] = {
        "csrf_token": form_token(html),
        "country_code": "86",
        "phone": "13700137000",
        "code": code,
        "password": "correct horse 42",
        "submit": "1",
    }
    response = client.post("/alisms/register", data=data)
    assert response.status_code == 302, response.get_data(as_text=True)


@pytest.mark.parametrize(("header", "locale"), [("zh-CN", "zh_Hans"), ("zh-TW", "zh_Hant")])
@pytest.mark.parametrize("path", PAGES)
def test_the_check_leaves_no_english(user_host: Host, path: str, header: str, locale: str) -> None:
    from .test_i18n_pages import check_page

    user_host.set_params(human_check__mode="always")
    client = user_host.client()
    headers = {"Accept-Language": header}
    html = client.get(path, headers=headers).get_data(as_text=True)
    assert picture_url(html) is not None
    check_page(html, locale, f"{path} with the check")
    for answer in ("", "ZZZZ"):  # missing, then wrong
        response = client.post(
            path, data=send_form(html, SENDS_TO[path], human_check=answer), headers=headers
        )
        html = response.get_data(as_text=True)
        check_page(html, locale, f"{path} refused {answer!r}")


def test_page_in_chinese(user_host: Host) -> None:
    user_host.set_params(human_check__mode="always")
    client = user_host.client()
    headers = {"Accept-Language": "zh-TW"}
    html = client.get("/alisms/register", headers=headers).get_data(as_text=True)
    assert "請輸入圖片中的字元" in html
    response = client.post(
        "/alisms/register", data=send_form(html, "13900139000"), headers=headers
    )
    assert "請先完成下方的驗證" in response.get_data(as_text=True)


def test_limiter_down_keeps_the_page_and_refuses_the_send(
    make_host: Any, emulator: DysmsapiEmulator
) -> None:
    host = make_host(ALISMS_LIMITER_STORAGE_URI="redis://127.0.0.1:1/0")
    host.configure_sms()
    host.set_params(human_check__mode="adaptive")
    client = host.client()
    page = client.get("/alisms/register")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    response = client.post("/alisms/register", data=send_form(html, "13700137000"))
    assert response.status_code == 503
    assert emulator.messages == []
