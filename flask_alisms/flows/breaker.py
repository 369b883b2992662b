"""The provider breaker and the budgets' epoch, as the send path consults them.

:mod:`.guard` keeps them in the limiter storage; these are the send path's steps around it,
with the answers of :func:`~.verification.request_code` to a storage that fails: let the
request through when the limits fail open (``ALISMS_LIMITS_FAIL_OPEN``), else
:class:`~flask_alisms.exceptions.LimiterUnavailable`, with nothing spent either way.
"""

from __future__ import annotations

import logging
from functools import partial

from flask import current_app

from ..exceptions import LimiterUnavailable
from ..state import AliSMSState
from . import guard
from .throttle import Refusal

#: The send path's logger: these lines were always logged as the send flow's own.
logger = logging.getLogger(f"{__package__}.verification")


def cooldown() -> int:
    return max(1, round(current_app.config["ALISMS_PROVIDER_COOLDOWN"]))


def prepare(state: AliSMSState) -> guard.Health:
    """Rebuild the budgets if the limiter storage lost them; the provider breaker's state."""
    storage = state.throttle.storage
    try:
        snapshot = guard.read(storage)
        if not snapshot.epoch:
            guard.rebuild(
                storage,
                state.params.values(),
                partial(guard.spends, state.db.session, state.models.SendLog),
                partial(guard.failing_for, state.db.session, state.models.SendLog),
                current_app.config["ALISMS_PROVIDER_COOLDOWN"],
            )
            snapshot = guard.read(storage)  # with the breaker the log restored
    except Exception as exc:  # the storage's or the database's error
        return storage_failed(state, exc)
    return snapshot.health


def hit_if_closed(
    state: AliSMSState, keys: tuple[str, str], purpose: str
) -> tuple[bool, Refusal | None]:
    """:func:`.guard.hit_send_if_closed`; a storage error is answered as :func:`prepare`
    answers it (let through, or :class:`LimiterUnavailable`), with nothing tried again."""
    try:
        return guard.hit_send_if_closed(state.throttle, keys[0], keys[1], purpose)
    except Exception as exc:  # the storage's error
        storage_failed(state, exc)
        return True, None  # the limits fail open


def storage_failed(state: AliSMSState, exc: Exception) -> guard.Health:
    """Let the request through (limits fail open) or raise :class:`LimiterUnavailable`."""
    state.db.session.rollback()
    if current_app.config["ALISMS_LIMITS_FAIL_OPEN"]:
        logger.error(
            "Limiter storage unavailable, letting the request through: %s",
            type(exc).__name__,  # the type only: a database error's text lists parameters
        )
        return guard.Health.CLOSED
    logger.error("Limiter storage unavailable, refusing the request: %s", type(exc).__name__)
    raise LimiterUnavailable("rate limit storage unavailable") from exc


def take_probe(state: AliSMSState) -> bool:
    config = current_app.config
    seconds = config["ALISMS_CONNECT_TIMEOUT"] + config["ALISMS_READ_TIMEOUT"] + 5
    try:
        return guard.take_probe(state.throttle.storage, seconds)
    except Exception:
        logger.exception("Limiter storage unavailable for the provider probe")
        return False


def set_health(state: AliSMSState, *, healthy: bool) -> None:
    try:
        if healthy:
            guard.recovered(state.throttle.storage)
            logger.warning("Aliyun answers again: sends resume")
        else:
            guard.trip(state.throttle.storage, current_app.config["ALISMS_PROVIDER_COOLDOWN"])
            logger.warning(
                "Aliyun fails for every number: every send is answered 503 for %ss",
                cooldown(),
            )
    except Exception:
        logger.exception("Limiter storage unavailable for the provider breaker")
