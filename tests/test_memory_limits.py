"""``memory://`` limits: exact moving windows whose cost and memory do not grow with the numbers.

The store is tested on its own (exact windows, all or nothing, retry times, expiry, the bound,
threads) and through the app (the bound refuses instead of forgetting).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import time_machine

from flask_alisms.flows.windows import EXPIRE_BUDGET, MemoryWindows, Window
from flask_alisms.sms import MemorySender

from .conftest import LIMITER_URI, api_post

T0 = 1_900_000_000.0


def _send_rules(phone: str, ip: str = "10.0.0.1", *, per_ip: int = 20) -> list[Window]:
    return [
        Window("ip-hour", ip, per_ip, 3600),
        Window("phone-interval", phone, 1, 60),
        Window("phone-hour", phone, 5, 3600),
        Window("global-day", "site", 1000, 86400),
    ]


def test_exact_moving_window_and_its_retry_time() -> None:
    store = MemoryWindows()
    rule = [Window("verify-hour", "+8613800138000", 3, 3600)]
    for offset in (0, 10, 20):
        assert store.acquire(rule, T0 + offset) == (0, 0.0)
    # Full: a place frees when the oldest of the three leaves the window, at T0 + 3600.
    assert store.acquire(rule, T0 + 30) == (1, T0 + 3600)
    assert store.acquire(rule, T0 + 3599.5) == (1, T0 + 3600)
    assert store.acquire(rule, T0 + 3600) == (1, T0 + 3600)  # the edge is still inside
    assert store.acquire(rule, T0 + 3600.01) == (0, 0.0)
    assert store.acquire(rule, T0 + 3600.02) == (1, T0 + 3610)


def test_a_refusal_takes_nothing_from_the_other_windows() -> None:
    store = MemoryWindows()
    assert store.acquire(_send_rules("+8613800000001"), T0) == (0, 0.0)
    # The second send to the same number is refused by the interval (rule 2) ...
    assert store.acquire(_send_rules("+8613800000001"), T0 + 1) == (2, T0 + 60)
    # ... and spent none of the IP's 2 places: two other numbers still get through.
    for number in ("+8613800000002", "+8613800000003"):
        assert store.acquire(_send_rules(number, per_ip=3), T0 + 2) == (0, 0.0)
    assert store.acquire(_send_rules("+8613800000004", per_ip=3), T0 + 3) == (1, T0 + 3600)


def test_a_lowered_limit_waits_for_the_push_that_frees_a_place() -> None:
    store = MemoryWindows()
    for step in range(20):
        assert store.acquire([Window("ip-hour", "ip", 20, 3600)], T0 + 10 * step) == (0, 0.0)
    # Lowered to 10: the 10th newest push (at T0 + 100) must leave, not the oldest.
    assert store.acquire([Window("ip-hour", "ip", 10, 3600)], T0 + 200) == (1, T0 + 3700)
    # Raised to 21: exactly one more.
    assert store.acquire([Window("ip-hour", "ip", 21, 3600)], T0 + 201) == (0, 0.0)
    assert store.acquire([Window("ip-hour", "ip", 21, 3600)], T0 + 202) == (1, T0 + 3600)


def test_expired_state_is_dropped_by_later_requests_without_a_scan() -> None:
    store = MemoryWindows()
    for n in range(1000):
        assert store.acquire([Window("phone-interval", f"+86138{n:08d}", 1, 60)], T0) == (0, 0.0)
    assert len(store) == 1000
    # Half a window later nothing has expired; just after the window everything has, and the
    # next request (for another number) drops it from the front of the rule's queue.
    store.acquire([Window("phone-interval", "+8613900000000", 1, 60)], T0 + 30)
    assert len(store) == 1001
    # A request drops a bounded batch (no long pause after a quiet spell) ...
    store.acquire([Window("phone-interval", "+8613900000001", 1, 60)], T0 + 60.5)
    assert len(store) == 1002 - EXPIRE_BUDGET
    # ... and the following ones the rest.
    for n in range(1000 // EXPIRE_BUDGET):
        store.acquire([Window("phone-interval", f"+86139100{n:05d}", 1, 60)], T0 + 60.6)
    assert len(store) == 2 + 1000 // EXPIRE_BUDGET  # the recent numbers only
    # The expired numbers may send again.
    assert store.acquire([Window("phone-interval", "+8613800000000", 1, 60)], T0 + 61) == (0, 0.0)


def test_a_full_rule_refuses_new_subjects_and_never_forgets_live_ones() -> None:
    store = MemoryWindows(max_keys=3)
    rule = "phone-day"
    for n in range(3):
        assert store.acquire([Window(rule, f"n{n}", 2, 86400)], T0 + n) == (0, 0.0)
    # A fourth number would need a fourth subject: refused until the oldest state expires.
    assert store.acquire([Window(rule, "n3", 2, 86400)], T0 + 10) == (1, T0 + 86400)
    # The numbers already held keep their exact windows.
    assert store.acquire([Window(rule, "n0", 2, 86400)], T0 + 11) == (0, 0.0)
    assert store.acquire([Window(rule, "n0", 2, 86400)], T0 + 12) == (1, T0 + 86400)
    # Another rule has its own bound.
    assert store.acquire([Window("ip-hour", "n3", 2, 3600)], T0 + 13) == (0, 0.0)
    # Once n1's day has passed (n0 sent again later, so it stays), n3 finds room.
    assert store.acquire([Window(rule, "n3", 2, 86400)], T0 + 86401.5) == (0, 0.0)
    assert store.acquire([Window(rule, "n0", 2, 86400)], T0 + 86401.6) == (0, 0.0)
    assert store.acquire([Window(rule, "n0", 2, 86400)], T0 + 86401.7) == (1, T0 + 86411)


def test_the_clock_going_back_keeps_windows_exact() -> None:
    store = MemoryWindows()
    rule = [Window("phone-hour", "p", 2, 3600)]
    assert store.acquire(rule, T0 + 100) == (0, 0.0)
    assert store.acquire(rule, T0 + 50) == (0, 0.0)  # an earlier clock: still two in the hour
    assert store.acquire(rule, T0 + 101) == (1, T0 + 3650)


def test_threads_never_take_more_than_the_limit() -> None:
    store = MemoryWindows()
    barrier = threading.Barrier(16)
    taken: list[int] = []

    def worker(index: int) -> None:
        barrier.wait()
        for attempt in range(50):
            number = f"+86138{index:04d}{attempt:04d}"
            if store.acquire(_send_rules(number, per_ip=37))[0] == 0:
                taken.append(1)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(taken) == 37


@pytest.mark.skipif(bool(LIMITER_URI), reason="memory:// limits only")
def test_the_bound_refuses_a_new_number_through_the_api(make_host: Any) -> None:
    sender = MemorySender()
    host = make_host(alisms_options={"sender": sender}, ALISMS_LIMITS_MEMORY_MAX_KEYS=2)
    host.configure_sms()
    client = host.client()
    with time_machine.travel(T0, tick=False) as clock:
        for phone in ("+8613800138001", "+8613800138002"):
            assert api_post(client, "send-code", {"phone": phone}).status_code == 200
            clock.shift(1)
        refused = api_post(client, "send-code", {"phone": "+8613800138003"})
        assert refused.status_code == 429
        assert refused.get_json()["error"] == "rate_limited"
        # The first full rule, the resend interval, frees its oldest number first.
        assert int(refused.headers["Retry-After"]) == 58
        # The hourly and daily rules are full too: room comes a day after the first send.
        clock.shift(3600)
        assert api_post(client, "send-code", {"phone": "+8613800138003"}).status_code == 429
        clock.shift(86400 - 3600)
        assert api_post(client, "send-code", {"phone": "+8613800138003"}).status_code == 200
    assert [m.phone for m in sender.outbox] == ["13800138001", "13800138002", "13800138003"]


@pytest.mark.parametrize("value", [0, -5, "100", 2.5, True])
def test_the_bound_must_be_a_whole_number(value: Any) -> None:
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy

    from flask_alisms import AliSMS
    from flask_alisms.exceptions import ConfigurationError

    app = Flask(__name__)
    app.config.update(SECRET_KEY="k" * 32, SQLALCHEMY_DATABASE_URI="sqlite://")
    app.config["ALISMS_LIMITS_MEMORY_MAX_KEYS"] = value
    with pytest.raises(ConfigurationError, match="ALISMS_LIMITS_MEMORY_MAX_KEYS"):
        AliSMS(app, db=SQLAlchemy(app))
