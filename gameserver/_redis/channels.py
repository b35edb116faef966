"""Groups shared by every process, over Redis sets and pub/sub.

Membership lives in Redis sets, so it is per user whichever process their
sockets are on. A send publishes the message, encoded once and addressed
to its recipients, on one channel that every process reads; each process
frames it once and hands it to its own sockets of those users. All of a
process's commands go over one connection, so a room's messages are
published before its turn releases the room's lock, and one channel keeps
them in the order the room produced them, for every socket of every
process. (Every process reads every message: right for a few processes;
many more would want a channel per process.)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import txredisapi
from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger
from zope.interface import implementer

from gameserver.errors import Unavailable
from gameserver.groups import LocalSockets, room_group
from gameserver.interfaces import IConnection, IGroupLayer
from gameserver.messages import Frame, dumps
from gameserver.store.redis import PREFIX, RedisAddress, RedisConnection

log = Logger()


def _group_key(group: str) -> str:
    room = ":".join(group.split(":", 2)[:2])  # "room:N": the room's hash tag
    return f"{PREFIX}:{{{room}}}:group:{group}"


def _room_groups_key(group: str) -> str:
    room = ":".join(group.split(":", 2)[:2])
    return f"{PREFIX}:{{{room}}}:groups"


CHANNEL = f"{PREFIX}:deliver"


class _Subscriber(txredisapi.SubscriberProtocol):
    def connectionMade(self) -> Any:
        d = super().connectionMade()
        d.addCallback(lambda _: self.factory.groups._subscribed(self))
        return d

    def messageReceived(self, pattern: Any, channel: str, message: str) -> None:
        self.factory.groups._received(channel, message)

    def connectionLost(self, reason: Any) -> None:
        self.factory.groups._unsubscribed(self)
        super().connectionLost(reason)


@implementer(IGroupLayer)
class RedisGroups:
    def __init__(self, redis: RedisConnection, process_id: str) -> None:
        self._redis = redis
        self.process_id = process_id
        self.sockets = LocalSockets()
        self._subscriber: _Subscriber | None = None
        self._factory = txredisapi.SubscriberFactory(isLazy=True)
        self._factory.protocol = _Subscriber
        self._factory.groups = self
        self._factory.password = redis.address.password
        self._factory.dbid = None

    def start(self) -> None:
        address: RedisAddress = self._redis.address
        self._factory.startConnecting(
            txredisapi._makeEndpoint(address.host, address.port, connectTimeout=3)
        )

    def stop(self) -> Any:
        return self._factory.disconnect()

    # Sockets of this process

    async def connect(self, connection: IConnection) -> None:
        """Register a socket; once this returns, its user's messages reach it."""
        if self.sockets.add(connection):
            await self._came(connection.user.id)

    def disconnect(self, connection: IConnection) -> bool:
        if not self.sockets.remove(connection):
            return False
        self._background(self._went(connection.user.id))
        return True

    def connection_count(self, user_id: int) -> int:
        return self.sockets.count(user_id)

    async def _came(self, user_id: int) -> None:
        if self._subscriber is None:
            raise Unavailable("not subscribed to Redis yet: try again soon")
        await self._redis("HSET", self._online_key(user_id), self.process_id, 1)
        await self._redis("SADD", self._process_users_key(self.process_id), user_id)

    async def _went(self, user_id: int) -> None:
        if not self.sockets.count(user_id):  # not back meanwhile
            await self._redis("HDEL", self._online_key(user_id), self.process_id)
            await self._redis("SREM", self._process_users_key(self.process_id), user_id)

    async def user_online(self, user_id: int) -> bool:
        """Whether any live process has a socket of the user."""
        return self.sockets.count(user_id) > 0 or await self.user_online_elsewhere(
            user_id
        )

    async def user_online_elsewhere(self, user_id: int) -> bool:
        for process in await self._redis("HKEYS", self._online_key(user_id)):
            if process != self.process_id and await self.alive(process):
                return True
        return False

    # Processes

    async def heartbeat(self, ttl: float) -> None:
        """Say this process is alive for ``ttl`` more seconds."""
        await self._redis("SADD", f"{PREFIX}:processes", self.process_id)
        await self._redis(
            "SET", self._alive_key(self.process_id), 1, "PX", int(ttl * 1000)
        )

    async def alive(self, process_id: str) -> bool:
        return bool(int(await self._redis("EXISTS", self._alive_key(process_id))))

    async def dead_processes(self) -> list[str]:
        """Processes whose heartbeat stopped, each claimed by one caller only."""
        dead = []
        for process in await self._redis("SMEMBERS", f"{PREFIX}:processes"):
            if process == self.process_id or await self.alive(process):
                continue
            if int(await self._redis("SREM", f"{PREFIX}:processes", process)):
                dead.append(process)
        return dead

    async def leave(self) -> None:
        """This process stops: forget its sockets and heartbeat."""
        await self._redis("SREM", f"{PREFIX}:processes", self.process_id)
        await self._redis("DEL", self._alive_key(self.process_id))
        await self.forget_process(self.process_id)

    @staticmethod
    def _alive_key(process_id: str) -> str:
        return f"{PREFIX}:process:{process_id}:alive"

    @staticmethod
    def _online_key(user_id: int) -> str:
        return f"{PREFIX}:online:{user_id}"

    @staticmethod
    def _process_users_key(process_id: str) -> str:
        return f"{PREFIX}:process:{process_id}:users"

    async def forget_process(self, process_id: str) -> list[int]:
        """Drop a dead process's sockets; the users it had, for clean-up."""
        key = self._process_users_key(process_id)
        users = [int(u) for u in await self._redis("SMEMBERS", key)]
        for user_id in users:
            await self._redis("HDEL", self._online_key(user_id), process_id)
        await self._redis("DEL", key)
        return users

    # Subscription

    def _subscribed(self, subscriber: _Subscriber) -> None:
        """(Re)subscribe: Redis forgets subscriptions on a reconnect."""
        d = subscriber.subscribe(CHANNEL)
        d.addCallback(lambda _: setattr(self, "_subscriber", subscriber))
        self._background(d)

    def _unsubscribed(self, subscriber: _Subscriber) -> None:
        if self._subscriber is subscriber:
            self._subscriber = None

    def _received(self, channel: str, message: str) -> None:
        recipients, _, payload = message.partition("|")
        here = [u for u in map(int, recipients.split(",")) if self.sockets.count(u)]
        if here:
            self.sockets.deliver(here, Frame.of(payload.encode("utf-8")))

    # Membership

    async def add(self, group: str, user_id: int) -> None:
        await self._redis("SADD", _group_key(group), user_id)
        await self._redis("SADD", f"{PREFIX}:groups-of:{user_id}", group)
        await self._redis("SADD", _room_groups_key(group), group)

    async def remove(self, group: str, user_id: int) -> None:
        await self._redis("SREM", _group_key(group), user_id)
        await self._redis("SREM", f"{PREFIX}:groups-of:{user_id}", group)

    async def discard(self, group: str) -> None:
        for user_id in await self.members(group):
            await self._redis("SREM", f"{PREFIX}:groups-of:{user_id}", group)
        await self._redis("DEL", _group_key(group))

    async def discard_room(self, room_id: int) -> None:
        key = _room_groups_key(room_group(room_id))
        for group in await self._redis("SMEMBERS", key):
            await self.discard(group)
        await self._redis("DEL", key)

    async def is_member(self, group: str, user_id: int) -> bool:
        return bool(int(await self._redis("SISMEMBER", _group_key(group), user_id)))

    async def members(self, group: str) -> frozenset[int]:
        return frozenset(
            int(u) for u in await self._redis("SMEMBERS", _group_key(group))
        )

    async def groups_of(self, user_id: int) -> frozenset[str]:
        return frozenset(await self._redis("SMEMBERS", f"{PREFIX}:groups-of:{user_id}"))

    # Sending

    async def send(
        self, group: str, message: dict[str, Any] | Frame, exclude: int | None = None
    ) -> None:
        members = await self.members(group)
        await self._publish((u for u in members if u != exclude), message)

    async def send_to_user(self, user_id: int, message: dict[str, Any] | Frame) -> None:
        await self._publish((user_id,), message)

    async def _publish(
        self, user_ids: Iterable[int], message: dict[str, Any] | Frame
    ) -> None:
        """Publish once, addressed to the recipients: ``"1,2,3|{json}"``."""
        recipients = ",".join(str(u) for u in user_ids)
        if recipients:
            raw = message.payload if isinstance(message, Frame) else dumps(message)
            await self._redis("PUBLISH", CHANNEL, f"{recipients}|{raw.decode('utf-8')}")

    def _background(self, work: Any) -> None:
        d = ensureDeferred(work) if not hasattr(work, "addErrback") else work
        d.addErrback(
            lambda f: log.warn("Redis group update failed: {f}", f=f.getErrorMessage())
        )
