"""A small Twisted client for bots, scripts and integration tests.

``GameClient`` talks to the HTTP API; ``connect()`` opens a WebSocket whose
``receive()`` waits for the next message matching what you ask for, keeping
the others for later. ``format="msgpack"`` speaks MessagePack on the socket
instead of JSON; messages are the same dicts either way.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import attrs
import msgpack
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers

from gameserver._wire import messages

#: The subprotocol each wire format offers; JSON, the default, offers none.
SUBPROTOCOLS: dict[str, str | None] = {"json": None, "msgpack": "gameserver.msgpack"}

Message = dict[str, Any]
Match = Callable[[Message], bool]


@attrs.frozen
class Response:
    status: int
    body: Any
    headers: Headers


class ClientProtocol(WebSocketClientProtocol):
    def onConnect(self, response: Any) -> None:
        self.inbox: list[Message] = []
        self.waiters: list[tuple[Match, Deferred[Message]]] = []
        self.closed: Deferred[tuple[int | None, str | None]] = Deferred()

    def onOpen(self) -> None:
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary != self.factory.binary:
            # 1003: a kind of data the endpoint cannot accept (RFC 6455, 7.4.1).
            kind = "binary" if isBinary else "text"
            self.sendClose(1003, f"a {kind} frame on a {self.factory.format} socket")
            return
        message = msgpack.unpackb(payload) if isBinary else json.loads(payload)
        for i, (match, waiter) in enumerate(self.waiters):
            if match(message):
                del self.waiters[i]
                waiter.callback(message)
                return
        self.inbox.append(message)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionError(f"closed: {code} {reason}"))
            return
        for _, waiter in self.waiters:
            waiter.errback(ConnectionError(f"closed before a reply: {code} {reason}"))
        self.waiters.clear()
        self.closed.callback((code, reason))


class _ClientFactory(WebSocketClientFactory):
    protocol = ClientProtocol

    def __init__(self, *args: Any, format: str = "json", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.format = format
        #: Whether the server's messages come in binary frames.
        self.binary = format == "msgpack"
        #: Fires with the protocol once the handshake is done.
        self.opened: Deferred[ClientProtocol] = Deferred()


class Connection:
    """One WebSocket to a gameserver, speaking ``format`` (json or msgpack)."""

    def __init__(
        self, protocol: ClientProtocol, reactor: Any, format: str = "json"
    ) -> None:
        self.protocol = protocol
        self.format = format
        self._reactor = reactor

    @property
    def closed(self) -> Deferred[tuple[int | None, str | None]]:
        """Fires with ``(code, reason)`` when the socket closes."""
        return self.protocol.closed

    def send(
        self, type_: str, room_id: int | None = None, data: dict | None = None
    ) -> None:
        envelope: Message = {"type": type_}
        if room_id is not None:
            envelope["room_id"] = room_id
        if data is not None:
            envelope["data"] = data
        if self.format == "msgpack":
            self.send_raw(msgpack.packb(envelope), binary=True)
        else:
            self.send_raw(json.dumps(envelope))

    def send_raw(self, payload: str | bytes, binary: bool = False) -> None:
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        self.protocol.sendMessage(payload, isBinary=binary)

    def receive(
        self, *types: str, room_id: int | None = None, timeout: float = 5
    ) -> Deferred[Message]:
        """The next message of one of ``types`` (of any type if none given)."""

        def match(message: Message) -> bool:
            return (not types or message.get("type") in types) and (
                room_id is None or message.get("room_id") == room_id
            )

        d: Deferred[Message] = Deferred()
        for i, message in enumerate(self.protocol.inbox):
            if match(message):
                del self.protocol.inbox[i]
                d.callback(message)
                return d
        entry = (match, d)
        self.protocol.waiters.append(entry)

        def forget(result: Any) -> Any:
            if entry in self.protocol.waiters:
                self.protocol.waiters.remove(entry)
            return result

        return d.addTimeout(timeout, self._reactor).addErrback(forget)

    def pending(self) -> list[Message]:
        """Messages received and not yet taken with ``receive``."""
        return list(self.protocol.inbox)

    async def request(
        self,
        type_: str,
        room_id: int | None = None,
        data: dict | None = None,
        *,
        reply: str | None = None,
    ) -> Message:
        """Send, then wait for the reply (of type ``reply``, by default the
        same type) or for an ``ERROR``."""
        self.send(type_, room_id, data)
        return await self.receive(reply or type_, messages.ERROR, room_id=room_id)

    async def validate(self, token: str) -> Message:
        return await self.request(messages.VALIDATE_CONNECTION, data={"token": token})

    async def join(self, room_id: int, password: str | None = None) -> Message:
        data = {} if password is None else {"password": password}
        return await self.request(messages.JOIN_ROOM, room_id, data)

    async def leave(self, room_id: int) -> Message:
        return await self.request(messages.LEAVE_ROOM, room_id)

    def close(self, code: int = 1000) -> Deferred[tuple[int | None, str | None]]:
        self.protocol.sendClose(code)
        return self.closed

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        transport: Any = self.protocol.transport
        transport.abortConnection()


class GameClient:
    """A user of a gameserver at ``base_url`` (``http://host:port``).

    ``format`` is the wire format of its sockets: ``"json"`` (the default)
    or ``"msgpack"``.
    """

    def __init__(
        self, base_url: str, *, reactor: Any = None, format: str = "json"
    ) -> None:
        if format not in SUBPROTOCOLS:
            raise ValueError(
                f"format must be one of {sorted(SUBPROTOCOLS)}: {format!r}"
            )
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self.format = format
        self.base_url = base_url.rstrip("/")
        self._agent = Agent(reactor)
        self.access: str | None = None
        self.refresh: str | None = None

    async def http(
        self, method: str, path: str, body: Any = None, *, token: str | None = None
    ) -> Response:
        """Call the API; ``body`` is sent as JSON unless it is ``bytes``."""
        headers = Headers({b"Content-Type": [b"application/json"]})
        token = self.access if token is None else token
        if token:
            headers.addRawHeader(b"Authorization", f"Bearer {token}".encode())
        producer = None
        if body is not None:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            producer = FileBodyProducer(io.BytesIO(raw))
        response = await self._agent.request(
            method.encode(), (self.base_url + path).encode(), headers, producer
        )
        raw = await readBody(response)
        content_type = response.headers.getRawHeaders(b"content-type", [b""])[0]
        parsed = (
            json.loads(raw) if content_type.startswith(b"application/json") else raw
        )
        return Response(response.code, parsed, response.headers)

    async def register(self, username: str, password: str) -> Response:
        return await self.http(
            "POST", "/api/users/", {"username": username, "password": password}
        )

    async def login(self, username: str, password: str) -> Response:
        response = await self.http(
            "POST", "/api/token/", {"username": username, "password": password}
        )
        if response.status == 200:
            self.access = response.body["access"]
            self.refresh = response.body["refresh"]
        return response

    async def create_room(self, name: str, game: str, **options: Any) -> Response:
        return await self.http(
            "POST", "/api/rooms/", {"name": name, "game": game, **options}
        )

    async def connect(
        self, *, validate: bool = True, origin: str | None = None
    ) -> Connection:
        """Open ``/ws``; with ``validate``, send ``VALIDATE_CONNECTION`` first.

        JSON offers no subprotocol (what any WebSocket client gets), and
        MessagePack offers ``gameserver.msgpack``.
        """
        url = urlsplit(self.base_url)
        scheme = "wss" if url.scheme == "https" else "ws"
        subprotocol = SUBPROTOCOLS[self.format]
        factory = _ClientFactory(
            f"{scheme}://{url.netloc}{url.path}/ws",
            origin=origin,
            protocols=[subprotocol] if subprotocol else None,
            reactor=self._reactor,
            format=self.format,
        )
        kind = "tls" if scheme == "wss" else "tcp"
        endpoint = clientFromString(
            self._reactor, f"{kind}:host={url.hostname}:port={url.port or 80}"
        )
        await endpoint.connect(factory)
        protocol = await factory.opened
        if protocol.websocket_protocol_in_use != subprotocol:
            protocol.sendClose()
            raise ConnectionError(
                f"the server answered subprotocol {protocol.websocket_protocol_in_use!r}"
                f" to an offer of {subprotocol!r}"
            )
        connection = Connection(protocol, self._reactor, self.format)
        if validate:
            if self.access is None:
                raise ConnectionError("log in first: there is no access token")
            reply = await connection.validate(self.access)
            if not reply["data"].get("is_successful"):
                raise ConnectionError(f"validation refused: {reply['data']}")
        return connection
