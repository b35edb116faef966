"""``gameserver.client`` across a dropped socket: seqs, resuming, spectating.

A ``Connection`` keeps the highest ``seq`` it received in each room and
drops a room message whose ``seq`` is not above it; ``GameClient.reconnect``
opens a new socket and joins every room again with ``resume``, so what was
sent while the client was away arrives after it, once and in order. These
run against real servers, in memory and on Redis (there the client comes
back through the other process).
"""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from gameserver import BaseRouter, Game
from gameserver.client import Connection, GameClient, JoinedRoom
from tests.conftest import GAMES, Running


class PingRouter(BaseRouter):
    def get_routes(self, routes: Any = None) -> dict:
        return super().get_routes({"PING": self.ping})

    def ping(self, room: Any, user: Any, helper: Any, data: dict) -> None:
        helper.broadcast("PING", {"n": data.get("n")})


class Pinger(Game):
    """Two players; PING is broadcast."""

    name = "pinger"
    min_players = 2
    max_players = 2
    routers = (PingRouter,)


RESUME_GAMES = {**GAMES, "pinger": Pinger()}


async def _servers(start_any) -> tuple[Running, Running]:
    """One server, or two on one Redis: the client then comes back through
    the process it was not on."""
    first = await start_any(games=RESUME_GAMES)
    second = await start_any(games=RESUME_GAMES) if start_any.mode == "redis" else first
    return first, second


def _same_user(client: GameClient, server: Running) -> GameClient:
    """``client``'s user, speaking to ``server``."""
    other = server.client()
    other.access, other.refresh = client.access, client.refresh
    return other


async def _game(server: Running) -> tuple[Connection, GameClient, Connection, int]:
    """Alice and Bob seated in a pinger room, its game started."""
    alice, a = await server.socket()
    bob, b = await server.socket()
    room_id = (await server.room(alice, game="pinger"))["id"]
    assert (await a.join(room_id))["data"]["is_successful"]
    assert (await b.join(room_id))["data"]["is_successful"]
    await a.receive("USER_JOINED", room_id=room_id)
    await a.request("START_GAME", room_id, reply="GAME_STARTED")
    await b.receive("GAME_STARTED", room_id=room_id)
    return a, bob, b, room_id


async def _until(
    connection: Connection, room_id: int, done: Any, timeout: float = 5
) -> list[dict]:
    """The room's messages, in order, up to the first one ``done`` accepts."""
    got: list[dict] = []
    while True:
        message = await connection.receive(room_id=room_id, timeout=timeout)
        got.append(message)
        if done(message):
            return got


def _chat(text: str) -> Any:
    return lambda m: m["type"] == "CHAT_MESSAGE" and m["data"]["text"] == text


async def _settle(seconds: float = 0.2) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def _say(connection: Connection, room_id: int, text: str) -> None:
    connection.send("CHAT_MESSAGE", room_id, {"text": text})
    await connection.receive("CHAT_MESSAGE", room_id=room_id)


@pytest_twisted.ensureDeferred
async def test_what_was_sent_while_away_arrives_once_in_order(start_any):
    here, there = await _servers(start_any)
    a, bob, b, room_id = await _game(here)
    await _say(a, room_id, "before")
    await b.receive("CHAT_MESSAGE", room_id=room_id)
    last = b.last_seq(room_id)
    assert isinstance(last, int)
    assert b.rooms == {room_id: JoinedRoom(password=None, spectator=False)}

    b.abort()
    await a.receive("USER_DISCONNECTED", room_id=room_id)
    await _say(a, room_id, "one")
    a.send("PING", room_id, {"n": 1})
    await a.receive("PING", room_id=room_id)
    await _say(a, room_id, "two")

    b2 = await _same_user(bob, there).reconnect(b)
    there.connections.append(b2)
    answer = b2.rejoined[room_id]
    assert answer["type"] == "JOIN_ROOM"
    assert answer["data"]["is_successful"] is True
    assert answer["data"]["resumed"] is True
    assert "seq" not in answer  # a direct answer carries no seq
    missed = await _until(b2, room_id, _chat("two"))
    # Exactly what Bob missed, in order, each with its own seq.
    assert [m["type"] for m in missed if m["type"] != "USER_DISCONNECTED"] == [
        "CHAT_MESSAGE",
        "PING",
        "CHAT_MESSAGE",
    ]
    assert [m["data"]["text"] for m in missed if m["type"] == "CHAT_MESSAGE"] == [
        "one",
        "two",
    ]
    seqs = [m["seq"] for m in missed]
    assert seqs == sorted(set(seqs)) and seqs[0] > last
    assert b2.last_seq(room_id) == seqs[-1]
    assert not any(m["type"] == "CHAT_HISTORY" for m in missed)

    # And from then on, live: nothing of the above comes a second time.
    await a.receive("USER_JOINED", room_id=room_id)
    await _say(a, room_id, "three")
    after = await _until(b2, room_id, _chat("three"))
    assert [m["type"] for m in after] == ["CHAT_MESSAGE"]
    await _settle()
    assert b2.pending() == []
    assert b2.rooms == {room_id: JoinedRoom()}


@pytest_twisted.ensureDeferred
async def test_a_spectator_comes_back_a_spectator_and_gets_what_it_missed(
    start_any,
):
    here, there = await _servers(start_any)
    a, bob, b, room_id = await _game(here)
    carol, c = await here.socket()
    watched = await c.spectate(room_id)
    assert watched["data"]["is_successful"] is True
    assert watched["data"]["spectator"] is True
    await c.receive("CHAT_HISTORY", room_id=room_id)
    await _say(a, room_id, "for the audience")
    await c.receive("CHAT_MESSAGE", room_id=room_id)
    assert c.rooms == {room_id: JoinedRoom(spectator=True)}

    c.abort()
    left = await a.receive("USER_LEFT", room_id=room_id)
    assert left["data"]["spectator"] is True
    await _say(a, room_id, "while you were away")

    c2 = await _same_user(carol, there).reconnect(c)
    there.connections.append(c2)
    answer = c2.rejoined[room_id]["data"]
    assert answer["is_successful"] is True
    assert answer["spectator"] is True
    assert answer["resumed"] is True
    missed = await _until(c2, room_id, _chat("while you were away"))
    texts = [m["data"]["text"] for m in missed if m["type"] == "CHAT_MESSAGE"]
    assert texts == ["while you were away"]
    assert c2.rooms == {room_id: JoinedRoom(spectator=True)}
    # Still only watching: a game message is refused.
    refused = await c2.request("PING", room_id, {"n": 2}, reply="PING")
    assert refused["type"] == "ERROR"
    assert refused["data"]["code"] == "spectator"


@pytest_twisted.ensureDeferred
async def test_a_password_room_is_joined_again_with_its_password(start_any):
    """A chat room (no game: the seat goes with the socket) joined with a
    password: the reconnect gives it again, and the chat missed arrives."""
    here, there = await _servers(start_any)
    alice, a = await here.socket()
    bob, b = await here.socket()
    room_id = (await here.room(alice, password="mint"))["id"]
    assert (await a.join(room_id))["data"]["is_successful"]
    assert (await b.join(room_id, "mint"))["data"]["is_successful"]
    await _say(a, room_id, "hello")
    await b.receive("CHAT_MESSAGE", room_id=room_id)
    assert b.rooms == {room_id: JoinedRoom(password="mint")}

    b.abort()
    await a.receive("USER_LEFT", room_id=room_id)
    await _say(a, room_id, "you left")
    b2 = await _same_user(bob, there).reconnect(b)
    there.connections.append(b2)
    assert b2.rejoined[room_id]["data"]["is_successful"] is True
    # The seat went with the socket, but the room's log still reaches back:
    # a resume into a new seat, and "you left" arrives exactly once.
    assert b2.rejoined[room_id]["data"]["resumed"] is True
    missed = await _until(b2, room_id, _chat("you left"))
    assert sum(_chat("you left")(m) for m in missed) == 1
    await _settle()
    assert not any(_chat("you left")(m) for m in b2.pending())


@pytest_twisted.ensureDeferred
async def test_a_message_seen_already_is_dropped(running):
    """The safety net: a room message whose seq is not above the last seen
    in its room never reaches ``receive``; other rooms' seqs are their own."""
    alice, a = await running.socket()
    room_id = (await running.room(alice))["id"]
    assert (await a.join(room_id))["data"]["is_successful"]

    def deliver(seq: int, room: int, text: str) -> None:
        message = {"seq": seq, "type": "NOTE", "room_id": room, "data": {"t": text}}
        a.protocol.onMessage(json.dumps(message).encode(), False)

    base = (a.last_seq(room_id) or 0) + 100
    deliver(base, room_id, "first")
    deliver(base, room_id, "again")  # the same seq
    deliver(base - 1, room_id, "older")
    deliver(base + 2, room_id, "next")  # a gap is fine
    deliver(1, room_id + 1000, "another room")
    got = [(await a.receive("NOTE"))["data"]["t"] for _ in range(3)]
    assert got == ["first", "next", "another room"]
    assert a.dropped == 2
    assert a.last_seq(room_id) == base + 2
    assert a.last_seq(room_id + 1000) == 1
    assert a.pending() == []


@pytest_twisted.ensureDeferred
async def test_rooms_left_or_deleted_are_not_joined_again(running):
    alice, a = await running.socket()
    bob, b = await running.socket()
    kept, left, deleted = [
        (await running.room(alice, name=f"room {n}"))["id"] for n in range(3)
    ]
    for room_id in (kept, left, deleted):
        assert (await b.join(room_id))["data"]["is_successful"]
    watched = (await running.room(alice, name="watched"))["id"]
    assert (await b.spectate(watched))["data"]["spectator"] is True
    assert (await b.leave(left))["data"]["is_successful"]
    response = await alice.http("DELETE", f"/api/rooms/{deleted}/")
    assert response.status == 204
    await b.receive("ROOM_CLOSED", room_id=deleted)
    quick = await b.quick_join("duel")
    assert quick["data"]["is_successful"] is True
    found = quick["room_id"]
    assert b.rooms == {
        kept: JoinedRoom(),
        watched: JoinedRoom(spectator=True),
        found: JoinedRoom(),
    }

    b.abort()
    b2 = await bob.reconnect(b)
    running.connections.append(b2)
    assert sorted(b2.rejoined) == sorted([kept, watched, found])
    assert b2.rejoined[watched]["data"]["spectator"] is True
    assert b2.rooms == b.rooms


class GateRouter(BaseRouter):
    """``SLOW`` waits for the test's gate, then tells everyone."""

    gate: Any = None

    def get_routes(self, routes: Any = None) -> dict:
        return super().get_routes({"SLOW": self.slow})

    async def slow(self, room: Any, user: Any, helper: Any, data: dict) -> None:
        await GateRouter.gate
        helper.broadcast("SLOW_DONE", {})


class Gated(Game):
    name = "gated"
    min_players = 1
    max_players = 2
    routers = (GateRouter,)


@pytest_twisted.ensureDeferred
async def test_a_message_that_comes_before_the_rejoin_answer_comes_again_in_order(
    make_server,
):
    """The server still holds the old socket (a drop it has not noticed), so
    the new one gets the room's messages as soon as it is validated: those
    before the rejoin's answer are dropped, and the resume brings them."""
    from twisted.internet.defer import Deferred, ensureDeferred

    server = await make_server(games={**GAMES, "gated": Gated()})
    alice, a = await server.socket()
    bob, b = await server.socket()
    room_id = (await server.room(alice, game="gated"))["id"]
    assert (await a.join(room_id))["data"]["is_successful"]
    assert (await b.join(room_id))["data"]["is_successful"]
    await _say(a, room_id, "before")
    await b.receive("CHAT_MESSAGE", room_id=room_id)
    last = b.last_seq(room_id)

    GateRouter.gate = Deferred()
    a.send("SLOW", room_id)  # the room's turn waits: the rejoin queues behind
    room = server.server.engine.rooms[room_id]
    back = ensureDeferred(bob.reconnect(b))  # b itself stays open
    for _ in range(250):
        if any(w.kind == "join" for w in room.queue):
            break
        await _settle(0.01)
    else:
        raise AssertionError("the rejoin never reached the room")
    GateRouter.gate.callback(None)  # SLOW_DONE reaches the new socket first
    b2 = await back
    server.connections.append(b2)
    assert b2.rejoined[room_id]["data"]["resumed"] is True
    assert b2.dropped == 1
    missed = await _until(b2, room_id, lambda m: m["type"] == "SLOW_DONE")
    assert [m["type"] for m in missed] == ["SLOW_DONE"]
    assert missed[0]["seq"] > last
    await _say(a, room_id, "after")
    assert [m["type"] for m in await _until(b2, room_id, _chat("after"))] == [
        "CHAT_MESSAGE"
    ]
    await _settle()
    assert b2.pending() == []
