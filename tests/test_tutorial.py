"""The README's tutorial game, as the reader writes it, run for real."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import pytest_twisted

RPS = Path(__file__).resolve().parent.parent / "examples" / "rps"


@pytest.fixture(autouse=True)
def rps_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(RPS))
    yield
    sys.modules.pop("rps", None)
    sys.modules.pop("test_rps", None)


def test_the_tutorials_own_tests_pass():
    import test_rps

    test_rps.test_paper_beats_rock()
    test_rps.test_a_bad_choice_is_refused()


def test_draw_and_rematch():
    from rps import rps

    from gameserver.testing import GameTest

    test = GameTest(rps)
    alice, bob = test.player("alice"), test.player("bob")
    room = test.create_room("rps", owner=alice)
    alice.join(room)
    bob.join(room)
    alice.send("choose", {"choice": "rock"})
    bob.send("choose", {"choice": "rock"})
    assert bob.last("RESULT")["data"]["winner"] is None
    bob.send("rematch")
    assert len(alice.received("ROUND")) == 2
    alice.send("choose", {"choice": "scissors"})
    bob.send("choose", {"choice": "paper"})
    assert bob.last("RESULT")["data"]["winner"] == alice.user.id


@pytest_twisted.ensureDeferred
async def test_rps_over_websockets(make_server):
    from rps import rps

    server = await make_server(games={"rps": rps})
    alice, a = await server.socket()
    bob, b = await server.socket()
    room = await server.room(alice, game="rps")
    await a.join(room["id"])
    await b.join(room["id"])
    await a.receive("ROUND")
    a.send("choose", room["id"], {"choice": "scissors"})
    b.send("choose", room["id"], {"choice": "rock"})
    result = await a.receive("RESULT")
    assert result["data"]["winner"] == bob.user_id
