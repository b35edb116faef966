"""This process's sockets, by user and by id: what every message is delivered to.

A delivery hands one ``Frame`` (encoded and framed once) to each socket of
each recipient.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from twisted.internet.defer import Deferred
from zope.interface import implementer

from gameserver._interfaces import IConnection, IGroupLayer
from gameserver._stats import Counters
from gameserver._wire.messages import Frame


@implementer(IGroupLayer)
class LocalSockets:
    def __init__(self, counters: Counters | None = None) -> None:
        self._by_user: dict[int, list[IConnection]] = {}
        self._by_id: dict[int, IConnection] = {}
        #: Answers awaited by requests that came without a socket (HTTP),
        #: under ids no socket has (negative).
        self._answers: dict[int, Deferred[Frame]] = {}
        self._answer_ids = itertools.count(-1, -1)
        #: The server's counters: frames handed to sockets, one per socket.
        self._counters = Counters() if counters is None else counters

    def expect(self) -> tuple[int, Deferred[Frame]]:
        """An id to address a reply to, and the ``Deferred`` it fires."""
        answer_id = next(self._answer_ids)
        answer: Deferred[Frame] = Deferred()
        self._answers[answer_id] = answer
        answer.addBoth(self._answered, answer_id)
        return answer_id, answer

    def _answered(self, result: object, answer_id: int) -> object:
        self._answers.pop(answer_id, None)
        return result

    def add(self, connection: IConnection) -> bool:
        """Register a validated socket; whether it is its user's first here."""
        user_id = connection.user.id
        self._by_id[connection.id] = connection
        connections = self._by_user.get(user_id)
        if connections is None:
            self._by_user[user_id] = [connection]
            return True
        self._by_user[user_id] = [*connections, connection]
        return False

    def remove(self, connection: IConnection) -> bool:
        """Forget a socket; whether it was its user's last here."""
        if self._by_id.pop(connection.id, None) is None:
            return False
        user_id = connection.user.id
        left = [c for c in self._by_user.get(user_id, ()) if c is not connection]
        if left:
            self._by_user[user_id] = left
            return False
        self._by_user.pop(user_id, None)
        return True

    def connections(self) -> int:
        """Validated sockets, all users."""
        return len(self._by_id)

    def count(self, user_id: int) -> int:
        return len(self._by_user.get(user_id, ()))

    def gone(self, connection: IConnection) -> bool:
        """Whether nobody is left to seat for this socket's request: it closed,
        and so did its user's others here (their disconnect has gone to
        their rooms already)."""
        user = connection.user
        return not connection.open and (user is None or not self.count(user.id))

    def users(self) -> list[int]:
        return list(self._by_user)

    def connection(self, connection_id: int) -> IConnection | None:
        return self._by_id.get(connection_id)

    def deliver(self, user_ids: Iterable[int], frame: Frame) -> None:
        by_user = self._by_user
        n = 0
        for user_id in user_ids:
            connections = by_user.get(user_id)
            if connections is not None:
                n += len(connections)
                for connection in connections:
                    connection.send_frame(frame)
        self._counters.deliveries += n

    def deliver_to(self, connection_id: int, frame: Frame) -> None:
        connection = self._by_id.get(connection_id)
        if connection is not None:
            self._counters.deliveries += 1
            connection.send_frame(frame)
            return
        answer = self._answers.get(connection_id)
        if answer is not None and not answer.called:
            answer.callback(frame)

    def close_user(self, user_id: int, code: int, reason: str) -> None:
        for connection in list(self._by_user.get(user_id, ())):
            connection.close(code, reason)

    def all(self) -> list[IConnection]:
        """Every validated socket."""
        return list(self._by_id.values())

    def close_all(self, code: int, reason: str) -> None:
        for connection in list(self._by_id.values()):
            connection.close(code, reason)
