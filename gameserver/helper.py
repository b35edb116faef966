"""What a handler uses to act: send, group, schedule, start and finish.

Nothing a handler does through the helper happens until the handler has
succeeded and the room's state is saved: a handler that raises sends
nothing and schedules nothing, and a message a client receives always
describes saved state.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attrs

from gameserver.errors import GameServerError
from gameserver.groups import room_group
from gameserver.messages import Frame, dumps, message
from gameserver.models import RoomState, TimerSpec, UserRef

if TYPE_CHECKING:
    from gameserver.gameroom import GameRoom
    from gameserver.turns import RoomTurns

Effect = Callable[[], Awaitable[None] | None]


@attrs.frozen
class TimerHandle:
    """A timed event as set: ``deadline`` is the server time it fires at.

    Cancel it with ``helper.cancel_timer(name)`` from any later turn.
    """

    room_id: int
    name: str
    deadline: float


def _frame(type_: str, data: Any, room_id: int) -> Frame:
    try:
        return Frame.of(dumps(message(type_, data, room_id)))
    except (TypeError, ValueError) as e:
        raise TypeError(f"data of {type_} must be JSON-serialisable: {e}") from None


class Helper:
    def __init__(self, turns: RoomTurns, room: GameRoom, user: UserRef | None) -> None:
        self._turns = turns
        self._groups = turns.groups
        self.room = room
        self.user = user
        self.game = turns.game_of(room)
        self.effects: list[Effect] = []
        self.chat: list[dict[str, Any]] = []
        self.transition: RoomState | None = None
        self.start_options: dict[str, Any] = {}
        self._group_changes: list[tuple[str, int, bool]] = []
        #: ("set", spec), ("cancel", name), in order: stored at commit.
        self.timer_ops: list[tuple[str, Any]] = []
        #: Turns to run right after this one commits (lifecycle hooks).
        self.follow_ups: list[tuple[Callable[..., Any], UserRef | None]] = []

    def now(self) -> float:
        """The server's clock, the time base of every deadline."""
        return self._turns.clock.seconds()

    # Sending

    def self_send(self, type_: str, data: Any) -> None:
        """To the user whose message (or join) this is, on all their sockets."""
        if self.user is None:
            raise GameServerError(
                "self_send has no user in a timed event", code="no_user"
            )
        self.send_to(self.user, type_, data)

    def send_to(self, user: UserRef | int, type_: str, data: Any) -> None:
        """To one user only: a private hand of cards."""
        user_id = user if isinstance(user, int) else user.id
        frame = _frame(type_, data, self.room.id)
        self.effects.append(lambda: self._groups.send_to_user(user_id, frame))

    def broadcast(
        self, type_: str, data: Any, *, exclude: UserRef | int | None = None
    ) -> None:
        """To everyone present in the room."""
        skip = exclude.id if isinstance(exclude, UserRef) else exclude
        frame = _frame(type_, data, self.room.id)
        group = room_group(self.room.id)
        self.effects.append(lambda: self._groups.send(group, frame, exclude=skip))

    def group_send(self, group: str, type_: str, data: Any) -> None:
        """To the members of one of the room's groups (a team)."""
        frame = _frame(type_, data, self.room.id)
        name = room_group(self.room.id, group)
        self.effects.append(lambda: self._groups.send(name, frame))

    # Groups

    def group_add(self, group: str, user: UserRef | int | None = None) -> None:
        self._group_change(group, user, True)

    def group_remove(self, group: str, user: UserRef | int | None = None) -> None:
        self._group_change(group, user, False)

    def _group_change(self, group: str, user: UserRef | int | None, add: bool) -> None:
        if not isinstance(group, str) or not group or ":" in group:
            raise ValueError("a group name is a non-empty string without ':'")
        user = self.user if user is None else user
        if user is None:
            raise GameServerError(
                "name the user: this is a timed event", code="no_user"
            )
        user_id = user if isinstance(user, int) else user.id
        name = room_group(self.room.id, group)
        self._group_changes.append((group, user_id, add))
        change = self._groups.add if add else self._groups.remove
        self.effects.append(lambda: change(name, user_id))

    async def group_members(self, group: str) -> frozenset[int]:
        """Who is in a group, counting this handler's own changes."""
        members = set(await self._groups.members(room_group(self.room.id, group)))
        for name, user_id, add in self._group_changes:
            if name == group:
                (members.add if add else members.discard)(user_id)
        return frozenset(members)

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
        ``args`` are JSON: the timer is stored, so that it fires exactly
        once even if this process is gone by then. It runs like a message:
        one at a time with the room's others, its state saved or rolled
        back. Scheduling a ``name`` again replaces the earlier timer of that
        name; timers end when the room finishes.
        """
        if not delay >= 0:
            raise ValueError("delay must be a number of seconds, not negative")
        try:
            dumps(list(args))
        except (TypeError, ValueError) as e:
            raise TypeError(f"timer arguments must be JSON-serialisable: {e}") from None
        router, method = self._turns.callback_ref(self.game, callback)
        spec = TimerSpec(
            id=uuid.uuid4().hex,
            name=name or f"timer-{uuid.uuid4().hex[:12]}",
            deadline=self.now() + delay,
            router=router,
            method=method,
            args=args,
        )
        self.timer_ops.append(("set", spec))
        return TimerHandle(self.room.id, spec.name, spec.deadline)

    def cancel_timer(self, name: str) -> None:
        self.timer_ops.append(("cancel", name))

    # Lifecycle

    def start_game(self, options: dict[str, Any] | None = None) -> None:
        """``waiting`` (or ``finished``, for a rematch) to ``in_game``."""
        if self.room.status is RoomState.IN_GAME:
            raise GameServerError("the game has already started", code="game_started")
        self.transition = RoomState.IN_GAME
        self.start_options = dict(options or {})
        self.room.status = RoomState.IN_GAME

    def finish_game(self) -> None:
        """``in_game`` to ``finished``: timers are cancelled."""
        if self.room.status is not RoomState.IN_GAME:
            raise GameServerError("the game is not in progress", code="not_in_game")
        self.transition = RoomState.FINISHED
        self.room.status = RoomState.FINISHED

    # Chat backlog

    def keep_chat(self, entry: dict[str, Any]) -> None:
        self.chat.append(entry)
