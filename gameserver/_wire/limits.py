"""Limits Autobahn does not have: a rate per socket, and a cap on what a
client that does not read may cost."""

from __future__ import annotations

from collections.abc import Callable, Hashable

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from zope.interface import implementer


class TokenBucket:
    """So one chatty client cannot slow down everyone else."""

    __slots__ = ("_burst", "_clock", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: int, clock: IReactorTime) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock.seconds()

    def take(self) -> bool:
        """Spend one token if there is one."""
        now = self._clock.seconds()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Deadlines:
    """Many timeouts of one length for the price of one timer.

    Nearly every connection cancels its timeout (it sends its request, it
    validates), so a ``callLater`` each would push a call onto the
    reactor's heap only to cancel it again. Timeouts of one length fall due
    in the order they started: an ordered dict holds them, and one timer,
    set for the oldest, serves them all.
    """

    __slots__ = ("_call", "_clock", "_due", "_sweeping", "timeout")

    def __init__(self, clock: IReactorTime, timeout: float) -> None:
        self._clock = clock
        self.timeout = timeout
        self._due: dict[Hashable, tuple[float, Callable[[], object]]] = {}
        self._call: IDelayedCall | None = None
        self._sweeping = False

    def start(self, key: Hashable, expired: Callable[[], object]) -> None:
        """Call ``expired`` in ``timeout`` seconds unless ``key`` is cancelled."""
        self._due[key] = (self._clock.seconds() + self.timeout, expired)
        if self._call is None and not self._sweeping:
            self._call = self._clock.callLater(self.timeout, self._sweep)

    def waiting(self) -> list[Hashable]:
        """The keys not yet cancelled nor expired, oldest first."""
        return list(self._due)

    def cancel(self, key: Hashable) -> None:
        self._due.pop(key, None)

    def __len__(self) -> int:
        return len(self._due)

    def _sweep(self) -> None:
        self._call = None
        self._sweeping = True
        due = self._due
        try:
            now = self._clock.seconds()
            while due:
                key, (when, expired) = next(iter(due.items()))
                if when > now:
                    break
                del due[key]
                expired()  # which may start or cancel others
        finally:
            self._sweeping = False
        if due:
            when = next(iter(due.values()))[0]
            self._call = self._clock.callLater(max(when - now, 0), self._sweep)


@implementer(IPushProducer)
class OutboundWatch:
    """Counts what is queued for a socket while its peer is not reading.

    Registered as the transport's streaming producer, it is paused once the
    transport buffers more than it can send; every byte written while
    paused stays in memory, so past ``limit`` of them the client is cut off.
    """

    __slots__ = ("limit", "paused", "queued")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.queued = 0
        self.paused = False

    def pauseProducing(self) -> None:
        # Twisted calls this again on every write while the buffer is full.
        if not self.paused:
            self.paused = True
            self.queued = 0

    def resumeProducing(self) -> None:
        self.paused = False
        self.queued = 0

    def stopProducing(self) -> None:
        self.paused = True

    def admit(self, size: int) -> bool:
        if self.paused:
            self.queued += size
            return self.queued <= self.limit
        return True
