"""Running on Redis: the connections, and the chores of a process among others.

``RedisBackend`` is a Twisted service. Every few seconds it says this
process is alive; it renews the leases of the rooms it owns and gives back
the ones nobody uses; it looks for due timers of rooms nobody owns (their
owner died) and claims those rooms so that the timers fire; and it lets go
the users of processes that died without saying so. A process that finds
it was taken for dead (paused, cut off) asks its clients to reconnect,
since the others have already let its users go. Stopping cleanly, it lets
its users go, saves and hands back every room it owns, then leaves.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, succeed
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from gameserver._engine.drain import CLOSE_SERVICE_RESTART, wait_until
from gameserver._engine.room import GONE, Work
from gameserver._errors import GameServerError
from gameserver._redis import keys, scripts
from gameserver._redis.connection import (
    RedisAddress,
    RedisConnection,
    gather,
    quietly,
)
from gameserver._redis.hosting import RedisHosting
from gameserver._redis.limiter import SOCKETS_TTL_MS, RedisLimiter, forget_process
from gameserver._redis.store import RedisStore
from gameserver._settings import Settings

if TYPE_CHECKING:
    from gameserver._engine.room import LiveRoom
    from gameserver._engine.sockets import LocalSockets
    from gameserver._engine.turns import Engine

log = Logger()

#: Seconds a timer may be overdue before a process other than its room's
#: owner looks into it (the owner fires it on time when it is alive).
TIMER_GRACE = 1.0
#: Seconds a clean stop waits for the turns in flight before handing over.
STOP_WAIT = 5.0


class RedisBackend(Service):
    def __init__(self, url: str, settings: Settings, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self.settings = settings
        self.process_id = uuid.uuid4().hex
        self.address = RedisAddress.parse(url)
        self.redis = RedisConnection(self.address, reactor)
        self.store = RedisStore(self.redis)
        #: The abuse limits' counters, shared with every process.
        self.limiter = RedisLimiter(self.redis, self.process_id, reactor)
        self.hosting: RedisHosting | None = None
        self._loops: list[LoopingCall] = []
        self._healthy_since: float | None = None
        self._registered = False
        self._starting: Deferred[None] | None = None

    def bind(self, engine: Engine, sockets: LocalSockets) -> RedisHosting:
        """Serve this engine's rooms and these sockets (``GameServer`` calls it)."""
        self.hosting = RedisHosting(
            redis=self.redis,
            store=self.store,
            engine=engine,
            sockets=sockets,
            settings=self.settings,
            reactor=self._reactor,
        )
        return self.hosting

    @property
    def _host(self) -> RedisHosting:
        assert self.hosting is not None, "bind the backend to a GameServer first"
        return self.hosting

    # Starting and stopping

    def startService(self) -> None:
        super().startService()
        log.info("gameserver process {process} on Redis", process=self.process_id)
        self._host.channel.start()
        self._starting = ensureDeferred(self._start_chores())

    async def _start_chores(self) -> None:
        """Once connected, say this process is alive, then keep the chores going."""
        for _ in range(500):
            if self.redis.connected or not self.running:
                break
            await deferLater(self._reactor, 0.02, lambda: None)
        if not self.running:
            return
        settings = self.settings
        chores: list[tuple[Callable[[], Awaitable[None]], float, bool]] = [
            (self._heartbeat, settings.heartbeat_interval, True),
            (self._fire_timers, settings.timer_poll, False),
            (self._renew_leases, settings.lease_ttl / 3, False),
            (self._bury_dead, settings.heartbeat_interval * 2, False),
            (self._release_idle, max(1.0, settings.idle_release / 4), False),
            (self._check_presence, settings.presence_check, False),
        ]
        for chore, interval, now in chores:
            loop = LoopingCall(lambda chore=chore: ensureDeferred(self._quietly(chore)))
            loop.clock = self._reactor
            loop.start(interval, now=now).addErrback(_chore_stopped, chore.__name__)
            self._loops.append(loop)

    def stopService(self) -> Deferred[None]:
        return self.stop(STOP_WAIT)

    def stop(self, wait: float) -> Deferred[None]:
        """Stop, handing the rooms over within ``wait`` seconds (a drain
        gives what it has left of its own time)."""
        if not self.running:
            return succeed(None)  # stopped already, by ``GameServer.stop``
        super().stopService()
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops.clear()
        return ensureDeferred(self._stop(wait))

    async def _stop(self, wait: float) -> None:
        """A clean stop: this process's sockets close (1012: reconnect), their
        users leave as on a disconnect, and once the last commits are saved
        the rooms are handed over."""
        host = self._host
        host.stopping = True
        held, host.held = host.held or {}, None
        # No repair may write this process's socket counts again: they go
        # with it (``forget_process``).
        self.limiter.stop()
        try:
            await DeferredList([host.let_go_now(user) for user in held.values()])
            host.sockets.close_all(
                CLOSE_SERVICE_RESTART, "this server is restarting: reconnect"
            )
            deadline = self._reactor.seconds() + wait
            await wait_until(
                self._reactor,
                lambda: not host.sockets.users() and not host.pending(),
                deadline,
            )
            # Rooms are handed over between two turns, with nothing unsaved:
            # work from other processes may never stop coming, so none starts.
            rooms = list(host.engine.rooms.values())
            for room in rooms:
                room.frozen = True
            await wait_until(self._reactor, lambda: self._quiet(rooms), deadline)
            releases = [host.release(room) for room in rooms]
            await DeferredList(releases, consumeErrors=True)
            await self.redis("SREM", keys.PROCESSES, self.process_id)
            await self.redis("DEL", keys.alive(self.process_id))
            for user_id in host.sockets.users():
                self.redis("HDEL", keys.online(user_id), self.process_id).addErrback(
                    quietly
                )
            await self.redis("DEL", keys.process_users(self.process_id))
            await forget_process(self.redis, self.process_id)
        except GameServerError as e:
            log.warn(
                "stopping without Redis: {detail}",
                detail=e.detail,
                process=self.process_id,
            )
        await host.channel.stop()
        await self.redis.disconnect()

    def _quiet(self, rooms: list[LiveRoom]) -> bool:
        """No turn running in these rooms and nothing of theirs unsaved."""
        busy = self._host.committer.busy
        return not any(room.running or busy(room) for room in rooms)

    async def _quietly(self, chore: Callable[[], Awaitable[None]]) -> None:
        """Run a chore; a failure is logged and the next run tries again."""
        try:
            await chore()
        except GameServerError as e:
            self._healthy_since = None
            log.warn(
                "Redis chore {c} failed: {detail}",
                c=chore.__name__,
                detail=e.detail,
                process=self.process_id,
            )
        except Exception:
            self._healthy_since = None
            log.failure(
                "Redis chore {c} failed", c=chore.__name__, process=self.process_id
            )

    # Chores

    async def _heartbeat(self) -> None:
        ttl_ms = int(self.settings.process_ttl * 1000)
        added = await self.redis.run(
            scripts.HEARTBEAT,
            [
                keys.PROCESSES,
                keys.alive(self.process_id),
                keys.buried(self.process_id),
                keys.process_addresses(self.process_id),
            ],
            [self.process_id, ttl_ms, SOCKETS_TTL_MS],
        )
        if int(added) and self._registered:
            self._taken_for_dead()
        self._registered = True
        if self._healthy_since is None:
            self._healthy_since = self._reactor.seconds()

    def _taken_for_dead(self) -> None:
        """Another process let this one's users go: have the clients come back.

        Rooms held here may have passed to others too; they are given up, so
        that nothing is done for them on stale state, and the clients'
        reconnections (to any process) rejoin them as they are now.
        """
        host = self._host
        log.warn(
            "this process was taken for dead: asking its clients to reconnect",
            process=self.process_id,
        )
        for room in list(host.engine.rooms.values()):
            host.lost(room, "this process was taken for dead")
        host.fail_all("unavailable", "the server lost track of you: reconnect")
        host.sockets.close_all(
            CLOSE_SERVICE_RESTART, "the server lost track of you: reconnect"
        )

    async def _fire_timers(self) -> None:
        """Claim rooms nobody owns whose timers are due, so that they fire."""
        host = self._host
        now = self._reactor.seconds()
        due = await self.redis(
            "ZRANGEBYSCORE",
            keys.TIMERS,
            "-inf",
            repr(now - TIMER_GRACE),
            "LIMIT",
            0,
            500,
        )
        looked: set[int] = set()
        for member in due:
            room_id_text, _, name = member.partition("|")
            room_id = int(room_id_text)
            if room_id in host.engine.rooms or room_id in looked:
                continue
            looked.add(room_id)
            outcome = await host.claim(room_id)
            if outcome is None or (
                not isinstance(outcome, str) and name not in outcome.timers
            ):
                await self.redis("ZREM", keys.TIMERS, member)

    async def _renew_leases(self) -> None:
        host = self._host
        committer = host.committer
        now = self._reactor.seconds()
        period = self.settings.lease_ttl / 3
        ttl_ms = int(self.settings.lease_ttl * 1000)
        for room in list(host.engine.rooms.values()):
            if now - committer.renewed.get(room.id, 0.0) < period:
                continue
            committer.renewed[room.id] = now
            host.redis.run(
                scripts.RENEW,
                [keys.room(room.id, "lease")],
                [committer.holder(room), ttl_ms],
            ).addCallbacks(self._renewed, lambda f: None, (room,))

    def _renewed(self, reply: Any, room: Any) -> None:
        if not int(reply):
            self._host.lost(room, "its lease passed to another process")

    async def _release_idle(self) -> None:
        host = self._host
        now = self._reactor.seconds()
        for room in list(host.engine.rooms.values()):
            idle_since = room.idle_since
            if (
                host.engine.idle(room)
                and not host.committer.busy(room)
                and idle_since is not None
                and now - idle_since >= self.settings.idle_release
            ):
                await host.release(room)

    async def _check_presence(self) -> None:
        """Present users whose sockets are gone are let go.

        A disconnect is told to the room's owner by a request that is sent
        until acknowledged, and a dead process's users are let go by
        whoever buries it; this check catches what still slips through (a
        process that stopped half-way through a burial, say), so that nobody
        stays in a room for good.
        """
        host = self._host
        me = self.process_id
        checks: list[tuple[LiveRoom, int, str]] = []
        for room in list(host.engine.rooms.values()):
            for user_id, routes in list(room.present.items()):
                for process in routes:
                    if process == me:
                        held = host.held is not None and user_id in host.held
                        if not host.sockets.count(user_id) and not held:
                            self._gone(room, user_id, process)
                    else:
                        checks.append((room, user_id, process))
        if not checks:
            return
        alive: dict[str, bool] = {}
        for process in {process for _, _, process in checks}:
            alive[process] = bool(int(await self.redis("EXISTS", keys.alive(process))))
        online = await gather(
            *(self.redis("HEXISTS", keys.online(u), p) for _, u, p in checks)
        )
        for (room, user_id, process), here in zip(checks, online, strict=True):
            if not alive[process] or not int(here):
                self._gone(room, user_id, process)

    def _gone(self, room: LiveRoom, user_id: int, process: str) -> None:
        host = self._host
        user = room.member(user_id)
        if user is not None and room.id in host.engine.rooms:
            host.engine.submit(room, Work(GONE, room.id, user, processes=(process,)))

    async def _bury_dead(self) -> None:
        """Users whose sockets were on a dead process leave as on a disconnect."""
        if self._healthy_since is None:
            return
        # After an outage every live process needs a heartbeat or two to say
        # so again: until then, nobody is taken for dead.
        if (
            self._reactor.seconds() - self._healthy_since
            < 2 * self.settings.process_ttl
        ):
            return
        for process in await self.redis("SMEMBERS", keys.PROCESSES):
            if process != self.process_id:
                await self._bury(process)

    async def _bury(self, process: str) -> None:
        """Let a dead process's users go, one at a time.

        The process is marked buried first, so that if it was only paused it
        learns so at its next heartbeat; its users are taken off its list one
        by one (several processes may share the work, and one that stops
        half-way leaves the rest to the next); it leaves the list of
        processes last. If it comes back meanwhile, the burial stops.
        """
        redis = self.redis
        if int(await redis("EXISTS", keys.alive(process))):
            return
        await redis("SET", keys.buried(process), 1, "EX", 86400)
        log.info(
            "process {p} is dead: letting its users go",
            p=process,
            process=self.process_id,
        )
        while True:
            if int(await redis("EXISTS", keys.alive(process))):
                return  # back: it finds it was buried, and its clients come back
            raw = await redis("SPOP", keys.process_users(process))
            if raw is None:
                break
            user_id = int(raw)
            await redis("HDEL", keys.online(user_id), process)
            record = await self.store.get_user(user_id)
            rooms = await redis("SMEMBERS", keys.user_rooms(user_id))
            if record is not None:
                for room_id in sorted(int(r) for r in rooms):
                    self._host.submit(
                        Work(GONE, room_id, record.ref, processes=(process,))
                    )
        await forget_process(redis, process)
        await redis("SREM", keys.PROCESSES, process)


def _chore_stopped(failure: Any, name: str) -> None:
    log.failure("chore {c} stopped", failure, c=name)
