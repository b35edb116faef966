"""The WebSocket endpoint on Autobahn: a thin adapter around ``Session``.

Autobahn's defaults suit a trusted peer, not the public internet, so the
factory sets every limit deliberately (size, heartbeat, origins, connection
count). Autobahn does control frames, fragments, limits, closing and
every unusual handshake; what every connection and every chat message
goes through is made lean here, because profiles of the benchmark showed
it to be most of the server's time:

- out: frames are built once per message (``Frame.wire``); a socket's
  frames of one reactor iteration are written to it together, with one
  ``send`` when the iteration's reads are done. Autobahn's
  ``sendPreparedMessage`` would build debug-log arguments and count
  traffic for every frame of every member, and Twisted's ``write`` costs
  two ``epoll`` changes for each write to an idle socket. What the socket
  cannot take at once goes through Twisted's buffer, which the outbound
  cap watches.
- in: a whole, final, masked text or binary frame under the size limit is
  unmasked here and handed to the session; Autobahn would make a masker
  object, a frame header and debug-log arguments for each. Anything else
  (a control frame, a fragment, a frame not all received, one over the
  limit or not valid UTF-8, anything a client must not send) is left to
  Autobahn from that frame on, which checks it and closes as it should.
- connecting: the plain opening handshake is read in one pass
  (``handshake.py``), the response goes straight to the socket, and the
  timeouts of all sockets share one timer each (``Deadlines``); Autobahn's
  debug-log arguments are formatted only when logged, and its UTF-8
  validator is made only for a socket that needs it.
"""

from __future__ import annotations

import itertools
import pprint
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import autobahn.twisted.websocket as _autobahn_twisted
import autobahn.util
import autobahn.websocket.protocol as _autobahn
import txaio
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.logger import Logger

from gameserver._settings import Settings
from gameserver._stats import Counters
from gameserver._wire import addresses, formats, handshake, messages
from gameserver._wire.limits import Deadlines, OutboundWatch
from gameserver._wire.origins import OriginPolicy
from gameserver._wire.session import Dispatch, Session

if TYPE_CHECKING:
    from gameserver._errors import TooManyRequests
    from gameserver._guard import Guard

_MAX_REASON_BYTES = 120
_ids = itertools.count(1)

log = Logger()


class _Lazy:
    """A debug-log argument, formatted when, and only if, the line is written.

    Autobahn formats its arguments for debug lines before the logger
    decides to drop them: its forty-odd options on every new connection
    (``pformat``) and coloured names (``hltype``, ``hlval``) on every read
    and several times in each handshake, about a quarter of the cost of a
    connection. Made lazy, the lines read the same when debug logging is on.
    """

    __slots__ = ("_args", "_format")

    def __init__(self, format_: Callable[..., str], args: tuple[Any, ...]) -> None:
        self._format = format_
        self._args = args

    def __str__(self) -> str:
        return self._format(*self._args)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _lazily(format_: Callable[..., str]) -> Callable[..., _Lazy]:
    def lazy(*args: Any) -> _Lazy:
        return _Lazy(format_, args)

    return lazy


_autobahn.pformat = _lazily(pprint.pformat)  # type: ignore[assignment]
for _module in (_autobahn, _autobahn_twisted):
    _module.hltype = _lazily(autobahn.util.hltype)  # type: ignore[attr-defined]
    _module.hlval = _lazily(autobahn.util.hlval)  # type: ignore[attr-defined]


class _LazyUtf8Validator:
    """Autobahn's UTF-8 validator, made when Autobahn first reads a text frame.

    Autobahn makes one for every connection (a C object through cffi, a
    few per cent of a connection's cost); the fast path of
    ``GameServerProtocol`` checks UTF-8 itself, so most connections never
    need one.
    """

    __slots__ = ("_real",)

    def __init__(self) -> None:
        self._real: Any = None

    def __getattr__(self, name: str) -> Any:
        real = self._real
        if real is None:
            real = self._real = _Utf8Validator()
        return getattr(real, name)


_Utf8Validator = _autobahn.Utf8Validator
_autobahn.Utf8Validator = _LazyUtf8Validator  # type: ignore[assignment,misc]

#: Seconds a client has for the WebSocket handshake, once it has connected
#: (Autobahn's default).
HANDSHAKE_TIMEOUT = 5.0
#: Bytes of an opening handshake's request line and headers, at most.
MAX_HANDSHAKE = 16 * 1024


class GameServerProtocol(WebSocketServerProtocol):
    factory: GameServerFactory
    session: Session | None = None
    # Autobahn's options, which the factory puts on the class.
    maxConnections: int
    allowedOriginsPatterns: list[Any]
    autoPingInterval: float
    _outbound: OutboundWatch
    #: The socket to write to directly, when the transport is plain TCP.
    _socket: Any = None
    _limit = 0
    #: Frames of this reactor iteration, sent together at its end.
    _pending: list[bytes] | None = None
    #: The wire format chosen in the handshake.
    _wire_format: formats.WireFormat = formats.JSON
    #: The client's address, once counted by the per-address limits (and
    #: until its count is given back).
    _address: str | None = None
    _validated = False
    #: Waiting for the per-address limits to answer (with Redis).
    _admitting = False
    _admitted = False
    _lost = False
    _denied = False
    #: The answer ``failHandshake`` sends instead of Autobahn's.
    _refusal: bytes | None = None

    def _connectionMade(self) -> None:
        super()._connectionMade()
        self.factory.handshakes.start(self, self.onOpenHandshakeTimeout)
        transport: Any = self.transport
        no_delay = getattr(transport, "setTcpNoDelay", None)
        if no_delay is not None:
            no_delay(True)
        if all(
            hasattr(transport, a)
            for a in ("socket", "dataBuffer", "_tempDataBuffer", "_tempDataLen")
        ):
            # Plain TCP: the bytes Twisted holds for the socket are counted
            # where they are, and the socket is written to directly, from
            # the handshake's response on.
            self._socket = transport.socket
            self._limit = self.factory.settings.max_outbound_buffer

    def processHandshake(self) -> None:
        """The plain request in one pass (``handshake.read``); Autobahn the rest."""
        if self._admitting:
            return  # the rest is read once the limits have answered
        data = self.data
        if len(data) > MAX_HANDSHAKE and data.find(b"\r\n\r\n", 0, MAX_HANDSHAKE) < 0:
            # Autobahn would buffer a request that never ends for as long
            # as the handshake's deadline, however fast it comes.
            self.failHandshake(
                f"the handshake's headers are over {MAX_HANDSHAKE} bytes", 431
            )
            return
        request = handshake.read(data)
        if request is None or not self._lean_open(request):
            super().processHandshake()

    # The per-address limits, at the handshake

    def _admit(self, headers: Mapping[str, str]) -> Deferred[Any] | Any:
        """Count this socket against its address's limits, before it opens:
        ``True`` if admitted, or a refusal (sent already), or a ``Deferred``
        of either while the limits are asked (with Redis: one round trip)."""
        guard = self.factory.guard
        if guard is None or self._admitted:
            return True
        peer: Any = self.transport.getPeer() if self.transport is not None else None
        host = getattr(peer, "host", None) or addresses.UNIX  # not IP: a UNIX socket
        address = guard.addresses.of_headers(host, headers)
        answered: list[Any] = []

        def keep(outcome: Any) -> Any:
            answered.append(outcome)
            return outcome

        asked = guard.open_socket(address).addCallback(keep)
        if answered:
            return self._admission(answered[0], guard, address)
        self._admitting = True
        return asked.addCallback(self._admission, guard, address)

    def _admission(
        self, judged: TooManyRequests | bool, guard: Guard, address: str
    ) -> Any:
        """``judged``: the refusal, or whether the socket was counted (only a
        counted one is uncounted at its close)."""
        self._admitting = False
        if self._lost:
            if judged is True:
                guard.socket_closed(address, False)
            return False if isinstance(judged, bool) else judged
        if not isinstance(judged, bool):
            refused = judged
            body = messages.dumps({"detail": refused.detail, "code": refused.code})
            self._refusal = handshake.refusal(
                429,
                "Too Many Requests",
                body,
                refused.wait_seconds,
            )
            self.failHandshake(refused.detail, 429)
            self._denied = True
            return refused
        if judged:
            self._address = address
        self._admitted = True
        return True

    def failHandshake(
        self, reason: str, code: int = 400, responseHeaders: Any = None
    ) -> None:
        """Autobahn's refusal, or a per-address limit's (with its wait)."""
        if self._lost or self._denied:
            return  # gone, or answered already
        refusal = self._refusal
        if refusal is None:
            super().failHandshake(reason, code, responseHeaders)
            return
        self._refusal = None
        self.wasNotCleanReason = reason
        self.sendData(refusal)
        self.dropConnection(abort=False)

    def _lean_open(self, request: handshake.Request) -> bool:
        """Open as Autobahn's ``succeedHandshake`` would; False to leave it to
        Autobahn (which refuses what it must: an origin not allowed, a port
        not ours, one connection too many)."""
        factory = self.factory
        if (
            factory.headers
            or factory.draining
            or type(self).onConnect is not GameServerProtocol.onConnect
        ):
            return False
        chosen = formats.choose(request.protocols)
        if chosen is None:
            return False  # Autobahn refuses it, through onConnect
        if factory.externalPort and request.port not in (None, factory.externalPort):
            return False
        if self.maxConnections > 0 and factory.countConnections > self.maxConnections:
            return False
        if request.origin:
            try:
                origin = _autobahn._url_to_origin(request.origin)
            except ValueError:
                return False
            if not (origin == "null" and factory.allowNullOrigin) and not (
                _autobahn._is_same_origin(
                    origin,
                    "https" if factory.isSecure else "http",
                    factory.externalPort or factory.port,
                    self.allowedOriginsPatterns,
                )
            ):
                return False
        admitted = self._admit(request.headers)
        if isinstance(admitted, Deferred):
            # Read again once counted: more of the client's data may be here.
            admitted.addCallback(
                lambda outcome: self.processHandshake() if outcome is True else None
            )
            return True
        if admitted is not True:
            return True  # refused, and answered
        self.http_status_line = request.status_line
        self.http_request_uri = request.uri
        self.http_request_path = request.path
        self.http_request_params = request.params
        self.http_request_host = request.host
        self.websocket_version = 13
        self.websocket_protocols = list(request.protocols)
        self.websocket_origin = request.origin
        self.websocket_extensions = []
        protocol = chosen.answer(request.protocols)
        self.websocket_protocol_in_use = protocol
        self.websocket_extensions_in_use = []
        self.data = request.rest
        self._wire_format = chosen
        self.sendData(handshake.response(request.key, factory.server, protocol))
        self.state = self.STATE_OPEN
        self.inside_message = False
        self.current_frame = None  # type: ignore[assignment]
        if self.autoPingInterval:
            self.autoPingPendingCall = factory._batched_timer.call_later(
                self.autoPingInterval, self._sendAutoPing
            )
        if self.trackedTimings:
            self.trackedTimings.track("onOpen")
        self._onOpen()
        txaio.resolve(self.is_open, None)  # type: ignore[attr-defined]
        if self.data:
            self.consumeData()
        return True

    def onConnect(self, request: ConnectionRequest) -> Any:
        """The wire format, by the subprotocol offered (``formats.choose``)."""
        if self.factory.draining:
            raise ConnectionDeny(503, "this server is restarting: connect again")
        chosen = formats.choose(request.protocols)
        if chosen is None:
            raise ConnectionDeny(400, formats.refusal(request.protocols))
        self._wire_format = chosen
        answer = chosen.answer(request.protocols)
        admitted = self._admit(request.headers)
        if isinstance(admitted, Deferred):
            return admitted.addCallback(_opened_or_denied, answer)
        return _opened_or_denied(admitted, answer)

    def _connectionLost(self, reason: Any) -> None:
        self._lost = True
        self.factory.handshakes.cancel(self)
        address = self._address
        if address is not None:
            self._address = None
            guard = self.factory.guard
            if guard is not None:
                guard.socket_closed(address, self._validated)
        super()._connectionLost(reason)

    def _socket_validated(self) -> None:
        """The session validated: its address has one unvalidated socket less."""
        address, guard = self._address, self.factory.guard
        if address is not None and guard is not None and not self._validated:
            self._validated = True
            guard.socket_validated(address)

    def onOpen(self) -> None:
        factory = self.factory
        factory.handshakes.cancel(self)
        self._outbound = OutboundWatch(factory.settings.max_outbound_buffer)
        if self._socket is None:
            _take_over_producer(self.transport, self._outbound)
        # The handshake's headers and raw request are not needed any more.
        self.http_request_data = b""
        self.http_response_data = ""
        self.http_headers = {}
        self.session = Session(
            self,
            factory.dispatcher,
            factory.settings,
            factory.clock,
            next(_ids),
            peer=self.peer or "",
            deadlines=factory.validation,
            wire_format=self._wire_format,
            counters=factory.counters,
            on_validated=None if self._address is None else self._socket_validated,
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
                break  # closing: Autobahn reads the rest (a close frame, say)
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
        sock = self._socket
        if sock is None:  # not plain TCP: the watch counts what waits
            if self._outbound.paused and not self._outbound.admit(len(data)):
                self._overflow()
                return
            transport.write(data)
            return
        pending = self._pending
        if pending is not None:
            pending.append(data)
            return
        waiting = self._waiting()
        if waiting:
            if waiting + len(data) > self._limit:
                self._overflow()
                return
            transport.write(data)
            return
        self._pending = [data]
        self.factory.flush_later(self)

    def flush(self) -> None:
        """Send this iteration's frames, at once if the socket takes them."""
        pending, self._pending = self._pending, None
        if not pending or self.state != self.STATE_OPEN:
            return
        transport: Any = self.transport
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        if transport.connected and not transport.disconnecting:
            data = self._send_now(data)
            if not data:
                return
            if len(data) > self._limit:
                self._overflow()
                return
        transport.write(data)

    def _send_now(self, data: bytes) -> bytes:
        """Hand ``data`` to the socket; what it did not take, for Twisted's buffer.

        Only while Twisted holds nothing for the socket (so the order stays),
        as Twisted's ``write`` would, without its two ``epoll`` changes.
        """
        try:
            sent = self._socket.send(data)
        except OSError:  # BlockingIOError included; Twisted's write finds errors
            return data
        return data[sent:] if sent < len(data) else b""

    def close(self, code: int, reason: str) -> None:
        """Start a closing handshake with any code, 1008 included."""
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(
                code=code, reasonUtf8=reason.encode("utf-8")[:_MAX_REASON_BYTES]
            )

    def sendData(
        self, data: bytes, sync: bool = False, chopsize: int | None = None
    ) -> None:
        """Autobahn's own writes (the handshake's response, pongs, closes).

        They count against the buffer cap too, and go straight to the socket
        when they can.
        """
        if self._pending:
            self.flush()  # what was written before goes first
        if self._over_cap(len(data)):
            self._overflow()
            return
        transport: Any = self.transport
        if (
            self._socket is not None
            and not sync
            and not chopsize
            and not self.send_queue
            and transport.connected
            and not transport.disconnecting
            and not self._waiting()
        ):
            data = self._send_now(data)
            if not data:
                return
        super().sendData(data, sync, chopsize)

    def _over_cap(self, size: int) -> bool:
        outbound = getattr(self, "_outbound", None)
        if outbound is None:
            return False
        if self._socket is None:
            return not outbound.admit(size)
        waiting = self._waiting()
        return bool(waiting) and waiting + size > self._limit

    def _waiting(self) -> int:
        """Bytes Twisted holds for the socket, not yet sent (plain TCP only)."""
        transport: Any = self.transport
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen

    def _overflow(self) -> None:
        session = self.session
        if session is not None and session.open:
            self.factory.counters.outbound_drops += 1
            log.warn(
                "dropping {peer}: over {limit} bytes queued for a client not reading",
                peer=self.peer,
                limit=self._outbound.limit,
                user_id=None if session.user is None else session.user.id,
            )
            session.lost()
            self.dropConnection(abort=True)


def _opened_or_denied(admitted: Any, answer: str | None) -> str | None:
    """For Autobahn's handshake: the subprotocol, or a denial once refused."""
    if admitted is True:
        return answer
    # Refused (answered already by failHandshake), or the client is gone.
    raise ConnectionDeny(429, "too many connections from this address")


def _flush_all(factory: GameServerFactory) -> None:
    factory._flush_call = None
    flushing, factory._flushing = factory._flushing, []
    for protocol in flushing:
        protocol.flush()


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
    #: Stopping: new handshakes are refused (503).
    draining = False

    def __init__(
        self,
        dispatcher: Dispatch,
        settings: Settings,
        *,
        clock: IReactorTime,
        reactor: Any = None,
        counters: Counters | None = None,
        guard: Guard | None = None,
    ) -> None:
        """``guard``: the per-address socket caps, checked at the handshake."""
        super().__init__(reactor=reactor)
        self.guard = guard
        self.dispatcher = dispatcher
        #: The server's figures, shared by its sessions.
        self.counters = Counters() if counters is None else counters
        self.settings = settings
        self.clock = clock
        #: Sockets yet to send VALIDATE_CONNECTION, and their time to do it.
        self.validation = Deadlines(clock, settings.validate_timeout)
        #: Sockets yet to finish the WebSocket handshake.
        self.handshakes = Deadlines(clock, HANDSHAKE_TIMEOUT)
        self._flushing: list[GameServerProtocol] = []
        self._flush_call: Any = None
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
            # Timed by ``handshakes`` instead: one timer for every socket.
            openHandshakeTimeout=0,
            perMessageCompressionAccept=lambda offers: None,
        )
        # Autobahn copies each option onto every new protocol that lacks it:
        # a protocol class that has them keeps forty attributes (about 2 KB)
        # out of every connection.
        options = {
            name: staticmethod(value) if callable(value) else value
            for name in self.protocol.CONFIG_ATTRS
            for value in [getattr(self, name)]
        }
        self.protocol = type(  # type: ignore[assignment]
            "GameServerProtocol", (GameServerProtocol,), options
        )

    def flush_later(self, protocol: GameServerProtocol) -> None:
        """Have ``protocol`` send its frames once this reactor iteration is done."""
        self._flushing.append(protocol)
        if self._flush_call is None:
            self._flush_call = self.reactor.callLater(0, _flush_all, self)
