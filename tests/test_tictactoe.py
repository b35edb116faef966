"""Tic-tac-toe: the rules with fakes, then a game over real WebSockets."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from gameserver import RoomState, installed_games
from gameserver.testing import GameTest, Player
from gameserver_games.tictactoe import TicTacToe

# With GameTest: no sockets, no real time


def setup_game(game: TicTacToe | None = None) -> tuple[GameTest, Player, Player, int]:
    """Alice (seated first, so X) and Bob in a started game."""
    test = GameTest(game or TicTacToe())
    alice, bob = test.player("alice"), test.player("bob")
    room = test.create_room("tictactoe", owner=alice)
    assert alice.join(room)["data"]["is_successful"]
    assert bob.join(room)["data"]["is_successful"]
    return test, alice, bob, room


def board(player: Player) -> dict[str, Any]:
    return player.last("BOARD")["data"]


def play(first: Player, second: Player, cells: list[int]) -> None:
    """Alternate moves, ``first`` taking the even-numbered ones; none refused."""
    refused = len(first.errors()), len(second.errors())
    for i, cell in enumerate(cells):
        (first if i % 2 == 0 else second).send("MOVE", {"cell": cell})
    assert (len(first.errors()), len(second.errors())) == refused


def codes(player: Player) -> list[str]:
    return [error["code"] for error in player.errors()]


def test_the_second_seat_starts_the_game_with_the_first_seated_as_x():
    test = GameTest(TicTacToe())
    alice, bob = test.player("alice"), test.player("bob")
    room = test.create_room("tictactoe", owner=bob)
    alice.join(room)
    waiting = board(alice)
    assert waiting == {
        "cells": [None] * 9,
        "turn": None,
        "marks": {},
        "winner": None,
        "draw": False,
        "line": None,
    }
    bob.join(room)
    assert test.room(room).state is RoomState.IN_GAME
    a, b = alice.user.id, bob.user.id
    for player in (alice, bob):
        assert player.last("GAME_STARTED")["data"] == {"status": "in_game"}
        assert board(player) == {
            **waiting,
            "turn": a,
            "marks": {str(a): "X", str(b): "O"},
        }
    assert len(bob.received("BOARD")) == 1  # only the started board


@pytest.mark.parametrize(
    ("x_moves", "o_moves", "line"),
    [
        ([3, 4, 5], [0, 8], [3, 4, 5]),  # a row
        ([1, 4, 7], [0, 2], [1, 4, 7]),  # a column
        ([0, 4, 8], [1, 2], [0, 4, 8]),  # a diagonal
        ([2, 4, 6], [0, 1], [2, 4, 6]),  # the other diagonal
    ],
)
def test_x_wins(x_moves, o_moves, line):
    test, alice, bob, room = setup_game()
    moves = [m for pair in zip(x_moves, [*o_moves, None], strict=True) for m in pair]
    play(alice, bob, [m for m in moves if m is not None])
    final = board(bob)
    assert final["winner"] == alice.user.id
    assert final["line"] == line
    assert final["turn"] is None
    assert final["draw"] is False
    assert [final["cells"][i] for i in line] == ["X"] * 3
    assert test.room(room).state is RoomState.FINISHED
    for player in (alice, bob):
        assert player.messages[-2]["type"] == "BOARD"
        assert player.messages[-1]["type"] == "GAME_FINISHED"


def test_o_wins():
    test, alice, bob, room = setup_game()
    play(alice, bob, [0, 2, 1, 4, 8, 6])
    assert board(alice)["winner"] == bob.user.id
    assert board(alice)["line"] == [2, 4, 6]


def test_a_draw():
    test, alice, bob, room = setup_game()
    # X O X / X O O / O X X
    play(alice, bob, [0, 1, 2, 4, 3, 5, 7, 6, 8])
    final = board(alice)
    assert final["cells"] == ["X", "O", "X", "X", "O", "O", "O", "X", "X"]
    assert final["draw"] is True
    assert final["winner"] is None
    assert final["line"] is None
    assert final["turn"] is None
    assert test.room(room).state is RoomState.FINISHED
    assert alice.last().get("type") == "GAME_FINISHED"


def test_turns_alternate():
    test, alice, bob, room = setup_game()
    a, b = alice.user.id, bob.user.id
    turns = []
    for player, cell in [(alice, 4), (bob, 0), (alice, 8)]:
        player.send("MOVE", {"cell": cell})
        turns.append(board(bob)["turn"])
    assert turns == [b, a, b]
    assert board(alice)["cells"][4] == "X" and board(alice)["cells"][0] == "O"
    bob.send("MOVE", {"cell": 1})
    assert codes(bob) == []


def test_not_your_turn():
    test, alice, bob, room = setup_game()
    bob.send("MOVE", {"cell": 0})
    assert bob.errors() == [
        {
            "code": "not_your_turn",
            "detail": "it is not your turn",
            "request_type": "MOVE",
        }
    ]
    alice.send("MOVE", {"cell": 0})
    alice.send("MOVE", {"cell": 1})
    assert codes(alice) == ["not_your_turn"]
    assert board(alice)["cells"] == ["X"] + [None] * 8


def test_cell_taken_changes_nothing():
    test, alice, bob, room = setup_game()
    alice.send("MOVE", {"cell": 4})
    before = test.state(room)
    boards = len(alice.received("BOARD"))
    bob.send("MOVE", {"cell": 4})
    assert codes(bob) == ["cell_taken"]
    assert test.state(room) == before
    assert len(alice.received("BOARD")) == boards
    bob.send("MOVE", {"cell": 0})
    assert board(alice)["cells"][0] == "O"


@pytest.mark.parametrize("cell", [-1, 9, 4.0, "4", True, False, None, [4], {"i": 4}])
def test_bad_cell(cell):
    test, alice, bob, room = setup_game()
    alice.send("MOVE", {"cell": cell})
    alice.send("MOVE", {})
    assert codes(alice) == ["bad_cell", "bad_cell"]
    assert board(bob)["turn"] == alice.user.id


def test_not_in_game_before_the_start_and_after_the_end():
    test = GameTest(TicTacToe())
    alice, bob = test.player("alice"), test.player("bob")
    room = test.create_room("tictactoe", owner=alice)
    alice.join(room)
    alice.send("MOVE", {"cell": 0})
    assert codes(alice) == ["not_in_game"]
    bob.join(room)
    play(alice, bob, [0, 3, 1, 4, 2])
    bob.send("MOVE", {"cell": 8})
    assert codes(bob) == ["not_in_game"]


def test_not_a_player():
    """Only reachable with more seats than players: a variant with three.

    With two seats every present user is one of the two players, so the
    check is a safety net; a three-seat variant seats a spectator.
    """
    test, alice, bob, room = setup_game(TicTacToe(max_players=3))
    play(alice, bob, [0, 3, 1, 4, 2])
    carol = test.player("carol")
    assert carol.join(room)["data"]["is_successful"]  # the room is finished
    assert board(carol)["winner"] == alice.user.id
    carol.send("REMATCH")
    assert codes(carol) == ["not_a_player"]
    alice.send("REMATCH")
    bob.send("REMATCH")
    assert test.room(room).state is RoomState.IN_GAME
    assert sorted(board(carol)["marks"]) == sorted(
        [str(alice.user.id), str(bob.user.id)]
    )
    carol.send("MOVE", {"cell": 0})
    assert codes(carol) == ["not_a_player", "not_a_player"]


def test_a_third_user_is_refused_and_cannot_move():
    test, alice, bob, room = setup_game()
    carol = test.player("carol")
    reply = carol.join(room)
    assert reply["data"]["is_successful"] is False
    # The game has started; before it, the two seats are just as taken.
    assert reply["data"]["error"] == "game_started"
    carol.send("MOVE", {"cell": 0}, room=room)
    assert codes(carol) == ["not_in_room"]

    test = GameTest(TicTacToe())
    alice, bob, carol = (test.player(n) for n in ("alice", "bob", "carol"))
    room = test.create_room("tictactoe", owner=alice)
    alice.join(room)
    bob.join(room)
    play(alice, bob, [0, 3, 1, 4, 2])  # finished: joining is open again
    reply = carol.join(room)
    assert reply["data"]["error"] == "room_full"
    carol.send("REMATCH", room=room)
    assert codes(carol) == ["not_in_room"]


def test_rematch_swaps_who_starts():
    test, alice, bob, room = setup_game()
    a, b = alice.user.id, bob.user.id
    alice.send("REMATCH")
    assert codes(alice) == ["not_finished"]
    play(alice, bob, [0, 3, 1, 4, 2])
    alice.send("REMATCH")
    alice.send("REMATCH")  # asking twice is asking once
    assert bob.last("REMATCH")["data"] == {"players": [a]}
    assert test.room(room).state is RoomState.FINISHED
    bob.clear()
    bob.send("REMATCH")
    assert [m["type"] for m in bob.messages] == ["REMATCH", "GAME_STARTED", "BOARD"]
    assert bob.last("REMATCH")["data"] == {"players": [a, b]}
    second = board(alice)
    assert second["marks"] == {str(b): "X", str(a): "O"}
    assert second["turn"] == b
    assert second["cells"] == [None] * 9
    assert second["winner"] is None
    alice.send("MOVE", {"cell": 0})
    assert codes(alice) == ["not_finished", "not_your_turn"]
    play(bob, alice, [0, 1, 2, 4, 3, 5, 7, 6, 8])
    assert board(alice)["draw"] is True
    alice.send("REMATCH")
    bob.send("REMATCH")
    assert board(bob)["marks"] == {str(a): "X", str(b): "O"}
    assert board(bob)["turn"] == a


def test_rematch_refused_once_the_opponent_left():
    test, alice, bob, room = setup_game()
    play(alice, bob, [0, 3, 1, 4, 2])
    bob.send("REMATCH")
    assert bob.leave()["data"]["is_successful"]
    alice.send("REMATCH")
    assert codes(alice) == ["opponent_left"]
    assert test.state(room)["rematch"] == []


def test_leaving_mid_game_forfeits():
    test, alice, bob, room = setup_game()
    play(alice, bob, [4, 0])
    assert alice.leave()["data"]["is_successful"]
    final = board(bob)
    assert final["winner"] == bob.user.id
    assert final["line"] is None
    assert final["draw"] is False
    assert final["turn"] is None
    assert final["cells"][4] == "X"
    assert [m["type"] for m in bob.messages[-3:]] == [
        "USER_LEFT",
        "BOARD",
        "GAME_FINISHED",
    ]
    assert test.room(room).state is RoomState.FINISHED
    assert [p.username for p in test.room(room).players] == ["bob"]

    carol = test.player("carol")
    assert carol.join(room)["data"]["is_successful"]
    fresh = board(carol)
    assert test.room(room).state is RoomState.IN_GAME
    assert fresh["turn"] == bob.user.id  # a new pair: the first seated is X
    assert fresh["marks"] == {str(bob.user.id): "X", str(carol.user.id): "O"}


def test_disconnect_keeps_the_seat_and_reconnect_gets_the_board():
    test, alice, bob, room = setup_game()
    play(alice, bob, [4, 0])
    bob.disconnect()
    assert alice.last("USER_DISCONNECTED")["data"]["user"]["id"] == bob.user.id
    assert test.room(room).state is RoomState.IN_GAME
    assert len(test.room(room).players) == 2
    alice.send("MOVE", {"cell": 8})  # the game goes on while Bob is away
    bob.reconnect()
    bob.send("MOVE", {"cell": 1}, room=room)
    assert codes(bob) == ["not_in_room"]  # present again only after JOIN_ROOM
    reply = bob.join(room)
    assert reply["data"]["is_successful"]
    assert reply["data"]["room"]["state"] == "in_game"
    current = board(bob)
    assert current["cells"] == ["O", None, None, None, "X", None, None, None, "X"]
    assert current["turn"] == bob.user.id
    assert alice.last("USER_JOINED")["data"]["reconnected"] is True
    play(bob, alice, [1, 2, 6, 3, 5, 7])
    assert board(alice)["draw"] is True


def test_owner_start_game_in_a_finished_room_swaps_like_a_rematch():
    test, alice, bob, room = setup_game()
    play(alice, bob, [0, 3, 1, 4, 2])
    alice.send("START_GAME")
    assert codes(alice) == []
    assert board(bob)["turn"] == bob.user.id
    alice.send("START_GAME")
    assert codes(alice) == ["game_started"]


# Over real WebSockets


async def _next_board(connection, room_id: int) -> dict[str, Any]:
    return (await connection.receive("BOARD", room_id=room_id))["data"]


async def _move(
    mover, watcher, room_id: int, cell: int, *, last: bool = False
) -> dict[str, Any]:
    """Move, and check both players see the same board."""
    mover.send("MOVE", room_id, {"cell": cell})
    seen = await _next_board(mover, room_id)
    assert await _next_board(watcher, room_id) == seen
    return seen


@pytest.mark.parametrize(
    "formats",
    [("json", "json"), ("msgpack", "msgpack"), ("json", "msgpack")],
    ids=["json", "msgpack", "mixed"],
)
@pytest_twisted.ensureDeferred
async def test_a_game_over_websockets_with_a_dropped_connection(make_server, formats):
    server = await make_server(games={"tictactoe": TicTacToe()})
    server.format = formats[0]
    alice, a = await server.socket("alice")
    server.format = formats[1]
    bob, b = await server.socket("bob")
    assert (a.format, b.format) == formats
    room = await server.room(alice, game="tictactoe")
    rid = room["id"]
    assert (await a.join(rid))["data"]["is_successful"]
    assert (await _next_board(a, rid))["marks"] == {}
    assert (await b.join(rid))["data"]["is_successful"]
    joined = await a.receive("USER_JOINED", room_id=rid)
    assert joined["data"]["reconnected"] is False
    for connection in (a, b):
        assert (await connection.receive("GAME_STARTED", room_id=rid))["data"] == {
            "status": "in_game"
        }
    x_id, o_id = alice.user_id, bob.user_id
    started = await _next_board(a, rid)
    assert started == await _next_board(b, rid)
    assert started["marks"] == {str(x_id): "X", str(o_id): "O"}
    assert started["turn"] == x_id

    await _move(a, b, rid, 4)
    refused = await b.request("MOVE", rid, {"cell": 4})
    assert refused["type"] == "ERROR"
    assert refused["data"]["code"] == "cell_taken"
    await _move(b, a, rid, 0)

    b.abort()
    gone = await a.receive("USER_DISCONNECTED", room_id=rid)
    assert gone["data"]["user"]["id"] == o_id
    assert (await a.request("MOVE", rid, {"cell": 0}))["data"]["code"] == "cell_taken"
    a.send("MOVE", rid, {"cell": 8})
    assert (await _next_board(a, rid))["turn"] == o_id

    b2 = await server.connect(bob)
    reply = await b2.join(rid)
    assert reply["data"]["is_successful"] is True
    assert reply["data"]["room"]["state"] == "in_game"
    assert [p["id"] for p in reply["data"]["room"]["players"]] == [x_id, o_id]
    back = await a.receive("USER_JOINED", room_id=rid)
    assert back["data"]["reconnected"] is True
    current = await _next_board(b2, rid)
    assert current["cells"] == ["O", None, None, None, "X", None, None, None, "X"]
    assert current["turn"] == o_id

    await _move(b2, a, rid, 1)
    await _move(a, b2, rid, 5)
    await _move(b2, a, rid, 3)
    final = await _move(a, b2, rid, 2)
    assert final["winner"] == x_id
    assert final["line"] == [2, 5, 8]
    assert final["cells"] == ["O", "O", "X", "O", "X", "X", None, None, "X"]
    for connection in (a, b2):
        finished = await connection.receive("GAME_FINISHED", room_id=rid)
        assert finished["data"] == {"status": "finished"}
    listed = (await alice.http("GET", f"/api/rooms/{rid}/")).body
    assert listed["state"] == "finished"


# Plugin discovery


def test_installed_as_a_plugin():
    games = installed_games()
    assert "tictactoe" in games
    game = games["tictactoe"]
    assert isinstance(game, TicTacToe)
    assert (game.min_players, game.max_players) == (2, 2)
    assert set(game.routes) == {"MOVE", "REMATCH"}
