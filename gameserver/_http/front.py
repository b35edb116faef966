"""One port for the site and the WebSocket endpoint, each at full speed.

Mounted in a ``twisted.web`` tree, the endpoint is reached through
Autobahn's ``WebSocketResource``: twisted.web parses the upgrade request,
then the resource writes it out again for Autobahn to parse a second time
(its own comment: "somewhat silly"). Profiled, that was a third of the
cost of a connection. On the server's own port the front door reads the
request line instead: ``GET /ws`` goes straight to the WebSocket factory,
whose protocol reads the handshake itself; anything else goes to the site.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Factory, Protocol, ServerFactory
from twisted.python.failure import Failure

from gameserver._wire.limits import Deadlines

#: Bytes of a request line waited for before the site gets the connection
#: (and answers whatever it is).
MAX_REQUEST_LINE = 8192


class FrontDoor(ServerFactory):
    def __init__(
        self,
        site: Factory[Any],
        websocket: Factory[Any],
        clock: IReactorTime,
        *,
        path: bytes = b"/ws",
        timeout: float = 10.0,
    ) -> None:
        self.site = site
        self.websocket = websocket
        self.path = path
        #: Connections yet to send their request line, and their time to do it.
        self.waiting = Deadlines(clock, timeout)

    @property
    def timeout(self) -> float:
        """Seconds a connection may take to send its request line."""
        return self.waiting.timeout

    def doStart(self) -> None:
        self.site.doStart()
        self.websocket.doStart()

    def doStop(self) -> None:
        self.site.doStop()
        self.websocket.doStop()

    def buildProtocol(self, addr: IAddress | None) -> _Door:
        return _Door(self, addr)

    def route(self, request_line: bytes) -> Factory[Any]:
        method, _, rest = request_line.partition(b" ")
        target = rest.partition(b" ")[0].partition(b"?")[0]
        if method == b"GET" and target == self.path:
            return self.websocket
        return self.site


class _Door(Protocol):
    """Holds a new connection until its request line says where it goes."""

    def __init__(self, door: FrontDoor, addr: IAddress | None) -> None:
        self._door = door
        self._addr = addr
        self._buffer = b""
        self._inner: Any = None

    def connectionMade(self) -> None:
        self._door.waiting.start(self, self._too_slow)

    def dataReceived(self, data: bytes) -> None:
        inner = self._inner
        if inner is not None:
            inner.dataReceived(data)
            return
        buffer = self._buffer + data
        end = buffer.find(b"\r\n")
        if end < 0 and len(buffer) < MAX_REQUEST_LINE:
            self._buffer = buffer
            return
        self._buffer = b""
        self._door.waiting.cancel(self)
        factory = self._door.route(buffer[: max(end, 0)])
        inner = factory.buildProtocol(self._addr)
        if inner is None:
            assert self.transport is not None
            self.transport.loseConnection()
            return
        self._inner = inner
        assert self.transport is not None
        inner.makeConnection(self.transport)
        inner.dataReceived(buffer)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._door.waiting.cancel(self)
        if self._inner is not None:
            self._inner.connectionLost(reason)

    def _too_slow(self) -> None:
        if self._inner is None and self.transport is not None:
            self.transport.loseConnection()
