"""Requests across processes: each done exactly once, in order, whatever is lost.

Pub/sub loses what is published while a subscriber reconnects, owners
change, commits fail: each test here breaks one link of the chain (a lost
message, a room changing hands under waiting requests, a commit refused
after its turn ran, a Redis blip, a delete with requests behind it, a clean
stop) and checks that no request is skipped, done twice, or left without
an answer. They run servers in this process on a real redis-server.
"""

from __future__ import annotations

import msgpack
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred, fail
from twisted.internet.task import deferLater

from gameserver._engine.room import DELETE, JOIN, LiveRoom, Reply, Work
from gameserver._errors import Unavailable
from gameserver._models import UserRef
from gameserver._redis import keys
from gameserver._redis.channels import WORK
from gameserver._redis.connection import RedisAddress, Subscriber
from tests.conftest import start_on_redis, stop


async def _pause(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def _shared_room(a, b) -> tuple:
    """Alice on ``a`` makes a room and joins first (``a`` owns it); Bob on ``b`` joins."""
    alice, sa = await a.socket("alice")
    bob, sb = await b.socket("bob")
    rid = (await a.room(alice))["id"]
    assert (await sa.join(rid))["data"]["is_successful"]
    assert (await sb.join(rid))["data"]["is_successful"]
    return alice, sa, bob, sb, rid


async def _texts(socket) -> list:
    texts = []
    while True:
        try:
            message = await socket.receive("CHAT_MESSAGE", "ERROR", timeout=0.3)
        except Exception:
            return texts
        texts.append(message["data"].get("text", message["data"]))


@pytest_twisted.ensureDeferred
async def test_a_request_lost_on_the_way_is_done_when_sent_again(redis_url):
    """A request lost by pub/sub, with the next one delivered: the owner does
    not take the next until the lost one comes again, then does both, in order."""
    a = await start_on_redis(redis_url)
    b = await start_on_redis(redis_url)
    try:
        alice, sa, bob, sb, rid = await _shared_room(a, b)
        ha = a.server.backend.hosting
        real = ha.channel._handle
        dropped = []

        def message(m):
            if m[0] == WORK and not dropped:
                dropped.append(m[3])  # lost on the way (pub/sub)
                return
            real(m)

        ha.channel._handle = message
        sb.send("CHAT_MESSAGE", rid, {"text": "one"})
        await _pause(0.05)
        sb.send("CHAT_MESSAGE", rid, {"text": "two"})
        await _pause(2.5)  # the retry of "one" comes and goes
        texts = await _texts(sa)
        assert texts == ["one", "two"], texts
    finally:
        await stop(a)
        await stop(b)


@pytest_twisted.ensureDeferred
async def test_waiting_requests_go_first_when_their_room_comes_here(redis_url):
    """Requests out to an owner that died go first, in order, when the room
    comes to their own process by another path (a timer, another's request)."""
    a = await start_on_redis(redis_url)
    try:
        alice, sa = await a.socket("alice")
        rid = (await a.room(alice))["id"]
        assert (await sa.join(rid))["data"]["is_successful"]
        host = a.server.backend.hosting
        await _pause(0.2)
        # The room passes to another process ("ghost"), which then dies.
        host.release(host.engine.rooms[rid])
        await _pause(0.1)
        await host.redis("SET", keys.room(rid, "lease"), "ghost:99", "PX", 60000)
        sa.send("CHAT_MESSAGE", rid, {"text": "one"})  # seq n: sent to ghost
        await _pause(0.1)
        # ghost's lease runs out; this process claims the room by another path
        # (what _fire_timers or _work -> claim do).
        await host.redis("DEL", keys.room(rid, "lease"))
        claimed = await host.claim(rid)
        assert isinstance(claimed, LiveRoom)  # not held elsewhere, and there
        sa.send("CHAT_MESSAGE", rid, {"text": "two"})  # seq n+1: runs locally
        await _pause(2.0)  # the retry of "one" fires meanwhile
        texts = await _texts(sa)
        assert texts == ["one", "two"], texts
    finally:
        await stop(a)


@pytest_twisted.ensureDeferred
async def test_a_request_sent_again_is_acknowledged_only_once_saved(redis_url):
    """A request sent again before its commit is saved is not answered as
    done: if that commit then fails, nobody holds an answer for undone work."""
    a = await start_on_redis(redis_url)
    got = []
    sub = Subscriber(
        RedisAddress.parse(redis_url),
        reactor,
        [keys.channel("procX")],
        lambda raw: got.append(msgpack.unpackb(raw, raw=False)),
    )
    sub.start()
    try:
        alice, sa = await a.socket("alice")
        rid = (await a.room(alice))["id"]
        assert (await sa.join(rid))["data"]["is_successful"]
        host = a.server.backend.hosting
        for _ in range(100):
            if sub.ready:
                break
            await _pause(0.02)
        assert sub.ready  # or the check below would see nothing, and pass
        room = host.engine.rooms[rid]
        bob = UserRef(424242, "bob")

        def work():
            return Work(
                JOIN,
                rid,
                bob,
                Reply("procX", 7),
                "JOIN_ROOM",
                {},
                processes=("procX",),
                password_ok=True,
                origin="procX",
                seq=1,
            )

        # Another process takes the lease (ours ran out while we were busy);
        # this SET reaches Redis before our flush's COMMIT.
        host.redis("SET", keys.room(rid, "lease"), "other:1", "PX", 60000)
        host.engine.submit(room, work())  # the forwarded join: turn done in memory
        host.engine.submit(room, work())  # its retry, same iteration: "duplicate"
        await _pause(0.5)
        seen = await host.redis("HGETALL", keys.room(rid, "seen"))
        acked = [m for m in got if m[0] == 0 and 1 in m[3]]
        assert not (acked and "procX" not in seen), "acked work that was never saved"
    finally:
        await sub.stop()
        await stop(a)


@pytest_twisted.ensureDeferred
async def test_a_disconnect_waits_out_a_redis_blip(redis_url):
    """A disconnect whose owner cannot be reached once is sent again, not
    given up: the user does not stay in the room for good."""
    a = await start_on_redis(redis_url)
    b = await start_on_redis(redis_url)
    try:
        alice, sa, bob, sb, rid = await _shared_room(a, b)
        hb = b.server.backend.hosting
        # A Redis blip at b: its publish of the GONE is lost, and the CLAIM of
        # the retry fails once.
        real_publish, real_claim = hb._publish, hb.claim
        hb._publish = lambda process, message: None
        hb.claim = lambda room_id: fail(Unavailable("the store (Redis) failed: blip"))
        sb.abort()
        await _pause(1.5)
        hb._publish, hb.claim = real_publish, real_claim
        await _pause(3.0)
        room = a.server.engine.rooms[rid]
        assert bob.user_id not in room.present, "bob is a ghost"
    finally:
        await stop(a)
        await stop(b)


@pytest_twisted.ensureDeferred
async def test_requests_behind_a_delete_are_answered(redis_url):
    """Requests queued or in flight behind a delete are answered (the room
    is gone), not left waiting for ever."""
    a = await start_on_redis(redis_url)
    try:
        alice, sa = await a.socket("alice")
        rid = (await a.room(alice))["id"]
        assert (await sa.join(rid))["data"]["is_successful"]
        host = a.server.backend.hosting
        owner = UserRef(alice.user_id, "x")
        second = []
        # right after the first batch (the delete) is sent, before its reply:
        committer = host.committer
        real_send = committer._send

        def send(batch):
            real_send(batch)
            if not second:
                second.append(host.request(Work(DELETE, rid, user=owner)))

        committer._send = send
        first = host.request(Work(DELETE, rid, user=owner))
        await _pause(1.5)
        assert first.called
        assert second[0].called, "a request behind the delete was left waiting"
    finally:
        await stop(a)


@pytest_twisted.ensureDeferred
async def test_a_clean_stop_leaves_holding_no_room(redis_url):
    """A process stopping cleanly hands its rooms over and claims none again
    for the requests still arriving: it leaves holding no lease."""
    a = await start_on_redis(redis_url)
    b = await start_on_redis(redis_url)
    try:
        alice, sa, bob, sb, rid = await _shared_room(a, b)
        pid = a.server.backend.process_id
        sending = True

        async def chatter():
            n = 0
            while sending:
                n += 1
                sb.send("CHAT_MESSAGE", rid, {"text": f"b{n}"})
                await _pause(0.005)

        loop = ensureDeferred(chatter())
        await _pause(0.2)
        await a.port.stopListening()
        await a.server.backend.stopService()  # a clean stop of a
        holder = await b.server.backend.redis("GET", keys.room(rid, "lease"))
        sending = False
        await loop
        assert holder is None or not holder.startswith(pid), (
            "stopped process still holds the room"
        )
    finally:
        await stop(b)
        for c in a.connections:
            if c.protocol.transport is not None:
                c.abort()


pytestmark = pytest.mark.cluster


@pytest_twisted.ensureDeferred
async def test_a_disconnect_that_never_arrives_is_found_by_the_owner(redis_url):
    """The owner checks, now and then, that its rooms' present users still
    have sockets where it thinks: one whose disconnect was lost is let go."""
    from tests.conftest import make_settings

    settings = make_settings(presence_check=0.3)
    a = await start_on_redis(redis_url, settings)
    b = await start_on_redis(redis_url, settings)
    try:
        alice, sa, bob, sb, rid = await _shared_room(a, b)
        hb = b.server.backend.hosting
        real_submit = hb.submit
        hb.submit = lambda work: None if work.kind == "gone" else real_submit(work)
        sb.abort()  # b never tells a
        left = await sa.receive("USER_LEFT", timeout=5)
        assert left["data"]["user"]["id"] == bob.user_id
        assert bob.user_id not in a.server.engine.rooms[rid].present
    finally:
        await stop(a)
        await stop(b)


@pytest_twisted.ensureDeferred
async def test_a_commit_saved_whose_answer_was_lost_is_delivered_once(redis_url):
    """The connection drops after a commit ran in Redis, before its answer
    came: the room is given up, and when this process has it again it finds
    the commit saved, and delivers its messages then, once."""
    from twisted.python.failure import Failure

    a = await start_on_redis(redis_url)
    try:
        alice, sa = await a.socket("alice")
        bob, sb = await a.socket("bob")
        rid = (await a.room(alice))["id"]
        assert (await sa.join(rid))["data"]["is_successful"]
        assert (await sb.join(rid))["data"]["is_successful"]
        committer = a.server.backend.hosting.committer
        real_saved = committer._saved

        def answer_lost(reply, batch):
            committer._saved = real_saved
            committer._failed(Failure(Unavailable("the store (Redis) failed")), batch)

        committer._saved = answer_lost
        sa.send("CHAT_MESSAGE", rid, {"text": "saved, answer lost"})
        for socket in (sa, sb):
            message = await socket.receive("CHAT_MESSAGE", timeout=5)
            assert message["data"]["text"] == "saved, answer lost"
        await _pause(1.0)
        assert await _texts(sa) == []  # once, not again
        assert await _texts(sb) == []
    finally:
        await stop(a)
