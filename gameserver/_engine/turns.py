"""One turn at a time per room: messages, timers and hooks, in order.

A room's owner queues every piece of work for the room and runs it as a
turn against the room it holds in memory. A turn's changes and messages
are kept in its ``Turn`` until it has succeeded; then they are applied to
the room, and the turn's ``Changes`` go to the committer, which saves them
and only then delivers the messages. A turn that fails leaves the room as
it was. A room with ``max_pending_turns`` turns waiting or unsaved refuses
new messages with ``busy`` instead of queueing them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from gameserver._chat import ChatRouter
from gameserver._engine import timers
from gameserver._engine.drive import Pending, settle
from gameserver._engine.room import (
    ANSWERED,
    DELETE,
    GONE,
    HERE,
    HOOK,
    JOIN,
    LEAVE,
    MESSAGE,
    RESERVE,
    TIMER,
    ChatEntry,
    LiveRoom,
    Logged,
    Reply,
    Work,
    error_frame,
)
from gameserver._engine.rooms import record_now
from gameserver._errors import (
    Busy,
    Forbidden,
    GameServerError,
    NotInRoom,
    Spectating,
    UnknownType,
)
from gameserver._gameroom import GameRoom, StateTooLarge, encode_json
from gameserver._helper import Helper
from gameserver._interfaces import ICommitter, IGame
from gameserver._models import RoomData, RoomState, TimerSpec, UserRef
from gameserver._routers import Handler
from gameserver._settings import Settings
from gameserver._stats import Counters
from gameserver._stats import now as perf_now
from gameserver._wire import messages
from gameserver._wire.messages import CHAT_MESSAGE, Frame

log = Logger()

#: A message's recipients: user ids, or the one socket a reply is for.
Target = tuple[int, ...] | Reply
Out = tuple[Frame, Target]


class HandlerError(GameServerError):
    code = "handler_error"


@attrs.define(slots=True, eq=False)
class Changes:
    """What one turn changed, for the committer: names, not values.

    The values are the room's own after the turn; a committer that saves
    several turns at once reads them from the room when it saves.
    """

    out: list[Out]
    work: Work
    #: The turn's messages to users, numbered, as the room's log keeps them.
    log: list[Logged] = attrs.Factory(list)
    state: bool = False
    record: bool = False
    entries: tuple[str, ...] = ()
    chat: list[ChatEntry] = attrs.Factory(list)
    timers: tuple[str, ...] = ()
    clear_timers: bool = False
    groups: tuple[str, ...] = ()
    present: tuple[int, ...] = ()
    #: The room's present users before the turn, when it changed them.
    present_before: dict[int, frozenset[str]] | None = None
    #: The ids of the room's players before the turn, when it changed them.
    players_before: tuple[int, ...] | None = None
    #: The turn queued lifecycle hooks: save it with them, not before.
    more: bool = False
    #: The room is deleted: drop everything it has.
    drop: bool = False


class Turn:
    """The bookkeeping of one turn, kept apart until the turn succeeds.

    Overlays (``players``, ``present``, ``groups``, ``entries``) hold what
    the turn changed; reads go through them, so the turn sees its own
    changes while the room itself stays as it was.
    """

    __slots__ = (
        "chat",
        "clear_timers",
        "drop",
        "entries",
        "expired",
        "follow_ups",
        "groups",
        "log",
        "out",
        "players",
        "present",
        "reserved",
        "room",
        "spectators",
        "start_options",
        "started",
        "status",
        "timer_ops",
        "touched",
        "transition",
        "work",
    )

    def __init__(self, room: LiveRoom, work: Work) -> None:
        self.room = room
        self.work = work
        self.out: list[Out] = []
        #: What was sent to users, and for whom: ``(frame, users, exclude)``.
        self.log: list[tuple[Frame, tuple[int, ...] | None, int | None]] = []
        self.chat: list[ChatEntry] = []
        self.players: tuple[UserRef, ...] | None = None
        self.reserved: tuple[tuple[int, float], ...] | None = None
        self.spectators: tuple[UserRef, ...] | None = None
        self.status: RoomState | None = None
        self.transition: RoomState | None = None
        self.start_options: dict[str, Any] = {}
        self.present: dict[int, frozenset[str]] | None = None
        self.groups: dict[str, frozenset[int]] | None = None
        self.entries: dict[str, str | None] | None = None
        self.timer_ops: list[tuple[str, Any]] | None = None
        self.clear_timers = False
        self.follow_ups: list[Work] | None = None
        #: Whether the game could have changed ``room.state`` in this turn.
        self.touched = False
        self.drop = False
        #: It waited past ``turn_timeout``: failed, and whatever it does later
        #: is ignored.
        self.expired = False
        #: ``perf_counter`` when it began, for the turn duration histogram.
        self.started = 0.0

    @property
    def user(self) -> UserRef | None:
        return self.work.user

    # Reading through the overlays

    def players_now(self) -> tuple[UserRef, ...]:
        players = self.players
        return self.room.record.players if players is None else players

    def has_player(self, user_id: int) -> bool:
        return any(p.id == user_id for p in self.players_now())

    def spectators_now(self) -> tuple[UserRef, ...]:
        spectators = self.spectators
        return self.room.record.spectators if spectators is None else spectators

    def is_watching(self, user_id: int) -> bool:
        return any(s.id == user_id for s in self.spectators_now())

    def reserved_now(self) -> tuple[tuple[int, float], ...]:
        reserved = self.reserved
        return self.room.record.reserved if reserved is None else reserved

    def status_now(self) -> RoomState:
        status = self.status
        return self.room.record.state if status is None else status

    def present_now(self) -> dict[int, frozenset[str]]:
        present = self.present
        return self.room.present if present is None else present

    def members(self, group: str) -> frozenset[int]:
        groups = self.groups
        if groups is not None and group in groups:
            return groups[group]
        return self.room.groups.get(group, frozenset())

    def group_names(self) -> set[str]:
        names = set(self.room.groups)
        if self.groups is not None:
            names.update(self.groups)
        return names

    def entry(self, key: str) -> str | None:
        entries = self.entries
        if entries is not None and key in entries:
            return entries[key]
        return self.room.entries.get(key)

    # Changing

    def set_players(self, players: tuple[UserRef, ...]) -> None:
        self.players = players

    def set_present(self, user_id: int, processes: frozenset[str] | None) -> None:
        if self.present is None:
            self.present = dict(self.room.present)
        if processes:
            self.present[user_id] = processes
        else:
            self.present.pop(user_id, None)

    def set_members(self, group: str, members: frozenset[int]) -> None:
        if self.groups is None:
            self.groups = {}
        self.groups[group] = members

    def set_entry(self, key: str, value: str | None) -> None:
        if self.entries is None:
            self.entries = {}
        self.entries[key] = value

    def timer_op(self, op: str, value: Any) -> None:
        if self.timer_ops is None:
            self.timer_ops = []
        self.timer_ops.append((op, value))

    def follow_up(self, work: Work) -> None:
        if self.follow_ups is None:
            self.follow_ups = []
        self.follow_ups.append(work)

    # Sending

    def broadcast(self, frame: Frame, exclude: int | None = None) -> None:
        """To everyone in the room (but ``exclude``): those present get it now."""
        present = self.present_now()
        if exclude is None:
            users = tuple(present)
        else:
            users = tuple(u for u in present if u != exclude)
        if users:
            self.out.append((frame, users))
        self.log.append((frame, None, exclude))

    def to_present(self, frame: Frame, users: Any) -> None:
        """For ``users``: those of them present get it now."""
        users = tuple(users)
        if not users:
            return
        present = self.present_now()
        reached = tuple(u for u in users if u in present)
        if reached:
            self.out.append((frame, reached))
        self.log.append((frame, users, None))

    def reply(self, frame: Frame) -> None:
        """To the socket the work came from, if it came from one (not logged:
        an answer to one request)."""
        reply = self.work.reply
        if reply is not None:
            self.out.append((frame, reply))


Body = Callable[[Turn, GameRoom, Helper], Any]


class Engine:
    """Every room this process owns, and their turns.

    It knows nothing of sockets or stores: work comes in with ``submit``,
    changes go out to the committer, and a room comes and goes with
    ``adopt`` and ``drop``.
    """

    def __init__(
        self,
        *,
        games: Mapping[str, IGame],
        clock: IReactorTime,
        settings: Settings,
        process_id: str,
    ) -> None:
        self.games = games
        self.clock = clock
        self.settings = settings
        self.process_id = process_id
        self.rooms: dict[int, LiveRoom] = {}
        self.committer: ICommitter | None = None
        self._limit = settings.max_state_size
        self._cap = settings.max_pending_turns
        chat = ChatRouter(max_length=settings.chat_max_length).get_routes()
        self._builtin: dict[str, Handler] = {**chat, messages.START_GAME: _start_game}
        self._routes: dict[str, dict[str, Handler]] = {}
        #: Messages, refusals and durations, for the metrics: labelled by the
        #: types the server and its games handle and the known error codes.
        self.counters = Counters(self.known_types(), known_codes())

    # Rooms

    def game_of(self, name: str) -> IGame:
        game = self.games.get(name)
        if game is None:
            raise GameServerError(
                f"the game {name!r} is not served here", code="game_unavailable"
            )
        return game

    def routes(self, game: IGame) -> dict[str, Handler]:
        routes = self._routes.get(game.name)
        if routes is None:
            routes = self._routes[game.name] = {**game.routes, **self._builtin}
        return routes

    def known_types(self) -> list[str]:
        """Every message type a client may send here, and those the server sends."""
        types = dict.fromkeys(messages.BUILTIN_TYPES)
        types.update(dict.fromkeys(self._builtin))
        for game in self.games.values():
            types.update(dict.fromkeys(game.routes))
        return list(types)

    def is_known(self, type_: str) -> bool:
        """Whether any game served here (or the server) handles ``type_``."""
        return type_ in self._builtin or any(
            type_ in g.routes for g in self.games.values()
        )

    def adopt(self, data: RoomData) -> LiveRoom:
        """Hold a room from now on, as loaded; its timers are armed."""
        game = self.game_of(data.record.game)
        settings = self.settings
        room = LiveRoom(
            data,
            game,
            self.routes(game),
            log_size=settings.resume_log,
            window=settings.resume_window,
        )
        self.rooms[room.id] = room
        for spec in room.timers.values():
            self._arm(room, spec)
        room.idle_since = self.clock.seconds()
        return room

    def drop(self, room: LiveRoom) -> list[Work]:
        """Stop holding ``room`` at once; the work it had not done yet."""
        if self.rooms.get(room.id) is room:
            del self.rooms[room.id]
        for call in room.armed.values():
            if call.active():
                call.cancel()
        room.armed.clear()
        left = [w for w in room.queue if w.kind != HOOK]
        room.queue.clear()
        return left

    def idle(self, room: LiveRoom) -> bool:
        """Nobody in it, nothing to do, nothing unsaved and no timer."""
        return not (room.present or room.pending() or room.timers)

    # Work

    def submit(self, room: LiveRoom, work: Work) -> None:
        """Queue ``work``; a client's message past the cap is refused ``busy``."""
        origin = work.origin
        if origin:
            admitted = room.admitted.get(origin, 0)
            if work.seq <= admitted:
                # Sent again: answered again once saved, or by its own commit.
                if work.seq <= room.confirmed.get(origin, 0):
                    assert self.committer is not None
                    self.committer.duplicate(room, work)
                return
            if work.prev > admitted:
                return  # one before it is missing: both come again, in order
            room.admitted[origin] = work.seq
        if work.kind in ANSWERED and room.pending() >= self._cap:
            self.counters.refused_busy += 1
            error = Busy(
                f"room {room.id} has {self._cap} messages waiting: try again shortly"
            )
            frame = _refusal_frame(work, error)
            self.counters.refused(frame.type, error.code)
            assert self.committer is not None
            self.committer.refuse(room, work, frame)
            return
        room.queue.append(work)
        if not room.running:
            self._pump(room)

    def _pump(self, room: LiveRoom) -> None:
        room.running = True
        queue = room.queue
        while queue and not room.frozen:
            if self.rooms.get(room.id) is not room:
                queue.clear()
                break
            waiting = self._turn(room, queue.popleft())
            if waiting is not None:
                turn, pending = waiting
                limit = self.clock.callLater(
                    self.settings.turn_timeout, self._timed_out, room, turn
                )
                pending.deferred.addBoth(self._resumed, room, turn, limit)
                return
        room.running = False
        room.idle_since = self.clock.seconds()

    def _timed_out(self, room: LiveRoom, turn: Turn) -> None:
        """A turn waited too long: it fails, and the room goes on without it."""
        turn.expired = True
        error = GameServerError(
            f"the game took over {self.settings.turn_timeout:g} s to handle this",
            code="timeout",
        )
        log.warn(
            "a turn of room {room_id} timed out: {kind} {type}",
            room_id=room.id,
            user_id=_user_id(turn.work),
            process=self.process_id,
            kind=turn.work.kind,
            type=turn.work.type,
        )
        self._failed(turn, Failure(error), expired=True)
        self._resumed(None, room, None, None)

    def _resumed(
        self, _: object, room: LiveRoom, turn: Turn | None, limit: Any
    ) -> None:
        if limit is not None and limit.active():
            limit.cancel()
        if turn is not None and turn.expired:
            return  # the room went on when the turn timed out
        room.running = False
        if self.rooms.get(room.id) is room and room.queue:
            self._pump(room)

    def _turn(self, room: LiveRoom, work: Work) -> tuple[Turn, Pending] | None:
        """Run one turn; the turn and a ``Pending`` if it waits on something."""
        self.counters.turns += 1
        turn = Turn(room, work)
        turn.started = perf_now()
        view = GameRoom(turn, self._limit)
        helper = Helper(self, turn, view)
        try:
            outcome = settle(self._body(turn, view, helper))
        except Exception:
            self._failed(turn, Failure())
            return None
        if isinstance(outcome, Pending):
            outcome.deferred.addCallbacks(
                lambda _: self._finish(turn), lambda f: self._failed(turn, f)
            )
            return turn, outcome
        self._finish(turn)
        return None

    def _body(self, turn: Turn, view: GameRoom, helper: Helper) -> Any:
        from gameserver._engine import rooms

        work = turn.work
        kind = work.kind
        if kind == MESSAGE:
            user = work.user
            assert user is not None
            if user.id not in turn.room.present:
                raise NotInRoom(
                    f"you are not in room {work.room_id}; send JOIN_ROOM first"
                )
            handler = turn.room.routes.get(work.type)
            if handler is None:
                raise UnknownType(f"unknown message type {work.type!r}")
            watching = turn.room.record.spectators
            if watching and work.type != CHAT_MESSAGE and turn.is_watching(user.id):
                raise Spectating("a spectator can chat, not play")
            return handler(view, user, helper, work.data)
        if kind == TIMER:
            self.counters.timers_fired += 1
            return timers.fire(turn, view, helper)
        if kind == HOOK:
            return work.hook(view, helper)
        if kind == JOIN:
            return rooms.join(turn, view, helper)
        if kind == LEAVE:
            return rooms.leave(turn, view, helper)
        if kind == RESERVE:
            return rooms.reserve(turn, helper)
        if kind == GONE:
            return rooms.gone(turn, view, helper)
        if kind == HERE:
            return rooms.here(turn)
        if kind == DELETE:
            return rooms.delete(turn)
        raise UnknownType(f"unknown kind of work {kind!r}")

    def _finish(self, turn: Turn) -> None:
        """The turn succeeded: apply it to the room and hand it to the committer."""
        room = turn.room
        if self.rooms.get(room.id) is not room or turn.expired:
            return
        changes = Changes(turn.out, turn.work)
        try:
            if turn.touched:
                text = encode_json(room.state, "the room's state", self._limit)
                if text != room.saved:
                    room.saved = text
                    changes.state = True
        except (TypeError, StateTooLarge):
            self._failed(turn, Failure())
            return
        counters = self.counters
        counters.turn_seconds.observe(perf_now() - turn.started)
        count = counters.sent.count
        for frame, _ in turn.out:
            count(frame.type)
        if (
            turn.players is not None
            or turn.status is not None
            or turn.spectators is not None
            or turn.reserved is not None
        ):
            if turn.players is not None:
                changes.players_before = tuple(p.id for p in room.record.players)
            room.record = record_now(turn)
            changes.record = True
        if turn.entries:
            for key, value in turn.entries.items():
                if value is None:
                    room.entries.pop(key, None)
                else:
                    room.entries[key] = value
            changes.entries = tuple(turn.entries)
        if turn.chat:
            room.chat.extend(turn.chat)
            changes.chat = turn.chat
        if turn.timer_ops is not None or turn.clear_timers:
            changes.timers, changes.clear_timers = self._apply_timers(room, turn)
        if turn.groups:
            for name, members in turn.groups.items():
                if members:
                    room.groups[name] = members
                else:
                    room.groups.pop(name, None)
            changes.groups = tuple(turn.groups)
        if turn.present is not None:
            before = room.present
            after = turn.present
            changes.present = tuple(
                u for u in before.keys() | after.keys() if before.get(u) != after.get(u)
            )
            room.present = after
            changes.present_before = before
        if turn.drop:
            changes.drop = True
        self._seen(room, turn.work)
        if turn.transition is not None:
            self._transition(turn)
        if turn.follow_ups:
            room.queue.extendleft(reversed(turn.follow_ups))
            # Saved with the hooks it queued: the two together, or neither.
            changes.more = True
        if turn.log:
            changes.log = self._number(room, turn.log)
        room.unsaved += 1
        assert self.committer is not None
        self.committer.commit(room, changes)

    def _number(
        self,
        room: LiveRoom,
        sent: list[tuple[Frame, tuple[int, ...] | None, int | None]],
    ) -> list[Logged]:
        """Number the turn's messages in the room's order and log them."""
        now = self.clock.seconds()
        start = seq = room.seq
        entries: list[Logged] = []
        for frame, users, exclude in sent:
            if frame.seq > start:  # one message sent twice in the turn
                entry = entries[frame.seq - start - 1]
                if entry.users is None or users is None:
                    entry.users, entry.exclude = None, None
                else:
                    entry.users = tuple(dict.fromkeys(entry.users + users))
                continue
            seq += 1
            frame.stamp(seq)
            entries.append(Logged(seq, frame.payload, users, exclude, now))
        room.seq = seq
        log = room.log
        log.extend(entries)
        horizon = now - room.window
        while log[0].at < horizon:  # the last entry is now's
            log.popleft()
        return entries

    def _transition(self, turn: Turn) -> None:
        room, transition = turn.room, turn.transition
        assert transition is not None
        hook: Callable[[GameRoom, Helper], Any]
        if transition is RoomState.IN_GAME:
            kind = messages.GAME_STARTED
            options = turn.start_options
            game = room.game

            def hook(view: GameRoom, helper: Helper) -> Any:
                return game.on_start(view, helper, options)

        else:
            kind = messages.GAME_FINISHED
            hook = room.game.on_finish
        frame = Frame.build(kind, {"status": transition.value}, room.id)
        turn.broadcast(frame)
        turn.follow_up(Work(HOOK, room.id, hook=hook))
        if turn.follow_ups is not None and len(turn.follow_ups) > 1:
            # The transition's hook runs before the others the turn queued.
            turn.follow_ups.insert(0, turn.follow_ups.pop())

    def _apply_timers(self, room: LiveRoom, turn: Turn) -> tuple[tuple[str, ...], bool]:
        names: dict[str, None] = {}
        if turn.clear_timers:
            for name in list(room.timers):
                self._disarm(room, name)
                names[name] = None
            room.timers.clear()
        for op, value in turn.timer_ops or ():
            if op == "set":
                spec: TimerSpec = value
                room.timers[spec.name] = spec
                self._arm(room, spec)
                names[spec.name] = None
            elif room.timers.pop(value, None) is not None:
                self._disarm(room, value)
                names[value] = None
        return tuple(names), turn.clear_timers

    def _seen(self, room: LiveRoom, work: Work) -> None:
        if work.origin and work.seq > room.seen.get(work.origin, 0):
            room.seen[work.origin] = work.seq

    def _failed(self, turn: Turn, failure: Failure, *, expired: bool = False) -> None:
        """Leave the room as it was; tell the sender why."""
        room, work = turn.room, turn.work
        if self.rooms.get(room.id) is not room or (turn.expired and not expired):
            return
        self.counters.failed_turns += 1
        self.counters.turn_seconds.observe(perf_now() - turn.started)
        if turn.touched:
            room.state = json.loads(room.saved)
        error = failure.value
        if not isinstance(error, GameServerError):
            log.failure(
                "a handler of {game} failed in room {room_id}",
                failure,
                game=room.record.game,
                room_id=room.id,
                user_id=_user_id(work),
                process=self.process_id,
            )
            error = HandlerError(
                f"the game failed to handle this: {type(error).__name__}"
            )
        changes = Changes([], work)
        if work.kind == HOOK:
            log.warn(
                "a hook in room {room_id} refused: {detail}",
                room_id=room.id,
                process=self.process_id,
                detail=error.detail,
            )
        elif work.kind == TIMER:
            # Dropped, not fired again and again by whoever holds the room.
            assert work.timer is not None
            name, timer_id = work.timer
            spec = room.timers.get(name)
            if spec is not None and spec.id == timer_id:
                del room.timers[name]
                self._disarm(room, name)
                changes.timers = (name,)
        elif work.kind in ANSWERED and work.reply is not None:
            frame = _refusal_frame(work, error)
            self.counters.refused(frame.type, error.code)
            changes.out.append((frame, work.reply))
        self._seen(room, work)
        room.unsaved += 1
        assert self.committer is not None
        self.committer.commit(room, changes)

    def saved(self, room: LiveRoom, turns: int, works: list[Work]) -> None:
        """The committer saved ``turns`` of the room's turns, doing ``works``."""
        room.unsaved -= turns
        confirmed = room.confirmed
        for work in works:
            if work.origin and work.seq > confirmed.get(work.origin, 0):
                confirmed[work.origin] = work.seq
        if not room.running and not room.queue:
            room.idle_since = self.clock.seconds()

    # Timers

    def _arm(self, room: LiveRoom, spec: TimerSpec) -> None:
        self._disarm(room, spec.name)
        delay = max(0.0, spec.deadline - self.clock.seconds())
        room.armed[spec.name] = self.clock.callLater(
            delay, self._due, room, spec.name, spec.id
        )

    def _disarm(self, room: LiveRoom, name: str) -> None:
        call = room.armed.pop(name, None)
        if call is not None and call.active():
            call.cancel()

    def _due(self, room: LiveRoom, name: str, timer_id: str) -> None:
        room.armed.pop(name, None)
        if self.rooms.get(room.id) is room:
            self.submit(room, Work(TIMER, room.id, timer=(name, timer_id)))

    def timers(self, room_id: int) -> dict[str, Any]:
        """The room's timers, by name, as ``TimerHandle``s."""
        from gameserver._helper import TimerHandle

        room = self.rooms.get(room_id)
        if room is None:
            return {}
        return {
            name: TimerHandle(room_id, name, spec.deadline)
            for name, spec in room.timers.items()
        }


def _user_id(work: Work) -> int | None:
    """Whose work it is, for a log event (``None`` for a timer or a hook)."""
    return None if work.user is None else work.user.id


def known_codes() -> list[str]:
    """The error codes the server itself sends (a game may add its own)."""
    codes: dict[str, None] = {}
    kinds: list[type[GameServerError]] = [GameServerError]
    while kinds:
        kind = kinds.pop()
        codes[kind.code] = None
        kinds.extend(kind.__subclasses__())
    codes.update(dict.fromkeys(_LITERAL_CODES))
    return list(codes)


#: Codes given as ``code=`` rather than by a class of their own.
_LITERAL_CODES = (
    "already_validated",
    "bad_credentials",
    "game_unavailable",
    "internal_error",
    "not_owner",
    "not_enough_players",
    "not_in_game",
    "game_started",
    "timeout",
    "token_expired",
    "too_many_connections",
    "unencodable",
)


def _refusal_frame(work: Work, error: GameServerError) -> Frame:
    return error_frame(work, error.code, error.detail)


def _start_game(
    room: GameRoom, user: UserRef, helper: Helper, data: dict[str, Any]
) -> Any:
    """The built-in ``START_GAME``: the owner starts once enough are seated."""
    if user.id != room.owner.id:
        raise Forbidden("only the room's owner can start the game", code="not_owner")
    game = helper.game
    if len(room.players) < game.min_players:
        raise GameServerError(
            f"{game.name} needs at least {game.min_players} players",
            code="not_enough_players",
        )
    refused = settle(game.can_start(room, user, helper, data))
    if isinstance(refused, Pending):
        return refused.deferred.addCallback(lambda _: helper.start_game(data))
    helper.start_game(data)
    return None
