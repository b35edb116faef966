"""The abuse limits' counters on Redis, shared by every process.

Each limit is one script call on one key (``scripts.TAKE``, ``ATTEMPT``,
``FORGIVE``, ``OPEN_SOCKET``, ``SOCKET_CHANGED``), and every key expires
once it says no more than a fresh one would. Open sockets are counted per
address in a hash with a field per process, summed by the script: a
process that dies leaves its fields behind only until it is buried (then
``forget_process`` removes them, the addresses being listed in a set of
its own), so its sockets stop counting with it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import implementer

from gameserver._interfaces import ILimiter
from gameserver._redis import keys, scripts
from gameserver._redis.connection import RedisConnection, Script, quietly

#: Milliseconds an address's socket counts live after its last new socket:
#: only a socket open longer than that, with no other since, goes uncounted.
SOCKETS_TTL_MS = 24 * 3600 * 1000


@implementer(ILimiter)
class RedisLimiter:
    def __init__(self, redis: RedisConnection, process_id: str) -> None:
        self._redis = redis
        self._process = process_id
        #: Sockets counted in Redis from this process, by address: when the
        #: first opens, the address joins the process's set.
        self._here: dict[str, int] = {}
        self._loaded: set[str] = set()

    def _run(self, script: Script, key: str, args: list[Any]) -> Deferred[Any]:
        """Call ``script``, loaded first at its first use: commands sent without
        waiting (a close, a forgiveness) must reach Redis in order, and a
        script Redis did not know would be sent again after later ones."""
        if script.sha not in self._loaded:
            self._loaded.add(script.sha)
            self._redis("SCRIPT", "LOAD", script.source).addErrback(quietly)
        return self._redis.run(script, [key], args)

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

    def open_socket(
        self, address: str, most_open: int, most_unvalidated: int
    ) -> Deferred[int]:
        here = self._here
        if address not in here:
            here[address] = 0
            self._redis(
                "SADD", keys.process_addresses(self._process), address
            ).addErrback(quietly)

        def counted(reply: Any) -> int:
            answer = int(reply)
            if answer == 0:
                here[address] = here.get(address, 0) + 1
            elif not here.get(address):
                here.pop(address, None)
            return answer

        return self._run(
            scripts.OPEN_SOCKET,
            keys.address_sockets(address),
            [self._process, most_open, most_unvalidated, SOCKETS_TTL_MS],
        ).addCallback(counted)

    def socket_changed(self, address: str, opened: int, unvalidated: int) -> None:
        self._run(
            scripts.SOCKET_CHANGED,
            keys.address_sockets(address),
            [self._process, opened, unvalidated],
        ).addErrback(quietly)
        if opened:
            left = self._here.get(address, 0) + opened
            if left > 0:
                self._here[address] = left
            else:
                self._here.pop(address, None)
                self._redis(
                    "SREM", keys.process_addresses(self._process), address
                ).addErrback(quietly)

    async def sockets(self, address: str) -> tuple[int, int]:
        """The address's open and unvalidated sockets, every process's (tests)."""
        fields = await self._redis("HGETALL", keys.address_sockets(address))
        pairs = dict(zip(fields[::2], fields[1::2], strict=True))
        unvalidated = sum(int(v) for k, v in pairs.items() if k.endswith(":u"))
        return sum(int(v) for v in pairs.values()) - unvalidated, unvalidated


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
