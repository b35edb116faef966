"""The zero-set-up store for one process. Nothing survives a restart."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import attrs
from zope.interface import implementer

from gameserver.errors import GameStarted, RoomFull, RoomNotFound, UsernameTaken
from gameserver.interfaces import IStore
from gameserver.models import Page, Room, RoomState, UserRecord, UserRef


@implementer(IStore)
class MemoryStore:
    def __init__(self) -> None:
        self._users: dict[int, UserRecord] = {}
        self._user_ids_by_name: dict[str, int] = {}
        self._rooms: dict[int, Room] = {}
        self._states: dict[int, str] = {}
        self._entries: dict[int, dict[str, str]] = {}
        self._chat: dict[int, list[str]] = {}
        self._user_ids = itertools.count(1)
        self._room_ids = itertools.count(1)

    async def create_user(self, username: str, password_hash: str) -> UserRecord:
        key = username.casefold()
        if key in self._user_ids_by_name:
            raise UsernameTaken(f"the username {username!r} is taken")
        record = UserRecord(next(self._user_ids), username, password_hash)
        self._users[record.id] = record
        self._user_ids_by_name[key] = record.id
        return record

    async def get_user(self, user_id: int) -> UserRecord | None:
        return self._users.get(user_id)

    async def get_user_by_name(self, username: str) -> UserRecord | None:
        user_id = self._user_ids_by_name.get(username.casefold())
        return None if user_id is None else self._users[user_id]

    async def create_room(
        self,
        name: str,
        game: str,
        owner: UserRef,
        max_players: int,
        password_hash: str | None,
    ) -> Room:
        room = Room(
            id=next(self._room_ids),
            name=name,
            game=game,
            owner=owner,
            max_players=max_players,
            password_hash=password_hash,
        )
        self._rooms[room.id] = room
        return room

    async def get_room(self, room_id: int) -> Room | None:
        return self._rooms.get(room_id)

    async def list_rooms(self, game: str | None, offset: int, limit: int) -> Page:
        rooms = [r for r in self._rooms.values() if game is None or r.game == game]
        return Page(len(rooms), tuple(rooms[offset : offset + limit]))

    async def delete_room(self, room_id: int) -> bool:
        self._states.pop(room_id, None)
        self._entries.pop(room_id, None)
        self._chat.pop(room_id, None)
        return self._rooms.pop(room_id, None) is not None

    def _room(self, room_id: int) -> Room:
        room = self._rooms.get(room_id)
        if room is None:
            raise RoomNotFound(f"there is no room {room_id}")
        return room

    async def seat_player(self, room_id: int, user: UserRef) -> tuple[Room, bool]:
        room = self._room(room_id)
        if room.has_player(user.id):
            return room, False
        if room.state is RoomState.IN_GAME:
            raise GameStarted("the game in this room has already started")
        if len(room.players) >= room.max_players:
            raise RoomFull(f"the room is full ({room.max_players} players)")
        room = attrs.evolve(room, players=(*room.players, user))
        self._rooms[room_id] = room
        return room, True

    async def unseat_player(self, room_id: int, user_id: int) -> Room | None:
        room = self._rooms.get(room_id)
        if room is None:
            return None
        players = tuple(p for p in room.players if p.id != user_id)
        room = attrs.evolve(room, players=players)
        self._rooms[room_id] = room
        return room

    async def set_room_state(self, room_id: int, state: RoomState) -> Room:
        room = attrs.evolve(self._room(room_id), state=RoomState(state))
        self._rooms[room_id] = room
        return room

    async def load_state(self, room_id: int) -> str | None:
        return self._states.get(room_id)

    async def get_entry(self, room_id: int, key: str) -> str | None:
        return self._entries.get(room_id, {}).get(key)

    async def save_room_data(
        self,
        room_id: int,
        state: str | None,
        entries: Mapping[str, str | None],
        chat: Sequence[str],
        chat_keep: int,
    ) -> None:
        if room_id not in self._rooms:
            return
        if state is not None:
            self._states[room_id] = state
        if entries:
            stored = self._entries.setdefault(room_id, {})
            for key, value in entries.items():
                if value is None:
                    stored.pop(key, None)
                else:
                    stored[key] = value
        if chat:
            backlog = self._chat.setdefault(room_id, [])
            backlog.extend(chat)
            del backlog[: max(0, len(backlog) - chat_keep)]

    async def chat_backlog(self, room_id: int) -> list[str]:
        return list(self._chat.get(room_id, ()))
