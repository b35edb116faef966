"""The abuse limits' counters in this process's memory.

Each counter is forgotten once it says no more than a fresh one would (a
bucket full again, failures forgiven), so that a flood of new addresses or
usernames cannot grow memory for good. Counters are looked at oldest
first, a couple for every new one, and those expired are dropped: the
sweep keeps pace with the flood at a constant cost per counter made,
never a scan of them all on the reactor's thread.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from gameserver._interfaces import ILimiter

#: Counters looked at, oldest first, for each new one.
SWEEP_STEP = 2


@implementer(ILimiter)
class MemoryLimiter:
    def __init__(self) -> None:
        #: Buckets: key -> [tokens, stamp, expires].
        self._buckets: dict[str, list[float]] = {}
        #: Attempts: key -> [count, waiting until, expires].
        self._attempts: dict[str, list[float]] = {}
        #: Sockets by address: [open, not yet validated].
        self._sockets: dict[str, list[int]] = {}
        self._tables = {"bucket": self._buckets, "attempt": self._attempts}
        #: Every key counted, as (table, key), oldest first: swept in turn;
        #: each is listed once, however often its counter is made again.
        self._order: dict[tuple[str, str], None] = {}

    def take(self, key: str, now: float, rate: float, burst: int) -> Deferred[float]:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [float(burst), now, now]
            self._new("bucket", key, now)
        tokens, stamp = bucket[0], bucket[1]
        if now > stamp:
            tokens = min(float(burst), tokens + (now - stamp) * rate)
            stamp = now
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / rate
        bucket[0], bucket[1] = tokens, stamp
        bucket[2] = stamp + (burst - tokens) / rate
        return succeed(wait)

    def attempt(
        self,
        key: str,
        now: float,
        free: int,
        backoff: float,
        most: float,
        forget: float,
    ) -> Deferred[float]:
        state = self._attempts.get(key)
        if state is not None and state[2] <= now:
            state = None
        if state is None:
            state = self._attempts[key] = [0.0, 0.0, now]
            self._new("attempt", key, now)
        if state[1] > now:
            return succeed(state[1] - now)
        state[0] += 1
        if state[0] >= free:
            state[1] = now + min(backoff * 2.0 ** (state[0] - free), most)
        state[2] = max(now, state[1]) + forget
        return succeed(0.0)

    def forgive(self, key: str, reset: bool) -> None:
        state = self._attempts.get(key)
        if state is None:
            return
        if reset:
            del self._attempts[key]
        elif state[0] > 0:
            state[0] -= 1

    def open_socket(
        self, address: str, most_open: int, most_unvalidated: int
    ) -> Deferred[int]:
        counts = self._sockets.get(address)
        if counts is None:
            self._sockets[address] = [1, 1]
            return succeed(0)
        if counts[0] >= most_open:
            return succeed(1)
        if counts[1] >= most_unvalidated:
            return succeed(2)
        counts[0] += 1
        counts[1] += 1
        return succeed(0)

    def socket_changed(self, address: str, opened: int, unvalidated: int) -> None:
        counts = self._sockets.get(address)
        if counts is None:
            return
        counts[0] = max(0, counts[0] + opened)
        counts[1] = max(0, counts[1] + unvalidated)
        if not counts[0]:
            del self._sockets[address]

    def sockets(self, address: str) -> Deferred[tuple[int, int]]:
        """The address's open and unvalidated sockets (for tests and metrics)."""
        counts = self._sockets.get(address)
        return succeed((0, 0) if counts is None else (counts[0], counts[1]))

    def __len__(self) -> int:
        """Counters held: buckets, attempts and addresses with sockets."""
        return len(self._buckets) + len(self._attempts) + len(self._sockets)

    def _new(self, table: str, key: str, now: float) -> None:
        """``key`` was just made in ``table``: sweep a little, then list it."""
        order, tables = self._order, self._tables
        for _ in range(min(SWEEP_STEP, len(order))):
            listed = next(iter(order))
            del order[listed]
            counters = tables[listed[0]]
            counter = counters.get(listed[1])
            if counter is not None and counter[2] >= now:  # a new one: ==
                order[listed] = None  # still counting: looked at again later
            elif counter is not None:
                del counters[listed[1]]
        order.setdefault((table, key))
