"""Each send limit lets exactly its count through, then answers 429 with Retry-After."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import time_machine
from limits.storage import MemoryStorage, Storage

from flask_alisms.flows.codes import redis_client
from flask_alisms.flows.throttle import Refusal, Rule, Throttle
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
    assert _send(client, PHONES[2]).status_code == 200  # answered as a skip would be
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
    not (LIMITER_URI or "").startswith(("redis://", "redis+sentinel://")),
    reason="needs Redis (or Sentinel) limiter storage",
)
def test_every_limit_of_a_send_is_one_redis_script_call(make_host: Any) -> None:
    """Five windows, one round trip: the Redis server runs exactly one script per send."""
    scripts = ("evalsha", "eval")
    sender = MemorySender()
    # Codes in the database, so that every script the server runs is a limit's.
    host = make_host(alisms_options={"sender": sender}, ALISMS_CODE_STORAGE="database")
    host.configure_sms()
    server = redis_client(str(LIMITER_URI))  # a Sentinel's: the master
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


# -- counters keyed by rule, not by the limit's value ------------------------------------------
#
# An admin who lowers a limit mid-window means "fewer from now on", not "start counting again":
# the counters are named after the rule ("{alisms}/ip-hour/<ip>"), so the sends already made
# still count against the new value. These run against Redis too when
# ALISMS_TEST_LIMITER_STORAGE_URI names it (the Lua path), and memory:// otherwise.

T0 = 1_900_000_000


def _setup_for(host: Host, rule: str) -> dict[str, str]:
    """Other limits wide open, so that only ``rule`` can refuse."""
    wide = {
        "limits__ip_per_hour": "100000",
        "limits__global_per_day": "100000",
        "limits__phone_per_hour": "100",
        "limits__phone_per_day": "1000",
        "limits__resend_interval": "30",
    }
    wide.pop(f"limits__{rule}")
    host.set_params(**wide)
    return wide


def _send_for(rule: str, client: Any, clock: Any, index: int) -> Any:
    """The ``index``-th send of a run that only ``rule`` counts as one budget."""
    if rule == "phone_per_hour":
        clock.shift(31)  # past the resend interval of 30 s: one number, sent again
        return _send(client, PHONES[0])
    return _send(client, PHONES[index])


RULES = ["ip_per_hour", "global_per_day", "phone_per_hour"]


@pytest.mark.parametrize("rule", RULES)
def test_lowering_a_limit_keeps_what_the_window_already_spent(
    sms: tuple[Host, MemorySender], rule: str
) -> None:
    host, sender = sms
    _setup_for(host, rule)
    host.set_params(**{f"limits__{rule}": "20"})
    client = host.client()
    with time_machine.travel(T0, tick=False) as clock:
        for index in range(19):
            assert _send_for(rule, client, clock, index).status_code == 200
        host.set_params(**{f"limits__{rule}": "19"})
        # Keyed by value, "19" would be a fresh counter and let this one through.
        retry = _assert_throttled(_send_for(rule, client, clock, 19))
        assert retry > 60  # the hour or day window, not the resend interval
        host.set_params(**{f"limits__{rule}": "20"})
        assert _send_for(rule, client, clock, 20).status_code == 200
        _assert_throttled(_send_for(rule, client, clock, 21))
    assert len(sender.outbox) == 20


@pytest.mark.parametrize("rule", RULES)
def test_raising_a_limit_lets_exactly_the_difference_through(
    sms: tuple[Host, MemorySender], rule: str
) -> None:
    host, sender = sms
    _setup_for(host, rule)
    host.set_params(**{f"limits__{rule}": "5"})
    client = host.client()
    with time_machine.travel(T0, tick=False) as clock:
        for index in range(5):
            assert _send_for(rule, client, clock, index).status_code == 200
        _assert_throttled(_send_for(rule, client, clock, 5))
        host.set_params(**{f"limits__{rule}": "6"})
        # Keyed by value, "6" would be a fresh counter and let six more through.
        assert _send_for(rule, client, clock, 6).status_code == 200
        _assert_throttled(_send_for(rule, client, clock, 7))
        _assert_throttled(_send_for(rule, client, clock, 8))
    assert len(sender.outbox) == 6


def test_retry_after_a_lowered_limit_waits_for_the_send_that_frees_a_place(
    sms: tuple[Host, MemorySender],
) -> None:
    """20 sends 10 s apart, limit lowered to 10: a place frees when the 10th newest expires."""
    host, _sender = sms
    host.set_params(limits__ip_per_hour="20")
    client = host.client()
    with time_machine.travel(T0, tick=False) as clock:
        for phone in PHONES[:20]:
            assert _send(client, phone).status_code == 200
            clock.shift(10)
        host.set_params(limits__ip_per_hour="10")
        # Sent at T0+0..190; the 10th newest at T0+100 expires at T0+3700; now is T0+200.
        # (The oldest, at T0, expiring at 3400 s frees nothing: 19 would still be in.)
        assert _assert_throttled(_send(client, PHONES[20])) == 3500
        clock.shift(3499)
        _assert_throttled(_send(client, PHONES[20]))
        clock.shift(2)  # the window's edge counts as inside it
        assert _send(client, PHONES[20]).status_code == 200


@pytest.mark.skipif(
    not (LIMITER_URI or "").startswith("redis"), reason="needs Redis limiter storage"
)
def test_redis_counters_are_named_by_rule(sms: tuple[Host, MemorySender]) -> None:
    """The keys say which budget they hold; no limit's value appears in them."""
    host, _sender = sms
    server = redis_client(str(LIMITER_URI))
    host_key = b"LIMITS:LIMITER/host/ping/1/1/minute"  # a host Limiter's key in the storage
    server.rpush(host_key, b"1")
    assert _send(host.client(), PHONES[5]).status_code == 200
    keys = set(server.scan_iter(match="LIMITS:{alisms}/*"))
    # Subjects are keyed digests (no number or address in Redis); a number's budgets are
    # per purpose (issue 12).
    with host.app.app_context():
        keyring = host.app.extensions["alisms"].keyring
        phone = keyring.subject_digest("phone", PHONES[5])
        client = keyring.subject_digest("client", "127.0.0.1")
    assert keys == {
        f"LIMITS:{{alisms}}/ip-hour/{client}".encode(),
        f"LIMITS:{{alisms}}/ip-day/{client}".encode(),
        f"LIMITS:{{alisms}}/phone-interval/{phone}/register".encode(),
        f"LIMITS:{{alisms}}/phone-hour/{phone}/register".encode(),
        f"LIMITS:{{alisms}}/phone-day/{phone}/register".encode(),
        b"LIMITS:{alisms}/global-day/site",
    }
    host.app.extensions["alisms"].throttle.reset()
    assert set(server.scan_iter(match="LIMITS:{alisms}/*")) == set()
    assert server.exists(host_key), "reset must leave the host's own limits alone"


# -- the host's Limiter and RATELIMIT_ENABLED ----------------------------------------------------


def _host_with_limiter(tmp_path: Any, *, enabled: bool) -> tuple[Host, MemorySender]:
    """A host that initialises its own Flask-Limiter before AliSMS, as the README says."""
    import sqlalchemy as sa
    from flask import Flask
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address
    from flask_sqlalchemy import SQLAlchemy

    from flask_alisms import AliSMS, SQLAlchemyUserAdapter

    app = Flask("limiter_host")
    app.config.update(
        SECRET_KEY="test-secret-key-for-the-limiter-host",
        TESTING=True,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/limiter_host.db",
        ALISMS_PARAMS_CACHE_SECONDS=0,
        RATELIMIT_ENABLED=enabled,
    )
    if LIMITER_URI:
        app.config["ALISMS_LIMITER_STORAGE_URI"] = LIMITER_URI
    db = SQLAlchemy()
    db.init_app(app)

    class User(db.Model):  # type: ignore[name-defined]
        __tablename__ = "limiter_host_user"
        id = sa.Column(sa.Integer, primary_key=True)
        phone = sa.Column(sa.String(32), unique=True, nullable=False)
        password_hash = sa.Column(sa.String(256), nullable=False)

    limiter = Limiter(get_remote_address, storage_uri="memory://")
    limiter.init_app(app)
    sender = MemorySender()
    alisms = AliSMS(
        app, db=db, limiter=limiter, sender=sender, user_adapter=SQLAlchemyUserAdapter(db, User)
    )
    with app.app_context():
        db.create_all()
    host = Host(app, db, User, alisms)
    host.configure_sms()
    return host, sender


@pytest.mark.parametrize("enabled", [False, True])
def test_host_limiter_switch_turns_the_limits_off(
    make_host: Any, tmp_path: Any, enabled: bool
) -> None:
    """RATELIMIT_ENABLED=False on the host's Limiter (as test suites set it): no limits."""
    del make_host  # only for its checks of the services the environment names
    host, sender = _host_with_limiter(tmp_path, enabled=enabled)
    client = host.client()
    answers = [_send(client, PHONES[6]).status_code for _ in range(3)]
    assert answers == ([200, 429, 429] if enabled else [200, 200, 200])
    assert len(sender.outbox) == (1 if enabled else 3)
    with host.app.app_context():
        host.db.drop_all()
        host.db.engine.dispose()


def test_without_a_host_limiter_ratelimit_enabled_is_not_ours(make_host: Any) -> None:
    """RATELIMIT_ENABLED is the host Limiter's setting; with none, the limits stay on."""
    sender = MemorySender()
    host = make_host(alisms_options={"sender": sender}, RATELIMIT_ENABLED=False)
    host.configure_sms()
    client = host.client()
    assert _send(client, PHONES[7]).status_code == 200
    _assert_throttled(_send(client, PHONES[7]))
    assert len(sender.outbox) == 1


# -- the Throttle on its own: fixed windows (memcached's kind) and reset -----------------------


class FixedWindowStorage(Storage):
    """Fixed windows only, like memcached: ``incr``/``get``/``get_expiry``, no moving window."""

    STORAGE_SCHEME = None  # not registered for storage_from_string

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}
        self.expires: dict[str, float] = {}
        #: Runs before each ``incr``: another process taking a place between test and take.
        self.before_incr: Callable[[str], None] = lambda key: None

    @property
    def base_exceptions(self) -> type[Exception]:
        return OSError

    def _live(self, key: str) -> None:
        if self.expires.get(key, 0.0) <= time.time():
            self.counts.pop(key, None)
            self.expires.pop(key, None)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        self.before_incr(key)
        self._live(key)
        if key not in self.counts:
            self.expires[key] = time.time() + expiry
        self.counts[key] = self.counts.get(key, 0) + amount
        return self.counts[key]

    def decr(self, key: str, amount: int = 1) -> int:
        self.counts[key] = max(0, self.counts.get(key, 0) - amount)
        return self.counts[key]

    def get(self, key: str) -> int:
        self._live(key)
        return self.counts.get(key, 0)

    def get_expiry(self, key: str) -> float:
        return self.expires.get(key, time.time())

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        count = len(self.counts)
        self.counts.clear()
        self.expires.clear()
        return count

    def clear(self, key: str) -> None:
        self.counts.pop(key, None)
        self.expires.pop(key, None)


class Params:
    """The part of the parameter store a Throttle reads, set directly by the test."""

    def __init__(self, **values: int) -> None:
        self.current = SimpleNamespace(
            ip_per_hour=20,
            ip_per_day=50,
            resend_interval=60,
            phone_per_hour=5,
            phone_per_day=10,
            global_per_day=1000,
            verify_per_hour=20,
        )
        self.set(**values)

    def set(self, **values: int) -> None:
        for name, value in values.items():
            setattr(self.current, name, value)

    def values(self) -> SimpleNamespace:
        return self.current


def _throttle(storage: Storage, params: Params) -> Throttle:
    return Throttle(storage, params, fail_open=False)  # type: ignore[arg-type]


def test_fixed_window_storage_is_keyed_by_rule() -> None:
    storage, params = FixedWindowStorage(), Params(ip_per_hour=3, resend_interval=30)
    throttle = _throttle(storage, params)
    with time_machine.travel(T0, tick=False) as clock:
        for phone in PHONES[:3]:
            assert throttle.hit_send(phone, "10.0.0.1") is None
            clock.shift(5)
        refusal = throttle.hit_send(PHONES[3], "10.0.0.1")
        assert refusal == Refusal("ip", 3600 - 15)  # the hour counted from the first send
        params.set(ip_per_hour=2)
        assert throttle.hit_send(PHONES[3], "10.0.0.1") == Refusal("ip", 3600 - 15)
        params.set(ip_per_hour=4)
        assert throttle.hit_send(PHONES[3], "10.0.0.1") is None
        assert throttle.hit_send(PHONES[4], "10.0.0.1") is not None
        assert storage.counts["{alisms}/ip-hour/10.0.0.1"] == 4
        # A refusal spent nothing else: PHONES[4]'s own budgets are untouched.
        assert storage.get(f"{{alisms}}/phone-interval/{PHONES[4]}") == 0
        assert storage.get("{alisms}/global-day/site") == 4
        clock.shift(3600)
        assert throttle.hit_send(PHONES[4], "10.0.0.1") is None  # a new fixed window


def test_fixed_window_race_gives_back_what_it_took() -> None:
    """Another process takes the last global place between the test and the take."""
    storage, params = FixedWindowStorage(), Params(global_per_day=1)
    throttle = _throttle(storage, params)

    def other_process(key: str) -> None:
        if key == "{alisms}/global-day/site":
            storage.before_incr = lambda key: None
            storage.incr(key, 86400)

    storage.before_incr = other_process
    with time_machine.travel(T0, tick=False):
        refusal = throttle.hit_send(PHONES[0], "10.0.0.1")
    assert refusal is not None and refusal.scope == "global"
    assert 86399 <= refusal.retry_after <= 86400
    assert storage.get("{alisms}/global-day/site") == 1  # the other process's send only
    assert storage.get("{alisms}/ip-hour/10.0.0.1") == 0
    assert storage.get(f"{{alisms}}/phone-interval/{PHONES[0]}") == 0


def test_memory_storage_forced_through_fixed_windows() -> None:
    """limits' MemoryStorage counts fixed windows too: the same path as memcached."""
    storage = MemoryStorage()
    params = Params(verify_per_hour=2)
    throttle = _throttle(storage, params)
    rules = [Rule("verify", "verify-hour", PHONES[0], 2, 3600)]
    with time_machine.travel(T0, tick=False) as clock:
        assert throttle._acquire_fixed(storage, rules) is None
        clock.shift(100)
        assert throttle._acquire_fixed(storage, rules) is None
        assert throttle._acquire_fixed(storage, rules) == Refusal("verify", 3500)
        lowered = [Rule("verify", "verify-hour", PHONES[0], 1, 3600)]
        assert throttle._acquire_fixed(storage, lowered) == Refusal("verify", 3500)
        raised = [Rule("verify", "verify-hour", PHONES[0], 3, 3600)]
        assert throttle._acquire_fixed(storage, raised) is None
        assert throttle._acquire_fixed(storage, raised) is not None
    assert storage.get("{alisms}/verify-hour/" + PHONES[0]) == 3


def test_reset_forgets_only_the_extensions_counters() -> None:
    """With the host Limiter's memory:// storage, the host's own counters survive a reset."""
    storage = MemoryStorage()
    storage.acquire_entry("LIMITER/host/ping", 10, 60)
    storage.incr("LIMITER/host/fixed", 60)
    throttle = _throttle(storage, Params())
    assert throttle.hit_send(PHONES[0], "10.0.0.1") is None
    assert throttle.hit_send(PHONES[0], "10.0.0.1") is not None
    throttle.reset()
    assert throttle.hit_send(PHONES[0], "10.0.0.1") is None
    assert storage.get_moving_window("LIMITER/host/ping", 10, 60)[1] == 1
    assert storage.get("LIMITER/host/fixed") == 1
