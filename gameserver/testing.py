"""Test a game without sockets or real time.

``GameTest`` runs the real server (dispatcher, engine, turns, chat, store)
with a ``task.Clock`` for time. Each ``Player`` is a real session of the
server's protocol, fed the bytes a WebSocket would carry and reading the
frames the server writes, so a message is decoded and checked exactly as
on the wire::

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
that does is reported instead of hanging the test. The per-socket rate
limit is lifted, so that a test may send as fast as it likes.

``GameTest(..., format="msgpack")`` has its players speak MessagePack
instead of JSON: their messages go through that format's decoder, and
what they receive is decoded from the binary frames the server writes.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Coroutine
from typing import Any

import attrs
import msgpack
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock

from gameserver._accounts.tokens import ACCESS
from gameserver._interfaces import IGame
from gameserver._memory.store import MemoryStore
from gameserver._models import Room, UserRef
from gameserver._server import GameServer
from gameserver._settings import Settings
from gameserver._wire.formats import FORMATS, WireFormat
from gameserver._wire.messages import dumps
from gameserver._wire.session import Session

_TEST_SECRET = "gameserver.testing: not a secret, only for fakes"
_connection_ids = itertools.count(1_000_000)


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


def frame_payload(frame: bytes) -> bytes:
    """The payload of one unmasked WebSocket frame, as the server writes it."""
    length = frame[1] & 0x7F
    if length == 126:
        return frame[4:]
    if length == 127:
        return frame[10:]
    return frame[2:]


class Recorder:
    """Stands in for the socket: keeps every message the server sends, decoded."""

    def __init__(self, wire_format: WireFormat) -> None:
        self.messages: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.session: Session | None = None
        self._opcode = 0x82 if wire_format.binary else 0x81
        self._format = wire_format

    def write(self, data: bytes) -> None:
        if data[0] != self._opcode:
            raise AssertionError(
                f"the server sent a frame with opcode {data[0] & 0x0F}"
                f" to a {self._format.name} connection"
            )
        payload = frame_payload(data)
        self.messages.append(
            msgpack.unpackb(payload) if self._format.binary else json.loads(payload)
        )

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        if self.session is not None:
            self.session.lost()


class Player:
    """A user with one connection; ``room`` is the room last joined."""

    def __init__(
        self, test: GameTest, user: UserRef, wire_format: WireFormat | None = None
    ) -> None:
        self.test = test
        self.user = user
        #: The wire format its connections speak.
        self.format = wire_format or test.format
        self.room: int | None = None
        #: The last ``seq`` of each room, from the connections before this one.
        self._seqs: dict[int, int] = {}
        self._recorder, self.session = self._connect()

    def _connect(self) -> tuple[Recorder, Session]:
        server = self.test.server
        recorder = Recorder(self.format)
        session = Session(
            recorder,
            server.dispatcher,
            server.settings,
            self.test.clock,
            next(_connection_ids),
            peer=f"test:{self.user.username}",
            wire_format=self.format,
            counters=server.engine.counters,
        )
        recorder.session = session
        token = server.tokens.issue(self.user.id, ACCESS)
        self._feed(session, "VALIDATE_CONNECTION", None, {"token": token})
        return recorder, session

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self._recorder.messages

    @property
    def closed(self) -> tuple[int, str] | None:
        return self._recorder.closed

    def send(
        self,
        type_: str,
        data: dict[str, Any] | None = None,
        *,
        room: int | None = None,
        wait: bool = True,
    ) -> None:
        """Send a message; with ``wait``, check that everything it caused is done."""
        self._feed(self.session, type_, room or self.room, data or {})
        if wait:
            self.test.check_settled()

    def send_raw(self, payload: bytes | str, *, binary: bool | None = None) -> None:
        """Send bytes as they are, as a client could: the decoder judges them.

        They go in the frame of the player's format unless ``binary`` says
        otherwise (text if ``False``).
        """
        raw = payload.encode("utf-8") if isinstance(payload, str) else payload
        self.session.received(raw, self.format.binary if binary is None else binary)

    def _feed(
        self, session: Session, type_: str, room_id: int | None, data: dict
    ) -> None:
        envelope: dict[str, Any] = {"type": type_}
        if room_id is not None:
            envelope["room_id"] = room_id
        envelope["data"] = data
        if self.format.binary:
            session.received(msgpack.packb(envelope), True)
        else:
            session.received(dumps(envelope), False)

    def join(
        self, room: int | Room | dict, password: str | None = None
    ) -> dict[str, Any]:
        """Send ``JOIN_ROOM``; returns the reply."""
        return self._join(room, {} if password is None else {"password": password})

    def resume(
        self, room: int | Room | dict | None = None, **data: Any
    ) -> dict[str, Any]:
        """Join again, naming the last message received (``JOIN_ROOM
        {resume}``): the reply says whether the missed messages follow."""
        room_id = self.room if room is None else _room_id_of(room)
        assert room_id is not None, "which room?"
        last = self.last_seq(room_id)
        return self._join(room_id, {**data, "resume": 0 if last is None else last})

    def last_seq(self, room: int | Room | dict | None = None) -> int | None:
        """The ``seq`` of the last message of the room this player received,
        over all its connections; ``None`` before any."""
        room_id = self.room if room is None else _room_id_of(room)
        seqs = [
            m["seq"]
            for m in self.messages
            if "seq" in m and m.get("room_id") == room_id
        ]
        if room_id in self._seqs:
            seqs.append(self._seqs[room_id])
        return max(seqs) if seqs else None

    def spectate(
        self, room: int | Room | dict, password: str | None = None
    ) -> dict[str, Any]:
        """Watch the room without a seat (``JOIN_ROOM`` with ``spectate``)."""
        data: dict[str, Any] = {"spectate": True}
        if password is not None:
            data["password"] = password
        return self._join(room, data)

    def _join(self, room: int | Room | dict, data: dict[str, Any]) -> dict[str, Any]:
        room_id = _room_id_of(room)
        self.send("JOIN_ROOM", data, room=room_id)
        reply = self.last("JOIN_ROOM")
        if reply["data"]["is_successful"]:
            self.room = room_id
        return reply

    def leave(self, room: int | None = None) -> dict[str, Any]:
        self.send("LEAVE_ROOM", {}, room=room or self.room)
        return self.last("LEAVE_ROOM")

    def disconnect(self) -> None:
        """Close the connection, as a dropped network would."""
        self.session.lost()
        self.test.check_settled()

    def reconnect(self) -> None:
        """A new, validated connection (the old one is closed if still open)."""
        if self.session.open:
            self.disconnect()
        self._remember()
        self._recorder, self.session = self._connect()

    def _remember(self) -> None:
        """Keep each room's last ``seq`` before messages are dropped."""
        for message in self.messages:
            room_id, seq = message.get("room_id"), message.get("seq")
            if (
                room_id is not None
                and seq is not None
                and seq > self._seqs.get(room_id, 0)
            ):
                self._seqs[room_id] = seq

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
        """Forget the messages received so far (not where ``resume`` starts)."""
        self._remember()
        self.messages.clear()


class GameTest:
    """A server with the given games, an in-memory store and a ``Clock``;
    its players speak ``format``, ``"json"`` or ``"msgpack"``."""

    def __init__(
        self, *games: IGame, settings: Settings | None = None, format: str = "json"
    ) -> None:
        self.format = _format(format)
        self.clock = Clock()
        self.store = MemoryStore()
        settings = settings or Settings(secret=_TEST_SECRET)
        settings = attrs.evolve(settings, message_rate=1e9, message_burst=10**9)
        self.server = GameServer(
            settings,
            store=self.store,
            games={game.name: game for game in games},
            clock=self.clock,
        )

    def player(self, username: str, *, format: str | None = None) -> Player:
        """A new user, connected and validated; ``format`` overrides the test's."""
        record = settle(self.store.create_user(username, "!"))
        return Player(self, record.ref, None if format is None else _format(format))

    def create_room(
        self, game: str, *, owner: Player, name: str = "test room", **options: Any
    ) -> int:
        body = {"name": name, "game": game, **options}
        return settle(self.server.rooms.create(owner.user, body)).id

    def room(self, room_id: int) -> Room:
        """The room's record: players and state as the HTTP API shows them."""
        return settle(self.server.rooms.get(room_id))

    def state(self, room_id: int) -> Any:
        """The room's state document as last kept (``None`` if never used)."""
        room = self.server.engine.rooms.get(room_id)
        return None if room is None else json.loads(room.saved)

    def timers(self, room_id: int) -> dict[str, Any]:
        """The room's timers by name, each a ``TimerHandle`` with its deadline."""
        return self.server.engine.timers(room_id)

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
        self.check_settled()

    def check_settled(self) -> None:
        """Fail if a turn is still waiting: a handler waits on real I/O."""
        for room in self.server.engine.rooms.values():
            if room.running or room.queue:
                raise AssertionError(
                    f"a turn of room {room.id} did not finish:"
                    " does a handler wait on real I/O?"
                )


def _format(name: str) -> WireFormat:
    if name not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}: {name!r}")
    return FORMATS[name]


def _room_id_of(room: int | Room | dict) -> int:
    return room if isinstance(room, int) else _room_id(room)


def _room_id(room: Room | dict) -> int:
    return room.id if isinstance(room, Room) else room["id"]
