"""The human check before send-code through the JSON API: modes, the image captcha, single use,
session binding, expiry, consumption on refusal, and the configuration that chooses it."""

from __future__ import annotations

from typing import Any

import pytest
import time_machine

from flask_alisms.exceptions import ConfigurationError, InvalidParameter
from flask_alisms.flows.human import HumanCheck
from flask_alisms.state import get_state
from flask_alisms.testing import DysmsapiEmulator

from .conftest import OTHER_PHONE, PHONE, Host, api_post

THIRD_PHONE = "+8613700137000"


def send(client: Any, phone: str = PHONE, answer: Any = None, **extra: Any) -> Any:
    payload = {"phone": phone, "purpose": "register", **extra}
    if answer is not None:
        payload["human_check"] = answer
    return api_post(client, "send-code", payload)


def nonce_of(challenge: dict[str, Any]) -> str:
    return str(challenge["image_url"].rsplit("/", 1)[-1])


def solve(host: Host, challenge: dict[str, Any]) -> str:
    """What a person reads in the picture (the test asks the server's own derivation)."""
    return str(get_state(host.app).human.check.text_for(nonce_of(challenge)))


def challenge_from(client: Any, phone: str = PHONE) -> dict[str, Any]:
    response = send(client, phone)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "human_check_required"
    return dict(response.get_json()["human_check"])


@pytest.fixture
def always_host(ready_host: Host) -> Host:
    ready_host.set_params(human_check__mode="always")
    return ready_host


# -- modes --------------------------------------------------------------------------------------


def test_off_by_default_sends_without_a_check(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    response = send(ready_host.client())
    assert response.status_code == 200, response.get_json()
    assert len(emulator.messages) == 1


def test_always_asks_then_sends_once_solved(always_host: Host, emulator: DysmsapiEmulator) -> None:
    client = always_host.client()
    response = send(client)
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "human_check_required"
    assert body["reason"] == "missing"
    challenge = body["human_check"]
    assert challenge["kind"] == "image"
    assert challenge["field"] == "human_check"
    assert challenge["expires_in"] == 180
    assert challenge["image_url"].startswith("/alisms/human-check/image/")
    assert emulator.messages == []

    picture = client.get(challenge["image_url"])
    assert picture.status_code == 200
    assert picture.mimetype == "image/png"
    assert picture.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert picture.headers["Cache-Control"] == "no-store"

    answer = solve(always_host, challenge).lower()  # not case sensitive
    response = send(client, answer=f" {answer} ")
    assert response.status_code == 200, response.get_json()
    assert len(emulator.messages) == 1


def test_wrong_answer_refused_with_a_new_challenge(
    always_host: Host, emulator: DysmsapiEmulator
) -> None:
    client = always_host.client()
    first = challenge_from(client)
    right = solve(always_host, first)
    wrong = "A" * 5 if right != "A" * 5 else "B" * 5
    response = send(client, answer=wrong)
    assert response.status_code == 400
    body = response.get_json()
    assert (body["error"], body["reason"]) == ("human_check_failed", "wrong")
    second = body["human_check"]
    assert nonce_of(second) != nonce_of(first)
    # The first challenge is gone: its right answer no longer counts.
    assert send(client, answer=right).status_code == 400
    assert emulator.messages == []


def test_always_asks_even_with_the_hosts_limits_off(
    make_host: Any, emulator: DysmsapiEmulator
) -> None:
    host = make_host(ALISMS_LIMITER_STORAGE_URI="memory://", RATELIMIT_ENABLED=False)
    host.configure_sms()
    host.set_params(human_check__mode="always")
    assert send(host.client()).get_json()["error"] == "human_check_required"


def test_adaptive_asks_once_an_ip_passed_its_share(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    ready_host.set_params(
        human_check__mode="adaptive", human_check__adaptive_share="50", limits__ip_per_hour="4"
    )
    client = ready_host.client()
    status = client.get("/alisms/api/status").get_json()["human_check"]
    assert status == {"mode": "adaptive", "kind": "image", "required": False}
    assert send(client, PHONE).status_code == 200
    assert send(client, OTHER_PHONE).status_code == 200  # 2 of 4 spent: 50 % reached
    # A SPA can tell before sending that this client's next send needs a solved check.
    assert client.get("/alisms/api/status").get_json()["human_check"]["required"] is True
    challenge = challenge_from(client, THIRD_PHONE)
    assert len(emulator.messages) == 2
    # Another IP is below its share: no check for it.
    other = ready_host.app.test_client()
    other.environ_base["REMOTE_ADDR"] = "10.0.0.9"
    assert other.get("/alisms/api/status").get_json()["human_check"]["required"] is False
    assert send(other, "+8613600136000").status_code == 200
    # Asking spent nothing: once solved, the third send is the IP's third of four.
    response = send(client, THIRD_PHONE, answer=solve(ready_host, challenge))
    assert response.status_code == 200, response.get_json()
    assert len(emulator.messages) == 4


def test_adaptive_asks_everybody_once_the_site_passed_its_share(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    ready_host.set_params(
        human_check__mode="adaptive", human_check__adaptive_share="30", limits__global_per_day="10"
    )
    phones = iter(f"+86137001370{n:02d}" for n in range(20))
    for n in range(3):  # from three IPs, each far below its own hourly 20
        client = ready_host.app.test_client()
        client.environ_base["REMOTE_ADDR"] = f"10.0.1.{n}"
        assert send(client, next(phones)).status_code == 200
    fresh = ready_host.app.test_client()
    fresh.environ_base["REMOTE_ADDR"] = "10.0.2.1"
    assert send(fresh, next(phones)).get_json()["error"] == "human_check_required"
    assert len(emulator.messages) == 3


def test_adaptive_below_the_share_never_asks(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    ready_host.set_params(human_check__mode="adaptive", human_check__adaptive_share="100")
    client = ready_host.client()
    for phone in (PHONE, OTHER_PHONE, THIRD_PHONE):
        assert send(client, phone).status_code == 200
    assert len(emulator.messages) == 3


# -- one solved check, one send -----------------------------------------------------------------


def test_a_solved_check_is_single_use(always_host: Host, emulator: DysmsapiEmulator) -> None:
    client = always_host.client()
    answer = solve(always_host, challenge_from(client))
    before = client.get_cookie("session").value  # a replay of the cookie that held it
    assert send(client, answer=answer).status_code == 200
    again = send(client, OTHER_PHONE, answer=answer)
    assert (again.status_code, again.get_json()["reason"]) == (400, "expired")
    client.set_cookie("session", before)
    replay = send(client, OTHER_PHONE, answer=answer)
    assert (replay.status_code, replay.get_json()["reason"]) == (400, "reused")
    assert len(emulator.messages) == 1


def test_a_solved_check_counts_only_in_its_session(
    always_host: Host, emulator: DysmsapiEmulator
) -> None:
    alice, mallory = always_host.client(), always_host.client()
    answer = solve(always_host, challenge_from(alice))
    # Without a challenge of its own, then with one: Alice's answer never counts for Mallory.
    response = send(mallory, answer=answer)
    assert (response.status_code, response.get_json()["reason"]) == (400, "expired")
    response = send(mallory, answer=answer)
    assert (response.status_code, response.get_json()["reason"]) == (400, "wrong")
    # Mallory's tries left Alice's challenge alone: in her session it still counts.
    assert send(alice, answer=answer).status_code == 200
    assert len(emulator.messages) == 1


def test_the_picture_only_for_the_sessions_live_challenge(always_host: Host) -> None:
    alice, mallory = always_host.client(), always_host.client()
    url = challenge_from(alice)["image_url"]
    assert mallory.get(url).status_code == 404
    assert alice.get(url.replace("image/", "image/x")).status_code == 404
    # A few renders, then no more: averaging many drawings of one text helps OCR.
    assert [alice.get(url).status_code for _ in range(4)] == [200, 200, 200, 404]


def test_a_challenge_expires(always_host: Host, emulator: DysmsapiEmulator) -> None:
    client = always_host.client()
    with time_machine.travel(1_900_000_000, tick=True) as clock:
        challenge = challenge_from(client)
        clock.shift(181)
        response = send(client, answer=solve(always_host, challenge))
        assert (response.status_code, response.get_json()["reason"]) == (400, "expired")
        assert client.get(response.get_json()["human_check"]["image_url"]).status_code == 200
        clock.shift(170)  # a fresh one is good for its own 180 s
        answer = solve(always_host, response.get_json()["human_check"])
        assert send(client, answer=answer).status_code == 200
    assert len(emulator.messages) == 1


def test_consumed_even_when_the_send_is_refused(
    always_host: Host, emulator: DysmsapiEmulator
) -> None:
    client = always_host.client()
    assert send(client, answer=solve(always_host, challenge_from(client))).status_code == 200
    answer = solve(always_host, challenge_from(client))
    before = client.get_cookie("session").value
    refused = send(client, answer=answer)  # same number within the resend interval
    assert refused.status_code == 429
    assert send(client, answer=answer).get_json()["reason"] == "expired"
    client.set_cookie("session", before)
    assert send(client, answer=answer).get_json()["reason"] == "reused"
    assert len(emulator.messages) == 1


def test_bad_input_and_closed_gate_spend_no_challenge(
    always_host: Host, emulator: DysmsapiEmulator
) -> None:
    client = always_host.client()
    answer = solve(always_host, challenge_from(client))
    bad = send(client, "12345", answer=answer)
    assert bad.status_code == 400 and bad.get_json()["error"] != "human_check_failed"
    always_host.set_params(server__enable_mobile_register="false")
    closed = send(client, answer=answer)
    assert (closed.status_code, closed.get_json()["error"]) == (403, "registration_disabled")
    always_host.set_params(server__enable_mobile_register="true")
    assert send(client, answer=answer).status_code == 200
    assert len(emulator.messages) == 1


@pytest.mark.parametrize("answer", [123456, ["AB3K9"], {"x": 1}, ""])
def test_an_answer_that_is_not_text_counts_as_missing(always_host: Host, answer: Any) -> None:
    client = always_host.client()
    challenge_from(client)
    body = send(client, answer=answer).get_json()
    assert (body["error"], body["reason"]) == ("human_check_required", "missing")


def test_limiter_down_gives_503_not_a_pass(make_host: Any, emulator: DysmsapiEmulator) -> None:
    host = make_host(ALISMS_LIMITER_STORAGE_URI="redis://127.0.0.1:1/0")
    host.configure_sms()
    host.set_params(human_check__mode="adaptive")
    response = send(host.client())
    assert (response.status_code, response.get_json()["error"]) == (503, "service_unavailable")
    assert emulator.messages == []


# -- configuration and parameters ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"ALISMS_HUMAN_CHECK": "recaptcha"}, "ALISMS_HUMAN_CHECK must be one of"),
        ({"ALISMS_HUMAN_CHECK": "turnstile"}, "needs ALISMS_HUMAN_CHECK_SITE_KEY"),
        (
            {"ALISMS_HUMAN_CHECK": "hcaptcha", "ALISMS_HUMAN_CHECK_SITE_KEY": "site"},
            "needs ALISMS_HUMAN_CHECK_SECRET_KEY",
        ),
        ({"ALISMS_HUMAN_CHECK_VERIFY_URL": "file:///etc/passwd"}, "an http(s) URL"),
        ({"ALISMS_HUMAN_CHECK_TIMEOUT": 0}, "ALISMS_HUMAN_CHECK_TIMEOUT"),
        ({"ALISMS_HUMAN_CHECK_TTL": 5}, "ALISMS_HUMAN_CHECK_TTL"),
        ({"ALISMS_HUMAN_CHECK": "no_such_module_x:Check"}, "cannot be imported"),
        ({"ALISMS_HUMAN_CHECK": "json:JSONDecoder"}, "not a HumanCheck subclass"),
    ],
)
def test_bad_configuration_is_refused(make_host: Any, config: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigurationError, match=words.replace("(", r"\(").replace(")", r"\)")):
        make_host(**config)


def test_mode_parameter_is_checked(host: Host) -> None:
    with pytest.raises(InvalidParameter, match="off, always or adaptive"):
        host.set_params(human_check__mode="sometimes")
    with pytest.raises(InvalidParameter):
        host.set_params(human_check__adaptive_share="0")


class WordCheck(HumanCheck):
    """A host's own check: the answer is a fixed word (a stand-in for a real service)."""

    kind = "word"

    def challenge(self, nonce: str) -> dict[str, Any]:
        return {"question": "Say please"}

    def verify(self, nonce: str, answer: str, client_ip: str) -> bool:
        return answer == "please"


def test_a_hosts_own_check_by_import_path(make_host: Any, emulator: DysmsapiEmulator) -> None:
    host = make_host(ALISMS_HUMAN_CHECK=f"{__name__}:WordCheck")
    host.configure_sms()
    host.set_params(human_check__mode="always")
    client = host.client()
    challenge = challenge_from(client)
    assert challenge["kind"] == "word" and challenge["question"] == "Say please"
    assert send(client, answer="thanks").get_json()["reason"] == "wrong"
    assert send(client, answer="please").status_code == 200
    assert len(emulator.messages) == 1


def test_signals_tell_passes_and_refusals_without_the_answer(
    always_host: Host, emulator: DysmsapiEmulator
) -> None:
    from flask_alisms import signals

    seen: list[tuple[str, dict[str, Any]]] = []

    def passed(app: Any, **extra: Any) -> None:
        seen.append(("passed", extra))

    def refused(app: Any, **extra: Any) -> None:
        seen.append(("refused", extra))

    client = always_host.client()
    with signals.human_check_passed.connected_to(
        passed, always_host.app
    ), signals.human_check_refused.connected_to(refused, always_host.app):
        answer = solve(always_host, challenge_from(client))
        assert send(client, answer=answer).status_code == 200
    ip = {"kind": "image", "client_ip": "127.0.0.1"}
    assert seen == [("refused", {**ip, "reason": "missing"}), ("passed", ip)]
    assert answer not in repr(seen)


def test_one_solved_check_one_send_under_concurrency(
    always_host: Host, emulator: DysmsapiEmulator
) -> None:
    """Eight copies of one session post the same right answer at once: one send goes out."""
    import threading

    from .conftest import csrf_token

    client = always_host.client()
    answer = solve(always_host, challenge_from(client))
    token, cookie = csrf_token(client), client.get_cookie("session").value
    barrier, statuses = threading.Barrier(8), []

    def post(n: int) -> None:
        copy = always_host.app.test_client()
        copy.set_cookie("session", cookie)
        barrier.wait()
        response = copy.post(
            "/alisms/api/send-code",
            json={"phone": f"+86137001370{n:02d}", "human_check": answer},
            headers={"X-CSRFToken": token},
        )
        statuses.append((response.status_code, (response.get_json() or {}).get("reason")))

    threads = [threading.Thread(target=post, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses, key=str) == sorted([(200, None)] + [(400, "reused")] * 7, key=str)
    assert len(emulator.messages) == 1


def test_pillow_loads_with_the_first_picture_only() -> None:
    """Installing the extension costs a host nothing until a captcha is drawn."""
    import subprocess
    import sys

    script = (
        "import sys, flask_alisms, flask_alisms.extension, flask_alisms.web\n"
        "from flask_alisms.flows.human import ImageCaptcha\n"
        "check = ImageCaptcha('key')\n"
        "print('PIL' in sys.modules, 'captcha' in sys.modules)\n"
        "check.render('nonce')\n"
        "print('PIL' in sys.modules, 'captcha' in sys.modules)\n"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split("\n")[:2] == ["False False", "True True"]
