"""Removing guests whose time is over, as if each had left every room.

A guest lasts as long as its refresh token. Every ``interval`` seconds the
sweeper takes the guests whose end has passed (with Redis each is handed
to one process only), gives up their seats and presence in every room,
deletes the rooms they made (their members get ``ROOM_DELETED``), closes
their sockets in this process and removes their record, which frees the
name.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from gameserver._engine.room import DELETE, LEAVE, Work
from gameserver._engine.sockets import LocalSockets
from gameserver._interfaces import IHosting, IStore
from gameserver._models import UserRecord
from gameserver._wire.session import CLOSE_UNAUTHORIZED

#: Guests taken from the store at a time.
BATCH = 100

log = Logger()


class GuestSweeper(Service):
    def __init__(
        self,
        store: IStore,
        hosting: IHosting,
        sockets: LocalSockets,
        clock: IReactorTime,
        interval: float,
    ) -> None:
        self._store = store
        self._hosting = hosting
        self._sockets = sockets
        self._clock = clock
        self._interval = interval
        self._loop: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        loop = self._loop = LoopingCall(self._tick)
        loop.clock = self._clock
        loop.start(self._interval, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    async def _tick(self) -> None:
        try:
            await self.sweep()
        except Exception:
            log.failure("removing expired guests failed")

    async def sweep(self) -> int:
        """Remove every guest whose end has passed; how many."""
        removed = 0
        while True:
            due = await self._store.expired_guests(self._clock.seconds(), BATCH)
            for record in due:
                await self._remove(record)
                removed += 1
            if len(due) < BATCH:
                return removed

    async def _remove(self, record: UserRecord) -> None:
        user = record.ref
        rooms, owned = await self._hosting.rooms_of(user)
        for room_id in owned:
            await self._hosting.request(Work(DELETE, room_id, user=user))
        for room_id in rooms:
            if room_id not in owned:
                await self._hosting.request(Work(LEAVE, room_id, user))
        self._sockets.close_user(user.id, CLOSE_UNAUTHORIZED, "guest expired")
        await self._store.remove_user(record.id)
        log.info("guest {user} expired and was removed", user=user.username)
