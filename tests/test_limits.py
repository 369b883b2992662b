"""Each send limit lets exactly its count through, then answers 429 with Retry-After."""

from __future__ import annotations

from typing import Any

import pytest
import time_machine

from flask_alisms.sms import MemorySender

from .conftest import LIMITER_URI, Host, api_post

PHONES = [f"+861380013{n:04d}" for n in range(40)]


@pytest.fixture
def sms(make_host: Any) -> tuple[Host, MemorySender]:
    sender = MemorySender()
    host = make_host(alisms_options={"sender": sender})
    host.configure_sms()
    return host, sender


def _send(client: Any, phone: str) -> Any:
    return api_post(client, "send-code", {"phone": phone})


def _assert_throttled(response: Any) -> int:
    assert response.status_code == 429, response.get_json()
    assert response.get_json()["error"] == "rate_limited"
    retry_after = int(response.headers["Retry-After"])
    assert retry_after >= 1
    return retry_after


def test_resend_interval(sms: tuple[Host, MemorySender]) -> None:
    host, sender = sms
    client = host.client()
    with time_machine.travel(1_900_000_000, tick=False) as clock:
        assert _send(client, PHONES[0]).status_code == 200
        assert 55 <= _assert_throttled(_send(client, PHONES[0])) <= 60
        clock.shift(59)
        _assert_throttled(_send(client, PHONES[0]))
        clock.shift(2)
        assert _send(client, PHONES[0]).status_code == 200
    assert len(sender.outbox) == 2


def test_per_phone_hour_and_day(sms: tuple[Host, MemorySender]) -> None:
    host, sender = sms
    host.set_params(
        limits__phone_per_hour="3", limits__phone_per_day="4", limits__resend_interval="30"
    )
    client = host.client()
    with time_machine.travel(1_900_000_000, tick=False) as clock:
        for _ in range(3):
            assert _send(client, PHONES[1]).status_code == 200
            clock.shift(31)
        assert _assert_throttled(_send(client, PHONES[1])) > 30
        clock.shift(3600)
        assert _send(client, PHONES[1]).status_code == 200  # the 4th of the day
        clock.shift(3600)
        retry = _assert_throttled(_send(client, PHONES[1]))
        assert retry > 3600
    assert len(sender.outbox) == 4


def test_per_ip_limit_spans_numbers(sms: tuple[Host, MemorySender]) -> None:
    host, sender = sms
    host.set_params(limits__ip_per_hour="5")
    client = host.client()
    for phone in PHONES[:5]:
        assert _send(client, phone).status_code == 200
    _assert_throttled(_send(client, PHONES[5]))
    other_ip = host.app.test_client()
    response = other_ip.post(
        "/alisms/api/send-code",
        json={"phone": PHONES[6]},
        headers={"X-CSRFToken": other_ip.get("/alisms/api/csrf-token").get_json()["csrf_token"]},
        environ_base={"REMOTE_ADDR": "10.9.8.7"},
    )
    assert response.status_code == 200
    assert len(sender.outbox) == 6


def test_global_daily_budget(sms: tuple[Host, MemorySender]) -> None:
    host, sender = sms
    host.set_params(limits__global_per_day="3")
    for index, phone in enumerate(PHONES[:3]):
        client = host.app.test_client()
        token = client.get("/alisms/api/csrf-token").get_json()["csrf_token"]
        response = client.post(
            "/alisms/api/send-code",
            json={"phone": phone},
            headers={"X-CSRFToken": token},
            environ_base={"REMOTE_ADDR": f"10.0.0.{index}"},
        )
        assert response.status_code == 200
    _assert_throttled(_send(host.client(), PHONES[10]))
    assert len(sender.outbox) == 3


def test_invalid_input_spends_no_quota(sms: tuple[Host, MemorySender]) -> None:
    host, _sender = sms
    host.set_params(limits__ip_per_hour="2")
    client = host.client()
    for _ in range(5):
        assert _send(client, "not a phone").status_code == 400
    assert _send(client, PHONES[0]).status_code == 200
    assert _send(client, PHONES[1]).status_code == 200


def test_failed_send_spends_quota_once_and_keeps_no_code(
    sms: tuple[Host, MemorySender],
) -> None:
    host, sender = sms
    sender.fail_with("isv.BUSINESS_LIMIT_CONTROL")
    client = host.client()
    assert _send(client, PHONES[2]).status_code == 502
    assert host.count(host.models.VerificationCode) == 0
    _assert_throttled(_send(client, PHONES[2]))


def test_verification_attempts_per_hour(sms: tuple[Host, MemorySender]) -> None:
    host, sender = sms
    host.set_params(limits__verify_per_hour="3", sms__max_attempts="10")
    client = host.client()
    assert _send(client, PHONES[3]).status_code == 200
    code = sender.last_param(PHONES[3][3:])
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(3):
        response = api_post(
            client, "register", {"phone": PHONES[3], "code": wrong, "password": "good pass 1"}
        )
        assert response.status_code == 400
    response = api_post(
        client, "register", {"phone": PHONES[3], "code": code, "password": "good pass 1"}
    )
    _assert_throttled(response)


def test_limiter_storage_down_fails_closed(make_host: Any) -> None:
    sender = MemorySender()
    host = make_host(
        alisms_options={"sender": sender}, ALISMS_LIMITER_STORAGE_URI="redis://127.0.0.1:1/0"
    )
    host.configure_sms()
    response = _send(host.client(), PHONES[4])
    assert response.status_code == 503
    assert response.get_json()["error"] == "service_unavailable"
    assert sender.outbox == []


def test_limiter_storage_down_can_fail_open(make_host: Any) -> None:
    sender = MemorySender()
    host = make_host(
        alisms_options={"sender": sender},
        ALISMS_LIMITER_STORAGE_URI="redis://127.0.0.1:1/0",
        ALISMS_LIMITS_FAIL_OPEN=True,
    )
    host.configure_sms()
    assert _send(host.client(), PHONES[4]).status_code == 200
    assert len(sender.outbox) == 1


def test_refused_resends_do_not_eat_the_ip_budget(sms: tuple[Host, MemorySender]) -> None:
    host, sender = sms
    host.set_params(limits__ip_per_hour="3")
    client = host.client()
    assert _send(client, PHONES[20]).status_code == 200
    for _ in range(10):  # an impatient user pressing "send" again and again
        _assert_throttled(_send(client, PHONES[20]))
    assert _send(client, PHONES[21]).status_code == 200
    assert _send(client, PHONES[22]).status_code == 200
    _assert_throttled(_send(client, PHONES[23]))  # the IP budget of 3 is now spent
    assert len(sender.outbox) == 3


def test_a_refusal_spends_no_other_limit(sms: tuple[Host, MemorySender]) -> None:
    """All or nothing: the global budget refusing a send leaves its phone and IP unspent."""
    host, sender = sms
    host.set_params(limits__ip_per_hour="2", limits__global_per_day="1")
    client = host.client()
    assert _send(client, PHONES[30]).status_code == 200
    _assert_throttled(_send(client, PHONES[31]))  # the global budget of 1 is spent
    host.set_params(limits__global_per_day="100")
    # Neither PHONES[31]'s resend interval nor a second unit of the IP budget was taken.
    assert _send(client, PHONES[31]).status_code == 200
    _assert_throttled(_send(client, PHONES[32]))  # the IP budget of 2: both real sends
    assert [m.phone for m in sender.outbox] == ["13800130030", "13800130031"]


@pytest.mark.skipif(
    not (LIMITER_URI or "").startswith("redis://"), reason="needs Redis limiter storage"
)
def test_every_limit_of_a_send_is_one_redis_script_call(make_host: Any) -> None:
    """Five windows, one round trip: the Redis server runs exactly one script per send."""
    import redis

    scripts = ("evalsha", "eval")
    sender = MemorySender()
    # Codes in the database, so that every script the server runs is a limit's.
    host = make_host(alisms_options={"sender": sender}, ALISMS_CODE_STORAGE="database")
    host.configure_sms()
    server = redis.Redis.from_url(str(LIMITER_URI))
    client = host.client()
    assert _send(client, PHONES[33]).status_code == 200  # loads the script once

    def script_calls() -> int:
        stats = server.info("commandstats")
        # Commands a script runs are counted too; the calls from clients are the scripts.
        return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in scripts)

    before = script_calls()
    assert _send(client, PHONES[34]).status_code == 200
    _assert_throttled(_send(client, PHONES[34]))
    assert script_calls() - before == 2
    assert len(sender.outbox) == 2
