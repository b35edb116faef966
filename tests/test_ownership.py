"""Rooms owned by one process at a time, over real processes on one Redis.

Each test starts its own ``twistd gameserver --redis`` processes, and
stops, kills, pauses (SIGSTOP) and resumes them: a clean stop hands its
rooms over, a paused owner is fenced off once its lease has run out, a
process taken for dead has its clients reconnect, an owner killed in the
middle of a turn is taken over once its lease runs out, and a process
reads only what is for its own sockets.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from gameserver._redis import keys
from gameserver._redis.connection import RedisAddress
from tests.cluster import ServerProcess
from tests.conftest import PASSWORD


async def _user(server: ServerProcess, name: str, *, register: bool = True) -> Any:
    client = server.client()
    if register:
        assert (await client.register(name, PASSWORD)).status == 201
    assert (await client.login(name, PASSWORD)).status == 200
    return client


async def _ok(reply: dict) -> dict:
    assert reply["data"].get("is_successful") is True, reply
    return reply


async def _pause(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def _bumped(socket, count: int, timeout: float = 20) -> list[int]:
    return [
        (await socket.receive("BUMPED", timeout=timeout))["data"]["n"]
        for _ in range(count)
    ]


@pytest_twisted.ensureDeferred
async def test_a_clean_stop_hands_its_rooms_over_with_no_lost_turn(cluster):
    a, b = await cluster(), await cluster()
    alice, bob = await _user(a, "alice"), await _user(b, "bob")
    room = (await alice.create_room("counter", "counter")).body
    sa, sb = await alice.connect(), await bob.connect()
    await _ok(await sa.join(room["id"]))  # process a takes the room
    await _ok(await sb.join(room["id"]))
    for n in range(36):
        sb.send("bump", room["id"])
        if n == 12:
            a.terminate()  # a rolling restart: a hands the room over and exits
        await _pause(0.03)
    # Every bump was done exactly once, in order, across the hand-over.
    assert await _bumped(sb, 36) == list(range(1, 37))
    sb.send("count", room["id"])
    assert (await sb.receive("COUNT"))["data"]["n"] == 36
    assert a.process.wait(10) is not None
    assert "Traceback" not in a.output()


@pytest_twisted.ensureDeferred
async def test_a_paused_owner_whose_lease_ran_out_is_fenced_off(cluster):
    extra = ("--lease-ttl", "1", "--process-ttl", "60")
    a, b = await cluster(extra=extra), await cluster(extra=extra)
    alice, bob = await _user(a, "alice"), await _user(b, "bob")
    room = (await alice.create_room("counter", "counter")).body
    sa, sb = await alice.connect(), await bob.connect()
    await _ok(await sa.join(room["id"]))  # process a takes the room
    await _ok(await sb.join(room["id"]))
    sb.send("bump", room["id"])
    assert await _bumped(sb, 1) == [1]

    a.pause()
    for _ in range(3):  # they wait for a, then b takes the room over
        sb.send("bump", room["id"])
    assert await _bumped(sb, 3) == [2, 3, 4]
    sa.send("bump", room["id"])  # read by a when it wakes, on its stale room
    await _pause(0.2)
    a.resume()
    # a ran the bump on n == 1 and could not save it; the bump was done where
    # the room is now, on n == 4, and nothing of a's stale turn was sent.
    assert await _bumped(sa, 1) == [5]
    await _pause(1.0)
    assert not [m for m in sa.pending() + sb.pending() if m["type"] == "BUMPED"]
    sb.send("count", room["id"])
    assert (await sb.receive("COUNT"))["data"]["n"] == 5


@pytest_twisted.ensureDeferred
async def test_a_process_taken_for_dead_asks_its_clients_to_reconnect(cluster):
    extra = ("--lease-ttl", "1", "--process-ttl", "1.5")
    a, b = await cluster(extra=extra), await cluster(extra=extra)
    alice, bob = await _user(a, "alice"), await _user(b, "bob")
    room = (await bob.create_room("lounge", "chat")).body
    sa, sb = await alice.connect(), await bob.connect()
    await _ok(await sb.join(room["id"]))
    await _ok(await sa.join(room["id"]))
    await _pause(3.5)  # b has been alive long enough to judge others

    a.pause()
    left = await sb.receive("USER_LEFT", timeout=20)  # b let alice go
    assert left["data"]["user"]["username"] == "alice"
    a.resume()
    # a finds it was taken for dead at its next heartbeat, and has its
    # clients come back (1012: service restart) rather than serve them wrong.
    code, _ = await sa.closed
    assert code == 1012
    again = await alice.connect()
    await _ok(await again.join(room["id"]))
    assert (await sb.receive("USER_JOINED"))["data"]["user"]["username"] == "alice"
    sb.send("CHAT_MESSAGE", room["id"], {"text": "welcome back"})
    assert (await again.receive("CHAT_MESSAGE"))["data"]["text"] == "welcome back"


@pytest_twisted.ensureDeferred
async def test_an_owner_killed_mid_turn_is_taken_over_once_its_lease_runs_out(
    cluster,
):
    extra = ("--lease-ttl", "2", "--process-ttl", "60")
    a, b = await cluster(extra=extra), await cluster(extra=extra)
    alice, bob = await _user(a, "alice"), await _user(b, "bob")
    room = (await alice.create_room("counter", "counter")).body
    sa, sb = await alice.connect(), await bob.connect()
    await _ok(await sa.join(room["id"]))  # process a takes the room
    await _ok(await sb.join(room["id"]))
    sa.send("hold", room["id"], {"seconds": 60})  # a turn that holds the room
    await _pause(0.2)
    sb.send("bump", room["id"])  # waits behind it
    await _pause(0.2)
    killed = time.monotonic()
    a.kill()
    # Nobody may take the room while a's lease lasts; then b does, and the
    # bump is done on what was last saved (the hold never was).
    assert await _bumped(sb, 1, timeout=20) == [1]
    waited = time.monotonic() - killed
    print(f"\nthe room went on {waited:.1f} s after its owner was killed")
    assert waited > 1.0
    sb.send("count", room["id"])
    assert (await sb.receive("COUNT"))["data"]["n"] == 1


async def _count_channels(redis_url: str, names: list[str]) -> Any:
    """Subscribe to processes' channels, counting what is published on each.

    Every publish counts, whatever its channel: each message is counted on
    the channel given by its position in the subscription (one connection
    per channel keeps them apart).
    """
    from gameserver._redis.connection import Subscriber

    counts: Counter = Counter()
    subscribers = []
    for name in names:

        def count(raw: bytes, name: str = name) -> None:
            counts[name] += 1

        subscriber = Subscriber(RedisAddress.parse(redis_url), reactor, [name], count)
        subscriber.start()
        subscribers.append(subscriber)
    for _ in range(200):
        if all(s.ready for s in subscribers):
            break
        await _pause(0.02)
    return counts, subscribers


@pytest_twisted.ensureDeferred
async def test_a_process_reads_only_the_messages_for_its_own_sockets(
    cluster, redis_url
):
    a, b, c = await cluster(), await cluster(), await cluster()
    alice, bob, carol = (
        await _user(a, "alice"),
        await _user(b, "bob"),
        await _user(c, "carol"),
    )
    shared = (await alice.create_room("shared", "chat")).body
    alone = (await carol.create_room("alone", "chat")).body
    sa, sb, sc = await alice.connect(), await bob.connect(), await carol.connect()
    await _ok(await sa.join(shared["id"]))  # a owns the shared room
    await _ok(await sb.join(shared["id"]))
    await _ok(await sc.join(alone["id"]))  # c owns the other
    channels = {s: keys.channel(s.process_id) for s in (a, b, c)}
    counts, subscribers = await _count_channels(redis_url, list(channels.values()))
    try:
        for n in range(20):
            sa.send("CHAT_MESSAGE", shared["id"], {"text": f"m{n}"})
            sc.send("CHAT_MESSAGE", alone["id"], {"text": f"c{n}"})
            await _pause(0.01)
        for n in range(20):
            assert (await sb.receive("CHAT_MESSAGE"))["data"]["text"] == f"m{n}"
            assert (await sc.receive("CHAT_MESSAGE"))["data"]["text"] == f"c{n}"
        await _pause(0.3)
        # Only b had a recipient of another process's room (bob, of a's room),
        # and it got each message once; a and c, whose rooms' members are
        # their own sockets, and who have no member in the other's room,
        # read nothing at all.
        assert 1 <= counts[channels[b]] <= 20
        assert counts[channels[a]] == 0
        assert counts[channels[c]] == 0
    finally:
        for subscriber in subscribers:
            await subscriber.stop()


pytestmark = pytest.mark.cluster
