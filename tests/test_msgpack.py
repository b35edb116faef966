"""MessagePack on the wire: chosen per connection, checked as JSON is, and
mixed rooms where each member gets its own format."""

from __future__ import annotations

import math

import msgpack
import pytest_twisted

from gameserver import BaseRouter, Game
from gameserver._wire import messages
from gameserver.testing import GameTest
from tests.conftest import GAMES, make_settings


class Echo(BaseRouter):
    def get_routes(self):
        return {"ECHO": self.echo, "SHOUT": self.shout, "HUGE": self.huge}

    def echo(self, room, user, helper, data):
        helper.self_send("ECHO", data)

    def shout(self, room, user, helper, data):
        helper.broadcast("SHOUT", data)

    def huge(self, room, user, helper, data):
        helper.broadcast("HUGE", {"n": 2**70})


ECHO = Game(name="echo", max_players=50, routers=[Echo])
ECHO_GAMES = {**GAMES, "echo": ECHO}


def _watch_frames(connection) -> list[bool]:
    """Whether each frame the client receives from now on is binary."""
    kinds: list[bool] = []
    protocol = connection.protocol
    real = protocol.onMessage

    def on_message(payload, is_binary):
        kinds.append(is_binary)
        real(payload, is_binary)

    protocol.onMessage = on_message
    return kinds


@pytest_twisted.ensureDeferred
async def test_a_msgpack_client_validates_joins_and_chats(start_any):
    server = await start_any()
    server.format = "msgpack"
    alice, a = await server.socket()
    assert a.protocol.websocket_protocol_in_use == "gameserver.msgpack"
    kinds = _watch_frames(a)
    bob, b = await server.socket()
    room = await server.room(alice)
    joined = await a.join(room["id"])
    assert joined["data"]["is_successful"] is True
    assert joined["data"]["room"]["id"] == room["id"]
    assert (await b.join(room["id"]))["data"]["is_successful"] is True
    assert (await a.receive("USER_JOINED"))["data"]["user"]["id"] == bob.user_id
    a.send("CHAT_MESSAGE", room["id"], {"text": "héllo 👋"})
    for connection in (a, b):
        chat = await connection.receive("CHAT_MESSAGE")
        assert chat["data"]["text"] == "héllo 👋"
        assert chat["data"]["user"]["id"] == alice.user_id
    assert kinds and all(kinds)
    left = await b.leave(room["id"])
    assert left["data"]["is_successful"] is True


@pytest_twisted.ensureDeferred
async def test_a_mixed_room_sees_the_same_messages(start_any):
    """One member on JSON, one on msgpack (on Redis, each on its own server)."""
    server = await start_any(games=ECHO_GAMES)
    other = await start_any(games=ECHO_GAMES) if start_any.mode == "redis" else server
    alice, a = await server.socket()
    other.format = "msgpack"
    bob, b = await other.socket()
    json_kinds, msgpack_kinds = _watch_frames(a), _watch_frames(b)
    rid = (await server.room(alice, game="echo"))["id"]
    await a.join(rid)
    await b.join(rid)
    await a.receive("USER_JOINED")
    for connection, text in ((a, "from json"), (b, "from msgpack")):
        connection.send("CHAT_MESSAGE", rid, {"text": text})
        connection.send("SHOUT", rid, {"n": 2**63 - 1, "x": 0.5, "list": [None, True]})
    seen = []
    for connection in (a, b):
        got = [await connection.receive("CHAT_MESSAGE", "SHOUT") for _ in range(4)]
        seen.append([(m["type"], m["data"]) for m in got])
    assert seen[0] == seen[1]
    assert [m[1].get("text") for m in seen[0] if m[0] == "CHAT_MESSAGE"] == [
        "from json",
        "from msgpack",
    ]
    assert json_kinds and not any(json_kinds)
    assert msgpack_kinds and all(msgpack_kinds)


def _nested(levels: int) -> dict:
    """An envelope nested ``levels`` deep, the envelope being the first."""
    inner: dict = {}
    data = inner
    for _ in range(levels - 2):
        inner["a"] = {}
        inner = inner["a"]
    return {"type": "ECHO", "data": data}


BAD = [
    (msgpack.packb([1, 2]), "must be a MessagePack map"),
    (msgpack.packb("text"), "must be a MessagePack map"),
    (msgpack.packb({"type": "ECHO", "data": math.nan}), "NaN"),
    (msgpack.packb({"type": "ECHO", "data": {"x": math.inf}}), "NaN and Infinity"),
    (b"\x82\xa4type\xa1X\xa4type\xa1Y", "duplicate key"),
    (msgpack.packb({"type": "ECHO", "data": {"b": b"\x00"}}), "bin values"),
    (msgpack.packb({"type": "ECHO", "data": {1: "a"}}), "keys must be strings"),
    (msgpack.packb({"type": "ECHO", "data": {b"k": 1}}), "keys must be strings"),
    (
        msgpack.packb({"type": "ECHO", "data": {"e": msgpack.ExtType(3, b"x")}}),
        "extension type 3",
    ),
    (
        msgpack.packb({"type": "ECHO", "data": {"t": msgpack.Timestamp(1, 0)}}),
        "Timestamp",
    ),
    (msgpack.packb(_nested(messages.MAX_DEPTH + 1)), "nested deeper than 100"),
    (b"\x91" * 5000, "nested deeper than 100"),
    (b"\xc1", "a byte that starts no value"),
    (msgpack.packb({"type": "ECHO"})[:-1], "malformed MessagePack"),
    (msgpack.packb({"type": "ECHO"}) + b"\x01", "bytes after the end"),
    (b"\x81\xa4type\xa2\xff\xfe", "not valid UTF-8"),
    (b"\x81\xa4type\xa3\xed\xa0\x80", "not valid UTF-8"),  # a lone surrogate
    (msgpack.packb({"type": 5}), "'type' must be"),
    (msgpack.packb({"type": "ECHO", "room_id": "1"}), "'room_id' must be"),
    (msgpack.packb({"type": "ECHO", "room_id": True}), "'room_id' must be"),
    (msgpack.packb({"type": "ECHO", "data": []}), "'data' must be a MessagePack map"),
    (msgpack.packb({"type": "ECHO", "roomId": 1}), "unknown envelope key"),
]


@pytest_twisted.ensureDeferred
async def test_bad_input_gets_bad_message_and_keeps_the_socket(start_any):
    server = await start_any(games=ECHO_GAMES)
    server.format = "msgpack"
    client, connection = await server.socket()
    rid = (await server.room(client, game="echo"))["id"]
    await connection.join(rid)
    for payload, detail in BAD:
        connection.send_raw(payload, binary=True)
        reply = await connection.receive("ERROR")
        assert reply["data"]["code"] == "bad_message", payload
        assert detail in reply["data"]["detail"], (payload, reply)
    connection.send_raw('{"type": "ECHO"}')  # a text frame
    reply = await connection.receive("ERROR")
    assert reply["data"] == {
        "code": "bad_message",
        "detail": "this connection speaks msgpack (gameserver.msgpack):"
        " send each message as one binary frame",
    }
    # What JSON allows, msgpack carries the same: the socket still works.
    data = {"n": 2**64 - 1, "m": -(2**63), "f": 1.5, "s": "ü", "l": [[{}]], "z": None}
    echoed = await connection.request("ECHO", rid, data)
    assert echoed["data"] == data
    deepest = _nested(messages.MAX_DEPTH)
    echoed = await connection.request("ECHO", rid, deepest["data"])
    assert echoed["data"] == deepest["data"]


@pytest_twisted.ensureDeferred
async def test_a_json_socket_told_it_sent_a_binary_frame(running):
    client, connection = await running.socket()
    connection.send_raw(msgpack.packb({"type": "NOPE"}), binary=True)
    reply = await connection.receive("ERROR")
    assert reply["data"]["detail"] == (
        "this connection speaks json (gameserver.json): send each message as one"
        " text frame"
    )
    assert (await connection.request("NOPE"))["data"]["code"] == "unknown_type"


@pytest_twisted.ensureDeferred
async def test_an_oversized_msgpack_message_closes_1009(make_server):
    server = await make_server(make_settings(max_message_size=1024))
    server.format = "msgpack"
    client, connection = await server.socket()
    connection.send_raw(msgpack.packb({"type": "X", "data": {"t": "x" * 2000}}), True)
    code, _ = await connection.closed
    assert code == 1009


@pytest_twisted.ensureDeferred
async def test_a_message_over_the_limit_in_json_is_refused(make_server):
    """MessagePack is denser: ``"\x01"`` is two bytes in it, eight in JSON."""
    server = await make_server(make_settings(max_message_size=4096), games=ECHO_GAMES)
    server.format = "msgpack"
    client, connection = await server.socket()
    rid = (await server.room(client, game="echo"))["id"]
    await connection.join(rid)
    dense = {"l": ["\x01"] * 1000}  # 3 KB in MessagePack, 9 KB in JSON
    assert len(msgpack.packb({"type": "ECHO", "data": dense})) < 4096
    connection.send("ECHO", rid, dense)
    reply = await connection.receive("ERROR")  # from the decoder: no room_id
    assert reply["data"]["code"] == "bad_message"
    assert "in JSON, over the limit of 4096" in reply["data"]["detail"]
    fits = {"l": ["\x01"] * 400}
    assert (await connection.request("ECHO", rid, fits))["data"] == fits


# With GameTest: the real decoder of each format, and mixed rooms


def test_a_broadcast_is_encoded_once_per_format_in_use(monkeypatch):
    test = GameTest(ECHO)
    players = [
        test.player(f"p{n}", format="msgpack" if n % 2 else "json") for n in range(40)
    ]
    room = test.create_room("echo", owner=players[0])
    for player in players:
        player.join(room)
    written: dict[str, list[bytes]] = {"json": [], "msgpack": []}
    for player in players:
        recorder = player.session._transport
        real = recorder.write
        monkeypatch.setattr(
            recorder,
            "write",
            lambda data, real=real, fmt=player.format.name: (
                written[fmt].append(data),
                real(data),
            ),
        )
    repacked, texts, binaries = [], [], []
    real_repack = messages._repack
    real_text, real_binary = messages.text_frame, messages.binary_frame
    monkeypatch.setattr(
        messages, "_repack", lambda p: repacked.append(p) or real_repack(p)
    )
    monkeypatch.setattr(
        messages, "text_frame", lambda p: texts.append(p) or real_text(p)
    )
    monkeypatch.setattr(
        messages, "binary_frame", lambda p: binaries.append(p) or real_binary(p)
    )
    players[0].send("SHOUT", {"text": "to all"})
    assert (len(repacked), len(texts), len(binaries)) == (1, 1, 1)
    for fmt in ("json", "msgpack"):
        assert len(written[fmt]) == 20
        assert len({id(frame) for frame in written[fmt]}) == 1
    for player in players:
        assert player.last("SHOUT")["data"] == {"text": "to all"}


def test_gametest_sends_through_the_msgpack_decoder():
    test = GameTest(ECHO, format="msgpack")
    alice = test.player("alice")
    room = test.create_room("echo", owner=alice)
    alice.join(room)
    alice.send("ECHO", {"when": b"\x01\x02"})  # JSON could not carry it
    assert alice.errors()[-1]["code"] == "bad_message"
    alice.send("ECHO", {"n": 1.0})
    assert alice.last("ECHO")["data"] == {"n": 1.0}


def test_an_integer_msgpack_cannot_carry_is_an_error_for_its_sockets_only():
    test = GameTest(ECHO)
    alice, bob = test.player("alice"), test.player("bob", format="msgpack")
    room = test.create_room("echo", owner=alice)
    alice.join(room)
    bob.join(room)
    alice.send("HUGE")
    assert alice.last("HUGE")["data"] == {"n": 2**70}
    error = bob.errors()[-1]
    assert error["code"] == "unencodable"
    assert error["request_type"] == "HUGE"
    assert bob.received("HUGE") == []


def test_a_room_s_state_stays_json_whatever_its_players_speak():
    from gameserver_games.tictactoe import TicTacToe

    test = GameTest(TicTacToe(), format="msgpack")
    alice, bob = test.player("alice"), test.player("bob")
    room = test.create_room("tictactoe", owner=alice)
    alice.join(room)
    bob.join(room)
    alice.send("MOVE", {"cell": 4})
    assert bob.last("BOARD")["data"]["cells"][4] == "X"
    assert test.state(room)["cells"][4] == "X"  # test.state reads JSON
    alice.send("MOVE", {"cell": 4.5})
    assert alice.errors()  # refused by the game, as over JSON
