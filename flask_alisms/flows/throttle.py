"""Send and verification limits, kept in a ``limits`` storage (the one Flask-Limiter uses).

Why the storage and not a Flask-Limiter instance: a Limiter installs a ``before_request`` hook
on the whole app, so every route of the host would pay for the extension. The storage alone
costs nothing outside a send or a code check, and is shared with the host's Limiter when the
host passes one.

Limits are read from the parameter store on every check, so an admin's change applies at once,
and to the window already spent: a counter is keyed by its rule ("ip-hour"), never by the
limit's value, so lowering 20 to 19 leaves the 20 sends already made in force. All the limits
of a request are taken together *after* the input was found valid and *before* anything is
sent: concurrent requests never send more than allowed, bad input spends no quota, and a
request refused by one limit spends none of the others. Windows are moving (exact) where the
storage supports it, so "one per 60 s" means that.

With Redis (the storage for several processes) one Lua script tests and takes every window in
one round trip, on lists shaped like limits' own moving windows. That holds on Redis Cluster
too: every key carries the hash tag ``{alisms}``, so all of them live in one slot and one
script may touch them together (see README, "Redis Cluster and Sentinel"); Sentinel hands the
script to the current master. ``memory://`` uses :class:`~.windows.MemoryWindows`, whose cost
and memory stay bounded whatever the number of phones and IPs. Other storages test, then
take, each rule under a process lock; one without moving windows (memcached) counts fixed
windows, still keyed by rule.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from limits.storage import (
    MemoryStorage,
    MovingWindowSupport,
    RedisClusterStorage,
    RedisStorage,
    Storage,
)

from ..exceptions import LimiterUnavailable
from ..parameters import ParameterStore
from .windows import MemoryWindows, Window

logger = logging.getLogger(__name__)

HOUR, DAY = 3600, 86400
#: Every key starts with it. The braces make it Redis Cluster's hash tag: all the keys of the
#: extension hash to one slot, so one script can take a whole rule set atomically.
KEY_PREFIX = "{alisms}"

# Every window as a list of timestamps, newest first, trimmed to the limit. ARGV[1] is the time
# now, ARGV[2] the number G of guard keys that come first in KEYS: the first must hold a
# positive count and the others none (a missing key counts 0), or the script spends nothing
# and returns -1 (G = 0: no guard). KEYS[G+i] is rule i's list, ARGV[2i+1], ARGV[2i+2] rule
# i's limit and window in seconds. Returns 0 when every window took the request, or {i, oldest}
# for the first rule that refused it, oldest being the entry whose expiry frees a place.
_ACQUIRE_ALL = b"""
local now = tonumber(ARGV[1])
local guards = tonumber(ARGV[2])
for i = 1, guards do
  local count = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  if (count > 0) ~= (i == 1) then return -1 end
end
local rules = #KEYS - guards
for i = 1, rules do
  local limit = tonumber(ARGV[2 * i + 1])
  local window = tonumber(ARGV[2 * i + 2])
  if limit < 1 then return {i, ARGV[1]} end
  local entry = redis.call('LINDEX', KEYS[guards + i], limit - 1)
  if entry and tonumber(entry) >= now - window then return {i, entry} end
end
for i = 1, rules do
  redis.call('LPUSH', KEYS[guards + i], ARGV[1])
  redis.call('LTRIM', KEYS[guards + i], 0, tonumber(ARGV[2 * i + 1]) - 1)
  redis.call('EXPIRE', KEYS[guards + i], tonumber(ARGV[2 * i + 2]))
end
return 0
"""

@dataclass(frozen=True)
class Refusal:
    """Which limit said no and when to come back."""

    scope: str  # "phone", "ip", "global" or "verify"
    retry_after: int


@dataclass(frozen=True)
class Rule:
    """One budget: ``limit`` events per ``window`` seconds for one subject.

    ``name`` identifies the budget in the storage; the limit is not part of the key.
    """

    scope: str
    name: str
    subject: str
    limit: int
    window: int

    @property
    def key(self) -> str:
        return f"{KEY_PREFIX}/{self.name}/{self.subject}"


def send_rules(values: Any, phone: str, client: str, purpose: str) -> list[Rule]:
    """Every budget one send spends; ``phone`` and ``client`` are keyed digests.

    The number's budgets are per purpose, so requests for one flow (which anybody may make
    for any number) can never lock its owner out of another. The same list rebuilds the
    windows from the send log (:mod:`.ledger`), so both always agree.
    """
    number = f"{phone}/{purpose}"
    return [
        Rule("ip", "ip-hour", client, values.ip_per_hour, HOUR),
        Rule("ip", "ip-day", client, values.ip_per_day, DAY),
        Rule("phone", "phone-interval", number, 1, values.resend_interval),
        Rule("phone", "phone-hour", number, values.phone_per_hour, HOUR),
        Rule("phone", "phone-day", number, values.phone_per_day, DAY),
        Rule("global", "global-day", "site", values.global_per_day, DAY),
    ]


class Throttle:
    """Applies the parameter store's limits on one ``limits`` storage for all processes."""

    def __init__(
        self,
        storage: Storage | MemoryWindows,
        params: ParameterStore,
        *,
        fail_open: bool,
        enabled: Callable[[], bool] = lambda: True,
    ) -> None:
        self.storage = storage
        self._params = params
        self._fail_open = fail_open
        self._enabled = enabled
        self._script: Any = None
        self._lock = threading.Lock()

    # -- the budgets ----------------------------------------------------------------------

    def hit_send(self, phone: str, client: str, purpose: str = "register") -> Refusal | None:
        """Spend one send from every budget that covers this phone, purpose and client."""
        return self._apply(send_rules(self._params.values(), phone, client, purpose))

    def hit_send_if(
        self, phone: str, client: str, purpose: str, *, present: str, absent: Sequence[str]
    ) -> tuple[bool, Refusal | None]:
        """:meth:`hit_send` in the same round trip as a test of other storage keys.

        The budgets are spent only if the count at ``present`` is positive and none of
        ``absent`` is: then ``(True, refusal or None)``. ``(False, None)`` when the test
        fails, when the limits are off, or when the storage cannot test and take in one step
        (only Redis, not Cluster, can): nothing was spent, and the caller takes the long way.
        A storage error propagates as the storage's own exception, for the caller to handle.
        """
        storage = self.storage
        if (
            not isinstance(storage, RedisStorage)
            or isinstance(storage, RedisClusterStorage)
            or not self._enabled()
        ):
            return False, None
        rules = send_rules(self._params.values(), phone, client, purpose)
        guards = [storage.prefixed_key(key) for key in (present, *absent)]
        return self._acquire_in_redis(storage, rules, guards)

    def hit(self, rules: Sequence[Rule]) -> Refusal | None:
        """Spend one event from each of a host's own ``rules``, all or nothing.

        The same storage, scripts and guarantees as the extension's budgets, for a host's
        budgets of its own (the example site's password sign-in). Use keyed digests as
        subjects, never raw numbers; raises :class:`LimiterUnavailable` like a send.
        """
        return self._apply(rules)

    def counts(self, rules: Sequence[Rule]) -> list[int]:
        """How many events each rule's window holds now, spending nothing."""
        return peek_counts(self, rules)

    def hit_verify(self, phone: str) -> Refusal | None:
        """Spend one code check for this phone, bounding guesses across several codes."""
        values = self._params.values()
        return self._apply([Rule("verify", "verify-hour", phone, values.verify_per_hour, HOUR)])

    def reset(self) -> None:
        """Forget the extension's counters, and only those where the storage can tell them apart.

        The storage may be the host's Limiter's: wiping it would also forget the host's own
        limits. Redis (also Cluster and Sentinel) and ``memory://`` can find the extension's
        keys; other storages are reset whole.
        """
        storage = self.storage
        prefix = f"{KEY_PREFIX}/"
        if isinstance(storage, MemoryWindows):
            storage.clear_windows(prefix)
        elif isinstance(storage, RedisStorage):
            connection: Any = storage.get_connection()
            pattern = storage.prefixed_key(f"{prefix}*")  # braces are no glob syntax
            batch: list[Any] = []
            for key in connection.scan_iter(match=pattern, count=500):
                batch.append(key)
                if len(batch) >= 500:
                    connection.delete(*batch)
                    batch.clear()
            if batch:
                connection.delete(*batch)
        elif isinstance(storage, MemoryStorage):
            for key in list(storage.events) + list(storage.storage):
                if key.startswith(prefix):
                    storage.clear(key)
        else:
            storage.reset()

    # -- applying rules -------------------------------------------------------------------

    def _apply(self, rules: Sequence[Rule]) -> Refusal | None:
        if not self._enabled():
            return None  # the host's RATELIMIT_ENABLED = False turns every limit off.
        try:
            storage = self.storage
            if isinstance(storage, MemoryWindows):
                return self._acquire_in_memory(storage, rules)
            if isinstance(storage, RedisStorage):  # also Cluster (one hash tag) and Sentinel
                return self._acquire_in_redis(storage, rules)[1]
            if isinstance(storage, MovingWindowSupport):
                return self._acquire_moving(storage, rules)
            return self._acquire_fixed(storage, rules)
        except Exception as exc:  # any storage driver's connection error
            if self._fail_open:
                logger.error("Limiter storage unavailable, letting the request through: %s", exc)
                return None
            logger.error("Limiter storage unavailable, refusing the request: %s", exc)
            raise LimiterUnavailable("rate limit storage unavailable") from exc

    def _acquire_in_redis(
        self, storage: RedisStorage, rules: Sequence[Rule], guards: Sequence[str] = ()
    ) -> tuple[bool, Refusal | None]:
        """All rules in one round trip, all or nothing, whatever the number of processes;
        with ``guards`` (prefixed keys), only if they hold what :data:`_ACQUIRE_ALL` says."""
        if self._script is None:
            self._script = storage.get_connection().register_script(_ACQUIRE_ALL)
        now = repr(time.time())
        keys, args = [*guards], [now, len(guards)]
        for rule in rules:
            keys.append(storage.prefixed_key(rule.key))
            args += [rule.limit, rule.window]
        answer = self._script(keys=keys, args=args)
        if not answer:
            return True, None
        if answer == -1:
            return False, None
        index, oldest = int(answer[0]), float(answer[1])
        rule = rules[index - 1]
        return True, Refusal(rule.scope, _seconds(oldest + rule.window - float(now)))

    @staticmethod
    def _acquire_in_memory(storage: MemoryWindows, rules: Sequence[Rule]) -> Refusal | None:
        """All rules under the store's lock, all or nothing; no scan of other numbers' state."""
        now = time.time()
        windows = [Window(rule.name, rule.subject, rule.limit, rule.window) for rule in rules]
        index, frees_at = storage.acquire(windows, now)
        if not index:
            return None
        return Refusal(rules[index - 1].scope, _seconds(frees_at - now))

    def _acquire_moving(self, storage: Any, rules: Sequence[Rule]) -> Refusal | None:
        """Look at every rule, then take: the lock makes it all or nothing in this process.

        With a storage shared between processes (MongoDB) each take is still atomic on its
        own, so no window ever lets more through than its limit.
        """
        with self._lock:
            for rule in rules:
                _oldest, count = storage.get_moving_window(rule.key, rule.limit, rule.window)
                if count >= rule.limit:
                    return Refusal(rule.scope, self._moving_wait(storage, rule))
            for rule in rules:
                if not storage.acquire_entry(rule.key, rule.limit, rule.window):
                    return Refusal(rule.scope, self._moving_wait(storage, rule))
        return None

    @staticmethod
    def _moving_wait(storage: Any, rule: Rule) -> int:
        """Seconds until the window has room again: when its ``limit``-th newest entry expires.

        After an admin lowered a limit the window may hold more entries than the limit, and
        its oldest entry expiring frees no place; ``memory://`` lets us find the right one.
        Other storages only tell the oldest, which is exact unless the limit was lowered.
        """
        now = time.time()
        if isinstance(storage, MemoryStorage):
            entries = storage.events.get(rule.key, [])  # newest first
            if len(entries) >= rule.limit:
                return _seconds(entries[rule.limit - 1].atime + rule.window - now)
        oldest, _count = storage.get_moving_window(rule.key, rule.limit, rule.window)
        return _seconds(oldest + rule.window - now)

    def _acquire_fixed(self, storage: Storage, rules: Sequence[Rule]) -> Refusal | None:
        """Fixed windows (memcached): counted with ``incr``, still keyed by rule.

        The lock covers this process only; when another process took the last place between
        the test and the ``incr``, what this request took is given back where the storage
        can ``decr``, so a refusal still spends nothing.
        """
        with self._lock:
            for rule in rules:
                if storage.get(rule.key) >= rule.limit:
                    return Refusal(rule.scope, self._fixed_wait(storage, rule))
            taken: list[Rule] = []
            for rule in rules:
                taken.append(rule)
                if storage.incr(rule.key, rule.window) > rule.limit:
                    decr = getattr(storage, "decr", None)
                    if decr is not None:
                        for spent in taken:
                            decr(spent.key)
                    return Refusal(rule.scope, self._fixed_wait(storage, rule))
        return None

    @staticmethod
    def _fixed_wait(storage: Storage, rule: Rule) -> int:
        """Seconds until the fixed window ends and its count starts again."""
        return _seconds(storage.get_expiry(rule.key) - time.time())


def _seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


# -- read-only and one-time helpers (the human check) -------------------------------------------


def peek_counts(throttle: Throttle, rules: Sequence[Rule]) -> list[int]:
    """How many events each rule's window holds now, spending nothing.

    Zero everywhere while the host turned its limits off. Redis and ``memory://`` answer from
    the moving windows the sends fill (a read-only binary search on Redis); other storages from
    their fixed-window counters. A storage error raises :class:`LimiterUnavailable` unless the
    limits fail open, in which case nothing is known and every count is zero.
    """
    if not throttle._enabled():
        return [0 for _rule in rules]
    storage = throttle.storage
    try:
        if isinstance(storage, MemoryWindows):
            return [storage.count(rule.name, rule.subject, rule.window) for rule in rules]
        if isinstance(storage, MovingWindowSupport):
            return [
                int(storage.get_moving_window(rule.key, rule.limit, rule.window)[1])
                for rule in rules
            ]
        return [int(storage.get(rule.key)) for rule in rules]
    except Exception as exc:
        if throttle._fail_open:
            logger.error("Limiter storage unavailable, usage unknown: %s", exc)
            return [0 for _rule in rules]
        logger.error("Limiter storage unavailable: %s", exc)
        raise LimiterUnavailable("rate limit storage unavailable") from exc


def send_usage_rules(throttle: Throttle, client: str) -> list[Rule]:
    """The client's hourly budget and the site's daily one, taken from :func:`send_rules` so
    they are the very windows a send spends (``client`` is the keyed digest of the client
    network; a test checks that sends show up here)."""
    rules = send_rules(throttle._params.values(), "", client, "register")
    return [rule for rule in rules if rule.name in ("ip-hour", "global-day")]


def count_use(throttle: Throttle, name: str, token: str, ttl: int) -> int:
    """Count one use of ``token`` and return how many there were within ``ttl`` seconds.

    One atomic ``incr`` on the limits storage, shared by every process and kept whatever the
    host's limits switch says: 1 means first use. When the storage fails:
    :class:`LimiterUnavailable`, or 1 (logged) if the limits fail open.
    """
    key = f"{KEY_PREFIX}/{name}/{token}"
    try:
        return int(throttle.storage.incr(key, ttl))
    except Exception as exc:
        if throttle._fail_open:
            logger.error("Limiter storage unavailable, one-time use not enforced: %s", exc)
            return 1
        logger.error("Limiter storage unavailable: %s", exc)
        raise LimiterUnavailable("rate limit storage unavailable") from exc
