"""Spectators: watching a room without a seat, in memory and across processes."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from gameserver import BaseRouter, Game
from tests.conftest import GAMES


class ShowRouter(BaseRouter):
    def get_routes(self, routes: Any = None) -> dict:
        return super().get_routes(
            {"PING": self.ping, "WHISPER": self.whisper, "HUDDLE": self.huddle}
        )

    def ping(self, room: Any, user: Any, helper: Any, data: dict) -> None:
        helper.broadcast("PING", {"n": data.get("n")})

    def whisper(self, room: Any, user: Any, helper: Any, data: dict) -> None:
        helper.send_to(data["to"], "WHISPER", {"secret": "for you"})

    def huddle(self, room: Any, user: Any, helper: Any, data: dict) -> None:
        helper.group_add("red")
        helper.group_send("red", "HUDDLE", {"plan": "go left"})


class Show(Game):
    """Two players; a spectator is told how many watch."""

    name = "show"
    min_players = 2
    max_players = 2
    max_spectators = 2
    routers = (ShowRouter,)

    def on_spectate(self, room: Any, user: Any, helper: Any) -> None:
        helper.self_send("VIEW", {"watching": sorted(room.spectators)})


SHOW_GAMES = {**GAMES, "show": Show()}


async def _servers(start_any) -> tuple[Any, Any]:
    """One server, or two on one Redis: the spectator then watches from the
    process that does not own the room."""
    first = await start_any(games=SHOW_GAMES)
    second = await start_any(games=SHOW_GAMES) if start_any.mode == "redis" else first
    return first, second


async def _spectate(connection, room_id: int, **data: Any) -> dict:
    return await connection.request("JOIN_ROOM", room_id, {"spectate": True, **data})


async def _room(client, room_id: int) -> dict:
    return (await client.http("GET", f"/api/rooms/{room_id}/")).body


@pytest_twisted.ensureDeferred
async def test_a_spectator_watches_a_game_chats_and_cannot_play(start_any):
    here, there = await _servers(start_any)
    alice, a = await here.socket()
    bob, b = await here.socket()
    room_id = (await here.room(alice, game="show"))["id"]
    assert (await a.join(room_id))["data"]["is_successful"]
    assert (await b.join(room_id))["data"]["is_successful"]
    await a.receive("USER_JOINED", room_id=room_id)
    await a.request("START_GAME", room_id, reply="GAME_STARTED")
    carol, c = await there.socket()

    reply = await _spectate(c, room_id)
    assert reply["data"]["is_successful"] is True
    assert reply["data"]["spectator"] is True
    assert reply["data"]["room"]["spectators"] == 1
    assert reply["data"]["room"]["state"] == "in_game"
    assert len(reply["data"]["room"]["players"]) == 2  # no seat taken
    assert "messages" in (await c.receive("CHAT_HISTORY", room_id=room_id))["data"]
    view = await c.receive("VIEW", room_id=room_id)
    assert view["data"] == {"watching": [carol.user_id]}
    joined = await a.receive("USER_JOINED", room_id=room_id)
    assert joined["data"]["user"]["id"] == carol.user_id
    assert joined["data"]["spectator"] is True
    assert (await _room(alice, room_id))["spectators"] == 1

    # Broadcasts reach the spectator; one player's or one team's do not.
    a.send("WHISPER", room_id, {"to": bob.user_id})
    assert (await b.receive("WHISPER"))["data"] == {"secret": "for you"}
    a.send("HUDDLE", room_id)
    await a.receive("HUDDLE")
    a.send("PING", room_id, {"n": 1})
    seen = await c.receive("WHISPER", "HUDDLE", "PING", room_id=room_id)
    assert seen["type"] == "PING"

    # A spectator may chat, and everyone sees it; a game message is refused.
    c.send("CHAT_MESSAGE", room_id, {"text": "go alice"})
    said = await b.receive("CHAT_MESSAGE", room_id=room_id)
    assert said["data"]["user"]["id"] == carol.user_id
    for type_ in ("PING", "START_GAME"):
        refused = await c.request(type_, room_id, {"n": 2}, reply="ERROR")
        assert refused["data"]["code"] == "spectator", type_
        assert refused["data"]["request_type"] == type_

    # Leaving: the others see a spectator go, and the count is back to 0.
    assert (await c.leave(room_id))["data"]["is_successful"] is True
    left = await a.receive("USER_LEFT", room_id=room_id)
    assert left["data"]["user"]["id"] == carol.user_id
    assert left["data"]["spectator"] is True
    assert (await _room(alice, room_id))["spectators"] == 0
    assert (await _room(alice, room_id))["state"] == "in_game"
    refused = await c.request("PING", room_id, {"n": 3}, reply="ERROR")
    assert refused["data"]["code"] == "not_in_room"


@pytest_twisted.ensureDeferred
async def test_the_password_the_cap_and_seated_players(start_any):
    here, there = await _servers(start_any)
    alice, a = await here.socket()
    room_id = (await here.room(alice, game="show", password="mint"))["id"]
    assert (await a.join(room_id))["data"]["is_successful"]
    refused = await _spectate(a, room_id)
    assert refused["data"]["is_successful"] is False
    assert refused["data"]["error"] == "seated"
    watchers = [await there.socket() for _ in range(3)]
    _, first = watchers[0]
    assert (await _spectate(first, room_id))["data"]["error"] == "wrong_password"
    assert (await _spectate(first, room_id, password="nope"))["data"][
        "error"
    ] == "wrong_password"
    for _, connection in watchers[:2]:
        reply = await _spectate(connection, room_id, password="mint")
        assert reply["data"]["is_successful"] is True
    # Asked again, a spectator is still one spectator.
    again = await _spectate(first, room_id, password="mint")
    assert again["data"]["room"]["spectators"] == 2
    full = await _spectate(watchers[2][1], room_id, password="mint")
    assert full["data"]["is_successful"] is False
    assert full["data"]["error"] == "spectators_full"
    bad = await first.request("JOIN_ROOM", room_id, {"spectate": "yes"})
    assert bad["data"]["error"] == "invalid"
    # The socket still works after each refusal.
    first.send("CHAT_MESSAGE", room_id, {"text": "still here"})
    assert (await a.receive("CHAT_MESSAGE"))["data"]["text"] == "still here"


@pytest_twisted.ensureDeferred
async def test_a_spectator_who_disconnects_simply_leaves_and_one_may_take_a_seat(
    start_any,
):
    here, there = await _servers(start_any)
    alice, a = await here.socket()
    room_id = (await here.room(alice, game="show"))["id"]
    assert (await a.join(room_id))["data"]["is_successful"]
    bob, b = await there.socket()
    carol, c = await there.socket()
    assert (await _spectate(b, room_id))["data"]["is_successful"]
    assert (await _spectate(c, room_id))["data"]["is_successful"]
    for _ in range(2):
        await a.receive("USER_JOINED", room_id=room_id)

    # A spectator takes the free seat: a player now, announced as one.
    seated = await b.join(room_id)
    assert seated["data"]["is_successful"] is True
    assert seated["data"]["room"]["spectators"] == 1
    assert [p["id"] for p in seated["data"]["room"]["players"]] == [
        alice.user_id,
        bob.user_id,
    ]
    joined = await a.receive("USER_JOINED", room_id=room_id)
    assert joined["data"]["user"]["id"] == bob.user_id
    assert "spectator" not in joined["data"]
    assert joined["data"]["was_spectator"] is True
    await a.request("START_GAME", room_id, reply="GAME_STARTED")
    b.send("PING", room_id, {"n": 1})
    assert (await a.receive("PING"))["data"] == {"n": 1}

    # A spectator's disconnect in a game leaves (a player's keeps the seat).
    c.abort()
    left = await a.receive("USER_LEFT", room_id=room_id)
    assert left["data"]["user"]["id"] == carol.user_id
    assert left["data"]["spectator"] is True
    room = await _room(alice, room_id)
    assert room["spectators"] == 0
    assert len(room["players"]) == 2


@pytest_twisted.ensureDeferred
async def test_a_spectator_is_one_member_whichever_process_its_sockets_are_on(
    start_any,
):
    here, there = await _servers(start_any)
    alice, a = await here.socket()
    room_id = (await here.room(alice, game="show"))["id"]
    assert (await a.join(room_id))["data"]["is_successful"]
    carol, c1 = await here.socket()
    carol_there = there.client()
    carol_there.access, carol_there.refresh = carol.access, carol.refresh
    c2 = await there.connect(carol_there)  # before watching, on the other process
    assert (await _spectate(c2, room_id))["data"]["is_successful"]
    await a.receive("USER_JOINED", room_id=room_id)
    a.send("PING", room_id, {"n": 7})
    for socket in (c1, c2):
        assert (await socket.receive("PING", room_id=room_id))["data"] == {"n": 7}
