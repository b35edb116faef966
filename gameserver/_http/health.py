"""What an operator's tools ask: is the process up, can it serve, how is it doing.

``/healthz`` answers as long as the reactor runs; ``/readyz`` only when the
store (and, with Redis, the channels) can be reached, so that a load
balancer sends no client to a process that would refuse it; ``/metrics``
is the Prometheus text format, made by ``prometheus_client``.

Not through ``prometheus_client.twisted.MetricsResource``: that is a WSGI
resource, run on the reactor's thread pool, and the figures here are read
from the engine's own dictionaries, which only the reactor's thread may
touch. ``generate_latest`` on the reactor's thread costs a scrape a few
hundred microseconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import Request

from gameserver._models import RoomState

if TYPE_CHECKING:
    from gameserver._server import GameServer


class OperationsRoot(Resource):
    """The root of a listener of their own: these three paths, else 404."""

    def getChild(self, path: bytes, request: Request) -> Resource:
        return notFound()  # type: ignore[return-value]


class _Json(Resource):
    isLeaf = True

    def __init__(self, answer: Callable[[], tuple[int, dict[str, str]]]) -> None:
        super().__init__()
        self._answer = answer

    def render_GET(self, request: Request) -> bytes:
        status, body = self._answer()
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        return json.dumps(body).encode()


def healthz() -> Resource:
    return _Json(lambda: (200, {"status": "ok"}))


def readyz(server: GameServer) -> Resource:
    def answer() -> tuple[int, dict[str, str]]:
        reason = not_ready(server)
        if reason is None:
            return 200, {"status": "ready"}
        return 503, {"status": "not ready", "detail": reason}

    return _Json(answer)


def not_ready(server: GameServer) -> str | None:
    """Why the process cannot serve now, or ``None`` when it can."""
    if server.draining:
        return "draining: this process is stopping"
    backend = server.backend
    if backend is None:
        return None  # in memory: the store is this process
    if not backend.running:
        return "the Redis service is not running"
    if not backend.redis.connected:
        return "Redis cannot be reached"
    hosting = backend.hosting
    if hosting is None or not hosting.channel.ready:
        return "the channels to the other processes are not subscribed yet"
    return None


class ServerCollector:
    """The server's figures, read when Prometheus scrapes: nothing is counted
    twice and the hot path pays nothing for it."""

    def __init__(self, server: GameServer) -> None:
        self._server = server

    def collect(self) -> Iterator[Metric]:
        server = self._server
        sockets = GaugeMetricFamily(
            "gameserver_sockets_open",
            "WebSocket connections open, by whether they sent a valid token.",
            labels=["validated"],
        )
        validated = server.sockets.connections()
        total = server.websocket_factory.countConnections
        sockets.add_metric(["true"], validated)
        sockets.add_metric(["false"], max(0, total - validated))
        yield sockets
        yield GaugeMetricFamily(
            "gameserver_users_online",
            "Users with at least one validated socket on this process.",
            value=len(server.sockets.users()),
        )
        rooms = GaugeMetricFamily(
            "gameserver_rooms",
            "Rooms this process holds (owns, with Redis), by state.",
            labels=["state"],
        )
        by_state = dict.fromkeys(RoomState, 0)
        for room in server.engine.rooms.values():
            by_state[room.record.state] += 1
        for state, count in by_state.items():
            rooms.add_metric([state.value], count)
        yield rooms
        stats = server.engine.stats
        for name, help_, value in (
            ("turns", "Turns run (messages, joins, timers, hooks).", stats.turns),
            (
                "turns_failed",
                "Turns that failed and were rolled back.",
                stats.failed_turns,
            ),
            ("refused_busy", "Messages refused with busy.", stats.refused_busy),
            ("timers_fired", "Timed events fired.", stats.timers_fired),
        ):
            yield CounterMetricFamily(f"gameserver_{name}", help_, value=value)
        backend = server.backend
        if backend is not None and backend.hosting is not None:
            yield CounterMetricFamily(
                "gameserver_redis_commits",
                "COMMIT script calls sent to Redis.",
                value=backend.hosting.committer.commits,
            )


class _Metrics(Resource):
    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
        request.setHeader(b"Cache-Control", b"no-store")
        return generate_latest(self._registry)


def metrics(server: GameServer) -> tuple[Resource, CollectorRegistry]:
    """``/metrics`` of this server, with a registry of its own (several
    servers may share a process, in tests and embedded)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(server))
    return _Metrics(registry), registry
