"""What a handler uses to act: send, group, schedule, start and finish.

Nothing a handler does through the helper happens until the handler has
succeeded and the room's changes are saved: a handler that raises sends
nothing and schedules nothing, and a message a client receives always
describes saved state. The bookkeeping lives in the engine's ``Turn``;
the helper is only its face for authors.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import attrs

from gameserver._engine.timers import callback_ref
from gameserver._errors import GameServerError
from gameserver._models import RoomState, TimerSpec, UserRef
from gameserver._wire.messages import Frame, dumps

if TYPE_CHECKING:
    from gameserver._engine.turns import Engine, Turn
    from gameserver._gameroom import GameRoom
    from gameserver._interfaces import IGame


@attrs.frozen
class TimerHandle:
    """A timed event as set: ``deadline`` is the server time it fires at.

    Cancel it with ``helper.cancel_timer(name)`` from any later turn.
    """

    room_id: int
    name: str
    deadline: float


class Members(frozenset[int]):
    """The user ids in a group; also awaitable, as it was when it needed I/O."""

    def __await__(self) -> Generator[Any, None, Members]:
        return self
        yield  # pragma: no cover - makes this a generator


def _user_id(user: UserRef | int) -> int:
    return user if isinstance(user, int) else user.id


class Helper:
    __slots__ = ("_engine", "_turn", "room")

    def __init__(self, engine: Engine, turn: Turn, room: GameRoom) -> None:
        self._engine = engine
        self._turn = turn
        #: The room this turn is about.
        self.room = room

    @property
    def user(self) -> UserRef | None:
        """Whose message (or join, or leave) this is; ``None`` in a timer."""
        return self._turn.work.user

    @property
    def game(self) -> IGame:
        return self._turn.room.game

    def now(self) -> float:
        """The server's clock, the time base of every deadline."""
        return self._engine.clock.seconds()

    # Sending: to users present in the room

    def self_send(self, type_: str, data: Any) -> None:
        """To the user whose message (or join) this is, on all their sockets."""
        user = self._turn.work.user
        if user is None:
            raise GameServerError(
                "self_send has no user in a timed event", code="no_user"
            )
        self._turn.to_present(Frame.build(type_, data, self._turn.room.id), (user.id,))

    def send_to(self, user: UserRef | int, type_: str, data: Any) -> None:
        """To one user only: a private hand of cards."""
        frame = Frame.build(type_, data, self._turn.room.id)
        self._turn.to_present(frame, (_user_id(user),))

    def broadcast(
        self, type_: str, data: Any, *, exclude: UserRef | int | None = None
    ) -> None:
        """To everyone present in the room."""
        skip = None if exclude is None else _user_id(exclude)
        self._turn.broadcast(Frame.build(type_, data, self._turn.room.id), skip)

    def group_send(self, group: str, type_: str, data: Any) -> None:
        """To the members of one of the room's groups (a team)."""
        frame = Frame.build(type_, data, self._turn.room.id)
        self._turn.to_present(frame, self._turn.members(group))

    # Groups

    def group_add(self, group: str, user: UserRef | int | None = None) -> None:
        self._group_change(group, user, True)

    def group_remove(self, group: str, user: UserRef | int | None = None) -> None:
        self._group_change(group, user, False)

    def _group_change(self, group: str, user: UserRef | int | None, add: bool) -> None:
        if not isinstance(group, str) or not group or ":" in group:
            raise ValueError("a group name is a non-empty string without ':'")
        if user is None:
            user = self._turn.work.user
        if user is None:
            raise GameServerError(
                "name the user: this is a timed event", code="no_user"
            )
        user_id = _user_id(user)
        members = self._turn.members(group)
        if add and user_id not in members:
            self._turn.set_members(group, members | {user_id})
        elif not add and user_id in members:
            self._turn.set_members(group, members - {user_id})

    def group_members(self, group: str) -> Members:
        """Who is in a group, counting this handler's own changes.

        A frozenset; ``await helper.group_members(...)`` works too.
        """
        return Members(self._turn.members(group))

    # Time

    def call_later(
        self,
        delay: float,
        callback: Callable[..., Any],
        *args: Any,
        name: str | None = None,
    ) -> TimerHandle:
        """Call ``callback(room, helper, *args)`` after ``delay`` seconds.

        ``callback`` is a method of the game or of one of its routers, and
        ``args`` are JSON: the timer is kept with the room, so that it fires
        exactly once even if this process is gone by then. It runs like a
        message: one at a time with the room's others, its changes kept or
        rolled back. Scheduling a ``name`` again replaces the earlier timer
        of that name; timers end when the room finishes.
        """
        if not delay >= 0:
            raise ValueError("delay must be a number of seconds, not negative")
        try:
            dumps(list(args))
        except (TypeError, ValueError) as e:
            raise TypeError(f"timer arguments must be JSON-serialisable: {e}") from None
        router, method = callback_ref(self._turn.room.game, callback)
        spec = TimerSpec(
            id=uuid.uuid4().hex,
            name=name or f"timer-{uuid.uuid4().hex[:12]}",
            deadline=self.now() + delay,
            router=router,
            method=method,
            args=args,
        )
        self._turn.timer_op("set", spec)
        return TimerHandle(self._turn.room.id, spec.name, spec.deadline)

    def cancel_timer(self, name: str) -> None:
        self._turn.timer_op("cancel", name)

    # Lifecycle

    def start_game(self, options: dict[str, Any] | None = None) -> None:
        """``waiting`` (or ``finished``, for a rematch) to ``in_game``."""
        turn = self._turn
        if turn.status_now() is RoomState.IN_GAME:
            raise GameServerError("the game has already started", code="game_started")
        turn.transition = turn.status = RoomState.IN_GAME
        turn.start_options = dict(options or {})

    def finish_game(self) -> None:
        """``in_game`` to ``finished``: the room's timers are cancelled."""
        turn = self._turn
        if turn.status_now() is not RoomState.IN_GAME:
            raise GameServerError("the game is not in progress", code="not_in_game")
        turn.transition = turn.status = RoomState.FINISHED
        # The timers set before this turn end; those this turn sets stay.
        turn.clear_timers = True
