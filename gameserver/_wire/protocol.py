"""The WebSocket endpoint on Autobahn: a thin adapter around ``Session``.

Autobahn's defaults suit a trusted peer, not the public internet, so the
factory sets every limit deliberately (size, heartbeat, origins, connection
count). Autobahn does the handshake, control frames, fragments, limits
and closing; the two paths every chat message takes are made lean here,
because a profile of the fan-out benchmark showed them to be most of the
server's time:

- out: frames are built once per message (``Frame.wire``) and written
  straight to the socket. Autobahn's ``sendPreparedMessage`` would build
  debug-log arguments and count traffic for every frame of every member,
  and Twisted's ``write`` costs two ``epoll`` changes for each write to an
  idle socket. What the socket cannot take at once goes through Twisted's
  buffer, which the outbound cap watches.
- in: a whole, final, masked text or binary frame under the size limit is
  unmasked here and handed to the session; Autobahn would make a masker
  object, a frame header and debug-log arguments for each. Anything else
  (a control frame, a fragment, a frame not all received, one over the
  limit or not valid UTF-8, anything a client must not send) is left to
  Autobahn from that frame on, which checks it and closes as it should.
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

    def _dataReceived(self, data: bytes) -> None:
        session = self.session
        if (
            session is None
            or self.state != self.STATE_OPEN
            or self.data
            or self.current_frame is not None
            or self.inside_message
        ):
            super()._dataReceived(data)
            return
        limit = self.factory.settings.max_message_size
        received = session.received
        n, i = len(data), 0
        while n - i >= 6:
            first, second = data[i], data[i + 1]
            if (first != 0x81 and first != 0x82) or not second & 0x80:
                break  # not a final text/binary frame, or not masked
            length = second & 0x7F
            if length < 126:
                start = i + 6
            elif length == 126 and n - i >= 8:
                length = (data[i + 2] << 8) | data[i + 3]
                if length < 126:
                    break  # not the shortest encoding: a protocol error
                start = i + 8
            else:
                break
            end = start + length
            if length > limit or end > n:
                break
            payload = _unmask(data[start:end], data[start - 4 : start], length)
            binary = first == 0x82
            if not binary:
                try:
                    payload.decode("utf-8")
                except UnicodeDecodeError:
                    break
            i = end
            received(payload, binary)
            if self.state != self.STATE_OPEN:
                return
        if i < n:
            super()._dataReceived(data[i:] if i else data)

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


def _unmask(masked: bytes, key: bytes, length: int) -> bytes:
    """XOR with the 4-byte key, as one big integer (in C, not per byte)."""
    if not length:
        return b""
    mask = (key * ((length >> 2) + 1))[:length]
    return (int.from_bytes(masked, "little") ^ int.from_bytes(mask, "little")).to_bytes(
        length, "little"
    )


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
