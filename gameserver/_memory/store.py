"""The zero-set-up store for one process. Nothing survives a restart.

It keeps accounts and room records. A room's game data lives only in the
engine's ``LiveRoom``, which is the only copy there is: in one process
there is nothing to save it to.
"""

from __future__ import annotations

import bisect
import itertools

import attrs
from zope.interface import implementer

from gameserver._errors import UsernameTaken
from gameserver._interfaces import IStore
from gameserver._models import Page, Room, UserRecord, UserRef


@implementer(IStore)
class MemoryStore:
    def __init__(self) -> None:
        self._users: dict[int, UserRecord] = {}
        #: Guests not yet handed out as expired, and their end.
        self._guests: dict[int, float] = {}
        self._user_ids_by_name: dict[str, int] = {}
        #: The same names, sorted: a search by a name's start bisects it.
        self._names: list[str] = []
        self._rooms: dict[int, Room] = {}
        #: Quick join's rooms, by game and match key.
        self._pools: dict[tuple[str, str], dict[int, None]] = {}
        self._user_ids = itertools.count(1)
        self._room_ids = itertools.count(1)

    async def create_user(
        self, username: str, password_hash: str, guest_until: float | None = None
    ) -> UserRecord:
        key = username.casefold()
        if key in self._user_ids_by_name:
            raise UsernameTaken(f"the username {username!r} is taken")
        record = UserRecord(next(self._user_ids), username, password_hash, guest_until)
        self._users[record.id] = record
        self._user_ids_by_name[key] = record.id
        bisect.insort(self._names, key)
        if guest_until is not None:
            self._guests[record.id] = guest_until
        return record

    async def claim_guest(
        self, user_id: int, password_hash: str, now: float
    ) -> UserRecord | None:
        record = self._users.get(user_id)
        if user_id not in self._guests or record is None:
            return None
        if record.guest_until is None or record.guest_until <= now:
            return None  # the record's end: the index's may be a removal's lease
        del self._guests[user_id]
        record = attrs.evolve(
            self._users[user_id], password_hash=password_hash, guest_until=None
        )
        self._users[user_id] = record
        return record

    async def expired_guests(
        self, now: float, limit: int, lease: float
    ) -> list[UserRecord]:
        due = [i for i, until in self._guests.items() if until <= now][:limit]
        for user_id in due:
            self._guests[user_id] = now + lease
        return [self._users[user_id] for user_id in due]

    async def remove_user(self, user_id: int) -> None:
        record = self._users.pop(user_id, None)
        self._guests.pop(user_id, None)
        if record is not None:
            key = record.username.casefold()
            self._user_ids_by_name.pop(key, None)
            at = bisect.bisect_left(self._names, key)
            if at < len(self._names) and self._names[at] == key:
                del self._names[at]

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
        created: float = 0.0,
    ) -> Room:
        room = Room(
            id=next(self._room_ids),
            name=name,
            game=game,
            owner=owner,
            max_players=max_players,
            password_hash=password_hash,
            created=created,
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

    async def set_user_flags(
        self, user_id: int, *, admin: bool | None = None, banned: bool | None = None
    ) -> UserRecord | None:
        record = self._users.get(user_id)
        if record is None:
            return None
        record = attrs.evolve(
            record,
            admin=record.admin if admin is None else admin,
            banned=record.banned if banned is None else banned,
        )
        self._users[user_id] = record
        return record

    async def find_users(self, prefix: str, limit: int) -> list[UserRecord]:
        key = prefix.casefold()
        names = self._names
        found: list[int] = []
        # The exact name sorts first among those starting with it.
        for at in range(bisect.bisect_left(names, key), len(names)):
            if len(found) >= limit or not names[at].startswith(key):
                break
            found.append(self._user_ids_by_name[names[at]])
        return [self._users[user_id] for user_id in found]

    async def admins(self) -> list[UserRecord]:
        return [r for r in self._users.values() if r.admin]

    # For the in-memory committer: a room's record as its turns change it.

    async def pool_rooms(self, game: str, key: str) -> list[int]:
        return list(self._pools.get((game, key), ()))

    async def pool_add(self, game: str, key: str, room_id: int) -> None:
        self._pools.setdefault((game, key), {})[room_id] = None

    async def pool_remove(self, game: str, key: str, room_ids: list[int]) -> None:
        pool = self._pools.get((game, key))
        if pool is not None:
            for room_id in room_ids:
                pool.pop(room_id, None)

    async def pool_lock(self, game: str, key: str, holder: str, ttl: float) -> bool:
        return True  # one process: its matchmaker's own lock is enough

    async def pool_unlock(self, game: str, key: str, holder: str) -> None:
        return None

    def rooms_of(self, user_id: int) -> tuple[list[int], list[int]]:
        """The rooms the user holds a seat in, and those it made."""
        rooms = self._rooms.values()
        return (
            [r.id for r in rooms if r.has_player(user_id)],
            [r.id for r in rooms if r.owner.id == user_id],
        )

    def record(self, room_id: int) -> Room | None:
        return self._rooms.get(room_id)

    def update_record(self, room: Room) -> None:
        if room.id in self._rooms:
            self._rooms[room.id] = room

    def remove_record(self, room_id: int) -> None:
        self._rooms.pop(room_id, None)
