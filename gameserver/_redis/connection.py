"""One pipelined connection to Redis, with its failures made ``Unavailable``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import attrs
import txredisapi
from twisted.internet.defer import Deferred

from gameserver._errors import Unavailable

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


class RedisConnection:
    """One pipelined connection for commands, with failures made ``Unavailable``.

    One connection keeps the commands of this process in order: a turn's
    messages are published before its room lock is released.
    """

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

    async def __call__(self, *command: Any) -> Any:
        # Without a live connection txredisapi would wait for one forever.
        if not self.connected:
            raise Unavailable("the store (Redis) is unreachable: try again soon")
        try:
            reply = await self._handler.execute_command(*command)
        except txredisapi.ConnectionError as e:
            raise Unavailable(f"the store (Redis) failed: {e}") from None
        if isinstance(reply, txredisapi.ResponseError):
            if str(reply).split(" ", 1)[0] in _BUSY_REPLIES:
                raise Unavailable(f"the store (Redis) cannot serve now: {reply}")
            raise RuntimeError(f"Redis refused {command[0]}: {reply}")
        return reply

    async def script(self, source: str, keys: list[str], args: list[Any]) -> Any:
        return await self("EVAL", source, len(keys), *keys, *args)

    def disconnect(self) -> Deferred[None]:
        return self._handler.disconnect()


