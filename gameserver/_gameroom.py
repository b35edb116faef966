"""The room a handler sees: the room's facts, its state document, its entries.

``state`` is one JSON document the handler changes in place; it is kept
after the handler succeeds and put back as it was if it fails. Named
entries hold what does not belong in one document (a question bank, a
deck, a replay), with the same all-or-nothing rule.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from gameserver._errors import GameServerError
from gameserver._models import RoomState, UserRef
from gameserver._wire.messages import dumps

if TYPE_CHECKING:
    from gameserver._engine.turns import Turn

MAX_KEY = 128


class StateTooLarge(GameServerError):
    code = "state_too_large"


def encode_json(value: Any, what: str, limit: int) -> str:
    """Encode for storage, naming the culprit if it is not JSON or too big."""
    try:
        text = dumps(value).decode("utf-8")
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be JSON-serialisable: {e}") from None
    if len(text) > limit:
        raise StateTooLarge(f"{what} is {len(text)} bytes, over the {limit} byte limit")
    return text


class GameRoom:
    """A view of the room for one turn: reads see the turn's own changes."""

    __slots__ = ("_limit", "_turn")

    def __init__(self, turn: Turn, limit: int) -> None:
        self._turn = turn
        self._limit = limit

    @property
    def id(self) -> int:
        return self._turn.room.id

    @property
    def name(self) -> str:
        return self._turn.room.record.name

    @property
    def game(self) -> str:
        """The game's name."""
        return self._turn.room.record.game

    @property
    def owner(self) -> UserRef:
        return self._turn.room.record.owner

    @property
    def max_players(self) -> int:
        return self._turn.room.record.max_players

    @property
    def players(self) -> tuple[UserRef, ...]:
        """The seated users."""
        return self._turn.players_now()

    @property
    def spectators(self) -> frozenset[int]:
        """The ids of the users watching the room without a seat."""
        return frozenset(s.id for s in self._turn.spectators_now())

    @property
    def status(self) -> RoomState:
        """The lifecycle (the API's ``state`` field): waiting, in_game, finished."""
        return self._turn.status_now()

    @property
    def state(self) -> Any:
        """The game's own JSON document."""
        turn = self._turn
        if turn.expired:
            raise GameServerError("this turn timed out", code="timeout")
        turn.touched = True
        return turn.room.state

    @state.setter
    def state(self, value: Any) -> None:
        turn = self._turn
        if turn.expired:
            raise GameServerError("this turn timed out", code="timeout")
        turn.touched = True
        turn.room.state = value

    def has_player(self, user: UserRef | int) -> bool:
        user_id = user if isinstance(user, int) else user.id
        return self._turn.has_player(user_id)

    async def get(self, key: str, default: Any = None) -> Any:
        _check_key(key)
        raw = self._turn.entry(key)
        return default if raw is None else json.loads(raw)

    def set(self, key: str, value: Any) -> None:
        _check_key(key)
        self._turn.set_entry(key, encode_json(value, f"entry {key!r}", self._limit))

    def delete(self, key: str) -> None:
        _check_key(key)
        self._turn.set_entry(key, None)


def _check_key(key: object) -> None:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY:
        raise TypeError(f"an entry key is a string of 1 to {MAX_KEY} characters")
