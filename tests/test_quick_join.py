"""QUICK_JOIN: the fullest open room of a pool, or a new one, atomically."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.internet.task import deferLater

from gameserver import Game, GameServerError
from tests.conftest import GAMES


class Trio(Game):
    name = "trio"
    min_players = 1
    max_players = 3


class ByLanguage(Game):
    """Players are matched with others who speak their language."""

    name = "parley"
    min_players = 2
    max_players = 4

    def match_key(self, user: Any, options: dict[str, Any]) -> str:
        language = options.get("language", "en")
        if language not in ("en", "fr"):
            raise GameServerError("'language' must be en or fr", code="invalid")
        return language


QUICK_GAMES = {**GAMES, "trio": Trio(), "parley": ByLanguage()}


async def _quick(connection, game: str, **options: Any) -> dict:
    data: dict[str, Any] = {"game": game}
    if options:
        data["options"] = options
    return await connection.request("QUICK_JOIN", data=data)


async def _players(client, room_id: int) -> list[int]:
    room = (await client.http("GET", f"/api/rooms/{room_id}/")).body
    return [p["id"] for p in room["players"]]


@pytest_twisted.ensureDeferred
async def test_forty_at_once_over_two_processes_fill_exactly_twenty_rooms(start_any):
    """N users quick-join a 2-player game at the same moment: ⌈N/2⌉ rooms,
    none over capacity, nobody left unseated."""
    servers = [await start_any(games=QUICK_GAMES)]
    if start_any.mode == "redis":
        servers.append(await start_any(games=QUICK_GAMES))
    sockets = []
    for n in range(40):
        server = servers[n % len(servers)]
        sockets.append(await server.socket())
    for _, connection in sockets:  # all sent before any answer is read
        connection.send("QUICK_JOIN", data={"game": "duel"})
    replies = await gatherResults(
        [connection.receive("QUICK_JOIN", timeout=20) for _, connection in sockets]
    )
    assert all(r["data"]["is_successful"] for r in replies), replies
    seated = Counter(r["room_id"] for r in replies)
    assert len(seated) == 20
    assert set(seated.values()) == {2}
    client = sockets[0][0]
    for room_id in seated:
        assert len(await _players(client, room_id)) == 2
    everyone = [p for room_id in seated for p in await _players(client, room_id)]
    assert sorted(everyone) == sorted(c.user_id for c, _ in sockets)


@pytest_twisted.ensureDeferred
async def test_the_fullest_open_room_first_and_never_a_closed_one(start_any):
    server = await start_any(games=QUICK_GAMES)
    alice, a = await server.socket()
    bob, b = await server.socket()
    carol, c = await server.socket()
    fuller = (await server.room(alice, game="trio"))["id"]
    emptier = (await server.room(carol, game="trio"))["id"]
    locked = (await server.room(bob, game="trio", password="mint"))["id"]
    for connection, room in ((a, fuller), (b, fuller), (c, emptier), (b, locked)):
        assert (await connection.join(room))["data"]["is_successful"] is True
    dave, d = await server.socket()
    reply = await _quick(d, "trio")
    assert reply["room_id"] == fuller
    assert reply["data"]["is_successful"] is True
    assert reply["data"]["room"]["id"] == fuller
    assert [p["id"] for p in reply["data"]["room"]["players"]] == [
        alice.user_id,
        bob.user_id,
        dave.user_id,
    ]
    # Then everything a JOIN_ROOM brings: the others see them, the backlog.
    joined = [await a.receive("USER_JOINED", room_id=fuller) for _ in range(2)]
    assert [j["data"]["user"]["id"] for j in joined] == [bob.user_id, dave.user_id]
    assert "messages" in (await d.receive("CHAT_HISTORY", room_id=fuller))["data"]
    # Full now: the next one goes to the other open room, not the locked one.
    erin, e = await server.socket()
    assert (await _quick(e, "trio"))["room_id"] == emptier
    # Asked again, a seated user gets the same seat.
    assert (await _quick(e, "trio"))["room_id"] == emptier


@pytest_twisted.ensureDeferred
async def test_a_new_room_is_owned_by_the_first_and_sized_by_the_game(start_any):
    server = await start_any(games=QUICK_GAMES)
    alice, a = await server.socket()
    reply = await _quick(a, "trio")
    room = reply["data"]["room"]
    assert room["owner"]["id"] == alice.user_id
    assert room["max_players"] == 3
    assert room["game"] == "trio"
    assert room["has_password"] is False
    started = await a.request("START_GAME", reply["room_id"], reply="GAME_STARTED")
    assert started["type"] == "GAME_STARTED"
    # A room in game is not open: the next quick join makes another.
    bob, b = await server.socket()
    assert (await _quick(b, "trio"))["room_id"] != reply["room_id"]


@pytest_twisted.ensureDeferred
async def test_the_game_s_match_key_keeps_pools_apart(start_any):
    server = await start_any(games=QUICK_GAMES)
    english = [await server.socket() for _ in range(2)]
    french = await server.socket()
    rooms = [(await _quick(c, "parley"))["room_id"] for _, c in english]
    assert rooms[0] == rooms[1]
    assert (await _quick(french[1], "parley", language="fr"))["room_id"] != rooms[0]
    refused = await _quick(french[1], "parley", language="de")
    assert refused["data"] == {
        "is_successful": False,
        "error": "invalid",
        "detail": "'language' must be en or fr",
    }


@pytest_twisted.ensureDeferred
async def test_refusals_leave_the_socket_working(start_any):
    server = await start_any(games=QUICK_GAMES)
    client, connection = await server.socket()
    for data, error in [
        ({"game": "nope"}, "invalid"),
        ({}, "invalid"),
        ({"game": "trio", "options": [1]}, "invalid"),
    ]:
        reply = await connection.request("QUICK_JOIN", data=data)
        assert "room_id" not in reply
        assert reply["data"]["is_successful"] is False
        assert reply["data"]["error"] == error, data
    connection.send("QUICK_JOIN", 5, {"game": "trio"})
    reply = await connection.receive("QUICK_JOIN")
    assert reply["data"]["error"] == "bad_message"
    assert (await _quick(connection, "trio"))["data"]["is_successful"] is True


class Gated(Game):
    """A game whose join hook waits for the test: a join that takes a while."""

    name = "gated"
    min_players = 1
    max_players = 4
    gate: Any = None

    async def on_join(self, room: Any, user: Any, helper: Any) -> Any:
        if self.gate is not None:
            await self.gate


@pytest_twisted.ensureDeferred
async def test_a_socket_gone_while_waiting_for_its_turn_is_not_seated(start_any):
    from twisted.internet.defer import Deferred

    gated = Gated()
    server = await start_any(games={**QUICK_GAMES, "gated": gated})
    gated.gate = Deferred()
    alice, a = await server.socket()
    bob, b = await server.socket()
    lock = server.server.matchmaker._locks

    async def until(condition) -> None:
        for _ in range(250):
            if condition():
                return
            await deferLater(reactor, 0.01, lambda: None)
        raise AssertionError("not reached in time")

    a.send("QUICK_JOIN", data={"game": "gated"})  # holds the pool while it joins
    await until(lambda: ("gated", "") in lock and lock["gated", ""].locked)
    b.send("QUICK_JOIN", data={"game": "gated"})  # waits behind it
    await until(lambda: lock["gated", ""].waiting)
    b.abort()
    await b.closed
    gated.gate.callback(None)
    reply = await a.receive("QUICK_JOIN")
    assert reply["data"]["is_successful"] is True, reply
    gated.gate = None
    carol, c = await server.socket()
    assert (await _quick(c, "gated"))["room_id"] == reply["room_id"]
    assert await _players(alice, reply["room_id"]) == [alice.user_id, carol.user_id]


@pytest_twisted.ensureDeferred
async def test_a_room_its_owner_left_is_not_offered(start_any):
    server = await start_any(games=QUICK_GAMES)
    alice, a = await server.socket()
    first = (await _quick(a, "trio"))["room_id"]
    assert (await a.leave(first))["data"]["is_successful"] is True
    bob, b = await server.socket()
    second = (await _quick(b, "trio"))["room_id"]
    assert second != first  # alice's room could never start: only she can
    assert (await b.request("START_GAME", second, reply="GAME_STARTED"))["type"] == (
        "GAME_STARTED"
    )
    # Once its owner is back, the room is offered again.
    assert (await a.join(first))["data"]["is_successful"] is True
    carol, c = await server.socket()
    assert (await _quick(c, "trio"))["room_id"] == first


async def _reserve(client, game: str, **options: Any):
    body: dict[str, Any] = {"game": game}
    if options:
        body["options"] = options
    return await client.http("POST", "/api/rooms/quick/", body)


@pytest_twisted.ensureDeferred
async def test_over_http_a_seat_is_held_until_the_user_joins(start_any):
    from tests.conftest import make_settings

    servers = [await start_any(make_settings(seat_hold=30), games=QUICK_GAMES)]
    if start_any.mode == "redis":
        servers.append(await start_any(make_settings(seat_hold=30), games=QUICK_GAMES))
    first, last = servers[0], servers[-1]
    alice = await first.user()
    held = await _reserve(alice, "duel")
    assert held.status == 200, held.body
    room = held.body["room"]
    assert room["players"] == [] and room["owner"]["id"] == alice.user_id
    assert held.body["reserved_until"] > 0
    # A second finds that room (the fullest), its last seat held for them.
    bob = await last.user()
    again = await _reserve(bob, "duel")
    assert again.body["room"]["id"] == room["id"]
    # Held seats count as taken: a third user's quick join makes a new room,
    # and a JOIN_ROOM into the first is refused.
    carol, c = await first.socket()
    assert (await _reserve(carol, "duel")).body["room"]["id"] != room["id"]
    refused = await c.join(room["id"])
    assert refused["data"]["error"] == "room_full"
    # Each takes the held seat with a JOIN_ROOM, on any process.
    a = await last.connect(alice)
    b = await first.connect(bob)
    assert (await a.join(room["id"]))["data"]["is_successful"] is True
    joined = await b.join(room["id"])
    assert joined["data"]["is_successful"] is True
    assert [p["id"] for p in joined["data"]["room"]["players"]] == [
        alice.user_id,
        bob.user_id,
    ]
    # Asked again once seated, the answer is that seat.
    same = await _reserve(bob, "duel")
    assert same.body["room"]["id"] == room["id"]
    assert same.body["reserved_until"] is None


@pytest_twisted.ensureDeferred
async def test_over_http_refusals_have_their_status(start_any):
    server = await start_any(games=QUICK_GAMES)
    alice = await server.user()
    for body, status, code in [
        ({"game": "nope"}, 400, "invalid"),
        ([1], 400, "invalid"),
        ({"game": "parley", "options": {"language": "de"}}, 400, "invalid"),
    ]:
        response = await alice.http("POST", "/api/rooms/quick/", body)
        assert (response.status, response.body["code"]) == (status, code), body
    anonymous = server.client()
    response = await anonymous.http("POST", "/api/rooms/quick/", {"game": "duel"})
    assert response.status == 401


@pytest_twisted.ensureDeferred
async def test_a_held_seat_lapses_after_its_time(make_server):
    from twisted.internet.task import Clock

    from tests.conftest import make_settings

    clock = Clock()
    clock.advance(1_000)
    server = await make_server(
        make_settings(seat_hold=10), clock=clock, games=QUICK_GAMES
    )
    alice, bob, carol = [await server.user() for _ in range(3)]
    room_id = (await _reserve(alice, "duel")).body["room"]["id"]
    assert (await _reserve(bob, "duel")).body["room"]["id"] == room_id
    c = await server.connect(carol)
    assert (await c.join(room_id))["data"]["error"] == "room_full"
    clock.advance(11)  # bob never came
    assert (await c.join(room_id))["data"]["is_successful"] is True
    # Alice's hold lapsed too, but her seat is free still: she takes it.
    a = await server.connect(alice)
    assert (await a.join(room_id))["data"]["is_successful"] is True
    b = await server.connect(bob)
    assert (await b.join(room_id))["data"]["error"] == "room_full"


@pytest_twisted.ensureDeferred
async def test_forty_http_quick_joins_at_once_hold_seats_in_exactly_twenty_rooms(
    start_any,
):
    servers = [await start_any(games=QUICK_GAMES)]
    if start_any.mode == "redis":
        servers.append(await start_any(games=QUICK_GAMES))
    users = [await servers[n % len(servers)].user() for n in range(40)]
    answers = await gatherResults(
        [ensureDeferred(_reserve(user, "duel")) for user in users]
    )
    assert all(a.status == 200 for a in answers), [a.body for a in answers]
    rooms = Counter(a.body["room"]["id"] for a in answers)
    assert len(rooms) == 20 and set(rooms.values()) == {2}
    for n, (user, answer) in enumerate(zip(users, answers, strict=True)):
        socket = await servers[(n + 1) % len(servers)].connect(user)
        joined = await socket.join(answer.body["room"]["id"])
        assert joined["data"]["is_successful"] is True, joined
    for room_id in rooms:
        assert len(await _players(users[0], room_id)) == 2


@pytest_twisted.ensureDeferred
async def test_a_user_whose_held_seat_lapsed_gets_their_own_room_again(make_server):
    """Asked again and again by a client that never joins, HTTP quick join
    makes one room, not one per ask."""
    from twisted.internet.task import Clock

    from tests.conftest import make_settings

    clock = Clock()
    clock.advance(1_000)
    server = await make_server(
        make_settings(seat_hold=10), clock=clock, games=QUICK_GAMES
    )
    alice = await server.user()
    first = (await _reserve(alice, "duel")).body["room"]["id"]
    for _ in range(3):
        clock.advance(11)
        assert (await _reserve(alice, "duel")).body["room"]["id"] == first
    # With another open room about, that one is preferred.
    clock.advance(11)
    bob, b = await server.socket()
    other = (await server.room(bob, game="duel"))["id"]
    assert (await b.join(other))["data"]["is_successful"] is True
    assert (await _reserve(alice, "duel")).body["room"]["id"] == other
