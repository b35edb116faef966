"""A real server on port 0, and clients that talk to it over real sockets."""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet.task import Clock

from gameserver import Game, GameServer, Settings
from gameserver._http.health import not_ready
from gameserver.client import Connection, GameClient

#: Every log event of the run is checked for the secrets below and every
#: token the tests received (``tests/log_secrets.py``).
pytest_plugins = ("tests.log_secrets",)

SECRET = "test secret that is long enough for HS256!"
PASSWORD = "correct horse battery"
_names = itertools.count(1)

GAMES = {
    "chat": Game(name="chat", description="talk", min_players=1, max_players=50),
    "duel": Game(name="duel", description="two players", min_players=2, max_players=2),
}


#: Per-address limits no test reaches by accident: every test's clients
#: come from 127.0.0.1 (``test_abuse.py`` sets its own).
GENEROUS = dict(
    max_sockets_per_address=10_000,
    max_unvalidated_per_address=10_000,
    http_rate=10_000.0,
    http_burst=10_000,
    login_failures=10_000,
    login_failures_per_address=10_000,
    login_failures_per_username=10_000,
    room_guesses_per_room=10_000,
    signups_per_address=100_000,
    guests_per_address=100_000,
)


def make_settings(**overrides: Any) -> Settings:
    """Test settings: a cheap password hash and generous per-address limits,
    otherwise the real defaults."""
    return Settings(secret=SECRET, password_cost=10, **{**GENEROUS, **overrides})


@attrs.define
class Running:
    server: GameServer
    url: str
    clock: Any
    port: Any = None
    connections: list[Connection] = attrs.Factory(list)
    #: The wire format of the clients it makes.
    format: str = "json"

    def client(self) -> GameClient:
        return GameClient(self.url, format=self.format)

    async def user(self, name: str | None = None) -> GameClient:
        """A registered, logged-in user."""
        client = self.client()
        name = name or f"user{next(_names)}"
        registered = await client.register(name, PASSWORD)
        assert registered.status == 201
        assert (await client.login(name, PASSWORD)).status == 200
        client.user_id = registered.body["id"]
        return client

    async def connect(self, client: GameClient, **kw: Any) -> Connection:
        connection = await client.connect(**kw)
        self.connections.append(connection)
        return connection

    async def socket(self, name: str | None = None) -> tuple[GameClient, Connection]:
        client = await self.user(name)
        return client, await self.connect(client)

    async def room(self, owner: GameClient, **options: Any) -> dict:
        options.setdefault("name", "a room")
        options.setdefault("game", "chat")
        response = await owner.http("POST", "/api/rooms/", options)
        assert response.status == 201, response.body
        return response.body


async def start(settings: Settings | None = None, *, clock: Any = None, **kw: Any):
    kw.setdefault("games", GAMES)
    server = GameServer(settings or make_settings(), clock=clock, **kw)
    port = await server.listen("tcp:0:interface=127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}"
    return Running(server, url, clock, port)


async def start_on_redis(
    url: str, settings: Settings | None = None, **kw: Any
) -> Running:
    """A server in this process on the Redis at ``url``, its service started."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    kw.setdefault("games", GAMES)
    server = GameServer.with_redis(settings or make_settings(), url, **kw)
    assert server.backend is not None and server.backend.hosting is not None
    server.backend.startService()
    for _ in range(250):
        if not_ready(server) is None:
            break
        await deferLater(reactor, 0.02, lambda: None)
    else:
        raise AssertionError("the server did not connect to Redis")
    port = await server.listen("tcp:0:interface=127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}"
    return Running(server, url, None, port)


async def stop(running: Running) -> None:
    for connection in running.connections:
        if connection.protocol.transport is not None:
            connection.abort()
    stopped = running.port.stopListening()  # None if the server stopped it
    if stopped is not None:
        await stopped
    if running.server.guests.running:
        running.server.guests.stopService()
    if running.server.backend is not None and running.server.backend.running:
        await running.server.backend.stopService()


@pytest_twisted.async_yield_fixture
async def running():
    """A server with the real clock."""
    server = await start()
    yield server
    await stop(server)


@pytest_twisted.async_yield_fixture
async def clocked():
    """A server whose own timers run on a ``task.Clock``."""
    clock = Clock()
    clock.advance(1_800_000_000)
    server = await start(clock=clock)
    yield server
    await stop(server)


@pytest_twisted.async_yield_fixture
async def make_server():
    """Start servers with custom settings; stopped after the test."""
    servers: list[Running] = []

    async def make(settings: Settings | None = None, **kw: Any) -> Running:
        server = await start(settings, **kw)
        servers.append(server)
        return server

    yield make
    for server in servers:
        await stop(server)


@pytest_twisted.async_yield_fixture(params=["memory", "redis"])
async def start_any(request):
    """Start servers in memory, or in this process on Redis: the test runs once
    with each, for the same engine behind two hostings."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    servers: list[Running] = []

    async def make(settings: Settings | None = None, **kw: Any) -> Running:
        if url is None:
            server = await start(settings, **kw)
        else:
            server = await start_on_redis(url, settings, **kw)
        servers.append(server)
        return server

    make.mode = request.param
    make.redis_url = url
    yield make
    # The last started first: its users leave rooms the first ones still own.
    for server in reversed(servers):
        await stop(server)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One redis-server for the session; each test that uses it starts empty."""
    from tests.redis_server import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    if redis_server.process is None:
        redis_server.start()
    redis_server.flush()
    return redis_server.url


@pytest_twisted.async_yield_fixture
async def cluster(redis_url, tmp_path):
    """``await cluster()`` starts one more server process on the shared Redis."""
    from tests.cluster import ServerProcess

    servers: list[ServerProcess] = []

    async def start(
        url: str = redis_url, port: int | None = None, extra: tuple[str, ...] = ()
    ) -> ServerProcess:
        server = await ServerProcess(url, tmp_path, port, extra).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.resume_if_paused()
        server.stop()
