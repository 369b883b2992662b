"""Limits and codes on Redis Cluster: one request's counters in one slot, codes spread by phone.

Runs when ``ALISMS_TEST_LIMITER_STORAGE_URI`` names a cluster (``redis+cluster://...``), as
.ci/run does with the three-master cluster it starts; the rest of test_limits.py and
test_concurrency.py run there too and prove the limits exact and all-or-nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

from flask_alisms.flows.codes import redis_client
from flask_alisms.sms import MemorySender

from .conftest import CODE_STORAGE, LIMITER_URI, api_post

needs_cluster = pytest.mark.skipif(
    not (LIMITER_URI or "").startswith("redis+cluster://"), reason="needs a Redis Cluster"
)

PHONES = ["+8613800138000", "+8613900139000", "+8615000150000"]


@needs_cluster
def test_the_counters_of_every_request_share_one_slot(make_host: Any) -> None:
    sender = MemorySender()
    host = make_host(alisms_options={"sender": sender})
    host.configure_sms()
    cluster = redis_client(str(LIMITER_URI))
    host_key = "LIMITS:LIMITER/host/ping"  # the host Limiter's, in some other slot
    cluster.rpush(host_key, "1")
    client = host.client()
    for phone in PHONES:
        assert api_post(client, "send-code", {"phone": phone}).status_code == 200
    keys = list(cluster.scan_iter(match="LIMITS:{alisms}/*"))
    assert len(keys) == 2 + 3 * len(PHONES) + 1  # the IP's hour and day, 3 per phone, the site
    assert {cluster.keyslot(key) for key in keys} == {cluster.keyslot("{alisms}")}
    host.app.extensions["alisms"].throttle.reset()
    assert list(cluster.scan_iter(match="LIMITS:{alisms}/*")) == []
    assert cluster.exists(host_key) == 1
    cluster.delete(host_key)
    assert len(sender.outbox) == len(PHONES)


@needs_cluster
@pytest.mark.skipif(
    not CODE_STORAGE.startswith("redis+cluster://"), reason="needs Redis codes on the cluster"
)
def test_codes_are_spread_by_phone_and_checked_on_their_node(make_host: Any) -> None:
    sender = MemorySender()
    host = make_host(alisms_options={"sender": sender})
    host.configure_sms()
    client = host.client()
    for phone in PHONES:
        assert api_post(client, "send-code", {"phone": phone}).status_code == 200
    cluster = redis_client(CODE_STORAGE)
    keys = sorted(cluster.scan_iter(match="alisms:code:*"))
    assert keys == sorted(f"alisms:code:{{{phone}}}:register".encode() for phone in PHONES)
    assert len({cluster.keyslot(key) for key in keys}) == len(PHONES)
    # A wrong code spends a try on the phone's node; the right one is consumed there.
    key = f"alisms:code:{{{PHONES[0]}}}:register"
    code = sender.outbox[0].params["code"]
    wrong = f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"
    payload = {"phone": PHONES[0], "password": "correct horse 42"}
    tries = int(cluster.hget(key, "left"))
    assert api_post(client, "register", {**payload, "code": wrong}).status_code == 400
    assert int(cluster.hget(key, "left")) == tries - 1
    assert api_post(client, "register", {**payload, "code": code}).status_code == 201
    assert cluster.exists(key) == 0


# -- the URLs, without a server: parsed into the right client ------------------------------------


def test_sentinel_url_names_its_sentinels_and_service() -> None:
    client = redis_client("redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2/alisms")
    pool = client.connection_pool
    assert pool.service_name == "alisms"
    sentinels = [s.connection_pool.connection_kwargs for s in pool.sentinel_manager.sentinels]
    assert [(s["host"], s["port"]) for s in sentinels] == [("10.0.0.1", 26379), ("10.0.0.2", 6379)]
    assert all(s["password"] == "s3cret" for s in sentinels)


def test_sentinel_url_without_a_service_is_refused() -> None:
    with pytest.raises(ValueError, match="no Sentinel service"):
        redis_client("redis+sentinel://10.0.0.1:26379")


@pytest.mark.parametrize(
    "url",
    ["redis+cluster://127.0.0.1:7000,127.0.0.1:7001", "redis+sentinel://127.0.0.1:26379/alisms"],
)
def test_code_storage_accepts_cluster_and_sentinel_urls(url: str) -> None:
    from flask_alisms.config import apply_defaults, validate

    config: dict[str, Any] = {"SECRET_KEY": "k" * 32, "ALISMS_CODE_STORAGE": url}
    apply_defaults(config)  # type: ignore[arg-type]
    validate(config)  # type: ignore[arg-type]
