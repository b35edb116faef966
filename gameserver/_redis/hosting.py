"""Several processes on one Redis: each room owned by one process at a time.

**Ownership.** A room's owner holds a lease on it in Redis
(``{room:N}:lease``, ``"<process>:<token>"``), taken with the room's data
in one script (``CLAIM``) by the first process that needs the room, and
extended by every commit and by the service's renewals. The owner runs
the room's turns from memory and saves each reactor iteration's turns of
a room in one script call (``COMMIT``), fenced by the lease and by the
room's version: once the lease is gone, or one commit failed, no commit of
that holder applies. A commit also publishes the turns' messages to the
processes holding their recipients' sockets, so nothing is delivered that
was not saved.

**Routing.** Work for a room (a client's message, a join, a disconnect) is
numbered per room by the process that makes it and sent to the owner: run
here if this process holds the room, else published on the owner's
channel. The owner acknowledges it once saved (in the same publish as the
messages); until then the sender keeps it, and sends it again if the owner
says it does not hold the room, or does not answer, after asking Redis
who holds it now (and claiming the room if nobody does). The owner keeps,
with the room, the last number it saved from each process, so work sent
twice is done once.
"""

from __future__ import annotations

import json
import math
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from zope.interface import implementer

from gameserver._engine.hosting import deliver_local, missing
from gameserver._engine.room import (
    ANSWERED,
    DELETE,
    GONE,
    HERE,
    JOIN,
    LiveRoom,
    Logged,
    Work,
    error_frame,
)
from gameserver._engine.sockets import LocalSockets
from gameserver._engine.turns import Changes, Engine, Out
from gameserver._errors import GameServerError, Unavailable
from gameserver._interfaces import ICommitter, IHosting
from gameserver._models import RoomData, TimerSpec, UserRef
from gameserver._redis import keys, scripts
from gameserver._redis.channels import (
    CLOSE,
    MOVED,
    OUT,
    WORK,
    Channel,
    pack,
    work_message,
    work_of,
)
from gameserver._redis.connection import RedisConnection, gather, quietly
from gameserver._redis.store import RedisStore, pairs, room_of
from gameserver._settings import Settings
from gameserver._stats import now as perf_now
from gameserver._wire.messages import Frame

#: Seconds a commit of unknown outcome is kept, to be delivered if found saved.
UNKNOWN_KEPT = 60.0
#: Seconds a client's request may wait for its room's owner before it is
#: refused; presence updates (a disconnect, a new socket) wait as long as
#: it takes.
REQUEST_DEADLINE = 30.0
CLIENT_KINDS = ANSWERED | {DELETE}

log = Logger()


class Link:
    """This process's requests to one room, and which process it thinks owns it."""

    __slots__ = ("backoff", "owner", "pending", "resolving", "retry", "room_id", "seq")

    def __init__(self, room_id: int) -> None:
        self.room_id = room_id
        self.owner: str | None = None
        self.pending: dict[int, Work] = {}
        self.seq = 0
        self.retry: IDelayedCall | None = None
        self.backoff = 0.0
        self.resolving = False


@implementer(IHosting)
class RedisHosting:
    def __init__(
        self,
        *,
        redis: RedisConnection,
        store: RedisStore,
        engine: Engine,
        sockets: LocalSockets,
        settings: Settings,
        reactor: Any,
    ) -> None:
        self.redis = redis
        self.store = store
        self.engine = engine
        self.sockets = sockets
        self.settings = settings
        self.reactor = reactor
        self.process_id = engine.process_id
        self.channel = Channel(redis.address, reactor, self.process_id, self._message)
        self.committer = RedisCommitter(self)
        engine.committer = self.committer
        self._links: dict[int, Link] = {}
        #: Claims in progress: room -> who waits for the outcome.
        self._claims: dict[int, list[Deferred[Any]]] = {}
        #: The rooms each user joined through this process and may be in.
        self._rooms_of: dict[int, set[int]] = {}
        self._ttl_ms = int(settings.lease_ttl * 1000)
        #: Stopping: rooms are handed over, and none is claimed any more.
        self.stopping = False
        #: Draining: users whose last socket here closed, not yet let go, so
        #: that their rooms keep them while they come back through another
        #: process (``None``: let go at once).
        self.held: dict[int, UserRef] | None = None
        #: For the metrics: requests published to the process owning their
        #: room, and rooms claimed that had been held before (moved here).
        self.forwarded = 0
        self.claimed = 0

    # Sending work to a room's owner

    def submit(self, work: Work) -> None:
        link = self._links.get(work.room_id)
        if link is None:
            link = self._links[work.room_id] = Link(work.room_id)
        if work.kind in ANSWERED and (
            len(link.pending) >= self.settings.max_pending_turns
        ):
            self.engine.counters.refused_busy += 1
            self._refuse_here(
                work,
                "busy",
                f"room {work.room_id} has {len(link.pending)} messages waiting:"
                " try again shortly",
            )
            return
        link.seq += 1
        work.origin, work.seq = self.process_id, link.seq
        work.since = self.reactor.seconds()
        work.prev = next(reversed(link.pending), 0)  # the one before, if any
        link.pending[work.seq] = work
        if work.kind == JOIN and work.user is not None:
            self._rooms_of.setdefault(work.user.id, set()).add(work.room_id)
        self._send(link, work)

    def request(self, work: Work) -> Deferred[None]:
        work.done = Deferred()
        self.submit(work)
        return work.done

    def _send(self, link: Link, work: Work) -> None:
        room = self.engine.rooms.get(link.room_id)
        if room is not None:
            if link.owner != self.process_id:
                # The room came here while work was out to another owner:
                # all of it, in order.
                link.owner = self.process_id
                self._submit_pending(link, room)
                return
            self.engine.submit(room, work)
            return
        owner = link.owner
        if owner is None or owner == self.process_id:
            self._resolve(link)
            return
        self.forwarded += 1
        self._publish(owner, work_message(work))
        self._arm_retry(link)

    def _submit_pending(self, link: Link, room: LiveRoom) -> None:
        for work in _chained(link):
            self.engine.submit(room, work)

    def _publish_pending(self, link: Link, owner: str) -> None:
        for work in _chained(link):
            self.forwarded += 1
            self._publish(owner, work_message(work))

    def _resolve(self, link: Link) -> None:
        """Find out who owns the room (claiming it if nobody does); send again."""
        if link.resolving:
            return
        link.resolving = True
        self.claim(link.room_id).addCallbacks(
            self._resolved, self._unresolved, (link,), errbackArgs=(link,)
        )

    def _resolved(self, outcome: LiveRoom | str | None, link: Link) -> None:
        link.resolving = False
        pending = list(link.pending.values())
        if outcome is None:
            link.pending.clear()
            for work in pending:
                self._refuse_missing(work)
                _finish(work)
            return
        if isinstance(outcome, str):
            link.owner = outcome
            if pending:
                self._publish_pending(link, outcome)
                self._arm_retry(link)
            return
        link.owner = self.process_id
        self._submit_pending(link, outcome)

    def _refuse_missing(self, work: Work) -> None:
        """Tell the client its room is gone, if its request wants an answer."""
        refusal = missing(work, self.engine.counters)
        if refusal is not None and work.reply is not None:
            self.sockets.deliver_to(work.reply.connection, refusal)

    def _unresolved(self, failure: Any, link: Link) -> None:
        link.resolving = False
        link.owner = None
        if failure.check(GameServerError):
            code, detail = failure.value.code, failure.value.detail
        else:
            log.failure(
                "finding the owner of room {room_id} failed",
                failure,
                room_id=link.room_id,
                process=self.process_id,
            )
            code, detail = "unavailable", "the room cannot be reached now: try again"
        self._fail_pending(link, code, detail)
        if link.pending:
            self._arm_retry(link)

    def _fail_pending(self, link: Link, code: str, detail: str) -> None:
        """Refuse a client's waiting requests; presence updates wait on.

        A client can send again; nobody would send a lost disconnect again,
        and the user would stay in the room for good.
        """
        for seq, work in list(link.pending.items()):
            if work.kind in CLIENT_KINDS:
                del link.pending[seq]
                self._refuse_here(work, code, detail)

    def _refuse_here(self, work: Work, code: str, detail: str) -> None:
        if work.kind in ANSWERED and work.reply is not None:
            frame = error_frame(work, code, detail)
            self.engine.counters.refused(frame.type, code)
            self.sockets.deliver_to(work.reply.connection, frame)
        _finish(work)

    def _arm_retry(self, link: Link) -> None:
        if link.retry is None or not link.retry.active():
            delay = link.backoff or self.settings.forward_retry
            link.retry = self.reactor.callLater(delay, self._retry, link)

    def _retry(self, link: Link) -> None:
        """Unacknowledged work: ask who owns the room now, and send it again."""
        link.retry = None
        if not link.pending:
            link.backoff = 0.0
            return
        now = self.reactor.seconds()
        for seq, work in list(link.pending.items()):
            if work.kind in CLIENT_KINDS and now - work.since > REQUEST_DEADLINE:
                del link.pending[seq]
                self._refuse_here(
                    work, "unavailable", "the room's server did not answer: try again"
                )
        link.backoff = min(
            (link.backoff or self.settings.forward_retry) * 2, self.settings.lease_ttl
        )
        link.owner = None
        if link.pending:
            self._resolve(link)

    def completed(self, work: Work) -> None:
        """Work this process sent is saved (or refused) by the room's owner."""
        link = self._links.get(work.room_id)
        if link is not None and link.pending.pop(work.seq, None) is not None:
            self._settled(link)
        _finish(work)

    def _acked(self, room_id: int, seqs: list[int]) -> None:
        link = self._links.get(room_id)
        if link is None:
            return
        for seq in seqs:
            work = link.pending.pop(seq, None)
            if work is not None:
                _finish(work)
        self._settled(link)

    def _settled(self, link: Link) -> None:
        if not link.pending:
            link.backoff = 0.0
            if link.retry is not None and link.retry.active():
                link.retry.cancel()
            link.retry = None

    def _publish(self, process: str, message: bytes) -> None:
        self.redis("PUBLISH", keys.channel(process), message).addErrback(
            lambda f: log.debug("publishing failed: {f}", f=f.getErrorMessage())
        )

    # Claiming rooms

    def claim(self, room_id: int) -> Deferred[LiveRoom | str | None]:
        """The room, held here from now on; or the process holding it; or
        ``None`` if there is no such room."""
        d: Deferred[Any] = Deferred()
        room = self.engine.rooms.get(room_id)
        if room is not None:
            d.callback(room)
            return d
        if self.stopping:
            # Who holds it, without taking it: a stopping process hands over.
            def holder(lease: str | None) -> str:
                if lease is None:
                    raise Unavailable("this server is restarting: try again")
                return lease.partition(":")[0]

            return self.redis("GET", keys.room(room_id, "lease")).addCallback(holder)
        waiting = self._claims.get(room_id)
        if waiting is not None:
            waiting.append(d)
            return d
        self._claims[room_id] = [d]
        self.redis.run(
            scripts.CLAIM, keys.room_keys(room_id), [self.process_id, self._ttl_ms]
        ).addCallbacks(
            self._claimed, self._claim_failed, (room_id,), errbackArgs=(room_id,)
        )
        return d

    def _claimed(self, reply: list[Any], room_id: int) -> None:
        waiting = self._claims.pop(room_id, [])
        outcome: LiveRoom | str | None
        kind = int(reply[0])
        if kind == 0:
            outcome = None
        elif kind == 1:
            outcome = str(reply[1]).partition(":")[0]
        else:
            try:
                data = _room_data(room_id, reply)
                outcome = self.engine.adopt(data)
            except Exception as e:
                holder = f"{self.process_id}:{int(reply[1])}"
                self.redis.run(scripts.RELEASE, [keys.room(room_id, "lease")], [holder])
                for d in waiting:
                    d.errback(e)
                return
            if data.token > 1:  # its fence had been raised: held before
                self.claimed += 1
            self.committer.adopted(outcome)
            self.committer.reconcile(outcome, data.version)
            ensureDeferred(self._check_routes(outcome)).addErrback(
                lambda f: log.warn(
                    "checking routes of room {room_id} failed: {f}",
                    f=f.getErrorMessage(),
                    room_id=room_id,
                    process=self.process_id,
                )
            )
        for d in waiting:
            d.callback(outcome)

    def _claim_failed(self, failure: Any, room_id: int) -> None:
        for d in self._claims.pop(room_id, []):
            d.errback(failure)

    async def _check_routes(self, room: LiveRoom) -> None:
        """A room taken over: its users whose processes are dead are gone."""
        processes = {p for routes in room.present.values() for p in routes}
        processes.discard(self.process_id)
        for process in sorted(processes):
            if int(await self.redis("EXISTS", keys.alive(process))):
                continue
            for user_id, routes in list(room.present.items()):
                user = room.member(user_id)
                if process in routes and user is not None:
                    self.engine.submit(
                        room, Work(GONE, room.id, user, processes=(process,))
                    )

    def lost(self, room: LiveRoom, reason: str, *, unknown: bool = False) -> None:
        """This process cannot save the room (any more): give it up at once.

        What it had not saved is not delivered; its own requests go to
        whoever holds the room now, and other processes are told to ask.
        With ``unknown``, commits were sent whose outcome is unknown (the
        connection dropped): they are kept, to be delivered if this process
        finds them saved when it claims the room again.
        """
        if self.engine.rooms.get(room.id) is not room:
            return
        log.info(
            "gave up room {room_id}: {reason}",
            room_id=room.id,
            reason=reason,
            process=self.process_id,
        )
        left = self.engine.drop(room)
        origins = {w.origin for w in left} | self.committer.forget(room, keep=unknown)
        self._redirect(room.id, origins)

    def _redirect(self, room_id: int, origins: set[str]) -> None:
        """The room is not here any more: its senders, this process included,
        ask Redis who holds it now."""
        origins.discard("")
        origins.discard(self.process_id)
        for origin in sorted(origins):
            self._publish(origin, pack([MOVED, room_id]))
        link = self._links.get(room_id)
        if link is not None:
            link.owner = None
            if link.pending:
                self._resolve(link)

    def release(self, room: LiveRoom) -> Deferred[Any]:
        """Hand a room back, once its last commit is saved: others may claim
        it at once, and the processes that sent it work are told to ask."""
        self.engine.drop(room)
        self.committer.forget(room)
        origins = sorted(o for o in room.admitted if o != self.process_id)

        def tell(reply: Any) -> Any:
            for origin in origins:
                self._publish(origin, pack([MOVED, room.id]))
            return reply

        return self.redis.run(
            scripts.RELEASE,
            [keys.room(room.id, "lease")],
            [self.committer.holder(room)],
        ).addCallback(tell)

    # What other processes send here

    def _message(self, message: list[Any]) -> None:
        kind = message[0]
        if kind == OUT:
            _, room_id, items, acks = message
            for payload, users, connection in items:
                frame = Frame(payload)
                if users is not None:
                    self.sockets.deliver(users, frame)
                else:
                    self.sockets.deliver_to(connection, frame)
            if acks:
                self._acked(room_id, acks)
        elif kind == WORK:
            self._work(work_of(message))
        elif kind == CLOSE:
            _, user_id, code, reason = message
            self.sockets.close_user(user_id, code, reason)
        elif kind == MOVED:
            link = self._links.get(message[1])
            if link is not None and link.pending:
                link.owner = None
                self._resolve(link)

    def _work(self, work: Work) -> None:
        room = self.engine.rooms.get(work.room_id)
        if room is not None:
            self.engine.submit(room, work)
            return
        if self.stopping:
            self._publish(work.origin, pack([MOVED, work.room_id]))
            return
        self.claim(work.room_id).addCallbacks(
            self._claimed_for,
            lambda f: log.debug(
                "claim of room {room_id} failed: {f}",
                f=f.getErrorMessage(),
                room_id=work.room_id,
                process=self.process_id,
            ),
            (work,),
        )

    def _claimed_for(self, outcome: LiveRoom | str | None, work: Work) -> None:
        if isinstance(outcome, LiveRoom):
            self.engine.submit(outcome, work)
        elif outcome is None:
            refusal = missing(work, self.engine.counters)
            items = (
                []
                if refusal is None or work.reply is None
                else [[refusal.payload, None, work.reply.connection]]
            )
            self._publish(work.origin, pack([OUT, work.room_id, items, [work.seq]]))
        else:
            self._publish(work.origin, pack([MOVED, work.room_id]))

    # Users' sockets here

    async def user_connected(self, user: UserRef) -> None:
        if not self.channel.ready:
            raise Unavailable("not connected to Redis yet: try again soon")
        _, _, rooms = await gather(
            self.redis("HSET", keys.online(user.id), self.process_id, 1),
            self.redis("SADD", keys.process_users(self.process_id), user.id),
            self.redis("SMEMBERS", keys.user_rooms(user.id)),
        )
        for room_id in sorted(int(r) for r in rooms):
            self.submit(Work(HERE, room_id, user, processes=(self.process_id,)))

    async def rooms_of(self, user: UserRef) -> tuple[list[int], list[int]]:
        # One read of both indexes (one hash slot): a room moving from one
        # to the other is in at least one of them at every moment.
        listed, owned = await gather(
            self.redis("SUNION", keys.user_seats(user.id), keys.user_rooms(user.id)),
            self.redis("SMEMBERS", keys.user_owns(user.id)),
        )
        rooms = {int(r) for r in listed}
        rooms.update(self._rooms_of.get(user.id, ()))
        return sorted(rooms), sorted(int(r) for r in owned)

    async def close_user(self, user: UserRef, code: int, reason: str) -> None:
        self.sockets.close_user(user.id, code, reason)
        for process in await self.redis("HKEYS", keys.online(user.id)):
            if process != self.process_id:
                self._publish(process, pack([CLOSE, user.id, code, reason]))

    def user_disconnected(self, user: UserRef) -> None:
        if self.held is not None:
            self.held[user.id] = user
            return
        self.let_go_now(user)

    def let_go_now(self, user: UserRef) -> Deferred[None]:
        """``let_go``, its failure logged; fires once its rooms are told."""
        return ensureDeferred(self.let_go(user)).addErrback(
            lambda f: log.failure(
                "telling the rooms user {user_id} left failed",
                f,
                user_id=user.id,
                process=self.process_id,
            )
        )

    async def let_go(self, user: UserRef) -> None:
        """The user's sockets here are gone: tell their rooms."""
        rooms = set(self._rooms_of.pop(user.id, ()))
        try:
            listed = self.redis("SMEMBERS", keys.user_rooms(user.id))
            if not self.sockets.count(user.id):
                self.redis("HDEL", keys.online(user.id), self.process_id).addErrback(
                    quietly
                )
                self.redis(
                    "SREM", keys.process_users(self.process_id), user.id
                ).addErrback(quietly)
            rooms.update(int(r) for r in await listed)
        except GameServerError as e:
            log.warn(
                "user {user_id} left, and Redis is down: {e}",
                user_id=user.id,
                e=e.detail,
                process=self.process_id,
            )
        if self.sockets.count(user.id):
            return  # back meanwhile
        for room_id in sorted(rooms):
            self.submit(Work(GONE, room_id, user, processes=(self.process_id,)))

    async def others_alive(self) -> bool:
        """Whether another process is alive: one a user could come back to."""
        alive = await alive_processes(self.redis)
        return any(process != self.process_id for process in alive)

    async def back_elsewhere(self, users: list[UserRef]) -> list[UserRef]:
        """Those of ``users`` (let go of here) who have a socket in another
        process and, in every room held here, a place through it: letting
        them go then takes nothing from them."""
        me = self.process_id
        waiting = {user.id for user in users}
        only_here = {
            user_id
            for room in self.engine.rooms.values()
            for user_id, routes in room.present.items()
            if user_id in waiting and not routes - {me}
        }
        candidates = [
            user
            for user in users
            if user.id not in only_here and not self.sockets.count(user.id)
        ]
        online = await gather(
            *(self.redis("HKEYS", keys.online(user.id)) for user in candidates)
        )
        return [
            user
            for user, processes in zip(candidates, online, strict=True)
            if any(process != me for process in processes)
        ]

    def deleted(self, room: LiveRoom) -> None:
        """The room is gone: what it had not done yet is refused, not lost."""
        left = self.engine.drop(room)
        origins = self.committer.forget(room) | {w.origin for w in left}
        for work in left:
            if work.origin == self.process_id:
                self._refuse_missing(work)
                self.completed(work)
        self._redirect(room.id, origins)

    def forget(self, user_id: int, room_id: int) -> None:
        rooms = self._rooms_of.get(user_id)
        if rooms is not None:
            rooms.discard(room_id)
            if not rooms:
                del self._rooms_of[user_id]

    def pending(self) -> int:
        """Requests sent and not yet acknowledged, in all rooms."""
        return sum(len(link.pending) for link in self._links.values())

    def fail_all(self, code: str, detail: str) -> None:
        """Refuse every request waiting for an owner (this process was lost)."""
        for link in self._links.values():
            self._fail_pending(link, code, detail)


async def alive_processes(redis: RedisConnection) -> list[str]:
    """The processes listed in Redis whose alive key has not expired."""
    members = list(await redis("SMEMBERS", keys.PROCESSES))
    alive = await gather(*(redis("EXISTS", keys.alive(p)) for p in members))
    return [p for p, n in zip(members, alive, strict=True) if int(n)]


def _chained(link: Link) -> list[Work]:
    """The link's waiting requests in order, each naming the one before it."""
    pending = list(link.pending.values())
    previous = 0
    for work in pending:
        work.prev, previous = previous, work.seq
    return pending


def _finish(work: Work) -> None:
    done = work.done
    if done is not None and not done.called:
        done.callback(None)


def _room_data(room_id: int, reply: list[Any]) -> RoomData:
    token, meta, state, entries, chat, timers, present, groups, seen, log = reply[1:]
    meta = pairs(meta)
    return RoomData(
        record=room_of(room_id, meta),
        state=state,
        entries=pairs(entries),
        chat=list(chat),
        timers={
            name: TimerSpec.from_json(json.loads(raw))
            for name, raw in pairs(timers).items()
        },
        present={int(u): json.loads(raw) for u, raw in pairs(present).items()},
        groups={name: json.loads(raw) for name, raw in pairs(groups).items()},
        seen={origin: int(seq) for origin, seq in pairs(seen).items()},
        log=list(log),
        seq=int(meta.get("seq") or 0),
        version=int(meta.get("version") or 0),
        token=int(token),
    )


_NOWHERE: frozenset[str] = frozenset()


class Batch:
    """A room's turns saved in one script call: those of one reactor
    iteration, and those that end while the room's previous call is out."""

    __slots__ = (
        "after",
        "before",
        "chat",
        "clear_timers",
        "drop",
        "entries",
        "groups",
        "held",
        "local",
        "log",
        "out",
        "players_before",
        "record",
        "room",
        "routes",
        "sent",
        "state",
        "target",
        "timers",
        "turns",
        "works",
    )

    def __init__(self, room: LiveRoom) -> None:
        self.room = room
        self.turns = 0
        self.state = False
        self.record = False
        self.drop = False
        self.clear_timers = False
        self.entries: dict[str, None] = {}
        self.chat: list[Any] = []
        self.timers: dict[str, None] = {}
        self.groups: dict[str, None] = {}
        #: Users whose presence changed, with their processes before the batch.
        self.before: dict[int, frozenset[str] | None] = {}
        #: Every process each of those users was reached at during the batch.
        self.routes: dict[int, frozenset[str]] = {}
        #: Their processes after the batch, taken when it is sent.
        self.after: dict[int, frozenset[str] | None] = {}
        #: The ids of the room's players before the batch, if it changed them.
        self.players_before: tuple[int, ...] | None = None
        self.out: list[Out] = []
        self.log: list[Logged] = []
        self.works: list[Work] = []
        #: The last turn queued hooks: wait for them before saving.
        self.held = False
        #: Once sent: the version its commit makes, and this process's share
        #: of its messages.
        self.target = 0
        self.local: list[Out] = []
        #: ``perf_counter`` when its COMMIT was sent.
        self.sent = 0.0

    def add(self, changes: Changes) -> None:
        self.turns += 1
        self.state |= changes.state
        self.record |= changes.record
        if self.players_before is None:
            self.players_before = changes.players_before
        self.drop |= changes.drop
        if changes.clear_timers:
            self.clear_timers = True
        for key in changes.entries:
            self.entries[key] = None
        if changes.chat:
            self.chat.extend(changes.chat)
        for name in changes.timers:
            self.timers[name] = None
        for name in changes.groups:
            self.groups[name] = None
        if changes.present:
            before = changes.present_before or {}
            present = self.room.present
            routes = self.routes
            for user_id in changes.present:
                was, now = before.get(user_id), present.get(user_id)
                if user_id not in self.before:
                    self.before[user_id] = was
                routes[user_id] = (
                    routes.get(user_id, _NOWHERE)
                    | (was or _NOWHERE)
                    | (now or _NOWHERE)
                )
        self.out.extend(changes.out)
        if changes.log:
            self.log.extend(changes.log)
        self.works.append(changes.work)


@implementer(ICommitter)
class RedisCommitter:
    """Saves each room's turns of a reactor iteration in one fenced script call.

    A room has one call in flight at a time: the turns that end while it is
    out are saved together right after it comes back (a group commit), so
    that a busy room's turns share calls instead of each iteration sending
    its own.

    The call also publishes the turns' messages to the processes holding
    their recipients' sockets; this process's own are delivered when Redis
    answers that it saved them.
    """

    def __init__(self, hosting: RedisHosting) -> None:
        self._hosting = hosting
        self._redis = hosting.redis
        self._engine = hosting.engine
        self._sockets = hosting.sockets
        self._reactor = hosting.reactor
        self._process = hosting.process_id
        self._ttl_ms = int(hosting.settings.lease_ttl * 1000)
        self._batches: dict[int, Batch] = {}
        self._flush_call: IDelayedCall | None = None
        #: Batches sent and not answered yet, per room.
        self._in_flight: dict[int, list[Batch]] = {}
        #: When each room's lease was last extended (by a commit or a renewal).
        self.renewed: dict[int, float] = {}
        #: Whether the room has users in other processes, by its ``present``.
        self._remote: dict[int, tuple[Any, bool]] = {}
        #: Commits sent, for tests and benchmarks.
        self.commits = 0
        #: Rooms given up with commits of unknown outcome: when, and which.
        self._unknown: dict[int, tuple[float, list[Batch]]] = {}

    def holder(self, room: LiveRoom) -> str:
        return f"{self._process}:{room.token}"

    def adopted(self, room: LiveRoom) -> None:
        self.renewed[room.id] = self._reactor.seconds()

    def busy(self, room: LiveRoom) -> bool:
        """Whether the room has changes not yet saved."""
        return room.id in self._batches or bool(self._in_flight.get(room.id))

    def forget(self, room: LiveRoom, *, keep: bool = False) -> set[str]:
        """Drop the room's unsaved batches; the processes whose work they held.

        With ``keep``, the batches sent are kept for ``reconcile``.
        """
        origins: set[str] = set()
        batches = self._in_flight.pop(room.id, [])
        if keep and batches:
            now = self._reactor.seconds()
            for stale in [
                r for r, (t, _) in self._unknown.items() if now - t > UNKNOWN_KEPT
            ]:
                del self._unknown[stale]  # rooms never claimed here again
            self._unknown[room.id] = (now, list(batches))
        unsent = self._batches.pop(room.id, None)
        if unsent is not None:
            batches.append(unsent)
        for batch in batches:
            origins.update(w.origin for w in batch.works)
        self.renewed.pop(room.id, None)
        self._remote.pop(room.id, None)
        return origins

    def reconcile(self, room: LiveRoom, version: int) -> None:
        """The room is here again at ``version``: deliver what did apply.

        Batches whose commit had an unknown outcome and that turn out saved
        are delivered and acknowledged now; the others were not saved, and
        their requests, still waiting, are done again.
        """
        kept = self._unknown.pop(room.id, None)
        if kept is None or self._reactor.seconds() - kept[0] > UNKNOWN_KEPT:
            return
        logged: dict[int, bytes] | None = None
        for batch in kept[1]:
            if batch.target > version:
                continue
            # Saved by this process, not by another that claimed the room in
            # between: the fence grew by this claim only, or the room's log
            # holds the batch's own messages.
            if room.token != batch.room.token + 1:
                if logged is None:
                    logged = {entry.seq: entry.payload for entry in room.log}
                if not batch.log or any(
                    logged.get(entry.seq) != entry.payload for entry in batch.log
                ):
                    continue
            self._hand_over(batch)

    # ICommitter

    def commit(self, room: LiveRoom, changes: Changes) -> None:
        batch = self._batches.get(room.id)
        if batch is None:
            batch = self._batches[room.id] = Batch(room)
        batch.add(changes)
        batch.held = changes.more
        if not batch.held and not self._in_flight.get(room.id):
            self._flush_soon()

    def refuse(self, room: LiveRoom, work: Work, frame: Frame) -> None:
        if not work.origin or work.origin == self._process:
            if work.reply is not None:
                self._sockets.deliver_to(work.reply.connection, frame)
            self._hosting.completed(work)
            return
        items = (
            [] if work.reply is None else [[frame.payload, None, work.reply.connection]]
        )
        self._hosting._publish(work.origin, pack([OUT, room.id, items, [work.seq]]))

    def duplicate(self, room: LiveRoom, work: Work) -> None:
        if work.origin == self._process:
            self._hosting.completed(work)
        else:
            self._hosting._publish(work.origin, pack([OUT, room.id, [], [work.seq]]))

    # Saving

    def _flush_soon(self) -> None:
        if self._flush_call is None:
            self._flush_call = self._reactor.callLater(0, self._flush)

    def _flush(self) -> None:
        self._flush_call = None
        batches, self._batches = self._batches, {}
        in_flight = self._in_flight
        with self._redis.corked():
            for room_id, batch in batches.items():
                if self._engine.rooms.get(room_id) is not batch.room:
                    continue
                if batch.held or in_flight.get(room_id):
                    # Its hooks have not run yet, or the room's last commit
                    # has not come back: saved with them, or right after it.
                    self._batches[room_id] = batch
                else:
                    self._send(batch)

    def _send(self, batch: Batch) -> None:
        room = batch.room
        redis = self._redis
        batch.after = {u: room.present.get(u) for u in batch.before}
        ops = self._ops(batch)
        local, publishes = self._route(batch)
        expected = room.version
        room.version += 1
        batch.target, batch.local = room.version, local
        for name in batch.timers:
            spec = room.timers.get(name)
            if spec is not None:  # indexed before it is stored: never missed
                redis(
                    "ZADD", keys.TIMERS, spec.deadline, f"{room.id}|{name}"
                ).addErrback(quietly)
        args = [
            self.holder(room),
            expected,
            self._ttl_ms,
            4 + len(ops),
            *ops,
            *publishes,
        ]
        self.commits += 1
        batch.sent = perf_now()
        self._in_flight.setdefault(room.id, []).append(batch)
        self.renewed[room.id] = self._reactor.seconds()
        redis.run(scripts.COMMIT, keys.room_keys(room.id), args).addCallbacks(
            self._saved, self._failed, (batch,), errbackArgs=(batch,)
        )

    def _ops(self, batch: Batch) -> list[Any]:
        room = batch.room
        if batch.drop:
            return ["D"]
        ops: list[Any] = []
        if batch.state:
            ops += ["S", room.saved]
        for key in batch.entries:
            value = room.entries.get(key)
            ops += ["e", key] if value is None else ["E", key, value]
        keep = room.chat.maxlen or 0
        if batch.chat and keep:
            for entry in batch.chat[-keep:]:
                ops += ["C", entry.encoded]
            ops += ["K", keep]
        if batch.record:
            record = room.record
            players = json.dumps([p.to_json() for p in record.players])
            reserved = json.dumps(record.reserved)
            spectators = json.dumps([s.to_json() for s in record.spectators])
            ops += ["R", players, record.state.value, spectators, reserved]
        if batch.clear_timers:
            ops.append("X")
        for name in batch.timers:
            spec = room.timers.get(name)
            ops += (
                ["t", name] if spec is None else ["T", name, json.dumps(spec.to_json())]
            )
        for name in batch.groups:
            members = room.groups.get(name)
            ops += (
                ["g", name] if not members else ["G", name, json.dumps(sorted(members))]
            )
        for user_id in batch.before:
            routes = room.present.get(user_id)
            ops += (
                ["p", user_id]
                if not routes
                else ["P", user_id, json.dumps(sorted(routes))]
            )
        seen: dict[str, int] = {}
        for work in batch.works:
            if work.origin and work.seq > seen.get(work.origin, 0):
                seen[work.origin] = work.seq
        for origin, seq in seen.items():
            ops += ["Q", origin, seq]
        log = batch.log
        if log:
            size = room.log.maxlen or len(log)
            kept = log[-size:]
            window = max(1, math.ceil(room.window * 1000))
            ops += ["L", len(kept), size, room.seq, window]
            ops += [entry.encode() for entry in kept]
        return ops

    def _route(self, batch: Batch) -> tuple[list[Out], list[Any]]:
        """This process's share of the messages, and the publishes for the others'."""
        room = batch.room
        me = self._process
        acks: dict[str, list[int]] = {}
        for work in batch.works:
            if work.origin and work.origin != me:
                acks.setdefault(work.origin, []).append(work.seq)
        per: dict[str, tuple[list[Any], list[int]]]
        if acks or batch.before or self._has_remote(room):
            local, per = self._split(batch)
        else:  # everyone here: this process's alone, as they are
            local, per = batch.out, {}
        for origin, seqs in acks.items():
            per.setdefault(origin, ([], []))[1].extend(seqs)
        publishes: list[Any] = []
        for process, (items, seqs) in per.items():
            publishes += [keys.channel(process), pack([OUT, room.id, items, seqs])]
        return local, publishes

    def _has_remote(self, room: LiveRoom) -> bool:
        cached = self._remote.get(room.id)
        if cached is not None and cached[0] is room.present:
            return cached[1]
        me = self._process
        remote = any(routes != {me} for routes in room.present.values())
        self._remote[room.id] = (room.present, remote)
        return remote

    def _split(
        self, batch: Batch
    ) -> tuple[list[Out], dict[str, tuple[list[Any], list[int]]]]:
        me = self._process
        present, seen = batch.room.present, batch.routes
        local: list[Out] = []
        per: dict[str, tuple[list[Any], list[int]]] = {}
        for frame, target in batch.out:
            if type(target) is not tuple:
                if target.process == me:  # type: ignore[union-attr]
                    local.append((frame, target))
                else:
                    items = per.setdefault(target.process, ([], []))[0]  # type: ignore[union-attr]
                    items.append([frame.payload, None, target.connection])  # type: ignore[union-attr]
                continue
            mine: list[int] = []
            theirs: dict[str, list[int]] = {}
            for user_id in target:
                routes = present.get(user_id) or seen.get(user_id)
                if not routes:
                    continue
                for process in routes:
                    if process == me:
                        mine.append(user_id)
                    else:
                        theirs.setdefault(process, []).append(user_id)
            if mine:
                local.append((frame, tuple(mine)))
            for process, users in theirs.items():
                per.setdefault(process, ([], []))[0].append(
                    [frame.payload, users, None]
                )
        return local, per

    def _saved(self, reply: Any, batch: Batch) -> None:
        self._engine.counters.commit_seconds.observe(perf_now() - batch.sent)
        room = batch.room
        in_flight = self._in_flight.get(room.id)
        if in_flight and in_flight[0] is batch:
            in_flight.pop(0)
        if self._engine.rooms.get(room.id) is not room:
            return
        code = int(reply)
        if code != 1:
            reason = (
                "its lease passed to another process"
                if code == -1
                else ("a commit before this one did not apply")
            )
            self._hosting.lost(room, reason)
            return
        try:
            self._engine.saved(room, batch.turns, batch.works)
            self._hand_over(batch)
            self._after(batch)
        finally:  # whatever failed above, the turns waiting for this go out
            waiting = self._batches.get(room.id)
            if waiting is not None and not waiting.held and not in_flight:
                self._flush_soon()

    def _hand_over(self, batch: Batch) -> None:
        """A saved batch: its messages to this process's sockets, its
        requests from here answered."""
        deliver_local(self._sockets, self._process, batch.local)
        for work in batch.works:
            if work.origin == self._process:
                self._hosting.completed(work)

    def _failed(self, failure: Any, batch: Batch) -> None:
        room = batch.room
        if self._engine.rooms.get(room.id) is room:
            if not failure.check(GameServerError):
                log.failure(
                    "saving room {room_id} failed",
                    failure,
                    room_id=room.id,
                    process=self._process,
                )
            self._hosting.lost(
                room,
                f"saving failed: {failure.getErrorMessage()}",
                unknown=bool(failure.check(Unavailable)),
            )

    def _after(self, batch: Batch) -> None:
        """Indexes kept outside the room's keys: who is where, which timers."""
        room, redis = batch.room, self._redis
        quiet = quietly
        for name in batch.timers:
            if name not in room.timers:
                redis("ZREM", keys.TIMERS, f"{room.id}|{name}").addErrback(quiet)
        # Every addition to the user indexes goes before every removal, so
        # that a room moving from one to the other (a player going away, or
        # back) is in at least one of them at every moment.
        adds: list[str] = []
        removes: list[str] = []
        if not batch.drop and (batch.players_before is not None or batch.before):
            self._index_absent_seats(batch, adds, removes)
        for user_id, before in batch.before.items():
            now = batch.after.get(user_id)
            if now and not before:
                adds.append(keys.user_rooms(user_id))
                redis("HKEYS", keys.online(user_id)).addCallbacks(
                    self._online_elsewhere, quiet, (room, user_id)
                )
            elif before and not now:
                removes.append(keys.user_rooms(user_id))
                self._hosting.forget(user_id, room.id)
        for key in adds:
            redis("SADD", key, room.id).addErrback(quiet)
        for key in removes:
            redis("SREM", key, room.id).addErrback(quiet)
        if batch.drop:
            for user_id in room.present:
                redis("SREM", keys.user_rooms(user_id), room.id).addErrback(quiet)
            for player in room.record.players:
                redis("SREM", keys.user_seats(player.id), room.id).addErrback(quiet)
            owner = room.record.owner.id
            redis("SREM", keys.user_owns(owner), room.id).addErrback(quiet)
            ensureDeferred(self._hosting.store.unlist_room(room.id, room.record.game))
            self._hosting.deleted(room)

    def _index_absent_seats(
        self, batch: Batch, adds: list[str], removes: list[str]
    ) -> None:
        """Keep ``{user:N}:seats``: the rooms where a user holds a seat and
        is not present (a player away mid-game), the only seats the present
        rooms' index misses. Joining and leaving write nothing to it."""
        room = batch.room
        seated = {p.id for p in room.record.players}
        was_seated = (
            seated if batch.players_before is None else set(batch.players_before)
        )
        present, before, after = room.present, batch.before, batch.after
        for user_id in seated | was_seated:
            if user_id in before:
                was_present, now_present = before[user_id], after.get(user_id)
            else:
                was_present = now_present = present.get(user_id)
            away = user_id in seated and not now_present
            was_away = user_id in was_seated and not was_present
            if away and not was_away:
                adds.append(keys.user_seats(user_id))
            elif was_away and not away:
                removes.append(keys.user_seats(user_id))

    def _online_elsewhere(
        self, processes: list[str], room: LiveRoom, user_id: int
    ) -> None:
        """A user who joined may have sockets in other processes too: reach them."""
        if self._engine.rooms.get(room.id) is not room:
            return
        routes = room.present.get(user_id)
        user = room.member(user_id)
        if routes is None or user is None:
            return
        others = tuple(sorted(set(processes) - routes))
        if others:
            self._engine.submit(room, Work(HERE, room.id, user, processes=others))
