"""Room locks: one turn at a time per room, across processes.

In one process the turn queue is enough, so ``LocalLocks`` does nothing;
the Redis backend's locks make other processes wait their turn too.
"""

from __future__ import annotations

import uuid

from twisted.internet.defer import ensureDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import deferLater
from zope.interface import implementer

from gameserver.interfaces import IRoomLocks
from gameserver.store.redis import RedisConnection, room_key


@implementer(IRoomLocks)
class LocalLocks:
    async def acquire(self, room_id: int) -> None:
        return None

    async def release(self, room_id: int, token: object) -> None:
        return None


_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


@implementer(IRoomLocks)
class RedisLocks:
    """A lease per room (``SET NX PX``), renewed while its turn runs.

    If the holder dies, the lease runs out after ``ttl`` seconds and another
    process takes the room over, reloading its state from the store.
    """

    def __init__(
        self, redis: RedisConnection, reactor: IReactorTime, *, ttl: float = 5.0
    ) -> None:
        self._redis = redis
        self._reactor = reactor
        self._ttl_ms = int(ttl * 1000)
        self._renewals: dict[str, IDelayedCall] = {}

    async def acquire(self, room_id: int) -> str:
        key = room_key(room_id, "lock")
        token = uuid.uuid4().hex
        wait = 0.002
        while not await self._redis("SET", key, token, "NX", "PX", self._ttl_ms):
            await deferLater(self._reactor, wait, lambda: None)
            wait = min(wait * 2, 0.05)
        self._renew_later(key, token)
        return token

    def _renew_later(self, key: str, token: str) -> None:
        def renew() -> None:
            d = ensureDeferred(
                self._redis.script(_EXTEND, [key], [token, self._ttl_ms])
            )
            d.addBoth(again)

        def again(_: object) -> None:
            if token in self._renewals:  # not released meanwhile
                self._renew_later(key, token)

        self._renewals[token] = self._reactor.callLater(self._ttl_ms / 3000, renew)

    async def release(self, room_id: int, token: str) -> None:
        renewal = self._renewals.pop(token, None)
        if renewal is not None and renewal.active():
            renewal.cancel()
        await self._redis.script(_RELEASE, [room_key(room_id, "lock")], [token])
