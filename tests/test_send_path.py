"""The send path's cheaper steps keep their meaning (issue 15): the user lookup that loads no
user, the adapter without it, and on Redis the breaker's read riding on the budgets' script."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import with_loader_criteria

from flask_alisms import SQLAlchemyUserAdapter
from flask_alisms.flows import guard
from flask_alisms.flows.codes import redis_client
from flask_alisms.flows.throttle import send_rules
from flask_alisms.sms import MemorySender

from .conftest import LIMITER_URI, Host, api_post

OWNER, STRANGER = "+8613600150001", "+8613600150002"


def _send(client: Any, phone: str, purpose: str = "register") -> Any:
    return api_post(client, "send-code", {"phone": phone, "purpose": purpose})


def _add_user(host: Host, phone: str) -> None:
    with host.app.app_context():
        host.db.session.add(host.User(phone=phone, password_hash="x"))
        host.db.session.commit()


@pytest.fixture
def sms(make_host: Any) -> tuple[Host, MemorySender]:
    sender = MemorySender()
    host = make_host(alisms_options={"sender": sender})
    host.configure_sms()
    _add_user(host, OWNER)
    return host, sender


# -- the user lookup -----------------------------------------------------------------------------


def test_exists_by_phone_reads_the_id_only(sms: tuple[Host, MemorySender]) -> None:
    host, _sender = sms
    adapter = host.app.extensions["alisms"].user_adapter
    statements: list[str] = []
    with host.app.app_context():

        def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            statements.append(statement)

        engine = host.db.engine
        sa.event.listen(engine, "before_cursor_execute", seen)
        try:
            assert adapter.exists_by_phone(OWNER) is True
            assert adapter.exists_by_phone(STRANGER) is False
        finally:
            sa.event.remove(engine, "before_cursor_execute", seen)
        assert (adapter.find_by_phone(OWNER) is not None) is True
        host.db.session.rollback()
    lookups = [s for s in statements if "host_user" in s]
    assert len(lookups) == 2
    for statement in lookups:
        selected = statement.split("FROM")[0]
        assert "host_user.id" in selected
        assert "password_hash" not in selected and "nickname" not in selected


def test_exists_by_phone_honours_the_hosts_orm_filters(sms: tuple[Host, MemorySender]) -> None:
    """A host that hides users with a ``do_orm_execute`` rule (soft delete) keeps hiding them:
    the lookup then runs as the ORM query, as ``find_by_phone`` always did."""
    host, sender = sms
    user = host.User

    def hide_owner(state: Any) -> None:
        if state.is_select:
            state.statement = state.statement.options(
                with_loader_criteria(user, user.phone != OWNER)
            )

    sa.event.listen(host.db.session, "do_orm_execute", hide_owner)
    try:
        adapter = host.app.extensions["alisms"].user_adapter
        with host.app.app_context():
            assert adapter.find_by_phone(OWNER) is None
            assert adapter.exists_by_phone(OWNER) is False
        # The account rule agrees: a register code goes to the hidden owner's number.
        assert _send(host.client(), OWNER).status_code == 200
        assert [m.phone for m in sender.outbox] == [OWNER[3:]]
    finally:
        sa.event.remove(host.db.session, "do_orm_execute", hide_owner)
    with host.app.app_context():
        assert adapter.exists_by_phone(OWNER) is True


class _FindOnly:
    """A host's own adapter of the older kind: ``find_by_phone`` and no ``exists_by_phone``."""

    def __init__(self, inner: SQLAlchemyUserAdapter) -> None:
        self._inner = inner
        self.asked: list[str] = []

    def find_by_phone(self, phone: str) -> Any:
        self.asked.append(phone)
        return self._inner.find_by_phone(phone)

    def __getattr__(self, name: str) -> Any:
        if name == "exists_by_phone":
            raise AttributeError(name)
        return getattr(self._inner, name)


def test_an_adapter_without_exists_by_phone_is_asked_find_by_phone(
    sms: tuple[Host, MemorySender],
) -> None:
    host, sender = sms
    state = host.app.extensions["alisms"]
    adapter = state.user_adapter = _FindOnly(state.user_adapter)
    assert not hasattr(state.user_adapter, "exists_by_phone")
    client = host.client()
    assert _send(client, OWNER).status_code == 200  # has an account: answered, not sent
    assert _send(client, STRANGER).status_code == 200
    assert [m.phone for m in sender.outbox] == [STRANGER[3:]]
    assert adapter.asked == [OWNER, STRANGER]


def test_a_subclass_narrowing_find_by_phone_keeps_its_rule(
    sms: tuple[Host, MemorySender],
) -> None:
    """A host that overrides find_by_phone (only some users count) is not bypassed."""
    host, sender = sms
    state = host.app.extensions["alisms"]
    base = state.user_adapter

    class NobodyCounts(SQLAlchemyUserAdapter):
        def find_by_phone(self, phone: str) -> Any | None:
            return None  # e.g. the owner's account is deactivated

    state.user_adapter = NobodyCounts(base.db, base.model)
    with host.app.app_context():
        assert state.user_adapter.exists_by_phone(OWNER) is False
    assert _send(host.client(), OWNER).status_code == 200
    assert [m.phone for m in sender.outbox] == [OWNER[3:]]  # no account by the host's rule


# -- Redis: the breaker's read rides on the budgets' script ---------------------------------------

needs_redis = pytest.mark.skipif(
    not (LIMITER_URI or "").startswith(("redis://", "redis+sentinel://")),
    reason="needs Redis (or Sentinel) limiter storage",
)


@needs_redis
def test_a_warm_send_reads_the_breaker_inside_the_script(make_host: Any) -> None:
    """One round trip per warm send: no MGET of the breaker's keys beside the script."""
    sender = MemorySender()
    host = make_host(alisms_options={"sender": sender}, ALISMS_CODE_STORAGE="database")
    host.configure_sms()
    server = redis_client(str(LIMITER_URI))
    client = host.client()
    assert _send(client, STRANGER).status_code == 200  # rebuilds, loads the script

    def calls(name: str) -> int:
        return int(server.info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0))

    mget, evalsha = calls("mget"), calls("evalsha")
    assert _send(client, "+8613600150003").status_code == 200
    assert calls("mget") == mget
    assert calls("evalsha") == evalsha + 1
    assert len(sender.outbox) == 2


@needs_redis
@pytest.mark.parametrize("state", ["no epoch", "open", "suspect"])
def test_the_script_spends_nothing_unless_warm_and_closed(make_host: Any, state: str) -> None:
    host = make_host()
    host.configure_sms()
    throttle = host.app.extensions["alisms"].throttle
    storage = throttle.storage
    with host.app.app_context():
        throttle.reset()
        storage.clear(guard.EPOCH_KEY)
        if state != "no epoch":
            storage.incr(guard.EPOCH_KEY, 60)
            storage.incr(guard.OPEN_KEY if state == "open" else guard.SUSPECT_KEY, 60)
        rules = send_rules(host.alisms.params.values(), "p" * 32, "c" * 32, "register")
        assert guard.hit_send_if_closed(throttle, "p" * 32, "c" * 32, "register") == (False, None)
        assert throttle.counts(rules) == [0] * len(rules)
        storage.clear(guard.OPEN_KEY)
        storage.clear(guard.SUSPECT_KEY)
        if state == "no epoch":
            storage.incr(guard.EPOCH_KEY, 60)
        assert guard.hit_send_if_closed(throttle, "p" * 32, "c" * 32, "register") == (True, None)
        assert throttle.counts(rules) == [1] * len(rules)


def test_other_storages_take_the_long_way(make_host: Any) -> None:
    """``memory://`` (and Redis Cluster) cannot test and take in one step: nothing is spent."""
    host = make_host(ALISMS_LIMITER_STORAGE_URI="memory://")
    throttle = host.app.extensions["alisms"].throttle
    with host.app.app_context():
        rules = send_rules(host.alisms.params.values(), "p" * 32, "c" * 32, "register")
        assert guard.hit_send_if_closed(throttle, "p" * 32, "c" * 32, "register") == (False, None)
        assert throttle.counts(rules) == [0] * len(rules)
