"""Plain data shared by the stores, the engine and the wire."""

from __future__ import annotations

import enum
from typing import Any

import attrs


class RoomState(enum.StrEnum):
    WAITING = "waiting"
    IN_GAME = "in_game"
    FINISHED = "finished"


@attrs.frozen
class UserRef:
    """A user as others see them: what rooms and messages carry."""

    id: int
    username: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "username": self.username}


@attrs.frozen
class UserRecord:
    """A stored account; ``password_hash`` never leaves the server."""

    id: int
    username: str
    password_hash: str = attrs.field(repr=False)
    #: A guest account's end (seconds, on the server's clock), when its
    #: refresh token expires; ``None`` for an account with a password.
    guest_until: float | None = None
    #: Marked an admin in the store (``gameserver-admin grant``); ``--admins``
    #: names more, at start.
    admin: bool = False
    #: Refused at every log-in and use of a token until unbanned.
    banned: bool = False

    @property
    def ref(self) -> UserRef:
        return UserRef(self.id, self.username)


@attrs.frozen
class Room:
    """A room's record: what the HTTP API lists and a join checks first."""

    id: int
    name: str
    game: str
    owner: UserRef
    max_players: int
    password_hash: str | None = attrs.field(default=None, repr=False)
    players: tuple[UserRef, ...] = ()
    state: RoomState = RoomState.WAITING
    #: The users watching the room without a seat.
    spectators: tuple[UserRef, ...] = ()
    #: Seats held for users who quick-joined over HTTP and have not joined
    #: on a socket yet: ``(user id, until)``, on the owner's clock.
    reserved: tuple[tuple[int, float], ...] = ()
    #: When it was made (seconds, on the server's clock); 0 if unknown (a
    #: record made before rooms kept it).
    created: float = 0.0

    @property
    def has_password(self) -> bool:
        return self.password_hash is not None

    def has_player(self, user_id: int) -> bool:
        return any(p.id == user_id for p in self.players)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "game": self.game,
            "owner": self.owner.to_json(),
            "has_password": self.has_password,
            "players": [p.to_json() for p in self.players],
            "max_players": self.max_players,
            "state": self.state.value,
            "spectators": len(self.spectators),
        }


@attrs.frozen
class Page:
    """One page of a listing, with the total so clients can page."""

    count: int
    items: tuple[Any, ...]


@attrs.frozen
class TimerSpec:
    """A stored timed event: which method of the game to call, when, with what.

    It names the method rather than holding it, so that any process can
    fire it after the one that set it is gone.
    """

    id: str
    name: str
    deadline: float
    router: str
    method: str
    args: tuple[Any, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "deadline": self.deadline,
            "router": self.router,
            "method": self.method,
            "args": list(self.args),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TimerSpec:
        return cls(
            data["id"],
            data["name"],
            data["deadline"],
            data["router"],
            data["method"],
            tuple(data["args"]),
        )


@attrs.define
class RoomData:
    """Everything a room's owner holds, as a store saves and loads it.

    Texts are JSON. ``present`` maps each present user to the processes
    holding their sockets; ``seen`` maps each process that forwarded work
    here to the last of its requests that was committed, so that work
    sent again after a failover is not done twice.
    """

    record: Room
    state: str | None = None
    entries: dict[str, str] = attrs.Factory(dict)
    chat: list[str] = attrs.Factory(list)
    timers: dict[str, TimerSpec] = attrs.Factory(dict)
    present: dict[int, list[str]] = attrs.Factory(dict)
    groups: dict[str, list[int]] = attrs.Factory(dict)
    seen: dict[str, int] = attrs.Factory(dict)
    #: The room's last messages, encoded as ``Logged.encode`` does, and the
    #: number of its last message (kept when the log has expired).
    log: list[str] = attrs.Factory(list)
    seq: int = 0
    version: int = 0
    #: The fencing token of the lease this data was loaded under.
    token: int = 0


@attrs.frozen
class RoomView:
    """A room as the admin API shows it: its record and live figures, from
    its owner's memory or from what the owner saved."""

    record: Room
    #: The process that owns it now; ``None`` if none does.
    process: str | None
    #: The users present (receiving its messages) now.
    present: frozenset[int]
    #: Messages it sent its users in the last minute.
    messages_per_minute: float
    #: With the data (one room only): its state document and entries (JSON
    #: texts; ``state`` ``None`` before its first save) and its chat backlog.
    state: str | None = None
    entries: dict[str, str] | None = None
    chat: tuple[str, ...] | None = None
