"""The parameter store: what an admin sets at run time, typed, validated, cached and audited.

Every key is declared once in :data:`PARAMETERS`; the panel, the CLI and the code that reads a
value all go through that registry. Values come, strongest first, from ``ALISMS_PARAMS`` in the
app config, the database, ``ALISMS_PARAM_DEFAULTS``, and the registry default.

Each process keeps the values in memory and re-reads them when they are older than
``ALISMS_PARAMS_CACHE_SECONDS``: a change made by another process (another worker, the CLI) is
seen within that many seconds, and a change made by this process at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy

from ..crypto import DecryptionError, Keyring
from ..exceptions import ConfigurationError, InvalidParameter
from ..i18n import gettext as _
from ..models import Models, read_retrying, transaction, utcnow
from .registry import (
    PARAMETERS,
    REQUIRED_FOR_SMS,
    SMS_SWITCHES,
    Parameter,
    ParameterRow,
    Values,
    parameter,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Snapshot:
    values: dict[str, Any]
    sources: dict[str, str]
    loaded_at: float
    typed: Values


class ParameterStore:
    """Reads and writes parameters on the host's database through its ``db`` session."""

    def __init__(
        self,
        *,
        db: SQLAlchemy,
        models: Models,
        keyring: Keyring,
        overrides: Mapping[str, Any],
        defaults: Mapping[str, Any],
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._models = models
        self._keyring = keyring
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._overrides = self._validated(overrides, "ALISMS_PARAMS")
        self._defaults = self._validated(defaults, "ALISMS_PARAM_DEFAULTS")

    @staticmethod
    def _validated(values: Mapping[str, Any], config_key: str) -> dict[str, Any]:
        checked = {}
        for key, value in values.items():
            try:
                checked[key] = parameter(key).parse(value)
            except InvalidParameter as exc:
                raise ConfigurationError(f"{config_key}[{key!r}] {exc.message}.") from None
        return checked

    # -- reading -----------------------------------------------------------------------------

    def _load(self) -> _Snapshot:
        model = self._models.Parameter
        # Its own short connection: the host's session may hold a transaction whose snapshot
        # (REPEATABLE READ on MariaDB) would hide another process's change.
        def read() -> dict[str, str]:
            with self._db.engine.connect() as connection:
                return dict(connection.execute(sa.select(model.key, model.value)).all())

        stored = read_retrying(read)
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for key, param in PARAMETERS.items():
            if key in self._overrides:
                values[key], sources[key] = self._overrides[key], "config"
                continue
            if key in stored:
                try:
                    text = self._keyring.decrypt(stored[key]) if param.secret else stored[key]
                    values[key], sources[key] = param.parse(text), "database"
                    continue
                except (DecryptionError, InvalidParameter) as exc:
                    message = exc.message if isinstance(exc, InvalidParameter) else str(exc)
                    logger.error("Ignoring stored parameter %s: %s", key, message)
            if key in self._defaults:
                values[key], sources[key] = self._defaults[key], "config default"
            else:
                values[key], sources[key] = param.default, "default"
        typed = Values(**{PARAMETERS[key].attr: value for key, value in values.items()})
        return _Snapshot(values, sources, self._clock(), typed)

    def _current(self) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is not None and self._clock() - snapshot.loaded_at < self._max_age:
            return snapshot
        with self._lock:
            snapshot = self._snapshot
            if snapshot is None or self._clock() - snapshot.loaded_at >= self._max_age:
                snapshot = self._snapshot = self._load()
        return snapshot

    def invalidate(self) -> None:
        """Forget the cached values; the next read goes to the database."""
        self._snapshot = None

    def values(self) -> Values:
        """The current typed values (cached; see the module docstring)."""
        return self._current().typed

    def get(self, key: str) -> Any:
        """One value by key, for the panel and the CLI; code reads :meth:`values` instead."""
        parameter(key)
        return self._current().values[key]

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def rows(self) -> list[ParameterRow]:
        snapshot = self._current()
        return [
            ParameterRow(
                param,
                snapshot.values[key],
                param.display(snapshot.values[key]),
                snapshot.sources[key],
            )
            for key, param in PARAMETERS.items()
        ]

    def missing(self) -> list[Parameter]:
        """Required Aliyun parameters that are still empty."""
        values = self._current().values
        return [PARAMETERS[key] for key in REQUIRED_FOR_SMS if not values[key]]

    # -- writing -----------------------------------------------------------------------------

    def update(self, changes: Mapping[str, Any], *, actor: str | None) -> list[str]:
        """Validate and save several values at once; all or nothing.

        A value of ``None`` (or empty text for a text key) removes the database value. Returns
        the keys that really changed. Raises :class:`InvalidParameter` for the first bad key.
        """
        parsed: dict[str, Any] = {}
        for key, value in changes.items():
            param = parameter(key)
            if key in self._overrides:
                raise InvalidParameter(
                    key, _("is fixed by ALISMS_PARAMS in the app config; change it there")
                )
            parsed[key] = None if value is None or value == "" else param.parse(value)

        current = self._load()
        future = dict(current.values)
        for key, value in parsed.items():
            if value is not None:
                future[key] = value
            elif key in self._defaults:
                future[key] = self._defaults[key]
            else:
                future[key] = PARAMETERS[key].default
        for switch in SMS_SWITCHES:
            if not future[switch] or current.values[switch]:
                continue
            missing = [key for key in REQUIRED_FOR_SMS if not future[key]]
            if missing:
                raise InvalidParameter(
                    switch,
                    _(
                        "cannot be switched on while these are empty: %(keys)s",
                        keys=", ".join(missing),
                    ),
                )

        model, change = self._models.Parameter, self._models.ParameterChange
        session = self._db.session
        changed: list[str] = []
        try:
            with transaction(session):
                for key, value in parsed.items():
                    param = PARAMETERS[key]
                    row = session.get(model, key)
                    if value is None:
                        if row is None:
                            continue
                        session.delete(row)
                        action, logged = "unset", None
                    else:
                        text = param.dump(value)
                        if row is not None and not param.secret and row.value == text:
                            continue
                        stored = self._keyring.encrypt(text) if param.secret else text
                        if row is None:
                            session.add(model(key=key, value=stored, updated_by=actor))
                        else:
                            row.value, row.updated_by, row.updated_at = stored, actor, utcnow()
                        action, logged = "set", None if param.secret or param.masked else text
                    session.add(change(key=key, action=action, value=logged, actor=actor))
                    changed.append(key)
        finally:
            self.invalidate()
        for key in changed:
            logger.info("Parameter %s changed by %s", key, actor or "unknown")
        return changed

    def recent_changes(self, limit: int = 20) -> list[Any]:
        change = self._models.ParameterChange
        query = sa.select(change).order_by(change.changed_at.desc(), change.id.desc())
        return list(self._db.session.scalars(query.limit(limit)))

    def rotate_encryption(self) -> int:
        """Re-encrypt every secret value under the current key; returns how many."""
        model = self._models.Parameter
        secret_keys = [key for key, param in PARAMETERS.items() if param.secret]
        session = self._db.session
        rows = session.scalars(sa.select(model).where(model.key.in_(secret_keys))).all()
        try:
            with transaction(session):
                for row in rows:
                    row.value = self._keyring.rotate(row.value)
        finally:
            self.invalidate()
        return len(rows)
