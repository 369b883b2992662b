"""Send and verification limits, enforced through Flask-Limiter's storage.

Limits are read from the parameter store on every check, so an admin's change applies at once.
Each limit is hit atomically *after* the input was found valid and *before* anything is sent,
so concurrent requests can never send more than allowed, and bad input spends no quota. A
request refused by one limit spends none of the others. The windows are moving (exact) where
the storage supports it, so "one per 60 s" means that.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from flask_limiter import Limiter
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import MovingWindowSupport
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter, RateLimiter

from .errors import AliSMSError
from .settings import ParameterStore

logger = logging.getLogger(__name__)

HOUR, DAY = 3600, 86400


class LimiterUnavailable(AliSMSError):
    """The limiter's storage did not answer; sends are refused unless configured otherwise."""


@dataclass(frozen=True)
class Refusal:
    """Which limit said no and when to come back."""

    scope: str  # "phone", "ip", "global" or "verify"
    retry_after: int


@dataclass(frozen=True)
class _Rule:
    scope: str
    item: RateLimitItem
    identifiers: tuple[str, ...]


class Throttle:
    """Applies the store's limits with one shared Flask-Limiter storage for all processes."""

    def __init__(self, limiter: Limiter, params: ParameterStore, *, fail_open: bool) -> None:
        self._limiter = limiter
        self._params = params
        self._fail_open = fail_open
        self._strategy: RateLimiter | None = None

    @property
    def strategy(self) -> RateLimiter:
        if self._strategy is None:
            storage = self._limiter.storage
            exact = isinstance(storage, MovingWindowSupport)
            self._strategy = (MovingWindowRateLimiter if exact else FixedWindowRateLimiter)(storage)
        return self._strategy

    def _apply(self, rules: Sequence[_Rule]) -> Refusal | None:
        if not self._limiter.enabled:
            return None  # RATELIMIT_ENABLED = False turns every Flask-Limiter limit off.
        strategy = self.strategy
        try:
            # First look without spending: a request that one rule refuses must not eat the
            # others (twenty impatient resends to one number would lock the whole IP out).
            for rule in rules:
                if not strategy.test(rule.item, *rule.identifiers):
                    return self._refusal(rule)
            # Then spend; each hit is atomic in the storage, so concurrent requests that all
            # passed the look still cannot get more than the limit through.
            for rule in rules:
                if not strategy.hit(rule.item, *rule.identifiers):
                    return self._refusal(rule)
        except Exception as exc:  # any storage driver's connection error
            if self._fail_open:
                logger.error("Limiter storage unavailable, letting the request through: %s", exc)
                return None
            logger.error("Limiter storage unavailable, refusing the request: %s", exc)
            raise LimiterUnavailable("rate limit storage unavailable") from exc
        return None

    def _refusal(self, rule: _Rule) -> Refusal:
        stats = self.strategy.get_window_stats(rule.item, *rule.identifiers)
        return Refusal(rule.scope, max(1, math.ceil(stats.reset_time - time.time())))

    def hit_send(self, phone: str, client_ip: str) -> Refusal | None:
        """Spend one send from every budget that covers this phone and client."""
        p = self._params
        per = RateLimitItemPerSecond
        return self._apply(
            [
                _Rule("ip", per(p.get("limits.ip_per_hour"), HOUR, "alisms"), ("ip", client_ip)),
                _Rule(
                    "phone",
                    per(1, p.get("limits.resend_interval"), "alisms"),
                    ("phone-interval", phone),
                ),
                _Rule(
                    "phone", per(p.get("limits.phone_per_hour"), HOUR, "alisms"), ("phone", phone)
                ),
                _Rule("phone", per(p.get("limits.phone_per_day"), DAY, "alisms"), ("phone", phone)),
                _Rule("global", per(p.get("limits.global_per_day"), DAY, "alisms"), ("global",)),
            ]
        )

    def hit_verify(self, phone: str) -> Refusal | None:
        """Spend one code check for this phone, bounding guesses across several codes."""
        item = RateLimitItemPerSecond(self._params.get("limits.verify_per_hour"), HOUR, "alisms")
        return self._apply([_Rule("verify", item, ("verify", phone))])


def create_limiter(storage_uri: str) -> Limiter:
    """The extension's own Limiter when the host passes none."""
    from flask_limiter.util import get_remote_address

    def never() -> bool:
        return True

    # Exempt from any RATELIMIT_DEFAULT / RATELIMIT_APPLICATION the host configured for its own
    # Limiter, so this one never counts the host's routes a second time.
    return Limiter(
        get_remote_address,
        storage_uri=storage_uri,
        strategy="moving-window",
        key_prefix="alisms",
        default_limits_exempt_when=never,
        application_limits_exempt_when=never,
    )
