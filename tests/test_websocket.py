"""The base consumer over real WebSockets: every message, refusal and limit."""

from __future__ import annotations

import json
import time

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater
from txaio.testutil import replace_loop

from gameserver import BaseRouter, Game
from tests.conftest import make_settings


async def _eventually(predicate, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await deferLater(reactor, 0.02, lambda: None)
    raise AssertionError("condition not reached in time")


async def _players(client, room_id: int) -> list[str]:
    room = (await client.http("GET", f"/api/rooms/{room_id}/")).body
    return [p["username"] for p in room["players"]]


async def _ok(reply: dict) -> dict:
    assert reply["data"]["is_successful"] is True, reply
    return reply


# VALIDATE_CONNECTION


@pytest_twisted.ensureDeferred
async def test_validate(running):
    client = await running.user("alice")
    connection = await running.connect(client, validate=False)
    reply = await connection.validate(client.access)
    assert reply["type"] == "VALIDATE_CONNECTION"
    assert reply["data"] == {
        "is_successful": True,
        "user": {"id": reply["data"]["user"]["id"], "username": "alice"},
        "server_time": pytest.approx(time.time(), abs=5),
    }


@pytest.mark.parametrize("token", ["garbage", "", None, 42, "refresh"])
@pytest_twisted.ensureDeferred
async def test_validate_refused_then_closed(running, token):
    client = await running.user()
    connection = await running.connect(client, validate=False)
    if token == "refresh":
        token = client.refresh
    reply = await connection.validate(token)
    assert reply["data"]["is_successful"] is False
    assert reply["data"]["error"] == "invalid_token"
    assert reply["data"]["detail"]
    code, _ = await connection.closed
    assert code == 4001


@pytest_twisted.ensureDeferred
async def test_expired_token_refused(clocked):
    client = await clocked.user()
    clocked.clock.advance(clocked.server.settings.access_lifetime)
    connection = await clocked.connect(client, validate=False)
    reply = await connection.validate(client.access)
    assert reply["data"]["error"] == "token_expired"
    assert (await connection.closed)[0] == 4001


@pytest_twisted.ensureDeferred
async def test_unvalidated_socket_closed_after_timeout(clocked):
    client = await clocked.user()
    connection = await clocked.connect(client, validate=False)
    clocked.clock.advance(clocked.server.settings.validate_timeout - 0.1)
    connection.send("PING")
    assert (await connection.receive("ERROR"))["data"]["code"] == "not_authenticated"
    clocked.clock.advance(0.1)
    code, reason = await connection.closed
    assert code == 4001
    assert "validated" in reason


@pytest_twisted.ensureDeferred
async def test_validated_socket_outlives_the_timeout(clocked):
    client = await clocked.user()
    connection = await clocked.connect(client)
    clocked.clock.advance(60)
    reply = await connection.request("NOPE")
    assert reply["data"]["code"] == "unknown_type"


@pytest_twisted.ensureDeferred
async def test_other_types_before_validation(running):
    client = await running.user()
    connection = await running.connect(client, validate=False)
    for type_ in ["JOIN_ROOM", "CHAT_MESSAGE", "ANYTHING"]:
        reply = await connection.request(type_, 1)
        assert reply["type"] == "ERROR"
        assert reply["data"]["code"] == "not_authenticated"
        assert reply["data"]["request_type"] == type_
    await _ok(await connection.validate(client.access))


@pytest_twisted.ensureDeferred
async def test_validate_twice(running):
    client, connection = await running.socket()
    reply = await connection.validate(client.access)
    assert reply["data"]["code"] == "already_validated"


# Bad input: an ERROR, and the socket stays open


@pytest_twisted.ensureDeferred
async def test_bad_input_keeps_the_socket(running):
    client, connection = await running.socket()
    cases = [
        ("{not json", "bad_message"),
        ("[1, 2]", "bad_message"),
        ('"text"', "bad_message"),
        ('{"type": "X", "data": NaN}', "bad_message"),
        ('{"type": "JOIN_ROOM", "type": "LEAVE_ROOM"}', "bad_message"),
        ('{"type": "X", "data": "\\ud800"}', "bad_message"),
        ('{"type": 5}', "bad_message"),
        ('{"type": "X", "room_id": "1"}', "bad_message"),
        ('{"type": "X", "data": []}', "bad_message"),
        ('{"type": "X", "roomId": 1}', "bad_message"),
        ('{"type": "FLY_TO_MOON"}', "unknown_type"),
        (
            '{"type": "CHAT_MESSAGE", "room_id": 77, "data": {"text": "hi"}}',
            "not_in_room",
        ),
        ('{"type": "CHAT_MESSAGE", "data": {"text": "hi"}}', "bad_message"),
    ]
    for raw, code in cases:
        connection.send_raw(raw)
        reply = await connection.receive("ERROR")
        assert reply["data"]["code"] == code, raw
        assert reply["data"]["detail"]
    connection.send_raw(b"\x00\x01", binary=True)
    assert (await connection.receive("ERROR"))["data"]["code"] == "bad_message"
    room = await running.room(client)
    await _ok(await connection.join(room["id"]))


@pytest_twisted.ensureDeferred
async def test_oversized_message_closes_1009(make_server):
    server = await make_server(make_settings(max_message_size=1024))
    _, connection = await server.socket()
    connection.send("CHAT_MESSAGE", 1, {"text": "x" * 2000})
    code, _ = await connection.closed
    assert code == 1009
    # The server is still fine.
    _, other = await server.socket()
    assert (await other.request("NOPE"))["data"]["code"] == "unknown_type"


# JOIN_ROOM / LEAVE_ROOM


@pytest_twisted.ensureDeferred
async def test_join_and_leave(running):
    alice, a = await running.socket("alice")
    _, b = await running.socket("bob")
    room = await running.room(alice)
    rid = room["id"]
    reply = await _ok(await a.join(rid))
    assert reply["room_id"] == rid
    assert reply["data"]["room"]["id"] == rid
    assert [p["username"] for p in reply["data"]["room"]["players"]] == ["alice"]
    await _ok(await b.join(rid))
    joined = await a.receive("USER_JOINED", room_id=rid)
    assert joined["data"]["user"]["username"] == "bob"
    assert joined["data"]["reconnected"] is False
    assert await _players(alice, rid) == ["alice", "bob"]
    reply = await _ok(await b.leave(rid))
    assert reply == {
        "type": "LEAVE_ROOM",
        "room_id": rid,
        "data": {"is_successful": True},
    }
    left = await a.receive("USER_LEFT", room_id=rid)
    assert left["data"]["user"]["username"] == "bob"
    assert await _players(alice, rid) == ["alice"]
    assert not [m for m in b.pending() if m["type"] in ("USER_JOINED", "USER_LEFT")]


@pytest_twisted.ensureDeferred
async def test_join_refusals(running):
    owner, o = await running.socket()
    _, x = await running.socket()
    locked = await running.room(owner, password="open sesame")
    full = await running.room(owner, game="duel")
    cases = [
        (999, None, "room_not_found"),
        (locked["id"], None, "wrong_password"),
        (locked["id"], "guess", "wrong_password"),
    ]
    for room_id, password, code in cases:
        reply = await x.join(room_id, password)
        assert reply["type"] == "JOIN_ROOM"
        assert reply["data"]["is_successful"] is False
        assert reply["data"]["error"] == code, (room_id, password)
        assert reply["data"]["detail"]
    reply = await x.request("JOIN_ROOM", locked["id"], {"password": 1234})
    assert reply["data"]["error"] == "wrong_password"
    await _ok(await x.join(locked["id"], "open sesame"))
    await _ok(await o.join(locked["id"]))  # the owner needs no password
    _, y = await running.socket()
    _, z = await running.socket()
    await _ok(await o.join(full["id"]))
    await _ok(await y.join(full["id"]))
    reply = await z.join(full["id"])
    assert reply["data"]["error"] == "room_full"
    assert len(await _players(owner, full["id"])) == 2


@pytest_twisted.ensureDeferred
async def test_join_refused_once_the_game_started(running):
    owner, o = await running.socket()
    _, late = await running.socket()
    room = await running.room(owner)
    await _ok(await o.join(room["id"]))
    o.send("START_GAME", room["id"])
    await o.receive("GAME_STARTED")
    reply = await late.join(room["id"])
    assert reply["data"]["error"] == "game_started"
    await _ok(await o.join(room["id"]))  # a seated player may join again


@pytest_twisted.ensureDeferred
async def test_leave_refusals(running):
    owner, o = await running.socket()
    room = await running.room(owner)
    reply = await o.leave(room["id"])
    assert reply["data"] == {
        "is_successful": False,
        "error": "not_in_room",
        "detail": reply["data"]["detail"],
    }
    assert (await o.leave(999))["data"]["error"] == "room_not_found"
    reply = await o.request("LEAVE_ROOM")
    assert reply["data"]["error"] == "bad_message"


# Disconnects


@pytest_twisted.ensureDeferred
async def test_disconnect_leaves_rooms_not_in_game(running):
    alice, a = await running.socket("alice")
    _, b = await running.socket("bob")
    room = await running.room(alice)
    await _ok(await a.join(room["id"]))
    await _ok(await b.join(room["id"]))
    b.abort()
    left = await a.receive("USER_LEFT")
    assert left["data"]["user"]["username"] == "bob"
    assert await _players(alice, room["id"]) == ["alice"]


@pytest_twisted.ensureDeferred
async def test_disconnect_keeps_seat_in_game_and_reconnect_gets_it_back(running):
    alice, a = await running.socket("alice")
    bob, b = await running.socket("bob")
    room = await running.room(alice, game="duel", password="pw12")
    rid = room["id"]
    await _ok(await a.join(rid, "pw12"))
    await _ok(await b.join(rid, "pw12"))
    assert (await a.receive("USER_JOINED"))["data"]["reconnected"] is False
    a.send("START_GAME", rid)
    await b.receive("GAME_STARTED")
    await b.close()
    gone = await a.receive("USER_DISCONNECTED", room_id=rid)
    assert gone["data"]["user"]["username"] == "bob"
    assert await _players(alice, rid) == ["alice", "bob"]
    b2 = await running.connect(bob)
    chat = await b2.request("CHAT_MESSAGE", rid, {"text": "back?"})
    assert chat["data"]["code"] == "not_in_room"
    reply = await _ok(await b2.join(rid))  # no password, room full, in game
    assert reply["data"]["room"]["state"] == "in_game"
    back = await a.receive("USER_JOINED", room_id=rid)
    assert back["data"]["user"]["username"] == "bob"
    assert back["data"]["reconnected"] is True
    b2.send("CHAT_MESSAGE", rid, {"text": "I'm back"})
    assert (await a.receive("CHAT_MESSAGE"))["data"]["text"] == "I'm back"


@pytest_twisted.ensureDeferred
async def test_membership_is_per_user_not_per_socket(running):
    alice, a1 = await running.socket("alice")
    a2 = await running.connect(alice)
    _, b = await running.socket("bob")
    room = await running.room(alice)
    rid = room["id"]
    await _ok(await a1.join(rid))
    await _ok(await b.join(rid))
    b.send("CHAT_MESSAGE", rid, {"text": "to both sockets"})
    assert (await a1.receive("CHAT_MESSAGE"))["data"]["text"] == "to both sockets"
    assert (await a2.receive("CHAT_MESSAGE"))["data"]["text"] == "to both sockets"
    assert (await b.receive("CHAT_MESSAGE"))["data"]["text"] == "to both sockets"
    await _ok(await a2.join(rid))
    await a1.close()
    a2.send("CHAT_MESSAGE", rid, {"text": "still here"})
    assert (await b.receive("CHAT_MESSAGE"))["data"]["text"] == "still here"
    assert not [m for m in b.pending() if m["type"] == "USER_LEFT"]
    await a2.close()
    assert (await b.receive("USER_LEFT"))["data"]["user"]["username"] == "alice"


@pytest_twisted.ensureDeferred
async def test_deleted_room_tells_its_members(running):
    owner, o = await running.socket()
    room = await running.room(owner)
    await _ok(await o.join(room["id"]))
    assert (await owner.http("DELETE", f"/api/rooms/{room['id']}/")).status == 204
    assert (await o.receive("ROOM_CLOSED"))["room_id"] == room["id"]
    reply = await o.request("CHAT_MESSAGE", room["id"], {"text": "hello?"})
    assert reply["data"]["code"] == "not_in_room"


# Chat


@pytest_twisted.ensureDeferred
async def test_chat(clocked):
    alice, a = await clocked.socket("alice")
    _, b = await clocked.socket("bob")
    room = await clocked.room(alice)
    await _ok(await a.join(room["id"]))
    await _ok(await b.join(room["id"]))
    a.send("CHAT_MESSAGE", room["id"], {"text": "héllo ✓"})
    for connection in (a, b):
        message = await connection.receive("CHAT_MESSAGE")
        assert message == {
            "seq": message["seq"],
            "type": "CHAT_MESSAGE",
            "room_id": room["id"],
            "data": {
                "user": {"id": message["data"]["user"]["id"], "username": "alice"},
                "text": "héllo ✓",
                "ts": clocked.clock.seconds(),
            },
        }
    for text in ["", "   ", 5, "x" * 501]:
        reply = await a.request("CHAT_MESSAGE", room["id"], {"text": text})
        assert reply["data"]["code"] == "invalid"


# Limits


@pytest_twisted.ensureDeferred
async def test_flood_is_refused_then_closed_1008(make_server):
    clock = Clock()  # frozen unless advanced: the buckets refill only on advance
    server = await make_server(
        make_settings(message_rate=1, message_burst=5, flood_limit=20), clock=clock
    )
    _, flooder = await server.socket()  # VALIDATE_CONNECTION used one token
    _, bystander = await server.socket()
    for _ in range(4):
        flooder.send("NOPE")
    for _ in range(4):
        assert (await flooder.receive("ERROR"))["data"]["code"] == "unknown_type"
    flooder.send("NOPE")
    assert (await flooder.receive("ERROR"))["data"]["code"] == "rate_limited"
    clock.advance(1)
    flooder.send("NOPE")
    assert (await flooder.receive("ERROR"))["data"]["code"] == "unknown_type"
    for _ in range(25):
        flooder.send("NOPE")
    code, _ = await flooder.closed
    assert code == 1008
    assert [m["data"]["code"] for m in flooder.pending()] == ["rate_limited"]
    assert (await bystander.request("NOPE"))["data"]["code"] == "unknown_type"


@pytest_twisted.ensureDeferred
async def test_a_sustained_flood_is_closed_although_some_messages_get_through(
    make_server,
):
    clock = Clock()
    server = await make_server(make_settings(), clock=clock)  # 20/s, bursts of 40
    _, flooder = await server.socket()
    for _ in range(3000):  # 1,000 a second for 3 s: 50 times the rate
        if flooder.protocol.state != flooder.protocol.STATE_OPEN:
            break
        flooder.send("NOPE")
        clock.advance(0.001)
        await deferLater(reactor, 0, lambda: None)
    code, _ = await flooder.closed
    assert code == 1008
    codes = [m["data"]["code"] for m in flooder.pending()]
    assert "unknown_type" in codes  # tokens kept coming: some were handled
    assert "rate_limited" in codes


@pytest_twisted.ensureDeferred
async def test_pings_count_against_the_rate_limit(make_server):
    clock = Clock()
    server = await make_server(
        make_settings(message_rate=1, message_burst=5, flood_limit=20), clock=clock
    )
    _, pinger = await server.socket()
    for _ in range(200):
        pinger.protocol.sendPing(b"x")
    code, _ = await pinger.closed
    assert code == 1008


@pytest_twisted.ensureDeferred
async def test_connections_per_user_capped(make_server):
    server = await make_server(make_settings(max_connections_per_user=2))
    client = await server.user()
    await server.connect(client)
    await server.connect(client)
    third = await server.connect(client, validate=False)
    reply = await third.validate(client.access)
    assert reply["data"]["error"] == "too_many_connections"
    assert (await third.closed)[0] == 4008


@pytest_twisted.ensureDeferred
async def test_connections_per_process_capped(make_server):
    server = await make_server(make_settings(max_connections=2))
    client = await server.user()
    await server.connect(client)
    await server.connect(client)
    with pytest.raises(ConnectionError):
        await server.connect(client)


@pytest_twisted.ensureDeferred
async def test_origin_allowlist(make_server):
    server = await make_server(make_settings(allowed_origins=["https://play.example"]))
    client = await server.user()
    await server.connect(client, origin="https://play.example")
    await server.connect(client)  # no Origin header: not a browser
    with pytest.raises(ConnectionError):
        await server.connect(client, origin="https://evil.example")


@pytest_twisted.ensureDeferred
async def test_dead_peer_dropped_by_heartbeat(make_server):
    server = await make_server(make_settings(ping_interval=20, ping_timeout=10))
    clock = Clock()
    with replace_loop(clock):
        client, connection = await server.socket()
        connection.protocol.transport.pauseProducing()  # never reads, never pongs
        clock.advance(19)
        await deferLater(reactor, 0.1, lambda: None)
        assert not connection.closed.called
        clock.advance(1)  # the ping goes out
        clock.advance(10)  # no pong in time: dropped
        connection.protocol.transport.resumeProducing()
        code, _ = await connection.closed
    assert code != 1000
    await _eventually(lambda: server.server.sockets.count(client.user_id) == 0)


class Blobs(BaseRouter):
    def blobs(self, room, user, helper, data):
        for _ in range(data["n"]):
            helper.send_to(data["to"], "STATE", {"blob": "x" * 60_000})


@pytest_twisted.ensureDeferred
async def test_client_that_never_reads_is_dropped(make_server):
    games = {"blobs": Game(name="blobs", max_players=5, routers=[Blobs])}
    server = await make_server(
        make_settings(max_outbound_buffer=256 * 1024), games=games
    )
    owner, reader = await server.socket()
    sleeper_client, sleeper = await server.socket()
    room = await server.room(owner, game="blobs")
    await _ok(await reader.join(room["id"]))
    await _ok(await sleeper.join(room["id"]))
    sleeper.protocol.transport.pauseProducing()
    sockets = server.server.sockets
    to = {"to": sleeper_client.user_id, "n": 10}
    for _ in range(30):  # ~18 MB: past the kernel's and Twisted's buffers
        reader.send("blobs", room["id"], to)
        await deferLater(reactor, 0.05, lambda: None)
        if sockets.count(sleeper_client.user_id) == 0:
            break
    assert sockets.count(sleeper_client.user_id) == 0
    left = await reader.receive("USER_LEFT")
    assert left["data"]["user"]["id"] == sleeper_client.user_id
    sleeper.protocol.transport.resumeProducing()
    await sleeper.closed
    assert (await reader.request("NOPE"))["data"]["code"] == "unknown_type"


# Encoding once per send


class Shout(BaseRouter):
    def shout(self, room, user, helper, data):
        helper.broadcast("SHOUT", {"text": data["text"]})


def test_a_broadcast_is_encoded_and_framed_once(monkeypatch):
    from gameserver._wire import messages
    from gameserver.testing import GameTest

    test = GameTest(Game(name="loud", max_players=50, routers=[Shout]))
    players = [test.player(f"p{n}") for n in range(50)]
    room = test.create_room("loud", owner=players[0])
    for player in players:
        player.join(room)
    frames: list[bytes] = []
    for player in players:
        recorder = player.session._transport
        real_write = recorder.write
        monkeypatch.setattr(
            recorder,
            "write",
            lambda data, real=real_write: (frames.append(data), real(data)),
        )
    encoded, framed = [], []
    real_dumps, real_frame = messages.dumps, messages.text_frame
    messages._type_prefix("SHOUT")  # cached after its first use
    monkeypatch.setattr(messages, "dumps", lambda v: encoded.append(v) or real_dumps(v))
    monkeypatch.setattr(
        messages, "text_frame", lambda p: framed.append(p) or real_frame(p)
    )
    players[0].send("shout", {"text": "hello all"})
    assert encoded == [{"text": "hello all"}]
    assert len(framed) == 1
    assert len(frames) == 50
    assert len({id(frame) for frame in frames}) == 1  # the same bytes, to all
    for player in players:
        assert player.last("SHOUT")["data"] == {"text": "hello all"}


@pytest_twisted.ensureDeferred
async def test_a_socket_closed_mid_join_frees_its_slot_at_once(
    make_server, monkeypatch
):
    from twisted.internet.defer import Deferred

    server = await make_server(make_settings(max_connections_per_user=1))
    owner, o = await server.socket()
    room = await server.room(owner, password="mint tea")
    await _ok(await o.join(room["id"]))
    guest, g = await server.socket()
    gate = Deferred()

    async def held_verify(password, encoded):
        await gate
        return True

    monkeypatch.setattr(server.server.rooms._hasher, "verify", held_verify)
    g.send("JOIN_ROOM", room["id"], {"password": "mint tea"})
    await deferLater(reactor, 0.05, lambda: None)
    await g.close()
    again = await server.connect(guest)  # refused before: the dead socket counted
    gate.callback(None)
    # The dead socket's join completes; the user stays, having another socket.
    assert (await o.receive("USER_JOINED"))["data"]["user"]["id"] == guest.user_id
    await _ok(await again.join(room["id"]))
    await again.close()
    assert (await o.receive("USER_LEFT"))["data"]["user"]["id"] == guest.user_id


def test_settings_refuse_nan_and_infinity():
    for bad in [float("nan"), float("inf"), 0, -1]:
        with pytest.raises(ValueError):
            make_settings(access_lifetime=bad)


# Frames at the byte level: the lean path takes whole data frames, Autobahn
# the rest


def _masked(
    payload: bytes, opcode: int = 0x1, fin: bool = True, key=b"\x01\x02\x03\x04"
):
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        header = bytes((first, 0x80 | n))
    else:
        header = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return header + key + body


def _message(type_: str, room_id=None, data=None) -> bytes:
    envelope = {"type": type_}
    if room_id is not None:
        envelope["room_id"] = room_id
    if data is not None:
        envelope["data"] = data
    return json.dumps(envelope).encode()


@pytest_twisted.ensureDeferred
async def test_frames_coalesced_split_fragmented_or_with_a_ping_between(running):
    alice, a = await running.socket("alice")
    room = await running.room(alice)
    await _ok(await a.join(room["id"]))
    chat = lambda text: _message("CHAT_MESSAGE", room["id"], {"text": text})  # noqa: E731
    raw = a.protocol.sendData
    raw(_masked(chat("one")) + _masked(chat("two")))  # two frames, one write
    whole = _masked(chat("three" * 40))  # a 126-length header
    raw(whole[:3])
    await deferLater(reactor, 0.05, lambda: None)
    raw(whole[3:50])
    await deferLater(reactor, 0.05, lambda: None)
    raw(whole[50:] + _masked(b"", opcode=0x9) + _masked(chat("four")))
    text = chat("five")
    raw(_masked(text[:10], fin=False) + _masked(text[10:], opcode=0x0))
    raw(_masked(chat("six"), key=b"\x00\x00\x00\x00"))
    texts = [(await a.receive("CHAT_MESSAGE"))["data"]["text"] for _ in range(6)]
    assert texts == ["one", "two", "three" * 40, "four", "five", "six"]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (_masked(b'{"type": "\xff"}'), 1007),  # not UTF-8
        (
            _masked(b'{"type": "', fin=False) + _masked(b'\xff"}', opcode=0x0),
            1007,
        ),  # not UTF-8, in fragments (Autobahn's validator)
        (bytes((0x81, 5)) + b"hello", 1002),  # not masked
        (
            bytes((0x81, 0x80 | 126, 0, 5)) + b"\x01\x02\x03\x04hello",
            1002,
        ),  # not minimal
        (_masked(b"{}", opcode=0x0), 1002),  # a continuation with nothing to continue
        (_masked(b"{}", opcode=0x3), 1002),  # a reserved opcode
        (bytes((0xC1,)) + _masked(b"{}")[1:], 1002),  # a reserved bit set
    ],
)
@pytest_twisted.ensureDeferred
async def test_frames_a_client_must_not_send_close_the_socket(running, frame, code):
    _, connection = await running.socket()
    connection.protocol.sendData(frame)
    closed, _ = await connection.closed
    assert closed == code
    _, other = await running.socket()  # and the server is fine
    assert (await other.request("NOPE"))["data"]["code"] == "unknown_type"


# The port's front door


@pytest_twisted.ensureDeferred
async def test_the_front_door_routes_by_request_line(running):
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.internet.protocol import Protocol

    port = running.port.getHost().port

    class Raw(Protocol):
        def __init__(self):
            self.received = b""
            self.done = Deferred()

        def dataReceived(self, data):
            self.received += data

        def connectionLost(self, reason):
            self.done.callback(self.received)

    async def exchange(request: bytes) -> bytes:
        raw = Raw()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), raw)
        raw.transport.write(request)
        return await raw.done.addTimeout(5, reactor)

    # Anything but a GET of /ws goes to the site (the API's JSON 404 here).
    reply = await exchange(
        b"GET /api/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert reply.startswith(b"HTTP/1.1 404") and b'"code":"not_found"' in reply
    # (A POST of /ws reaches Autobahn through the site's resource.)
    reply = await exchange(b"POST /ws HTTP/1.0\r\n\r\n")
    assert reply.startswith(b'HTTP/1.1 405 HTTP method "POST" not allowed')
    # A GET of /ws goes to Autobahn, which reads the handshake itself.
    reply = await exchange(b"GET /ws?x=1 HTTP/1.1\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 HTTP Host header missing")
    client = await running.user()
    assert (await running.connect(client)) is not None  # and sockets still work


@pytest_twisted.ensureDeferred
async def test_an_unfinished_handshake_is_dropped_in_time(clocked):
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.internet.protocol import Protocol

    from gameserver._wire.protocol import HANDSHAKE_TIMEOUT

    class Raw(Protocol):
        def __init__(self):
            self.lost = Deferred()

        def connectionLost(self, reason):
            self.lost.callback(None)

    port = clocked.port.getHost().port
    raws = [Raw(), Raw()]
    for raw in raws:
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), raw)
        raw.transport.write(b"GET /ws HTTP/1.1\r\nHost: x\r\n")  # and no more
        await deferLater(reactor, 0.05, lambda: None)
        clocked.clock.advance(HANDSHAKE_TIMEOUT / 2)
    assert not raws[0].lost.called
    await raws[0].lost.addTimeout(5, reactor)  # its time is up
    assert not raws[1].lost.called
    _, connection = await clocked.socket()  # one that finishes is kept
    clocked.clock.advance(HANDSHAKE_TIMEOUT)
    await raws[1].lost.addTimeout(5, reactor)
    assert (await connection.request("NOPE"))["data"]["code"] == "unknown_type"


def test_a_silent_connection_is_closed_by_the_front_door():
    from twisted.internet.protocol import Factory, Protocol
    from twisted.internet.testing import StringTransport

    from gameserver._http.front import FrontDoor

    clock = Clock()
    door = FrontDoor(
        Factory.forProtocol(Protocol), Factory.forProtocol(Protocol), clock
    )
    protocol = door.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"GET /w")
    clock.advance(door.timeout)
    assert transport.disconnecting


def test_autobahn_s_debug_arguments_are_formatted_only_when_logged():
    import pprint

    import autobahn.twisted.websocket as autobahn_twisted
    import autobahn.util
    import autobahn.websocket.protocol as autobahn_protocol
    from twisted.internet.protocol import Protocol

    import gameserver._wire.protocol  # noqa: F401  (makes them lazy)

    options = [("openHandshakeTimeout", 5, "Factory"), ("applyMask", True, "Factory")]
    lazy = autobahn_protocol.pformat(options)
    assert not isinstance(lazy, str)
    assert f"{lazy}" == pprint.pformat(options) == str(lazy)
    for module in (autobahn_protocol, autobahn_twisted):
        name = module.hltype(Protocol.dataReceived)
        value = module.hlval(1234)
        assert not isinstance(name, str) and not isinstance(value, str)
        assert f"{name}" == autobahn.util.hltype(Protocol.dataReceived)
        assert f"{value:>6}" == format(autobahn.util.hlval(1234), ">6")
