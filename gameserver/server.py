"""One gameserver, wired together: mount its resource, or run its service."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.application import strports
from twisted.application.service import IService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import Site

from gameserver.accounts import Accounts
from gameserver.api import ApiResource, request_factory
from gameserver.auth import Tokens
from gameserver.dispatcher import Dispatcher
from gameserver.games import installed_games
from gameserver.groups import LocalGroups
from gameserver.interfaces import IGame, IGroupLayer, IRoomLocks, IStore
from gameserver.passwords import PasswordHasher
from gameserver.protocol import GameServerFactory
from gameserver.rooms import Rooms
from gameserver.settings import Settings
from gameserver.store import MemoryStore
from gameserver.turns import RoomTurns
from gameserver.web import lobby_root


class GameServer:
    """Everything one process serves, built from ``Settings``.

    ``resource`` holds ``/api/`` and ``/ws``: put it in any ``twisted.web``
    tree, or take ``site()``, ``service(endpoint)`` or ``websocket_factory``.
    """

    #: The Redis service of a server made by ``with_redis``; ``None`` otherwise.
    backend: Any = None

    def __init__(
        self,
        settings: Settings,
        *,
        store: IStore | None = None,
        groups: IGroupLayer | None = None,
        locks: IRoomLocks | None = None,
        games: Mapping[str, IGame] | None = None,
        reactor: Any = None,
        clock: IReactorTime | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        clock = reactor if clock is None else clock
        self.settings = settings
        self.store = MemoryStore() if store is None else store
        self.games = installed_games() if games is None else dict(games)
        hasher = PasswordHasher(
            reactor,
            cost=settings.password_cost,
            max_concurrent=settings.max_concurrent_hashes,
            max_queued=settings.max_queued_hashes,
        )
        tokens = Tokens(
            settings.secret,
            access_lifetime=settings.access_lifetime,
            refresh_lifetime=settings.refresh_lifetime,
            clock=clock,
        )
        self.tokens = tokens
        self.accounts = Accounts(self.store, hasher, tokens)
        self.groups = LocalGroups() if groups is None else groups
        self.turns = RoomTurns(
            self.store, self.groups, self.games, clock, settings, locks=locks
        )
        self.rooms = Rooms(self.store, hasher, self.groups, self.games, self.turns)
        self.dispatcher = Dispatcher(
            settings, self.accounts, self.rooms, self.groups, self.turns
        )
        self.websocket_factory = GameServerFactory(
            self.dispatcher, settings, clock=clock, reactor=reactor
        )
        self.resource: Resource = lobby_root()
        self.resource.putChild(
            b"api", ApiResource(settings, self.accounts, self.rooms, self.games)
        )
        self.resource.putChild(b"ws", WebSocketResource(self.websocket_factory))

    def site(self) -> Site:
        site = Site(
            self.resource,
            requestFactory=request_factory(self.settings.max_request_body),
        )
        site.displayTracebacks = False
        return site

    def service(self, endpoint: str) -> IService:
        """A service listening on a Twisted endpoint string, e.g. ``tcp:8000``."""
        return strports.service(endpoint, self.site(), reactor=self._reactor)

    @classmethod
    def with_redis(cls, settings: Settings, url: str, **kwargs: Any) -> GameServer:
        """A server sharing users, rooms and games with every other one on ``url``.

        Start ``server.backend`` (a service) before serving.
        """
        from gameserver.backend import RedisBackend

        backend = RedisBackend(url, kwargs.get("reactor"))
        server = cls(
            settings,
            store=backend.store,
            groups=backend.groups,
            locks=backend.locks,
            **kwargs,
        )
        backend.attach(server)
        server.backend = backend
        return server

    def listen(self, endpoint: str) -> Deferred[IListeningPort]:
        """Listen now, without a service: ``tcp:0`` picks a free port."""
        return serverFromString(self._reactor, endpoint).listen(self.site())
