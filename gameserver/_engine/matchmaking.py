"""``QUICK_JOIN``: a seat in the fullest open room of a pool, or a new room.

A pool is a game and a match key (``Game.match_key``: a language, a skill
band; one pool per game unless the game says otherwise). Choosing a room
goes one quick join at a time per pool, or two users who found no open
room at the same moment would make two half-empty rooms: it runs under
the pool's lock (a ``DeferredLock`` in this process and, with Redis, the
store's lock shared by every process) and keeps it until the join is
saved, so that the next one sees the seat taken. Whether the seat is free
is still the room's turn to decide, as for any join, so a room is never
overfilled, whoever else joins it meanwhile.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from twisted.internet.defer import (
    Deferred,
    DeferredLock,
    FirstError,
    TimeoutError,
    ensureDeferred,
    gatherResults,
)
from twisted.internet.task import deferLater
from twisted.logger import Logger

from gameserver._engine.room import DELETE, JOIN, RESERVE, LiveRoom, Reply, Work
from gameserver._engine.sockets import LocalSockets
from gameserver._errors import (
    BadMessage,
    Busy,
    GameServerError,
    InvalidInput,
    Unavailable,
    error_of,
)
from gameserver._interfaces import IGame, IHosting, IStore
from gameserver._models import Room, RoomState, UserRef
from gameserver._wire import messages
from gameserver._wire.messages import Envelope
from gameserver._wire.session import Session

#: Seconds a pool's lock lasts if its holder dies holding it.
LOCK_TTL = 5.0
#: Seconds a quick join waits for its pool's lock before ``busy``.
LOCK_WAIT = 5.0

log = Logger()


class Matchmaker:
    def __init__(
        self,
        store: IStore,
        games: Mapping[str, IGame],
        hosting: IHosting,
        live: Mapping[int, LiveRoom],
        sockets: LocalSockets,
        reactor: Any,
        process_id: str,
        seat_hold: float = 30.0,
        clock: Any = None,
    ) -> None:
        """``reactor``: real time, for waiting on another process's lock;
        ``seat_hold``: seconds a seat found over HTTP is held; ``clock``: the
        rooms' time, which the holds are on."""
        self._seat_hold = seat_hold
        self._clock = reactor if clock is None else clock
        self._store = store
        self._sockets = sockets
        self._games = games
        self._hosting = hosting
        self._live = live
        self._reactor = reactor
        self._process = process_id
        self._locks: dict[tuple[str, str], DeferredLock] = {}

    async def reserve(self, user: UserRef, body: Any) -> dict[str, Any]:
        """``POST /api/rooms/quick/``: choose as ``QUICK_JOIN`` does, and hold
        the seat (``Settings.seat_hold``) for the user's ``JOIN_ROOM``."""
        if not isinstance(body, dict):
            raise InvalidInput("expected a JSON object")
        game, key = self._pool(user, body)
        held: dict[str, Any] = {}

        async def hold() -> None:
            held.update(await self._hold(game, key, user))

        await self._locked(game.name, key, hold)
        return held

    async def _hold(self, game: IGame, key: str, user: UserRef) -> dict[str, Any]:
        room_id = await self._choose(game.name, key, user)
        if room_id is None:
            room_id = await self._new_room(game, user)
            await self._store.pool_add(game.name, key, room_id)
        answer_id, answer = self._sockets.expect()
        self._hosting.submit(
            Work(
                RESERVE,
                room_id,
                user,
                Reply(self._process, answer_id),
                messages.QUICK_JOIN,
                {"seconds": self._seat_hold},
                processes=(self._process,),
                password_ok=True,
            )
        )
        try:
            frame = await answer.addTimeout(LOCK_TTL, self._reactor)
        except TimeoutError:
            raise Unavailable(
                "the room's server did not answer in time: try again"
            ) from None
        data: dict[str, Any] = json.loads(frame.payload)["data"]
        if not data["is_successful"]:
            raise error_of(data["error"], data["detail"])
        del data["is_successful"]
        return data

    async def quick_join(self, session: Session, envelope: Envelope) -> None:
        user = session.user
        assert user is not None
        try:
            game, key = self.pool_of(user, envelope)
            await self._locked(game.name, key, lambda: self._seat(game, key, session))
        except GameServerError as e:
            session.send(
                messages.message(
                    messages.QUICK_JOIN,
                    {"is_successful": False, "error": e.code, "detail": e.detail},
                )
            )

    def pool_of(self, user: UserRef, envelope: Envelope) -> tuple[IGame, str]:
        if envelope.room_id is not None:
            raise BadMessage("QUICK_JOIN takes no 'room_id': it finds the room")
        return self._pool(user, envelope.data)

    def _pool(self, user: UserRef, data: dict[str, Any]) -> tuple[IGame, str]:
        name = data.get("game")
        game = self._games.get(name) if isinstance(name, str) else None
        if game is None:
            raise InvalidInput(
                f"'game' must be one of: {', '.join(sorted(self._games)) or '(none)'}"
            )
        options = data.get("options", {})
        if not isinstance(options, dict):
            raise InvalidInput("'options' must be an object")
        return game, _key(game, user, options)

    def key_of(self, game: IGame, owner: UserRef) -> str | None:
        """The pool a room made over HTTP joins, if any: its owner's with no
        options (``None`` if the game's pools need options)."""
        try:
            return _key(game, owner, {})
        except GameServerError:
            return None

    async def add(self, game: IGame, key: str, room: Room) -> None:
        """Offer a room made over HTTP to quick joins of ``key``."""
        await self._store.pool_add(game.name, key, room.id)

    async def _seat(self, game: IGame, key: str, session: Session) -> None:
        user = session.user
        assert user is not None
        if self._sockets.gone(session):
            return
        room_id = await self._choose(game.name, key, user)
        if self._sockets.gone(session):
            return
        if room_id is None:
            room_id = await self._new_room(game, user)
            if self._sockets.gone(session):  # meanwhile: nobody to seat in it
                await self._hosting.request(Work(DELETE, room_id, user=user))
                return
            await self._store.pool_add(game.name, key, room_id)
        saved = self._hosting.request(
            Work(
                JOIN,
                room_id,
                user,
                Reply(self._process, session.id),
                messages.QUICK_JOIN,
                {},
                processes=(self._process,),
                password_ok=True,
            )
        )
        # The lock is held until the join is saved, but not past its TTL: a
        # room whose owner is slow to answer (failing over) must not stop
        # the pool here once the store's lock has lapsed anyway.
        waited: Deferred[None] = Deferred()
        saved.chainDeferred(waited)
        try:
            await waited.addTimeout(LOCK_TTL, self._reactor)
        except TimeoutError:
            log.warn(
                "a quick join to room {room_id} is not saved yet",
                room_id=room_id,
                user_id=user.id,
                process=self._process,
            )

    async def _new_room(self, game: IGame, owner: UserRef) -> int:
        """A quick join's room when none is open: the user's, the game's size."""
        room = await self._store.create_room(
            f"{game.name} (quick)",
            game.name,
            owner,
            game.max_players,
            None,
            self._clock.seconds(),
        )
        return room.id

    async def _choose(self, game: str, key: str, user: UserRef) -> int | None:
        """The fullest open room of the pool (the oldest of equals), if any."""
        best: tuple[int, int] | None = None
        closed = []
        ids = await self._store.pool_rooms(game, key)
        # The records of the rooms hosted here now, the others from the store.
        records: dict[int, Room | None] = {
            i: self._live[i].record for i in ids if i in self._live
        }
        elsewhere = [i for i in ids if i not in records]
        try:
            stored = await gatherResults(
                [ensureDeferred(self._stored(i)) for i in elsewhere],
                consumeErrors=True,
            )
        except FirstError as e:
            e.subFailure.raiseException()
        records.update(zip(elsewhere, stored, strict=True))
        now = self._clock.seconds()
        own: int | None = None
        for room_id in ids:
            room = records[room_id]
            if room is None or room.state is not RoomState.WAITING:
                closed.append(room_id)
                continue
            holds = {u for u, until in room.reserved if until > now}
            if room.has_player(user.id) or user.id in holds:
                return room_id  # already seated there: that seat again
            if room.owner.id == user.id and not room.players:
                own = room_id  # rather than make another (a hold lapsed)
                continue
            if not room.has_player(room.owner.id) and room.owner.id not in holds:
                # Only the owner can start the game: not until it is back.
                continue
            seated = len(room.players) + len(holds)
            if seated < room.max_players and (best is None or seated > best[0]):
                best = (seated, room_id)
        if closed:
            await self._store.pool_remove(game, key, closed)
        return own if best is None else best[1]

    async def _stored(self, room_id: int) -> Room | None:
        return await self._store.get_room(room_id)

    async def _locked(
        self, game: str, key: str, work: Callable[[], Awaitable[None]]
    ) -> None:
        pool = (game, key)
        local = self._locks.get(pool)
        if local is None:
            local = self._locks[pool] = DeferredLock()
        try:
            await local.acquire().addTimeout(LOCK_WAIT, self._reactor)
        except TimeoutError:
            raise Busy("quick join is busy for this game: try again") from None
        try:
            holder = f"{self._process}:{uuid.uuid4().hex}"
            await self._shared_lock(game, key, holder)
            try:
                await work()
            finally:
                try:
                    await self._store.pool_unlock(game, key, holder)
                except GameServerError as e:
                    log.warn(
                        "giving back the lock of {pool} failed: {e}",
                        pool=pool,
                        e=e,
                        process=self._process,
                    )
        finally:
            local.release()
            if (
                not local.locked
                and not local.waiting
                and self._locks.get(pool) is local
            ):
                del self._locks[pool]

    async def _shared_lock(self, game: str, key: str, holder: str) -> None:
        """Wait for the store's lock of the pool (another process may have it)."""
        delay, waited = 0.002, 0.0
        while not await self._store.pool_lock(game, key, holder, LOCK_TTL):
            if waited >= LOCK_WAIT:
                raise Busy("quick join is busy for this game: try again")
            await deferLater(self._reactor, delay, lambda: None)
            waited += delay
            delay = min(delay * 2, 0.05)


def _key(game: IGame, user: UserRef, options: dict[str, Any]) -> str:
    key = game.match_key(user, options)
    if not isinstance(key, str):
        raise TypeError(f"{game.name}.match_key returned {key!r}, not a str")
    return key
