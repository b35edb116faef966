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

Redis forgets a connection's subscriptions when it drops, so the channel
subscribes again on every connection; what is published meanwhile is lost
(pub/sub is at most once), which is why requests are numbered and sent
again until acknowledged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgpack
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from gameserver._engine.room import Reply, Work
from gameserver._models import UserRef
from gameserver._redis import keys
from gameserver._redis.connection import RedisAddress, Subscriber

OUT, WORK, MOVED, CLOSE = 0, 1, 2, 3

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
            work.prev,
        ]
    )


def work_of(message: list[Any]) -> Work:
    (_, room_id, origin, seq, kind, user_id, username, connection) = message[:8]
    type_, data, processes, password_ok, prev = message[8:13]
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
        prev=prev,
    )


class Channel:
    """This process's channel, read over a connection of its own."""

    def __init__(
        self,
        address: RedisAddress,
        reactor: Any,
        process_id: str,
        handle: Callable[[list[Any]], None],
    ) -> None:
        self.name = keys.channel(process_id)
        self._handle = handle
        self._subscriber = Subscriber(address, reactor, [self.name], self._received)
        #: Messages read, for tests and benchmarks: a process reads only its own.
        self.received = 0

    @property
    def ready(self) -> bool:
        return self._subscriber.ready

    @property
    def reconnects(self) -> int:
        """Times the channel's connection was made again."""
        return self._subscriber.counts.reconnects

    def start(self) -> None:
        self._subscriber.start()

    def stop(self) -> Deferred[None]:
        return self._subscriber.stop()

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
