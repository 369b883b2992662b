"""Budgets that survive a lost limiter storage, per purpose, per IP per day, IPv6 networks, a
failing database, the provider breaker and late SMS (issue 12, points 3, 4, 6, 9 and 10)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
from click.testing import Result
from flask import Flask

from flask_alisms import AliSMS
from flask_alisms.exceptions import ConfigurationError
from flask_alisms.sms import MemorySender
from flask_alisms.testing import DysmsapiEmulator

from .conftest import LIMITER_URI, Host, api_post
from .test_oracle import worker

PHONES = [f"+861360013{n:04d}" for n in range(40)]
PASSWORD = "good pass 1"


@pytest.fixture
def sms(make_host: Any) -> tuple[Host, MemorySender]:
    sender = MemorySender()
    host = make_host(alisms_options={"sender": sender})
    host.configure_sms()
    return host, sender


@pytest.fixture
def clock() -> Iterator[Any]:
    with time_machine.travel(1_900_000_000, tick=False) as traveller:
        yield traveller


def _send(client: Any, phone: str, purpose: str = "register", ip: str | None = None) -> Any:
    kwargs = {"environ_base": {"REMOTE_ADDR": ip}} if ip else {}
    token = client.get("/alisms/api/csrf-token", **kwargs).get_json()["csrf_token"]
    return client.post(
        "/alisms/api/send-code",
        json={"phone": phone, "purpose": purpose},
        headers={"X-CSRFToken": token},
        **kwargs,
    )


def _status(response: Any) -> int:
    return int(response.status_code)


def _user(host: Host, phone: str) -> None:
    with host.app.app_context():
        host.db.session.add(host.User(phone=phone, password_hash="x"))
        host.db.session.commit()


def _lose_storage(host: Host) -> None:
    """What a Redis restart without persistence (or FLUSHDB) does to the limiter storage."""
    host.app.extensions["alisms"].throttle.storage.reset()


# -- point 3: a lost limiter storage resets no budget --------------------------------------------


def test_a_flushed_limiter_storage_keeps_every_budget(
    sms: tuple[Host, MemorySender], clock: Any
) -> None:
    host, sender = sms
    host.set_params(limits__ip_per_hour="3", limits__global_per_day="4")
    client = host.client()
    assert _status(_send(client, PHONES[0])) == 200
    clock.shift(20)
    _lose_storage(host)
    refused = _send(client, PHONES[0])
    assert _status(refused) == 429  # the resend interval, rebuilt from the send log
    assert 39 <= int(refused.headers["Retry-After"]) <= 41  # and ending when it would have
    assert [_status(_send(client, phone)) for phone in PHONES[1:3]] == [200, 200]
    _lose_storage(host)
    assert _status(_send(client, PHONES[3])) == 429  # the IP's hour: 3 spent
    _lose_storage(host)
    assert _status(_send(host.client(), PHONES[4], ip="192.0.2.7")) == 200  # another IP
    _lose_storage(host)
    assert _status(_send(host.client(), PHONES[5], ip="192.0.2.8")) == 429  # the site's 4
    assert len(sender.outbox) == 4
    clock.shift(41)
    assert _status(_send(host.client(), PHONES[0], ip="192.0.2.9")) == 429  # still the site's


@pytest.mark.skipif(bool(LIMITER_URI), reason="workers share the Redis storage")
def test_a_new_worker_with_memory_storage_knows_what_was_spent(
    sms: tuple[Host, MemorySender], clock: Any
) -> None:
    host, sender = sms
    host.set_params(limits__phone_per_hour="2")
    assert _status(_send(host.client(), PHONES[0])) == 200
    clock.shift(61)
    assert _status(_send(host.client(), PHONES[0])) == 200
    clock.shift(61)
    with worker(host) as fresh:
        fresh.app.extensions["alisms"].sender = sender
        assert _status(_send(fresh.client(), PHONES[0])) == 429
    assert len(sender.outbox) == 2


def test_a_reset_by_the_admin_is_not_undone(sms: tuple[Host, MemorySender]) -> None:
    """Throttle.reset forgets the counters on purpose; the log must not bring them back."""
    host, _ = sms
    assert _status(_send(host.client(), PHONES[0])) == 200
    host.app.extensions["alisms"].throttle.reset()
    assert _status(_send(host.client(), PHONES[0])) == 200


def test_the_log_holds_digests_not_numbers(sms: tuple[Host, MemorySender]) -> None:
    host, _ = sms
    assert _status(_send(host.client(), PHONES[0])) == 200
    log = host.models.SendLog
    [(phone_digest, client_digest, masked)] = host.query(
        sa.select(log.phone_digest, log.client_digest, log.phone_masked)
    )
    assert len(phone_digest) == len(client_digest) == 32
    assert PHONES[0][3:] not in phone_digest + client_digest and "*" in masked


# -- point 4: one flow cannot lock its owner out of another ---------------------------------------


def test_register_probes_do_not_lock_the_owner_out_of_reset(
    sms: tuple[Host, MemorySender], clock: Any
) -> None:
    host, sender = sms
    owner, stranger = PHONES[10], PHONES[11]
    _user(host, owner)
    answers: dict[str, list[int]] = {owner: [], stranger: []}
    for _ in range(6):
        for phone in (owner, stranger):
            answers[phone].append(_status(_send(host.client(), phone, "register")))
        clock.shift(61)
    # The same answers for the registered and the unregistered number: no oracle.
    assert answers[owner] == answers[stranger] == [200] * 5 + [429]
    reset = _send(host.client(), owner, "reset")
    assert _status(reset) == 200
    assert [m.phone for m in sender.outbox].count(owner[3:]) == 1  # the reset code only


# -- point 6: a failure before the provider spends nothing -----------------------------------------


def test_a_failing_user_lookup_spends_no_budget(
    sms: tuple[Host, MemorySender], monkeypatch: pytest.MonkeyPatch
) -> None:
    host, sender = sms
    adapter = host.app.extensions["alisms"].user_adapter

    def broken(phone: str) -> Any:
        raise sa.exc.OperationalError("SELECT", {}, Exception("server closed the connection"))

    with monkeypatch.context() as patch:
        patch.setattr(adapter, "find_by_phone", broken)
        patch.setattr(adapter, "exists_by_phone", broken)  # what the send path asks
        try:
            failed = _status(_send(host.client(), PHONES[0]))
        except sa.exc.OperationalError:
            failed = 500  # propagated by the test client: still no 200
        assert failed != 200
    assert sender.outbox == []
    assert _status(_send(host.client(), PHONES[0])) == 200  # the interval was not spent
    assert len(sender.outbox) == 1


# -- point 9: a read timeout keeps the code --------------------------------------------------------


def test_a_late_sms_still_works(make_host: Any, emulator: DysmsapiEmulator) -> None:
    host = make_host(ALISMS_READ_TIMEOUT=0.5)
    host.configure_sms()
    client = host.client()
    emulator.delay_next(1.5)
    response = _send(client, PHONES[20])
    assert response.status_code == 200
    body = response.get_json()
    assert body["sent"] is True and body["maybe_late"] is True
    assert "few minutes" in body["message"]
    deadline = time.monotonic() + 5
    while emulator.last_message(PHONES[20][3:]) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    code = emulator.last_param(PHONES[20][3:])  # the SMS arrived after the timeout
    registered = api_post(
        client, "register", {"phone": PHONES[20], "code": code, "password": PASSWORD}
    )
    assert registered.status_code == 201, registered.get_json()


# -- point 10: per IP per day, IPv6 networks -------------------------------------------------------


def test_ip_per_day(sms: tuple[Host, MemorySender], clock: Any) -> None:
    host, _ = sms
    host.set_params(limits__ip_per_hour="100", limits__ip_per_day="3")
    ip = "198.51.100.4"
    assert [_status(_send(host.client(), p, ip=ip)) for p in PHONES[:3]] == [200] * 3
    clock.shift(2 * 3600)  # the hour is over, not the day
    refused = _send(host.client(), PHONES[3], ip=ip)
    assert _status(refused) == 429
    assert int(refused.headers["Retry-After"]) > 20 * 3600
    assert _status(_send(host.client(), PHONES[3], ip="198.51.100.5")) == 200
    clock.shift(22 * 3600 + 1)
    assert _status(_send(host.client(), PHONES[4], ip=ip)) == 200


def test_the_default_daily_ip_budget_is_well_below_the_site_budget(
    sms: tuple[Host, MemorySender],
) -> None:
    host, _ = sms
    with host.app.app_context():
        values = host.alisms.params.values()
    assert values.ip_per_day * 10 <= values.global_per_day


@pytest.mark.parametrize(
    ("prefix", "same"),
    [(64, True), (128, False)],
)
def test_ipv6_clients_count_by_network(make_host: Any, prefix: int, same: bool) -> None:
    sender = MemorySender()
    host = make_host(alisms_options={"sender": sender}, ALISMS_IPV6_PREFIX=prefix)
    host.configure_sms()
    host.set_params(limits__ip_per_hour="1")
    assert _status(_send(host.client(), PHONES[0], ip="2001:db8:1:2::1")) == 200
    other_address = _status(_send(host.client(), PHONES[1], ip="2001:db8:1:2:ffff::5"))
    assert other_address == (429 if same else 200)
    assert _status(_send(host.client(), PHONES[2], ip="2001:db8:1:3::1")) == 200
    # An IPv4-mapped address is its IPv4 client.
    assert _status(_send(host.client(), PHONES[3], ip="192.0.2.1")) == 200
    assert _status(_send(host.client(), PHONES[4], ip="::ffff:192.0.2.1")) == 429


@pytest.mark.parametrize("bad", [0, 8, 129, "64", 64.0, True])
def test_ipv6_prefix_is_validated(bad: Any) -> None:
    app = Flask("bad_prefix")
    app.config.update(
        SECRET_KEY="x" * 32, SQLALCHEMY_DATABASE_URI="sqlite://", ALISMS_IPV6_PREFIX=bad
    )
    from flask_sqlalchemy import SQLAlchemy

    with pytest.raises(ConfigurationError, match="ALISMS_IPV6_PREFIX"):
        AliSMS(app, db=SQLAlchemy(app))


# -- the provider breaker -----------------------------------------------------------------------


def test_the_breaker_stops_calling_a_failing_provider_and_probes_it_again(
    make_host: Any, emulator: DysmsapiEmulator
) -> None:
    host = make_host(ALISMS_PROVIDER_COOLDOWN=1)
    host.configure_sms()
    host.set_params(limits__ip_per_hour="100")
    owner = PHONES[30]
    _user(host, owner)
    emulator.fail_next("isv.AMOUNT_NOT_ENOUGH", times=100)
    first = _send(host.client(), PHONES[31])
    assert first.status_code == 503 and first.headers["Retry-After"] == "1"
    served = emulator.requests_served
    answers = [_send(host.client(), phone) for phone in (PHONES[32], owner, PHONES[33])]
    assert {(r.status_code, r.get_data()) for r in answers} == {(503, first.get_data())}
    assert emulator.requests_served == served  # nobody pays for calls that would fail
    time.sleep(1.1)
    emulator.reset()  # the provider is back
    assert _send(host.client(), owner).status_code == 503  # a skip cannot probe
    assert _send(host.client(), PHONES[34]).status_code == 200  # a real send does
    assert _send(host.client(), PHONES[10], "reset").status_code == 200
    assert _send(host.client(), owner, "register").status_code == 200  # closed again


def _check(host: Host) -> Result:
    return host.app.test_cli_runner().invoke(args=["alisms", "check"])


class _FakeRedis:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers

    def config_get(self, name: str) -> dict[str, str]:
        answer = self.answers[name]
        if isinstance(answer, Exception):
            raise answer
        return {name: answer}


@pytest.mark.parametrize(
    ("save", "appendonly", "warned"),
    [("", "no", "no persistence"), ("3600 1", "no", None), ("", "yes", None)],
)
def test_check_warns_when_the_limiter_redis_does_not_persist(
    ready_host: Host, monkeypatch: pytest.MonkeyPatch, save: str, appendonly: str, warned: Any
) -> None:
    from limits.storage import RedisStorage

    fake = object.__new__(RedisStorage)
    monkeypatch.setattr(
        fake, "get_connection", lambda readonly=False: _FakeRedis(
            {"save": save, "appendonly": appendonly}
        ), raising=False,
    )
    monkeypatch.setattr(ready_host.app.extensions["alisms"].throttle, "storage", fake)
    result = _check(ready_host)
    assert result.exit_code == 0, result.output
    if warned:
        assert warned in result.output
    else:
        assert "Warning" not in result.output


def test_check_says_when_redis_does_not_tell(
    ready_host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis
    from limits.storage import RedisStorage

    fake = object.__new__(RedisStorage)
    refused = redis.exceptions.ResponseError("unknown command 'CONFIG'")
    monkeypatch.setattr(
        fake, "get_connection", lambda readonly=False: _FakeRedis(
            {"save": refused, "appendonly": refused}
        ), raising=False,
    )
    monkeypatch.setattr(ready_host.app.extensions["alisms"].throttle, "storage", fake)
    result = _check(ready_host)
    assert result.exit_code == 0
    assert "could not tell" in result.output


def test_a_late_rebuild_does_not_replace_what_was_spent_since() -> None:
    """Two processes see the epoch missing; the second to get the lock must not rebuild again,
    or it would replace windows spent since (sends not logged yet) with the log's older view."""
    import datetime as dt
    from types import SimpleNamespace

    from limits.storage import MemoryStorage

    from flask_alisms.flows import guard
    from flask_alisms.flows.throttle import send_rules

    values = SimpleNamespace(
        ip_per_hour=20, ip_per_day=50, resend_interval=60, phone_per_hour=5,
        phone_per_day=10, global_per_day=1000,
    )
    storage = MemoryStorage()
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    logged = [guard.Spend(now, "register", "p" * 32, "c" * 32)]
    guard.rebuild(storage, values, lambda since: logged, lambda: None, 30)  # the first process
    site = send_rules(values, "q" * 32, "d" * 32, "register")[-1]
    assert storage.acquire_entry(site.key, site.limit, site.window)  # a send since, not logged
    guard.rebuild(storage, values, lambda since: logged, lambda: None, 30)  # the late one
    assert storage.get_moving_window(site.key, site.limit, site.window)[1] == 2
