"""The store for several processes: everything as JSON in Redis.

Every key of one room carries the hash tag ``{room:N}``, and every script
touches one room's keys only, so the layout also works on Redis Cluster.
The few global keys (id counters, the username index, the room listings
and the index of due timers) are updated by commands of their own.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import attrs
import txredisapi
from twisted.internet.defer import Deferred
from zope.interface import implementer

from gameserver.concurrency import gather
from gameserver.errors import (
    GameStarted,
    RoomFull,
    RoomNotFound,
    Unavailable,
    UsernameTaken,
)
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

PREFIX = "gs"
#: Error replies that mean "not now" rather than "wrong command".
_BUSY_REPLIES = frozenset(
    {"LOADING", "BUSY", "MISCONF", "OOM", "READONLY", "TRYAGAIN", "MASTERDOWN"}
)


@attrs.frozen
class RedisAddress:
    host: str
    port: int
    db: int
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        """``redis://[:password@]host[:port][/db]``; a clear ``ValueError`` otherwise."""
        parts = urlsplit(url)
        if parts.scheme != "redis" or not parts.hostname:
            raise ValueError(f"not a redis://host[:port][/db] URL: {url!r}")
        try:
            port = parts.port or 6379
            db = int(parts.path.strip("/") or 0)
        except ValueError:
            raise ValueError(f"bad port or database number in {url!r}") from None
        return cls(parts.hostname, port, db, parts.password)


class RedisConnection:
    """One pipelined connection for commands, with failures made ``Unavailable``.

    One connection keeps the commands of this process in order: a turn's
    messages are published before its room lock is released.
    """

    def __init__(self, address: RedisAddress, *, timeout: float = 3.0) -> None:
        self.address = address
        self._handler = txredisapi.lazyConnectionPool(
            address.host,
            address.port,
            # No SELECT for db 0: txredisapi gives up reconnecting for good
            # when a SELECT (or AUTH) sent on reconnecting times out.
            dbid=address.db or None,
            poolsize=1,
            password=address.password,
            connectTimeout=timeout,
            replyTimeout=timeout,
            convertNumbers=False,
        )

    @property
    def connected(self) -> bool:
        return bool(self._handler._factory.size)

    async def __call__(self, *command: Any) -> Any:
        # Without a live connection txredisapi would wait for one forever.
        if not self.connected:
            raise Unavailable("the store (Redis) is unreachable: try again soon")
        try:
            reply = await self._handler.execute_command(*command)
        except txredisapi.ConnectionError as e:
            raise Unavailable(f"the store (Redis) failed: {e}") from None
        if isinstance(reply, txredisapi.ResponseError):
            if str(reply).split(" ", 1)[0] in _BUSY_REPLIES:
                raise Unavailable(f"the store (Redis) cannot serve now: {reply}")
            raise RuntimeError(f"Redis refused {command[0]}: {reply}")
        return reply

    async def script(self, source: str, keys: list[str], args: list[Any]) -> Any:
        return await self("EVAL", source, len(keys), *keys, *args)

    def disconnect(self) -> Deferred[None]:
        return self._handler.disconnect()


def room_key(room_id: int, part: str) -> str:
    return f"{PREFIX}:{{room:{room_id}}}:{part}"


_SEAT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local players = redis.call('LRANGE', KEYS[2], 0, -1)
for _, p in ipairs(players) do
  if cjson.decode(p)['id'] == tonumber(ARGV[1]) then return 0 end
end
if redis.call('HGET', KEYS[1], 'state') == 'in_game' then return -2 end
if #players >= tonumber(redis.call('HGET', KEYS[1], 'max_players')) then return -3 end
redis.call('RPUSH', KEYS[2], ARGV[2])
return 1
"""

_UNSEAT = """
for _, p in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if cjson.decode(p)['id'] == tonumber(ARGV[1]) then redis.call('LREM', KEYS[1], 1, p) end
end
return 1
"""

_COMMIT = """
if ARGV[2] ~= '' and redis.call('GET', KEYS[6]) ~= ARGV[2] then return -1 end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local c = cjson.decode(ARGV[1])
if type(c.state) == 'string' then redis.call('SET', KEYS[2], c.state) end
for k, v in pairs(c.entries) do
  if v == cjson.null then redis.call('HDEL', KEYS[3], k) else redis.call('HSET', KEYS[3], k, v) end
end
if #c.chat > 0 then
  for _, m in ipairs(c.chat) do redis.call('RPUSH', KEYS[4], m) end
  redis.call('LTRIM', KEYS[4], -c.keep, -1)
end
if type(c.status) == 'string' then redis.call('HSET', KEYS[1], 'state', c.status) end
if c.clear then redis.call('DEL', KEYS[5]) end
for k, v in pairs(c.timers) do
  if v == cjson.null then redis.call('HDEL', KEYS[5], k) else redis.call('HSET', KEYS[5], k, v) end
end
return 1
"""

_SET_STATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1])
return 1
"""

_ROOM_PARTS = ("meta", "players", "state", "entries", "chat", "timers")


@implementer(IStore)
class RedisStore:
    def __init__(self, redis: RedisConnection) -> None:
        self._redis = redis

    # Users

    async def create_user(self, username: str, password_hash: str) -> UserRecord:
        key = username.casefold()
        user_id = int(await self._redis("INCR", f"{PREFIX}:users:next"))
        record = UserRecord(user_id, username, password_hash)
        # The record first: a name is never taken by a user who is not there.
        record_key = f"{PREFIX}:user:{user_id}"
        await self._redis("SET", record_key, json.dumps(attrs.asdict(record)))
        if not int(await self._redis("HSETNX", f"{PREFIX}:users:names", key, user_id)):
            await self._redis("DEL", record_key)
            raise UsernameTaken(f"the username {username!r} is taken")
        return record

    async def get_user(self, user_id: int) -> UserRecord | None:
        raw = await self._redis("GET", f"{PREFIX}:user:{user_id}")
        return None if raw is None else UserRecord(**json.loads(raw))

    async def get_user_by_name(self, username: str) -> UserRecord | None:
        user_id = await self._redis(
            "HGET", f"{PREFIX}:users:names", username.casefold()
        )
        return None if user_id is None else await self.get_user(int(user_id))

    # Rooms

    async def create_room(
        self,
        name: str,
        game: str,
        owner: UserRef,
        max_players: int,
        password_hash: str | None,
    ) -> Room:
        room_id = int(await self._redis("INCR", f"{PREFIX}:rooms:next"))
        fields = {
            "name": name,
            "game": game,
            "owner": json.dumps(owner.to_json()),
            "max_players": max_players,
            "password_hash": password_hash or "",
            "state": RoomState.WAITING.value,
        }
        await self._redis(
            "HSET", room_key(room_id, "meta"), *(x for kv in fields.items() for x in kv)
        )
        await self._redis("ZADD", f"{PREFIX}:rooms", room_id, room_id)
        await self._redis("ZADD", f"{PREFIX}:rooms:game:{game}", room_id, room_id)
        return await self.get_room(room_id)

    async def get_room(self, room_id: int) -> Room | None:
        meta, players = await gather(
            self._redis("HGETALL", room_key(room_id, "meta")),
            self._redis("LRANGE", room_key(room_id, "players"), 0, -1),
        )
        return _room(room_id, _pairs(meta), players) if meta else None

    async def list_rooms(self, game: str | None, offset: int, limit: int) -> Page:
        index = f"{PREFIX}:rooms" if game is None else f"{PREFIX}:rooms:game:{game}"
        count = int(await self._redis("ZCARD", index))
        ids = await self._redis("ZREVRANGE", index, offset, offset + limit - 1)
        rooms = await gather(*(self.get_room(int(room_id)) for room_id in ids))
        return Page(count, tuple(r for r in rooms if r is not None))

    async def delete_room(self, room_id: int) -> bool:
        meta = await self._redis("HGETALL", room_key(room_id, "meta"))
        if not meta:
            return False
        game = _pairs(meta)["game"]
        await self._redis("DEL", *(room_key(room_id, part) for part in _ROOM_PARTS))
        await self._redis("ZREM", f"{PREFIX}:rooms", room_id)
        await self._redis("ZREM", f"{PREFIX}:rooms:game:{game}", room_id)
        return True

    async def seat_player(self, room_id: int, user: UserRef) -> tuple[Room, bool]:
        outcome = int(
            await self._redis.script(
                _SEAT,
                [room_key(room_id, "meta"), room_key(room_id, "players")],
                [user.id, json.dumps(user.to_json())],
            )
        )
        if outcome == -1:
            raise RoomNotFound(f"there is no room {room_id}")
        if outcome == -2:
            raise GameStarted("the game in this room has already started")
        room = await self.get_room(room_id)
        if room is None:
            raise RoomNotFound(f"there is no room {room_id}")
        if outcome == -3:
            raise RoomFull(f"the room is full ({room.max_players} players)")
        return room, outcome == 1

    async def unseat_player(self, room_id: int, user_id: int) -> Room | None:
        await self._redis.script(_UNSEAT, [room_key(room_id, "players")], [user_id])
        return await self.get_room(room_id)

    async def set_room_state(self, room_id: int, state: RoomState) -> Room:
        done = await self._redis.script(
            _SET_STATE, [room_key(room_id, "meta")], [RoomState(state).value]
        )
        if not int(done):
            raise RoomNotFound(f"there is no room {room_id}")
        return await self.get_room(room_id)

    # Game data

    async def load_state(self, room_id: int) -> str | None:
        return await self._redis("GET", room_key(room_id, "state"))

    async def get_entry(self, room_id: int, key: str) -> str | None:
        return await self._redis("HGET", room_key(room_id, "entries"), key)

    async def chat_backlog(self, room_id: int) -> list[str]:
        return list(await self._redis("LRANGE", room_key(room_id, "chat"), 0, -1))

    async def commit(self, room_id: int, commit: Commit) -> None:
        payload = {
            "state": commit.state,
            "entries": commit.entries,
            "chat": commit.chat,
            "keep": commit.chat_keep,
            "status": None if commit.status is None else RoomState(commit.status).value,
            "clear": commit.clear_timers,
            "timers": {
                name: None if spec is None else json.dumps(spec.to_json())
                for name, spec in commit.timers.items()
            },
        }
        # Index new timers first: an index entry whose timer was never stored
        # is dropped by due_timers, but a stored timer missing from the index
        # would never fire.
        for spec in commit.timers.values():
            if spec is not None:
                member = f"{room_id}|{spec.name}|{spec.id}"
                await self._redis("ZADD", f"{PREFIX}:timers", spec.deadline, member)
        parts = ("meta", "state", "entries", "chat", "timers", "lock")
        keys = [room_key(room_id, part) for part in parts]
        done = await self._redis.script(
            _COMMIT, keys, [json.dumps(payload), commit.lock or ""]
        )
        if int(done) == -1:
            raise Unavailable(
                "this turn outlived its lock on the room and was not saved: try again"
            )

    # Timers

    async def get_timer(self, room_id: int, name: str) -> TimerSpec | None:
        raw = await self._redis("HGET", room_key(room_id, "timers"), name)
        return None if raw is None else TimerSpec.from_json(json.loads(raw))

    async def due_timers(self, until: float, limit: int) -> list[tuple[int, str, str]]:
        """Due timers from the index; entries it no longer matches are dropped."""
        index = f"{PREFIX}:timers"
        members = await self._redis(
            "ZRANGEBYSCORE", index, "-inf", repr(until), "LIMIT", 0, limit
        )
        due = []
        for member in members:
            room_id, name, timer_id = member.split("|", 2)
            spec = await self.get_timer(int(room_id), name)
            if spec is None or spec.id != timer_id:
                await self._redis("ZREM", index, member)
            else:
                due.append((int(room_id), name, timer_id))
        return due


def _pairs(reply: Any) -> dict[str, str]:
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


def _room(room_id: int, meta: dict[str, str], players: list[str]) -> Room:
    return Room(
        id=room_id,
        name=meta["name"],
        game=meta["game"],
        owner=UserRef(**json.loads(meta["owner"])),
        max_players=int(meta["max_players"]),
        password_hash=meta["password_hash"] or None,
        players=tuple(UserRef(**json.loads(p)) for p in players),
        state=RoomState(meta["state"]),
    )
