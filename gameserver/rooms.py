"""Rooms: creating, listing, joining, leaving, and what a disconnect means.

A room has *seats* (``Room.players``, kept by the store) and *present
members* (its group, kept by the group layer). Joining takes a seat and
makes the user present; a disconnect outside a game gives the seat up,
while in a game it keeps the seat so the player can come back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from twisted.logger import Logger

from gameserver import messages
from gameserver.chat import CHAT_HISTORY
from gameserver.errors import (
    Forbidden,
    GameServerError,
    GameStarted,
    InvalidInput,
    NotFound,
    NotInRoom,
    RoomFull,
    RoomNotFound,
    WrongPassword,
)
from gameserver.gameroom import GameRoom
from gameserver.groups import room_group
from gameserver.helper import Helper
from gameserver.interfaces import IGame, IGroupLayer, IStore
from gameserver.models import Page, Room, RoomState, UserRef
from gameserver.passwords import PasswordHasher
from gameserver.turns import RoomTurns

MAX_NAME = 64
log = Logger()
MIN_ROOM_PASSWORD = 4
MAX_ROOM_PASSWORD = 128


def _optional(body: dict[str, Any], key: str, kind: type) -> Any:
    value = body.get(key)
    if value is not None and (type(value) is not kind):
        raise InvalidInput(f"'{key}' must be a {kind.__name__}")
    return value


class Rooms:
    def __init__(
        self,
        store: IStore,
        hasher: PasswordHasher,
        groups: IGroupLayer,
        games: Mapping[str, IGame],
        turns: RoomTurns,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._groups = groups
        self._games = games
        self._turns = turns

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
        password_hash = None if password is None else await self._hasher.hash(password)
        return await self._store.create_room(
            name.strip(), game.name, owner, max_players, password_hash
        )

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

        async def delete() -> None:
            self._turns.cancel_timers(room_id)
            await self._store.delete_room(room_id)
            await self._groups.send(
                room_group(room_id),
                messages.message(messages.ROOM_DELETED, {}, room_id),
            )
            await self._groups.discard_room(room_id)

        await self._turns.exclusive(room_id, delete)

    async def is_present(self, room_id: int, user_id: int) -> bool:
        return await self._groups.is_member(room_group(room_id), user_id)

    async def join(
        self,
        room_id: int,
        user: UserRef,
        password: object,
        reply: Callable[[Room], None],
    ) -> Room:
        """Seat the user and make them present; ``reply`` is sent before the rest."""
        room = await self.get(room_id)
        if not room.has_player(user.id):
            if room.state is RoomState.IN_GAME:
                raise GameStarted("the game in this room has already started")
            if len(room.players) >= room.max_players:
                raise RoomFull(f"the room is full ({room.max_players} players)")
            if room.has_password and room.owner.id != user.id:
                await self._check_password(room, password)

        async def seat(game_room: GameRoom, helper: Helper) -> Room:
            seated, newly_seated = await self._store.seat_player(room_id, user)
            game_room.players = seated.players
            group = room_group(room_id)
            present = await self._groups.is_member(group, user.id)
            if not present:
                joined = {"user": user.to_json(), "reconnected": not newly_seated}
                helper.broadcast(messages.USER_JOINED, joined, exclude=user)
                helper.effects.append(lambda: self._groups.add(group, user.id))
            # The reply once the user is present, before the game's own messages.
            helper.effects.append(lambda: reply(seated))
            history = await self._history(room_id, user)
            helper.send_to(user, CHAT_HISTORY, {"messages": history})
            game = helper.game
            try:
                if newly_seated:
                    await game.on_join(game_room, user, helper)
                else:
                    await game.on_reconnect(game_room, user, helper)
            except BaseException:
                if newly_seated:
                    await self._store.unseat_player(room_id, user.id)
                raise
            return seated

        return await self._turns.run(room_id, seat, user)

    async def _history(self, room_id: int, user: UserRef) -> list[dict]:
        """The chat backlog, less team messages of teams the user is not in."""
        teams = {
            group.rpartition(":")[2]
            for group in await self._groups.groups_of(user.id)
            if group.startswith(room_group(room_id) + ":")
        }
        backlog = [json.loads(raw) for raw in await self._store.chat_backlog(room_id)]
        return [m for m in backlog if m.get("team") is None or m["team"] in teams]

    async def _check_password(self, room: Room, password: object) -> None:
        if password is None:
            raise WrongPassword("this room needs a password")
        if not isinstance(password, str) or not await self._hasher.verify(
            password, room.password_hash
        ):
            raise WrongPassword("wrong password")

    async def leave(self, room_id: int, user: UserRef) -> None:
        async def unseat(game_room: GameRoom, helper: Helper) -> None:
            present = await self._groups.is_member(room_group(room_id), user.id)
            if not present and not game_room.has_player(user):
                raise NotInRoom(f"you are not in room {room_id}")
            self._release_seat(game_room, helper, user)

        await self._turns.run(room_id, unseat, user)

    async def user_gone(self, user: UserRef) -> None:
        """The user's last connection closed: leave what is not in a game."""
        for group in await self._groups.groups_of(user.id):
            room_id = _room_id_of(group)
            if room_id is None:
                continue
            try:
                await self._turns.run(room_id, partial(self._gone_from, user), user)
            except GameServerError as e:
                log.info(
                    "{user} left room {room}: {detail}",
                    user=user,
                    room=room_id,
                    detail=e.detail,
                )
                await self._groups.remove(group, user.id)

    async def _gone_from(
        self, user: UserRef, game_room: GameRoom, helper: Helper
    ) -> None:
        if game_room.status is RoomState.IN_GAME:
            self._depart(
                game_room, helper, user, messages.USER_DISCONNECTED, keep_teams=True
            )
            helper.follow_ups.append(
                (lambda r, h: h.game.on_disconnect(r, user, h), user)
            )
        else:
            self._release_seat(game_room, helper, user)

    def _release_seat(self, game_room: GameRoom, helper: Helper, user: UserRef) -> None:
        game_room.players = tuple(p for p in game_room.players if p.id != user.id)
        helper.effects.insert(
            0, lambda: self._store.unseat_player(game_room.id, user.id)
        )
        self._depart(game_room, helper, user, messages.USER_LEFT, keep_teams=False)
        helper.follow_ups.append((lambda r, h: h.game.on_leave(r, user, h), user))

    def _depart(
        self,
        game_room: GameRoom,
        helper: Helper,
        user: UserRef,
        type_: str,
        *,
        keep_teams: bool,
    ) -> None:
        async def leave_groups() -> None:
            own = room_group(game_room.id)
            for group in await self._groups.groups_of(user.id):
                if group == own or (not keep_teams and group.startswith(own + ":")):
                    await self._groups.remove(group, user.id)

        helper.effects.append(leave_groups)
        helper.broadcast(type_, {"user": user.to_json()})


def _room_id_of(group: str) -> int | None:
    kind, _, rest = group.partition(":")
    return int(rest) if kind == "room" and rest.isdigit() else None
