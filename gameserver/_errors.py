"""Errors a client can cause.

Each carries a stable ``code`` for the wire (``ERROR`` messages, refusals) and
an HTTP ``status``, so the WebSocket and HTTP layers report the same failure
the same way.
"""

from __future__ import annotations

import math


class GameServerError(Exception):
    code = "error"
    status = 400

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class BadMessage(GameServerError):
    code = "bad_message"


class InvalidInput(GameServerError):
    code = "invalid"


class NotAuthenticated(GameServerError):
    code = "not_authenticated"
    status = 401


class InvalidToken(NotAuthenticated):
    code = "invalid_token"


class Forbidden(GameServerError):
    code = "forbidden"
    status = 403


class Banned(InvalidToken):
    """A banned user's token or log-in: refused like a bad token, but 403."""

    code = "banned"
    status = 403


class NotFound(GameServerError):
    code = "not_found"
    status = 404


class RoomNotFound(NotFound):
    code = "room_not_found"


class UsernameTaken(GameServerError):
    code = "username_taken"
    status = 409


class WrongPassword(Forbidden):
    code = "wrong_password"


class RoomFull(GameServerError):
    code = "room_full"
    status = 409


class GameStarted(GameServerError):
    code = "game_started"
    status = 409


class SpectatorsFull(GameServerError):
    code = "spectators_full"


class Seated(GameServerError):
    """A seated player asked to watch their own room."""

    code = "seated"


class Spectating(GameServerError):
    """A spectator sent a game message."""

    code = "spectator"


class NotInRoom(GameServerError):
    code = "not_in_room"
    status = 403


class TooManyRequests(GameServerError):
    """Over a rate: the HTTP answer says when to try again."""

    code = "rate_limited"
    status = 429

    def __init__(
        self, detail: str, *, retry_after: float, code: str | None = None
    ) -> None:
        super().__init__(detail, code=code)
        self.retry_after = retry_after

    @property
    def wait_seconds(self) -> int:
        """``retry_after`` as ``Retry-After`` and ``retry_after`` say it:
        whole seconds, at least one."""
        return max(1, math.ceil(self.retry_after))


class NotAGuest(GameServerError):
    code = "not_a_guest"
    status = 409


class UnknownType(GameServerError):
    code = "unknown_type"


class Unavailable(GameServerError):
    code = "unavailable"
    status = 503


class Busy(GameServerError):
    """A room has as many turns waiting as it may: refused now, not queued."""

    code = "busy"
    status = 503


class NotOwner(Exception):
    """This process does not own the room (any more): route the work again."""


def error_of(code: str, detail: str) -> GameServerError:
    """The error a room's refusal with ``code`` stands for, to report it again
    with its HTTP status (a quick join over HTTP); one of no known kind is
    the room failing (503)."""
    kinds: dict[str, type[GameServerError]] = {
        kind.code: kind
        for kind in (
            RoomFull,
            GameStarted,
            WrongPassword,
            RoomNotFound,
            Busy,
            Unavailable,
            InvalidInput,
        )
    }
    kind = kinds.get(code)
    if kind is None:
        return Unavailable(detail, code=code)
    return kind(detail)
