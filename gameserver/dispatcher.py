"""What each message type does: the prototype's base consumer.

The protocol hands every decoded envelope here, one at a time per socket.
The request types (``VALIDATE_CONNECTION``, ``JOIN_ROOM``, ``LEAVE_ROOM``)
always get a reply of the same type with ``is_successful``; any other
failure is an ``ERROR`` message. Neither closes the socket, except a failed
validation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from twisted.logger import Logger

from gameserver import messages
from gameserver.accounts import Accounts
from gameserver.errors import (
    BadMessage,
    GameServerError,
    InvalidToken,
    NotAuthenticated,
    NotInRoom,
    UnknownType,
)
from gameserver.interfaces import IGroupLayer
from gameserver.messages import Envelope
from gameserver.models import Room, UserRef
from gameserver.rooms import Rooms
from gameserver.settings import Settings
from gameserver.turns import RoomTurns

#: Close code for a socket that failed or skipped authentication.
CLOSE_UNAUTHORIZED = 4001
#: Close code when the server cannot take the socket now (its store is down).
CLOSE_TRY_AGAIN_LATER = 1013
#: Close code for a user over the per-user connection limit.
CLOSE_TOO_MANY_CONNECTIONS = 4008

log = Logger()


class Session(Protocol):
    """What the dispatcher needs of a socket."""

    user: UserRef | None

    def send(self, message: dict[str, Any]) -> None: ...

    def authenticated(self, user: UserRef) -> None: ...

    def close(self, code: int, reason: str) -> None: ...


Handler = Callable[[Session, Envelope], Awaitable[None]]


def _reply(type_: str, room_id: int | None, **data: Any) -> dict[str, Any]:
    return messages.message(type_, data, room_id)


def _refusal(type_: str, room_id: int | None, e: GameServerError) -> dict[str, Any]:
    return _reply(type_, room_id, is_successful=False, error=e.code, detail=e.detail)


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        accounts: Accounts,
        rooms: Rooms,
        groups: IGroupLayer,
        turns: RoomTurns,
    ) -> None:
        self._settings = settings
        self._accounts = accounts
        self._rooms = rooms
        self._groups = groups
        self._turns = turns
        self._handlers: dict[str, Handler] = {
            messages.JOIN_ROOM: self._join_room,
            messages.LEAVE_ROOM: self._leave_room,
        }

    async def dispatch(self, session: Session, envelope: Envelope) -> None:
        try:
            if envelope.type == messages.VALIDATE_CONNECTION:
                await self._validate(session, envelope)
                return
            if session.user is None:
                raise NotAuthenticated("send VALIDATE_CONNECTION with a token first")
            handler = self._handlers.get(envelope.type, self._game_message)
            await handler(session, envelope)
        except GameServerError as e:
            session.send(
                messages.error(
                    e.code,
                    e.detail,
                    room_id=envelope.room_id,
                    request_type=envelope.type,
                )
            )
        except Exception:
            log.failure("handling {type} failed", type=envelope.type)
            session.send(
                messages.error(
                    "internal_error",
                    "the server failed to handle this message",
                    room_id=envelope.room_id,
                    request_type=envelope.type,
                )
            )

    def connection_closed(self, session: Session) -> bool:
        """Forget a socket; whether it was its user's last one here."""
        return session.user is not None and self._groups.disconnect(session)

    async def user_gone(self, user: UserRef) -> None:
        """The user's last socket here closed: leave rooms unless online elsewhere."""
        try:
            if not await self._groups.user_online(user.id):
                await self._rooms.user_gone(user)
        except GameServerError as e:
            log.warn(
                "{user} left, but their rooms were not: {detail}",
                user=user.username,
                detail=e.detail,
            )

    async def connection_lost(self, session: Session) -> None:
        if self.connection_closed(session):
            await self.user_gone(session.user)

    async def _validate(self, session: Session, envelope: Envelope) -> None:
        if session.user is not None:
            raise GameServerError(
                "this connection is already validated", code="already_validated"
            )
        try:
            user = await self._accounts.authenticate(envelope.data.get("token"))
        except InvalidToken as e:
            session.send(_refusal(messages.VALIDATE_CONNECTION, None, e))
            session.close(CLOSE_UNAUTHORIZED, e.code)
            return
        if (
            self._groups.connection_count(user.id)
            >= self._settings.max_connections_per_user
        ):
            e = GameServerError(
                f"at most {self._settings.max_connections_per_user} connections per user",
                code="too_many_connections",
            )
            session.send(_refusal(messages.VALIDATE_CONNECTION, None, e))
            session.close(CLOSE_TOO_MANY_CONNECTIONS, e.code)
            return
        session.authenticated(user)
        try:
            await self._groups.connect(session)
        except GameServerError as e:
            session.send(_refusal(messages.VALIDATE_CONNECTION, None, e))
            session.close(CLOSE_TRY_AGAIN_LATER, e.code)
            return
        session.send(
            _reply(
                messages.VALIDATE_CONNECTION,
                None,
                is_successful=True,
                user=user.to_json(),
                server_time=self._turns.clock.seconds(),
            )
        )

    async def _join_room(self, session: Session, envelope: Envelope) -> None:
        def reply(room: Room) -> None:
            session.send(
                _reply(
                    messages.JOIN_ROOM, room.id, is_successful=True, room=room.to_json()
                )
            )

        try:
            room_id = _room_id(envelope)
            await self._rooms.join(
                room_id, session.user, envelope.data.get("password"), reply
            )
        except GameServerError as e:
            session.send(_refusal(messages.JOIN_ROOM, envelope.room_id, e))

    async def _leave_room(self, session: Session, envelope: Envelope) -> None:
        try:
            room_id = _room_id(envelope)
            await self._rooms.leave(room_id, session.user)
        except GameServerError as e:
            session.send(_refusal(messages.LEAVE_ROOM, envelope.room_id, e))
            return
        session.send(_reply(messages.LEAVE_ROOM, room_id, is_successful=True))

    async def _game_message(self, session: Session, envelope: Envelope) -> None:
        if envelope.room_id is None:
            if self._turns.is_known(envelope.type):
                raise BadMessage(f"{envelope.type} needs a 'room_id'")
            raise UnknownType(f"unknown message type {envelope.type!r}")
        if not await self._rooms.is_present(envelope.room_id, session.user.id):
            raise NotInRoom(
                f"you are not in room {envelope.room_id}; send JOIN_ROOM first"
            )
        await self._turns.handle(
            envelope.room_id, session.user, envelope.type, envelope.data
        )


def _room_id(envelope: Envelope) -> int:
    if envelope.room_id is None:
        raise BadMessage(f"{envelope.type} needs a 'room_id'")
    return envelope.room_id
