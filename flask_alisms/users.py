"""How the extension reaches the host's users without owning the user model.

The host passes an object with the :class:`UserAdapter` methods (as Flask-Login asks for a
``user_loader``). :class:`SQLAlchemyUserAdapter` covers the common case of a model with a phone
column and a password-hash column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy

from .models import transaction


@runtime_checkable
class UserAdapter(Protocol):
    def find_by_phone(self, phone: str) -> Any | None:
        """The user whose verified phone is ``phone`` (E.164), or None."""

    def create_user(
        self, phone: str, password_hash: str | None, fields: Mapping[str, Any]
    ) -> Any:
        """Create and persist a user; ``fields`` holds the host's extra form fields.

        ``password_hash`` is None for an account created at its first sign-in by code
        (``login.auto_register``): such a user has no password until they reset one.
        """

    def set_password(self, user: Any, password_hash: str) -> None:
        """Persist a new password hash for ``user``."""

    def set_phone(self, user: Any, phone: str) -> None:
        """Persist ``phone`` (E.164, verified by a code) as ``user``'s number (phone change)."""

    def get_id(self, user: Any) -> Any:
        """A JSON-serialisable id for API answers and signals."""

    def login(self, user: Any) -> None:
        """Log ``user`` in as the host does (e.g. ``flask_login.login_user``), or do nothing."""


class SQLAlchemyUserAdapter:
    """Adapter for a Flask-SQLAlchemy user model with phone and password-hash columns."""

    def __init__(
        self,
        db: SQLAlchemy,
        model: Any,
        *,
        phone_attribute: str = "phone",
        password_attribute: str = "password_hash",  # noqa: S107 - a column name
        login: Callable[[Any], Any] | None = None,
    ) -> None:
        self.db = db
        self.model = model
        self.phone_attribute = phone_attribute
        self.password_attribute = password_attribute
        self._login = login
        self._by_phone: sa.Select[Any] | None = None

    def find_by_phone(self, phone: str) -> Any | None:
        if self._by_phone is None:
            # Built once: on the send-code path, building it costs about as much as running it.
            column = getattr(self.model, self.phone_attribute)
            self._by_phone = sa.select(self.model).where(column == sa.bindparam("phone")).limit(1)
        return self.db.session.scalars(self._by_phone, {"phone": phone}).first()

    def create_user(
        self, phone: str, password_hash: str | None, fields: Mapping[str, Any]
    ) -> Any:
        # None needs a nullable password column (sign-in by code with login.auto_register).
        user = self.model(
            **{self.phone_attribute: phone, self.password_attribute: password_hash}, **fields
        )
        with transaction(self.db.session):
            self.db.session.add(user)
        return user

    def set_password(self, user: Any, password_hash: str) -> None:
        with transaction(self.db.session):
            setattr(user, self.password_attribute, password_hash)

    def set_phone(self, user: Any, phone: str) -> None:
        with transaction(self.db.session):
            setattr(user, self.phone_attribute, phone)

    def phone_of(self, user: Any) -> str | None:
        """The user's current number, for the notice to the old number after a change."""
        phone: str | None = getattr(user, self.phone_attribute, None)
        return phone

    def get_id(self, user: Any) -> Any:
        return getattr(user, "id", None)

    def login(self, user: Any) -> None:
        if self._login is not None:
            self._login(user)
