"""One turn at a time per room: messages, timers and hooks, in order.

Every change to a room's game goes through ``RoomTurns.run``: the room's
turns run one after another in the order they were queued, even when
handlers wait on I/O. A turn loads the state, runs its body, and then
either commits (saves the state, then applies the helper's effects) or, if
the body raised, discards everything it did.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from gameserver.chat import ChatRouter
from gameserver.concurrency import gather
from gameserver.errors import (
    Forbidden,
    GameServerError,
    RoomNotFound,
    Unavailable,
    UnknownType,
)
from gameserver.gameroom import GameRoom, encode_json
from gameserver.helper import Helper, TimerHandle
from gameserver.interfaces import IGame, IGroupLayer, IRoomLocks, IStore
from gameserver.locks import LocalLocks
from gameserver.models import Commit, RoomState, TimerSpec, UserRef
from gameserver.routing import Handler
from gameserver.settings import Settings

GAME_STARTED = "GAME_STARTED"
GAME_FINISHED = "GAME_FINISHED"
START_GAME = "START_GAME"

T = TypeVar("T")
Body = Callable[[GameRoom, Helper], Awaitable[T] | T]
log = Logger()


class HandlerError(GameServerError):
    code = "handler_error"


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


class RoomTurns:
    def __init__(
        self,
        store: IStore,
        groups: IGroupLayer,
        games: Mapping[str, IGame],
        clock: IReactorTime,
        settings: Settings,
        locks: IRoomLocks | None = None,
    ) -> None:
        self.store = store
        self._locks: IRoomLocks = LocalLocks() if locks is None else locks
        self.groups = groups
        self.clock = clock
        self._games = games
        self._limit = settings.max_state_size
        chat = ChatRouter(max_length=settings.chat_max_length).get_routes()
        self._builtin: dict[str, Handler] = {**chat, START_GAME: self._start_game}
        self._routes: dict[str, dict[str, Handler]] = {}
        self._tails: dict[int, Deferred[None]] = {}
        #: The lock token of each room whose turn runs now.
        self._held: dict[int, Any] = {}
        #: Timers queued to fire here, so a poll does not queue one twice.
        self._firing: set[tuple[int, str, str]] = set()
        #: Timers this process has armed: room -> name -> (spec, call).
        self._armed: dict[int, dict[str, tuple[TimerSpec, IDelayedCall]]] = {}

    # Ordering

    def exclusive(self, room_id: int, fn: Callable[[], Awaitable[T]]) -> Deferred[T]:
        """Run ``fn`` once the room's earlier turns are done, and before later ones.

        Turns queue here in this process, then take the room's lock, which
        other processes sharing the store respect too.
        """
        previous = self._tails.get(room_id, succeed(None))
        tail: Deferred[None] = Deferred()
        self._tails[room_id] = tail
        result: Deferred[T] = Deferred()

        def release(outcome: Any) -> Any:
            if self._tails.get(room_id) is tail:
                del self._tails[room_id]
            tail.callback(None)
            return outcome

        async def locked() -> T:
            token = await self._locks.acquire(room_id)
            self._held[room_id] = token
            try:
                return await _call(fn)
            finally:
                self._held.pop(room_id, None)
                await self._locks.release(room_id, token)

        def go(_: object) -> None:
            ensureDeferred(locked()).addBoth(release).chainDeferred(result)

        previous.addCallback(go)
        return result

    def run(
        self, room_id: int, body: Body[T], user: UserRef | None = None
    ) -> Deferred[T]:
        """Queue a turn of the room's game."""
        return self.exclusive(room_id, lambda: self._execute(room_id, body, user))

    def handle(
        self, room_id: int, user: UserRef, type_: str, data: dict[str, Any]
    ) -> Deferred[None]:
        """Route a client's message to its game's handler, as a turn."""

        def body(room: GameRoom, helper: Helper) -> Any:
            handler = self.routes(room.game).get(type_)
            if handler is None:
                raise UnknownType(f"unknown message type {type_!r}")
            return handler(room, user, helper, data)

        return self.run(room_id, body, user)

    def routes(self, game_name: str) -> dict[str, Handler]:
        routes = self._routes.get(game_name)
        if routes is None:
            game = self._games[game_name]
            routes = self._routes[game_name] = {**game.routes, **self._builtin}
        return routes

    def is_known(self, type_: str) -> bool:
        """Whether any game served here (or the server) handles ``type_``."""
        return type_ in self._builtin or any(
            type_ in g.routes for g in self._games.values()
        )

    def game_of(self, room: Any) -> IGame:
        game = self._games.get(room.game)
        if game is None:
            raise GameServerError(
                f"the game {room.game!r} is not served here", code="game_unavailable"
            )
        return game

    # A turn

    async def _execute(self, room_id: int, body: Body[T], user: UserRef | None) -> T:
        # Both reads at once: with Redis, one round trip instead of two.
        room, saved = await gather(
            self.store.get_room(room_id), self.store.load_state(room_id)
        )
        if room is None:
            raise RoomNotFound(f"there is no room {room_id}")
        game = self.game_of(room)
        state = game.initial_state() if saved is None else json.loads(saved)
        game_room = GameRoom(room, state, self.store, self._limit)
        helper = Helper(self, game_room, user)
        try:
            result = await _call(body, game_room, helper)
            encoded = encode_json(game_room.state, "the room's state", self._limit)
        except GameServerError:
            raise
        except Exception as e:
            log.failure(
                "a handler of {game} failed in room {room}",
                game=room.game,
                room=room_id,
            )
            raise HandlerError(
                f"the game failed to handle this: {type(e).__name__}"
            ) from e
        await self._commit(game_room, helper, None if encoded == saved else encoded)
        await self._follow_up(game, game_room.id, helper)
        return result

    async def _commit(self, room: GameRoom, helper: Helper, state: str | None) -> None:
        game = self.game_of(room)
        commit = Commit(
            state=state,
            entries=room.pending_entries,
            chat=[encode_json(e, "a chat message", self._limit) for e in helper.chat],
            chat_keep=game.chat_backlog,
            status=helper.transition,
            clear_timers=helper.transition is RoomState.FINISHED,
            lock=self._held.get(room.id),
        )
        for op, value in helper.timer_ops:
            if op == "set":
                commit.timers[value.name] = value
            else:
                commit.timers[value] = None
        if commit.clear_timers:
            commit.timers = {n: s for n, s in commit.timers.items() if s is not None}
        await self.store.commit(room.id, commit)
        if commit.clear_timers:
            self._disarm_all(room.id)
        for name, spec in commit.timers.items():
            if spec is None:
                self._disarm(room.id, name)
            else:
                self._arm(room.id, spec)
        if helper.transition is not None:
            kind = (
                GAME_STARTED
                if helper.transition is RoomState.IN_GAME
                else GAME_FINISHED
            )
            helper.broadcast(kind, {"status": helper.transition.value})
        for effect in helper.effects:
            await _call(effect)

    async def _follow_up(self, game: IGame, room_id: int, helper: Helper) -> None:
        """Run the lifecycle hooks a turn triggered, each its own turn-in-turn."""
        if helper.transition is RoomState.IN_GAME:
            options = helper.start_options
            await self.hook(room_id, lambda r, h: game.on_start(r, h, options))
        elif helper.transition is RoomState.FINISHED:
            await self.hook(room_id, game.on_finish)
        for body, user in helper.follow_ups:
            await self.hook(room_id, body, user)

    async def hook(
        self, room_id: int, body: Body[Any], user: UserRef | None = None
    ) -> None:
        """A turn inside the current one; its failure is logged, not raised."""
        try:
            await self._execute(room_id, body, user)
        except GameServerError as e:
            log.warn(
                "a hook in room {room} refused: {detail}", room=room_id, detail=e.detail
            )

    # Built-in messages

    async def _start_game(
        self, room: GameRoom, user: UserRef, helper: Helper, data: dict[str, Any]
    ) -> None:
        if user.id != room.owner.id:
            raise Forbidden(
                "only the room's owner can start the game", code="not_owner"
            )
        game = self.game_of(room)
        if len(room.players) < game.min_players:
            raise GameServerError(
                f"{game.name} needs at least {game.min_players} players",
                code="not_enough_players",
            )
        await game.can_start(room, user, helper, data)
        helper.start_game(data)

    # Timers

    def callback_ref(self, game: IGame, callback: Any) -> tuple[str, str]:
        """Name a timer callback so any process can find it again."""
        owner = getattr(callback, "__self__", None)
        name = getattr(callback, "__name__", "")
        if owner is game:
            return "", name
        for router in getattr(game, "router_instances", ()):
            if owner is router:
                return type(router).__qualname__, name
        raise TypeError(
            "a timer callback must be a method of the game or of one of its routers"
            f" (got {callback!r})"
        )

    def _callback(self, game: IGame, spec: TimerSpec) -> Callable[..., Any]:
        owner: Any = game
        if spec.router:
            owner = next(
                (
                    r
                    for r in game.router_instances
                    if type(r).__qualname__ == spec.router
                ),
                None,
            )
        method = getattr(owner, spec.method, None)
        if method is None:
            raise GameServerError(
                f"timer {spec.name!r} names {spec.router}.{spec.method}, which"
                f" {game.name} no longer has",
                code="handler_error",
            )
        return method

    def _arm(self, room_id: int, spec: TimerSpec) -> None:
        self._disarm(room_id, spec.name)
        delay = max(0.0, spec.deadline - self.clock.seconds())
        call = self.clock.callLater(delay, self.fire, room_id, spec.name, spec.id)
        self._armed.setdefault(room_id, {})[spec.name] = (spec, call)

    def _disarm(self, room_id: int, name: str) -> None:
        armed = self._armed.get(room_id, {})
        entry = armed.pop(name, None)
        if entry is not None and entry[1].active():
            entry[1].cancel()
        if not armed:
            self._armed.pop(room_id, None)

    def _disarm_all(self, room_id: int) -> None:
        for _, call in self._armed.pop(room_id, {}).values():
            if call.active():
                call.cancel()

    def fire(self, room_id: int, name: str, timer_id: str) -> Deferred[None]:
        """Run a due timer as a turn, if it is still the one stored.

        The store is the judge: a timer cancelled, replaced or already fired
        (by this process or another) is no longer there, and is skipped. A
        timer whose callback fails is dropped all the same, or every
        process would fire it again and again.
        """
        armed = self._armed.get(room_id, {}).get(name)
        if armed is not None and armed[0].id == timer_id:
            self._disarm(room_id, name)
        key = (room_id, name, timer_id)
        if key in self._firing:
            return succeed(None)
        self._firing.add(key)

        async def body(room: GameRoom, helper: Helper) -> Any:
            spec = await self.store.get_timer(room_id, name)
            if spec is None or spec.id != timer_id:
                return None
            helper.timer_ops.append(("cancel", name))
            callback = self._callback(helper.game, spec)
            return await _call(callback, room, helper, *spec.args)

        async def drop() -> None:
            spec = await self.store.get_timer(room_id, name)
            if spec is not None and spec.id == timer_id:
                commit = Commit(timers={name: None}, lock=self._held.get(room_id))
                await self.store.commit(room_id, commit)

        def failed(failure: Any) -> Any:
            log.failure(
                "timer {name} of room {room} failed", failure, name=name, room=room_id
            )
            if failure.check(Unavailable):
                return None  # the store is down: try again at the next poll
            return self.exclusive(room_id, drop).addErrback(
                lambda f: log.failure("dropping timer {name} failed", f, name=name)
            )

        d = self.run(room_id, body)
        d.addErrback(failed)
        d.addBoth(lambda result: self._firing.discard(key))
        return d

    async def fire_due(self, limit: int = 100) -> int:
        """Fire stored timers that are due, whoever set them; how many were due."""
        due = await self.store.due_timers(self.clock.seconds(), limit)
        for room_id, name, timer_id in due:
            self.fire(room_id, name, timer_id)
        return len(due)

    def cancel_timers(self, room_id: int) -> None:
        """Forget this process's timers of a room (the store drops its own)."""
        self._disarm_all(room_id)

    def timers(self, room_id: int) -> dict[str, TimerHandle]:
        return {
            name: TimerHandle(room_id, name, spec.deadline)
            for name, (spec, _) in self._armed.get(room_id, {}).items()
        }
