"""The abuse limits' counters on Redis, shared by every process.

Each limit is one script call on one key (``scripts.TAKE``, ``ATTEMPT``,
``FORGIVE``), and every key expires once it says no more than a fresh one
would. Open sockets are counted per address in a hash with a field per
process, summed by the script (``OPEN_SOCKET``, ``SOCKET_CHANGED``): a
process that dies leaves its fields behind only until it is buried (then
``forget_process`` removes them, the addresses being listed in a set of
its own, kept by the same scripts), so its sockets stop counting with it.

A validation or a close is sent without waiting, and may be lost (Redis
down a moment, or it ran and the answer was lost). So the process keeps
its own counts of the sockets it counted, exact whatever Redis answers,
and an address whose change failed is written again as those counts say
(``SET_SOCKETS``) at the next call that succeeds, or within
``REPAIR_EVERY`` seconds; never while an ``OPEN_SOCKET`` of that address
is out, whose count the write would undo.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from gameserver._interfaces import ILimiter
from gameserver._redis import keys, scripts
from gameserver._redis.connection import RedisConnection, Script, quietly
from gameserver._redis.store import pairs

#: Milliseconds an address's socket counts live after its last new socket:
#: only a socket open longer than that, with no other since, goes uncounted.
SOCKETS_TTL_MS = 24 * 3600 * 1000
#: Seconds between tries at writing again the counts a failure left wrong.
REPAIR_EVERY = 1.0


@implementer(ILimiter)
class RedisLimiter:
    def __init__(
        self,
        redis: RedisConnection,
        process_id: str,
        clock: IReactorTime | None = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = reactor
        self._redis = redis
        self._process = process_id
        self._clock: IReactorTime = clock
        self._listed = keys.process_addresses(process_id)
        #: This process's counted sockets by address, [open, unvalidated]:
        #: what Redis holds in its fields, once every change reached it.
        #: An address stays while it may be in the process's set.
        self._counts: dict[str, list[int]] = {}
        #: ``OPEN_SOCKET`` calls out, by address.
        self._opening: dict[str, int] = {}
        #: Addresses whose fields in Redis may be wrong (a change failed).
        self._dirty: set[str] = set()
        self._retry: IDelayedCall | None = None
        self._stopped = False

    def _run(
        self, script: Script, key: str | list[str], args: list[Any]
    ) -> Deferred[Any]:
        return self._redis.run(script, [key] if isinstance(key, str) else key, args)

    def take(self, key: str, now: float, rate: float, burst: int) -> Deferred[float]:
        return self._run(
            scripts.TAKE, keys.limit("bucket", key), [repr(now), repr(rate), burst]
        ).addCallback(float)

    def attempt(
        self,
        key: str,
        now: float,
        free: int,
        backoff: float,
        most: float,
        forget: float,
    ) -> Deferred[float]:
        return self._run(
            scripts.ATTEMPT,
            keys.limit("attempts", key),
            [repr(now), free, repr(backoff), repr(most), repr(forget)],
        ).addCallback(float)

    def forgive(self, key: str, reset: bool) -> None:
        self._run(
            scripts.FORGIVE,
            keys.limit("attempts", key),
            ["reset" if reset else "one"],
        ).addErrback(quietly)

    # Sockets

    def open_socket(
        self, address: str, most_open: int, most_unvalidated: int
    ) -> Deferred[int]:
        opening = self._opening
        opening[address] = opening.get(address, 0) + 1
        sent = self._redis.connected  # else it fails unsent: nothing to repair

        def counted(reply: Any) -> int:
            answer = int(reply)
            if answer == 0:
                counts = self._counts.setdefault(address, [0, 0])
                counts[0] += 1
                counts[1] += 1
            return answer

        def failed(failure: Failure) -> Failure:
            if sent:  # it may have run, its answer lost
                self._dirty.add(address)
            return failure

        def out(outcome: Any) -> Any:
            left = opening[address] - 1
            if left:
                opening[address] = left
            else:
                del opening[address]
                counts = self._counts.get(address)
                if counts is not None and not counts[0]:
                    # Its last socket here closed while this was out: the
                    # address leaves the process's set now, by a repair.
                    del self._counts[address]
                    self._dirty.add(address)
            if isinstance(outcome, Failure):
                self._later()
            else:
                self._repair()
            return outcome

        return (
            self._run(
                scripts.OPEN_SOCKET,
                [keys.address_sockets(address), self._listed],
                [self._process, most_open, most_unvalidated, SOCKETS_TTL_MS, address],
            )
            .addCallback(counted)
            .addErrback(failed)
            .addBoth(out)
        )

    def socket_changed(self, address: str, opened: int, unvalidated: int) -> None:
        counts = self._counts.get(address)
        if counts is None:
            return  # no socket of this address was counted here
        counts[0] = max(0, counts[0] + opened)
        counts[1] = max(0, min(counts[0], counts[1] + unvalidated))
        unlist = not counts[0] and address not in self._opening
        if unlist:
            del self._counts[address]
        self._run(
            scripts.SOCKET_CHANGED,
            [keys.address_sockets(address), self._listed],
            [self._process, opened, unvalidated, address if unlist else ""],
        ).addCallbacks(self._done, self._lost, errbackArgs=(address,))

    def _done(self, _: Any) -> None:
        self._repair()

    def _lost(self, failure: Failure, address: str) -> None:
        quietly(failure)
        self._dirty.add(address)
        self._later()

    def _repair(self) -> None:
        """Write the counts of the addresses a failure left wrong."""
        dirty = self._dirty
        if not dirty or self._stopped:
            return
        if not self._redis.connected:
            self._later()
            return
        for address in [a for a in dirty if a not in self._opening]:
            dirty.discard(address)
            opened, unvalidated = self._counts.get(address, (0, 0))
            self._run(
                scripts.SET_SOCKETS,
                [keys.address_sockets(address), self._listed],
                [self._process, opened, unvalidated, SOCKETS_TTL_MS, address],
            ).addErrback(self._lost, address)
        self._later()

    def _later(self) -> None:
        if self._dirty and self._retry is None and not self._stopped:
            self._retry = self._clock.callLater(REPAIR_EVERY, self._again)

    def _again(self) -> None:
        self._retry = None
        self._repair()

    def stop(self) -> None:
        """No more repairs (the process stops: its counts go anyway)."""
        self._stopped = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    async def sockets(self, address: str) -> tuple[int, int]:
        """The address's open and unvalidated sockets, every process's (tests)."""
        counts = pairs(await self._redis("HGETALL", keys.address_sockets(address)))
        unvalidated = sum(int(v) for k, v in counts.items() if k.endswith(":u"))
        return sum(int(v) for v in counts.values()) - unvalidated, unvalidated


async def forget_process(redis: RedisConnection, process_id: str) -> None:
    """A process is gone (buried, or stopped): its sockets count no more."""
    listed = keys.process_addresses(process_id)
    while True:
        addresses = await redis("SPOP", listed, 100)
        if not addresses:
            break
        for address in addresses:
            redis(
                "HDEL", keys.address_sockets(address), process_id, f"{process_id}:u"
            ).addErrback(quietly)
    await redis("DEL", listed)
