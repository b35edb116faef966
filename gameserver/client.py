"""A small Twisted client for bots, scripts and integration tests.

``GameClient`` talks to the HTTP API; ``connect()`` opens a WebSocket whose
``receive()`` waits for the next message matching what you ask for, keeping
the others for later. ``format="msgpack"`` speaks MessagePack on the socket
instead of JSON; messages are the same dicts either way.

A ``Connection`` remembers the rooms it joined (as a player or, with
``spectate()``, as a spectator) and the highest ``seq`` it received in each,
and drops a room message whose ``seq`` is not above it (nothing is taken
twice). ``GameClient.reconnect(old)`` opens a new socket and joins those
rooms again with ``resume``, so the messages missed meanwhile arrive, once
and in order.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
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


@attrs.define
class JoinedRoom:
    """How a room was joined, to join it again the same way after a drop."""

    password: str | None = None
    spectator: bool = False


class ClientProtocol(WebSocketClientProtocol):
    def onConnect(self, response: Any) -> None:
        self.inbox: list[Message] = []
        self.waiters: list[tuple[Match, Deferred[Message]]] = []
        self.closed: Deferred[tuple[int | None, str | None]] = Deferred()
        #: Sees every message first; a message it returns False for is dropped.
        self.observer: Callable[[Message], bool] | None = None

    def onOpen(self) -> None:
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary != self.factory.binary:
            # 1003: a kind of data the endpoint cannot accept (RFC 6455, 7.4.1).
            kind = "binary" if isBinary else "text"
            self.sendClose(1003, f"a {kind} frame on a {self.factory.format} socket")
            return
        message = msgpack.unpackb(payload) if isBinary else json.loads(payload)
        if self.observer is not None and not self.observer(message):
            return
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
    """One WebSocket to a gameserver, speaking ``format`` (json or msgpack).

    ``seqs`` holds the highest ``seq`` received in each room; a message of a
    room whose ``seq`` is not above it is dropped (counted in ``dropped``).
    ``rooms`` holds the rooms joined successfully (a ``JOIN_ROOM`` or
    ``QUICK_JOIN`` answered ``is_successful``, however it was sent), until
    they are left or deleted: what ``GameClient.reconnect`` joins again.
    """

    def __init__(
        self, protocol: ClientProtocol, reactor: Any, format: str = "json"
    ) -> None:
        self.protocol = protocol
        self.format = format
        self._reactor = reactor
        self.seqs: dict[int, int] = {}
        self.rooms: dict[int, JoinedRoom] = {}
        self.dropped = 0
        #: After ``GameClient.reconnect``: each room's ``JOIN_ROOM`` answer
        #: (or ``ERROR``), by room id.
        self.rejoined: dict[int, Message] = {}
        # The data of each JOIN_ROOM sent and not answered yet, by room id.
        self._joining: dict[int, list[dict]] = {}
        # Rooms joined again by ``reconnect`` whose answer has not come yet.
        self._rejoining: set[int] = set()
        protocol.observer = self._observe

    def _observe(self, message: Message) -> bool:
        """Track seqs and joined rooms; False for a message seen already."""
        room_id = message.get("room_id")
        type_ = message.get("type")
        data = message.get("data")
        if not isinstance(data, dict):
            data = {}
        if not isinstance(room_id, int):
            return True
        seq = message.get("seq")
        if room_id in self._rejoining:
            answer = type_ == messages.JOIN_ROOM or (
                type_ == messages.ERROR
                and data.get("request_type") == messages.JOIN_ROOM
            )
            if answer:
                self._rejoining.discard(room_id)
            elif isinstance(seq, int):
                # Sent before the rejoin's answer (the server may still have
                # held the old socket, so this one got the room's messages
                # at once): the answer brings it again in its place, or the
                # room's state.
                self.dropped += 1
                return False
        if isinstance(seq, int) and not isinstance(seq, bool):
            if seq <= self.seqs.get(room_id, -1):
                self.dropped += 1
                return False
            self.seqs[room_id] = seq
        if type_ == messages.JOIN_ROOM:
            asked = self._joining.get(room_id)
            sent = asked.pop(0) if asked else {}
            if asked == []:
                del self._joining[room_id]
            if data.get("is_successful"):
                self.rooms[room_id] = JoinedRoom(
                    password=sent.get("password"),
                    spectator=bool(data.get("spectator", sent.get("spectate"))),
                )
                if data.get("resumed") is False:
                    # A normal join instead: what follows is a new start.
                    self.seqs.pop(room_id, None)
        elif type_ == messages.ERROR and data.get("request_type") == messages.JOIN_ROOM:
            asked = self._joining.get(room_id)
            if asked:
                asked.pop(0)
            if asked == []:
                del self._joining[room_id]
        elif type_ == messages.QUICK_JOIN and data.get("is_successful"):
            self.rooms[room_id] = JoinedRoom()
        elif type_ == messages.LEAVE_ROOM and data.get("is_successful"):
            self.rooms.pop(room_id, None)
        elif type_ == messages.ROOM_CLOSED:
            self.rooms.pop(room_id, None)
            self.seqs.pop(room_id, None)
        return True

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
        if type_ == messages.JOIN_ROOM and room_id is not None:
            self._joining.setdefault(room_id, []).append(dict(data or {}))
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

    async def spectate(self, room_id: int, password: str | None = None) -> Message:
        """Watch a room without a seat (``JOIN_ROOM`` with ``spectate``)."""
        data: dict[str, Any] = {"spectate": True}
        if password is not None:
            data["password"] = password
        return await self.request(messages.JOIN_ROOM, room_id, data)

    async def quick_join(self, game: str, options: dict | None = None) -> Message:
        """``QUICK_JOIN``: a seat in an open room of ``game``, or a new room;
        the answer names the room (``room_id``)."""
        data: dict[str, Any] = {"game": game}
        if options is not None:
            data["options"] = options
        return await self.request(messages.QUICK_JOIN, data=data)

    def last_seq(self, room_id: int) -> int | None:
        """The highest ``seq`` received in the room, or None."""
        return self.seqs.get(room_id)

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
        self,
        *,
        validate: bool = True,
        origin: str | None = None,
        _resuming: tuple[dict[int, int], Iterable[int]] | None = None,
    ) -> Connection:
        """Open ``/ws``; with ``validate``, send ``VALIDATE_CONNECTION`` first.

        JSON offers no subprotocol (what any WebSocket client gets), and
        MessagePack offers ``gameserver.msgpack``. ``_resuming``: the seqs and
        the rooms ``reconnect`` joins again, whose messages the connection
        drops from the start until each room's answer.
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
        if _resuming is not None:
            seqs, rooms = _resuming
            connection.seqs.update(seqs)
            connection._rejoining.update(rooms)
        if validate:
            if self.access is None:
                raise ConnectionError("log in first: there is no access token")
            reply = await connection.validate(self.access)
            if not reply["data"].get("is_successful"):
                raise ConnectionError(f"validation refused: {reply['data']}")
        return connection

    async def reconnect(
        self, old: Connection, *, origin: str | None = None, timeout: float = 5
    ) -> Connection:
        """A new socket in place of ``old`` (dropped, or about to be).

        It has the same format, is validated with the current access token,
        and joins every room ``old`` was in again, the same way (password,
        spectator), with ``resume`` set to the highest ``seq`` received there
        when there was one. Every ``JOIN_ROOM`` is sent before any answer is
        awaited; the answers are in the new connection's ``rejoined``. The
        new connection starts from ``old``'s seqs, so a message ``old`` has
        seen is dropped (what ``old`` received and nobody took with
        ``receive`` stays in ``old.pending()``). A room whose join is
        refused is forgotten.
        """
        if old.format != self.format:
            raise ValueError(f"the old connection speaks {old.format}")
        # One copy of each: what is joined again is what is held, from where.
        rooms, seqs = dict(old.rooms), dict(old.seqs)
        new = await self.connect(origin=origin, _resuming=(seqs, rooms))
        for room_id, joined in rooms.items():
            data: dict[str, Any] = {}
            if joined.password is not None:
                data["password"] = joined.password
            if joined.spectator:
                data["spectate"] = True
            if room_id in seqs:
                data["resume"] = seqs[room_id]
            new.send(messages.JOIN_ROOM, room_id, data)
        for room_id in rooms:
            try:
                new.rejoined[room_id] = await new.receive(
                    messages.JOIN_ROOM, messages.ERROR, room_id=room_id, timeout=timeout
                )
            finally:  # no answer is coming: stop dropping the room's messages
                new._rejoining.discard(room_id)
            if not new.rejoined[room_id]["data"].get("is_successful", False):
                new.seqs.pop(room_id, None)
        return new
