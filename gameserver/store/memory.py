"""The zero-set-up store for one process. Nothing survives a restart."""

from __future__ import annotations

import itertools

import attrs
from zope.interface import implementer

from gameserver.errors import GameStarted, RoomFull, RoomNotFound, UsernameTaken
from gameserver.interfaces import IStore
from gameserver.models import (
    Commit,
    Page,
    Room,
    RoomState,
    TimerSpec,
    UserRecord,
    UserRef,
)


@implementer(IStore)
class MemoryStore:
    def __init__(self) -> None:
        self._users: dict[int, UserRecord] = {}
        self._user_ids_by_name: dict[str, int] = {}
        self._rooms: dict[int, Room] = {}
        self._states: dict[int, str] = {}
        self._entries: dict[int, dict[str, str]] = {}
        self._chat: dict[int, list[str]] = {}
        self._timers: dict[int, dict[str, TimerSpec]] = {}
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
        rooms = [
            r for r in reversed(self._rooms.values()) if game is None or r.game == game
        ]
        return Page(len(rooms), tuple(rooms[offset : offset + limit]))

    async def delete_room(self, room_id: int) -> bool:
        self._states.pop(room_id, None)
        self._entries.pop(room_id, None)
        self._chat.pop(room_id, None)
        self._timers.pop(room_id, None)
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

    async def commit(self, room_id: int, commit: Commit) -> None:
        room = self._rooms.get(room_id)
        if room is None:
            return
        if commit.state is not None:
            self._states[room_id] = commit.state
        if commit.entries:
            stored = self._entries.setdefault(room_id, {})
            for key, value in commit.entries.items():
                if value is None:
                    stored.pop(key, None)
                else:
                    stored[key] = value
        if commit.chat:
            backlog = self._chat.setdefault(room_id, [])
            backlog.extend(commit.chat)
            del backlog[: max(0, len(backlog) - commit.chat_keep)]
        if commit.status is not None:
            self._rooms[room_id] = attrs.evolve(room, state=RoomState(commit.status))
        timers = self._timers.setdefault(room_id, {})
        if commit.clear_timers:
            timers.clear()
        for name, spec in commit.timers.items():
            if spec is None:
                timers.pop(name, None)
            else:
                timers[name] = spec

    async def get_timer(self, room_id: int, name: str) -> TimerSpec | None:
        return self._timers.get(room_id, {}).get(name)

    async def due_timers(self, until: float, limit: int) -> list[tuple[int, str, str]]:
        due = sorted(
            (spec.deadline, room_id, spec.name, spec.id)
            for room_id, timers in self._timers.items()
            for spec in timers.values()
            if spec.deadline <= until
        )
        return [(room_id, name, id_) for _, room_id, name, id_ in due[:limit]]

    async def chat_backlog(self, room_id: int) -> list[str]:
        return list(self._chat.get(room_id, ()))
