"""The admin API over real HTTP and sockets: in memory, and on two servers
sharing one Redis (rooms owned by the other one, sockets on both)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import globalLogPublisher

from gameserver import BaseRouter, Game, _tap
from gameserver.client import GameClient
from tests.conftest import PASSWORD, SECRET, make_settings, start, start_on_redis, stop

ADMIN = "Boss"


@pytest_twisted.async_yield_fixture(params=["memory", "redis"])
async def pair(request):
    """Two servers on one Redis, or one server (twice) in memory; the
    admin ``boss`` named in the settings."""
    settings = make_settings(admins=(ADMIN,))
    if request.param == "memory":
        a = await start(settings)
        servers = [a]
        b = a
    else:
        url = request.getfixturevalue("redis_url")
        a = await start_on_redis(url, settings)
        b = await start_on_redis(url, settings)
        servers = [b, a]
    boss = await a.user("boss")
    yield request.param, a, b, boss
    for server in servers:
        await stop(server)


def process_of(server) -> str:
    return server.server.engine.process_id


async def test_only_admins(pair):
    _, a, b, boss = pair
    alice = await a.user()
    anonymous = GameClient(a.url)
    paths = [
        ("GET", "/api/admin/stats/"),
        ("GET", "/api/admin/rooms/"),
        ("GET", "/api/admin/rooms/1/"),
        ("POST", "/api/admin/rooms/1/close/"),
        ("GET", "/api/admin/users/?q=a"),
        ("POST", f"/api/admin/users/{alice.user_id}/kick/"),
        ("POST", f"/api/admin/users/{alice.user_id}/ban/"),
        ("POST", f"/api/admin/users/{alice.user_id}/unban/"),
    ]
    for method, path in paths:
        response = await anonymous.http(method, path)
        assert response.status == 401, path
        assert response.headers.getRawHeaders(b"www-authenticate") == [b"Bearer"]
        response = await alice.http(method, path)
        assert response.status == 403, path
        assert response.body["code"] == "forbidden"
        assert "detail" in response.body
    # Nothing was done: alice is not banned.
    assert (await alice.http("GET", "/api/rooms/")).status == 200
    assert (await boss.http("GET", "/api/admin/stats/")).status == 200
    # The admin API keeps the API's conventions.
    assert (await boss.http("GET", "/api/admin/nothing/")).status == 404
    response = await boss.http("GET", "/api/admin/rooms/1/close/")
    assert response.status == 405 and response.body["code"] == "method_not_allowed"
    response = await boss.http("GET", "/api/admin/rooms/?state=sleeping")
    assert response.status == 400 and response.body["code"] == "invalid"


async def test_stats(pair):
    mode, a, b, boss = pair
    alice, s = await a.socket()
    bob, t = await b.socket()
    before = (await boss.http("GET", "/api/admin/stats/")).body
    room = (await a.room(alice))["id"]
    await s.join(room)
    await t.join(room)
    t.send("CHAT_MESSAGE", room, {"text": "hello"})
    await s.receive("CHAT_MESSAGE", room_id=room)
    await t.receive("CHAT_MESSAGE", room_id=room)
    stats = (await boss.http("GET", "/api/admin/stats/")).body
    assert stats["process"] == process_of(a)
    assert abs(stats["at"] - reactor.seconds()) < 5
    assert stats["messages_sent"] > before["messages_sent"]
    if mode == "memory":
        assert stats["sockets"] == stats["sockets_validated"] == 2
        assert stats["users"] == 2 and stats["rooms"] == 1
        assert "processes" not in stats
    else:  # this process's figures only; both processes alive
        assert stats["sockets"] == stats["sockets_validated"] == 1
        assert stats["users"] == 1
        assert stats["processes"] == 2
    # An unvalidated socket counts as a socket only.
    await a.connect(GameClient(a.url), validate=False)
    again = (await boss.http("GET", "/api/admin/stats/")).body
    assert again["sockets"] == stats["sockets"] + 1
    assert again["sockets_validated"] == stats["sockets_validated"]


async def test_rooms_listed_and_read_wherever_they_are_owned(pair):
    mode, a, b, boss = pair
    alice, s = await a.socket()
    bob, t = await b.socket()
    carol, c = await b.socket()
    duel = (await a.room(alice, game="duel", name="the duel"))["id"]
    chat = (await a.room(alice, name="the chat"))["id"]
    # Bob (on b) joins first: on Redis, b owns the rooms.
    assert (await t.join(duel))["data"]["is_successful"] is True
    assert (await s.join(duel))["data"]["is_successful"] is True
    assert (await c.spectate(duel))["data"]["is_successful"] is True
    await s.request("START_GAME", duel, reply="GAME_STARTED")
    for text in ("one", "two", "three"):
        t.send("CHAT_MESSAGE", duel, {"text": text})
        await s.receive("CHAT_MESSAGE", room_id=duel)
    t.abort()  # mid-game: bob keeps the seat, not present
    await s.receive("USER_DISCONNECTED", room_id=duel)

    listed = (await boss.http("GET", "/api/admin/rooms/")).body["results"]
    assert [r["id"] for r in listed] == [chat, duel]
    room = listed[1]
    expected_owner = process_of(a if mode == "memory" else b)
    assert room["process"] == expected_owner
    assert room["name"] == "the duel" and room["game"] == "duel"
    assert room["state"] == "in_game" and room["max_players"] == 2
    assert room["owner"] == {"id": alice.user_id, "username": room["owner"]["username"]}
    assert room["has_password"] is False
    players = {p["id"]: p["present"] for p in room["players"]}
    assert players == {bob.user_id: False, alice.user_id: True}
    assert [sp["id"] for sp in room["spectators"]] == [carol.user_id]
    assert 0 <= room["age"] < 60
    # Joins, the start, three chats, the disconnect: all in the last minute.
    assert room["messages_per_minute"] >= 7
    never_used = listed[0]
    assert never_used["players"] == [] and never_used["messages_per_minute"] == 0
    assert never_used["process"] == (process_of(a) if mode == "memory" else None)

    # Filters.
    response = await boss.http("GET", "/api/admin/rooms/?game=duel")
    assert [r["id"] for r in response.body["results"]] == [duel]
    response = await boss.http("GET", "/api/admin/rooms/?state=waiting")
    assert [r["id"] for r in response.body["results"]] == [chat]
    response = await boss.http("GET", "/api/admin/rooms/?game=chat&state=in_game")
    assert response.body["results"] == []

    # One room, with its data, read from the other process on Redis.
    detail = (await boss.http("GET", f"/api/admin/rooms/{duel}/")).body
    assert {k: v for k, v in detail.items() if k not in ("data", "chat", "age")} == {
        k: v for k, v in room.items() if k != "age"
    }
    assert detail["data"] == {"state": {}, "entries": {}}
    assert [m["text"] for m in detail["chat"]] == ["one", "two", "three"]
    assert detail["chat"][0]["user"]["id"] == bob.user_id
    unused = (await boss.http("GET", f"/api/admin/rooms/{chat}/")).body
    assert unused["data"] == {"state": {}, "entries": {}} and unused["chat"] == []
    missing = await boss.http("GET", "/api/admin/rooms/999/")
    assert missing.status == 404 and missing.body["code"] == "room_not_found"


class Tally(BaseRouter):
    """A game that writes its state document and a named entry."""

    def ADD(self, room, user, helper, data):
        room.state = {"total": room.state["total"] + data["n"]}
        room.set(f"by-{user.id}", data["n"])
        helper.broadcast("ADDED", room.state)


class Counter(Game):
    name = "tally"
    description = "adds numbers"
    min_players = 1
    max_players = 4
    routers = (Tally,)

    def initial_state(self):
        return {"total": 0}


async def test_a_room_shows_its_saved_state_and_entries(redis_url):
    """The detail of a room owned by the other process: its saved document
    and entries, as the owner last saved them."""
    games = {"tally": Counter()}
    settings = make_settings(admins=(ADMIN,))
    a = await start_on_redis(redis_url, settings, games=games)
    b = await start_on_redis(redis_url, settings, games=games)
    memory = await start(settings, games=games)
    try:
        for owner, other in ((b, a), (memory, memory)):
            alice, s = await owner.socket()
            room = (await owner.room(alice, game="tally"))["id"]
            fresh = (await _as_admin(other, f"/api/admin/rooms/{room}/")).body
            assert fresh["data"] == {"state": {"total": 0}, "entries": {}}
            await s.join(room)
            s.send("ADD", room, {"n": 5})
            await s.receive("ADDED", room_id=room)
            s.send("ADD", room, {"n": 2})
            assert (await s.receive("ADDED", room_id=room))["data"] == {"total": 7}
            detail = (await _as_admin(other, f"/api/admin/rooms/{room}/")).body
            assert detail["data"] == {
                "state": {"total": 7},
                "entries": {f"by-{alice.user_id}": 2},
            }
            assert detail["process"] == process_of(owner)
            assert detail["messages_per_minute"] >= 2
    finally:
        for server in (memory, b, a):
            await stop(server)


async def _as_admin(server, path):
    """``path`` asked of ``server`` by an admin (``boss``, made once)."""
    client = GameClient(server.url)
    if (await client.login("boss", PASSWORD)).status != 200:
        await client.register("boss", PASSWORD)
        await client.login("boss", PASSWORD)
    return await client.http("GET", path)


async def test_close_reaches_members_on_every_process(pair):
    mode, a, b, boss = pair
    alice, s = await a.socket()
    bob, t = await b.socket()
    carol, c = await b.socket()
    room = (await a.room(alice))["id"]
    for connection in (t, s):
        assert (await connection.join(room))["data"]["is_successful"] is True
    assert (await c.spectate(room))["data"]["is_successful"] is True

    response = await boss.http("POST", f"/api/admin/rooms/{room}/close/")
    assert response.status == 200 and response.body == {"closed": room}
    for connection in (s, t, c):
        closed = await connection.receive("ROOM_CLOSED", room_id=room)
        assert closed == {
            "type": "ROOM_CLOSED",
            "room_id": room,
            "data": {"reason": "closed by an admin"},
            "seq": closed["seq"],
        }
    # Gone from the lists, the store and the pools.
    assert (await alice.http("GET", f"/api/rooms/{room}/")).status == 404
    assert room not in [
        r["id"] for r in (await alice.http("GET", "/api/rooms/")).body["results"]
    ]
    listed = (await boss.http("GET", "/api/admin/rooms/")).body["results"]
    assert room not in [r["id"] for r in listed]
    dave = await b.user()
    quick = await dave.http("POST", "/api/rooms/quick/", {"game": "chat"})
    assert quick.status == 200 and quick.body["room"]["id"] != room
    joined = await s.join(room)
    assert joined["data"]["error"] == "room_not_found"
    again = await boss.http("POST", f"/api/admin/rooms/{room}/close/")
    assert again.status == 404 and again.body["code"] == "room_not_found"
    # A room nobody has used (on Redis, nobody owns): closed all the same.
    unused = (await a.room(alice))["id"]
    response = await boss.http("POST", f"/api/admin/rooms/{unused}/close/")
    assert response.body == {"closed": unused}
    assert (await boss.http("GET", f"/api/admin/rooms/{unused}/")).status == 404
    # The owner's delete sends the same message, with its reason.
    other = (await a.room(alice))["id"]
    await t.join(other)
    assert (await alice.http("DELETE", f"/api/rooms/{other}/")).status == 204
    closed = await t.receive("ROOM_CLOSED", room_id=other)
    assert closed["data"] == {"reason": "deleted by its owner"}


async def test_kick_closes_every_socket_of_the_user(pair):
    mode, a, b, boss = pair
    alice, s = await a.socket()
    elsewhere = await b.connect(alice)
    bob, t = await a.socket()
    response = await boss.http("POST", f"/api/admin/users/{alice.user_id}/kick/")
    assert response.status == 200 and response.body == {"kicked": alice.user_id}
    for connection in (s, elsewhere):
        code, reason = await connection.closed.addTimeout(5, reactor)
        assert code == 4003 and reason == "kicked"
    assert t.protocol.transport is not None and not t.protocol.closed.called
    # Kicked, not banned: she may come back.
    again = await b.connect(alice)
    assert again.protocol.transport is not None
    missing = await boss.http("POST", "/api/admin/users/9999/kick/")
    assert missing.status == 404 and missing.body["code"] == "user_not_found"


async def test_ban_refuses_tokens_and_logins_until_unbanned(pair):
    mode, a, b, boss = pair
    alice, s = await a.socket()
    elsewhere = await b.connect(alice)
    response = await boss.http("POST", f"/api/admin/users/{alice.user_id}/ban/")
    assert response.status == 200 and response.body == {"banned": alice.user_id}
    for connection in (s, elsewhere):
        code, reason = await connection.closed.addTimeout(5, reactor)
        assert code == 4003 and reason == "banned"
    for server in (a, b):
        client = GameClient(server.url)
        client.access, client.refresh = alice.access, alice.refresh
        refused = await client.http("GET", "/api/rooms/")
        assert refused.status == 403 and refused.body["code"] == "banned"
        refreshed = await client.http(
            "POST", "/api/token/refresh/", {"refresh": alice.refresh}
        )
        assert refreshed.status == 403 and refreshed.body["code"] == "banned"
        connection = await client.connect(validate=False)
        answer = await connection.validate(alice.access)
        assert answer["data"]["is_successful"] is False
        assert answer["data"]["error"] == "banned"
        assert (await connection.closed.addTimeout(5, reactor))[0] == 4001
    username = (await boss.http("GET", "/api/admin/users/?q=user")).body
    record = next(u for u in username["results"] if u["id"] == alice.user_id)
    assert record["banned"] is True and record["online"] is False
    # A log-in with the password is told; a wrong password is told nothing.
    login = await GameClient(b.url).login(record["username"], PASSWORD)
    assert login.status == 403 and login.body["code"] == "banned"
    wrong = await GameClient(b.url).login(record["username"], "not the password")
    assert wrong.status == 401 and wrong.body["code"] == "bad_credentials"

    response = await boss.http("POST", f"/api/admin/users/{alice.user_id}/unban/")
    assert response.status == 200 and response.body == {"unbanned": alice.user_id}
    assert (await alice.http("GET", "/api/rooms/")).status == 200
    back = GameClient(b.url)
    assert (await back.login(record["username"], PASSWORD)).status == 200
    connection = await b.connect(back)
    assert connection.protocol.transport is not None

    # Admins cannot be banned, the admin himself included.
    boss_id = (await boss.http("GET", "/api/admin/users/?q=boss")).body["results"][0][
        "id"
    ]
    refused = await boss.http("POST", f"/api/admin/users/{boss_id}/ban/")
    assert refused.status == 409 and refused.body["code"] == "cannot_ban_admin"
    assert (await boss.http("GET", "/api/admin/stats/")).status == 200
    missing = await boss.http("POST", "/api/admin/users/9999/ban/")
    assert missing.status == 404


async def test_user_search(pair):
    mode, a, b, boss = pair
    for name in ("zed", "zedd", "Zeda", "other"):
        await a.user(name)
    _, z = await b.socket("zebra")
    found = (await boss.http("GET", "/api/admin/users/?q=ZED")).body["results"]
    assert found[0]["username"] == "zed"  # the exact one first
    assert sorted(u["username"] for u in found) == ["Zeda", "zed", "zedd"]
    assert all(u["admin"] is False and u["banned"] is False for u in found)
    zebra = (await boss.http("GET", "/api/admin/users/?q=zeb")).body["results"]
    assert [(u["username"], u["online"]) for u in zebra] == [("zebra", True)]
    me = (await boss.http("GET", "/api/admin/users/?q=boss")).body["results"]
    assert [(u["username"], u["admin"], u["online"]) for u in me] == [
        ("boss", True, False)
    ]
    assert (await boss.http("GET", "/api/admin/users/?q=nobody")).body == {
        "results": []
    }
    for bad in ("", "a*", "a%20b", "x" * 33):
        response = await boss.http("GET", f"/api/admin/users/?q={bad}")
        assert response.status == 400 and response.body["code"] == "invalid", bad


async def test_admin_actions_are_logged_with_who_did_them(pair):
    mode, a, b, boss = pair
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        alice, s = await a.socket()
        room = (await a.room(alice))["id"]
        await s.join(room)
        await boss.http("POST", f"/api/admin/rooms/{room}/close/")
        await boss.http("POST", f"/api/admin/users/{alice.user_id}/kick/")
        await boss.http("POST", f"/api/admin/users/{alice.user_id}/ban/")
        await boss.http("POST", f"/api/admin/users/{alice.user_id}/unban/")
    finally:
        globalLogPublisher.removeObserver(events.append)
    actions = [e for e in events if e.get("admin") == "boss"]
    assert [e["log_format"].split()[2] for e in actions] == [
        "closed",
        "kicked",
        "banned",
        "unbanned",
    ]
    assert actions[0]["room"] == room
    assert all(e["user_id"] == alice.user_id for e in actions[1:])
    for event in events:
        text = repr(event)
        assert boss.access not in text and alice.access not in text


async def test_the_admins_option():
    options = _tap.Options()
    options.parseOptions(["--admins", "Boss, chief,", "--secret", SECRET])
    assert options["settings"].admins == ("boss", "chief")
    plain = _tap.Options()
    plain.parseOptions(["--secret", SECRET])
    assert plain["settings"].admins == ()
    settings = make_settings(admins=("CHIEF",))
    server = await start(settings)
    try:
        chief = await server.user("chief")
        assert (await chief.http("GET", "/api/admin/stats/")).status == 200
        other = await server.user()
        assert (await other.http("GET", "/api/admin/stats/")).status == 403
    finally:
        await stop(server)


def _script() -> list[str]:
    installed = Path(sys.executable).parent / "gameserver-admin"
    if installed.exists():
        return [str(installed)]
    return [sys.executable, "-m", "gameserver._admin_cli"]


async def _run(*args: str) -> tuple[int, str, str]:
    command = _script()
    out, err, code = await getProcessOutputAndValue(
        command[0], [*command[1:], *args], env={"PATH": "/usr/bin:/bin"}
    )
    return code, out.decode(), err.decode()


async def test_the_admin_script_marks_admins_in_redis(redis_url):
    a = await start_on_redis(redis_url)
    b = await start_on_redis(redis_url)
    try:
        alice = await a.user("alice")
        assert (await alice.http("GET", "/api/admin/stats/")).status == 403
        code, out, err = await _run("--redis", redis_url, "grant", "ALICE")
        assert code == 0, err
        assert out.strip() == f"alice (id {alice.user_id}) is an admin now"
        for server in (a, b):  # the mark is in the store: every process sees it
            client = GameClient(server.url)
            client.access = alice.access
            assert (await client.http("GET", "/api/admin/stats/")).status == 200
        code, out, _ = await _run("--redis", redis_url, "list")
        assert code == 0 and out.splitlines() == [f"{alice.user_id}\talice"]
        found = (await alice.http("GET", "/api/admin/users/?q=alice")).body
        assert found["results"][0]["admin"] is True
        code, out, _ = await _run("--redis", redis_url, "revoke", "alice")
        assert code == 0 and "is not an admin now" in out
        assert (await alice.http("GET", "/api/admin/stats/")).status == 403
        code, out, _ = await _run("--redis", redis_url, "list")
        assert code == 0 and out == ""
        # Her password still works: the record was changed, not replaced.
        assert (await GameClient(a.url).login("alice", PASSWORD)).status == 200
        code, _, err = await _run("--redis", redis_url, "grant", "nobody")
        assert code == 1 and "there is no user 'nobody'" in err
        code, _, err = await _run("--redis", "redis://127.0.0.1:1/0", "list")
        assert code == 1 and "cannot reach Redis" in err
        code, _, err = await _run("grant", "alice")
        assert code == 2 and "--redis" in err
    finally:
        await stop(b)
        await stop(a)


@pytest.mark.parametrize("flags", [{"admin": True}, {"banned": True}])
def test_flags_survive_a_redis_record(flags):
    """Records written before the flags existed read as neither."""
    import json

    import attrs

    from gameserver._models import UserRecord

    old = {"id": 1, "username": "x", "password_hash": "h", "guest_until": None}
    assert UserRecord(**old) == UserRecord(1, "x", "h")
    new = attrs.evolve(UserRecord(1, "x", "h"), **flags)
    assert UserRecord(**json.loads(json.dumps(attrs.asdict(new)))) == new


async def test_two_twistd_processes_with_admins(cluster):
    """``twistd gameserver --admins`` in real processes on one Redis: a room
    owned by the other process, closed from this one; a kick reaching a
    socket on the other process."""
    a = await cluster(extra=("--admins", "boss"))
    b = await cluster(extra=("--admins", "boss"))
    boss = a.client()
    await boss.register("boss", PASSWORD)
    await boss.login("boss", PASSWORD)
    alice = b.client()
    await alice.register("alice", PASSWORD)
    await alice.login("alice", PASSWORD)
    on_b = await alice.connect()
    room = (await alice.create_room("on b", "chat")).body["id"]
    assert (await on_b.join(room))["data"]["is_successful"] is True
    stats = (await boss.http("GET", "/api/admin/stats/")).body
    assert stats["processes"] == 2
    listed = (await boss.http("GET", "/api/admin/rooms/")).body["results"]
    assert [r["id"] for r in listed] == [room]
    assert listed[0]["process"] not in (None, stats["process"])
    assert listed[0]["players"] == [
        {"id": listed[0]["owner"]["id"], "username": "alice", "present": True}
    ]
    response = await boss.http("POST", f"/api/admin/rooms/{room}/close/")
    assert response.body == {"closed": room}
    closed = await on_b.receive("ROOM_CLOSED", room_id=room)
    assert closed["data"] == {"reason": "closed by an admin"}
    user_id = listed[0]["owner"]["id"]
    assert (await boss.http("POST", f"/api/admin/users/{user_id}/kick/")).status == 200
    assert (await on_b.closed.addTimeout(5, reactor))[0] == 4003
    assert (await alice.http("GET", "/api/admin/stats/")).status == 403
    logged = a.output()  # where the admin asked
    assert f"admin boss closed room {room}" in logged
    assert "admin boss kicked alice" in logged
    assert boss.access not in logged and boss.access not in b.output()


def test_the_rate_counts_the_last_minute_of_the_log():
    from gameserver._engine.figures import per_minute
    from gameserver._engine.room import Logged

    log = [
        Logged(i, b"{}", None, None, at) for i, at in enumerate((10, 50, 60, 61, 119))
    ]
    assert per_minute(log, 120.0) == 3  # 60 to 119: within 60 s of 120
    assert per_minute(log, 200.0) == 0
    assert per_minute([], 5.0) == 0
