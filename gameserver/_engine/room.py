"""A room as its owning process holds it: everything in memory, between turns.

The owner runs the room's turns against this object and never reads the
store for it; a store only sees what a turn changed, in its commit.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable
from typing import Any

import attrs
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from gameserver._interfaces import IGame
from gameserver._models import Room, RoomData, RoomState, TimerSpec, UserRef
from gameserver._routers import Handler
from gameserver._wire import messages
from gameserver._wire.messages import Frame

log = Logger()


@attrs.define(slots=True, eq=False)
class Reply:
    """Where a reply goes: one socket (``connection``) in one process."""

    process: str
    connection: int


def join_type(work: Work) -> str:
    """What a join's answer is called: ``QUICK_JOIN`` for a quick join."""
    if work.type == messages.QUICK_JOIN:
        return messages.QUICK_JOIN
    return messages.JOIN_ROOM


def error_frame(work: Work, code: str, detail: str) -> Frame:
    """An ``ERROR`` (or a refused JOIN/LEAVE) for work that could not be done."""
    if work.kind in (JOIN, LEAVE, RESERVE):
        type_ = messages.LEAVE_ROOM if work.kind == LEAVE else join_type(work)
        data = {"is_successful": False, "error": code, "detail": detail}
        return Frame.build(type_, data, work.room_id)
    data = {"code": code, "detail": detail, "request_type": work.type}
    return Frame.build(messages.ERROR, data, work.room_id)


@attrs.define(slots=True, eq=False)
class Work:
    """Something a room's owner must do as a turn, wherever it came from.

    ``origin`` and ``seq`` number the requests each process sends a room,
    so that one sent again after a failover is recognised; ``done`` fires,
    in the process that made the work, once it is saved (or refused).
    """

    kind: str
    room_id: int
    user: UserRef | None = None
    reply: Reply | None = None
    type: str = ""
    data: dict[str, Any] = attrs.Factory(dict)
    #: join: the processes holding the user's sockets; here/gone: the process.
    processes: tuple[str, ...] = ()
    #: join: the password was checked (or not needed) where the user is.
    password_ok: bool = False
    #: timer: (name, id).
    timer: tuple[str, str] | None = None
    origin: str = ""
    seq: int = 0
    #: The highest of the origin's requests to the room still waiting for an
    #: answer when this one was sent: the owner takes this one only once it
    #: has that one, so none is skipped when one is lost on the way.
    prev: int = 0
    #: hook: the body to run, ``(room, helper)``.
    hook: Any = None
    done: Any = None
    #: When the process that made it first sent it (to give up some day).
    since: float = 0.0


# The kinds of work.
MESSAGE = "message"
JOIN = "join"
LEAVE = "leave"
#: The user's last socket in ``processes[0]`` closed.
GONE = "gone"
#: The user has sockets in ``processes[0]`` now.
HERE = "here"
TIMER = "timer"
DELETE = "delete"
#: A lifecycle hook the engine queued after a turn (not sent between processes).
HOOK = "hook"
#: Hold a seat for a user who will join on a socket (an HTTP quick join).
RESERVE = "reserve"
#: The kinds a client asked for and waits to be answered about.
ANSWERED = frozenset({MESSAGE, JOIN, LEAVE, RESERVE})


class Logged:
    """A message of a room as its log keeps it: for whom, and when it was sent.

    ``users`` names its recipients, or is ``None`` for everyone in the room
    but ``exclude``; recipients are who it was for, present or not, so that
    one who was away gets it when they resume.
    """

    __slots__ = ("at", "exclude", "payload", "seq", "users")

    def __init__(
        self,
        seq: int,
        payload: bytes,
        users: tuple[int, ...] | None,
        exclude: int | None,
        at: float,
    ) -> None:
        #: The message's JSON (not its ``Frame``, whose framed copies would
        #: stay in memory as long as the log keeps it).
        self.seq = seq
        self.payload = payload
        self.users = users
        self.exclude = exclude
        self.at = at

    def is_for(self, user_id: int) -> bool:
        users = self.users
        if users is None:
            return user_id != self.exclude
        return user_id in users

    def encode(self) -> bytes:
        """``"<seq> <time> <audience>\n<payload>"``, as a store keeps it."""
        users = self.users
        if users is None:
            audience = b"*" if self.exclude is None else b"*-%d" % self.exclude
        else:
            audience = b",".join(b"%d" % u for u in users)
        return b"%d %.3f %s\n" % (self.seq, self.at, audience) + self.payload

    @classmethod
    def decode(cls, raw: str | bytes) -> Logged:
        text = raw.encode("utf-8") if isinstance(raw, str) else raw
        head, _, payload = text.partition(b"\n")
        seq, at, audience = head.split(b" ")
        users: tuple[int, ...] | None = None
        exclude = None
        if audience.startswith(b"*-"):
            exclude = int(audience[2:])
        elif audience != b"*":
            users = tuple(int(u) for u in audience.split(b",") if u)
        return cls(int(seq), payload, users, exclude, float(at))


def _decoded(raw: Iterable[str]) -> list[Logged]:
    """The log's entries after the last one that cannot be read, if any: a
    log with a hole would replay around it, while a shorter one only sends
    a resume from before it to a normal join."""
    entries: list[Logged] = []
    for item in raw:
        try:
            entries.append(Logged.decode(item))
        except ValueError:
            log.warn("a room's log entry could not be read: {item!r}", item=item[:80])
            entries.clear()
    return entries


class ChatEntry:
    """A kept chat message: its data, and that data's JSON."""

    __slots__ = ("data", "encoded")

    def __init__(self, data: dict[str, Any], encoded: bytes) -> None:
        self.data = data
        self.encoded = encoded


class LiveRoom:
    """One room's record, seats, presence, groups, state, entries, chat and timers."""

    __slots__ = (
        "admitted",
        "armed",
        "chat",
        "confirmed",
        "entries",
        "frozen",
        "game",
        "groups",
        "id",
        "idle_since",
        "log",
        "present",
        "queue",
        "record",
        "routes",
        "running",
        "saved",
        "seen",
        "seq",
        "state",
        "timers",
        "token",
        "unsaved",
        "version",
        "window",
    )

    def __init__(
        self,
        data: RoomData,
        game: IGame,
        routes: dict[str, Handler],
        *,
        log_size: int = 1000,
        window: float = 120.0,
    ) -> None:
        self.id = data.record.id
        self.record: Room = data.record
        self.game = game
        #: The game's routes with the built-in ones: looked up once per room.
        self.routes = routes
        if data.state is None:
            self.state: Any = game.initial_state()
            self.saved = json.dumps(self.state, separators=(",", ":"))
        else:
            self.state = json.loads(data.state)
            self.saved = data.state
        self.entries: dict[str, str] = dict(data.entries)
        self.chat: deque[ChatEntry] = deque(
            (ChatEntry(json.loads(raw), raw.encode("utf-8")) for raw in data.chat),
            maxlen=max(game.chat_backlog, 0),
        )
        self.timers: dict[str, TimerSpec] = dict(data.timers)
        #: The room's last messages, for users who resume, and how long
        #: (seconds) a message stays in it.
        self.log: deque[Logged] = deque(_decoded(data.log), maxlen=log_size)
        self.window = window
        #: The number of the room's last message (0 before the first).
        self.seq = max(data.seq, self.log[-1].seq if self.log else 0)
        self.armed: dict[str, IDelayedCall] = {}
        self.present: dict[int, frozenset[str]] = {
            user: frozenset(processes) for user, processes in data.present.items()
        }
        self.groups: dict[str, frozenset[int]] = {
            name: frozenset(members) for name, members in data.groups.items()
        }
        #: Highest request number done in a turn, per process (saved with it).
        self.seen: dict[str, int] = dict(data.seen)
        #: Highest request number taken into the queue, per process.
        self.admitted: dict[str, int] = dict(data.seen)
        #: Highest request number whose turn is saved, per process: only
        #: these may be acknowledged again when sent again.
        self.confirmed: dict[str, int] = dict(data.seen)
        self.version = data.version
        self.token = data.token
        self.queue: deque[Work] = deque()
        self.running = False
        #: Being handed over: no new turn starts; what is queued is left
        #: for the next owner (its senders send it again).
        self.frozen = False
        #: Turns done here whose commit is not acknowledged yet.
        self.unsaved = 0
        self.idle_since: float | None = None

    @property
    def status(self) -> RoomState:
        return self.record.state

    def pending(self) -> int:
        """Turns waiting, running or not yet saved: what the busy cap counts."""
        return len(self.queue) + self.unsaved + (1 if self.running else 0)

    def missed(self, user_id: int, last: int, now: float) -> list[Logged] | None:
        """The messages for ``user_id`` after ``last``; ``None`` if the log
        no longer reaches back that far (or ``last`` is not the room's)."""
        log = self.log
        horizon = now - self.window
        while log and log[0].at < horizon:
            log.popleft()
        floor = log[0].seq - 1 if log else self.seq
        if not floor <= last <= self.seq:
            return None
        return [e for e in log if e.seq > last and e.is_for(user_id)]

    def member(self, user_id: int) -> UserRef | None:
        """The user if they have a seat or watch the room."""
        record = self.record
        for user in (*record.players, *record.spectators):
            if user.id == user_id:
                return user
        return None

    def data(self) -> RoomData:
        """The room as a store saves it (for tests and for a full save)."""
        return RoomData(
            record=self.record,
            state=self.saved,
            entries=dict(self.entries),
            chat=[entry.encoded.decode("utf-8") for entry in self.chat],
            timers=dict(self.timers),
            present={u: sorted(p) for u, p in self.present.items()},
            groups={g: sorted(m) for g, m in self.groups.items()},
            seen=dict(self.seen),
            log=[entry.encode().decode("utf-8") for entry in self.log],
            seq=self.seq,
            version=self.version,
            token=self.token,
        )
