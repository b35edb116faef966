"""One pipelined connection to Redis, with its failures made ``Unavailable``.

All of a process's commands go over one connection, so they reach Redis in
the order they were sent: a timer's index entry before the commit that
stores the timer, one commit of a room before the next. Scripts are sent
by their SHA-1 and loaded again when Redis answers ``NOSCRIPT`` (after a
restart, say).
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlsplit

import attrs
import txredisapi
from twisted.internet.defer import Deferred, FirstError, gatherResults
from twisted.logger import Logger

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


class RedisConnection:
    def __init__(self, address: RedisAddress, *, timeout: float = 3.0) -> None:
        self.address = address
        self._handler = txredisapi.lazyConnectionPool(
            address.host,
            address.port,
            # No SELECT for db 0: txredisapi gives up reconnecting for good
            # when a SELECT (or AUTH) sent on reconnecting times out.
            dbid=address.db or None,
            poolsize=1,
            password=address.password,
            connectTimeout=timeout,
            replyTimeout=timeout,
            convertNumbers=False,
        )

    @property
    def connected(self) -> bool:
        return bool(self._handler._factory.size)

    def __call__(self, *command: Any) -> Deferred[Any]:
        """Send a command now (pipelined); the ``Deferred`` fires with its reply."""
        # Without a live connection txredisapi would wait for one forever.
        if not self.connected:
            return _failed(
                Unavailable("the store (Redis) is unreachable: try again soon")
            )
        try:
            d = self._handler.execute_command(*command)
        except txredisapi.ConnectionError as e:
            return _failed(Unavailable(f"the store (Redis) failed: {e}"))
        return d.addCallbacks(
            _checked,
            _unavailable,
            callbackArgs=(command[0],),
            errbackArgs=(command[0],),
        )

    def run(self, script: Script, keys: list[str], args: list[Any]) -> Deferred[Any]:
        """Call ``script``, loading it first if Redis does not know it."""

        def again(failure: Any) -> Any:
            if failure.check(NoScript):
                return self("EVAL", script.source, len(keys), *keys, *args)
            return failure

        return self("EVALSHA", script.sha, len(keys), *keys, *args).addErrback(again)

    def disconnect(self) -> Deferred[None]:
        return self._handler.disconnect()


class NoScript(Exception):
    pass


async def gather(*replies: Deferred[Any]) -> list[Any]:
    """Wait for commands sent together; raise the first error itself."""
    try:
        return await gatherResults(list(replies), consumeErrors=True)
    except FirstError as e:
        e.subFailure.raiseException()
        raise  # not reached


def quietly(failure: Any) -> None:
    """For a command whose failure changes nothing (an index, a hint)."""
    log.debug("a Redis command failed: {f}", f=failure.getErrorMessage())


def _failed(error: Exception) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.errback(error)
    return d


def _checked(reply: Any, name: str) -> Any:
    if isinstance(reply, txredisapi.ResponseError):
        text = str(reply)
        first = text.split(" ", 1)[0]
        if first == "NOSCRIPT":
            raise NoScript(text)
        if first in _BUSY_REPLIES:
            raise Unavailable(f"the store (Redis) cannot serve now: {text}")
        raise RuntimeError(f"Redis refused {name}: {text}")
    return reply


def _unavailable(failure: Any, name: str) -> Any:
    if failure.check(txredisapi.ResponseError):
        return _checked(failure.value, name)
    if failure.check(txredisapi.ConnectionError, TimeoutError):
        raise Unavailable(f"the store (Redis) failed: {failure.getErrorMessage()}")
    return failure
