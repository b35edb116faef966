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
