"""A channel per process: each process reads only what is for it.

Three kinds of message travel between processes, as MessagePack:

- ``OUT``: from a room's owner, the messages of its committed turns for
  the recipients' sockets in this process (each message encoded once,
  with the users or the one socket it is for), and the numbers of this
  process's requests to the room that are now done;
- ``WORK``: a request for a room this process owns (a client's message, a
  join, a disconnect), numbered by the process that sent it;
- ``MOVED``: the process sent work to does not hold the room: ask again
  who does.

txredisapi forgets subscriptions when it reconnects, so the channel
subscribes again on every connection; what is published meanwhile is lost
(pub/sub is at most once), which is why requests are numbered and sent
again until acknowledged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgpack
import txredisapi
from twisted.logger import Logger

from gameserver._engine.room import Reply, Work
from gameserver._models import UserRef
from gameserver._redis import keys
from gameserver._redis.connection import RedisAddress

OUT, WORK, MOVED = 0, 1, 2

log = Logger()


def pack(message: list[Any]) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def work_message(work: Work) -> bytes:
    user = work.user
    reply = work.reply
    return pack(
        [
            WORK,
            work.room_id,
            work.origin,
            work.seq,
            work.kind,
            None if user is None else user.id,
            None if user is None else user.username,
            None if reply is None else reply.connection,
            work.type,
            json.dumps(work.data, separators=(",", ":")).encode("utf-8"),
            list(work.processes),
            work.password_ok,
        ]
    )


def work_of(message: list[Any]) -> Work:
    (_, room_id, origin, seq, kind, user_id, username, connection) = message[:8]
    type_, data, processes, password_ok = message[8:12]
    return Work(
        kind,
        room_id,
        user=None if user_id is None else UserRef(user_id, username),
        reply=None if connection is None else Reply(origin, connection),
        type=type_,
        data=json.loads(data),
        processes=tuple(processes),
        password_ok=password_ok,
        origin=origin,
        seq=seq,
    )


class _Subscriber(txredisapi.SubscriberProtocol):
    def connectionMade(self) -> Any:
        d = super().connectionMade()
        d.addCallback(lambda _: self.factory.channel._connected(self))
        return d

    def messageReceived(self, pattern: Any, channel: Any, message: bytes) -> None:
        self.factory.channel._received(message)

    def connectionLost(self, reason: Any) -> None:
        self.factory.channel._lost(self)
        super().connectionLost(reason)


class Channel:
    """This process's channel, read over a connection of its own."""

    def __init__(
        self,
        address: RedisAddress,
        process_id: str,
        handle: Callable[[list[Any]], None],
    ) -> None:
        self.name = keys.channel(process_id)
        self._address = address
        self._handle = handle
        self._subscriber: _Subscriber | None = None
        self._factory = txredisapi.SubscriberFactory(isLazy=True)
        self._factory.protocol = _Subscriber
        self._factory.channel = self
        self._factory.password = address.password
        self._factory.dbid = None
        self._factory.charset = None  # messages are MessagePack bytes
        #: Messages read, for tests and benchmarks: a process reads only its own.
        self.received = 0

    @property
    def ready(self) -> bool:
        return self._subscriber is not None

    def start(self) -> None:
        self._factory.startConnecting(
            txredisapi._makeEndpoint(
                self._address.host, self._address.port, connectTimeout=3
            )
        )

    def stop(self) -> Any:
        return self._factory.disconnect()

    def _connected(self, subscriber: _Subscriber) -> None:
        d = subscriber.subscribe(self.name)
        d.addCallback(lambda _: setattr(self, "_subscriber", subscriber))
        d.addErrback(
            lambda f: log.warn("subscribing failed: {f}", f=f.getErrorMessage())
        )

    def _lost(self, subscriber: _Subscriber) -> None:
        if self._subscriber is subscriber:
            self._subscriber = None

    def _received(self, raw: bytes) -> None:
        self.received += 1
        try:
            message = msgpack.unpackb(raw, raw=False)
        except Exception:
            log.failure("an unreadable message on {channel}", channel=self.name)
            return
        try:
            self._handle(message)
        except Exception:
            log.failure("handling a message on {channel} failed", channel=self.name)
