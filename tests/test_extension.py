"""Setting the extension up: options, configuration checks, per-app state."""

from __future__ import annotations

import pytest
from flask import Flask, render_template_string
from flask_sqlalchemy import SQLAlchemy

from flask_alisms import AliSMS, ConfigurationError


def _app(**config: object) -> tuple[Flask, SQLAlchemy]:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k" * 32, SQLALCHEMY_DATABASE_URI="sqlite://", **config)
    db = SQLAlchemy(app)
    return app, db


def test_init_app_later_and_state_lives_on_the_app() -> None:
    app, db = _app()
    alisms = AliSMS(db=db)
    assert "alisms" not in app.extensions
    alisms.init_app(app)
    assert app.extensions["alisms"].callbacks is alisms.callbacks
    assert not hasattr(alisms, "app")
    assert app.config["ALISMS_URL_PREFIX"] == "/alisms"
    assert "alisms" in app.blueprints


def test_one_extension_serves_two_apps_with_separate_state() -> None:
    db = SQLAlchemy()
    alisms = AliSMS(db=db)
    states = []
    for name in ("one", "two"):
        app = Flask(name)
        app.config.update(SECRET_KEY="k" * 32, SQLALCHEMY_DATABASE_URI="sqlite://")
        db.init_app(app)
        alisms.init_app(app)
        states.append(app.extensions["alisms"])
    assert states[0] is not states[1]
    assert states[0].models is states[1].models


def test_registering_twice_is_a_clear_error() -> None:
    app, db = _app()
    alisms = AliSMS(app, db=db)
    with pytest.raises(RuntimeError, match="already registered"):
        alisms.init_app(app)


def test_db_must_be_initialised_first() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="x" * 32)
    with pytest.raises(ConfigurationError, match=r"db\.init_app"):
        AliSMS(app, db=SQLAlchemy())


def test_db_argument_is_required_and_typed() -> None:
    with pytest.raises(TypeError, match="SQLAlchemy"):
        AliSMS(db=object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"ALISMS_URL_PREFIX": "alisms"}, "ALISMS_URL_PREFIX"),
        ({"ALISMS_SENDER": "carrier-pigeon"}, "ALISMS_SENDER"),
        ({"ALISMS_READ_TIMEOUT": 0}, "ALISMS_READ_TIMEOUT"),
        ({"ALISMS_CONNECT_TIMEOUT": "3"}, "ALISMS_CONNECT_TIMEOUT"),
        ({"ALISMS_PARAMS": ["x"]}, "ALISMS_PARAMS"),
        ({"ALISMS_PARAMS": {"server.allow_user_register": "yes-ish"}}, "true or false"),
        ({"ALISMS_PARAMS": {"no.such.key": "1"}}, "unknown parameter"),
        ({"ALISMS_CODE_STORAGE": "mongodb://x"}, "ALISMS_CODE_STORAGE"),
        ({"ALISMS_REGISTER_REDIRECT": "https://evil.example"}, "local path"),
        ({"ALISMS_PASSWORD_MIN_LENGTH": 0}, "ALISMS_PASSWORD_MIN_LENGTH"),
        ({"ALISMS_ENCRYPTION_KEY_FALLBACKS": "old"}, "FALLBACKS"),
        ({"ALISMS_LANGUAGE": "fr"}, "ALISMS_LANGUAGE"),
    ],
)
def test_bad_configuration_says_how_to_fix_it(config: dict[str, object], message: str) -> None:
    app, db = _app(**config)
    with pytest.raises(ConfigurationError, match=message):
        AliSMS(app, db=db)


def test_missing_key_material_is_refused() -> None:
    app = Flask(__name__)
    app.config.update(SQLALCHEMY_DATABASE_URI="sqlite://")
    db = SQLAlchemy(app)
    with pytest.raises(ConfigurationError, match="ALISMS_ENCRYPTION_KEY"):
        AliSMS(app, db=db)


def test_host_values_win_over_defaults() -> None:
    app, db = _app(ALISMS_URL_PREFIX="/sms", ALISMS_READ_TIMEOUT=2.5)
    AliSMS(app, db=db)
    assert app.config["ALISMS_READ_TIMEOUT"] == 2.5
    assert app.url_map.bind("localhost").match("/sms/api/csrf-token", method="GET")[0] == (
        "alisms.api_csrf_token"
    )


def test_host_limiter_must_be_initialised() -> None:
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    app, db = _app()
    with pytest.raises(ConfigurationError, match=r"limiter\.init_app"):
        AliSMS(app, db=db, limiter=Limiter(get_remote_address, storage_uri="memory://"))


def test_host_limiter_storage_is_shared() -> None:
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    app, db = _app()
    # Never contacted here: redis-py connects on the first command.
    limiter = Limiter(get_remote_address, app=app, storage_uri="redis://127.0.0.1:1/0")
    AliSMS(app, db=db, limiter=limiter)
    assert app.extensions["alisms"].throttle.storage is limiter.storage


def test_host_limiter_memory_storage_is_not_borrowed() -> None:
    """A process's memory is shared with nobody: the extension keeps its own bounded windows."""
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    from flask_alisms.flows.windows import MemoryWindows

    app, db = _app(ALISMS_LIMITS_MEMORY_MAX_KEYS=7)
    limiter = Limiter(get_remote_address, app=app, storage_uri="memory://")
    AliSMS(app, db=db, limiter=limiter)
    storage = app.extensions["alisms"].throttle.storage
    assert isinstance(storage, MemoryWindows) and storage.max_keys == 7


def test_mobile_registration_link_helper_for_host_templates() -> None:
    app, db = _app()
    alisms = AliSMS(app, db=db)
    with app.app_context():
        db.create_all()
        assert alisms.mobile_registration_open() is False
        with app.test_request_context():
            rendered = render_template_string(
                "{{ 'yes' if alisms_mobile_registration_open() else 'no' }}"
            )
        assert rendered == "no"
