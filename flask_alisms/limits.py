"""Send and verification limits, enforced through Flask-Limiter's storage.

Limits are read from the parameter store on every check, so an admin's change applies at once.
All the limits of a request are taken together *after* the input was found valid and *before*
anything is sent: concurrent requests can never send more than allowed, bad input spends no
quota, and a request refused by one limit spends none of the others. The windows are moving
(exact) where the storage supports it, so "one per 60 s" means that.

With Redis (the storage for several processes) one Lua script tests and takes every window in
a single round trip, on the very lists limits' own moving window keeps; other storages test
then hit each rule under a process lock, which is atomic for ``memory://``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flask_limiter import Limiter
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import MovingWindowSupport, RedisClusterStorage, RedisStorage
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter, RateLimiter

from .errors import AliSMSError
from .settings import ParameterStore

logger = logging.getLogger(__name__)

HOUR, DAY = 3600, 86400

# Every window as limits' moving window keeps it: a list of timestamps, newest first, trimmed
# to the limit. KEYS[i] is rule i's list; ARGV[1] the time now; ARGV[2i], ARGV[2i+1] rule i's
# limit and window in seconds. Returns 0 when every window took the request, or {i, oldest}
# for the first rule that refused it, oldest being the entry whose expiry frees a place.
_ACQUIRE_ALL = b"""
local now = tonumber(ARGV[1])
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i])
  local window = tonumber(ARGV[2 * i + 1])
  if limit < 1 then return {i, ARGV[1]} end
  local entry = redis.call('LINDEX', KEYS[i], limit - 1)
  if entry and tonumber(entry) >= now - window then return {i, entry} end
end
for i = 1, #KEYS do
  redis.call('LPUSH', KEYS[i], ARGV[1])
  redis.call('LTRIM', KEYS[i], 0, tonumber(ARGV[2 * i]) - 1)
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[2 * i + 1]))
end
return 0
"""


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
        self._script: Any = None
        self._lock = threading.Lock()

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
        try:
            storage = self._limiter.storage
            # Cluster keys live on different nodes, out of one script's reach.
            if isinstance(storage, RedisStorage) and not isinstance(storage, RedisClusterStorage):
                return self._acquire_in_redis(storage, rules)
            return self._acquire_each(rules)
        except Exception as exc:  # any storage driver's connection error
            if self._fail_open:
                logger.error("Limiter storage unavailable, letting the request through: %s", exc)
                return None
            logger.error("Limiter storage unavailable, refusing the request: %s", exc)
            raise LimiterUnavailable("rate limit storage unavailable") from exc

    def _acquire_in_redis(self, storage: RedisStorage, rules: Sequence[_Rule]) -> Refusal | None:
        """All rules in one round trip, all or nothing, whatever the number of processes."""
        if self._script is None:
            self._script = storage.get_connection().register_script(_ACQUIRE_ALL)
        now = repr(time.time())
        keys, args = [], [now]
        for rule in rules:
            keys.append(storage.prefixed_key(rule.item.key_for(*rule.identifiers)))
            args += [str(rule.item.amount), str(rule.item.get_expiry())]
        answer = self._script(keys=keys, args=args)
        if not answer:
            return None
        index, oldest = int(answer[0]), float(answer[1])
        rule = rules[index - 1]
        wait = oldest + rule.item.get_expiry() - float(now)
        return Refusal(rule.scope, max(1, math.ceil(wait)))

    def _acquire_each(self, rules: Sequence[_Rule]) -> Refusal | None:
        """Look at every rule, then spend: the lock makes it all or nothing in this process.

        With a storage shared between processes (memcached, MongoDB) each hit is still atomic
        on its own, so no window ever lets more through than its limit.
        """
        strategy = self.strategy
        with self._lock:
            for rule in rules:
                if not strategy.test(rule.item, *rule.identifiers):
                    return self._refusal(rule)
            for rule in rules:
                if not strategy.hit(rule.item, *rule.identifiers):
                    return self._refusal(rule)
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
