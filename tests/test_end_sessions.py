"""A password reset calls the user adapter's optional ``end_sessions`` (issue 12, point 7)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import session

from flask_alisms import SQLAlchemyUserAdapter
from flask_alisms.testing import DysmsapiEmulator

from .conftest import PHONE, Host, api_post


class RecordingAdapter(SQLAlchemyUserAdapter):
    """The host's adapter with ``end_sessions``: records the calls and the order of things."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []

    def end_sessions(self, user: Any) -> None:
        self.calls.append(f"end_sessions {user.phone}")

    def set_password(self, user: Any, password_hash: str) -> None:
        self.calls.append("set_password")
        super().set_password(user, password_hash)


def _add_user(host: Host) -> None:
    with host.app.app_context():
        host.db.session.add(host.User(phone=PHONE, password_hash="old"))
        host.db.session.commit()


def test_reset_ends_sessions_before_setting_the_password(
    make_host: Callable[..., Host], emulator: DysmsapiEmulator
) -> None:
    host = make_host()
    adapter = RecordingAdapter(host.db, host.User, login=lambda u: session.update(user_id=u.id))
    host.app.extensions["alisms"].user_adapter = adapter
    host.configure_sms()
    _add_user(host)
    client = host.client()
    assert api_post(client, "send-code", {"phone": PHONE, "purpose": "reset"}).status_code == 200
    code = emulator.last_param(PHONE[3:])
    payload = {"phone": PHONE, "code": code, "password": "second pass 2"}
    assert api_post(client, "reset-password", payload).status_code == 200
    assert adapter.calls == [f"end_sessions {PHONE}", "set_password"]


def test_an_adapter_without_end_sessions_still_resets(
    make_host: Callable[..., Host], emulator: DysmsapiEmulator
) -> None:
    host = make_host()
    host.configure_sms()
    assert not hasattr(host.app.extensions["alisms"].users, "session_version_attribute") or (
        host.app.extensions["alisms"].users.session_version_attribute is None
    )
    _add_user(host)
    client = host.client()
    assert api_post(client, "send-code", {"phone": PHONE, "purpose": "reset"}).status_code == 200
    code = emulator.last_param(PHONE[3:])
    payload = {"phone": PHONE, "code": code, "password": "second pass 2"}
    assert api_post(client, "reset-password", payload).status_code == 200
