"""One gameserver, wired together: mount its resource, or run its service."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from autobahn.twisted.resource import WebSocketResource
from twisted.application import strports
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.internet.task import deferLater
from twisted.web.resource import Resource
from twisted.web.server import Site

from gameserver._accounts.accounts import Accounts
from gameserver._accounts.guests import GuestSweeper
from gameserver._accounts.passwords import PasswordHasher
from gameserver._accounts.tokens import Tokens
from gameserver._engine.dispatcher import Dispatcher
from gameserver._engine.drain import drain
from gameserver._engine.matchmaking import Matchmaker
from gameserver._engine.rooms import Rooms
from gameserver._engine.sockets import LocalSockets
from gameserver._engine.turns import Engine
from gameserver._game import installed_games
from gameserver._guard import Guard
from gameserver._http import health
from gameserver._http.admin import AdminApi, check_admins
from gameserver._http.api import ApiResource, request_factory
from gameserver._http.front import FrontDoor
from gameserver._http.lobby import lobby_root
from gameserver._interfaces import IGame, IHosting, ILimiter, IOversight, IStore
from gameserver._memory.hosting import MemoryCommitter, MemoryHosting
from gameserver._memory.limiter import MemoryLimiter
from gameserver._memory.oversight import MemoryOversight
from gameserver._memory.store import MemoryStore
from gameserver._settings import Settings
from gameserver._wire.protocol import GameServerFactory

if TYPE_CHECKING:
    from gameserver._redis.service import RedisBackend


class GameServer:
    """Everything one process serves, built from ``Settings``.

    ``resource`` holds the lobby, ``/api/`` and ``/ws``: put it in any
    ``twisted.web`` tree, or take ``site()``, ``service(endpoint)`` or
    ``websocket_factory``. In memory by default; ``with_redis`` makes one
    that shares its users and rooms with every process on a Redis.
    """

    #: The Redis service of a server made by ``with_redis`` (start it before
    #: serving); ``None`` in memory.
    backend: RedisBackend | None = None

    def __init__(
        self,
        settings: Settings,
        *,
        store: MemoryStore | None = None,
        games: Mapping[str, IGame] | None = None,
        reactor: Any = None,
        clock: IReactorTime | None = None,
        backend: RedisBackend | None = None,
        operations_apart: bool = False,
    ) -> None:
        """``operations_apart``: ``/metrics``, ``/healthz`` and ``/readyz``
        only on ``operations`` (served with ``listen_operations``), not on
        the public ``resource``."""
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        clock = reactor if clock is None else clock
        self.clock = clock
        self.settings = settings
        #: What ``listen`` listens on, for ``stop`` to close.
        self.ports: list[IListeningPort] = []
        self._stopped: Deferred[None] | None = None
        self.games = installed_games() if games is None else dict(games)
        self.engine = Engine(
            games=self.games,
            clock=clock,
            settings=settings,
            process_id=uuid.uuid4().hex if backend is None else backend.process_id,
        )
        self.sockets = LocalSockets(self.engine.counters)
        self.hosting: IHosting
        self.store: IStore
        if backend is None:
            memory = MemoryStore() if store is None else store
            hosting = MemoryHosting(self.engine, memory, self.sockets)
            self.engine.committer = MemoryCommitter(
                self.engine, memory, self.sockets, hosting
            )
            self.store, self.hosting = memory, hosting
        else:
            self.backend = backend
            self.store = backend.store
            self.hosting = backend.bind(self.engine, self.sockets)
        #: The abuse limits' counters (this process's, or shared on Redis)
        #: and their policy.
        self.limiter: ILimiter = (
            MemoryLimiter() if self.backend is None else self.backend.limiter
        )
        self.guard = Guard(settings, self.limiter, clock)
        hasher = PasswordHasher(
            reactor,
            cost=settings.password_cost,
            max_concurrent=settings.max_concurrent_hashes,
            max_queued=settings.max_queued_hashes,
        )
        self.tokens = Tokens(
            settings.secret,
            access_lifetime=settings.access_lifetime,
            refresh_lifetime=settings.refresh_lifetime,
            clock=clock,
        )
        self.accounts = Accounts(
            self.store,
            hasher,
            self.tokens,
            clock=clock,
            guest_rate=settings.guest_rate,
            guest_burst=settings.guest_burst,
            guard=self.guard,
        )
        self.matchmaker = Matchmaker(
            self.store,
            self.games,
            self.hosting,
            self.engine.rooms,
            self.sockets,
            reactor,
            self.engine.process_id,
            seat_hold=settings.seat_hold,
            clock=clock,
        )
        self.rooms = Rooms(
            self.store,
            hasher,
            self.games,
            self.hosting,
            self.engine.rooms,
            self.matchmaker,
            guard=self.guard,
            clock=clock,
        )
        #: Removes expired guests; ``service`` and ``listen`` start it.
        self.guests = GuestSweeper(
            self.store, self.hosting, clock, settings.guest_sweep
        )
        self.dispatcher = Dispatcher(
            settings,
            self.accounts,
            self.rooms,
            self.hosting,
            self.sockets,
            self.engine,
            self.matchmaker,
        )
        self.websocket_factory = GameServerFactory(
            self.dispatcher,
            settings,
            clock=clock,
            reactor=reactor,
            counters=self.engine.counters,
            guard=self.guard,
        )
        #: The password hasher and the HTTP API, whose figures /metrics reads.
        self.passwords = hasher
        self.resource: Resource = lobby_root()
        self.api = api = ApiResource(
            settings, self.accounts, self.rooms, self.games, guard=self.guard
        )
        self.oversight: IOversight
        if backend is None:
            self.oversight = MemoryOversight(memory, self.engine, self.sockets, clock)
        else:
            from gameserver._redis.oversight import RedisOversight

            self.oversight = RedisOversight(backend.redis, clock)
        api.mount("admin", AdminApi(self))
        self.resource.putChild(b"api", api)
        self.resource.putChild(b"ws", WebSocketResource(self.websocket_factory))
        metrics, self.metrics_registry = health.metrics(self)
        #: Metrics and health checks, for a listener of their own.
        self.operations: Resource = health.OperationsRoot()
        for tree in (self.operations, None if operations_apart else self.resource):
            if tree is not None:
                tree.putChild(b"metrics", metrics)
                tree.putChild(b"healthz", health.healthz())
                tree.putChild(b"readyz", health.readyz(self))

    @property
    def draining(self) -> bool:
        """Stopping: new sockets, logins and messages are refused."""
        return self.dispatcher.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self.dispatcher.draining = value
        self.websocket_factory.draining = value
        self.api.draining = value

    def stop(self, timeout: float | None = None) -> Deferred[None]:
        """Drain and stop, within ``timeout`` seconds (``Settings.drain_timeout``).

        Listening stops, the turns in flight finish, every socket is closed
        with 1012 so its client reconnects, and with Redis the rooms are
        handed over once their players are back elsewhere (see
        ``gameserver._engine.drain``). Calling it again waits for the same stop.
        """
        if self._stopped is None:
            wait = self.settings.drain_timeout if timeout is None else timeout
            self._stopped = ensureDeferred(self._stop(wait))
        return self._stopped

    async def _stop(self, timeout: float) -> None:
        await drain(self, timeout)  # the backend's stop included
        if self.guests.running:
            self.guests.stopService()

    async def check_admins(self) -> None:
        """Warn of names ``Settings.admins`` gives that have no account yet
        (once Redis is reached, with Redis)."""
        backend = self.backend
        for _ in range(500):
            if backend is None or backend.redis.connected or not backend.running:
                break
            await deferLater(self._reactor, 0.02, lambda: None)
        await check_admins(self)

    @classmethod
    def with_redis(cls, settings: Settings, url: str, **kwargs: Any) -> GameServer:
        """A server sharing users, rooms and games with every other one on ``url``.

        Start ``server.backend`` (a service) before serving.
        """
        from gameserver._redis.service import RedisBackend

        backend = RedisBackend(url, settings, kwargs.get("reactor"))
        return cls(settings, backend=backend, **kwargs)

    def site(self) -> Site:
        """The lobby, the API and ``/ws`` as a ``twisted.web`` site."""
        site = Site(
            self.resource,
            requestFactory=request_factory(self.settings.max_request_body),
        )
        site.displayTracebacks = False
        return site

    def factory(self) -> FrontDoor:
        """What ``service`` and ``listen`` serve: the site, with ``/ws``
        upgrades handed straight to the WebSocket factory."""
        return FrontDoor(self.site(), self.websocket_factory, self._reactor)

    def service(self, endpoint: str) -> IService:
        """A service listening on a Twisted endpoint string, e.g. ``tcp:8000``,
        with the sweeper of expired guests and, with Redis, the backend
        (unless it has a parent already); stopping it is ``stop``."""
        listening = strports.service(endpoint, self.factory(), reactor=self._reactor)
        return _Serving(self, listening)

    def operations_service(self, endpoint: str) -> IService:
        """A service serving ``operations`` on an endpoint of its own, e.g.
        ``tcp:9100:interface=127.0.0.1``."""
        return strports.service(
            endpoint, self._operations_site(), reactor=self._reactor
        )

    def listen_operations(self, endpoint: str) -> Deferred[IListeningPort]:
        """Serve ``operations`` now on an endpoint of its own."""
        return serverFromString(self._reactor, endpoint).listen(self._operations_site())

    def _operations_site(self) -> Site:
        site = Site(self.operations)
        site.displayTracebacks = False
        return site

    def listen(self, endpoint: str) -> Deferred[IListeningPort]:
        """Listen now, without a service: ``tcp:0`` picks a free port (the
        sweeper of expired guests starts too)."""
        if not self.guests.running:
            self.guests.startService()
        listening = serverFromString(self._reactor, endpoint).listen(self.factory())
        return listening.addCallback(self._listening)

    def _listening(self, port: IListeningPort) -> IListeningPort:
        self.ports.append(port)
        return port


class _Serving(MultiService):
    """A server's services, stopped in order rather than all at once: the
    listener first, then the drain (``GameServer.stop``), then the rest."""

    def __init__(self, server: GameServer, listening: IService) -> None:
        super().__init__()
        self._server = server
        self._listening = listening
        backend = server.backend
        if backend is not None and backend.parent is None:
            backend.setServiceParent(self)
        server.guests.setServiceParent(self)
        listening.setServiceParent(self)

    def startService(self) -> None:
        super().startService()
        if self._server.settings.admins:
            ensureDeferred(self._server.check_admins())

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        await maybeDeferred(self._listening.stopService)
        await self._server.stop()
        rest = [s for s in reversed(list(self)) if s.running]
        await DeferredList([maybeDeferred(s.stopService) for s in rest])
