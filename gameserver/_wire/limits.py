"""Limits Autobahn does not have: a rate per socket, and a cap on what a
client that does not read may cost."""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer, IReactorTime
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
