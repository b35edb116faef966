"""The admin API's view in one process: the engine holds every live room."""

from __future__ import annotations

import sys

from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from gameserver._engine.figures import per_minute
from gameserver._engine.sockets import LocalSockets
from gameserver._engine.turns import Engine
from gameserver._interfaces import IOversight
from gameserver._memory.store import MemoryStore
from gameserver._models import Room, RoomView


@implementer(IOversight)
class MemoryOversight:
    def __init__(
        self,
        store: MemoryStore,
        engine: Engine,
        sockets: LocalSockets,
        clock: IReactorTime,
    ) -> None:
        self._store = store
        self._engine = engine
        self._sockets = sockets
        self._clock = clock

    async def rooms(self, game: str | None) -> list[RoomView]:
        page = await self._store.list_rooms(game, 0, sys.maxsize)
        return [self._view(record, detail=False) for record in page.items]

    async def room(self, room_id: int) -> RoomView | None:
        record = self._store.record(room_id)
        return None if record is None else self._view(record, detail=True)

    def _view(self, record: Room, *, detail: bool) -> RoomView:
        """Every room is owned here; one not used since it was made has no
        ``LiveRoom`` yet: nobody in it, no message, its state not made."""
        process = self._engine.process_id
        live = self._engine.rooms.get(record.id)
        if live is None:
            if not detail:
                return RoomView(record, process, frozenset(), 0.0)
            return RoomView(record, process, frozenset(), 0.0, None, {}, ())
        rate = per_minute(live.log, self._clock.seconds())
        present = frozenset(live.present)
        if not detail:
            return RoomView(live.record, process, present, rate)
        return RoomView(
            live.record,
            process,
            present,
            rate,
            live.saved,
            dict(live.entries),
            tuple(entry.encoded.decode("utf-8") for entry in live.chat),
        )

    async def online(self, user_ids: list[int]) -> set[int]:
        return {user_id for user_id in user_ids if self._sockets.count(user_id)}

    async def processes(self) -> int | None:
        return None
