"""How the extension reaches the host's users without owning the user model.

The host passes an object with the :class:`UserAdapter` methods (as Flask-Login asks for a
``user_loader``). :class:`SQLAlchemyUserAdapter` covers the common case of a model with a phone
column and a password-hash column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy

from .models import connection_for, read_retrying, transaction


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


@runtime_checkable
class PhoneChecker(Protocol):
    """Optional on a user adapter: the send path calls it instead of ``find_by_phone``."""

    def exists_by_phone(self, phone: str) -> bool:
        """Whether some user's verified phone is ``phone`` (E.164), without loading the user."""


def has_user_with_phone(adapter: Any, phone: str) -> bool:
    """``adapter.exists_by_phone(phone)`` where the adapter has it, else ``find_by_phone``."""
    exists = getattr(adapter, "exists_by_phone", None)
    if exists is not None:
        return bool(exists(phone))
    return adapter.find_by_phone(phone) is not None


@runtime_checkable
class SessionEnder(Protocol):
    """Optional on a user adapter: the password reset calls it when present."""

    def end_sessions(self, user: Any) -> None:
        """Make every session of ``user`` invalid (the current one is renewed afterwards)."""


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
        session_version_attribute: str | None = None,
    ) -> None:
        self.db = db
        self.model = model
        self.phone_attribute = phone_attribute
        self.password_attribute = password_attribute
        self.session_version_attribute = session_version_attribute
        self._login = login
        self._by_phone: sa.Select[Any] | None = None
        self._exists: tuple[sa.Select[Any], sa.Select[Any] | None] | None = None

    def find_by_phone(self, phone: str) -> Any | None:
        if self._by_phone is None:
            # Built once: on the send-code path, building it costs about as much as running it.
            column = getattr(self.model, self.phone_attribute)
            self._by_phone = sa.select(self.model).where(column == sa.bindparam("phone")).limit(1)
        query, session = self._by_phone, self.db.session
        return read_retrying(
            lambda: session.scalars(query, {"phone": phone}).first(), session
        )

    def exists_by_phone(self, phone: str) -> bool:
        """Whether a user has ``phone``: the primary key only, no user object built.

        The send path asks this for every code. Where it means exactly what the ORM query of
        :meth:`find_by_phone` means (a model of its own table, no inheritance filter, and no
        ``do_orm_execute`` hook on the session that could filter users, such as a soft-delete
        rule), it runs as a plain Core statement, which costs less CPU than the ORM's; otherwise
        as the ORM query, one column.
        """
        if type(self).find_by_phone is not SQLAlchemyUserAdapter.find_by_phone:
            # A subclass that narrows find_by_phone (active users only, say) is the rule.
            return self.find_by_phone(phone) is not None
        if self._exists is None:
            self._exists = self._build_exists()
        orm_query, core_query = self._exists
        session = self.db.session
        if core_query is not None and not session().dispatch.do_orm_execute:

            def read() -> Any:
                connection = connection_for(session, self.model)
                return connection.execute(core_query, {"phone": phone}).first()

        else:

            def read() -> Any:
                return session.execute(orm_query, {"phone": phone}).first()

        return read_retrying(read, session) is not None

    def _build_exists(self) -> tuple[sa.Select[Any], sa.Select[Any] | None]:
        """The ORM statement, and a Core one where it selects the same rows (else None)."""
        mapper = sa.inspect(self.model)
        key = mapper.primary_key[0]
        column = getattr(self.model, self.phone_attribute)
        orm_query = sa.select(getattr(self.model, mapper.get_property_by_column(key).key))
        orm_query = orm_query.where(column == sa.bindparam("phone")).limit(1)
        prop = mapper.attrs.get(self.phone_attribute)
        columns: Sequence[Any] = getattr(prop, "columns", ())
        table = mapper.local_table
        plain = (
            mapper.inherits is None
            and isinstance(table, sa.Table)
            and len(columns) == 1
            and isinstance(columns[0], sa.Column)
            and columns[0].table is table
            and key.table is table
        )
        if not plain:
            return orm_query, None
        core_query = sa.select(key).where(columns[0] == sa.bindparam("phone")).limit(1)
        return orm_query, core_query

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

    # -- ending sessions: a version number that every session token carries -------------------

    def end_sessions(self, user: Any) -> None:
        """Bump the user's session version, so that every token made before is refused.

        Without ``session_version_attribute`` there is nothing to bump and sessions live on
        (the README says how to add the column).
        """
        attribute = self.session_version_attribute
        if attribute is None:
            return
        with transaction(self.db.session):
            # An SQL expression: two resets at once both count.
            setattr(user, attribute, getattr(self.model, attribute) + 1)

    def session_token(self, user: Any) -> str:
        """What a session should hold for ``user``: its id and session version, e.g. ``"7:3"``.

        Use it as Flask-Login's ``get_id`` (and :meth:`load_by_session_token` as the
        ``user_loader``), or store it in ``session`` yourself.
        """
        version = getattr(user, self.session_version_attribute or "", 0) or 0
        return f"{self.get_id(user)}:{int(version)}"

    def load_by_session_token(self, token: object) -> Any | None:
        """The user of a :meth:`session_token`, or None once its sessions were ended."""
        if not isinstance(token, str) or ":" not in token:
            return None
        ident, _, version = token.rpartition(":")
        key_type = sa.inspect(self.model).primary_key[0].type
        try:
            user = self.db.session.get(self.model, key_type.python_type(ident))
        except (ValueError, NotImplementedError):
            return None
        if user is None:
            return None
        current = getattr(user, self.session_version_attribute or "", 0) or 0
        return user if version == str(int(current)) else None

    def login(self, user: Any) -> None:
        if self._login is not None:
            self._login(user)
