"""The WebSocket endpoint: framing, limits and ordering, on Autobahn.

Autobahn's defaults suit a trusted peer, not the public internet, so the
factory sets every limit deliberately (size, heartbeat, origins, connection
count). What Autobahn does not offer is added here: per-socket rate
limiting, a cap on bytes queued for a client that does not read, the
validation deadline, and one-at-a-time handling of a socket's messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from gameserver import messages
from gameserver.dispatcher import CLOSE_UNAUTHORIZED
from gameserver.errors import BadMessage
from gameserver.interfaces import IConnection
from gameserver.messages import Frame
from gameserver.models import UserRef
from gameserver.origins import OriginPolicy
from gameserver.ratelimit import TokenBucket
from gameserver.settings import Settings

if TYPE_CHECKING:
    from gameserver.dispatcher import Dispatcher

#: Close code for a socket that keeps sending past its rate limit.
CLOSE_POLICY_VIOLATION = 1008
#: Seconds over which ``flood_limit`` refused messages close a socket.
FLOOD_WINDOW = 10.0
_MAX_REASON_BYTES = 120

log = Logger()


@implementer(IPushProducer)
class OutboundWatch:
    """Counts what is queued for a socket while its peer is not reading.

    Registered as the transport's streaming producer, it is paused once the
    transport buffers more than it can send; every byte written while
    paused stays in memory, so past ``limit`` of them the client is cut off.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.queued = 0
        self.paused = False

    def pauseProducing(self) -> None:
        # Twisted calls this again on every write while the buffer is full.
        if not self.paused:
            self.paused = True
            self.queued = 0

    def resumeProducing(self) -> None:
        self.paused = False
        self.queued = 0

    def stopProducing(self) -> None:
        self.paused = True

    def admit(self, size: int) -> bool:
        if self.paused:
            self.queued += size
            return self.queued <= self.limit
        return True


@implementer(IConnection)
class GameServerProtocol(WebSocketServerProtocol):
    factory: GameServerFactory
    user: UserRef | None = None
    _queue: Deferred[None] | None = None
    _outbound: OutboundWatch | None = None
    _open = False

    def onOpen(self) -> None:
        settings = self.factory.settings
        no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if no_delay is not None:
            no_delay(True)
        self._outbound = OutboundWatch(settings.max_outbound_buffer)
        _take_over_producer(self.transport, self._outbound)
        self._bucket = TokenBucket(
            settings.message_rate, settings.message_burst, self.factory.clock
        )
        self._refused_in_a_row = 0
        # Refusals a socket may collect in a burst before it is closed; they
        # drain slowly, so a sustained flood is closed even between tokens.
        self._strikes = TokenBucket(
            settings.flood_limit / FLOOD_WINDOW,
            settings.flood_limit,
            self.factory.clock,
        )
        self._queue = succeed(None)
        self._open = True
        self._deadline: IDelayedCall | None = self.factory.clock.callLater(
            settings.validate_timeout, self._validation_timed_out
        )

    def _validation_timed_out(self) -> None:
        self._deadline = None
        self.close(CLOSE_UNAUTHORIZED, "not validated in time")

    def authenticated(self, user: UserRef) -> None:
        self.user = user
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not self._open or not self._admit():
            return
        if isBinary:
            self.send(messages.error("bad_message", "binary frames are not supported"))
            return
        self._enqueue(self._handle, payload)

    def onPing(self, payload: bytes) -> None:
        # Each ping costs a pong: pings count against the same budget.
        if self._open and self._admit():
            super().onPing(payload)

    def _admit(self) -> bool:
        """Spend a token, or count a refusal; close a socket that keeps flooding."""
        if self._bucket.take():
            self._refused_in_a_row = 0
            return True
        self._refused_in_a_row += 1
        if not self._strikes.take():
            self.close(CLOSE_POLICY_VIOLATION, "message flood")
        elif self._refused_in_a_row == 1:
            self.send(messages.error("rate_limited", "too many messages: slow down"))
        return False

    def _enqueue(self, fn, *args) -> None:
        """Run ``fn`` after everything queued before it has finished."""
        self._queue.addCallback(lambda _: ensureDeferred(fn(*args))).addErrback(
            lambda f: log.failure(
                "handling a message of {peer} failed", f, peer=self.peer
            )
        )

    async def _handle(self, payload: bytes) -> None:
        if not self._open:
            return
        try:
            envelope = messages.decode(payload)
        except BadMessage as e:
            self.send(messages.error(e.code, e.detail))
            return
        await self.factory.dispatcher.dispatch(self, envelope)

    def send(self, message: dict[str, Any]) -> None:
        self.send_frame(Frame.of(messages.dumps(message)))

    def send_frame(self, frame: Frame) -> None:
        if self._open and self.state == self.STATE_OPEN:
            self.sendPreparedMessage(frame.prepared)

    def sendData(
        self, data: bytes, sync: bool = False, chopsize: int | None = None
    ) -> None:
        """Every outbound byte (messages, pongs, closes) passes the buffer cap."""
        if self._outbound is not None and not self._outbound.admit(len(data)):
            if self._open:
                log.warn(
                    "dropping {peer}: over {limit} bytes queued for a client not reading",
                    peer=self.peer,
                    limit=self._outbound.limit,
                )
                self._open = False
                self.dropConnection(abort=True)
            return
        super().sendData(data, sync, chopsize)

    def close(self, code: int, reason: str) -> None:
        """Start a closing handshake with any code, 1008 included."""
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(
                code=code, reasonUtf8=reason.encode("utf-8")[:_MAX_REASON_BYTES]
            )

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self._queue is None:
            return
        self._open = False
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        # Forget the socket at once (it no longer counts against the per-user
        # cap); leaving rooms waits for the messages already being handled.
        if self.factory.dispatcher.connection_closed(self):
            self._enqueue(self.factory.dispatcher.user_gone, self.user)


def _take_over_producer(transport: Any, producer: IPushProducer) -> None:
    """Become the transport's producer, replacing twisted.web's HTTP channel.

    When the socket came through ``WebSocketResource`` the HTTP channel that
    accepted it is still registered, and would only pause reading.
    """
    try:
        transport.registerProducer(producer, True)
    except RuntimeError:
        transport.unregisterProducer()
        transport.registerProducer(producer, True)


class GameServerFactory(WebSocketServerFactory):
    protocol = GameServerProtocol

    def __init__(
        self,
        dispatcher: Dispatcher,
        settings: Settings,
        *,
        clock: IReactorTime,
        reactor: Any = None,
    ) -> None:
        super().__init__(reactor=reactor)
        self.dispatcher = dispatcher
        self.settings = settings
        self.clock = clock
        self.setProtocolOptions(
            webStatus=False,
            maxFramePayloadSize=settings.max_message_size,
            maxMessagePayloadSize=settings.max_message_size,
            failByDrop=False,
            autoPingInterval=settings.ping_interval,
            autoPingTimeout=settings.ping_timeout,
            allowedOrigins=OriginPolicy(settings.allowed_origins).wildcards,
            allowNullOrigin="*" in settings.allowed_origins,
            maxConnections=settings.max_connections,
            perMessageCompressionAccept=lambda offers: None,
        )
