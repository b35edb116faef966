"""The lean opening handshake: the plain request read in one pass, anything
else left to Autobahn, which answers it as it always has."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from gameserver._wire import handshake
from tests.conftest import make_settings

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455, section 1.3


def _request(*lines: str, first: str = "GET /ws HTTP/1.1", key: str = KEY) -> bytes:
    headers = [
        "Host: games.example:8000",
        "Upgrade: websocket",
        "Connection: keep-alive, Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *lines,
    ]
    return ("\r\n".join([first, *headers]) + "\r\n\r\n").encode("latin-1")


def test_the_plain_request_is_read_as_autobahn_would():
    request = handshake.read(
        _request(
            "Origin: https://games.example",
            "User-Agent: a browser",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
            first="GET /ws?room=4&x=1 HTTP/1.1",
        )
        + b"\x81\x80"
    )
    assert request is not None
    assert (request.path, request.params) == ("/ws", {"room": ["4"], "x": ["1"]})
    assert (request.host, request.port) == ("games.example", 8000)
    assert request.origin == "https://games.example"
    assert request.headers["user-agent"] == "a browser"
    assert request.key == KEY
    assert request.rest == b"\x81\x80"


def test_forwarding_headers_are_read_repeats_joined_as_autobahn_joins_them():
    """The client's address behind a proxy is read on this path too
    (``addresses.py``), from the same joined value Autobahn's path sees."""
    request = handshake.read(
        _request("X-Forwarded-For: 203.0.113.9", "x-forwarded-for: 10.0.0.1")
    )
    assert request is not None
    assert request.headers["x-forwarded-for"] == "203.0.113.9, 10.0.0.1"


def test_the_answer_carries_the_accept_key_of_rfc_6455():
    answer = handshake.response(KEY, "gameserver")
    assert answer == (
        b"HTTP/1.1 101 Switching Protocols\r\nServer: gameserver\r\n"
        b"Upgrade: WebSocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    )


@pytest.mark.parametrize(
    "data",
    [
        _request()[:-2],  # not all here yet
        _request(first="POST /ws HTTP/1.1"),
        _request(first="GET /ws HTTP/1.0"),
        _request(first="GET http://games.example/ws HTTP/1.1"),
        _request(first="GET /ws#top HTTP/1.1"),
        _request("Host: other.example"),  # twice
        _request("Sec-WebSocket-Key: " + KEY),  # twice
        _request("Sec-WebSocket-Protocol: chat, chat"),
        _request("Sec-WebSocket-Protocol: chat", "Sec-WebSocket-Protocol: chat"),
        _request(" folded: line"),
        _request("no colon"),
        _request("Name: caf\xe9"),  # not ASCII
        _request(key="short=="),
        _request(key="dGhlIHNhbXBsZSBub25jZQ=x"),
        _request(key="dGhlIHNhbXBsZSBub25j!Q=="),
        _request().replace(b"Version: 13", b"Version: 8"),
        _request().replace(b"Upgrade: websocket", b"Upgrade: h2c"),
        _request().replace(b"keep-alive, Upgrade", b"keep-alive"),
        _request().replace(b"Host: games.example:8000\r\n", b""),
        _request().replace(b"Host: games.example:8000", b"Host: games.example:http"),
        _request().replace(b"\r\nUpgrade", b"\nUpgrade"),  # a bare line feed
    ],
)
def test_anything_else_is_left_to_autobahn(data):
    assert handshake.read(data) is None


class _Raw(Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.lost: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: object = None) -> None:
        self.lost.callback(self.received)


async def _answer(server, data: bytes) -> bytes:
    """What the server answers ``data`` with, up to its end of headers."""
    raw = _Raw()
    port = server.port.getHost().port
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), raw)
    raw.transport.write(data)
    for _ in range(200):
        if b"\r\n\r\n" in raw.received or raw.lost.called:
            break
        await _tick()
    raw.transport.abortConnection()
    await raw.lost
    return raw.received


async def _sent_with_a_frame(
    server, request: bytes, opcode: int, message: bytes
) -> bytes:
    """What the server sends back to ``request`` written with one small
    masked frame (a zero key) in the same packet, once it refuses the frame
    as unauthenticated."""
    raw = _Raw()
    port = server.port.getHost().port
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), raw)
    raw.transport.write(
        request + bytes((opcode, 0x80 | len(message))) + bytes(4) + message
    )
    for _ in range(200):
        if b"not_authenticated" in raw.received:
            break
        await _tick()
    raw.transport.abortConnection()
    await raw.lost
    return raw.received


async def _tick() -> None:
    from twisted.internet.task import deferLater

    await deferLater(reactor, 0.01, lambda: None)


@pytest.fixture
def autobahn_calls(monkeypatch):
    """How many handshakes Autobahn's own code read."""
    from autobahn.websocket.protocol import WebSocketServerProtocol

    calls = []
    real = WebSocketServerProtocol.processHandshake

    def counted(self):
        calls.append(1)
        return real(self)

    monkeypatch.setattr(WebSocketServerProtocol, "processHandshake", counted)
    return calls


@pytest_twisted.ensureDeferred
async def test_a_browser_s_request_opens_without_autobahn_s_handshake(
    make_server, autobahn_calls
):
    server = await make_server(make_settings(allowed_origins=["https://*.example"]))
    answer = await _answer(
        server,
        _request(
            "Origin: https://games.example",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
        ),
    )
    assert answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in answer
    assert b"Extensions" not in answer  # no compression: none accepted
    assert autobahn_calls == []
    client = await server.user()  # and the whole client works
    connection = await server.connect(client)
    assert (await connection.request("NOPE"))["data"]["code"] == "unknown_type"


@pytest_twisted.ensureDeferred
async def test_what_the_lean_path_doubts_autobahn_answers(make_server, autobahn_calls):
    server = await make_server(
        make_settings(allowed_origins=["https://*.example"], max_connections=1)
    )
    refused = await _answer(server, _request("Origin: https://evil.test"))
    assert refused.startswith(b"HTTP/1.1 400 ") and b"not allowed" in refused
    assert autobahn_calls == [1]
    chat = await _answer(server, _request("Sec-WebSocket-Protocol: chat"))
    assert chat.startswith(b"HTTP/1.1 400 ")  # a format this server lacks
    assert b"unsupported WebSocket subprotocol 'chat'" in chat
    assert autobahn_calls == [1, 1]
    first = _Raw()
    port = server.port.getHost().port
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), first)
    first.transport.write(_request())
    try:
        one_too_many = await _answer(server, _request())
    finally:
        first.transport.abortConnection()
    assert one_too_many.startswith(b"HTTP/1.1 503 ")


@pytest_twisted.ensureDeferred
async def test_frames_sent_with_the_request_are_read_once_open(running):
    message = b'{"type": "NOPE"}'
    received = await _sent_with_a_frame(running, _request(), 0x81, message)
    assert received.startswith(b"HTTP/1.1 101 ")
    assert b"not_authenticated" in received


# The wire format, chosen by subprotocol


@pytest.mark.parametrize(
    ("offer", "chosen"),
    [
        (None, None),  # no offer: JSON, and no subprotocol in the answer
        ("gameserver.json", "gameserver.json"),
        ("gameserver.msgpack", "gameserver.msgpack"),
        ("chat, gameserver.msgpack, gameserver.json", "gameserver.msgpack"),
        ("gameserver.json,gameserver.msgpack", "gameserver.json"),
    ],
)
@pytest.mark.parametrize("lean", [True, False], ids=["lean", "autobahn"])
@pytest_twisted.ensureDeferred
async def test_the_answer_names_the_format_chosen(
    running, autobahn_calls, offer, chosen, lean
):
    lines = [] if offer is None else [f"Sec-WebSocket-Protocol: {offer}"]
    if not lean:  # a header the lean path leaves to Autobahn (not ASCII)
        lines.append("X-Note: caf\xe9")
    answer = await _answer(running, _request(*lines))
    assert answer.startswith(b"HTTP/1.1 101 ")
    headers = answer.split(b"\r\n")
    named = [h for h in headers if h.lower().startswith(b"sec-websocket-protocol:")]
    assert named == (
        [] if chosen is None else [f"Sec-WebSocket-Protocol: {chosen}".encode()]
    )
    assert autobahn_calls == ([] if lean else [1])


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "autobahn"])
@pytest_twisted.ensureDeferred
async def test_an_offer_of_neither_format_is_refused_with_the_reason(running, lean):
    lines = ["Sec-WebSocket-Protocol: wamp.2.json, gameserver.xml"]
    if not lean:
        lines.append("X-Note: caf\xe9")
    answer = await _answer(running, _request(*lines))
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert (
        b"unsupported WebSocket subprotocol 'wamp.2.json', 'gameserver.xml':"
        b" this server speaks gameserver.json or gameserver.msgpack"
    ) in answer


@pytest_twisted.ensureDeferred
async def test_a_msgpack_frame_sent_with_the_request_is_read_once_open(running):
    import msgpack

    message = msgpack.packb({"type": "NOPE"})
    request = _request("Sec-WebSocket-Protocol: gameserver.msgpack")
    received = await _sent_with_a_frame(running, request, 0x82, message)
    head, _, frames = received.partition(b"\r\n\r\n")
    assert b"Sec-WebSocket-Protocol: gameserver.msgpack" in head
    assert frames[0] == 0x82  # the refusal, in a binary frame
    assert msgpack.unpackb(frames[2:])["data"]["code"] == "not_authenticated"


def test_a_refusal_names_a_few_of_the_offers():
    from gameserver._wire import formats

    reason = formats.refusal([f"p{n}" for n in range(10)] + ["x" * 500])
    assert reason.startswith(
        "unsupported WebSocket subprotocol 'p0', 'p1', 'p2' and 8 more"
    )
    assert len(reason) < 200
