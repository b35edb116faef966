"""Stopping a process without hurting its players: what SIGTERM and
``GameServer.stop()`` do, within a bounded time.

1. Nothing new: the listeners stop, new WebSocket handshakes and HTTP
   logins are refused (503), and ``/readyz`` says so.
2. The turns in flight finish and are saved (with Redis, so is the work
   this process forwarded to other owners).
3. Every socket is closed with 1012 (service restart), which the clients
   take as "reconnect".
4. With Redis, the users whose sockets closed are not let go at once: their
   rooms keep them (seats included) while they come back through another
   process, which goes on forwarding their work here until the rooms are
   handed over. Whoever is not back by the deadline leaves as on a
   disconnect. Then the rooms are handed over (``RedisBackend.stopService``).

In memory there is nowhere to hand rooms to: what the rooms hold is lost
with the process, and their players come back to a server without them.

The sockets close before the rooms are handed over, not after: a room
given back while its players' sockets are still open here would bounce
their messages ("restarting") until another process claimed it, whereas
this order keeps every room served by someone at every moment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.defer import DeferredList, maybeDeferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

from gameserver._errors import GameServerError

if TYPE_CHECKING:
    from gameserver._redis.hosting import RedisHosting
    from gameserver._server import GameServer
    from gameserver._wire.session import Session

log = Logger()

#: Close code asking clients to reconnect (RFC 6455: service restart).
CLOSE_SERVICE_RESTART = 1012
#: Seconds between looks at whether what a drain waits for is done.
POLL = 0.05
#: Seconds between looks in Redis for users back elsewhere (a few calls each).
COME_BACK_POLL = 0.25
#: Part of the drain's time kept for handing the rooms over, at most.
HAND_OVER_RESERVE = 2.0


async def drain(server: GameServer, timeout: float) -> None:
    clock: Any = server.clock
    deadline = clock.seconds() + timeout
    server.draining = True  # new handshakes, logins and messages refused
    log.info("draining: {n} sockets, {timeout} s", n=_open(server), timeout=timeout)
    await DeferredList(
        [maybeDeferred(port.stopListening) for port in server.ports],
        consumeErrors=True,
    )
    server.ports.clear()
    hosting = None if server.backend is None else server.backend.hosting
    if hosting is not None:
        hosting.stopping = True  # no room is claimed here any more
        hosting.held = {}  # from the first socket closed on
    await wait_until(clock, lambda: _quiet(server), deadline)
    server.sockets.close_all(
        CLOSE_SERVICE_RESTART, "this server is restarting: reconnect"
    )
    for waiting in server.websocket_factory.validation.waiting():
        session = cast("Session", waiting)  # the sockets yet to validate
        session.close(CLOSE_SERVICE_RESTART, "this server is restarting: reconnect")
    backend = server.backend
    if hosting is not None and backend is not None:
        reserve = min(HAND_OVER_RESERVE, timeout / 4)  # for the hand-over
        await _come_back(server, hosting, deadline - reserve)
        await backend.stop(max(0.1, deadline - clock.seconds()))
    else:
        await wait_until(clock, lambda: not _open(server), deadline)
    left = _open(server)
    log.info("drained{rest}", rest=f": {left} sockets still closing" if left else "")


async def _come_back(server: GameServer, hosting: RedisHosting, until: float) -> None:
    """Let users go as they come back elsewhere; the rest at ``until``, or
    at once when no other process is alive."""
    held = hosting.held
    assert held is not None, "drain holds departures from its start"
    clock: Any = server.clock
    while (held or server.sockets.all()) and clock.seconds() < until:
        try:
            if not await hosting.others_alive():
                break  # the last process: nowhere to come back to
            back = await hosting.back_elsewhere(list(held.values()))
        except GameServerError as e:
            log.warn("draining without Redis: {detail}", detail=e.detail)
            break
        for user in back:
            del held[user.id]
        # Their rooms are told before the hand-over, which would drop it.
        await DeferredList([hosting.let_go_now(user) for user in back])
        await deferLater(clock, COME_BACK_POLL, lambda: None)
    hosting.held = None
    if held:
        log.info("{n} users not back elsewhere: they leave", n=len(held))
    await DeferredList([hosting.let_go_now(user) for user in held.values()])


def _quiet(server: GameServer) -> bool:
    """No message of this process's sockets being handled, waiting for its
    turn, or run and not yet saved (with Redis: acknowledged by its owner)."""
    sessions = [*server.sockets.all(), *server.websocket_factory.validation.waiting()]
    if any(getattr(session, "waiting", False) for session in sessions):
        return False
    backend = server.backend
    if backend is not None and backend.hosting is not None:
        return not backend.hosting.pending()
    return not any(room.pending() for room in server.engine.rooms.values())


def _open(server: GameServer) -> int:
    return int(server.websocket_factory.countConnections)


async def wait_until(clock: Any, done: Callable[[], bool], deadline: float) -> None:
    """Until ``done()``, or the clock reaches ``deadline``, looking every ``POLL``."""
    while not done() and clock.seconds() < deadline:
        await deferLater(clock, POLL, lambda: None)
