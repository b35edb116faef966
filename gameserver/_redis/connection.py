"""Connections to Redis: commands pipelined on one, a channel read on another.

All of a process's commands go over one connection, so they reach Redis in
the order they were sent: a timer's index entry before the commit that
stores the timer, one commit of a room before the next. Scripts are sent
by their SHA-1 and loaded again when Redis answers ``NOSCRIPT`` (after a
restart, say). A failure is ``Unavailable`` for the caller, at once when
there is no connection; Twisted's ``ClientService`` reconnects with a
short backoff, and a watchdog drops a connection on which a reply is
overdue (a hung Redis), which fails what waited on it.

This client is written here rather than taken from txredisapi, which
cost about 52 µs of CPU per pipelined command (it builds each argument in
Python and arms a timer per command) against a few here; replies are
parsed by hiredis, Redis's own C parser.
"""

from __future__ import annotations

import hashlib
import socket
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import attrs
import hiredis
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import Deferred, FirstError, gatherResults
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from gameserver._errors import Unavailable

log = Logger()

#: Error replies that mean "not now" rather than "wrong command".
_BUSY_REPLIES = frozenset(
    {"LOADING", "BUSY", "MISCONF", "OOM", "READONLY", "TRYAGAIN", "MASTERDOWN"}
)


@attrs.frozen
class RedisAddress:
    host: str
    port: int
    db: int
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        """``redis://[:password@]host[:port][/db]``; a clear ``ValueError`` otherwise."""
        parts = urlsplit(url)
        if parts.scheme != "redis" or not parts.hostname:
            raise ValueError(f"not a redis://host[:port][/db] URL: {url!r}")
        try:
            port = parts.port or 6379
            db = int(parts.path.strip("/") or 0)
        except ValueError:
            raise ValueError(f"bad port or database number in {url!r}") from None
        return cls(parts.hostname, port, db, parts.password)


@attrs.frozen
class Script:
    """A Lua script, called by its SHA-1."""

    source: str
    sha: str = attrs.field(init=False)

    @sha.default
    def _sha(self) -> str:
        return hashlib.sha1(self.source.encode("utf-8")).hexdigest()


class ReplyError(Exception):
    """Redis answered with an error."""


class NoScript(ReplyError):
    pass


def encode(args: tuple[Any, ...]) -> bytes:
    """A command in RESP: an array of bulk strings (str, bytes, int, float).

    hiredis packs it in C, three times as fast as Python; anything else,
    a bool or None among them, raises ``TypeError``.
    """
    return hiredis.pack_command(args)


class LinkCounts:
    """What befell one connection's commands, across its reconnections."""

    __slots__ = ("connects", "failed")

    def __init__(self) -> None:
        #: Commands that failed: an error reply, the connection lost or down.
        self.failed = 0
        #: Connections made and set up (the first, then each reconnection).
        self.connects = 0

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)


class RespProtocol(Protocol):
    """One connection: commands written at once, replies matched in order.

    With ``push`` set it is a subscriber: every reply is a pushed message.
    """

    def __init__(
        self,
        *,
        text: bool,
        clock: Any,
        push: Callable[[Any], None] | None = None,
        counts: LinkCounts | None = None,
    ) -> None:
        self.counts = LinkCounts() if counts is None else counts
        self._reader = hiredis.Reader(
            encoding="utf-8" if text else None, replyError=ReplyError
        )
        self._clock = clock
        self._push = push
        #: Each command sent and not answered: who waits, since when.
        self.waiting: deque[tuple[Deferred[Any], float]] = deque()
        #: Called when the connection is lost, before what waited fails.
        self.on_lost: list[Callable[[], None]] = []
        self._corked: list[bytes] | None = None

    def call(self, *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self._write(encode(args))
        self.waiting.append((d, self._clock.seconds()))
        return d

    def send(self, *args: Any) -> None:
        """A command whose replies come as pushes (SUBSCRIBE)."""
        self._write(encode(args))

    @contextmanager
    def corked(self) -> Iterator[None]:
        """Commands sent inside go out together, in one write, at once.

        Twisted's ``write`` would send them only in the next reactor
        iteration, which their replies would then wait for: for the commits,
        which the turns' messages wait for.
        """
        if self._corked is not None:
            yield
            return
        corked: list[bytes] = []
        self._corked = corked
        try:
            yield
        finally:
            self._corked = None
            if corked:
                self._write(b"".join(corked), now=True)

    def _write(self, data: bytes, *, now: bool = False) -> None:
        """``now``: to the socket at once, if Twisted holds nothing for it."""
        corked = self._corked
        if corked is not None:
            corked.append(data)
            return
        transport: Any = self.transport
        assert transport is not None
        sock = getattr(transport, "socket", None) if now else None
        if (
            isinstance(sock, socket.socket)
            and transport.connected
            and not transport.disconnecting
            and not _held_by(transport)
        ):
            try:
                sent = sock.send(data)
            except OSError:  # BlockingIOError included; Twisted's write finds errors
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        push, waiting = self._push, self.waiting
        while True:
            reply = reader.gets()
            if reply is False:
                return
            if push is not None:
                push(reply)
            elif waiting:
                d, _ = waiting.popleft()
                if isinstance(reply, ReplyError):
                    error = _error(reply)
                    if not isinstance(error, NoScript):  # loaded and sent again
                        self.counts.failed += 1
                    d.errback(error)
                else:
                    d.callback(reply)

    def connectionLost(self, reason: Failure | None = None) -> None:
        for callback in self.on_lost:
            callback()
        why = "connection lost" if reason is None else reason.getErrorMessage()
        waiting, self.waiting = self.waiting, deque()
        self.counts.failed += len(waiting)
        for d, _ in waiting:
            d.errback(Unavailable(f"the store (Redis) failed: {why}"))

    def overdue(self, timeout: float) -> bool:
        return bool(self.waiting) and (
            self._clock.seconds() - self.waiting[0][1] > timeout
        )


def _held_by(transport: Any) -> int:
    """Bytes Twisted holds for the socket; -1 if it cannot tell (not its TCP)."""
    try:
        return int(
            len(transport.dataBuffer) - transport.offset + transport._tempDataLen
        )
    except (AttributeError, TypeError):
        return -1


def _error(reply: ReplyError) -> Exception:
    text = str(reply)
    first = text.split(" ", 1)[0]
    if first == "NOSCRIPT":
        return NoScript(text)
    if first in _BUSY_REPLIES:
        return Unavailable(f"the store (Redis) cannot serve now: {text}")
    return ReplyError(text)


class _Factory(Factory):
    def __init__(self, build: Callable[[], RespProtocol]) -> None:
        self._build = build

    def buildProtocol(self, addr: Any) -> RespProtocol:
        return self._build()


class _Link:
    """A connection kept up by a ``ClientService``, ready once it is set up."""

    def __init__(
        self,
        address: RedisAddress,
        reactor: Any,
        *,
        text: bool,
        timeout: float,
        push: Callable[[Any], None] | None = None,
        on_ready: Callable[[RespProtocol], Any] | None = None,
    ) -> None:
        self.address = address
        self._reactor = reactor
        self._timeout = timeout
        self._on_ready = on_ready
        self.protocol: RespProtocol | None = None
        self.counts = LinkCounts()
        endpoint = HostnameEndpoint(
            reactor, address.host, address.port, timeout=timeout
        )
        factory = _Factory(
            lambda: RespProtocol(
                text=text, clock=reactor, push=push, counts=self.counts
            )
        )
        self._service = ClientService(
            endpoint,
            factory,
            retryPolicy=backoffPolicy(initialDelay=0.1, maxDelay=2.0, factor=1.6),
            clock=reactor,
            prepareConnection=self._prepared,
        )
        self._watchdog = LoopingCall(self._watch)
        self._watchdog.clock = reactor

    def start(self) -> None:
        self._service.startService()
        self._watchdog.start(max(self._timeout / 3, 0.05), now=False)

    def stop(self) -> Deferred[None]:
        if self._watchdog.running:
            self._watchdog.stop()
        self.protocol = None
        return self._service.stopService()

    def _prepared(self, protocol: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(self._prepare(protocol))

    async def _prepare(self, protocol: RespProtocol) -> None:
        """AUTH and SELECT before the connection is used; lost with it."""
        transport: Any = protocol.transport

        def forget() -> None:
            if self.protocol is protocol:
                self.protocol = None

        protocol.on_lost.append(forget)
        push = protocol._push
        protocol._push = None  # the replies to AUTH and SELECT are answers
        try:
            if self.address.password is not None:
                await protocol.call("AUTH", self.address.password)
            if self.address.db:
                await protocol.call("SELECT", self.address.db)
        except Exception as e:
            log.warn("Redis refused the connection: {e}", e=e)
            transport.abortConnection()
            raise
        protocol._push = push
        self.protocol = protocol
        self.counts.connects += 1
        if self._on_ready is not None:
            self._on_ready(protocol)

    def _watch(self) -> None:
        protocol = self.protocol
        if protocol is not None and protocol.overdue(self._timeout):
            log.warn("Redis did not answer in {t} s: reconnecting", t=self._timeout)
            self.protocol = None
            transport: Any = protocol.transport
            transport.abortConnection()


class RedisConnection:
    """The connection for commands."""

    def __init__(
        self, address: RedisAddress, reactor: Any, *, timeout: float = 3.0
    ) -> None:
        self.address = address
        self._link = _Link(address, reactor, text=True, timeout=timeout)
        self._link.start()
        #: Scripts loaded on the connection numbered ``_loaded_on``.
        self._loaded: set[str] = set()
        self._loaded_on = -1

    @property
    def connected(self) -> bool:
        return self._link.protocol is not None

    @property
    def counts(self) -> LinkCounts:
        return self._link.counts

    def __call__(self, *command: Any) -> Deferred[Any]:
        """Send a command now (pipelined); the ``Deferred`` fires with its reply."""
        protocol = self._link.protocol
        if protocol is None:
            self._link.counts.failed += 1
            return _failed(
                Unavailable("the store (Redis) is unreachable: try again soon")
            )
        return protocol.call(*command)

    @contextmanager
    def corked(self) -> Iterator[None]:
        """Commands sent inside go out together, in one write, at the end."""
        protocol = self._link.protocol
        if protocol is None:
            yield
            return
        with protocol.corked():
            yield

    def run(self, script: Script, keys: list[str], args: list[Any]) -> Deferred[Any]:
        """Call ``script``, loaded (``SCRIPT LOAD``, not awaited) before its
        first call on each connection: calls sent one after another without
        waiting (commits of one room, a socket's counts) then run in the
        order sent. A script Redis forgot anyway (``SCRIPT FLUSH``) is sent
        whole with ``EVAL``, after whatever was sent meanwhile."""
        connects = self._link.counts.connects
        if connects != self._loaded_on:
            self._loaded_on = connects
            self._loaded.clear()
        if script.sha not in self._loaded and self.connected:
            self._loaded.add(script.sha)
            self("SCRIPT", "LOAD", script.source).addErrback(quietly)

        def again(failure: Failure) -> Any:
            if failure.check(NoScript):
                return self("EVAL", script.source, len(keys), *keys, *args)
            return failure

        return self("EVALSHA", script.sha, len(keys), *keys, *args).addErrback(again)

    def disconnect(self) -> Deferred[None]:
        return self._link.stop()


class Subscriber:
    """A connection in subscribe mode, subscribed again on every reconnection."""

    def __init__(
        self,
        address: RedisAddress,
        reactor: Any,
        channels: list[str],
        message: Callable[[bytes], None],
    ) -> None:
        self._channels = channels
        self._message = message
        self.subscribed = False
        self._link = _Link(
            address,
            reactor,
            text=False,
            timeout=3600.0,
            push=self._pushed,
            on_ready=self._ready,
        )

    def start(self) -> None:
        self._link.start()

    def stop(self) -> Deferred[None]:
        self.subscribed = False
        return self._link.stop()

    @property
    def ready(self) -> bool:
        return self.subscribed and self._link.protocol is not None

    @property
    def counts(self) -> LinkCounts:
        return self._link.counts

    def _ready(self, protocol: RespProtocol) -> None:
        self.subscribed = False

        def unsubscribed() -> None:
            self.subscribed = False

        protocol.on_lost.append(unsubscribed)
        protocol.send("SUBSCRIBE", *self._channels)

    def _pushed(self, reply: Any) -> None:
        if not isinstance(reply, list) or not reply:
            return
        kind = reply[0]
        if kind == b"message":
            self._message(reply[2])
        elif kind == b"subscribe":
            self.subscribed = True


def _failed(error: Exception) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.errback(error)
    return d


async def gather(*replies: Deferred[Any]) -> list[Any]:
    """Wait for commands sent together; raise the first error itself."""
    try:
        return await gatherResults(list(replies), consumeErrors=True)
    except FirstError as e:
        e.subFailure.raiseException()
        raise  # not reached


def quietly(failure: Failure) -> None:
    """For a command whose failure changes nothing (an index, a hint)."""
    log.debug("a Redis command failed: {f}", f=failure.getErrorMessage())
