"""The built-in chat: room-wide or team messages, a backlog, and a game hook."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from gameserver._engine.drive import Pending, settle
from gameserver._engine.room import ChatEntry
from gameserver._errors import GameServerError, InvalidInput
from gameserver._models import UserRef
from gameserver._routers import BaseRouter, Handler
from gameserver._wire.messages import CHAT_MESSAGE, Frame

if TYPE_CHECKING:
    from gameserver._gameroom import GameRoom
    from gameserver._helper import Helper


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

    def get_routes(self, routes: Any = None) -> dict[str, Handler]:
        return super().get_routes({CHAT_MESSAGE: self.chat_message})

    def chat_message(
        self, room: GameRoom, user: UserRef, helper: Helper, data: dict[str, Any]
    ) -> Any:
        text, team = data.get("text"), data.get("team")
        if not isinstance(text, str) or not text.strip() or len(text) > self.max_length:
            raise InvalidInput(f"'text' must be 1 to {self.max_length} characters")
        if team is not None:
            _check_team(helper, team, user)
        message = ChatMessage(user, text, helper.now(), team)
        changed = settle(helper.game.on_chat(room, user, helper, message))
        if isinstance(changed, Pending):
            return changed.deferred.addCallback(_send, helper, team)
        _send(changed, helper, team)
        return None


def _send(changed: ChatMessage | None, helper: Helper, team: object) -> None:
    if changed is None:
        raise GameServerError(
            "the game does not allow this message now", code="chat_refused"
        )
    if changed.team is not None and changed.team != team:
        _check_team(helper, changed.team, None)
    turn = helper._turn
    data = changed.to_json()
    frame = Frame.build(CHAT_MESSAGE, data, turn.room.id)
    if changed.team is None:
        turn.broadcast(frame)
    else:
        turn.to_present(frame, turn.members(changed.team))
    assert frame.data is not None
    turn.chat.append(ChatEntry(data, frame.data))


def _check_team(helper: Helper, team: object, user: UserRef | None) -> None:
    if not isinstance(team, str) or not team:
        raise InvalidInput("'team' must be a group name")
    if user is not None and user.id not in helper.group_members(team):
        raise GameServerError(f"you are not in team {team!r}", code="not_in_team")
