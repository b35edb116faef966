"""Rooms: creating, listing and deleting them, and what joining, leaving and
a disconnect mean, as turns of the room.

A room has *seats* (``players``) and *present* users (those who receive its
messages, with the processes that hold their sockets). Joining takes a
seat and makes the user present; a disconnect outside a game gives the
seat up, while in a game it keeps the seat so the player can come back.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from gameserver._engine.room import DELETE, HOOK, LiveRoom, Work, join_type
from gameserver._errors import (
    Forbidden,
    GameStarted,
    InvalidInput,
    NotFound,
    NotInRoom,
    RoomFull,
    RoomNotFound,
    Seated,
    SpectatorsFull,
    WrongPassword,
)
from gameserver._interfaces import IGame, IHosting, IStore
from gameserver._models import Page, Room, RoomState, UserRef
from gameserver._wire import messages
from gameserver._wire.messages import Frame

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from gameserver._accounts.passwords import PasswordHasher
    from gameserver._engine.matchmaking import Matchmaker
    from gameserver._engine.turns import Turn
    from gameserver._gameroom import GameRoom
    from gameserver._guard import Guard
    from gameserver._helper import Helper

MAX_NAME = 64

MIN_ROOM_PASSWORD = 4
MAX_ROOM_PASSWORD = 128


def _optional(body: dict[str, Any], key: str, kind: type) -> Any:
    value = body.get(key)
    if value is not None and (type(value) is not kind):
        raise InvalidInput(f"'{key}' must be a {kind.__name__}")
    return value


class Rooms:
    """The rooms as the HTTP API and a join see them: records in the store."""

    def __init__(
        self,
        store: IStore,
        hasher: PasswordHasher,
        games: Mapping[str, IGame],
        hosting: IHosting,
        live: Mapping[int, LiveRoom],
        matchmaker: Matchmaker | None = None,
        guard: Guard | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        """``live``: the rooms hosted here, whose records need no store read;
        ``matchmaker``: offers new rooms without a password to quick joins;
        ``guard``: throttles guesses at room passwords; ``clock``: dates new
        rooms (else they are dated 0, unknown)."""
        self.matchmaker = matchmaker
        self._guard = guard
        self._clock = clock
        self._store = store
        self._hasher = hasher
        self._games = games
        self._hosting = hosting
        self._live = live

    async def create(self, owner: UserRef, body: Any) -> Room:
        if not isinstance(body, dict):
            raise InvalidInput("expected a JSON object")
        name = _optional(body, "name", str)
        if not name or not name.strip() or len(name) > MAX_NAME:
            raise InvalidInput(f"'name' must be 1 to {MAX_NAME} characters")
        game_name = _optional(body, "game", str)
        game = self._games.get(game_name) if game_name else None
        if game is None:
            raise InvalidInput(
                f"'game' must be one of: {', '.join(sorted(self._games)) or '(none)'}"
            )
        max_players = _optional(body, "max_players", int)
        if max_players is None:
            max_players = game.max_players
        elif not game.min_players <= max_players <= game.max_players:
            raise InvalidInput(
                f"'max_players' for {game.name} must be between"
                f" {game.min_players} and {game.max_players}"
            )
        password = _optional(body, "password", str)
        if password is not None and not (
            MIN_ROOM_PASSWORD <= len(password) <= MAX_ROOM_PASSWORD
        ):
            raise InvalidInput(
                f"'password' must be {MIN_ROOM_PASSWORD} to {MAX_ROOM_PASSWORD} characters"
            )
        # The pool first: a game's match_key that fails makes no room.
        matchmaker = self.matchmaker
        key = None
        if password is None and matchmaker is not None:
            key = matchmaker.key_of(game, owner)
        password_hash = None if password is None else await self._hasher.hash(password)
        created = 0.0 if self._clock is None else self._clock.seconds()
        room = await self._store.create_room(
            name.strip(), game.name, owner, max_players, password_hash, created
        )
        if key is not None and matchmaker is not None:
            await matchmaker.add(game, key, room)
        return room

    async def page(self, number: int, size: int, game: str | None) -> Page:
        if number < 1:
            raise InvalidInput("'page' must be a positive integer")
        page = await self._store.list_rooms(game, (number - 1) * size, size)
        if number > 1 and not page.items:
            raise NotFound("invalid page")
        return page

    async def get(self, room_id: int) -> Room:
        room = await self._store.get_room(room_id)
        if room is None:
            raise RoomNotFound(f"there is no room {room_id}")
        return room

    async def delete(self, room_id: int, user: UserRef) -> None:
        room = await self.get(room_id)
        if room.owner.id != user.id:
            raise Forbidden("only the room's owner can delete it")
        await self._hosting.request(Work(DELETE, room_id, user=user))

    async def check_join(
        self, room_id: int, user: UserRef, password: object, *, spectate: bool = False
    ) -> bool:
        """Refuse a join that cannot succeed; whether a password was checked.

        The room's owner decides for good, in the join's turn; this runs
        where the user is, so that a password is hashed here and never
        holds up the room's turns. A spectator needs no free seat.
        """
        live = self._live.get(room_id)
        room = live.record if live is not None else await self.get(room_id)
        if room.has_player(user.id):
            if spectate:
                raise Seated("you have a seat in this room: join it without 'spectate'")
            return True
        if spectate:
            pass
        elif room.state is RoomState.IN_GAME:
            raise GameStarted("the game in this room has already started")
        elif len(room.players) >= room.max_players:
            raise RoomFull(f"the room is full ({room.max_players} players)")
        if room.has_password and room.owner.id != user.id:
            if password is None:
                raise WrongPassword("this room needs a password")
            assert room.password_hash is not None
            if not isinstance(password, str) or not await self._guess(
                room_id, user, password, room.password_hash
            ):
                raise WrongPassword("wrong password")
        return True

    async def _guess(
        self, room_id: int, user: UserRef, password: str, password_hash: str
    ) -> bool:
        """Check a guess at a room's password, throttled per user and room."""
        guard = self._guard
        if guard is None:
            return await self._hasher.verify(password, password_hash)
        await guard.room_guess(user.id, room_id)
        try:
            right = await self._hasher.verify(password, password_hash)
        except BaseException:
            guard.room_done(user.id, room_id, None)
            raise
        guard.room_done(user.id, room_id, right)
        return right


# The built-in turns


def join(turn: Turn, view: GameRoom, helper: Helper) -> Any:
    work, room = turn.work, turn.room
    user = work.user
    assert user is not None
    if work.type == messages.JOIN_ROOM and work.data.get("spectate") is True:
        return spectate(turn, view, helper)
    seated = turn.has_player(user.id)
    watching = turn.is_watching(user.id)
    if not seated:
        _check_seat(turn, user, helper.now())
        turn.set_players((*turn.players_now(), user))
        _unreserve(turn, user.id)
        if watching:  # a spectator takes a seat
            _unwatch(turn, user.id)
    joined: dict[str, Any] = {"reconnected": seated}
    if watching:
        joined["was_spectator"] = True
    _arrive(turn, user, joined, announce=watching)
    data = {"is_successful": True, "room": record_now(turn).to_json()}
    resumed = _answer(turn, helper, data)
    if seated:
        # Resumed, the player has had everything on_reconnect would send.
        if resumed:
            return room.game.on_resume(view, user, helper)
        return room.game.on_reconnect(view, user, helper)
    # A new seat (one given up by a drop outside a game, say): the game
    # seats them, resumed or not; what it sends is news.
    return room.game.on_join(view, user, helper)


def _check_seat(turn: Turn, user: UserRef, now: float) -> None:
    """Refuse a seat to ``user`` unless one is free for them now."""
    record = turn.room.record
    if turn.status_now() is RoomState.IN_GAME:
        raise GameStarted("the game in this room has already started")
    held = sum(1 for u, until in turn.reserved_now() if until > now and u != user.id)
    if len(turn.players_now()) + held >= record.max_players:
        raise RoomFull(f"the room is full ({record.max_players} players)")
    if record.has_password and record.owner.id != user.id and not turn.work.password_ok:
        raise WrongPassword("this room needs a password")


def _unreserve(turn: Turn, user_id: int) -> None:
    reserved = turn.reserved_now()
    if any(u == user_id for u, _ in reserved):
        turn.reserved = tuple(r for r in reserved if r[0] != user_id)


def reserve(turn: Turn, helper: Helper) -> None:
    """Hold a seat for ``work.data["seconds"]`` until the user joins on a socket.

    Expired holds are dropped here; until then, every join counts them as
    taken seats, so the user quick-joining over HTTP finds the seat theirs.
    """
    work = turn.work
    user = work.user
    assert user is not None
    now = helper.now()
    until: float | None = None
    if not turn.has_player(user.id):  # seated already: that seat is theirs
        _check_seat(turn, user, now)
        until = now + float(work.data["seconds"])
        kept = tuple(r for r in turn.reserved_now() if r[1] > now and r[0] != user.id)
        turn.reserved = (*kept, (user.id, until))
    data = {
        "is_successful": True,
        "room": record_now(turn).to_json(),
        "reserved_until": until,
    }
    turn.reply(Frame.build(join_type(work), data, turn.room.id))


def spectate(turn: Turn, view: GameRoom, helper: Helper) -> Any:
    """Watch the room without a seat, waiting or in game."""
    work, room = turn.work, turn.room
    user = work.user
    assert user is not None
    if turn.has_player(user.id):
        raise Seated("you have a seat in this room: join it without 'spectate'")
    watching = turn.spectators_now()
    if not turn.is_watching(user.id):
        record = room.record
        limit = room.game.max_spectators
        if len(watching) >= limit:
            raise SpectatorsFull(f"the room has {limit} spectators already")
        if record.has_password and record.owner.id != user.id and not work.password_ok:
            raise WrongPassword("this room needs a password")
        turn.spectators = (*watching, user)
        _unreserve(turn, user.id)
    _arrive(turn, user, {"spectator": True}, announce=False)
    answer = {"is_successful": True, "spectator": True}
    if _answer(turn, helper, {**answer, "room": record_now(turn).to_json()}):
        return None
    return room.game.on_spectate(view, user, helper)


def _arrive(
    turn: Turn, user: UserRef, joined: dict[str, Any], *, announce: bool
) -> None:
    """Make the user present.

    Others see a ``USER_JOINED`` when the user arrives, or (``announce``)
    when a present user changes from watching to playing.
    """
    room_id = turn.room.id
    processes = routes_of(turn.work.processes)
    present = turn.present_now().get(user.id)
    if present is None or announce:
        data = {"user": user.to_json(), **joined}
        turn.broadcast(Frame.build(messages.USER_JOINED, data, room_id), user.id)
    if present is None:
        turn.set_present(user.id, processes)
    elif not processes <= present:
        turn.set_present(user.id, present | processes)


def _answer(turn: Turn, helper: Helper, data: dict[str, Any]) -> bool:
    """The join's answer to the socket it came from, then the chat backlog;
    whether it resumed instead (the messages missed, and nothing more).

    A client coming back names the last message it got (``resume``): if the
    room's log still reaches back to it, the socket gets exactly the
    messages for this user after it, each with its own ``seq``, and no
    backlog or game hook, which would send what it already has.
    """
    room, work = turn.room, turn.work
    room_id = room.id
    user = work.user
    assert user is not None
    last = work.data.get("resume") if work.type == messages.JOIN_ROOM else None
    if last is not None:
        missed = room.missed(user.id, last, helper.now())
        data["resumed"] = missed is not None
        if missed is not None:
            turn.reply(Frame.build(join_type(work), data, room_id))
            for entry in missed:
                turn.reply(Frame(entry.payload))
            return True
    turn.reply(Frame.build(join_type(work), data, room_id))
    history = {"messages": _history(turn, user.id)}
    turn.to_present(Frame.build(messages.CHAT_HISTORY, history, room_id), (user.id,))
    return False


def record_now(turn: Turn) -> Room:
    """The room's record as the turn has changed it so far."""
    return attrs.evolve(
        turn.room.record,
        players=turn.players_now(),
        state=turn.status_now(),
        spectators=turn.spectators_now(),
        reserved=turn.reserved_now(),
    )


@functools.lru_cache(maxsize=256)
def routes_of(processes: tuple[str, ...]) -> frozenset[str]:
    """One set for each list of processes: most users are in one, the same."""
    return frozenset(processes)


def _history(turn: Turn, user_id: int) -> list[dict[str, Any]]:
    """The chat backlog, less team messages of teams the user is not in."""
    teams = {name for name in turn.group_names() if user_id in turn.members(name)}
    return [
        entry.data
        for entry in turn.room.chat
        if entry.data.get("team") is None or entry.data["team"] in teams
    ]


def leave(turn: Turn, view: GameRoom, helper: Helper) -> None:
    user = turn.work.user
    assert user is not None
    if user.id not in turn.present_now() and not turn.has_player(user.id):
        raise NotInRoom(f"you are not in room {turn.room.id}")
    if turn.is_watching(user.id):
        _stop_watching(turn, user)
    else:
        _release_seat(turn, user)
    turn.reply(Frame.build(messages.LEAVE_ROOM, {"is_successful": True}, turn.room.id))


def gone(turn: Turn, view: GameRoom, helper: Helper) -> None:
    """The user's sockets in one process have all closed."""
    user = turn.work.user
    assert user is not None
    present = turn.present_now().get(user.id)
    if present is None:
        return
    left = present - set(turn.work.processes)
    if left:
        turn.set_present(user.id, left)
        return
    if turn.is_watching(user.id):
        _stop_watching(turn, user)
    elif turn.status_now() is RoomState.IN_GAME:
        _depart(turn, user, messages.USER_DISCONNECTED, keep_teams=True)
        game = turn.room.game
        turn.follow_up(
            Work(
                HOOK,
                turn.room.id,
                user=user,
                hook=lambda r, h: game.on_disconnect(r, user, h),
            )
        )
    else:
        _release_seat(turn, user)


def here(turn: Turn) -> None:
    """The user has sockets in another process now: reach them there too."""
    user = turn.work.user
    assert user is not None
    present = turn.present_now().get(user.id)
    processes = frozenset(turn.work.processes)
    if present is not None and not processes <= present:
        turn.set_present(user.id, present | processes)


#: Why a room closed, as ``ROOM_CLOSED`` says, unless its work names another.
DELETED_BY_OWNER = "deleted by its owner"


def delete(turn: Turn) -> None:
    """The room ends: its owner deleted it, an admin closed it, or its
    owner (a guest) expired; every member hears why, in ``ROOM_CLOSED``."""
    reason = turn.work.data.get("reason") or DELETED_BY_OWNER
    data = {"reason": reason}
    turn.broadcast(Frame.build(messages.ROOM_CLOSED, data, turn.room.id))
    turn.clear_timers = True
    turn.drop = True


def _unwatch(turn: Turn, user_id: int) -> None:
    turn.spectators = tuple(s for s in turn.spectators_now() if s.id != user_id)


def _stop_watching(turn: Turn, user: UserRef) -> None:
    """A spectator leaves: no seat to give up, no game hook."""
    _unwatch(turn, user.id)
    turn.set_present(user.id, None)
    data = {"user": user.to_json(), "spectator": True}
    # Not for them, who know, even when they resume.
    turn.broadcast(Frame.build(messages.USER_LEFT, data, turn.room.id), user.id)


def _release_seat(turn: Turn, user: UserRef) -> None:
    turn.set_players(tuple(p for p in turn.players_now() if p.id != user.id))
    _depart(turn, user, messages.USER_LEFT, keep_teams=False)
    game = turn.room.game
    turn.follow_up(
        Work(
            HOOK,
            turn.room.id,
            user=user,
            hook=lambda r, h: game.on_leave(r, user, h),
        )
    )


def _depart(turn: Turn, user: UserRef, type_: str, *, keep_teams: bool) -> None:
    turn.set_present(user.id, None)
    if not keep_teams:
        for name in turn.group_names():
            members = turn.members(name)
            if user.id in members:
                turn.set_members(name, members - {user.id})
    data = {"user": user.to_json()}
    turn.broadcast(Frame.build(type_, data, turn.room.id), user.id)
