"""One process: every room is owned here, and saving is applying.

The same engine as with Redis, with a local owner: no leases, no channels.
A turn's changes are already in the ``LiveRoom``, the only copy; the
committer updates the room's record for listings and delivers at once.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from zope.interface import implementer

from gameserver._engine.hosting import deliver_local, missing
from gameserver._engine.room import GONE, JOIN, LiveRoom, Work
from gameserver._engine.sockets import LocalSockets
from gameserver._engine.turns import Changes, Engine
from gameserver._interfaces import ICommitter, IHosting
from gameserver._memory.store import MemoryStore
from gameserver._models import RoomData, UserRef
from gameserver._stats import now as perf_now
from gameserver._wire.messages import Frame


@implementer(IHosting)
class MemoryHosting:
    def __init__(
        self, engine: Engine, store: MemoryStore, sockets: LocalSockets
    ) -> None:
        self._engine = engine
        self._store = store
        self._sockets = sockets
        #: The rooms each user joined through this process and may be in.
        self._rooms_of: dict[int, set[int]] = {}

    def room(self, room_id: int) -> LiveRoom | None:
        """The room, held from its first use on."""
        room = self._engine.rooms.get(room_id)
        if room is None:
            record = self._store.record(room_id)
            if record is None:
                return None
            room = self._engine.adopt(RoomData(record))
        return room

    def submit(self, work: Work) -> None:
        room = self.room(work.room_id)
        if room is None:
            refusal = missing(work, self._engine.counters)
            if refusal is not None and work.reply is not None:
                self._sockets.deliver_to(work.reply.connection, refusal)
            if work.done is not None:
                work.done.callback(None)
            return
        if work.kind == JOIN and work.user is not None:
            self._rooms_of.setdefault(work.user.id, set()).add(room.id)
        self._engine.submit(room, work)

    def request(self, work: Work) -> Deferred[None]:
        work.done = Deferred()
        self.submit(work)
        return work.done

    async def user_connected(self, user: UserRef) -> None:
        return None

    def user_disconnected(self, user: UserRef) -> None:
        process = self._engine.process_id
        for room_id in sorted(self._rooms_of.pop(user.id, ())):
            self.submit(Work(GONE, room_id, user, processes=(process,)))

    async def close_user(self, user: UserRef, code: int, reason: str) -> None:
        self._sockets.close_user(user.id, code, reason)

    async def rooms_of(self, user: UserRef) -> tuple[list[int], list[int]]:
        seated, owned = self._store.rooms_of(user.id)
        return sorted({*seated, *self._rooms_of.get(user.id, ())}), owned

    def forget(self, user_id: int, room_id: int) -> None:
        """The user is no longer present in the room."""
        rooms = self._rooms_of.get(user_id)
        if rooms is not None:
            rooms.discard(room_id)
            if not rooms:
                del self._rooms_of[user_id]


@implementer(ICommitter)
class MemoryCommitter:
    def __init__(
        self,
        engine: Engine,
        store: MemoryStore,
        sockets: LocalSockets,
        hosting: MemoryHosting,
    ) -> None:
        self._engine = engine
        self._store = store
        self._sockets = sockets
        self._hosting = hosting

    def commit(self, room: LiveRoom, changes: Changes) -> None:
        """Saved as it is applied: the commit histogram measures that."""
        started = perf_now()
        if changes.drop:
            self._store.remove_record(room.id)
            for work in self._engine.drop(room):  # what it had not done: refused
                refusal = missing(work, self._engine.counters)
                if refusal is not None and work.reply is not None:
                    self._sockets.deliver_to(work.reply.connection, refusal)
                if work.done is not None and not work.done.called:
                    work.done.callback(None)
            for user_id in room.present:
                self._hosting.forget(user_id, room.id)
        elif changes.record:
            self._store.update_record(room.record)
        for user_id in changes.present:
            if user_id not in room.present:
                self._hosting.forget(user_id, room.id)
        self._engine.saved(room, 1, [changes.work])
        self._engine.counters.commit_seconds.observe(perf_now() - started)
        deliver_local(self._sockets, self._engine.process_id, changes.out)
        done = changes.work.done
        if done is not None and not done.called:
            done.callback(None)

    def refuse(self, room: LiveRoom, work: Work, frame: Frame) -> None:
        if work.reply is not None:
            self._sockets.deliver_to(work.reply.connection, frame)
        if work.done is not None and not work.done.called:
            work.done.callback(None)

    def duplicate(self, room: LiveRoom, work: Work) -> None:
        if work.done is not None and not work.done.called:
            work.done.callback(None)
