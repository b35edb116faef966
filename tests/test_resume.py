"""Sessions that resume: every room message numbered, and a client that comes
back gets exactly what it missed, or is told it cannot."""

from __future__ import annotations

import random
from typing import Any

import pytest_twisted

from gameserver import Settings
from gameserver.testing import GameTest, Player
from gameserver_games.trivia import Trivia
from tests.test_spectators import _servers, _spectate
from tests.test_trivia import BANK, RIGHT, WRONG, answer

SECRET = "test secret that is long enough for HS256!"


def trivia(**settings: Any) -> tuple[GameTest, int, list[Player]]:
    game = Trivia(rng=random.Random(1), questions=BANK)
    options = Settings(secret=SECRET, password_cost=10, **settings)
    test = GameTest(game, settings=options)
    players = [test.player(name) for name in ("alice", "bob", "carol", "dave")]
    room = test.create_room("trivia", owner=players[0])
    for player in players:
        assert player.join(room)["data"]["is_successful"]
    return test, room, players


def team_of(player: Player) -> str:
    teams = player.last("TEAMS")["data"]
    return next(
        name
        for name, members in teams.items()
        if player.user.id in members_ids(members)
    )


def members_ids(members: list[dict[str, Any]]) -> set[int]:
    return {m["id"] for m in members}


def test_a_player_dropped_mid_trivia_gets_exactly_what_it_missed_in_order():
    test, room, players = trivia()
    alice, bob, carol, dave = players
    alice.send("START_GAME", {"seconds": 10, "pause": 3, "rounds": 3, "teams": True})
    mine = team_of(carol)
    mate = next(p for p in (alice, bob, dave) if team_of(p) == mine)
    rival = next(p for p in (alice, bob, dave) if team_of(p) != mine)
    theirs = team_of(rival)
    last = carol.last_seq()
    assert last == carol.last("QUESTION")["seq"]
    carol.disconnect()
    watcher = next(p for p in (alice, bob, dave) if p not in (mate, rival))
    for player in players:
        player.clear()

    test.advance(1)
    for player in (alice, bob, dave):  # a question is answered...
        answer(player, 0, RIGHT if player is alice else WRONG)
    test.advance(9)  # ...and closes when time is up (carol still has her seat)
    mate.send("CHAT_MESSAGE", {"text": "for our team", "team": mine})
    rival.send("CHAT_MESSAGE", {"text": "theirs only", "team": theirs})
    test.advance(2)  # others chat in the pause (a question shuts room chat)
    alice.send("CHAT_MESSAGE", {"text": "well played"})

    carol.reconnect()
    test.advance(2)  # dropped for 5 s in all: the next question is out
    reply = carol.resume(room)
    assert reply["data"]["is_successful"] is True
    assert reply["data"]["resumed"] is True
    assert reply["data"]["room"]["id"] == room
    got = carol.messages[carol.messages.index(reply) + 1 :]
    # What a teammate who stayed got, but their own ANSWERED (and carol's
    # return, which is news to others): in order, once.
    expected = [
        m for m in mate.messages if m["type"] not in ("ANSWERED", "USER_JOINED")
    ]
    assert got == expected
    types = [m["type"] for m in got]
    assert types.count("RESULT") == 1 and types[-1] == "QUESTION"
    assert [m["data"]["text"] for m in got if m["type"] == "CHAT_MESSAGE"] == [
        "for our team",
        "well played",
    ]
    assert "CHAT_HISTORY" not in types and "USER_DISCONNECTED" not in types
    assert [m["seq"] for m in got] == sorted(m["seq"] for m in got)
    assert all(m["seq"] > last for m in got)
    # The others saw the player back; from here on it is live, nothing twice.
    assert watcher.last("USER_JOINED")["data"]["reconnected"] is True
    answer(carol, 1, RIGHT)
    assert carol.last("ANSWERED")["data"] == {"index": 1}
    seqs = [m["seq"] for m in carol.messages if "seq" in m]
    assert len(seqs) == len(set(seqs))


def test_beyond_the_window_or_the_log_a_resume_is_a_normal_join():
    test, room, (alice, bob, carol, dave) = trivia(resume_window=120, resume_log=5)
    # Nothing missed: resumed, and nothing follows.
    carol.reconnect()
    reply = carol.resume(room)
    assert reply["data"]["resumed"] is True
    assert carol.messages[-1] is reply
    # Past the window, what was sent is gone from the log.
    carol.disconnect()
    alice.send("CHAT_MESSAGE", {"text": "are you there?"})
    test.advance(121)
    carol.reconnect()
    reply = carol.resume(room)
    assert reply["data"]["is_successful"] is True
    assert reply["data"]["resumed"] is False
    after = carol.messages[carol.messages.index(reply) + 1 :]
    assert after[0]["type"] == "CHAT_HISTORY"  # the normal join instead
    assert after[0]["data"]["messages"][-1]["text"] == "are you there?"
    # More messages than the log keeps, and a resume from before them.
    carol.disconnect()
    for n in range(6):
        alice.send("CHAT_MESSAGE", {"text": f"chat {n}"})
    carol.reconnect()
    assert carol.resume(room)["data"]["resumed"] is False
    # Five are kept: one from the last of those, and all come.
    carol.disconnect()
    for n in range(3):
        alice.send("CHAT_MESSAGE", {"text": f"more {n}"})
    carol.reconnect()
    reply = carol.resume(room)
    assert reply["data"]["resumed"] is True
    after = carol.messages[carol.messages.index(reply) + 1 :]
    texts = [m["data"]["text"] for m in after if m["type"] == "CHAT_MESSAGE"]
    assert texts == ["more 0", "more 1", "more 2"]


def test_a_resume_that_is_not_a_number_is_refused_and_changes_nothing():
    test, room, (alice, bob, carol, dave) = trivia()
    for bad in (-1, "3", True, 1.5):
        carol.send("JOIN_ROOM", {"resume": bad}, room=room)
        reply = carol.last("JOIN_ROOM")
        assert reply["data"]["is_successful"] is False
        assert reply["data"]["error"] == "invalid"
    # A number from the future is a normal join, not an error.
    carol.send("JOIN_ROOM", {"resume": 10**6}, room=room)
    assert carol.last("JOIN_ROOM")["data"]["resumed"] is False
    assert carol.received("CHAT_HISTORY")


async def _until_type(connection, stop: str) -> list[dict[str, Any]]:
    """Every message up to and with the first of type ``stop``."""
    got = []
    while True:
        message = await connection.receive()
        got.append(message)
        if message["type"] == stop:
            return got


@pytest_twisted.ensureDeferred
async def test_over_sockets_a_player_comes_back_anywhere_with_what_it_missed(
    start_any,
):
    here, there = await _servers(start_any)
    alice, a = await here.socket()
    bob, b = await here.socket()
    carol, c = await there.socket()
    room_id = (await here.room(alice, game="show"))["id"]
    for connection in (a, b):
        assert (await connection.join(room_id))["data"]["is_successful"]
    await a.request("START_GAME", room_id, reply="GAME_STARTED")
    assert (await _spectate(c, room_id))["data"]["is_successful"]
    c.send("PING", room_id, {"n": 0})
    refused = await c.receive("ERROR")  # a spectator: no playing, but numbered
    assert refused["data"]["code"] == "spectator" and "seq" not in refused
    a.send("PING", room_id, {"n": 1})
    last = (await c.receive("PING"))["seq"]
    c.abort()
    await a.receive("USER_LEFT")

    a.send("PING", room_id, {"n": 2})
    a.send("WHISPER", room_id, {"to": bob.user_id})
    a.send("HUDDLE", room_id)
    a.send("CHAT_MESSAGE", room_id, {"text": "while you were away"})
    await b.receive("CHAT_MESSAGE")  # all of it done and saved

    c = await here.connect(carol)  # back, through the other process
    reply = await c.request("JOIN_ROOM", room_id, {"spectate": True, "resume": last})
    assert reply["data"]["is_successful"] is True
    assert reply["data"]["resumed"] is True
    assert reply["data"]["spectator"] is True
    a.send("PING", room_id, {"n": 3})
    got = await _until_type(c, "PING")
    got += await _until_type(c, "PING")
    assert [(m["type"], m["data"].get("n")) for m in got] == [
        ("PING", 2),
        ("CHAT_MESSAGE", None),
        ("PING", 3),
    ]
    assert [m["seq"] for m in got] == sorted(m["seq"] for m in got)
    assert got[0]["seq"] > last
    assert c.pending() == []


def test_a_player_who_lost_the_seat_resumes_into_a_new_one_and_the_game_seats_them():
    """Tic-tac-toe starts on its second join: a resume into a new seat (a
    drop outside a game gives the seat up) still runs on_join."""
    from gameserver_games.tictactoe import TicTacToe

    test = GameTest(TicTacToe())
    alice, bob = test.player("alice"), test.player("bob")
    room = test.create_room("tictactoe", owner=alice)
    assert alice.join(room)["data"]["is_successful"]
    alice.disconnect()  # waiting: the seat is given up
    assert [p.username for p in test.room(room).players] == []
    assert bob.join(room)["data"]["is_successful"]
    alice.reconnect()
    reply = alice.resume(room)
    assert reply["data"]["resumed"] is True
    after = [m["type"] for m in alice.messages[alice.messages.index(reply) + 1 :]]
    # What was missed (bob came), then the game's answer to the new seat.
    assert after[0] == "USER_JOINED" and "GAME_STARTED" in after
    assert test.room(room).state.value == "in_game"
    # Seated all along, a resume runs no hook: nothing is sent twice.
    alice.disconnect()
    alice.reconnect()
    reply = alice.resume(room)
    assert reply["data"]["resumed"] is True
    assert alice.messages[-1] is reply


def test_the_log_s_size_is_a_whole_number_a_commit_can_carry():
    import pytest

    for bad in (0, 5001, 1000.0, True):
        with pytest.raises(ValueError, match="resume_log"):
            Settings(secret=SECRET, resume_log=bad)


@pytest_twisted.ensureDeferred
async def test_on_redis_numbering_goes_on_after_the_log_is_gone(redis_url):
    """The seq is kept with the room's record: a room whose log expired (no
    message for the window) and that another claim loads numbers on."""
    from gameserver._redis import keys
    from tests.conftest import start_on_redis, stop

    server = await start_on_redis(redis_url)
    try:
        alice, a = await server.socket()
        room_id = (await server.room(alice))["id"]
        assert (await a.join(room_id))["data"]["is_successful"]
        a.send("CHAT_MESSAGE", room_id, {"text": "one"})
        first = (await a.receive("CHAT_MESSAGE"))["seq"]
        backend = server.server.backend
        redis = backend.redis
        assert int(await redis("PTTL", keys.room(room_id, "log"))) > 0
        await backend.hosting.release(server.server.engine.rooms[room_id])
        await redis("DEL", keys.room(room_id, "log"))
        a.send("CHAT_MESSAGE", room_id, {"text": "two"})  # claims it again
        assert (await a.receive("CHAT_MESSAGE"))["seq"] == first + 1
        # The log starts again after the gap: a resume from before it is a
        # normal join, one from now is resumed.
        b = await server.connect(alice)
        reply = await b.request("JOIN_ROOM", room_id, {"resume": first - 1})
        assert reply["data"]["resumed"] is False
        reply = await b.request("JOIN_ROOM", room_id, {"resume": first + 1})
        assert reply["data"]["resumed"] is True
    finally:
        await stop(server)


def test_a_resumed_player_s_game_hears_of_it_through_on_resume():
    from gameserver import Game

    class Pausing(Game):
        """Pauses while a player is away; on_resume takes the pause back."""

        name = "pausing"
        min_players = 1
        max_players = 2

        def on_disconnect(self, room, user, helper):
            room.state["paused"] = user.id

        def on_resume(self, room, user, helper):
            room.state.pop("paused", None)
            helper.broadcast("UNPAUSED", {"user": user.id}, exclude=user)

        def on_reconnect(self, room, user, helper):
            raise AssertionError("a resume runs on_resume, not on_reconnect")

    test = GameTest(Pausing())
    alice, bob = test.player("alice"), test.player("bob")
    room = test.create_room("pausing", owner=alice)
    for player in (alice, bob):
        assert player.join(room)["data"]["is_successful"]
    alice.send("START_GAME", {})
    bob.disconnect()
    assert test.state(room) == {"paused": bob.user.id}
    bob.reconnect()
    assert bob.resume(room)["data"]["resumed"] is True
    assert test.state(room) == {}
    assert alice.last("UNPAUSED")["data"] == {"user": bob.user.id}
