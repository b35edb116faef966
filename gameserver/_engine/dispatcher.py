"""What each message type does where the client is: the prototype's base consumer.

A session hands every decoded envelope here, in order. Validation is
answered here; everything about a room becomes a piece of ``Work`` for the
room's owner (this process or another), which answers it. A join has its
password checked here first, so hashing never holds up the room; a quick
join has its room chosen here (``matchmaking``). The request types
(``VALIDATE_CONNECTION``, ``JOIN_ROOM``, ``QUICK_JOIN``, ``LEAVE_ROOM``)
always get a reply of the same type with ``is_successful``; any other
failure is an ``ERROR`` message. Neither closes the socket, except a
failed validation.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from gameserver._accounts.accounts import Accounts
from gameserver._engine.drive import Pending, settle
from gameserver._engine.matchmaking import Matchmaker
from gameserver._engine.room import JOIN, LEAVE, MESSAGE, Reply, Work
from gameserver._engine.rooms import Rooms
from gameserver._engine.sockets import LocalSockets
from gameserver._engine.turns import Engine
from gameserver._errors import (
    BadMessage,
    GameServerError,
    InvalidInput,
    InvalidToken,
    NotAuthenticated,
    TooManyRequests,
    Unavailable,
    UnknownType,
)
from gameserver._interfaces import IHosting
from gameserver._settings import Settings
from gameserver._wire import messages
from gameserver._wire.messages import Envelope
from gameserver._wire.session import CLOSE_UNAUTHORIZED, Session

#: Close code when the server cannot take the socket now (its store is down).
CLOSE_TRY_AGAIN_LATER = 1013
#: Close code for a user over the per-user connection limit.
CLOSE_TOO_MANY_CONNECTIONS = 4008

log = Logger()


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
        hosting: IHosting,
        sockets: LocalSockets,
        engine: Engine,
        matchmaker: Matchmaker,
    ) -> None:
        self._settings = settings
        self._matchmaker = matchmaker
        self._accounts = accounts
        self._rooms = rooms
        self._hosting = hosting
        self._sockets = sockets
        self._engine = engine
        self._process = engine.process_id
        #: The process is stopping: every message is refused (``unavailable``),
        #: so that the turns in flight can finish before the sockets close.
        self.draining = False
        received = engine.counters.received
        self._received, self._other = received.cells, received.other

    def dispatch(self, session: Session, envelope: Envelope) -> Deferred[None] | None:
        """Act on one message; a ``Deferred`` while the socket must wait."""
        type_ = envelope.type
        # A fixed set of labels: a made-up type is ``other``, never a new one.
        self._received.get(type_, self._other)[0] += 1
        try:
            if self.draining:
                raise Unavailable("this server is restarting: reconnect")
            if type_ == messages.VALIDATE_CONNECTION:
                return self._guard(session, envelope, self._validate(session, envelope))
            user = session.user
            if user is None:
                raise NotAuthenticated("send VALIDATE_CONNECTION with a token first")
            if type_ == messages.JOIN_ROOM:
                return self._guard(session, envelope, self._join(session, envelope))
            if type_ == messages.QUICK_JOIN:
                work = self._matchmaker.quick_join(session, envelope)
                return self._guard(session, envelope, work)
            room_id = envelope.room_id
            if type_ == messages.LEAVE_ROOM:
                if room_id is None:
                    error = BadMessage("LEAVE_ROOM needs a 'room_id'")
                    session.send(_refusal(type_, None, error))
                    return None
                kind = LEAVE
            elif room_id is None:
                if self._engine.is_known(type_):
                    raise BadMessage(f"{type_} needs a 'room_id'")
                raise UnknownType(f"unknown message type {type_!r}")
            else:
                kind = MESSAGE
            reply = Reply(self._process, session.id)
            self._hosting.submit(Work(kind, room_id, user, reply, type_, envelope.data))
        except GameServerError as e:
            session.send(_error(e, envelope))
        return None

    def _guard(
        self, session: Session, envelope: Envelope, work: Any
    ) -> Deferred[None] | None:
        """Run ``work`` (a coroutine); a ``Deferred`` only if it must wait."""

        def failed(failure: Failure) -> None:
            error = failure.value
            if isinstance(error, GameServerError):
                session.send(_error(error, envelope))
                return
            log.failure(
                "handling {type} failed",
                failure,
                type=envelope.type,
                room_id=envelope.room_id,
                user_id=None if session.user is None else session.user.id,
                process=self._process,
            )
            session.send(
                messages.error(
                    "internal_error",
                    "the server failed to handle this message",
                    room_id=envelope.room_id,
                    request_type=envelope.type,
                )
            )

        try:
            outcome = settle(work)
        except Exception:
            failed(Failure())
            return None
        if isinstance(outcome, Pending):
            return outcome.deferred.addErrback(failed)
        return None

    def connection_closed(self, session: Session) -> None:
        """Forget a socket; if it was its user's last here, tell the rooms."""
        user = session.user
        if user is not None and self._sockets.remove(session):
            self._hosting.user_disconnected(user)

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
        if not session.open:
            return
        limit = self._settings.max_connections_per_user
        if self._sockets.count(user.id) >= limit:
            over = GameServerError(
                f"at most {limit} connections per user", code="too_many_connections"
            )
            session.send(_refusal(messages.VALIDATE_CONNECTION, None, over))
            session.close(CLOSE_TOO_MANY_CONNECTIONS, over.code)
            return
        session.authenticated(user)
        if self._sockets.add(session):
            try:
                await self._hosting.user_connected(user)
            except GameServerError as e:
                self._sockets.remove(session)
                session.send(_refusal(messages.VALIDATE_CONNECTION, None, e))
                session.close(CLOSE_TRY_AGAIN_LATER, e.code)
                return
        if not session.open:
            self.connection_closed(session)
            return
        session.send(
            _reply(
                messages.VALIDATE_CONNECTION,
                None,
                is_successful=True,
                user=user.to_json(),
                server_time=self._engine.clock.seconds(),
            )
        )

    async def _join(self, session: Session, envelope: Envelope) -> None:
        room_id = envelope.room_id
        user = session.user
        assert user is not None
        try:
            if room_id is None:
                raise BadMessage("JOIN_ROOM needs a 'room_id'")
            data = envelope.data
            spectate = data.get("spectate", False)
            if type(spectate) is not bool:
                raise InvalidInput("'spectate' must be true or false")
            resume = data.get("resume")
            if resume is not None and (type(resume) is not int or resume < 0):
                raise InvalidInput("'resume' must be the seq of the last message")
            await self._rooms.check_join(
                room_id, user, data.get("password"), spectate=spectate
            )
        except TooManyRequests as e:
            # Throttled guesses at the room's password: an ERROR with the
            # wait, as over HTTP, rather than a refusal to try again at once.
            session.send(_error(e, envelope))
            return
        except GameServerError as e:
            session.send(_refusal(messages.JOIN_ROOM, room_id, e))
            return
        if self._sockets.gone(session):
            return  # while its password was checked
        self._hosting.submit(
            Work(
                JOIN,
                room_id,
                user,
                Reply(self._process, session.id),
                messages.JOIN_ROOM,
                envelope.data,
                processes=(self._process,),
                password_ok=True,
            )
        )


def _error(e: GameServerError, envelope: Envelope) -> dict[str, Any]:
    error = messages.error(
        e.code, e.detail, room_id=envelope.room_id, request_type=envelope.type
    )
    if isinstance(e, TooManyRequests):
        error["data"]["retry_after"] = e.wait_seconds
    return error
