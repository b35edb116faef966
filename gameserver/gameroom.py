"""The room a handler sees: the room's facts, its state document, its entries.

``state`` is one JSON document the handler changes in place; it is saved
after the handler succeeds and discarded if it fails. Named entries hold
what does not belong in one document (a question bank, a deck, a replay):
they are read on demand and written with the same all-or-nothing rule.
"""

from __future__ import annotations

import json
from typing import Any

from gameserver.errors import GameServerError
from gameserver.interfaces import IStore
from gameserver.messages import dumps
from gameserver.models import Room, RoomState, UserRef

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
    def __init__(
        self, room: Room, state: dict[str, Any], store: IStore, limit: int
    ) -> None:
        self.id = room.id
        self.name = room.name
        self.game = room.game
        self.owner = room.owner
        self.max_players = room.max_players
        self.players: tuple[UserRef, ...] = room.players
        #: The lifecycle (the API's ``state`` field): waiting, in_game, finished.
        self.status: RoomState = room.state
        #: The game's own JSON document.
        self.state = state
        self._store = store
        self._limit = limit
        self.pending_entries: dict[str, str | None] = {}

    def has_player(self, user: UserRef | int) -> bool:
        user_id = user if isinstance(user, int) else user.id
        return any(p.id == user_id for p in self.players)

    async def get(self, key: str, default: Any = None) -> Any:
        _check_key(key)
        if key in self.pending_entries:
            raw = self.pending_entries[key]
        else:
            raw = await self._store.get_entry(self.id, key)
        return default if raw is None else json.loads(raw)

    def set(self, key: str, value: Any) -> None:
        _check_key(key)
        self.pending_entries[key] = encode_json(value, f"entry {key!r}", self._limit)

    def delete(self, key: str) -> None:
        _check_key(key)
        self.pending_entries[key] = None


def _check_key(key: object) -> None:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY:
        raise TypeError(f"an entry key is a string of 1 to {MAX_KEY} characters")
