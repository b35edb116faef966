"""Accounts and room records in Redis, shared by every process.

A room's record is its ``meta`` hash; the room's owner rewrites its
``players`` and ``state`` fields in the commits of the turns that change
them, so a listing is at most one commit behind the owner.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.internet.defer import ensureDeferred, gatherResults
from zope.interface import implementer

from gameserver._errors import UsernameTaken
from gameserver._interfaces import IStore
from gameserver._models import Page, Room, RoomState, UserRecord, UserRef
from gameserver._redis import keys, scripts
from gameserver._redis.connection import RedisConnection, gather

#: A user search scans the name index this many times, this many at a time.
SCAN_STEPS = 10
SCAN_COUNT = 500


@implementer(IStore)
class RedisStore:
    def __init__(self, redis: RedisConnection) -> None:
        self._redis = redis

    # Users

    async def create_user(
        self, username: str, password_hash: str, guest_until: float | None = None
    ) -> UserRecord:
        key = username.casefold()
        user_id = int(await self._redis("INCR", keys.USER_IDS))
        record = UserRecord(user_id, username, password_hash, guest_until)
        # The record first: a name is never taken by a user who is not there.
        record_key = keys.user(user_id)
        await self._redis("SET", record_key, json.dumps(attrs.asdict(record)))
        if not int(await self._redis("HSETNX", keys.USER_NAMES, key, user_id)):
            await self._redis("DEL", record_key)
            raise UsernameTaken(f"the username {username!r} is taken")
        if guest_until is not None:
            await self._redis("ZADD", keys.GUESTS, repr(guest_until), user_id)
        return record

    async def claim_guest(
        self, user_id: int, password_hash: str, now: float
    ) -> UserRecord | None:
        key = keys.user(user_id)
        while True:  # unless the record changed meanwhile (a ban, say)
            raw = await self._redis("GET", key)
            record = None if raw is None else UserRecord(**json.loads(raw))
            if (
                record is None
                or record.guest_until is None
                or record.guest_until <= now
            ):
                return None  # the record's end: the set's may be a removal's lease
            record = attrs.evolve(record, password_hash=password_hash, guest_until=None)
            claimed = int(
                await self._redis.run(
                    scripts.CLAIM_GUEST,
                    [keys.GUESTS, key],
                    [user_id, raw, json.dumps(attrs.asdict(record))],
                )
            )
            if claimed != 2:
                return record if claimed else None

    async def expired_guests(
        self, now: float, limit: int, lease: float
    ) -> list[UserRecord]:
        due = await self._redis.run(
            scripts.EXPIRED_GUESTS, [keys.GUESTS], [repr(now), limit, repr(now + lease)]
        )
        found = [await self.get_user(int(user_id)) for user_id in due]
        gone = [
            user_id for user_id, record in zip(due, found, strict=True) if not record
        ]
        if gone:  # removed but for the index (its remover failed at the end)
            await self._redis("ZREM", keys.GUESTS, *gone)
        return [record for record in found if record is not None]

    async def remove_user(self, user_id: int) -> None:
        record = await self.get_user(user_id)
        if record is not None:  # the name first: it is found from the record
            await self._redis("HDEL", keys.USER_NAMES, record.username.casefold())
        await self._redis("DEL", keys.user(user_id))
        # Last: a removal that fails before this is handed out again.
        await self._redis("ZREM", keys.GUESTS, user_id)

    async def get_user(self, user_id: int) -> UserRecord | None:
        raw = await self._redis("GET", keys.user(user_id))
        return None if raw is None else UserRecord(**json.loads(raw))

    async def get_user_by_name(self, username: str) -> UserRecord | None:
        user_id = await self._redis("HGET", keys.USER_NAMES, username.casefold())
        return None if user_id is None else await self.get_user(int(user_id))

    async def set_user_flags(
        self, user_id: int, *, admin: bool | None = None, banned: bool | None = None
    ) -> UserRecord | None:
        key = keys.user(user_id)
        while True:  # read, change, write unless changed meanwhile (a claim)
            raw = await self._redis("GET", key)
            if raw is None:
                return None
            record = UserRecord(**json.loads(raw))
            record = attrs.evolve(
                record,
                admin=record.admin if admin is None else admin,
                banned=record.banned if banned is None else banned,
            )
            new = json.dumps(attrs.asdict(record))
            if int(await self._redis.run(scripts.SWAP, [key], [raw, new])):
                break
        if admin is not None:
            await self._redis("SADD" if admin else "SREM", keys.ADMINS, user_id)
        return record

    async def find_users(self, prefix: str, limit: int) -> list[UserRecord]:
        """The exact name from the index, then a bounded scan of it: at most
        ``SCAN_STEPS`` steps of ``SCAN_COUNT`` names, whatever it finds."""
        key = prefix.casefold()
        exact = await self._redis("HGET", keys.USER_NAMES, key)
        # In the order found, each once (a dict keeps insertion order).
        ids: dict[int, None] = {} if exact is None else {int(exact): None}
        cursor = "0"
        for _ in range(SCAN_STEPS):
            if len(ids) >= limit:
                break
            cursor, found = await self._redis(
                "HSCAN",
                keys.USER_NAMES,
                cursor,
                "MATCH",
                f"{key}*",
                "COUNT",
                SCAN_COUNT,
            )
            for user_id in pairs(found).values():
                ids.setdefault(int(user_id))
            if str(cursor) == "0":
                break
        chosen = list(ids)[:limit]
        records = await gather(*(ensureDeferred(self.get_user(u)) for u in chosen))
        return [r for r in records if r is not None]

    async def admins(self) -> list[UserRecord]:
        ids = sorted(int(i) for i in await self._redis("SMEMBERS", keys.ADMINS))
        records = await gather(*(ensureDeferred(self.get_user(u)) for u in ids))
        return [r for r in records if r is not None and r.admin]

    # Rooms

    async def create_room(
        self,
        name: str,
        game: str,
        owner: UserRef,
        max_players: int,
        password_hash: str | None,
        created: float = 0.0,
    ) -> Room:
        room_id = int(await self._redis("INCR", keys.ROOM_IDS))
        room = Room(
            room_id, name, game, owner, max_players, password_hash, created=created
        )
        fields = {
            "name": name,
            "game": game,
            "owner": json.dumps(owner.to_json()),
            "max_players": max_players,
            "password_hash": password_hash or "",
            "state": RoomState.WAITING.value,
            "players": "[]",
            "created": repr(created),
        }
        meta = keys.room(room_id, "meta")
        await self._redis("HSET", meta, *(x for kv in fields.items() for x in kv))
        await self._redis("ZADD", keys.ROOMS, room_id, room_id)
        await self._redis("ZADD", keys.rooms_of_game(game), room_id, room_id)
        await self._redis("SADD", keys.user_owns(owner.id), room_id)
        return room

    async def pool_rooms(self, game: str, key: str) -> list[int]:
        members = await self._redis("SMEMBERS", keys.pool(game, key))
        return sorted(int(m) for m in members)

    async def pool_add(self, game: str, key: str, room_id: int) -> None:
        await self._redis("SADD", keys.pool(game, key), room_id)

    async def pool_remove(self, game: str, key: str, room_ids: list[int]) -> None:
        if room_ids:
            await self._redis("SREM", keys.pool(game, key), *room_ids)

    async def pool_lock(self, game: str, key: str, holder: str, ttl: float) -> bool:
        taken = await self._redis(
            "SET", keys.pool_lock(game, key), holder, "NX", "PX", int(ttl * 1000)
        )
        return taken is not None

    async def pool_unlock(self, game: str, key: str, holder: str) -> None:
        await self._redis.run(scripts.RELEASE, [keys.pool_lock(game, key)], [holder])

    async def get_room(self, room_id: int) -> Room | None:
        meta = await self._redis("HGETALL", keys.room(room_id, "meta"))
        return room_of(room_id, pairs(meta)) if meta else None

    async def list_rooms(self, game: str | None, offset: int, limit: int) -> Page:
        index = keys.ROOMS if game is None else keys.rooms_of_game(game)
        count, ids = await gatherResults(
            [
                self._redis("ZCARD", index),
                self._redis("ZREVRANGE", index, offset, offset + limit - 1),
            ],
            consumeErrors=True,
        ).addErrback(_first_error)
        metas = await gatherResults(
            [self._redis("HGETALL", keys.room(int(i), "meta")) for i in ids],
            consumeErrors=True,
        ).addErrback(_first_error)
        rooms = [
            room_of(int(i), pairs(meta))
            for i, meta in zip(ids, metas, strict=True)
            if meta
        ]
        return Page(int(count), tuple(rooms))

    async def unlist_room(self, room_id: int, game: str) -> None:
        """Take a deleted room out of the listings."""
        await self._redis("ZREM", keys.ROOMS, room_id)
        await self._redis("ZREM", keys.rooms_of_game(game), room_id)


def _first_error(failure: Any) -> Any:
    """``gatherResults`` wraps the first error; raise the error itself."""
    failure.value.subFailure.raiseException()


def pairs(reply: Any) -> dict[str, str]:
    """A flat ``[key, value, ...]`` reply (or a dict) as a dict."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


def room_of(room_id: int, meta: dict[str, str]) -> Room:
    return Room(
        id=room_id,
        name=meta["name"],
        game=meta["game"],
        owner=UserRef(**json.loads(meta["owner"])),
        max_players=int(meta["max_players"]),
        password_hash=meta["password_hash"] or None,
        players=tuple(UserRef(**p) for p in json.loads(meta.get("players") or "[]")),
        state=RoomState(meta["state"]),
        spectators=_spectators(meta.get("spectators")),
        reserved=tuple(
            (int(user), float(until))
            for user, until in json.loads(meta.get("reserved") or "[]")
        ),
        created=float(meta.get("created") or 0),
    )


def _spectators(raw: str | None) -> tuple[UserRef, ...]:
    """The record's spectators (an early form of this field held a count)."""
    value = json.loads(raw or "[]")
    if not isinstance(value, list):
        return ()
    return tuple(UserRef(**s) for s in value)
