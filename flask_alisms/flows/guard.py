"""What every send consults before it spends: the provider's health and durable budgets.

Why here and not per process: an outage seen by one worker must change the answers of all of
them (or each worker would answer registered and unregistered numbers differently until it
hit the failure itself), and a budget must outlive the process and the limiter storage. So:

- :class:`SendTimes` draws the delay of a skipped send from recent real send durations in
  the send log, shared by every worker and kept across restarts;
- the provider breaker lives in the limiter storage, beside the budgets it protects;
- when that storage has lost its state (its epoch key is gone: a Redis restart or flush, a
  new ``memory://`` process), the send windows are rebuilt from the send log, the durable
  record of spend, before anything is spent. A warm request pays one storage read for all
  of this (one ``MGET``), and on Redis not even that: the read rides on the script that
  spends the budgets (:func:`hit_send_if_closed`).
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import math
import random
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from limits.storage import MemoryStorage, MovingWindowSupport, RedisClusterStorage, RedisStorage

from ..sms import Category
from .throttle import DAY, KEY_PREFIX, Refusal, Rule, Throttle, send_rules
from .windows import MemoryWindows

logger = logging.getLogger(__name__)

#: Outside the limits' ``{alisms}/`` prefix, so :meth:`Throttle.reset` (an admin's deliberate
#: reset) does not make the next request rebuild what was just forgotten.
EPOCH_KEY = "alisms-epoch"
REBUILD_LOCK = "alisms-epoch-lock"
#: The provider breaker, inside the prefix: a reset also closes it.
OPEN_KEY = f"{KEY_PREFIX}/provider/open"
SUSPECT_KEY = f"{KEY_PREFIX}/provider/suspect"
PROBE_KEY = f"{KEY_PREFIX}/provider/probe"
_FOREVER = 10 * 365 * DAY
_REBUILD_WAIT = 5.0


class Health(enum.Enum):
    CLOSED = "closed"  # the provider works: send
    OPEN = "open"  # it failed for everyone within the cooldown: answer 503, call nobody
    HALF_OPEN = "half_open"  # the cooldown is over: one real send may probe it


@dataclass(frozen=True)
class Snapshot:
    epoch: bool
    health: Health


def read(storage: Any) -> Snapshot:
    """The epoch marker and the breaker's state, in one round trip where the storage allows."""
    keys = (EPOCH_KEY, OPEN_KEY, SUSPECT_KEY)
    if isinstance(storage, RedisStorage) and not isinstance(storage, RedisClusterStorage):
        connection: Any = storage.get_connection(True)
        values = [int(v or 0) for v in connection.mget([storage.prefixed_key(k) for k in keys])]
    else:
        values = [storage.get(key) for key in keys]
    epoch, down, suspect = (value > 0 for value in values)
    health = Health.OPEN if down else Health.HALF_OPEN if suspect else Health.CLOSED
    return Snapshot(epoch, health)


def hit_send_if_closed(
    throttle: Throttle, phone: str, client: str, purpose: str
) -> tuple[bool, Refusal | None]:
    """:meth:`~.throttle.Throttle.hit_send`, in the round trip of :func:`read`, when warm.

    In the usual state (the epoch is there, the breaker closed: what :func:`read` would find
    before the send spends) the budgets are spent at once: ``(True, refusal or None)``.
    Otherwise, or on a storage that cannot do it in one step, nothing happened:
    ``(False, None)``, and the caller reads, rebuilds or answers from the breaker as before.
    """
    return throttle.hit_send_if(
        phone, client, purpose, present=EPOCH_KEY, absent=(OPEN_KEY, SUSPECT_KEY)
    )


def trip(storage: Any, cooldown: float) -> None:
    """Open the breaker for ``cooldown`` seconds; it stays suspect until a probe succeeds."""
    storage.clear(PROBE_KEY)
    storage.incr(OPEN_KEY, max(1, math.ceil(cooldown)))
    storage.incr(SUSPECT_KEY, DAY)


def recovered(storage: Any) -> None:
    for key in (OPEN_KEY, SUSPECT_KEY, PROBE_KEY):
        storage.clear(key)


def take_probe(storage: Any, seconds: float) -> bool:
    """Whether this request is the one that may try the provider after the cooldown."""
    return int(storage.incr(PROBE_KEY, max(1, math.ceil(seconds)))) == 1


# -- durable budgets ------------------------------------------------------------------------


@dataclass(frozen=True)
class Spend:
    """One send-log row that spent the send budgets."""

    at: dt.datetime  # naive UTC
    purpose: str
    phone: str  # keyed digest
    client: str  # keyed digest of the client network


def rebuild(
    storage: Any,
    values: Any,
    load: Callable[[dt.datetime], Iterable[Spend]],
    failing_for: Callable[[], float | None],
    cooldown: float,
) -> None:
    """Refill every send window from the log unless another process is doing it.

    The breaker is restored too: ``failing_for`` gives the age in seconds of the last real
    send if it failed for every number (None otherwise), so a new worker does not answer
    differently from the others while the provider is down.

    Raises when the log cannot be read or the rebuild does not finish in time: the caller
    refuses the request (503) rather than send against budgets it cannot see.
    """
    if int(storage.incr(REBUILD_LOCK, 30)) != 1:
        deadline = time.monotonic() + _REBUILD_WAIT
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if storage.get(EPOCH_KEY) > 0:
                return
        raise TimeoutError("another process is still rebuilding the send budgets")
    try:
        if storage.get(EPOCH_KEY) > 0:
            # Another process rebuilt between our read and our lock: rebuilding again would
            # replace windows that requests have spent since (not logged yet) with the log.
            return
        now = time.time()
        since = dt.datetime.fromtimestamp(now - DAY, dt.timezone.utc).replace(tzinfo=None)
        windows: dict[str, tuple[Rule, list[float]]] = {}
        for spend in load(since):
            stamp = spend.at.replace(tzinfo=dt.timezone.utc).timestamp()
            for rule in send_rules(values, spend.phone, spend.client, spend.purpose):
                if stamp > now - rule.window:
                    windows.setdefault(rule.key, (rule, []))[1].append(stamp)
        _write(storage, windows.values(), now)
        age = failing_for()
        if age is not None:
            storage.incr(SUSPECT_KEY, DAY)
            if age < cooldown:
                storage.incr(OPEN_KEY, max(1, math.ceil(cooldown - age)))
        storage.incr(EPOCH_KEY, _FOREVER)
        # Windows to rebuild mean the storage lost what it held (a restart, a flush).
        logger.log(
            logging.WARNING if windows else logging.INFO,
            "Send budgets rebuilt from the send log into the limiter storage: %d windows",
            len(windows),
        )
    finally:
        storage.clear(REBUILD_LOCK)


def _write(storage: Any, windows: Iterable[tuple[Rule, list[float]]], now: float) -> None:
    """Put each window's entries back, newest first, trimmed to its limit.

    Redis and ``memory://`` keep the original times, so a window ends when it would have;
    other storages can only stamp "now", which is stricter, never looser.
    """
    items = [(rule, sorted(stamps, reverse=True)[: max(rule.limit, 1)]) for rule, stamps in windows]
    if isinstance(storage, RedisStorage) and not isinstance(storage, RedisClusterStorage):
        connection: Any = storage.get_connection()
        pipe = connection.pipeline()
        for rule, stamps in items:
            key = storage.prefixed_key(rule.key)
            pipe.delete(key)
            pipe.rpush(key, *[repr(stamp) for stamp in stamps])
            pipe.expire(key, max(1, math.ceil(stamps[0] + rule.window - now)))
        pipe.execute()
    elif isinstance(storage, MemoryWindows):
        for rule, stamps in items:
            storage.seed(rule.name, rule.subject, stamps, rule.window)
    elif isinstance(storage, MemoryStorage):
        from limits.storage.memory import Entry

        for rule, stamps in items:
            entries = []
            for stamp in stamps:
                entry = Entry(rule.window)
                entry.atime, entry.expiry = stamp, stamp + rule.window
                entries.append(entry)
            with storage.locks[rule.key]:
                storage.events[rule.key] = entries
    elif isinstance(storage, MovingWindowSupport):
        for rule, stamps in items:
            for _ in stamps:
                storage.acquire_entry(rule.key, rule.limit, rule.window)
    else:
        for rule, stamps in items:
            for _ in stamps:
                storage.incr(rule.key, rule.window)


def persistence_warning(storage: Any) -> str | None:
    """Why the limiter storage may lose the budgets, for ``flask alisms check``; None if fine.

    The send log rebuilds them, but only what the log holds (a day of sends): a storage that
    persists is still the first line.
    """
    if isinstance(storage, (MemoryStorage, MemoryWindows)):
        return (
            "the send limits live in this process's memory (memory://): each worker counts "
            "on its own; use ALISMS_LIMITER_STORAGE_URI = 'redis://...' with several workers"
        )
    if not isinstance(storage, RedisStorage):
        return None
    try:
        connection: Any = storage.get_connection()
        save = connection.config_get("save").get("save", "")
        appendonly = connection.config_get("appendonly").get("appendonly", "no")
    except Exception as exc:  # CONFIG renamed or not allowed (managed Redis), or down
        return (
            f"could not tell whether the limiter's Redis persists ({type(exc).__name__}): "
            "make sure it saves (RDB 'save' or 'appendonly yes')"
        )
    if not str(save).strip() and str(appendonly).lower() != "yes":
        return (
            "the limiter's Redis has no persistence (save '' and appendonly no): a restart "
            "forgets the limits until they are rebuilt from the send log; enable "
            "'appendonly yes' or RDB snapshots"
        )
    return None


# -- what the send log says ----------------------------------------------------------------


def recent_send_times(session: Any, log: Any, size: int) -> list[float]:
    """The durations (ms) of the last ``size`` real sends, newest first (index on category)."""
    statement = (
        sa.select(log.duration_ms).where(log.category == "sent").order_by(log.id.desc()).limit(size)
    )
    return list(session.scalars(statement))


def spends(session: Any, log: Any, since: dt.datetime) -> list[Spend]:
    """Every send since ``since`` that spent the budgets (the rows with digests)."""
    statement = sa.select(log.created_at, log.purpose, log.phone_digest, log.client_digest).where(
        log.created_at >= since, log.phone_digest.is_not(None)
    )
    return [
        Spend(row.created_at, row.purpose, row.phone_digest, row.client_digest or "")
        for row in session.execute(statement)
    ]


def failing_for(session: Any, log: Any) -> float | None:
    """Seconds since the last real send, if it failed for a reason not about its number."""
    statement = (
        sa.select(log.created_at, log.category, log.code)
        .where(log.phone_digest.is_not(None), log.category != "skipped")
        .order_by(log.id.desc())
        .limit(1)
    )
    row = session.execute(statement).first()
    if row is None or row.category in ("sent", Category.INVALID_NUMBER.value):
        return None
    if row.code == "isv.BUSINESS_LIMIT_CONTROL":
        return None
    at = row.created_at.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (dt.datetime.now(dt.timezone.utc) - at).total_seconds())


# -- how long a real send takes -------------------------------------------------------------


class SendTimes:
    """Recent real send durations, from the send log every worker writes.

    A skipped send sleeps one of them drawn at random, so its time has the distribution of a
    real send's from the first request of a new worker on. Real and skipped sends both call
    :meth:`sample` at the same point, so the occasional reload costs both alike.
    """

    REFRESH_SECONDS = 30.0
    SIZE = 200
    #: Until a site has sent anything: about what Aliyun takes from mainland China.
    PRIOR_MS = (60.0, 180.0)

    def __init__(self) -> None:
        self._samples: list[float] = []
        self._loaded_at = -math.inf
        self._recent: dict[tuple[str, bool], deque[float]] = {}
        self._lock = threading.Lock()

    def sample(self, load: Callable[[int], Sequence[float]]) -> float:
        """Seconds a real send takes, drawn from the recent ones (``load`` reads the log)."""
        if time.monotonic() - self._loaded_at > self.REFRESH_SECONDS:
            # A database error propagates: the request is refused before it spends anything.
            fresh = [float(ms) for ms in load(self.SIZE) if ms is not None and ms >= 0]
            with self._lock:
                self._samples, self._loaded_at = fresh, time.monotonic()
        samples = self._samples
        if not samples:
            return random.uniform(*self.PRIOR_MS) / 1000.0  # noqa: S311
        return random.choice(samples) / 1000.0  # noqa: S311

    def even_out(self, path: tuple[str, bool], seconds: float) -> float:
        """Seconds to wait so ``path`` (purpose, real?) takes as long as the other path did.

        Finding a user costs more than finding none (the row is loaded): a skipped
        ``register`` would be slower than a real one by that much. Each path's recent mean
        is kept (median of the last 51); the faster one waits the difference.
        """
        other = (path[0], not path[1])
        with self._lock:
            recent = self._recent.setdefault(path, deque(maxlen=51))
            recent.append(seconds)
            theirs = self._recent.get(other)
            if not theirs:
                return 0.0
            # Medians: one slow outlier (a pause, a reconnect) must not pad the next 50.
            return max(0.0, statistics.median(theirs) - statistics.median(recent))

    @staticmethod
    def sleep(seconds: float) -> None:
        """Wait ``seconds`` to within microseconds: sleep, then spin the last millisecond.

        ``time.sleep`` alone overshoots by about 0.1 ms on Linux, which is as large as the
        differences being evened out and which a latency classifier finds on a quiet machine.
        """
        deadline = time.perf_counter() + seconds
        if seconds > 0.002:
            time.sleep(seconds - 0.001)
        while time.perf_counter() < deadline:
            pass

    def add(self, duration_ms: float) -> None:
        with self._lock:
            self._samples = [*self._samples[-(self.SIZE - 1) :], duration_ms]

