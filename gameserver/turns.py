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
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from gameserver.chat import ChatRouter
from gameserver.errors import Forbidden, GameServerError, RoomNotFound, UnknownType
from gameserver.gameroom import GameRoom, encode_json
from gameserver.helper import Helper, TimerHandle
from gameserver.interfaces import IGame, IGroupLayer, IStore
from gameserver.models import RoomState, UserRef
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
    ) -> None:
        self.store = store
        self.groups = groups
        self.clock = clock
        self._games = games
        self._limit = settings.max_state_size
        chat = ChatRouter(max_length=settings.chat_max_length).get_routes()
        self._builtin: dict[str, Handler] = {**chat, START_GAME: self._start_game}
        self._routes: dict[str, dict[str, Handler]] = {}
        self._tails: dict[int, Deferred[None]] = {}
        self._timers: dict[int, dict[str, TimerHandle]] = {}

    # Ordering

    def exclusive(self, room_id: int, fn: Callable[[], Awaitable[T]]) -> Deferred[T]:
        """Run ``fn`` once the room's earlier turns are done, and before later ones."""
        previous = self._tails.get(room_id, succeed(None))
        tail: Deferred[None] = Deferred()
        self._tails[room_id] = tail
        result: Deferred[T] = Deferred()

        def release(outcome: Any) -> Any:
            if self._tails.get(room_id) is tail:
                del self._tails[room_id]
            tail.callback(None)
            return outcome

        def go(_: object) -> None:
            ensureDeferred(_call(fn)).addBoth(release).chainDeferred(result)

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
        room = await self.store.get_room(room_id)
        if room is None:
            raise RoomNotFound(f"there is no room {room_id}")
        game = self.game_of(room)
        saved = await self.store.load_state(room_id)
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
        chat = [
            encode_json(entry, "a chat message", self._limit) for entry in helper.chat
        ]
        game = self.game_of(room)
        await self.store.save_room_data(
            room.id, state, room.pending_entries, chat, game.chat_backlog
        )
        if helper.transition is not None:
            await self.store.set_room_state(room.id, helper.transition)
            if helper.transition is RoomState.FINISHED:
                self.cancel_timers(room.id)
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

    def arm(self, handle: TimerHandle) -> None:
        if handle.cancelled:
            return
        timers = self._timers.setdefault(handle.room_id, {})
        earlier = timers.pop(handle.name, None)
        if earlier is not None:
            earlier.cancel()
        delay = max(0.0, handle.deadline - self.clock.seconds())
        handle.delayed_call = self.clock.callLater(delay, self._fire, handle)
        timers[handle.name] = handle

    def _fire(self, handle: TimerHandle) -> None:
        # The timer stays listed until its turn starts, so a turn queued
        # before it can still cancel it by name.
        def body(room: GameRoom, helper: Helper) -> Any:
            timers = self._timers.get(handle.room_id, {})
            if timers.get(handle.name) is handle:
                del timers[handle.name]
                if not timers:
                    self._timers.pop(handle.room_id, None)
            if handle.cancelled:
                return None
            handle.done = True
            return handle.callback(room, helper, *handle.args)

        self.run(handle.room_id, body).addErrback(
            lambda f: log.failure(
                "a timer of room {room} failed", f, room=handle.room_id
            )
        )

    def cancel_timer(self, room_id: int, name: str) -> None:
        handle = self._timers.get(room_id, {}).pop(name, None)
        if handle is not None:
            handle.cancel()

    def cancel_timers(self, room_id: int) -> None:
        for handle in self._timers.pop(room_id, {}).values():
            handle.cancel()

    def timers(self, room_id: int) -> dict[str, TimerHandle]:
        return dict(self._timers.get(room_id, {}))
