"""Groups of users in one process, and the sockets that reach them.

A send encodes and frames its message once, whatever the number of
recipients: the one ``Frame`` is handed to every socket.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from zope.interface import implementer

from gameserver.interfaces import IConnection, IGroupLayer
from gameserver.messages import Frame, dumps


def room_group(room_id: int, name: str | None = None) -> str:
    """A room's own group (its present members), or one of its named groups."""
    return f"room:{room_id}" if name is None else f"room:{room_id}:{name}"


def _frame(message: dict[str, Any] | Frame) -> Frame:
    return message if isinstance(message, Frame) else Frame.of(dumps(message))


class LocalSockets:
    """This process's sockets, by user: what every group layer delivers to."""

    def __init__(self) -> None:
        self._by_user: dict[int, set[IConnection]] = {}

    def add(self, connection: IConnection) -> bool:
        """Register a socket; whether it is its user's first here."""
        user_id = connection.user.id
        first = user_id not in self._by_user
        self._by_user.setdefault(user_id, set()).add(connection)
        return first

    def remove(self, connection: IConnection) -> bool:
        """Forget a socket; whether it was its user's last here."""
        user_id = connection.user.id
        connections = self._by_user.get(user_id, set())
        if connection not in connections:
            return False
        connections.discard(connection)
        if connections:
            return False
        del self._by_user[user_id]
        return True

    def count(self, user_id: int) -> int:
        return len(self._by_user.get(user_id, ()))

    def users(self) -> list[int]:
        return list(self._by_user)

    def deliver(self, user_ids: Iterable[int], frame: Frame) -> None:
        for user_id in user_ids:
            for connection in tuple(self._by_user.get(user_id, ())):
                connection.send_frame(frame)

    def close_all(self, code: int, reason: str) -> None:
        for connections in list(self._by_user.values()):
            for connection in tuple(connections):
                connection.close(code, reason)


@implementer(IGroupLayer)
class LocalGroups:
    def __init__(self) -> None:
        self.sockets = LocalSockets()
        self._members: dict[str, set[int]] = {}
        self._groups_of: dict[int, set[str]] = {}

    async def connect(self, connection: IConnection) -> None:
        self.sockets.add(connection)

    def disconnect(self, connection: IConnection) -> bool:
        return self.sockets.remove(connection)

    def connection_count(self, user_id: int) -> int:
        return self.sockets.count(user_id)

    async def user_online(self, user_id: int) -> bool:
        return self.sockets.count(user_id) > 0

    async def add(self, group: str, user_id: int) -> None:
        self._members.setdefault(group, set()).add(user_id)
        self._groups_of.setdefault(user_id, set()).add(group)

    async def remove(self, group: str, user_id: int) -> None:
        self._forget(group, user_id)
        members = self._members.get(group)
        if members is not None:
            members.discard(user_id)
            if not members:
                del self._members[group]

    async def discard(self, group: str) -> None:
        for user_id in self._members.pop(group, ()):
            self._forget(group, user_id)

    def _forget(self, group: str, user_id: int) -> None:
        groups = self._groups_of.get(user_id)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del self._groups_of[user_id]

    async def is_member(self, group: str, user_id: int) -> bool:
        return user_id in self._members.get(group, ())

    async def members(self, group: str) -> frozenset[int]:
        return frozenset(self._members.get(group, ()))

    async def groups_of(self, user_id: int) -> frozenset[str]:
        return frozenset(self._groups_of.get(user_id, ()))

    async def discard_room(self, room_id: int) -> None:
        own = room_group(room_id)
        prefix = own + ":"
        for group in [g for g in self._members if g == own or g.startswith(prefix)]:
            await self.discard(group)

    async def send(
        self,
        group: str,
        message: dict[str, Any] | Frame,
        exclude: int | None = None,
    ) -> None:
        members = self._members.get(group)
        if members:
            self.sockets.deliver((u for u in members if u != exclude), _frame(message))

    async def send_to_user(self, user_id: int, message: dict[str, Any] | Frame) -> None:
        self.sockets.deliver((user_id,), _frame(message))
