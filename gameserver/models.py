"""Plain data shared by the store, the services and the wire."""

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

    @property
    def ref(self) -> UserRef:
        return UserRef(self.id, self.username)


@attrs.frozen
class Room:
    id: int
    name: str
    game: str
    owner: UserRef
    max_players: int
    password_hash: str | None = attrs.field(default=None, repr=False)
    players: tuple[UserRef, ...] = ()
    state: RoomState = RoomState.WAITING

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
class Commit:
    """Everything one turn changes in a room, written at once."""

    state: str | None = None
    entries: dict[str, str | None] = attrs.Factory(dict)
    chat: list[str] = attrs.Factory(list)
    chat_keep: int = 50
    status: RoomState | None = None
    #: Drop every timer of the room first (the game finished).
    clear_timers: bool = False
    #: Then set (a spec) or delete (``None``) timers by name.
    timers: dict[str, TimerSpec | None] = attrs.Factory(dict)
    #: The room lock's token the turn ran under: a store that keeps locks
    #: refuses the commit if the lock has passed to someone else meanwhile.
    lock: Any = None
