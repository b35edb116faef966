"""Room locks: one turn at a time per room, across processes.

In one process the turn queue is enough, so ``LocalLocks`` does nothing;
the Redis backend's locks make other processes wait their turn too.
"""

from __future__ import annotations

from zope.interface import implementer

from gameserver.interfaces import IRoomLocks


@implementer(IRoomLocks)
class LocalLocks:
    async def acquire(self, room_id: int) -> None:
        return None

    async def release(self, room_id: int, token: object) -> None:
        return None
