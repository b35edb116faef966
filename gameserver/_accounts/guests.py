"""Removing guests whose time is over, as if each had left every room.

A guest lasts as long as its refresh token. Every ``interval`` seconds the
sweeper takes the guests whose end has passed (with Redis each is handed
to one process only), gives up their seats and presence in every room,
deletes the rooms they made (their members get ``ROOM_CLOSED``), closes
their sockets in every process and removes their record, which frees
the name.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from gameserver._engine.room import DELETE, LEAVE, Work
from gameserver._interfaces import IHosting, IStore
from gameserver._models import UserRecord
from gameserver._wire.session import CLOSE_UNAUTHORIZED

#: Guests taken from the store at a time.
BATCH = 100
#: Seconds a guest handed out for removal is this process's to remove; then
#: (this process failed or died) it is handed out again.
LEASE = 300.0

log = Logger()

#: Why the rooms of an expired guest close (``ROOM_CLOSED``).
GUEST_EXPIRED = "closed: its owner's guest account expired"


class GuestSweeper(Service):
    def __init__(
        self,
        store: IStore,
        hosting: IHosting,
        clock: IReactorTime,
        interval: float,
    ) -> None:
        self._store = store
        self._hosting = hosting
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
            now = self._clock.seconds()
            due = await self._store.expired_guests(now, BATCH, LEASE)
            for record in due:
                try:
                    await self._remove(record)
                except Exception:
                    log.failure(
                        "removing guest {user} failed: tried again in {lease} s",
                        user=record.username,
                        user_id=record.id,
                        lease=LEASE,
                    )
                else:
                    removed += 1
            if len(due) < BATCH:
                return removed

    async def _remove(self, record: UserRecord) -> None:
        user = record.ref
        # Its sockets first, wherever they are, so that it does nothing more.
        await self._hosting.close_user(user, CLOSE_UNAUTHORIZED, "guest expired")
        rooms, owned = await self._hosting.rooms_of(user)
        for room_id in owned:
            await self._hosting.request(
                Work(DELETE, room_id, user=user, data={"reason": GUEST_EXPIRED})
            )
        for room_id in rooms:
            if room_id not in owned:
                await self._hosting.request(Work(LEAVE, room_id, user))
        await self._store.remove_user(record.id)
        # Again: one that validated just before its end may have come back.
        await self._hosting.close_user(user, CLOSE_UNAUTHORIZED, "guest expired")
        log.info(
            "guest {user} expired and was removed", user=user.username, user_id=user.id
        )
