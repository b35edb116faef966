"""Salted scrypt hashes, computed off the reactor thread.

A hash takes tens of milliseconds by design; on the reactor thread that
would stall every game, and unbounded in threads it would be a denial of
service, so hashes run in the reactor's thread pool behind a semaphore.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool

from gameserver._errors import Unavailable

_SCHEME = "scrypt"
_R = 8
_P = 1
_DKLEN = 32
#: Bounds on (log2 N, r, p) read back from a stored hash, so a corrupt one
#: cannot make a check take minutes or gigabytes.
_LIMITS = (20, 16, 16)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    n = 1 << log_n
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=256 * n * r + (1 << 20),
        dklen=_DKLEN,
    )


def _hash_sync(password: str, log_n: int) -> str:
    salt = os.urandom(16)
    key = _scrypt(password, salt, log_n, _R, _P)
    return f"{_SCHEME}${log_n}${_R}${_P}${_b64(salt)}${_b64(key)}"


def _verify_sync(password: str, encoded: str) -> bool:
    try:
        scheme, log_n, r, p, salt, key = encoded.split("$")
        cost = int(log_n), int(r), int(p)
        if scheme != _SCHEME or not all(
            1 <= c <= m for c, m in zip(cost, _LIMITS, strict=True)
        ):
            return False
        expected = base64.b64decode(key)
        actual = _scrypt(password, base64.b64decode(salt), *cost)
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


class PasswordHasher:
    def __init__(
        self,
        reactor: IReactorThreads,
        *,
        cost: int = 15,
        max_concurrent: int = 2,
        max_queued: int = 64,
    ) -> None:
        self._reactor = reactor
        self._cost = cost
        self._semaphore = DeferredSemaphore(max_concurrent)
        self._max_queued = max_queued
        self._decoy: str | None = None
        #: Hashes refused (503) because ``max_queued`` were waiting already.
        self.refused = 0

    @property
    def queued(self) -> int:
        """Hashes waiting for a thread now."""
        return len(self._semaphore.waiting)

    def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        if len(self._semaphore.waiting) >= self._max_queued:
            self.refused += 1
            raise Unavailable("the server is busy checking passwords: try again soon")
        pool = self._reactor.getThreadPool()
        return self._semaphore.run(deferToThreadPool, self._reactor, pool, fn, *args)

    async def hash(self, password: str) -> str:
        return await self._in_thread(_hash_sync, password, self._cost)

    async def verify(self, password: str, encoded: str) -> bool:
        return await self._in_thread(_verify_sync, password, encoded)

    async def spend(self, password: str) -> None:
        """Take as long as a real check, so a missing user cannot be told apart."""
        if self._decoy is None:
            self._decoy = await self.hash("decoy password")
        await self.verify(password, self._decoy)
