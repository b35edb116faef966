"""Guest play: accounts with no password, made on request, that can be claimed."""

from __future__ import annotations

import re

import pytest_twisted

from gameserver.client import GameClient
from tests.conftest import PASSWORD, make_settings


async def _guest(server, body=None) -> GameClient:
    client = server.client()
    response = await client.http("POST", "/api/token/guest/", body)
    assert response.status == 200, response.body
    client.access = response.body["access"]
    client.refresh = response.body["refresh"]
    client.user_id = response.body["user"]["id"]
    client.username = response.body["user"]["username"]
    return client


@pytest_twisted.ensureDeferred
async def test_a_guest_gets_a_made_up_name_and_plays(start_any):
    server = await start_any()
    guest = await _guest(server)
    assert re.fullmatch(r"guest-[0-9a-f]{4}", guest.username)
    other = await _guest(server)
    assert other.username != guest.username
    # A guest can do what an account can: create a room, join it, chat.
    room = (await guest.create_room("guest room", "chat")).body
    assert room["owner"]["id"] == guest.user_id
    connection = await server.connect(guest)
    assert (await connection.join(room["id"]))["data"]["is_successful"] is True
    connection.send("CHAT_MESSAGE", room["id"], {"text": "hi as a guest"})
    chat = await connection.receive("CHAT_MESSAGE")
    assert chat["data"]["user"] == {"id": guest.user_id, "username": guest.username}
    # Its refresh token works like any other.
    refreshed = await guest.http(
        "POST", "/api/token/refresh/", {"refresh": guest.refresh}
    )
    assert refreshed.status == 200


@pytest_twisted.ensureDeferred
async def test_a_guest_may_choose_a_name_validated_like_any(start_any):
    server = await start_any()
    chosen = await _guest(server, {"username": "Wanderer"})
    assert chosen.username == "Wanderer"
    client = server.client()
    for body, code in [
        ({"username": "wanderer"}, 409),  # taken, in any case
        ({"username": "x"}, 400),
        ({"username": "no spaces"}, 400),
        ({"username": 5}, 400),
        ({"username": "guest-1f3a"}, 400),  # kept for made-up names
        ([1], 400),
    ]:
        response = await client.http("POST", "/api/token/guest/", body)
        assert response.status == code, (body, response.body)
    # Accounts cannot take a guest's name either, nor the guests' prefix.
    assert (await client.register("WANDERER", PASSWORD)).status == 409
    refused = await client.register("guest-abcd", PASSWORD)
    assert refused.status == 400
    assert "kept for guests" in refused.body["detail"]


@pytest_twisted.ensureDeferred
async def test_a_guest_cannot_log_in_with_a_password(start_any):
    server = await start_any()
    guest = await _guest(server)
    client = server.client()
    for password in ("", "anything at all"):
        response = await client.http(
            "POST", "/api/token/", {"username": guest.username, "password": password}
        )
        assert response.status == 401
        assert response.body["code"] == "bad_credentials"


@pytest_twisted.ensureDeferred
async def test_claiming_keeps_the_id_and_makes_a_full_account(start_any):
    server = await start_any()
    guest = await _guest(server)
    short = await guest.http("POST", "/api/users/claim/", {"password": "short"})
    assert short.status == 400
    claimed = await guest.http("POST", "/api/users/claim/", {"password": PASSWORD})
    assert claimed.status == 200
    assert claimed.body == {"id": guest.user_id, "username": guest.username}
    again = await guest.http("POST", "/api/users/claim/", {"password": PASSWORD})
    assert (again.status, again.body["code"]) == (409, "not_a_guest")
    logged = server.client()
    assert (await logged.login(guest.username, PASSWORD)).status == 200
    assert (await logged.connect()).protocol is not None
    # Nor can an account that was never a guest be claimed, or anyone without a token.
    account = await server.user()
    refused = await account.http("POST", "/api/users/claim/", {"password": PASSWORD})
    assert refused.status == 409
    anonymous = await server.client().http(
        "POST", "/api/users/claim/", {"password": PASSWORD}
    )
    assert anonymous.status == 401


@pytest_twisted.ensureDeferred
async def test_guests_are_made_at_a_bounded_rate(make_server):
    server = await make_server(make_settings(guest_rate=0.001, guest_burst=3))
    client = server.client()
    for _ in range(3):
        assert (await client.http("POST", "/api/token/guest/")).status == 200
    refused = await client.http("POST", "/api/token/guest/")
    assert refused.status == 429
    assert refused.body["code"] == "rate_limited"
    assert refused.headers.getRawHeaders(b"retry-after") == [b"1000"]
    # A refused request makes no account.
    assert (
        await client.http("POST", "/api/token/guest/", {"username": "late"})
    ).status == 429
    assert (await client.register("late", PASSWORD)).status == 201


@pytest_twisted.ensureDeferred
async def test_an_expired_guest_leaves_every_room_and_is_removed(start_any):
    from twisted.internet.task import Clock

    clock = Clock()
    clock.advance(1_800_000_000)
    settings = make_settings(refresh_lifetime=3600, guest_sweep=60)
    server = await start_any(settings, clock=clock)
    guest = await _guest(server, {"username": "traveller"})
    g = await server.connect(guest)
    # On Redis, a socket on another process too: closed from wherever the
    # guest is removed (each process's sweeper may be the one).
    elsewhere = None
    if start_any.mode == "redis":
        other = await start_any(settings, clock=clock)
        elsewhere = await other.connect(guest)
    bob, b = await server.socket()
    carol, c = await server.socket("carol")
    # The guest's own room, another room it sits in; and another guest, who
    # dropped out of a game, so that only its seat is left.
    own = (await guest.create_room("the guest's", "chat")).body["id"]
    other = (await server.room(carol))["id"]
    duel = (await server.room(carol, game="duel"))["id"]
    for connection, room in ((g, own), (b, own), (g, other), (c, other), (c, duel)):
        assert (await connection.join(room))["data"]["is_successful"] is True
    dropout = await _guest(server)
    d = await server.connect(dropout)
    assert (await d.join(duel))["data"]["is_successful"] is True
    await c.request("START_GAME", duel, reply="GAME_STARTED")
    d.abort()
    await c.receive("USER_DISCONNECTED", room_id=duel)

    clock.advance(3599)  # not yet: the refresh token is still good, and the
    # sweeper (every 60 s of the server's clock) has left the guests alone
    assert (
        await guest.http("POST", "/api/token/refresh/", {"refresh": guest.refresh})
    ).status == 200
    clock.advance(60)  # the next sweep finds both

    assert (await b.receive("ROOM_CLOSED", room_id=own))["room_id"] == own
    left = await c.receive("USER_LEFT", room_id=other)
    assert left["data"]["user"]["id"] == guest.user_id
    left = await c.receive("USER_LEFT", room_id=duel)
    assert left["data"]["user"]["id"] == dropout.user_id
    assert (await g.closed)[0] == 4001
    if elsewhere is not None:
        from twisted.internet import reactor

        assert (await elsewhere.closed.addTimeout(5, reactor))[0] == 4001
    # An hour on, carol's own tokens have expired too.
    assert (await carol.login("carol", PASSWORD)).status == 200
    for room, players in ((other, [carol.user_id]), (duel, [carol.user_id])):
        listed = (await carol.http("GET", f"/api/rooms/{room}/")).body
        assert [p["id"] for p in listed["players"]] == players
    assert (await carol.http("GET", f"/api/rooms/{own}/")).status == 404
    refused = await guest.http(
        "POST", "/api/token/refresh/", {"refresh": guest.refresh}
    )
    assert refused.status == 401
    # The name is free again, and nothing is left to sweep.
    assert (await server.client().register("traveller", PASSWORD)).status == 201
    assert await server.server.guests.sweep() == 0


@pytest_twisted.ensureDeferred
async def test_a_guest_s_access_token_is_refused_once_its_time_is_over(make_server):
    """Before the sweeper gets to it: the access token may outlive the guest."""
    from twisted.internet.task import Clock

    clock = Clock()
    clock.advance(1_800_000_000)
    settings = make_settings(
        refresh_lifetime=3630, access_lifetime=7200, guest_sweep=60
    )
    server = await make_server(settings, clock=clock)
    guest = await _guest(server)
    clock.advance(3629)
    assert (await guest.http("GET", "/api/rooms/")).status == 200
    clock.advance(2)  # over, and the next sweep is 29 s away
    refused = await guest.http("GET", "/api/rooms/")
    assert (refused.status, refused.body["code"]) == (401, "token_expired")
    refused = await guest.http("POST", "/api/users/claim/", {"password": PASSWORD})
    assert refused.status == 401


@pytest_twisted.ensureDeferred
async def test_on_redis_only_seats_held_while_away_are_indexed(redis_url):
    """Joining and leaving write no index; a player away mid-game is indexed
    (the present rooms' index misses them) until back or gone."""
    from gameserver._redis import keys
    from tests.conftest import start_on_redis, stop

    server = await start_on_redis(redis_url)
    try:
        redis = server.server.backend.redis
        alice, a = await server.socket()
        bob, b = await server.socket()
        duel = (await server.room(alice, game="duel"))["id"]

        async def seats(user) -> set[int]:
            return {int(r) for r in await redis("SMEMBERS", keys.user_seats(user))}

        for connection in (a, b):
            assert (await connection.join(duel))["data"]["is_successful"] is True
        await a.request("START_GAME", duel, reply="GAME_STARTED")
        assert await seats(bob.user_id) == set()
        b.abort()
        await a.receive("USER_DISCONNECTED", room_id=duel)
        assert await seats(bob.user_id) == {duel}
        b = await server.connect(bob)
        assert (await b.join(duel))["data"]["is_successful"] is True
        assert await seats(bob.user_id) == set()
        b.abort()
        await a.receive("USER_DISCONNECTED", room_id=duel)
        b = await server.connect(bob)
        assert (await b.leave(duel))["data"]["is_successful"] is True
        assert await seats(bob.user_id) == set()
        assert await seats(alice.user_id) == set()
    finally:
        await stop(server)
