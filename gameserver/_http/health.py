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
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import Request

from gameserver._guard import LIMITS
from gameserver._models import RoomState
from gameserver._stats import Histogram, Tally

if TYPE_CHECKING:
    from gameserver._redis.service import RedisBackend
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
        stats = server.engine.counters
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
        yield from _messages(server)
        passwords = server.passwords
        yield GaugeMetricFamily(
            "gameserver_password_hashes_queued",
            "Password hashes and checks waiting for a thread.",
            value=passwords.queued,
        )
        yield CounterMetricFamily(
            "gameserver_password_hashes_refused",
            "Password hashes refused with 503 because too many were queued.",
            value=passwords.refused,
        )
        http = CounterMetricFamily(
            "gameserver_http_requests",
            "HTTP API answers, by route pattern and status.",
            labels=["route", "status"],
        )
        for (route, status), count in sorted(server.api.requests.items()):
            http.add_metric([route, str(status)], count)
        yield http
        limits = CounterMetricFamily(
            "gameserver_limit_refusals",
            "Refusals (429) by the per-address and per-username limits, by limit.",
            labels=["limit"],
        )
        for kind in LIMITS:
            limits.add_metric([kind], server.guard.refused[kind])
        yield limits
        backend = server.backend
        if backend is not None and backend.hosting is not None:
            yield from _redis(backend)


def _messages(server: GameServer) -> Iterator[Metric]:
    counters = server.engine.counters
    yield _tally(
        "gameserver_messages_received",
        "Messages received from clients, by type (types no game here handles: other).",
        "type",
        counters.received,
    )
    yield _tally(
        "gameserver_messages_sent",
        "Messages sent to clients, by type: one per message however many"
        " sockets it reaches, counted by the process that made it (a room's"
        " owner for a turn's); see gameserver_deliveries_total.",
        "type",
        counters.sent,
    )
    yield CounterMetricFamily(
        "gameserver_deliveries",
        "Frames written to sockets of this process: one per socket a message"
        " reaches (a broadcast to 10 members is 10).",
        value=counters.deliveries,
    )
    yield _tally(
        "gameserver_refusals",
        "ERROR messages and refused replies sent, by error code.",
        "code",
        counters.refusals,
    )
    for name, help_, value in (
        (
            "rate_limited",
            "Messages (and pings) refused because their socket was over its rate"
            " limit.",
            counters.rate_limited,
        ),
        (
            "flood_closes",
            "Sockets closed (1008) for flooding past their rate limit.",
            counters.flood_closes,
        ),
        (
            "outbound_drops",
            "Sockets dropped for holding more unsent bytes than the outbound cap.",
            counters.outbound_drops,
        ),
    ):
        yield CounterMetricFamily(f"gameserver_{name}", help_, value=value)
    yield _histogram(
        "gameserver_turn_seconds",
        "Turns from start to done in the engine (real time, perf_counter).",
        counters.turn_seconds,
    )
    yield _histogram(
        "gameserver_commit_seconds",
        "Commits from sent to saved: in memory the store's update, with Redis"
        " the COMMIT script's round trip (one per batch of turns).",
        counters.commit_seconds,
    )


def _redis(backend: RedisBackend) -> Iterator[Metric]:
    hosting = backend.hosting
    assert hosting is not None
    yield CounterMetricFamily(
        "gameserver_redis_commits",
        "COMMIT script calls sent to Redis.",
        value=hosting.committer.commits,
    )
    yield CounterMetricFamily(
        "gameserver_redis_commands_failed",
        "Redis commands that failed: an error reply, the connection lost while"
        " they waited, or no connection.",
        value=backend.redis.counts.failed,
    )
    yield CounterMetricFamily(
        "gameserver_redis_reconnects",
        "Connections to Redis made again after the first (commands and channel).",
        value=backend.redis.counts.reconnects + hosting.channel.reconnects,
    )
    yield GaugeMetricFamily(
        "gameserver_rooms_owned",
        "Rooms this process holds the lease of.",
        value=len(hosting.engine.rooms),
    )
    yield CounterMetricFamily(
        "gameserver_rooms_claimed",
        "Rooms claimed here that had been held before (moved here from another"
        " process, or back here).",
        value=hosting.claimed,
    )
    yield CounterMetricFamily(
        "gameserver_forwarded",
        "Client requests published to the process owning their room (sent again"
        " after a lost answer included).",
        value=hosting.forwarded,
    )


def _tally(name: str, help_: str, label: str, tally: Tally) -> Metric:
    family = CounterMetricFamily(name, help_, labels=[label])
    for value, count in tally.items():
        family.add_metric([value], count)
    return family


def _histogram(name: str, help_: str, histogram: Histogram) -> Metric:
    return HistogramMetricFamily(
        name, help_, buckets=histogram.buckets(), sum_value=histogram.sum
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
