from rps import rps

from gameserver.testing import GameTest


def test_paper_beats_rock():
    test = GameTest(rps)
    alice, bob = test.player("alice"), test.player("bob")
    room = test.create_room("rps", owner=alice)
    alice.join(room)
    bob.join(room)
    assert bob.last("ROUND")

    alice.send("choose", {"choice": "rock"})
    assert not bob.received("RESULT")
    bob.send("choose", {"choice": "paper"})

    result = alice.last("RESULT")["data"]
    assert result["winner"] == bob.user.id
    assert test.room(room).state == "finished"


def test_a_bad_choice_is_refused():
    test = GameTest(rps)
    alice, bob = test.player("alice"), test.player("bob")
    room = test.create_room("rps", owner=alice)
    alice.join(room)
    bob.join(room)
    alice.send("choose", {"choice": "lizard"})
    assert alice.last("ERROR")["data"]["code"] == "bad_choice"
