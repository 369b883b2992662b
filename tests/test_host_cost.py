"""Installing AliSMS costs the host's own routes nothing.

Before 0.3 the extension ``init_app``-ed a Flask-Limiter of its own, whose ``before_request``,
``after_request`` and ``teardown_request`` hooks ran on every request of the host app: a route
returning "ok" took 1.75x as long. The limits now use a ``limits`` storage directly, so these
tests pin down that nothing app-wide is installed, and that a host route never reaches the
storage. ``benchmarks/host_route.py`` measures the same thing in time.
"""

from __future__ import annotations

import inspect
from collections import Counter
from typing import Any

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_alisms import AliSMS
from flask_alisms.sms import MemorySender

from .conftest import Host, api_post

#: The per-request hook registries of a Flask app; key None holds the app-wide ones.
HOOKS = (
    "before_request_funcs",
    "after_request_funcs",
    "teardown_request_funcs",
    "url_value_preprocessors",
    "url_default_functions",
)


def _app(tmp_path: Any) -> tuple[Flask, SQLAlchemy]:
    app = Flask("plain_host")
    app.config.update(
        SECRET_KEY="test-secret-key-for-a-plain-host",
        TESTING=True,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/plain.db",
        ALISMS_LIMITER_STORAGE_URI="memory://",
    )
    db = SQLAlchemy()
    db.init_app(app)
    return app, db


def _app_wide(app: Flask) -> dict[str, list[Any]]:
    hooks = {name: list(getattr(app, name).get(None, ())) for name in HOOKS}
    hooks["teardown_appcontext_funcs"] = list(app.teardown_appcontext_funcs)
    hooks["before_request blueprints"] = sorted(
        key for key in app.before_request_funcs if key not in (None, "alisms")
    )
    return hooks


def test_init_app_adds_no_request_hook_to_the_host(tmp_path: Any) -> None:
    app, db = _app(tmp_path)
    before = _app_wide(app)
    AliSMS(app, db=db)
    assert _app_wide(app) == before
    # The blueprint's own hooks are where they belong, on its routes only.
    assert app.after_request_funcs.get("alisms")


def test_init_app_adds_no_request_hook_next_to_the_hosts_limiter(tmp_path: Any) -> None:
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    app, db = _app(tmp_path)
    del app.config["ALISMS_LIMITER_STORAGE_URI"]  # share the host Limiter's storage
    limiter = Limiter(get_remote_address, storage_uri="memory://")
    limiter.init_app(app)
    before = _app_wide(app)
    assert before["before_request_funcs"], "the host's Limiter hooks its app, as expected"
    AliSMS(app, db=db, limiter=limiter)
    assert _app_wide(app) == before


def _count_calls(storage: Any) -> Counter[str]:
    """Wrap every public method of ``storage`` (this instance only) to count its calls."""
    calls: Counter[str] = Counter()
    for name, member in inspect.getmembers(type(storage), inspect.isfunction):
        if name.startswith("_"):
            continue

        def counted(*args: Any, __name: str = name, __method: Any = member, **kw: Any) -> Any:
            calls[__name] += 1
            return __method(storage, *args, **kw)

        setattr(storage, name, counted)
    return calls


def test_a_host_route_never_touches_the_limits_storage(make_host: Any) -> None:
    sender = MemorySender()
    host: Host = make_host(alisms_options={"sender": sender})

    @host.app.get("/ping")
    def ping() -> str:
        return "ok"

    host.configure_sms()
    calls = _count_calls(host.app.extensions["alisms"].throttle.storage)
    client = host.client()
    for _ in range(20):
        assert client.get("/ping").data == b"ok"
        assert client.get("/whoami").status_code == 200
    assert sum(calls.values()) == 0, calls
    # The counting works: one send goes through the storage.
    assert api_post(client, "send-code", {"phone": "+8613800138000"}).status_code == 200
    assert sum(calls.values()) > 0
    assert len(sender.outbox) == 1


def test_a_template_of_the_host_gets_only_one_cheap_global(tmp_path: Any) -> None:
    """The one app-wide thing: a context processor adding a callable, evaluated only if used."""
    from flask import render_template_string

    app, db = _app(tmp_path)
    before = {key: list(value) for key, value in app.template_context_processors.items()}
    AliSMS(app, db=db)
    added = [f for f in app.template_context_processors[None] if f not in before.get(None, [])]
    assert len(added) == 1
    with app.test_request_context():
        assert render_template_string("{{ 1 + 1 }}") == "2"
        assert callable(added[0]()["alisms_mobile_registration_open"])
