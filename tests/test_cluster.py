"""Several real gameserver processes on one Redis: the guarantees, and the faults.

Each test starts its own server processes (``twistd gameserver --redis``);
the fault tests also start, kill and restart their own ``redis-server``.
"""

from __future__ import annotations

import time

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.internet.task import deferLater

from gameserver.client import GameClient
from tests.cluster import ServerProcess
from tests.conftest import PASSWORD
from tests.redis_server import RedisServer


async def _user(
    server: ServerProcess, name: str, *, register: bool = True
) -> GameClient:
    client = server.client()
    if register:
        assert (await client.register(name, PASSWORD)).status == 201
    assert (await client.login(name, PASSWORD)).status == 200
    return client


async def _ok(reply: dict) -> dict:
    assert reply["data"].get("is_successful") is True, reply
    return reply


async def _gets(socket, text: str) -> bool:
    """Whether ``socket`` receives a chat message with ``text`` within a second."""
    try:
        while (await socket.receive("CHAT_MESSAGE", timeout=1))["data"]["text"] != text:
            pass
    except Exception:
        return False
    return True


async def _pause(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_processes_share_users_rooms_and_membership(cluster):
    a, b = await cluster(), await cluster()
    alice = await _user(a, "alice")
    alice_on_b = await _user(b, "alice", register=False)
    bob = await _user(b, "bob")
    room = (await alice.create_room("shared", "chat")).body
    listed = (await bob.http("GET", "/api/rooms/")).body
    assert [r["id"] for r in listed["results"]] == [room["id"]]

    a1, a2, b1 = await alice.connect(), await alice_on_b.connect(), await bob.connect()
    await _ok(await a1.join(room["id"]))
    await _ok(await b1.join(room["id"]))
    assert (await a1.receive("USER_JOINED"))["data"]["user"]["username"] == "bob"
    # Alice is one member, whichever process her sockets are on.
    assert (await a2.receive("USER_JOINED"))["data"]["user"]["username"] == "bob"
    await _ok(await a2.join(room["id"]))
    b1.send("CHAT_MESSAGE", room["id"], {"text": "to both of alice's sockets"})
    for socket in (a1, a2, b1):
        assert (await socket.receive("CHAT_MESSAGE"))["data"]["text"].startswith(
            "to both"
        )

    await a1.close()  # alice is still on process b
    a2.send("CHAT_MESSAGE", room["id"], {"text": "still here"})
    message = await b1.receive("CHAT_MESSAGE", "USER_LEFT", "USER_JOINED")
    assert message["type"] == "CHAT_MESSAGE"
    await a2.close()
    assert (await b1.receive("USER_LEFT"))["data"]["user"]["username"] == "alice"


@pytest_twisted.ensureDeferred
async def test_the_last_seat_goes_to_exactly_one_of_two_processes(cluster):
    a, b = await cluster(), await cluster()
    owner = await _user(a, "owner")
    x, y = await _user(a, "xavier"), await _user(b, "yolanda")
    o, xs, ys = await owner.connect(), await x.connect(), await y.connect()
    for n in range(5):
        room = (await owner.create_room(f"duel {n}", "counter", max_players=2)).body
        await _ok(await o.join(room["id"]))
        replies = await DeferredList(
            [ensureDeferred(xs.join(room["id"])), ensureDeferred(ys.join(room["id"]))]
        )
        outcomes = sorted(str(r["data"].get("error", "seated")) for _, r in replies)
        assert outcomes == ["room_full", "seated"], outcomes
        players = (await owner.http("GET", f"/api/rooms/{room['id']}/")).body["players"]
        assert len(players) == 2


@pytest_twisted.ensureDeferred
async def test_turns_of_one_room_run_one_at_a_time_across_processes(cluster):
    a, b = await cluster(), await cluster()
    alice, bob = await _user(a, "alice"), await _user(b, "bob")
    room = (await alice.create_room("counter", "counter")).body
    sa, sb = await alice.connect(), await bob.connect()
    await _ok(await sa.join(room["id"]))
    await _ok(await sb.join(room["id"]))
    for _ in range(30):
        sa.send("bump", room["id"])
        sb.send("bump", room["id"])
    seen = {"a": [], "b": []}
    for key, socket in (("a", sa), ("b", sb)):
        for _ in range(30):
            seen[key].append((await socket.receive("BUMPED", timeout=20))["data"]["n"])
    # No update was lost, and each socket's turns ran in the order it sent them.
    assert sorted(seen["a"] + seen["b"]) == list(range(1, 61))
    assert seen["a"] == sorted(seen["a"]) and seen["b"] == sorted(seen["b"])
    sa.send("count", room["id"])
    assert (await sa.receive("COUNT"))["data"]["n"] == 60


@pytest_twisted.ensureDeferred
async def test_a_timer_fires_exactly_once_and_survives_its_process(cluster):
    a, b = await cluster(), await cluster()
    alice, bob = await _user(a, "alice"), await _user(b, "bob")
    room = (await alice.create_room("bells", "counter")).body
    sa, sb = await alice.connect(), await bob.connect()
    await _ok(await sa.join(room["id"]))
    await _ok(await sb.join(room["id"]))

    sa.send("arm", room["id"], {"delay": 1.0})  # both processes watch for it
    await sa.receive("ARMED")
    assert (await sb.receive("RING", timeout=10))["data"]["rings"] == 1
    assert (await sa.receive("RING", timeout=10))["data"]["rings"] == 1

    sa.send("arm", room["id"], {"delay": 1.5})
    await sa.receive("ARMED")
    a.kill()  # the process that set the timer dies before it is due
    assert (await sb.receive("RING", timeout=15))["data"]["rings"] == 2
    await _pause(1.0)
    sb.send("count", room["id"])
    assert (await sb.receive("COUNT"))["data"]["rings"] == 2
    assert not [m for m in sb.pending() if m["type"] == "RING"]


@pytest_twisted.ensureDeferred
async def test_a_killed_process_s_players_continue_on_another(cluster):
    a, b = await cluster(), await cluster()
    alice, bob = await _user(a, "alice"), await _user(b, "bob")
    room = (await alice.create_room("game", "tictactoe")).body
    sa, sb = await alice.connect(), await bob.connect()
    await _ok(await sa.join(room["id"]))
    await _ok(await sb.join(room["id"]))
    await sa.receive("BOARD")
    await sb.receive("BOARD")
    sa.send("MOVE", room["id"], {"cell": 0})
    assert (await sb.receive("BOARD"))["data"]["cells"][0] == "X"
    a.kill()  # perhaps holding the room's lock: another process waits out its lease

    # Alice's client reconnects to the other process, with the same tokens.
    alice_on_b = GameClient(b.url)
    alice_on_b.access, alice_on_b.refresh = alice.access, alice.refresh
    sa2 = await alice_on_b.connect()
    sa2.send("JOIN_ROOM", room["id"])
    reply = await _ok(await sa2.receive("JOIN_ROOM", "ERROR", timeout=15))
    assert reply["data"]["room"]["state"] == "in_game"
    board = (await sa2.receive("BOARD"))["data"]
    assert board["cells"][0] == "X"
    for mover, cell in [(sb, 3), (sa2, 1), (sb, 4), (sa2, 2)]:
        mover.send("MOVE", room["id"], {"cell": cell})
        board = (await sa2.receive("BOARD", timeout=10))["data"]
    assert board["winner"] is not None
    assert board["line"] == [0, 1, 2]


@pytest_twisted.ensureDeferred
async def test_users_of_a_dead_process_leave_rooms_not_in_a_game(cluster):
    a, b = await cluster(), await cluster()
    alice, bob = await _user(a, "alice"), await _user(b, "bob")
    room = (await bob.create_room("lounge", "chat")).body
    sa, sb = await alice.connect(), await bob.connect()
    await _ok(await sb.join(room["id"]))
    await _ok(await sa.join(room["id"]))
    a.kill()
    # Once its heartbeat has lapsed, another process lets alice go.
    left = await sb.receive("USER_LEFT", timeout=30)
    assert left["data"]["user"]["username"] == "alice"
    players = (await bob.http("GET", f"/api/rooms/{room['id']}/")).body["players"]
    assert [p["username"] for p in players] == ["bob"]


@pytest_twisted.ensureDeferred
async def test_everything_survives_restarting_every_process(cluster):
    a, b = await cluster(), await cluster()
    alice, bob = await _user(a, "alice"), await _user(b, "bob")
    room = (await alice.create_room("kept", "tictactoe", password="mint")).body
    sa, sb = await alice.connect(), await bob.connect()
    await _ok(await sa.join(room["id"], "mint"))
    await _ok(await sb.join(room["id"], "mint"))
    sa.send("CHAT_MESSAGE", room["id"], {"text": "before the restart"})
    await sb.receive("CHAT_MESSAGE")
    sa.send("MOVE", room["id"], {"cell": 4})
    await sb.receive("BOARD")
    await sb.receive("BOARD")
    a.stop()
    b.stop()

    c = await cluster()
    again = await _user(c, "alice", register=False)  # the account is still there
    kept = (await again.http("GET", f"/api/rooms/{room['id']}/")).body
    assert [p["username"] for p in kept["players"]] == ["alice", "bob"]
    assert kept["state"] == "in_game" and kept["has_password"]
    socket = await again.connect()
    await _ok(await socket.join(room["id"]))  # a seat holder needs no password
    assert (await socket.receive("BOARD"))["data"]["cells"][4] == "X"
    history = (await socket.receive("CHAT_HISTORY"))["data"]["messages"]
    assert [m["text"] for m in history] == ["before the restart"]


@pytest_twisted.ensureDeferred
async def test_a_redis_outage_is_reported_and_play_resumes(cluster, tmp_path):
    redis = RedisServer(tmp_path / "redis", durable=True)
    (tmp_path / "redis").mkdir()
    redis.start()
    try:
        a, b = await cluster(redis.url), await cluster(redis.url)
        alice, bob = await _user(a, "alice"), await _user(b, "bob")
        room = (await alice.create_room("outage", "chat")).body
        sa, sb = await alice.connect(), await bob.connect()
        await _ok(await sa.join(room["id"]))
        await _ok(await sb.join(room["id"]))

        redis.stop()
        started = time.monotonic()
        reply = await sa.request("CHAT_MESSAGE", room["id"], {"text": "anyone?"})
        assert reply["type"] == "ERROR" and reply["data"]["code"] == "unavailable"
        response = await alice.http("GET", "/api/rooms/")
        assert response.status == 503
        assert time.monotonic() - started < 5
        assert not sa.closed.called and not sb.closed.called  # still connected

        redis.start()
        restarted = time.monotonic()
        recovered = None
        # Recovered when a message gets through from one process to the
        # other: each reconnects on its own schedule, and what is published
        # before a process has subscribed again is lost (pub/sub is
        # at-most-once), so a message may need sending again.
        for attempt in range(120):
            text = f"back? {attempt}"
            sb.send("CHAT_MESSAGE", room["id"], {"text": text})
            if await _gets(sa, text):
                recovered = time.monotonic() - restarted
                break
            await _pause(0.25)
        assert recovered is not None, "play did not resume within 30 s"
        print(f"\nrecovered {recovered:.1f} s after Redis came back")
        for attempt in range(20):
            text = f"and the other way {attempt}"
            sa.send("CHAT_MESSAGE", room["id"], {"text": text})
            if await _gets(sb, text):
                break
        else:
            raise AssertionError("no message from process a reached process b")
    finally:
        redis.stop()


@pytest.mark.parametrize(
    ("url", "extra", "message"),
    [
        ("redis://127.0.0.1:{free}/0", ["--secret", "s" * 40], "cannot reach Redis at"),
        ("redis://:wrong@127.0.0.1:{port}/0", ["--secret", "s" * 40], "refused AUTH"),
        ("redis://127.0.0.1:{port}/99", ["--secret", "s" * 40], "refused SELECT"),
        ("redis://127.0.0.1:{port}/0", [], "--redis needs --secret"),
        ("http://127.0.0.1:{port}/0", [], "not a redis://"),
    ],
)
def test_bad_redis_configuration_is_a_clear_message_at_start(
    tmp_path, redis_url, url, extra, message
):
    import subprocess
    import sys

    from tests.cluster import REPO
    from tests.redis_server import free_port

    port = redis_url.split(":")[2].split("/")[0]
    url = url.format(free=free_port(), port=port)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "twisted",
            "gameserver",
            "--port",
            "0",
            "--redis",
            url,
            *extra,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in output, output
    assert "Traceback" not in output, output


pytestmark = pytest.mark.cluster


@pytest_twisted.ensureDeferred
async def test_forty_quick_joins_over_two_processes_fill_twenty_games(cluster):
    """Real processes: 40 guests quick-join tic-tac-toe at once, half on each."""
    a, b = await cluster(), await cluster()
    players = []
    for n in range(40):
        client = (a if n % 2 else b).client()
        guest = await client.http("POST", "/api/token/guest/")
        assert guest.status == 200, guest.body
        client.access = guest.body["access"]
        players.append((client, await client.connect()))
    for _, socket in players:
        socket.send("QUICK_JOIN", data={"game": "tictactoe"})
    replies = [await socket.receive("QUICK_JOIN", timeout=20) for _, socket in players]
    assert all(r["data"]["is_successful"] for r in replies), replies
    rooms = {r["room_id"] for r in replies}
    assert len(rooms) == 20
    for room_id in rooms:
        room = (await players[0][0].http("GET", f"/api/rooms/{room_id}/")).body
        assert len(room["players"]) == 2
        assert room["state"] == "in_game"  # tic-tac-toe starts with its second


async def _through(socket, type_: str, **data) -> list[dict]:
    """Every message up to and with the first of ``type_`` with ``data``."""
    got = []
    while True:
        message = await socket.receive(timeout=20)
        got.append(message)
        if message["type"] == type_ and all(
            message["data"].get(k) == v for k, v in data.items()
        ):
            return got


@pytest_twisted.ensureDeferred
async def test_a_dropped_player_resumes_after_the_owner_process_is_killed(cluster):
    """Trivia: carol drops for over 5 s; meanwhile a question is answered and
    closed, the others chat, and the room's owner process is SIGKILLed. Back
    on the other process, she gets exactly what she missed, in order."""
    a, b = await cluster(), await cluster()
    alice, bob = await _user(a, "alice"), await _user(b, "bob")
    carol = await _user(b, "carol")
    room = (await alice.create_room("quiz", "trivia")).body
    sa, sb, sc = await alice.connect(), await bob.connect(), await carol.connect()
    for socket in (sa, sb, sc):  # alice first: process a owns the room
        await _ok(await socket.join(room["id"]))
    sa.send("START_GAME", room["id"], {"rounds": 3, "seconds": 5})
    before = await _through(sc, "QUESTION", index=0)
    last = max(m["seq"] for m in before if "seq" in m)
    seen = await _through(sb, "QUESTION", index=0)  # what bob gets meanwhile
    dropped = time.monotonic()
    sc.abort()
    seen += await _through(sb, "USER_DISCONNECTED")

    for socket in (sa, sb):  # a question is answered...
        socket.send("ANSWER", room["id"], {"index": 0, "choice": 0})
    seen += await _through(sb, "RESULT", index=0)  # ...and closes when time is up
    sa.send("CHAT_MESSAGE", room["id"], {"text": "who was that?"})
    seen += await _through(sb, "CHAT_MESSAGE", text="who was that?")
    sb.send("CHAT_MESSAGE", room["id"], {"text": "carol, back soon"})
    seen += await _through(sb, "CHAT_MESSAGE", text="carol, back soon")
    a.kill()  # the room's owner dies during the drop

    await _pause(max(0.0, 5.0 - (time.monotonic() - dropped)))
    carol_on_b = GameClient(b.url)
    carol_on_b.access, carol_on_b.refresh = carol.access, carol.refresh
    sc2 = await carol_on_b.connect()
    sc2.send("JOIN_ROOM", room["id"], {"resume": last})
    reply = await _ok(await sc2.receive("JOIN_ROOM", "ERROR", timeout=20))
    assert reply["data"]["resumed"] is True
    got = await _through(sc2, "QUESTION", index=1)
    seen += await _through(sb, "QUESTION", index=1)
    # Bob's view of the same stretch, less what was only his (ANSWERED) and
    # carol's own comings and goings.
    expected = [
        m
        for m in seen
        if m.get("seq", 0) > last
        and m["type"] != "ANSWERED"
        and m["data"].get("user", {}).get("username") != "carol"
    ]
    assert got == expected
    types = [m["type"] for m in got]
    assert types.count("RESULT") == 1 and types.count("CHAT_MESSAGE") == 2
    assert [m["seq"] for m in got] == sorted({m["seq"] for m in got})
