"""The WebSocket endpoint on Autobahn: a thin adapter around ``Session``.

Autobahn's defaults suit a trusted peer, not the public internet, so the
factory sets every limit deliberately (size, heartbeat, origins, connection
count). Outbound frames are built once per message (``Frame.wire``) and
written straight to the socket: Autobahn's ``sendPreparedMessage`` would
build debug-log arguments and count traffic for every frame of every
member, and Twisted's ``write`` costs two ``epoll`` changes for each write
to an idle socket. Whatever the socket cannot take at once goes through
Twisted's buffer, which the outbound cap watches.
"""

from __future__ import annotations

import itertools
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.logger import Logger

from gameserver._settings import Settings
from gameserver._wire.limits import OutboundWatch
from gameserver._wire.origins import OriginPolicy
from gameserver._wire.session import Dispatch, Session

_MAX_REASON_BYTES = 120
_ids = itertools.count(1)

log = Logger()


class GameServerProtocol(WebSocketServerProtocol):
    factory: GameServerFactory
    session: Session | None = None
    _outbound: OutboundWatch
    #: The socket to write to directly, when the transport is plain TCP.
    _socket: Any = None

    def onOpen(self) -> None:
        factory = self.factory
        transport: Any = self.transport
        no_delay = getattr(transport, "setTcpNoDelay", None)
        if no_delay is not None:
            no_delay(True)
        self._outbound = OutboundWatch(factory.settings.max_outbound_buffer)
        _take_over_producer(transport, self._outbound)
        if all(
            hasattr(transport, a) for a in ("socket", "dataBuffer", "_tempDataBuffer")
        ):
            self._socket = transport.socket
        self.session = Session(
            self,
            factory.dispatcher,
            factory.settings,
            factory.clock,
            next(_ids),
            peer=self.peer or "",
        )

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        session = self.session
        if session is not None:
            session.received(payload, isBinary)

    def onPing(self, payload: bytes) -> None:
        session = self.session
        if session is not None and session.ping_admitted():
            super().onPing(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        session = self.session
        if session is not None:
            session.lost()

    # SessionTransport

    def write(self, data: bytes) -> None:
        """Send a whole frame; past the outbound cap, drop the client."""
        if self.state != self.STATE_OPEN:
            return
        transport: Any = self.transport
        if self._outbound.paused:
            if not self._outbound.admit(len(data)):
                self._overflow()
                return
            transport.write(data)
            return
        sock = self._socket
        if (
            sock is not None
            and not transport.dataBuffer
            and not transport._tempDataBuffer
            and transport.connected
            and not transport.disconnecting
        ):
            try:
                sent = sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                sent = 0  # Twisted's write finds the error and closes.
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)

    def close(self, code: int, reason: str) -> None:
        """Start a closing handshake with any code, 1008 included."""
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(
                code=code, reasonUtf8=reason.encode("utf-8")[:_MAX_REASON_BYTES]
            )

    def sendData(
        self, data: bytes, sync: bool = False, chopsize: int | None = None
    ) -> None:
        """Autobahn's own frames (pongs, closes) pass the buffer cap too."""
        outbound = getattr(self, "_outbound", None)
        if outbound is not None and not outbound.admit(len(data)):
            self._overflow()
            return
        super().sendData(data, sync, chopsize)

    def _overflow(self) -> None:
        session = self.session
        if session is not None and session.open:
            log.warn(
                "dropping {peer}: over {limit} bytes queued for a client not reading",
                peer=self.peer,
                limit=self._outbound.limit,
            )
            session.lost()
            self.dropConnection(abort=True)


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
    protocol = GameServerProtocol  # type: ignore[assignment]

    def __init__(
        self,
        dispatcher: Dispatch,
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
