"""Every row of the HTTP API, over real HTTP against a server on port 0."""

from __future__ import annotations

from urllib.parse import quote

import pytest_twisted

from tests.conftest import PASSWORD


def _detail(response) -> str:
    assert set(response.body) == {"detail", "code"}, response.body
    return response.body["detail"]


@pytest_twisted.ensureDeferred
async def test_create_user(running):
    client = running.client()
    response = await client.register("alice", PASSWORD)
    assert response.status == 201
    assert response.body == {"id": response.body["id"], "username": "alice"}
    assert isinstance(response.body["id"], int)


@pytest_twisted.ensureDeferred
async def test_create_user_taken_in_any_case(running):
    client = running.client()
    assert (await client.register("alice", PASSWORD)).status == 201
    response = await client.register("ALICE", PASSWORD)
    assert response.status == 409
    assert "taken" in _detail(response)


@pytest_twisted.ensureDeferred
async def test_create_user_invalid(running):
    client = running.client()
    for body in [
        {"username": "al", "password": PASSWORD},
        {"username": "a" * 33, "password": PASSWORD},
        {"username": "bad name", "password": PASSWORD},
        {"username": "bob", "password": "short"},
        {"username": "bob"},
        {"username": 5, "password": PASSWORD},
        ["bob", PASSWORD],
        "bob",
    ]:
        response = await client.http("POST", "/api/users/", body)
        assert response.status == 400, body
        _detail(response)


@pytest_twisted.ensureDeferred
async def test_malformed_bodies_are_400_not_500(running):
    client = running.client()
    for raw in [b"{bad", b"", b"\xff\xfe", b'{"username": NaN}', b'{"a": 1, "a": 2}']:
        response = await client.http("POST", "/api/users/", raw)
        assert response.status == 400, raw
        assert "JSON" in _detail(response)


@pytest_twisted.ensureDeferred
async def test_oversized_body_is_413(running):
    client = running.client()
    response = await client.http("POST", "/api/users/", b" " * (64 * 1024 + 1))
    assert response.status == 413
    _detail(response)
    assert (await client.register("after", PASSWORD)).status == 201


def _raw_http(port: int, head: bytes, body_chunks, read_timeout: float = 5.0) -> bytes:
    """Send a request by hand; returns what the server answered."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as s:
        s.sendall(head)
        try:
            for chunk in body_chunks:
                s.sendall(chunk)
        except OSError:
            pass  # the server hung up mid-body, as it should
        answer = b""
        while True:
            try:
                data = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            answer += data
        return answer


@pytest_twisted.ensureDeferred
async def test_a_huge_body_is_refused_before_it_is_received(running):
    from twisted.internet.threads import deferToThread

    port = int(running.url.rsplit(":", 1)[1])
    head = (
        b"POST /api/users/ HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 314572800\r\n\r\n"
    )
    sent = []

    def chunks():
        for _ in range(300):  # 300 MiB, if the server kept reading
            sent.append(1)
            yield b" " * (1024 * 1024)

    answer = await deferToThread(_raw_http, port, head, chunks())
    assert answer.startswith(b"HTTP/1.1 413")
    assert len(sent) < 300


@pytest_twisted.ensureDeferred
async def test_a_huge_chunked_body_is_refused_as_it_arrives(running):
    from twisted.internet.threads import deferToThread

    port = int(running.url.rsplit(":", 1)[1])
    head = b"POST /api/users/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    sent = []

    def chunks():
        for _ in range(300):
            sent.append(1)
            yield b"100000\r\n" + b" " * 0x100000 + b"\r\n"

    answer = await deferToThread(_raw_http, port, head, chunks())
    assert answer.startswith(b"HTTP/1.1 413")
    assert len(sent) < 300


@pytest_twisted.ensureDeferred
async def test_a_non_utf8_host_header_is_no_500(running):
    from twisted.internet.threads import deferToThread

    client = await running.user()
    for i in range(11):
        await client.create_room(f"r{i}", "chat")
    port = int(running.url.rsplit(":", 1)[1])
    head = (
        b"GET /api/rooms/ HTTP/1.1\r\nHost: \xff\xfe\r\nConnection: close\r\n"
        b"Authorization: Bearer " + client.access.encode() + b"\r\n\r\n"
    )
    answer = await deferToThread(_raw_http, port, head, [])
    assert answer.startswith(b"HTTP/1.1 200")


@pytest_twisted.ensureDeferred
async def test_token_pair(running):
    client = running.client()
    await client.register("alice", PASSWORD)
    response = await client.login("alice", PASSWORD)
    assert response.status == 200
    assert set(response.body) == {"access", "refresh"}


@pytest_twisted.ensureDeferred
async def test_token_refused(running):
    client = running.client()
    await client.register("alice", PASSWORD)
    for username, password in [("alice", "wrong password"), ("nobody", PASSWORD)]:
        response = await client.login(username, password)
        assert response.status == 401
        assert _detail(response) == "wrong username or password"


@pytest_twisted.ensureDeferred
async def test_refresh(running):
    client = await running.user()
    response = await client.http(
        "POST", "/api/token/refresh/", {"refresh": client.refresh}, token=""
    )
    assert response.status == 200
    assert set(response.body) == {"access"}
    rooms = await client.http("GET", "/api/rooms/", token=response.body["access"])
    assert rooms.status == 200


@pytest_twisted.ensureDeferred
async def test_refresh_refuses_access_tokens_and_garbage(running):
    client = await running.user()
    for body in [{"refresh": client.access}, {"refresh": "x.y.z"}, {}, {"refresh": 3}]:
        response = await client.http("POST", "/api/token/refresh/", body, token="")
        assert response.status == 401, body
        _detail(response)


@pytest_twisted.ensureDeferred
async def test_refresh_token_is_not_an_access_token(running):
    client = await running.user()
    response = await client.http("GET", "/api/rooms/", token=client.refresh)
    assert response.status == 401
    assert response.headers.getRawHeaders(b"www-authenticate") == [b"Bearer"]


@pytest_twisted.ensureDeferred
async def test_games(running):
    response = await running.client().http("GET", "/api/games/")
    assert response.status == 200
    assert response.body == [
        {"name": "chat", "description": "talk", "min_players": 1, "max_players": 50},
        {
            "name": "duel",
            "description": "two players",
            "min_players": 2,
            "max_players": 2,
        },
    ]


@pytest_twisted.ensureDeferred
async def test_create_room(running):
    owner = await running.user("owner")
    response = await owner.create_room("Room one", "duel", password="s3cret")
    assert response.status == 201
    room = response.body
    assert room == {
        "id": room["id"],
        "name": "Room one",
        "game": "duel",
        "owner": {"id": room["owner"]["id"], "username": "owner"},
        "has_password": True,
        "players": [],
        "max_players": 2,
        "state": "waiting",
        "spectators": 0,
    }
    assert "s3cret" not in str(response.body)
    fetched = await owner.http("GET", f"/api/rooms/{room['id']}/")
    assert fetched.status == 200
    assert fetched.body == room
    assert not any("password" in key and key != "has_password" for key in fetched.body)


@pytest_twisted.ensureDeferred
async def test_create_room_invalid(running):
    owner = await running.user()
    for body in [
        {"game": "chat"},
        {"name": "", "game": "chat"},
        {"name": "x" * 65, "game": "chat"},
        {"name": "r"},
        {"name": "r", "game": "poker"},
        {"name": "r", "game": "chat", "max_players": 51},
        {"name": "r", "game": "duel", "max_players": 1},
        {"name": "r", "game": "chat", "max_players": "3"},
        {"name": "r", "game": "chat", "max_players": True},
        {"name": "r", "game": "chat", "password": ""},
        {"name": "r", "game": "chat", "password": "abc"},
        {"name": "r", "game": "chat", "password": 1234},
        [],
    ]:
        response = await owner.http("POST", "/api/rooms/", body)
        assert response.status == 400, body
        _detail(response)


@pytest_twisted.ensureDeferred
async def test_rooms_need_a_token(running):
    client = running.client()
    for method, path, body in [
        ("GET", "/api/rooms/", None),
        ("POST", "/api/rooms/", {"name": "r", "game": "chat"}),
        ("GET", "/api/rooms/1/", None),
        ("DELETE", "/api/rooms/1/", None),
    ]:
        for token in ["", "not-a-token"]:
            response = await client.http(method, path, body, token=token)
            assert response.status == 401, (method, path, token)
            _detail(response)


@pytest_twisted.ensureDeferred
async def test_list_rooms_pages_and_filters(running):
    owner = await running.user()
    for i in range(12):
        await owner.create_room(f"chat {i}", "chat")
    for i in range(3):
        await owner.create_room(f"duel {i}", "duel")
    first = (await owner.http("GET", "/api/rooms/")).body
    assert first["count"] == 15
    assert len(first["results"]) == 10
    assert first["previous"] is None
    assert first["next"] == "/api/rooms/?page=2"
    second = (await owner.http("GET", "/api/rooms/?page=2")).body
    assert len(second["results"]) == 5
    assert second["next"] is None
    assert second["previous"] == "/api/rooms/?page=1"
    ids = [r["id"] for r in first["results"] + second["results"]]
    assert len(set(ids)) == 15
    duels = (await owner.http("GET", "/api/rooms/?game=duel")).body
    assert duels["count"] == 3
    assert {r["game"] for r in duels["results"]} == {"duel"}
    assert (await owner.http("GET", "/api/rooms/?page=3")).status == 404
    for bad in ["x", "0", "-1", "\u00b2", "9" * 5000]:
        response = await owner.http("GET", f"/api/rooms/?page={quote(bad)}")
        assert response.status == 400, bad
    game_link = (await owner.http("GET", "/api/rooms/?game=chat")).body["next"]
    assert game_link == "/api/rooms/?page=2&game=chat"
    empty = (await owner.http("GET", "/api/rooms/?game=none")).body
    assert empty == {"count": 0, "next": None, "previous": None, "results": []}


@pytest_twisted.ensureDeferred
async def test_get_unknown_room(running):
    client = await running.user()
    for path in ["/api/rooms/999/", "/api/rooms/999"]:
        response = await client.http("GET", path)
        assert response.status == 404
        _detail(response)
    assert (await client.http("GET", "/api/rooms/abc/")).status == 404


@pytest_twisted.ensureDeferred
async def test_delete_room(running):
    owner = await running.user()
    other = await running.user()
    room = await running.room(owner)
    path = f"/api/rooms/{room['id']}/"
    response = await other.http("DELETE", path)
    assert response.status == 403
    _detail(response)
    response = await owner.http("DELETE", path)
    assert response.status == 204
    assert response.body == b""
    assert (await owner.http("GET", path)).status == 404
    assert (await owner.http("DELETE", path)).status == 404


@pytest_twisted.ensureDeferred
async def test_unknown_endpoint_and_method(running):
    client = running.client()
    response = await client.http("GET", "/api/nothing/")
    assert response.status == 404
    _detail(response)
    response = await client.http("PUT", "/api/games/")
    assert response.status == 405
    assert response.headers.getRawHeaders(b"allow") == [b"GET"]


@pytest_twisted.ensureDeferred
async def test_cors_headers_default_allow_all(running):
    client = running.client()
    response = await client._agent.request(
        b"OPTIONS",
        f"{running.url}/api/rooms/".encode(),
        _headers({b"Origin": [b"https://games.example"]}),
    )
    assert response.code == 204
    assert response.headers.getRawHeaders(b"access-control-allow-origin") == [b"*"]
    assert (
        b"Authorization"
        in response.headers.getRawHeaders(b"access-control-allow-headers")[0]
    )


@pytest_twisted.ensureDeferred
async def test_cors_allowlist(make_server):
    from tests.conftest import make_settings

    server = await make_server(make_settings(allowed_origins=["https://*.example.com"]))
    agent = server.client()._agent
    url = f"{server.url}/api/games/".encode()
    ok = await agent.request(
        b"GET", url, _headers({b"Origin": [b"https://a.example.com"]})
    )
    assert ok.headers.getRawHeaders(b"access-control-allow-origin") == [
        b"https://a.example.com"
    ]
    bad = await agent.request(
        b"GET", url, _headers({b"Origin": [b"https://evil.test"]})
    )
    assert bad.headers.getRawHeaders(b"access-control-allow-origin") is None


def _headers(raw):
    from twisted.web.http_headers import Headers

    return Headers(raw)


@pytest_twisted.ensureDeferred
async def test_logins_past_the_hashing_queue_get_503(make_server, monkeypatch):
    import threading

    from twisted.internet.defer import DeferredList

    from gameserver._accounts import passwords
    from tests.conftest import make_settings

    server = await make_server(
        make_settings(max_concurrent_hashes=1, max_queued_hashes=2)
    )
    client = server.client()
    await client.register("alice", PASSWORD)
    release = threading.Event()
    real_verify = passwords._verify_sync

    def held_verify(password, encoded):
        release.wait(10)
        return real_verify(password, encoded)

    monkeypatch.setattr(passwords, "_verify_sync", held_verify)
    logins = [_login(server, "alice") for _ in range(6)]
    busy = []
    for login in logins:
        login.addCallback(lambda r: busy.append(r.status) or r)
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    for _ in range(250):
        if busy.count(503) == 3:
            break
        await deferLater(reactor, 0.02, lambda: None)
    assert busy.count(503) == 3
    release.set()
    results = await DeferredList(logins)
    statuses = sorted(r.status for _, r in results)
    assert statuses == [200, 200, 200, 503, 503, 503]
    first_503 = next(r for _, r in results if r.status == 503)
    assert first_503.body["code"] == "unavailable"


def _login(server, name):
    from twisted.internet.defer import ensureDeferred

    return ensureDeferred(server.client().login(name, PASSWORD))
