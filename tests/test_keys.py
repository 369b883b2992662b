"""Key rotation for the encrypted AccessKey secret, and purging old data.

Rotation is run the way README tells an operator to: a deployment with key A stores the secret;
the next one has key B with A as fallback and still works; ``flask alisms rotate-key``
re-encrypts; then B alone reads the secret and A alone cannot (and says so without the secret).
Every app here is a separate process's view of the same database.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_alisms import AliSMS, SQLAlchemyUserAdapter
from flask_alisms.models import utcnow
from flask_alisms.testing import DysmsapiEmulator

from .conftest import (
    CODE_STORAGE,
    EMULATOR_READ_TIMEOUT,
    KEY_SECRET,
    LIMITER_URI,
    PHONE,
    Host,
    api_post,
)

KEY_A = "key material A, the one the site started with"
KEY_B = "key material B, the one it rotates to"
SECRET_PARAM = "aliyun.sms.access_key_secret"


@pytest.fixture
def sibling(make_host: Any, emulator: DysmsapiEmulator) -> Iterator[Callable[..., Any]]:
    """Build another deployment of the site on the same database, with its own keys."""
    made: list[tuple[Flask, SQLAlchemy]] = []

    def build(host: Host, key: str, fallbacks: tuple[str, ...] = ()) -> Flask:
        app = Flask("sibling_deployment")
        app.config.update(
            SECRET_KEY="a different flask secret",
            TESTING=True,
            SQLALCHEMY_DATABASE_URI=host.app.config["SQLALCHEMY_DATABASE_URI"],
            ALISMS_ENCRYPTION_KEY=key,
            ALISMS_ENCRYPTION_KEY_FALLBACKS=list(fallbacks),
            ALISMS_ENDPOINT=emulator.endpoint,
            ALISMS_READ_TIMEOUT=EMULATOR_READ_TIMEOUT,
            ALISMS_PARAMS_CACHE_SECONDS=0,
            ALISMS_CODE_STORAGE=CODE_STORAGE,
        )
        if LIMITER_URI:
            app.config["ALISMS_LIMITER_STORAGE_URI"] = LIMITER_URI
        db = SQLAlchemy(app)

        class User(db.Model):  # type: ignore[name-defined]
            __tablename__ = "host_user"
            id = sa.Column(sa.Integer, primary_key=True)
            phone = sa.Column(sa.String(32), unique=True, nullable=False)
            password_hash = sa.Column(sa.String(256), nullable=False)
            nickname = sa.Column(sa.String(50), nullable=True)

        alisms = AliSMS(app, db=db, user_adapter=SQLAlchemyUserAdapter(db, User))
        alisms.admin_loader(lambda: "root")
        made.append((app, db))
        return app

    yield build
    for app, db in made:  # before make_host drops the tables
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def _stored_secret(host: Host) -> str:
    model = host.models.Parameter
    (value,) = host.query(sa.select(model.value).where(model.key == SECRET_PARAM))[0]
    return str(value)


def _secret_seen_by(app: Flask) -> str:
    with app.app_context():
        return str(app.extensions["alisms"].params.get(SECRET_PARAM))


def _send_test(app: Flask, phone: str) -> Any:
    return app.test_cli_runner().invoke(args=["alisms", "send-test", phone])


def test_rotate_the_encryption_key(
    make_host: Any, sibling: Callable[..., Flask], emulator: DysmsapiEmulator, caplog: Any
) -> None:
    host = make_host(ALISMS_ENCRYPTION_KEY=KEY_A)
    host.configure_sms()
    under_a = _stored_secret(host)
    assert KEY_SECRET not in under_a

    # 1. Deploy B with A as a fallback: the secret still reads, and Aliyun (the emulator
    #    checks the request signature made with it) still accepts sends.
    during = sibling(host, KEY_B, (KEY_A,))
    assert _secret_seen_by(during) == KEY_SECRET
    sent = _send_test(during, "+8613800138000")
    assert sent.exit_code == 0, sent.output

    # 2. Re-encrypt under B.
    rotated = during.test_cli_runner().invoke(args=["alisms", "rotate-key"])
    assert rotated.exit_code == 0, rotated.output
    assert "Re-encrypted 1 secret value(s)" in rotated.output
    under_b = _stored_secret(host)
    assert under_b != under_a and KEY_SECRET not in under_b

    # 3. Drop the fallback: B alone reads it ...
    after = sibling(host, KEY_B)
    assert _secret_seen_by(after) == KEY_SECRET
    sent = _send_test(after, "+8613900139000")
    assert sent.exit_code == 0, sent.output
    assert len(emulator.messages) == 2

    # 4. ... and A alone cannot: the secret counts as missing, with an error that says why.
    caplog.set_level(logging.DEBUG)
    stale = sibling(host, KEY_A)
    assert _secret_seen_by(stale) == ""
    runner = stale.test_cli_runner()
    check = runner.invoke(args=["alisms", "check"])
    assert check.exit_code == 1
    assert f"missing {SECRET_PARAM}" in check.output
    show = runner.invoke(args=["alisms", "params", "show"])
    line = next(li for li in show.output.splitlines() if li.startswith(SECRET_PARAM))
    assert line.split() == [SECRET_PARAM, "(empty)", "default"]
    panel = stale.test_client().get("/alisms/admin/").get_data(as_text=True)
    missing = re.findall(r'class="check check-missing">(.*?)</li>', panel, re.DOTALL)
    assert any(SECRET_PARAM in item for item in missing)
    client = stale.test_client()
    assert client.get("/alisms/api/status").get_json()["mobile_registration_open"] is False
    refused = api_post(client, "send-code", {"phone": PHONE})
    assert refused.status_code == 503 and refused.get_json()["error"] == "sms_not_configured"
    cannot = runner.invoke(args=["alisms", "rotate-key"])
    assert cannot.exit_code != 0 and "cannot be decrypted" in cannot.output
    assert len(emulator.messages) == 2

    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(f"Ignoring stored parameter {SECRET_PARAM}" in e for e in errors), errors
    everything = caplog.text + check.output + show.output + panel + cannot.output
    assert KEY_SECRET not in everything
    assert under_b not in everything and under_a not in everything
    assert _stored_secret(host) == under_b  # reading with the wrong key changed nothing


def test_codes_in_flight_die_with_the_old_key(
    make_host: Any, sibling: Callable[..., Flask], emulator: DysmsapiEmulator
) -> None:
    """Code digests use the current key only (README: users request a new code)."""
    host = make_host(ALISMS_ENCRYPTION_KEY=KEY_A)
    host.configure_sms()
    assert api_post(host.client(), "send-code", {"phone": PHONE}).status_code == 200
    code = emulator.last_param("13800138000")
    during = sibling(host, KEY_B, (KEY_A,))
    response = api_post(
        during.test_client(), "register", {"phone": PHONE, "code": code, "password": "good pass 1"}
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_code"


def test_rotate_key_with_nothing_stored(host: Host) -> None:
    result = host.app.test_cli_runner().invoke(args=["alisms", "rotate-key"])
    assert result.exit_code == 0
    assert "Re-encrypted 0 secret value(s)" in result.output


# -- purge --------------------------------------------------------------------------------------


def _age_rows(host: Host, model: Any, column: str, **ages: dt.timedelta) -> None:
    """Move rows back in time: ``ages`` maps a phone (masked or not) to how old it gets."""
    with host.app.app_context():
        for phone, age in ages.items():
            key = model.phone_masked if hasattr(model, "phone_masked") else model.phone
            host.db.session.execute(
                sa.update(model).where(key == phone).values({column: utcnow() - age})
            )
        host.db.session.commit()


def test_purge_removes_old_log_rows_and_dead_codes_only(
    ready_host: Host, emulator: DysmsapiEmulator
) -> None:
    host = ready_host
    host.set_params(limits__ip_per_hour="100")
    client = host.client()
    phones = {"old": "+8613800138001", "recent": "+8613800138002", "live": "+8613800138003"}
    phones["expired"] = "+8613800138004"
    for phone in phones.values():
        assert api_post(client, "send-code", {"phone": phone}).status_code == 200
    log, codes = host.models.SendLog, host.models.VerificationCode
    masked = {name: f"{phone[:6]}****{phone[-4:]}" for name, phone in phones.items()}
    _age_rows(
        host,
        log,
        "created_at",
        **{masked["old"]: dt.timedelta(days=40), masked["recent"]: dt.timedelta(days=10)},
    )
    database_codes = CODE_STORAGE == "database"
    if database_codes:
        _age_rows(host, codes, "created_at", **{phones["old"]: dt.timedelta(days=40)})
        _age_rows(host, codes, "expires_at", **{phones["old"]: dt.timedelta(days=40)})
        _age_rows(host, codes, "expires_at", **{phones["expired"]: dt.timedelta(seconds=1)})

    result = host.app.test_cli_runner().invoke(args=["alisms", "purge", "--older-than", "30d"])
    assert result.exit_code == 0, result.output
    kept = sorted(phone for (phone,) in host.query(sa.select(log.phone_masked)))
    assert kept == sorted(masked[name] for name in ("recent", "live", "expired"))
    if database_codes:
        assert "Removed 1 log row(s) and 2 code(s)." in result.output
        live = sorted(phone for (phone,) in host.query(sa.select(codes.phone)))
        assert live == sorted(phones[name] for name in ("recent", "live"))
        # The live code still works after the purge.
        response = api_post(
            client,
            "register",
            {
                "phone": phones["live"],
                "code": emulator.last_param(phones["live"][3:]),
                "password": "good pass 1",
            },
        )
        assert response.status_code == 201

    # Hours work too: 216 h (9 days) reaches the 10-day-old row and nothing newer.
    again = host.app.test_cli_runner().invoke(args=["alisms", "purge", "--older-than", "216h"])
    assert again.exit_code == 0, again.output
    kept = sorted(phone for (phone,) in host.query(sa.select(log.phone_masked)))
    assert kept == sorted(masked[name] for name in ("live", "expired"))


BAD_AGES = [
    *("soon", "30", "d", "30m", "30w", "-1d", "1.5d", "0d", "0h", "00d", "", " 30d", "30d "),
    *("30d\n", "30 d", "٣٠d", "３０d", "123456d", "1e3d", "30D", "30dd", "+30d", "0x1ed"),
]


def test_purge_refuses_bad_ages(ready_host: Host) -> None:
    runner = ready_host.app.test_cli_runner()
    runner.invoke(args=["alisms", "send-test", "+8613800138000"])
    log = ready_host.models.SendLog
    _age_rows(ready_host, log, "created_at", **{"+86138****8000": dt.timedelta(days=400)})
    for value in BAD_AGES:
        result = runner.invoke(args=["alisms", "purge", "--older-than", value])
        assert result.exit_code == 2, (value, result.output)
        assert "--older-than" in result.output
    assert ready_host.count(log) == 1  # a 400-day-old row survives every refused value
