"""Running on Redis: the store, groups and locks, and their background chores.

``RedisBackend`` is a Twisted service: it keeps the process's heartbeat,
fires stored timers that are due (whichever process set them), and cleans
up after processes that died without saying so.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from gameserver.errors import GameServerError
from gameserver.locks import RedisLocks
from gameserver.pubsub import RedisGroups
from gameserver.store.redis import RedisAddress, RedisConnection, RedisStore

if TYPE_CHECKING:
    from gameserver.server import GameServer

log = Logger()

#: A process that has not said it is alive for this long is taken for dead.
HEARTBEAT_TTL = 6.0


class RedisBackend(Service):
    def __init__(
        self,
        url: str,
        reactor: Any = None,
        *,
        lock_ttl: float = 5.0,
        timer_poll: float = 0.25,
        heartbeat: float = 2.0,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self.process_id = uuid.uuid4().hex
        self.redis = RedisConnection(RedisAddress.parse(url))
        self.store = RedisStore(self.redis)
        self.groups = RedisGroups(self.redis, self.process_id)
        self.locks = RedisLocks(self.redis, reactor, ttl=lock_ttl)
        self._intervals = {"timers": timer_poll, "heartbeat": heartbeat}
        self._loops: list[LoopingCall] = []
        self.server: GameServer | None = None
        self._healthy_since: float | None = None
        self._registered = False

    def attach(self, server: GameServer) -> None:
        self.server = server

    def startService(self) -> None:
        super().startService()
        self.groups.start()
        self._starting = ensureDeferred(self._start_chores())

    async def _start_chores(self) -> None:
        """Once connected, say this process is alive, then keep the chores going."""
        for _ in range(500):
            if self.redis.connected or not self.running:
                break
            await deferLater(self._reactor, 0.02, lambda: None)
        if not self.running:
            return
        for chore, interval, now in [
            (self._heartbeat, self._intervals["heartbeat"], True),
            (self._fire_timers, self._intervals["timers"], False),
            (self._bury_dead, self._intervals["heartbeat"] * 2, False),
        ]:
            loop = LoopingCall(lambda chore=chore: ensureDeferred(self._quietly(chore)))
            loop.clock = self._reactor
            loop.start(interval, now=now).addErrback(
                lambda f, chore=chore: log.failure(
                    "chore {c} stopped", f, c=chore.__name__
                )
            )
            self._loops.append(loop)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops.clear()
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        """A clean stop: this process's users leave as on a disconnect."""
        if self.server is not None:
            for user_id in self.groups.sockets.users():
                record = await self._quiet_user(user_id)
                if record is not None and not await self.groups.user_online_elsewhere(
                    user_id
                ):
                    with contextlib.suppress(GameServerError):
                        await self.server.rooms.user_gone(record.ref)
        with contextlib.suppress(GameServerError):
            await self.groups.leave()
        await self.groups.stop()
        await self.redis.disconnect()

    async def _quietly(self, chore: Any) -> None:
        """Run a chore; a failure is logged and the next run tries again."""
        try:
            await chore()
        except GameServerError as e:
            self._healthy_since = None
            log.warn(
                "Redis chore {c} failed: {detail}", c=chore.__name__, detail=e.detail
            )
        except Exception:
            self._healthy_since = None
            log.failure("Redis chore {c} failed", c=chore.__name__)

    async def _heartbeat(self) -> None:
        missing = await self.groups.heartbeat(HEARTBEAT_TTL)
        if missing and self._registered:
            # Taken for dead (a pause, an outage): the others have already
            # let this process's users go. Say who is here again, and have
            # the clients reconnect and rejoin, so that rooms are right.
            await self.groups.announce()
            self.groups.sockets.close_all(
                1012, "the server lost track of you: reconnect"
            )
        self._registered = True
        if self._healthy_since is None:
            self._healthy_since = self._reactor.seconds()

    async def _quiet_user(self, user_id: int) -> Any:
        with contextlib.suppress(GameServerError):
            return await self.store.get_user(user_id)
        return None

    async def _fire_timers(self) -> None:
        if self.server is not None:
            due = await self.server.turns.fire_due()
            if due:
                log.debug("{due} stored timers due", due=due)

    async def _bury_dead(self) -> None:
        """Users whose sockets were on a dead process leave as on a disconnect."""
        if self.server is None or self._healthy_since is None:
            return
        # After an outage every live process needs a heartbeat or two to say
        # so again: until then, nobody is taken for dead.
        if self._reactor.seconds() - self._healthy_since < 2 * HEARTBEAT_TTL:
            return
        for process in await self.groups.dead_processes():
            for user_id in await self.groups.forget_process(process):
                if await self.groups.user_online(user_id):
                    continue
                record = await self.store.get_user(user_id)
                if record is not None:
                    log.info("user {user} was on a dead process", user=record.username)
                    await self.server.rooms.user_gone(record.ref)
