"""One client's connection, whatever carries it: the protocol with no I/O.

A ``Session`` takes whole messages (``received``) and writes whole frames
to its ``SessionTransport``; the Autobahn protocol is a thin adapter around
it, and ``gameserver.testing`` drives it with no socket at all. It keeps
the per-socket rules: the rate limit and flood close, the validation
deadline, and the order of the socket's messages (one that needs I/O
before it reaches its room, such as a join with a password, holds the
socket's later messages until it has).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from gameserver._errors import BadMessage
from gameserver._interfaces import IConnection
from gameserver._models import UserRef
from gameserver._settings import Settings
from gameserver._stats import Counters
from gameserver._wire import messages
from gameserver._wire.formats import JSON, WireFormat
from gameserver._wire.limits import Deadlines, TokenBucket
from gameserver._wire.messages import Frame

#: Close code for a socket that failed or skipped authentication.
CLOSE_UNAUTHORIZED = 4001
#: Close code for the sockets of a user an admin kicked or banned.
CLOSE_KICKED = 4003
#: Close code for a socket that keeps sending past its rate limit.
CLOSE_POLICY_VIOLATION = 1008
#: Seconds over which ``flood_limit`` refused messages close a socket.
FLOOD_WINDOW = 10.0

log = Logger()


class Dispatch(Protocol):
    """What a session hands its messages to (the engine's dispatcher)."""

    def dispatch(
        self, session: Session, envelope: messages.Envelope
    ) -> Deferred[Any] | None:
        """Act on one message; a ``Deferred`` if the socket must wait for it."""

    def connection_closed(self, session: Session) -> None:
        """The socket is gone."""


class SessionTransport(Protocol):
    """What a session needs of whatever carries it."""

    def write(self, data: bytes) -> None:
        """Send one whole WebSocket frame, as built."""

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake with this code."""


@implementer(IConnection)
class Session:
    __slots__ = (
        "__provides__",
        "_binary",
        "_bucket",
        "_counters",
        "_deadlines",
        "_dispatcher",
        "_flooded",
        "_held",
        "_limit",
        "_on_validated",
        "_refused_in_a_row",
        "_strikes",
        "_transport",
        "_waiting",
        "format",
        "id",
        "open",
        "peer",
        "user",
    )

    def __init__(
        self,
        transport: SessionTransport,
        dispatcher: Dispatch,
        settings: Settings,
        clock: IReactorTime,
        connection_id: int,
        peer: str = "",
        deadlines: Deadlines | None = None,
        wire_format: WireFormat = JSON,
        counters: Counters | None = None,
        on_validated: Callable[[], object] | None = None,
    ) -> None:
        """``deadlines``: the validation timeouts, shared by a server's sessions;
        ``wire_format``: what the client chose in the handshake; ``counters``:
        the server's, for its metrics; ``on_validated``: called once, when the
        socket is validated."""
        self._on_validated = on_validated
        self.id = connection_id
        self.peer = peer
        self.format = wire_format
        self._binary = wire_format.binary
        self._limit = settings.max_message_size
        self.user: UserRef | None = None
        self.open = True
        self._transport = transport
        self._dispatcher = dispatcher
        self._counters = Counters() if counters is None else counters
        self._bucket = TokenBucket(settings.message_rate, settings.message_burst, clock)
        # Refusals a socket may collect in a burst before it is closed; they
        # drain slowly, so a sustained flood is closed even between tokens.
        self._strikes = TokenBucket(
            settings.flood_limit / FLOOD_WINDOW, settings.flood_limit, clock
        )
        self._refused_in_a_row = 0
        self._flooded = False
        #: The message being handled that waits on I/O, and those after it.
        self._waiting: Deferred[Any] | None = None
        self._held: deque[bytes] | None = None
        if deadlines is None:
            deadlines = Deadlines(clock, settings.validate_timeout)
        self._deadlines: Deadlines | None = deadlines
        deadlines.start(self, self._validation_timed_out)

    # From the transport

    def received(self, payload: bytes, is_binary: bool) -> None:
        """One whole message from the client."""
        if not self.open or not self._admit():
            return
        if is_binary != self._binary:
            self.send(messages.error("bad_message", self.format.mismatch()))
            return
        if self._waiting is not None:
            if self._held is None:
                self._held = deque()
            self._held.append(payload)
            return
        self._handle(payload)

    @property
    def waiting(self) -> bool:
        """Whether a message is being handled that waits on I/O."""
        return self._waiting is not None

    def ping_admitted(self) -> bool:
        """Each ping costs a pong: pings count against the same budget."""
        return self.open and self._admit()

    def lost(self) -> None:
        """The connection is closed, whoever closed it."""
        if not self.open:
            return
        self.open = False
        self._held = None
        if self._deadlines is not None:
            self._deadlines.cancel(self)
            self._deadlines = None
        self._dispatcher.connection_closed(self)

    # IConnection

    def send(self, message: dict[str, Any]) -> None:
        """A message for this socket alone (a reply, a refusal): not the hot
        path, which hands frames to ``send_frame``."""
        counters = self._counters
        type_, data = message["type"], message["data"]
        if type_ == messages.ERROR:
            counters.refused(type_, data["code"])
        elif data.get("is_successful") is False:
            counters.refused(type_, data["error"])
        else:
            counters.sent.count(type_)
        counters.deliveries += 1
        self.send_frame(Frame.of(messages.dumps(message), type_))

    def send_frame(self, frame: Frame) -> None:
        if self.open:
            self._transport.write(frame.binary if self._binary else frame.wire)

    def authenticated(self, user: UserRef) -> None:
        self.user = user
        hook = self._on_validated
        if hook is not None:
            self._on_validated = None
            hook()
        if self._deadlines is not None:
            self._deadlines.cancel(self)
            self._deadlines = None

    def close(self, code: int, reason: str) -> None:
        if self.open:
            self._transport.close(code, reason)

    # Handling

    def _admit(self) -> bool:
        """Spend a token, or count a refusal; close a socket that keeps flooding."""
        if self._bucket.take():
            self._refused_in_a_row = 0
            return True
        self._refused_in_a_row += 1
        self._counters.rate_limited += 1
        if not self._strikes.take():
            if not self._flooded:
                self._flooded = True
                self._counters.flood_closes += 1
            self.close(CLOSE_POLICY_VIOLATION, "message flood")
        elif self._refused_in_a_row == 1:
            self.send(messages.error("rate_limited", "too many messages: slow down"))
        return False

    def _handle(self, payload: bytes) -> None:
        try:
            envelope = self.format.decode(payload, self._limit)
        except BadMessage as e:
            self.send(messages.error(e.code, e.detail))
            return
        waiting = self._dispatcher.dispatch(self, envelope)
        if waiting is not None:
            self._waiting = waiting
            waiting.addErrback(
                lambda f: log.failure(
                    "handling a message of {peer} failed",
                    f,
                    peer=self.peer,
                    user_id=None if self.user is None else self.user.id,
                    room_id=envelope.room_id,
                )
            ).addBoth(self._handled)

    def _handled(self, _: object) -> None:
        self._waiting = None
        held = self._held
        while held and self._waiting is None and self.open:
            self._handle(held.popleft())
        if not held:
            self._held = None

    def _validation_timed_out(self) -> None:
        self._deadlines = None
        self.close(CLOSE_UNAUTHORIZED, "not validated in time")
