"""The in-process moving windows behind ``memory://`` limits: exact, bounded, expiring as it goes.

Why not ``limits``' MemoryStorage: after every operation it schedules a pass over *every* key
it holds, under the GIL, so each number or IP ever seen makes every later request of the
worker (on any route) slower, and nothing bounds its memory. Here each rule (``phone-day``,
``ip-hour``, ...) keeps its subjects in a dict plus a queue of pushes in time order; a request
drops only the state whose window has passed, from the front of those queues, so its cost does
not depend on how many numbers or IPs are held.

The bound: at most ``max_keys`` subjects per rule. What happens at it: a request that needs a
*new* subject in a full rule is refused like any limit (retry when the rule's oldest state
expires) and a warning is logged; live state is never dropped early, because forgetting it
would let more sends through than the limits allow. Accepted sends create the send rules'
state, so the global daily budget already bounds those (1000 a day by default); the bound
mostly stops a flood of code checks for made-up numbers from growing the worker without end.
"""

from __future__ import annotations

import bisect
import heapq
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Union

logger = logging.getLogger(__name__)

#: Subjects per rule; a number held by the three phone rules costs about 400 bytes in all
#: (benchmarks/README.md).
DEFAULT_MAX_KEYS = 100_000

#: Queue entries a request may drop per rule (see _RuleState.expire).
EXPIRE_BUDGET = 64

#: One subject's pushes, oldest first: a bare float for one push (most subjects) saves a list.
_Times = Union[float, list]


@dataclass
class _RuleState:
    """Every subject of one rule, and its pushes in the order they happened."""

    window: float  # the longest window seen: expiry never comes before the rule's own
    subjects: dict[str, _Times] = field(default_factory=dict)
    queue_times: deque[float] = field(default_factory=deque)
    queue_subjects: deque[str] = field(default_factory=deque)
    warned_at: float = 0.0

    def expire(self, now: float, budget: int | None = EXPIRE_BUDGET) -> None:
        """Drop the subjects whose newest push is out of the window, oldest first.

        At most ``budget`` queue entries a call, so that no request pays for a long quiet
        spell: each push adds one entry and each request may drop several, so the queue
        never falls behind. State past its window that is still held counts for nothing.
        """
        times, subjects, held = self.queue_times, self.queue_subjects, self.subjects
        edge = now - self.window
        left = len(times) if budget is None else budget
        while times and times[0] < edge and left > 0:
            left -= 1
            times.popleft()
            subject = subjects.popleft()
            value = held.get(subject)
            if value is not None and _newest(value) < edge:
                del held[subject]

    def oldest_expiry(self, now: float) -> float:
        return (self.queue_times[0] if self.queue_times else now) + self.window


@dataclass(frozen=True)
class Window:
    """One rule of a request as the store sees it: ``limit`` pushes per ``window`` seconds."""

    name: str
    subject: str
    limit: int
    window: int


class MemoryWindows:
    """Exact moving windows in this process, all-or-nothing per request, thread-safe."""

    def __init__(self, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self._rules: dict[str, _RuleState] = {}
        self._lock = threading.Lock()
        # Plain counters (the provider breaker, one-time tokens, the rebuild's marker): a
        # value and its expiry, plus a heap of expiries so that expiring costs O(log n).
        self._counters: dict[str, tuple[int, float]] = {}
        self._expiries: list[tuple[float, str]] = []

    def __len__(self) -> int:
        """How many subjects are held over all rules (expired ones may linger until a push)."""
        return sum(len(state.subjects) for state in self._rules.values())

    def acquire(self, windows: Sequence[Window], now: float | None = None) -> tuple[int, float]:
        """Push ``now`` into every window, or into none.

        Returns ``(0, 0.0)`` when all took it, else ``(i, at)`` for the first window ``i``
        (1-based) that refused, ``at`` being when it has room again: like the Redis script.
        """
        now = time.time() if now is None else now
        with self._lock:
            states = []
            for index, item in enumerate(windows, start=1):
                state = self._rules.get(item.name)
                if state is None:
                    state = self._rules[item.name] = _RuleState(float(item.window))
                elif item.window > state.window:
                    state.window = float(item.window)
                state.expire(now)
                states.append(state)
                if item.limit < 1:
                    return index, now + item.window
                value = state.subjects.get(item.subject)
                if value is None and len(state.subjects) >= self.max_keys:
                    state.expire(now, budget=None)  # full: first drop all that expired
                if value is None:
                    if len(state.subjects) >= self.max_keys:
                        self._warn_full(item.name, state, now)
                        return index, state.oldest_expiry(now)
                    continue
                frees_at = _frees_at(value, item, now)
                if frees_at is not None:
                    return index, frees_at
            for item, state in zip(windows, states):
                state.subjects[item.subject] = _pushed(
                    state.subjects.get(item.subject), now, now - item.window
                )
                state.queue_times.append(now)
                state.queue_subjects.append(item.subject)
        return 0, 0.0

    def count(self, name: str, subject: str, window: int, now: float | None = None) -> int:
        """How many pushes ``subject`` has in the last ``window`` seconds; spends nothing."""
        now = time.time() if now is None else now
        with self._lock:
            state = self._rules.get(name)
            value = state.subjects.get(subject) if state is not None else None
            if value is None:
                return 0
            times = [value] if isinstance(value, float) else value
            return len(times) - bisect.bisect_left(times, now - window)

    def seed(self, name: str, subject: str, stamps: Sequence[float], window: int) -> None:
        """Put back pushes recorded elsewhere (the send log), keeping their original times."""
        if not stamps:
            return
        with self._lock:
            state = self._rules.get(name)
            if state is None:
                state = self._rules[name] = _RuleState(float(window))
            elif window > state.window:
                state.window = float(window)
            ordered = sorted(stamps)
            state.subjects[subject] = ordered[0] if len(ordered) == 1 else list(ordered)
            # The queue must stay in time order: seeded pushes are older than what follows.
            for stamp in ordered:
                index = bisect.bisect_left(state.queue_times, stamp)
                state.queue_times.insert(index, stamp)
                state.queue_subjects.insert(index, subject)

    # -- counters, with the subset of ``limits``' Storage API the flows use ----------------

    def get(self, key: str) -> int:
        with self._lock:
            self._expire_counters(time.time())
            item = self._counters.get(key)
            return item[0] if item is not None else 0

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add ``amount``; a new counter lives ``expiry`` seconds (a fixed window)."""
        now = time.time()
        with self._lock:
            self._expire_counters(now)
            item = self._counters.get(key)
            if item is None:
                if len(self._counters) >= self.max_keys:
                    raise RuntimeError("in-memory limits: too many counters held")
                item = (0, now + expiry)
                heapq.heappush(self._expiries, (item[1], key))
            value = item[0] + amount
            self._counters[key] = (value, item[1])
            return value

    def clear(self, key: str) -> None:
        with self._lock:
            self._counters.pop(key, None)

    def _expire_counters(self, now: float) -> None:
        heap, counters = self._expiries, self._counters
        while heap and heap[0][0] <= now:
            at, key = heapq.heappop(heap)
            item = counters.get(key)
            if item is not None and item[1] == at:
                del counters[key]

    def clear_windows(self, prefix: str) -> None:
        """Forget every window and the counters whose key starts with ``prefix``, as
        :meth:`Throttle.reset` does in Redis; other counters (the rebuild's marker) stay."""
        with self._lock:
            self._rules.clear()
            for key in [key for key in self._counters if key.startswith(prefix)]:
                del self._counters[key]

    def reset(self) -> None:
        """Forget everything, as a restart of the process (or a Redis FLUSHDB) would."""
        with self._lock:
            self._rules.clear()
            self._counters.clear()
            self._expiries.clear()

    def _warn_full(self, name: str, state: _RuleState, now: float) -> None:
        if now - state.warned_at >= 60:  # once a minute per rule, not once per request
            state.warned_at = now
            logger.warning(
                "In-memory limits: rule %s holds %d subjects (ALISMS_LIMITS_MEMORY_MAX_KEYS); "
                "refusing new ones until older windows expire. Use Redis limits for more.",
                name,
                self.max_keys,
            )


def _newest(value: _Times) -> float:
    return value if isinstance(value, float) else value[-1]


def _frees_at(value: _Times, item: Window, now: float) -> float | None:
    """None when the window has room, else when its ``limit``-th newest push leaves it."""
    edge = now - item.window
    if isinstance(value, float):
        return value + item.window if item.limit <= 1 and value >= edge else None
    inside = len(value) - bisect.bisect_left(value, edge)  # the edge counts as inside
    if inside < item.limit:
        return None
    return float(value[len(value) - item.limit]) + item.window


def _pushed(value: _Times | None, now: float, edge: float) -> _Times:
    """``value`` with ``now`` added and the pushes out of the window dropped."""
    if value is None or (isinstance(value, float) and value < edge):
        return now
    times = [value] if isinstance(value, float) else value
    if times and times[-1] > now:  # the clock went back: keep the list sorted
        bisect.insort(times, now)
    else:
        times.append(now)
    gone = bisect.bisect_left(times, edge)
    if gone and 2 * gone >= len(times):  # in halves: each push costs O(1) on average
        del times[:gone]
    return times[0] if len(times) == 1 else times
