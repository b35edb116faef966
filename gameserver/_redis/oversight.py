"""The admin API's view on Redis: what every room's owner saved there.

Each room is read in one script call on its own keys (``ROOM_VIEW``): its
record (``meta``), its owner (the lease), who is present, and the count of
its logged messages of the last minute; the calls for a listing go out
together. So a listing is at most one commit behind each owner, wherever
it is, and costs no process but Redis anything. A room nobody holds (its
owner gave it back when idle) reads as owned by nobody, with what it last
saved.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from gameserver._engine import figures
from gameserver._engine.figures import RATE_WINDOW
from gameserver._interfaces import IOversight
from gameserver._models import RoomView
from gameserver._redis import keys, scripts
from gameserver._redis.connection import RedisConnection, gather
from gameserver._redis.hosting import alive_processes
from gameserver._redis.store import pairs, room_of

#: The room's keys ``ROOM_VIEW`` reads, in its order.
VIEW_PARTS = ("meta", "state", "entries", "chat", "present", "lease", "log")


@implementer(IOversight)
class RedisOversight:
    def __init__(self, redis: RedisConnection, clock: IReactorTime) -> None:
        self._redis = redis
        self._clock = clock

    def _read(self, room_id: int, detail: bool) -> Any:
        since = self._clock.seconds() - RATE_WINDOW
        return self._redis.run(
            scripts.ROOM_VIEW,
            [keys.room(room_id, part) for part in VIEW_PARTS],
            [repr(since), 1 if detail else 0],
        )

    async def rooms(self, game: str | None) -> list[RoomView]:
        index = keys.ROOMS if game is None else keys.rooms_of_game(game)
        ids = [int(i) for i in await self._redis("ZREVRANGE", index, 0, -1)]
        replies = await gather(*(self._read(room_id, False) for room_id in ids))
        return [
            _view(room_id, reply, detail=False)
            for room_id, reply in zip(ids, replies, strict=True)
            if reply
        ]

    async def room(self, room_id: int) -> RoomView | None:
        reply = await self._read(room_id, True)
        return _view(room_id, reply, detail=True) if reply else None

    async def online(self, user_ids: list[int]) -> set[int]:
        found = await gather(
            *(self._redis("EXISTS", keys.online(user_id)) for user_id in user_ids)
        )
        return {u for u, n in zip(user_ids, found, strict=True) if int(n)}

    async def processes(self) -> int | None:
        return len(await alive_processes(self._redis))


def _view(room_id: int, reply: list[Any], *, detail: bool) -> RoomView:
    meta, lease, present, count = reply[:4]
    process = str(lease).partition(":")[0] if lease else None
    rate = figures.rate(int(count))
    users = frozenset(int(u) for u in pairs(present))
    record = room_of(room_id, pairs(meta))
    if not detail:
        return RoomView(record, process, users, rate)
    state, entries, chat = reply[4:7]
    return RoomView(
        record, process, users, rate, state or None, pairs(entries), tuple(chat)
    )
