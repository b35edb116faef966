"""Graceful drain: a stop finishes what is in flight, refuses what is new,
closes every socket with 1012, and with Redis hands the rooms over with
nothing acknowledged lost and no seat taken from a player who comes back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest
import pytest_twisted
from autobahn.exception import Disconnected
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import deferLater
from twisted.web.server import Site

from gameserver import BaseRouter, Game
from gameserver.client import Connection, GameClient
from tests.conftest import GAMES, PASSWORD, SECRET, Running, make_settings
from tests.redis_server import free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class GateRouter(BaseRouter):
    """``SLOW`` waits for the test's gate: a turn in flight when the stop begins."""

    gate: Any = None

    def get_routes(self, routes: Any = None) -> dict:
        return super().get_routes({"SLOW": self.slow, "BUMP": self.bump})

    async def slow(self, room: Any, user: Any, helper: Any, data: dict) -> None:
        await GateRouter.gate
        room.state["slow"] = True
        helper.broadcast("SLOW_DONE", {})

    def bump(self, room: Any, user: Any, helper: Any, data: dict) -> None:
        room.state["n"] = room.state.get("n", 0) + 1
        helper.self_send("BUMPED", {"n": room.state["n"]})


class Gated(Game):
    name = "gated"
    min_players = 1
    max_players = 10
    chat_backlog = 500
    routers = (GateRouter,)


DRAIN_GAMES = {**GAMES, "gated": Gated()}


async def _pause(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def _ok(reply: dict) -> dict:
    assert reply["data"].get("is_successful") is True, reply
    return reply


@pytest_twisted.ensureDeferred
async def test_a_stop_finishes_the_turn_in_flight_refuses_new_work_and_closes_1012(
    start_any,
):
    server = await start_any(make_settings(), games=DRAIN_GAMES)
    alice, a = await server.socket()
    bob, b = await server.socket()
    room_id = (await server.room(alice, game="gated"))["id"]
    await _ok(await a.join(room_id))
    await _ok(await b.join(room_id))
    ops = await server.server.listen_operations("tcp:0:interface=127.0.0.1")
    ops_url = f"http://127.0.0.1:{ops.getHost().port}"
    try:
        GateRouter.gate = Deferred()
        a.send("SLOW", room_id)
        room = server.server.engine.rooms[room_id]
        for _ in range(200):
            if room.running:
                break
            await _pause(0.01)
        stopping = ensureDeferred(server.server.stop(timeout=5))
        await _pause(0.1)
        assert not stopping.called  # waiting for the turn in flight

        # New work is refused, and says why; nothing new is accepted.
        refused = await b.request("CHAT_MESSAGE", room_id, {"text": "late"})
        assert refused["type"] == "ERROR"
        assert refused["data"]["code"] == "unavailable"
        with pytest.raises(ConnectionRefusedError):  # not listening any more
            await server.connect(server.client())
        ready = await GameClient(ops_url).http("GET", "/readyz")
        assert ready.status == 503 and "draining" in ready.body["detail"]
        assert (await GameClient(ops_url).http("GET", "/healthz")).status == 200

        GateRouter.gate.callback(None)  # the turn finishes, is saved, is sent
        for socket in (a, b):
            assert (await socket.receive("SLOW_DONE", room_id=room_id))["type"]
        assert (await a.closed)[0] == 1012
        assert (await b.closed)[0] == 1012
        await stopping
        assert server.server.draining
        if server.server.backend is not None:
            assert not server.server.backend.running
            assert not server.server.engine.rooms  # handed over
    finally:
        await ops.stopListening()


@pytest_twisted.ensureDeferred
async def test_embedded_a_stopping_server_refuses_logins_and_handshakes_with_503(
    make_server,
):
    """The host application's site goes on listening: the server's own
    resources refuse what would start a session."""
    server = await make_server()
    await server.socket("embedder")
    site = Site(server.server.resource)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    try:
        host = GameClient(f"http://127.0.0.1:{port.getHost().port}")
        assert (await host.login("embedder", PASSWORD)).status == 200
        await server.server.stop(timeout=2)
        refused = await host.login("embedder", PASSWORD)
        assert refused.status == 503, refused.body
        assert refused.body["code"] == "unavailable"
        signup = await host.register("newcomer", PASSWORD)
        assert signup.status == 503
        assert (await host.http("GET", "/api/games/")).status == 200
        with pytest.raises(ConnectionError, match="503"):
            await host.connect()
    finally:
        await port.stopListening()


async def _chat_until_acked(
    conn: Connection, room_id: int, text: str, timeout: float = 10
) -> bool:
    """Send a chat message; True once its echo comes back (acknowledged),
    False if it is refused. ``ConnectionError`` if the socket closes."""
    conn.send("CHAT_MESSAGE", room_id, {"text": text})
    while True:
        m = await conn.receive(
            "CHAT_MESSAGE", "ERROR", room_id=room_id, timeout=timeout
        )
        if m["type"] == "ERROR":
            if m["data"].get("request_type") == "CHAT_MESSAGE":
                return False
        elif m["data"].get("text") == text:
            return True


async def _bump(conn: Connection, room_id: int, timeout: float = 10) -> int | None:
    conn.send("BUMP", room_id)
    while True:
        m = await conn.receive("BUMPED", "ERROR", room_id=room_id, timeout=timeout)
        if m["type"] == "BUMPED":
            return m["data"]["n"]
        if m["data"].get("request_type") == "BUMP":
            return None


@pytest_twisted.ensureDeferred
async def test_a_rolling_restart_on_redis_loses_nothing_acknowledged(redis_url):
    """Players on process a chat and make moves without pause while a
    drains; each reconnects to b when closed (1012) and goes on. Every
    acknowledged message and move is in the room afterwards, read from Redis
    by a third process; every player kept their seat; nobody was told
    anyone left."""
    from tests.conftest import start_on_redis, stop

    settings = make_settings(drain_timeout=8.0)
    a = await start_on_redis(redis_url, settings, games=DRAIN_GAMES)
    b = await start_on_redis(redis_url, settings, games=DRAIN_GAMES)
    servers = [b, a]
    try:
        players = [await a.user(f"player{i}") for i in range(3)]
        watcher = await b.user("watcher")
        room_id = (await a.room(players[0], game="gated", name="drained"))["id"]
        on_a = [await a.connect(p) for p in players]
        for conn in on_a:
            await _ok(await conn.join(room_id))  # a owns the room
        assert room_id in a.server.engine.rooms
        w = await b.connect(watcher)
        await _ok(await w.join(room_id))

        acked_chat: list[str] = []
        acked_bumps: list[int] = []
        reconnected: list[int] = []
        drain_started = Deferred()

        async def play(i: int, conn: Connection) -> None:
            client_b = GameClient(b.url)
            client_b.access = players[i].access
            n, after = 0, 0
            while after < 4:
                n += 1
                try:
                    if await _chat_until_acked(conn, room_id, f"p{i}-{n}"):
                        acked_chat.append(f"p{i}-{n}")
                    bumped = await _bump(conn, room_id)
                    if bumped is not None:
                        acked_bumps.append(bumped)
                except (ConnectionError, Disconnected):
                    code, _ = await conn.closed
                    assert code == 1012
                    conn = await client_b.reconnect(conn)
                    b.connections.append(conn)
                    assert conn.rejoined[room_id]["data"]["is_successful"]
                    assert conn.rejoined[room_id]["data"]["resumed"] is True
                    reconnected.append(i)
                    continue
                if reconnected.count(i):
                    after += 1
                if n == 3 and i == 0:
                    drain_started.callback(None)
                await _pause(0.005)

        plays = [ensureDeferred(play(i, conn)) for i, conn in enumerate(on_a)]
        await drain_started
        await a.server.stop()
        for done in plays:
            await done
        assert sorted(reconnected) == [0, 1, 2]
        assert not a.server.engine.rooms  # handed over

        room = (await watcher.http("GET", f"/api/rooms/{room_id}/")).body
        seated = {p["username"] for p in room["players"]}
        assert seated == {"player0", "player1", "player2", "watcher"}
        moves = [m for m in w.pending() if m["type"] in ("USER_LEFT", "USER_JOINED")]
        assert moves == [], moves

        # b hands the room back too; a third process reads what was saved.
        await stop(b)
        servers.remove(b)
        c = await start_on_redis(redis_url, settings, games=DRAIN_GAMES)
        servers.append(c)
        reader = await c.user("reader")
        r = await c.connect(reader)
        await _ok(await r.join(room_id))
        history = await r.receive("CHAT_HISTORY", room_id=room_id)
        saved = [m["text"] for m in history["data"]["messages"]]
        assert set(acked_chat) <= set(saved)
        assert len(saved) == len(set(saved))  # nothing done twice
        count = await _bump(r, room_id)
        assert count == len(acked_bumps) + 1  # every acknowledged move, once
        assert sorted(acked_bumps) == list(range(1, len(acked_bumps) + 1))
    finally:
        for server in servers:
            await stop(server)


@pytest_twisted.ensureDeferred
async def test_a_player_who_does_not_come_back_leaves_before_the_hand_over(redis_url):
    """Alice's process drains and she never reconnects: at the drain's
    deadline she leaves as on a disconnect, before the room is handed over
    (so the departure is saved, not dropped with the room)."""
    from tests.conftest import start_on_redis, stop

    settings = make_settings(drain_timeout=2.0)
    a = await start_on_redis(redis_url, settings, games=DRAIN_GAMES)
    b = await start_on_redis(redis_url, settings, games=DRAIN_GAMES)
    try:
        alice, sa = await a.socket("alice")
        bob = await b.user("bob")
        room_id = (await a.room(alice, game="gated"))["id"]
        await _ok(await sa.join(room_id))  # a owns the room
        sb = await b.connect(bob)
        await _ok(await sb.join(room_id))
        await a.server.stop()
        assert (await sa.closed)[0] == 1012
        left = await sb.receive("USER_LEFT", room_id=room_id, timeout=1)
        assert left["data"]["user"]["username"] == "alice"
        room = (await bob.http("GET", f"/api/rooms/{room_id}/")).body
        assert [p["username"] for p in room["players"]] == ["bob"]
    finally:
        for server in (b, a):
            await stop(server)


def _twistd(port: int, log: Any, *extra: str) -> subprocess.Popen:
    """Its output to ``log``: a ``gameserver-*.log``, which the run's check
    for secrets reads (tests/log_secrets.py)."""
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "twisted",
            "--log-format=text",
            "gameserver",
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            "--secret",
            SECRET,
            "--password-cost",
            "10",
            *extra,
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def _started(url: str, process: subprocess.Popen, log: Any) -> None:
    for _ in range(300):
        assert process.poll() is None, log.read_text()
        try:
            if (await GameClient(url).http("GET", "/healthz")).status == 200:
                return
        except Exception:
            pass
        await _pause(0.05)
    raise AssertionError("twistd did not start")


@pytest_twisted.ensureDeferred
async def test_sigterm_drains_twistd_in_memory_within_the_drain_timeout(tmp_path):
    """A real ``twistd -n gameserver``: SIGTERM closes the sockets with 1012
    and the process exits once drained, well within ``--drain-timeout``."""
    port = free_port()
    log = tmp_path / f"gameserver-{port}.log"
    with log.open("wb") as out:
        process = _twistd(port, out, "--drain-timeout", "4")
    url = f"http://127.0.0.1:{port}"
    try:
        await _started(url, process, log)
        running = Running(None, url, None)  # type: ignore[arg-type]
        _, conn = await running.socket("sigterm")
        process.send_signal(signal.SIGTERM)
        code, reason = await conn.closed
        assert code == 1012, (code, reason)
        for _ in range(100):
            if process.poll() is not None:
                break
            await _pause(0.05)
        output = log.read_text()
        # twistd stops the reactor, then kills itself with the same signal.
        assert process.returncode == -signal.SIGTERM, output
        assert "draining: 1 sockets" in output and "drained" in output, output
        assert "Traceback" not in output
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


@pytest_twisted.ensureDeferred
async def test_sigterm_on_redis_keeps_the_seat_of_a_player_who_comes_back(cluster):
    """Real processes: a rolling restart of the room's owner. Alice is closed
    with 1012, comes back through b and resumes in her seat; bob, on b, is
    never told she left; a exits once she is back, long before the timeout."""
    a = await cluster(extra=("--drain-timeout", "20"))
    b = await cluster()
    alice, bob = a.client(), b.client()
    for client, name in ((alice, "alice"), (bob, "bob")):
        assert (await client.register(name, PASSWORD)).status == 201
        assert (await client.login(name, PASSWORD)).status == 200
    room = (await alice.create_room("restart", "counter")).body
    sa, sb = await alice.connect(), await bob.connect()
    await _ok(await sa.join(room["id"]))  # a takes the room
    await _ok(await sb.join(room["id"]))
    for _ in range(3):
        sa.send("bump", room["id"])
        await sa.receive("BUMPED")
    a.terminate()
    code, _ = await sa.closed
    assert code == 1012
    again = GameClient(b.url)
    again.access = alice.access
    sa2 = await again.reconnect(sa)
    assert sa2.rejoined[room["id"]]["data"]["resumed"] is True
    for _ in range(100):
        if a.process.poll() is not None:
            break
        await _pause(0.1)
    assert a.process.poll() is not None, "a did not exit once drained"
    assert "drained" in a.output() and "Traceback" not in a.output()
    sa2.send("bump", room["id"])
    assert (await sa2.receive("BUMPED"))["data"]["n"] == 4
    moves = [m for m in sb.pending() if m["type"] in ("USER_LEFT", "USER_DISCONNECTED")]
    assert moves == [], moves
    players = (await bob.http("GET", f"/api/rooms/{room['id']}/")).body["players"]
    assert {p["username"] for p in players} == {"alice", "bob"}
    sa2.abort()
