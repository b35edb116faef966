"""Test a game without sockets or real time.

``GameTest`` runs the real server code (dispatcher, rooms, turns, chat,
store) against fake connections that record what they are sent, with a
``task.Clock`` for time::

    def test_a_win():
        test = GameTest(TicTacToe())
        alice, bob = test.player("alice"), test.player("bob")
        room = test.create_room("tictactoe", owner=alice)
        alice.join(room)
        bob.join(room)
        alice.send("MOVE", {"cell": 4})
        assert bob.last("BOARD")["data"]["cells"][4] == "X"
        test.advance(30)  # timers fire

Everything completes at once, because nothing waits on real I/O; a handler
that does is reported instead of hanging the test.
"""

from __future__ import annotations

import json
from collections.abc import Coroutine
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from zope.interface import implementer

from gameserver.auth import ACCESS
from gameserver.interfaces import IConnection, IGame
from gameserver.messages import Envelope, Frame, dumps
from gameserver.models import Room, UserRef
from gameserver.server import GameServer
from gameserver.settings import Settings
from gameserver.store import MemoryStore

_TEST_SECRET = "gameserver.testing: not a secret, only for fakes"


def settle(work: Coroutine[Any, Any, Any] | Deferred[Any]) -> Any:
    """The result of work that must not wait on real I/O."""
    d = ensureDeferred(work) if not isinstance(work, Deferred) else work
    results: list[Any] = []
    d.addBoth(results.append)
    if not results:
        raise AssertionError(
            "the work did not finish: does a handler wait on real I/O?"
        )
    outcome = results[0]
    if hasattr(outcome, "raiseException"):
        outcome.raiseException()
    return outcome


@implementer(IConnection)
class FakeConnection:
    """Records every message sent to it, decoded."""

    def __init__(self) -> None:
        self.user: UserRef | None = None
        self.messages: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    def send(self, message: dict[str, Any]) -> None:
        self.messages.append(json.loads(dumps(message)))

    def send_frame(self, frame: Frame) -> None:
        self.messages.append(json.loads(frame.payload))

    def authenticated(self, user: UserRef) -> None:
        self.user = user

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


class Player:
    """A user with one fake connection; ``room`` is the room last joined."""

    def __init__(self, test: GameTest, user: UserRef) -> None:
        self.test = test
        self.user = user
        self.room: int | None = None
        self.connection = self._connect()

    def _connect(self) -> FakeConnection:
        connection = FakeConnection()
        token = self.test.server.tokens.issue(self.user.id, ACCESS)
        self.test.dispatch(connection, "VALIDATE_CONNECTION", None, {"token": token})
        return connection

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.connection.messages

    def send(
        self, type_: str, data: dict[str, Any] | None = None, *, room: int | None = None
    ) -> None:
        self.test.dispatch(self.connection, type_, room or self.room, data or {})

    def join(
        self, room: int | Room | dict, password: str | None = None
    ) -> dict[str, Any]:
        """Send ``JOIN_ROOM``; returns the reply."""
        room_id = room if isinstance(room, int) else _room_id(room)
        data = {} if password is None else {"password": password}
        self.test.dispatch(self.connection, "JOIN_ROOM", room_id, data)
        reply = self.last("JOIN_ROOM")
        if reply["data"]["is_successful"]:
            self.room = room_id
        return reply

    def leave(self, room: int | None = None) -> dict[str, Any]:
        self.test.dispatch(self.connection, "LEAVE_ROOM", room or self.room, {})
        return self.last("LEAVE_ROOM")

    def disconnect(self) -> None:
        """Close the socket, as a dropped network would."""
        self.connection.close(1006, "dropped")
        settle(self.test.server.dispatcher.connection_lost(self.connection))

    def reconnect(self) -> None:
        """A new, validated socket (the old one is closed if still open)."""
        if self.connection.user is not None and self.connection.closed is None:
            self.disconnect()
        self.connection = self._connect()

    def received(self, type_: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.messages if type_ is None or m["type"] == type_]

    def last(self, type_: str | None = None) -> dict[str, Any]:
        found = self.received(type_)
        if not found:
            seen = sorted({m["type"] for m in self.messages})
            raise AssertionError(f"{self.user.username} got no {type_} (got: {seen})")
        return found[-1]

    def errors(self) -> list[dict[str, Any]]:
        return [m["data"] for m in self.received("ERROR")]

    def clear(self) -> None:
        self.messages.clear()


class GameTest:
    """A server with the given games, an in-memory store and a ``Clock``."""

    def __init__(self, *games: IGame, settings: Settings | None = None) -> None:
        self.clock = Clock()
        self.store = MemoryStore()
        self.server = GameServer(
            settings or Settings(secret=_TEST_SECRET),
            store=self.store,
            games={game.name: game for game in games},
            clock=self.clock,
        )

    def player(self, username: str) -> Player:
        record = settle(self.store.create_user(username, "!"))
        return Player(self, record.ref)

    def create_room(
        self, game: str, *, owner: Player, name: str = "test room", **options: Any
    ) -> int:
        body = {"name": name, "game": game, **options}
        return settle(self.server.rooms.create(owner.user, body)).id

    def room(self, room_id: int) -> Room:
        return settle(self.server.rooms.get(room_id))

    def state(self, room_id: int) -> Any:
        raw = settle(self.store.load_state(room_id))
        return None if raw is None else json.loads(raw)

    def advance(self, seconds: float) -> None:
        """Move time on, firing due timers in order, each at its own time.

        Unlike ``Clock.advance``, a timer set by another timer's callback is
        measured from when that callback ran, not from the end of the jump.
        """
        end = self.clock.seconds() + seconds
        while True:
            due = [
                c.getTime() for c in self.clock.getDelayedCalls() if c.getTime() <= end
            ]
            if not due:
                break
            self.clock.advance(max(0.0, min(due) - self.clock.seconds()))
        self.clock.advance(end - self.clock.seconds())

    def dispatch(
        self, connection: FakeConnection, type_: str, room_id: int | None, data: dict
    ) -> None:
        settle(
            self.server.dispatcher.dispatch(connection, Envelope(type_, room_id, data))
        )


def _room_id(room: Room | dict) -> int:
    return room.id if isinstance(room, Room) else room["id"]
