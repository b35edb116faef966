"""The built-in chat: room-wide or team messages, a backlog, and a game hook."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from gameserver.errors import GameServerError, InvalidInput
from gameserver.models import UserRef
from gameserver.routing import BaseRouter

if TYPE_CHECKING:
    from gameserver.gameroom import GameRoom
    from gameserver.helper import Helper

CHAT_MESSAGE = "CHAT_MESSAGE"
CHAT_HISTORY = "CHAT_HISTORY"


@attrs.frozen
class ChatMessage:
    """What a game's ``on_chat`` hook sees and may change (``attrs.evolve``)."""

    user: UserRef
    text: str
    ts: float
    team: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"user": self.user.to_json(), "text": self.text}
        if self.team is not None:
            data["team"] = self.team
        data["ts"] = self.ts
        return data


class ChatRouter(BaseRouter):
    """Handles ``CHAT_MESSAGE`` in every room, whatever its game."""

    def __init__(self, game: Any = None, *, max_length: int = 500) -> None:
        super().__init__(game)
        self.max_length = max_length

    def get_routes(self, routes=None):
        return super().get_routes({CHAT_MESSAGE: self.chat_message})

    async def chat_message(
        self, room: GameRoom, user: UserRef, helper: Helper, data: dict[str, Any]
    ) -> None:
        text, team = data.get("text"), data.get("team")
        if not isinstance(text, str) or not text.strip() or len(text) > self.max_length:
            raise InvalidInput(f"'text' must be 1 to {self.max_length} characters")
        if team is not None:
            await _check_team(helper, team, user)
        message = ChatMessage(user, text, helper.now(), team)
        changed = await helper.game.on_chat(room, user, helper, message)
        if changed is None:
            raise GameServerError(
                "the game does not allow this message now", code="chat_refused"
            )
        if changed.team is not None and changed.team != team:
            await _check_team(helper, changed.team, None)
        if changed.team is None:
            helper.broadcast(CHAT_MESSAGE, changed.to_json())
        else:
            helper.group_send(changed.team, CHAT_MESSAGE, changed.to_json())
        helper.keep_chat(changed.to_json())


async def _check_team(helper: Helper, team: object, user: UserRef | None) -> None:
    if not isinstance(team, str) or not team:
        raise InvalidInput("'team' must be a group name")
    if user is not None and user.id not in await helper.group_members(team):
        raise GameServerError(f"you are not in team {team!r}", code="not_in_team")
