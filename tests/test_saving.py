"""What a room's owner saves, and when: the same engine in memory and on Redis.

The tests taking ``start_any`` run twice: with a server in memory, and with
a server in this process on a real ``redis-server``. The others are about
Redis alone: a room moving between processes with everything it holds, and
a holder fenced off once its lease has passed to someone else.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from gameserver import BaseRouter, Game
from tests.conftest import GAMES, make_settings, start_on_redis, stop


class Keeper(BaseRouter):
    gate: Deferred = Deferred()

    def keep(self, room, user, helper, data):
        room.state["n"] = room.state.get("n", 0) + 1
        room.set("deck", data.get("deck", [1, 2, 3]))
        helper.group_add("red")
        handle = helper.call_later(data.get("delay", 60), self.ring, name="bell")
        helper.broadcast("KEPT", {"n": room.state["n"], "deadline": handle.deadline})

    async def peek(self, room, user, helper, data):
        helper.self_send(
            "PEEK",
            {
                "n": room.state.get("n", 0),
                "deck": await room.get("deck"),
                "red": sorted(helper.group_members("red")),
                "rang": room.state.get("rang", False),
            },
        )

    def ring(self, room, helper):
        room.state["rang"] = True
        helper.broadcast("RING", {})

    async def slow(self, room, user, helper, data):
        room.state["written"] = True
        await Keeper.gate
        helper.broadcast("WRITTEN", {})


GAMES_HERE = {
    **GAMES,
    "keeper": Game(name="keeper", min_players=1, max_players=5, routers=[Keeper]),
}


async def _ok(reply: dict) -> dict:
    assert reply["data"].get("is_successful") is True, reply
    return reply


async def _pause(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def _room(client, room_id: int) -> dict:
    return (await client.http("GET", f"/api/rooms/{room_id}/")).body


# Both hostings


@pytest_twisted.ensureDeferred
async def test_the_listing_follows_the_turns(start_any):
    server = await start_any()
    alice, a = await server.socket("alice")
    bob, b = await server.socket("bob")
    room = await server.room(alice, game="duel")
    await _ok(await a.join(room["id"]))
    await _ok(await b.join(room["id"]))
    assert [p["username"] for p in (await _room(bob, room["id"]))["players"]] == [
        "alice",
        "bob",
    ]
    a.send("START_GAME", room["id"])
    await b.receive("GAME_STARTED")
    listed = (await bob.http("GET", "/api/rooms/")).body["results"]
    assert [(r["id"], r["state"]) for r in listed] == [(room["id"], "in_game")]
    await _ok(await b.leave(room["id"]))
    assert [p["username"] for p in (await _room(alice, room["id"]))["players"]] == [
        "alice"
    ]


@pytest_twisted.ensureDeferred
async def test_a_deleted_room_leaves_the_listing_and_tells_its_members(start_any):
    server = await start_any()
    alice, a = await server.socket("alice")
    room = await server.room(alice)
    await _ok(await a.join(room["id"]))
    response = await alice.http("DELETE", f"/api/rooms/{room['id']}/")
    assert response.status == 204
    assert (await a.receive("ROOM_CLOSED"))["room_id"] == room["id"]
    assert (await alice.http("GET", f"/api/rooms/{room['id']}/")).status == 404
    assert (await alice.http("GET", "/api/rooms/")).body["count"] == 0
    reply = await a.request("CHAT_MESSAGE", room["id"], {"text": "hello?"})
    assert reply["data"]["code"] == "not_in_room"


@pytest_twisted.ensureDeferred
async def test_state_entries_teams_and_timers_are_kept_between_turns(start_any):
    server = await start_any(games=GAMES_HERE)
    alice, a = await server.socket("alice")
    room = await server.room(alice, game="keeper")
    await _ok(await a.join(room["id"]))
    a.send("keep", room["id"], {"delay": 0.3, "deck": ["ace"]})
    assert (await a.receive("KEPT"))["data"]["n"] == 1
    a.send("peek", room["id"])
    peek = (await a.receive("PEEK"))["data"]
    assert peek == {"n": 1, "deck": ["ace"], "red": [alice.user_id], "rang": False}
    await a.receive("RING", timeout=5)
    a.send("peek", room["id"])
    assert (await a.receive("PEEK"))["data"]["rang"] is True


class Slowpoke(BaseRouter):
    async def crawl(self, room, user, helper, data):
        await deferLater(reactor, 0.05, lambda: None)
        helper.self_send("CRAWLED", {})

    def ping(self, room, user, helper, data):
        helper.self_send("PONG", {})


@pytest_twisted.ensureDeferred
async def test_a_flooded_room_refuses_with_busy_and_other_rooms_carry_on(start_any):
    games = {"slow": Game(name="slow", max_players=5, routers=[Slowpoke])}
    settings = make_settings(max_pending_turns=5, message_rate=1000, message_burst=100)
    server = await start_any(settings, games=games)
    alice, a = await server.socket("alice")
    bob, b = await server.socket("bob")
    flooded = await server.room(alice, game="slow")
    other = await server.room(bob, game="slow")
    await _ok(await a.join(flooded["id"]))
    await _ok(await b.join(other["id"]))
    for _ in range(30):
        a.send("crawl", flooded["id"])
    await _pause(0.02)
    b.send("ping", other["id"])
    await b.receive("PONG")
    # The other room answered while the flooded one still had its turns to go.
    assert len([m for m in a.pending() if m["type"] == "CRAWLED"]) < 5
    busy = [await a.receive("ERROR") for _ in range(25)]
    assert {m["data"]["code"] for m in busy} == {"busy"}
    assert all(m["data"]["request_type"] == "crawl" for m in busy)
    # What was taken is done, within the cap's worth of turns.
    for _ in range(5):
        await a.receive("CRAWLED", timeout=2)
    await _pause(0.2)
    assert not [m for m in a.pending() if m["type"] in ("CRAWLED", "ERROR")]
    assert server.server.engine.counters.refused_busy == 25
    a.send("crawl", flooded["id"])  # and the room takes messages again
    await a.receive("CRAWLED")


# Redis: rooms that move, holders that are fenced off


@pytest_twisted.ensureDeferred
async def test_a_room_moves_to_another_process_with_everything_it_holds(redis_url):
    first = await start_on_redis(redis_url, games=GAMES_HERE)
    second = await start_on_redis(redis_url, games=GAMES_HERE)
    try:
        alice, a = await first.socket("alice")
        bob, b = await second.socket("bob")
        room = await first.room(alice, game="keeper")
        await _ok(await a.join(room["id"]))  # the first process takes the room
        await _ok(await b.join(room["id"]))
        assert room["id"] in first.server.engine.rooms
        a.send("START_GAME", room["id"])
        await b.receive("GAME_STARTED")
        a.send("CHAT_MESSAGE", room["id"], {"text": "before the move"})
        await b.receive("CHAT_MESSAGE")
        a.send("keep", room["id"], {"delay": 1.5, "deck": [7, 8]})
        await b.receive("KEPT")

        await stop(first)  # a clean stop: alice's socket goes, the room is handed over
        gone = await b.receive("USER_DISCONNECTED")
        assert gone["data"]["user"]["id"] == alice.user_id
        b.send("peek", room["id"])  # the second process takes the room now
        peek = (await b.receive("PEEK", timeout=10))["data"]
        assert peek == {"n": 1, "deck": [7, 8], "red": [alice.user_id], "rang": False}
        assert room["id"] in second.server.engine.rooms
        await b.receive("RING", timeout=10)  # the timer fires where the room is now

        alice_again = second.client()
        alice_again.access = alice.access
        a2 = await second.connect(alice_again)
        reply = await _ok(await a2.join(room["id"]))
        assert reply["data"]["room"]["state"] == "in_game"
        history = (await a2.receive("CHAT_HISTORY"))["data"]["messages"]
        assert [m["text"] for m in history] == ["before the move"]
    finally:
        await stop(second)
        if first.server.backend.running:
            await stop(first)


@pytest_twisted.ensureDeferred
async def test_a_holder_whose_lease_passed_on_is_fenced_off(redis_url):
    from gameserver._redis import keys

    server = await start_on_redis(redis_url, games=GAMES_HERE)
    redis = server.server.backend.redis
    try:
        alice, a = await server.socket("alice")
        room = await server.room(alice, game="keeper")
        await _ok(await a.join(room["id"]))
        Keeper.gate = Deferred()
        a.send("slow", room["id"])
        await _pause(0.1)
        # The lease runs out (a paused process, say) and someone else takes it.
        lease = keys.room(room["id"], "lease")
        await redis("SET", lease, "someone-else:99", "PX", 60_000)
        Keeper.gate.callback(None)
        await _pause(1.0)
        # The turn ran on what this process held, but was not saved, and
        # nothing it sent reached the client.
        assert not [m for m in a.pending() if m["type"] == "WRITTEN"]
        state = await redis("GET", keys.room(room["id"], "state"))
        assert "written" not in json.loads(state or "{}")
        assert room["id"] not in server.server.engine.rooms
        # Once the room is free again, the message is done, once.
        await redis("DEL", lease)
        await a.receive("WRITTEN", timeout=10)
        state = json.loads(await redis("GET", keys.room(room["id"], "state")))
        assert state["written"] is True
        await _pause(0.5)
        assert not [m for m in a.pending() if m["type"] == "WRITTEN"]
    finally:
        await stop(server)


@pytest_twisted.ensureDeferred
async def test_a_commit_that_does_not_follow_the_last_one_is_refused(redis_url):
    from gameserver._models import UserRef
    from gameserver._redis import keys, scripts
    from gameserver._redis.connection import RedisAddress, RedisConnection
    from gameserver._redis.store import RedisStore

    redis = RedisConnection(RedisAddress.parse(redis_url), reactor)
    for _ in range(250):
        if redis.connected:
            break
        await _pause(0.02)
    try:
        room = await RedisStore(redis).create_room(
            "r", "chat", UserRef(1, "a"), 2, None
        )
        room_keys = keys.room_keys(room.id)
        claimed = await redis.run(scripts.CLAIM, room_keys, ["me", 5000])
        assert int(claimed[0]) == 2
        lease = f"me:{int(claimed[1])}"
        assert (
            int(
                await redis.run(
                    scripts.COMMIT, room_keys, [lease, 0, 5000, 6, "S", "{}"]
                )
            )
            == 1
        )
        # Version 0 again: a commit sent after one that failed, say.
        assert (
            int(
                await redis.run(
                    scripts.COMMIT, room_keys, [lease, 0, 5000, 6, "S", "{}"]
                )
            )
            == -2
        )
        assert (
            int(await redis.run(scripts.COMMIT, room_keys, ["me:0", 1, 5000, 4])) == -1
        )
        other = await redis.run(scripts.CLAIM, room_keys, ["other", 5000])
        assert [int(other[0]), other[1]] == [1, lease]
        assert (
            int(
                await redis.run(scripts.RELEASE, [keys.room(room.id, "lease")], [lease])
            )
            == 1
        )
        again = await redis.run(scripts.CLAIM, room_keys, ["other", 5000])
        assert int(again[0]) == 2 and int(again[1]) == int(claimed[1]) + 1
    finally:
        await redis.disconnect()


pytestmark = pytest.mark.cluster


class SlowStart(BaseRouter):
    gate: Deferred = Deferred()

    async def on_start(self, room, helper, options):
        await SlowStart.gate
        room.state["started"] = True


@pytest_twisted.ensureDeferred
async def test_a_turn_is_saved_with_the_hooks_it_queued(redis_url):
    from gameserver._redis import keys

    games = {
        "slow": Game(name="slow", min_players=1, max_players=2, routers=[SlowStart])
    }
    server = await start_on_redis(redis_url, games=games)
    redis = server.server.backend.redis
    try:
        alice, a = await server.socket("alice")
        room = await server.room(alice, game="slow")
        await _ok(await a.join(room["id"]))
        SlowStart.gate = Deferred()
        a.send("START_GAME", room["id"])
        await _pause(0.3)
        # The start waits for its on_start hook: neither is saved, nor sent.
        meta = await redis("HGET", keys.room(room["id"], "meta"), "state")
        assert meta == "waiting"
        assert not [m for m in a.pending() if m["type"] == "GAME_STARTED"]
        SlowStart.gate.callback(None)
        await a.receive("GAME_STARTED")
        assert await redis("HGET", keys.room(room["id"], "meta"), "state") == "in_game"
        state = json.loads(await redis("GET", keys.room(room["id"], "state")))
        assert state == {"started": True}
    finally:
        await stop(server)


@pytest_twisted.ensureDeferred
async def test_turns_that_end_while_a_commit_is_out_share_the_next(redis_url):
    """A room has one commit in flight: a busy room's turns share calls."""
    from gameserver._redis import scripts

    server = await start_on_redis(redis_url)
    redis = server.server.backend.redis
    committer = server.server.engine.committer
    try:
        alice, a = await server.socket("alice")
        room = await server.room(alice, game="chat")
        await _ok(await a.join(room["id"]))
        await a.receive("CHAT_HISTORY")
        run, gates = redis.run, []

        def hold_first_commit(script, room_keys, args):
            sent = run(script, room_keys, args)
            if script is scripts.COMMIT and not gates:
                gate: Deferred = Deferred()
                gates.append(gate)
                # Redis's answer reaches the committer once the gate opens.
                sent.addBoth(lambda reply: gate.addCallback(lambda _: reply))
            return sent

        redis.run = hold_first_commit
        before = committer.commits
        a.send("CHAT_MESSAGE", room["id"], {"text": "m0"})
        for _ in range(250):  # until the first is out
            if gates:
                break
            await _pause(0.02)
        for n in range(1, 4):  # each in a reactor iteration of its own
            a.send("CHAT_MESSAGE", room["id"], {"text": f"m{n}"})
            await _pause(0.05)
        for _ in range(250):  # until the server has all three
            waiting = committer._batches.get(room["id"])
            if waiting is not None and waiting.turns == 3:
                break
            await _pause(0.02)
        # The first is out; the three after it wait for it, unsent.
        assert committer.commits == before + 1
        assert not [m for m in a.pending() if m["type"] == "CHAT_MESSAGE"]
        gates[0].callback(None)
        texts = [(await a.receive("CHAT_MESSAGE"))["data"]["text"] for _ in range(4)]
        assert texts == ["m0", "m1", "m2", "m3"]
        assert committer.commits == before + 2  # the three in one call
    finally:
        await stop(server)
