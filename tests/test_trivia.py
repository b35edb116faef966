"""The trivia game: its rules on fakes with a Clock, then over real sockets."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from gameserver import installed_games
from gameserver.client import Connection
from gameserver.testing import GameTest, Player
from gameserver_games.trivia import QUESTIONS, Trivia, load_questions

#: Every answer is choice 0, so a test knows it whatever the RNG picks.
BANK = [
    {
        "question": f"Question {i}?",
        "choices": ["yes", "no", "maybe", "never"],
        "answer": 0,
    }
    for i in range(20)
]
RIGHT, WRONG = 0, 1


def setup(
    names: tuple[str, ...] = ("alice", "bob"), **game: Any
) -> tuple[GameTest, int, list[Player]]:
    game.setdefault("questions", BANK)
    test = GameTest(Trivia(rng=random.Random(1), **game))
    players = [test.player(name) for name in names]
    room = test.create_room("trivia", owner=players[0])
    for player in players:
        assert player.join(room)["data"]["is_successful"]
    return test, room, players


def start(owner: Player, **options: Any) -> dict[str, Any]:
    """Start the game; returns the first QUESTION's data."""
    owner.send("START_GAME", options)
    return owner.last("QUESTION")["data"]


def answer(player: Player, index: int, choice: int) -> None:
    player.send("ANSWER", {"index": index, "choice": choice})


def error_codes(player: Player) -> list[str]:
    return [e["code"] for e in player.errors()]


def uid(player: Player) -> str:
    return str(player.user.id)


# Starting


def test_only_the_owner_can_start() -> None:
    test, room, (alice, bob) = setup()
    bob.send("START_GAME", {})
    assert error_codes(bob) == ["not_owner"]
    assert not bob.received("QUESTION")
    assert test.room(room).state.value == "waiting"
    start(alice)
    for player in (alice, bob):
        assert player.received("GAME_STARTED")
        assert player.last("QUESTION")["data"]["total"] == 5  # the default


def test_question_carries_its_deadline_and_never_the_answer() -> None:
    test, room, (alice, bob) = setup(questions=None)  # the bundled bank
    test.advance(100)
    question = start(alice, seconds=10, rounds=3)
    assert question["index"] == 0
    assert question["total"] == 3
    assert question["deadline"] == 110
    assert len(question["choices"]) == 4
    assert set(question) == {"index", "total", "question", "choices", "deadline"}
    assert bob.last("QUESTION")["data"] == question
    assert test.timers(room)["question"].deadline == 110


def test_invalid_options_are_refused_to_the_owner() -> None:
    test, room, (alice, bob) = setup()
    for options in [
        {"rounds": 0},
        {"rounds": 21},
        {"rounds": "3"},
        {"rounds": True},
        {"seconds": 4},
        {"seconds": 61},
        {"teams": "yes"},
    ]:
        alice.clear()
        alice.send("START_GAME", options)
        refusal = alice.last("ERROR")["data"]
        assert refusal["code"] == "invalid", options
        assert refusal["request_type"] == "START_GAME"
        assert not alice.received("QUESTION")
        assert not alice.received("GAME_STARTED")
        assert test.room(room).state.value == "waiting"
    assert not bob.received("ERROR")
    start(alice, rounds=20, seconds=60)  # the limits themselves are fine


def test_seeded_rng_picks_the_same_questions() -> None:
    def first_questions(seed: int) -> list[str]:
        test = GameTest(Trivia(rng=random.Random(seed)))
        alice = test.player("alice")
        room = test.create_room("trivia", owner=alice)
        alice.join(room)
        asked = [start(alice, rounds=3)["question"]]
        for _ in range(2):
            test.advance(15)  # one step per timer: see test_timeouts_move_the_game_on
            test.advance(3)
            asked.append(alice.last("QUESTION")["data"]["question"])
        return asked

    assert first_questions(42) == first_questions(42)
    assert len(set(first_questions(42))) == 3


# Timing and scoring


def test_timeouts_move_the_game_on() -> None:
    test, room, (alice, bob) = setup(pause=3)
    start(alice, rounds=2, seconds=10)
    test.advance(9.9)
    assert not alice.received("RESULT")
    test.advance(0.1)
    result = alice.last("RESULT")["data"]
    assert result["index"] == 0
    assert result["answer"] == 0
    assert result["scores"] == {uid(alice): 0, uid(bob): 0}
    assert "team_scores" not in result
    assert bob.last("RESULT")["data"] == result
    test.advance(2.9)
    assert len(alice.received("QUESTION")) == 1
    test.advance(0.1)
    second = alice.last("QUESTION")["data"]
    assert second["index"] == 1
    assert second["deadline"] == 23
    test.advance(10)
    assert [m["data"]["index"] for m in alice.received("RESULT")] == [0, 1]
    assert alice.received("SCOREBOARD")
    assert alice.received("GAME_FINISHED")
    assert test.room(room).state.value == "finished"
    assert test.timers(room) == {}


def test_faster_correct_answers_score_more() -> None:
    test, room, (alice, bob, carol, dave) = setup(("alice", "bob", "carol", "dave"))
    start(alice, seconds=10)
    answer(alice, 0, RIGHT)  # at once: everything
    test.advance(6)
    answer(bob, 0, RIGHT)  # 4 of 10 seconds left
    answer(carol, 0, WRONG)
    test.advance(3.9)
    answer(dave, 0, RIGHT)  # too slow to earn more than the minimum
    result = alice.last("RESULT")["data"]
    assert result["gained"] == {
        uid(alice): 1000,
        uid(bob): 400,
        uid(carol): 0,
        uid(dave): 100,
    }
    assert result["scores"] == result["gained"]
    assert result["answers"] == {
        uid(alice): RIGHT,
        uid(bob): RIGHT,
        uid(carol): WRONG,
        uid(dave): RIGHT,
    }
    assert alice.last("ANSWERED")["data"] == {"index": 0}
    assert [m["data"] for m in bob.received("ANSWERED")] == [{"index": 0}]


def test_question_ends_early_when_everyone_answered() -> None:
    test, room, (alice, bob) = setup(pause=3)
    start(alice, rounds=2, seconds=10)
    answer(alice, 0, RIGHT)
    assert not alice.received("RESULT")
    test.advance(1)
    answer(bob, 0, WRONG)
    assert bob.messages[-2]["type"] == "ANSWERED"  # before the result
    assert alice.last("RESULT")["data"]["scores"] == {uid(alice): 1000, uid(bob): 0}
    timers = test.timers(room)
    assert "question" not in timers
    assert timers["next"].deadline == 4
    test.advance(3)
    assert alice.last("QUESTION")["data"] == {
        **alice.last("QUESTION")["data"],
        "index": 1,
        "deadline": 14,
    }
    test.advance(10)  # past both the old and the new deadline
    assert [m["data"]["index"] for m in alice.received("RESULT")] == [0, 1]


# Refusals


def test_answer_refusals() -> None:
    test, room, (alice, bob) = setup(pause=3)
    answer(bob, 0, RIGHT)
    assert error_codes(bob) == ["not_in_game"]
    start(alice, rounds=2, seconds=10)
    bob.clear()
    for index in (1, -1):
        answer(bob, index, RIGHT)
    for choice in (4, -1, "0", True, None):
        answer(bob, 0, choice)
    bob.send("ANSWER", {"index": "0", "choice": 0})
    assert error_codes(bob) == ["stale_question"] * 2 + ["bad_choice"] * 5 + ["invalid"]
    answer(bob, 0, WRONG)
    answer(bob, 0, RIGHT)
    assert error_codes(bob)[-1] == "already_answered"
    assert test.state(room)["scores"][uid(bob)] == 0
    test.advance(10)  # the result; now a pause before question 1
    answer(alice, 0, RIGHT)
    answer(alice, 1, RIGHT)
    assert error_codes(alice) == ["stale_question", "stale_question"]
    test.advance(3)
    answer(alice, 1, RIGHT)
    assert alice.last("ANSWERED")["data"] == {"index": 1}
    assert test.state(room)["scores"][uid(alice)] == 1000


def test_refusal_changes_nothing() -> None:
    test, room, (alice, bob) = setup()
    start(alice)
    before = test.state(room)
    answer(bob, 0, 9)
    assert test.state(room) == before
    assert not alice.received("RESULT")


# The end


def test_scoreboard_and_finish() -> None:
    test, room, (alice, bob, carol) = setup(("alice", "bob", "carol"), pause=3)
    start(alice, rounds=2, seconds=10)
    answer(bob, 0, RIGHT)
    answer(alice, 0, WRONG)
    answer(carol, 0, WRONG)
    test.advance(3)
    test.advance(5)
    answer(alice, 1, RIGHT)
    answer(bob, 1, RIGHT)
    answer(carol, 1, WRONG)
    board = carol.last("SCOREBOARD")["data"]
    assert board["scores"] == {uid(alice): 500, uid(bob): 1500, uid(carol): 0}
    assert [(e["user"]["username"], e["score"]) for e in board["ranking"]] == [
        ("bob", 1500),
        ("alice", 500),
        ("carol", 0),
    ]
    assert board["winner"] == bob.user.to_json()
    assert "winning_team" not in board
    types = [m["type"] for m in carol.messages]
    assert types[-3:] == ["RESULT", "SCOREBOARD", "GAME_FINISHED"]
    assert test.room(room).state.value == "finished"
    answer(alice, 1, RIGHT)
    assert error_codes(alice)[-1] == "not_in_game"


def test_a_tie_has_no_winner_and_a_rematch_starts_afresh() -> None:
    test, room, (alice, bob) = setup()
    start(alice, rounds=1)
    answer(alice, 0, RIGHT)
    answer(bob, 0, RIGHT)
    assert alice.last("SCOREBOARD")["data"]["winner"] is None
    alice.clear()
    question = start(alice, rounds=1)
    assert question["index"] == 0
    assert test.state(room)["scores"] == {uid(alice): 0, uid(bob): 0}


# Chat and teams


def test_room_chat_is_refused_only_while_a_question_is_open() -> None:
    test, room, (alice, bob) = setup(pause=3)
    alice.send("CHAT_MESSAGE", {"text": "good luck"})
    assert bob.last("CHAT_MESSAGE")["data"]["text"] == "good luck"
    start(alice, rounds=2, seconds=10)
    alice.send("CHAT_MESSAGE", {"text": "it's yes!"})
    assert error_codes(alice) == ["chat_refused"]
    alice.send("CHAT_MESSAGE", {"text": "psst", "team": "red"})
    assert error_codes(alice)[-1] == "not_in_team"  # no teams in this game
    test.advance(10)
    alice.send("CHAT_MESSAGE", {"text": "too easy"})
    assert bob.last("CHAT_MESSAGE")["data"]["text"] == "too easy"
    test.advance(3)
    bob.send("CHAT_MESSAGE", {"text": "hmm"})
    assert error_codes(bob) == ["chat_refused"]


def test_teams() -> None:
    names = ("alice", "bob", "carol", "dave")
    test, room, players = setup(names, pause=3)
    alice = players[0]
    start(alice, rounds=2, seconds=10, teams=True)
    teams = alice.last("TEAMS")["data"]
    assert sorted(teams) == ["blue", "red"]
    assert len(teams["red"]) == len(teams["blue"]) == 2
    assert sorted(p["username"] for p in teams["red"] + teams["blue"]) == list(names)
    for player in players:
        assert player.last("TEAMS")["data"] == teams
        assert player.messages.index(player.last("TEAMS")) < player.messages.index(
            player.last("QUESTION")
        )
    by_name = {p.user.username: p for p in players}
    red = [by_name[p["username"]] for p in teams["red"]]
    blue = [by_name[p["username"]] for p in teams["blue"]]

    red[0].send("CHAT_MESSAGE", {"text": "it's yes", "team": "red"})
    for player in red:
        message = player.last("CHAT_MESSAGE")["data"]
        assert (message["text"], message["team"]) == ("it's yes", "red")
    for player in blue:
        assert not player.received("CHAT_MESSAGE")
    red[0].send("CHAT_MESSAGE", {"text": "spy", "team": "blue"})
    assert error_codes(red[0]) == ["not_in_team"]
    blue[0].send("CHAT_MESSAGE", {"text": "it's yes"})
    assert error_codes(blue[0]) == ["chat_refused"]

    answer(red[0], 0, RIGHT)
    answer(red[1], 0, RIGHT)
    answer(blue[0], 0, RIGHT)
    test.advance(5)
    answer(blue[1], 0, WRONG)
    result = alice.last("RESULT")["data"]
    assert result["team_scores"] == {"red": 2000, "blue": 1000}
    blue[0].send("CHAT_MESSAGE", {"text": "well played"})
    assert red[0].last("CHAT_MESSAGE")["data"]["text"] == "well played"
    test.advance(3)
    test.advance(10)
    board = alice.last("SCOREBOARD")["data"]
    assert board["team_scores"] == {"red": 2000, "blue": 1000}
    assert board["winning_team"] == "red"


def test_a_rematch_without_teams_disbands_the_teams() -> None:
    test, room, (alice, bob) = setup()
    start(alice, rounds=1, teams=True)
    test.advance(15)
    start(alice, rounds=1)
    assert "teams" not in test.state(room)
    for player in (alice, bob):
        player.send("CHAT_MESSAGE", {"text": "hi", "team": "red"})
        player.send("CHAT_MESSAGE", {"text": "hi", "team": "blue"})
        assert error_codes(player)[-2:] == ["not_in_team", "not_in_team"]


# Seats


def test_disconnect_keeps_the_seat_and_a_rejoin_catches_up() -> None:
    test, room, (alice, bob) = setup(pause=3)
    test.advance(50)
    start(alice, rounds=2, seconds=10, teams=True)
    answer(bob, 0, RIGHT)
    test.advance(10)
    test.advance(3)
    question = alice.last("QUESTION")["data"]
    assert question["index"] == 1
    bob.disconnect()
    assert alice.last("USER_DISCONNECTED")["data"]["user"]["username"] == "bob"
    assert [p.username for p in test.room(room).players] == ["alice", "bob"]
    test.advance(2)
    answer(alice, 1, WRONG)
    assert len(alice.received("RESULT")) == 1  # bob is still seated: wait for him
    bob.reconnect()
    assert bob.join(room)["data"]["is_successful"]
    assert alice.last("USER_JOINED")["data"]["reconnected"] is True
    caught_up = [m["type"] for m in bob.messages]
    assert caught_up[-3:] == ["TEAMS", "SCORES", "QUESTION"]
    assert bob.last("QUESTION")["data"] == question  # the original deadline
    scores = bob.last("SCORES")["data"]
    assert scores["scores"] == {uid(alice): 0, uid(bob): 1000}
    assert sum(scores["team_scores"].values()) == 1000
    assert bob.last("TEAMS")["data"] == alice.last("TEAMS")["data"]
    answer(bob, 1, RIGHT)
    assert bob.last("ANSWERED")["data"] == {"index": 1}
    assert bob.last("SCOREBOARD")["data"]["scores"][uid(bob)] == 1000 + 800


def test_rejoin_after_answering_says_so() -> None:
    test, room, (alice, bob) = setup()
    start(alice)
    answer(bob, 0, RIGHT)
    bob.disconnect()
    bob.reconnect()
    bob.join(room)
    assert [m["type"] for m in bob.messages][-3:] == ["SCORES", "QUESTION", "ANSWERED"]


def test_a_spectator_sees_the_open_question_never_its_answer_and_cannot_answer():
    test, room, (alice, bob) = setup()
    question = start(alice, seconds=10)
    carol = test.player("carol")
    reply = carol.spectate(room)
    assert reply["data"]["is_successful"] is True
    assert reply["data"]["room"]["spectators"] == 1
    assert [m["type"] for m in carol.messages][-3:] == [
        "CHAT_HISTORY",
        "SCORES",
        "QUESTION",
    ]
    assert carol.last("QUESTION")["data"] == question
    assert "answer" not in carol.last("QUESTION")["data"]
    assert uid(carol) not in carol.last("SCORES")["data"]["scores"]
    answer(carol, 0, RIGHT)
    assert error_codes(carol) == ["spectator"]
    # Everyone answered is still the two players: the question closes.
    answer(alice, 0, RIGHT)
    answer(bob, 0, WRONG)
    assert carol.last("RESULT")["data"]["answer"] == RIGHT
    assert [p.username for p in test.room(room).players] == ["alice", "bob"]


def test_leaving_mid_game_stops_the_wait_for_that_player() -> None:
    test, room, (alice, bob, carol) = setup(("alice", "bob", "carol"))
    start(alice, rounds=2, seconds=10)
    answer(alice, 0, RIGHT)
    answer(bob, 0, RIGHT)
    assert not alice.received("RESULT")
    carol.leave()
    result = alice.last("RESULT")["data"]
    assert result["scores"][uid(carol)] == 0  # still on the board
    assert "question" not in test.timers(room)
    bob.leave()
    alice.leave()
    assert test.room(room).state.value == "finished"
    assert test.timers(room) == {}


# The bank and the plugin


def test_bundled_bank() -> None:
    assert len(QUESTIONS) >= 20
    for question in QUESTIONS:
        assert len(question["choices"]) == 4
    with pytest.raises(ValueError):
        load_questions(json.dumps([{"question": "?", "choices": ["a"], "answer": 0}]))
    with pytest.raises(ValueError):
        load_questions(
            json.dumps([{"question": "?", "choices": ["a", "b"], "answer": 2}])
        )


def test_trivia_is_installed() -> None:
    game = installed_games(["trivia"])["trivia"]
    assert isinstance(game, Trivia)
    assert (game.min_players, game.max_players) == (1, 12)


# Over real sockets


async def ws_answer(
    connection: Connection, room_id: int, index: int, choice: int
) -> dict[str, Any]:
    """Send an ANSWER; its reply is an ANSWERED (or an ERROR), not an ANSWER."""
    connection.send("ANSWER", room_id, {"index": index, "choice": choice})
    return await connection.receive("ANSWERED", "ERROR", room_id=room_id)


@pytest.mark.parametrize("wire", ["json", "msgpack"])
@pytest_twisted.ensureDeferred
async def test_two_rounds_over_websockets(make_server, wire):
    clock = Clock()
    clock.advance(1_800_000_000)
    server = await make_server(
        games={"trivia": Trivia(rng=random.Random(5), questions=BANK, pause=3)},
        clock=clock,
    )
    server.format = wire
    alice, a = await server.socket("alice")
    bob, b = await server.socket("bob")
    rid = (await server.room(alice, game="trivia"))["id"]
    for connection in (a, b):
        assert (await connection.join(rid))["data"]["is_successful"]
    refused = await b.request("START_GAME", rid, {"rounds": 2, "seconds": 10})
    assert refused["data"]["code"] == "not_owner"
    a.send("START_GAME", rid, {"rounds": 2, "seconds": 10})
    await b.receive("GAME_STARTED")
    first = (await b.receive("QUESTION"))["data"]
    assert first["index"] == 0
    assert first["deadline"] == clock.seconds() + 10
    assert (await a.receive("QUESTION"))["data"] == first

    # Question 0: alice answers at once, bob never does.
    assert (await ws_answer(a, rid, 0, RIGHT))["type"] == "ANSWERED"
    refused = await ws_answer(a, rid, 0, RIGHT)
    assert refused["data"]["code"] == "already_answered"
    clock.advance(10)
    result = (await b.receive("RESULT"))["data"]
    assert result["scores"] == {str(alice.user_id): 1000, str(bob.user_id): 0}

    # Question 1: both answer, so it ends before its deadline.
    clock.advance(3)
    second = (await a.receive("QUESTION"))["data"]
    assert second["index"] == 1
    clock.advance(5)
    assert (await ws_answer(a, rid, 1, WRONG))["type"] == "ANSWERED"
    assert (await ws_answer(b, rid, 1, RIGHT))["type"] == "ANSWERED"
    board = (await a.receive("SCOREBOARD"))["data"]
    assert board["scores"] == {str(alice.user_id): 1000, str(bob.user_id): 500}
    assert board["winner"]["username"] == "alice"
    assert (await b.receive("SCOREBOARD"))["data"] == board
    await a.receive("GAME_FINISHED")
    room = (await alice.http("GET", f"/api/rooms/{rid}/")).body
    assert room["state"] == "finished"
