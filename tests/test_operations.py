"""Operating a server: health checks and Prometheus metrics, over HTTP."""

from __future__ import annotations

import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.task import deferLater

from tests.conftest import start_on_redis, stop
from tests.redis_server import RedisServer


def _samples(text: bytes) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape, by name and labels (the real parser)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


@pytest_twisted.ensureDeferred
async def test_health_and_readiness_answer_in_memory_and_on_redis(start_any):
    server = await start_any()
    client = server.client()
    health = await client.http("GET", "/healthz")
    assert (health.status, health.body) == (200, {"status": "ok"})
    ready = await client.http("GET", "/readyz")
    assert (ready.status, ready.body) == (200, {"status": "ready"})


@pytest_twisted.ensureDeferred
async def test_a_process_that_cannot_reach_redis_is_not_ready(tmp_path):
    redis = RedisServer(tmp_path)
    redis.start()
    server = await start_on_redis(redis.url)
    try:
        client = server.client()
        assert (await client.http("GET", "/readyz")).status == 200
        redis.stop()
        for _ in range(100):
            answer = await client.http("GET", "/readyz")
            if answer.status == 503:
                break
            await deferLater(reactor, 0.05, lambda: None)
        assert answer.status == 503
        assert answer.body["detail"] in (
            "Redis cannot be reached",
            "the channels to the other processes are not subscribed yet",
        )
        # Alive all the same: a health check must not restart it for this.
        assert (await client.http("GET", "/healthz")).status == 200
    finally:
        redis.stop()
        await stop(server)


@pytest_twisted.ensureDeferred
async def test_metrics_are_prometheus_text_with_the_server_s_figures(start_any):
    server = await start_any()
    alice, a = await server.socket()
    room_id = (await server.room(alice))["id"]
    assert (await a.join(room_id))["data"]["is_successful"]
    unvalidated = await alice.connect(validate=False)
    server.connections.append(unvalidated)
    before = await alice.http("GET", "/metrics")
    assert before.status == 200
    content_type = before.headers.getRawHeaders(b"content-type")[0]
    assert content_type.startswith(b"text/plain; version=")
    figures = _samples(before.body)
    assert figures["gameserver_sockets_open", (("validated", "true"),)] == 1
    assert figures["gameserver_sockets_open", (("validated", "false"),)] == 1
    assert figures["gameserver_users_online", ()] == 1
    assert figures["gameserver_rooms", (("state", "waiting"),)] == 1
    assert figures["gameserver_rooms", (("state", "in_game"),)] == 0
    for _ in range(3):
        a.send("CHAT_MESSAGE", room_id, {"text": "hi"})
        await a.receive("CHAT_MESSAGE")
    after = _samples((await alice.http("GET", "/metrics")).body)
    turns = after["gameserver_turns_total", ()] - figures["gameserver_turns_total", ()]
    assert turns == 3
    if start_any.mode == "redis":
        assert after["gameserver_redis_commits_total", ()] >= 3
    else:
        assert ("gameserver_redis_commits_total", ()) not in after
    text = before.body.decode()
    for name in ("gameserver_sockets_open", "gameserver_turns_total"):
        assert f"# HELP {name} " in text  # every figure says what it is


@pytest_twisted.ensureDeferred
async def test_a_listener_of_their_own_takes_metrics_and_health_off_the_public_port():
    from gameserver import GameServer
    from gameserver.client import GameClient
    from tests.conftest import GAMES, Running, make_settings

    server = GameServer(make_settings(), games=GAMES, operations_apart=True)
    public = await server.listen("tcp:0:interface=127.0.0.1")
    private = await server.listen_operations("tcp:0:interface=127.0.0.1")
    running = Running(server, f"http://127.0.0.1:{public.getHost().port}", None, public)
    try:
        outside = running.client()
        inside = GameClient(f"http://127.0.0.1:{private.getHost().port}")
        for path in ("/metrics", "/healthz", "/readyz"):
            assert (await outside.http("GET", path)).status == 404, path
            assert (await inside.http("GET", path)).status == 200, path
        assert (await outside.http("GET", "/api/games/")).status == 200
        assert (await inside.http("GET", "/api/games/")).status == 404
    finally:
        await private.stopListening()
        await stop(running)


def test_the_twistd_option_serves_them_apart():
    from twisted.application.internet import StreamServerEndpointService

    from gameserver._tap import Options, makeService

    options = Options()
    options.parseOptions(
        [
            "--port",
            "0",
            "--metrics-listen",
            "tcp:0:interface=127.0.0.1",
            "--secret",
            "s" * 32,
        ]
    )
    service = makeService(options)
    listeners = [
        s
        for parent in service
        for s in (parent if hasattr(parent, "__iter__") else [parent])
        if isinstance(s, StreamServerEndpointService)
    ]
    assert len(listeners) == 2


# The figures move when their events happen


async def _scrape(client) -> dict[tuple[str, tuple], float]:
    answer = await client.http("GET", "/metrics")
    assert answer.status == 200
    return _samples(answer.body)


def _moved(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest_twisted.ensureDeferred
async def test_messages_by_type_deliveries_refusals_and_durations_move(start_any):
    server = await start_any()
    alice, a = await server.socket()
    bob, b = await server.socket()
    room_id = (await server.room(alice))["id"]
    assert (await a.join(room_id))["data"]["is_successful"]
    assert (await b.join(room_id))["data"]["is_successful"]
    await a.receive("USER_JOINED")
    before = await _scrape(alice)
    a.send("CHAT_MESSAGE", room_id, {"text": "hello"})
    await a.receive("CHAT_MESSAGE")
    await b.receive("CHAT_MESSAGE")
    a.send("NO_SUCH_TYPE_42")  # no room: the dispatcher refuses it
    assert (await a.receive("ERROR"))["data"]["code"] == "unknown_type"
    a.send("NO_SUCH_TYPE_43", room_id)  # in the room: the engine refuses it
    assert (await a.receive("ERROR"))["data"]["code"] == "unknown_type"
    refused = await b.join(999_999)
    assert refused["data"]["error"] == "room_not_found"
    after = await _scrape(alice)
    received = "gameserver_messages_received_total"
    sent = "gameserver_messages_sent_total"
    assert _moved(before, after, received, type="CHAT_MESSAGE") == 1
    assert _moved(before, after, received, type="JOIN_ROOM") == 1
    assert _moved(before, after, received, type="other") == 2
    # One broadcast is one message sent, and a delivery per member's socket.
    assert _moved(before, after, sent, type="CHAT_MESSAGE") == 1
    assert _moved(before, after, sent, type="ERROR") == 2
    assert _moved(before, after, sent, type="JOIN_ROOM") == 1
    assert _moved(before, after, "gameserver_deliveries_total") == 2 + 3
    refusals = "gameserver_refusals_total"
    assert _moved(before, after, refusals, code="unknown_type") == 2
    assert _moved(before, after, refusals, code="room_not_found") == 1
    # A made-up type adds no label: the label values are a fixed set.
    labels = {dict(labels).get("type") for (name, labels) in after if name == received}
    assert not any(str(t).startswith("NO_SUCH") for t in labels)
    assert "CHAT_MESSAGE" in labels and "other" in labels
    turns = _moved(before, after, "gameserver_turns_total")
    assert turns >= 2  # the chat message and the unknown type in the room
    count = "gameserver_turn_seconds_count"
    assert _moved(before, after, count) == turns
    assert _moved(before, after, "gameserver_turn_seconds_sum") > 0
    inf = after["gameserver_turn_seconds_bucket", (("le", "+Inf"),)]
    assert inf == after["gameserver_turn_seconds_count", ()]
    assert _moved(before, after, "gameserver_commit_seconds_count") >= 1
    text = (await alice.http("GET", "/metrics")).body.decode()
    for name in (
        "gameserver_messages_received_total",
        "gameserver_messages_sent_total",
        "gameserver_deliveries_total",
        "gameserver_refusals_total",
        "gameserver_turn_seconds",
        "gameserver_commit_seconds",
        "gameserver_http_requests_total",
    ):
        assert f"# HELP {name} " in text
    assert "# TYPE gameserver_turn_seconds histogram" in text


@pytest_twisted.ensureDeferred
async def test_rate_limit_refusals_and_flood_closes_are_counted(start_any):
    from twisted.internet.task import Clock

    from tests.conftest import make_settings

    clock = Clock()  # frozen: the buckets refill only when advanced
    clock.advance(1_800_000_000)
    server = await start_any(
        make_settings(message_rate=1, message_burst=5, flood_limit=20), clock=clock
    )
    watcher = await server.user()
    before = await _scrape(watcher)
    _, flooder = await server.socket()  # VALIDATE_CONNECTION used one token
    for _ in range(4):
        flooder.send("NOPE")
    for _ in range(4):
        await flooder.receive("ERROR")
    for _ in range(30):
        flooder.send("NOPE")
    code, _ = await flooder.closed
    assert code == 1008
    after = await _scrape(watcher)
    assert _moved(before, after, "gameserver_flood_closes_total") == 1
    assert _moved(before, after, "gameserver_rate_limited_total") >= 21
    # The socket was told once (the first refusal in a row), then closed.
    assert _moved(before, after, "gameserver_refusals_total", code="rate_limited") == 1


@pytest_twisted.ensureDeferred
async def test_a_client_dropped_for_not_reading_is_an_outbound_drop(start_any):
    from gameserver import BaseRouter, Game
    from tests.conftest import make_settings

    class Blobs(BaseRouter):
        def blobs(self, room, user, helper, data):
            for _ in range(data["n"]):
                helper.send_to(data["to"], "STATE", {"blob": "x" * 60_000})

    games = {"blobs": Game(name="blobs", max_players=5, routers=[Blobs])}
    server = await start_any(make_settings(max_outbound_buffer=256 * 1024), games=games)
    owner, reader = await server.socket()
    sleeper_client, sleeper = await server.socket()
    room = await server.room(owner, game="blobs")
    assert (await reader.join(room["id"]))["data"]["is_successful"]
    assert (await sleeper.join(room["id"]))["data"]["is_successful"]
    before = await _scrape(owner)
    sleeper.protocol.transport.pauseProducing()
    sockets = server.server.sockets
    to = {"to": sleeper_client.user_id, "n": 10}
    for _ in range(30):
        reader.send("blobs", room["id"], to)
        await deferLater(reactor, 0.05, lambda: None)
        if sockets.count(sleeper_client.user_id) == 0:
            break
    assert sockets.count(sleeper_client.user_id) == 0
    after = await _scrape(owner)
    assert _moved(before, after, "gameserver_outbound_drops_total") == 1
    sent = _moved(before, after, "gameserver_messages_sent_total", type="STATE")
    assert sent >= 10
    sleeper.protocol.transport.resumeProducing()
    await sleeper.closed


@pytest_twisted.ensureDeferred
async def test_password_hashes_queued_and_refused(start_any, monkeypatch):
    import threading

    from twisted.internet.defer import DeferredList

    from gameserver._accounts import passwords
    from tests.conftest import PASSWORD, make_settings

    server = await start_any(
        make_settings(max_concurrent_hashes=1, max_queued_hashes=2)
    )
    client = server.client()
    await client.register("hasher", PASSWORD)
    before = await _scrape(client)
    assert before["gameserver_password_hashes_queued", ()] == 0
    release = threading.Event()
    real_verify = passwords._verify_sync

    def held_verify(password, encoded):
        release.wait(10)
        return real_verify(password, encoded)

    monkeypatch.setattr(passwords, "_verify_sync", held_verify)
    logins = [ensure(server.client().login("hasher", PASSWORD)) for _ in range(6)]
    try:
        for _ in range(250):
            during = await _scrape(client)
            if _moved(before, during, "gameserver_password_hashes_refused_total") == 3:
                break
            await deferLater(reactor, 0.02, lambda: None)
        assert during["gameserver_password_hashes_queued", ()] == 2
        assert _moved(before, during, "gameserver_password_hashes_refused_total") == 3
    finally:
        release.set()
    await DeferredList(logins)
    after = await _scrape(client)
    assert after["gameserver_password_hashes_queued", ()] == 0
    http = "gameserver_http_requests_total"
    assert _moved(before, after, http, route="token", status="503") == 3
    assert _moved(before, after, http, route="token", status="200") == 3


def ensure(coroutine):
    from twisted.internet.defer import ensureDeferred

    return ensureDeferred(coroutine)


@pytest_twisted.ensureDeferred
async def test_http_requests_by_route_pattern_and_status(start_any):
    server = await start_any()
    alice = await server.user()
    room_id = (await server.room(alice))["id"]
    before = await _scrape(alice)
    assert (await alice.http("GET", f"/api/rooms/{room_id}/")).status == 200
    assert (await alice.http("GET", "/api/rooms/987654/")).status == 404
    assert (await alice.http("GET", "/api/no/such/path/")).status == 404
    assert (await server.client().http("GET", "/api/rooms/")).status == 401
    after = await _scrape(alice)
    http = "gameserver_http_requests_total"
    assert _moved(before, after, http, route="rooms/{id}", status="200") == 1
    assert _moved(before, after, http, route="rooms/{id}", status="404") == 1
    assert _moved(before, after, http, route="unmatched", status="404") == 1
    assert _moved(before, after, http, route="rooms", status="401") == 1
    routes = {dict(labels)["route"] for (name, labels) in after if name == http}
    assert not any(str(room_id) in r or "987654" in r or "no/such" in r for r in routes)


@pytest_twisted.ensureDeferred
async def test_two_processes_on_redis_forward_and_claim(start_any):
    if start_any.mode != "redis":
        server = await start_any()
        alice = await server.user()
        scraped = await _scrape(alice)
        for name in ("gameserver_forwarded_total", "gameserver_rooms_owned"):
            assert (name, ()) not in scraped  # in memory: no Redis figures
        return
    first = await start_any()
    second = await start_any()
    alice, a = await first.socket()
    bob = await second.user()
    b = await second.connect(bob)
    room_id = (await first.room(alice))["id"]
    assert (await a.join(room_id))["data"]["is_successful"]
    owned = await _scrape(alice)
    assert owned["gameserver_rooms_owned", ()] == 1
    before = await _scrape(bob)
    assert before["gameserver_rooms_owned", ()] == 0
    assert (await b.join(room_id))["data"]["is_successful"]
    b.send("CHAT_MESSAGE", room_id, {"text": "through the owner"})
    await a.receive("CHAT_MESSAGE")
    await b.receive("CHAT_MESSAGE")
    after = await _scrape(bob)
    assert _moved(before, after, "gameserver_forwarded_total") == 2
    assert after["gameserver_rooms_owned", ()] == 0
    # The owner counted the message it made; bob's process only delivered it.
    assert (
        _moved(before, after, "gameserver_messages_sent_total", type="CHAT_MESSAGE")
        == 0
    )
    assert _moved(before, after, "gameserver_deliveries_total") >= 2
    # The owner stops and hands the room over: the other process claims it.
    a.abort()
    assert first.server.backend is not None
    await first.server.backend.stopService()  # the fixture stops the rest
    b.send("CHAT_MESSAGE", room_id, {"text": "moved"})
    while (await b.receive("CHAT_MESSAGE", timeout=10))["data"]["text"] != "moved":
        pass
    moved = await _scrape(bob)
    assert _moved(before, moved, "gameserver_rooms_claimed_total") == 1
    assert moved["gameserver_rooms_owned", ()] == 1


@pytest_twisted.ensureDeferred
async def test_redis_failures_and_reconnects_are_counted(tmp_path):
    redis = RedisServer(tmp_path)
    redis.start()
    server = await start_on_redis(redis.url)
    try:
        alice = await server.user()
        before = await _scrape(alice)
        assert before["gameserver_redis_commands_failed_total", ()] == 0
        assert before["gameserver_redis_reconnects_total", ()] == 0
        redis.stop()
        answer = await alice.http("GET", "/api/rooms/")
        assert answer.status == 503
        redis.start()  # the same port
        for _ in range(250):
            scraped = await _scrape(alice)
            if scraped["gameserver_redis_reconnects_total", ()] >= 2:
                break
            await deferLater(reactor, 0.02, lambda: None)
        assert scraped["gameserver_redis_reconnects_total", ()] == 2  # both links
        assert scraped["gameserver_redis_commands_failed_total", ()] >= 1
    finally:
        redis.stop()
        await stop(server)


def test_a_tally_names_a_bounded_set_and_counts_the_rest_as_other():
    from gameserver._stats import Tally

    fixed = Tally(["A", "B"])
    for label in ("A", "A", "B", "made-up", "another"):
        fixed.count(label)
    assert dict(fixed.items()) == {"A": 2, "B": 1, "other": 2}
    capped = Tally(["A"], cap=2)
    for label in ("X", "Y", "Z", "X"):
        capped.count(label)
    assert dict(capped.items()) == {"A": 0, "X": 2, "Y": 1, "other": 1}


def test_a_histogram_puts_a_value_on_a_bound_in_that_bound_s_bucket():
    from gameserver._stats import Histogram

    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        histogram.observe(value)
    assert histogram.buckets() == [("0.1", 2.0), ("1.0", 4.0), ("+Inf", 5.0)]
    assert histogram.sum == 0.05 + 0.1 + 0.5 + 1.0 + 7.0
