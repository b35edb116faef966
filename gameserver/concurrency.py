"""Waiting on several things at once, with the first failure as it was raised."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from twisted.internet.defer import FirstError, ensureDeferred, gatherResults


async def gather(*work: Awaitable[Any]) -> list[Any]:
    """Await all of ``work`` concurrently; raise the first error itself.

    ``gatherResults`` wraps errors in ``FirstError``, which would turn an
    ``Unavailable`` into an internal error for the caller.
    """
    try:
        return await gatherResults(
            [ensureDeferred(w) for w in work], consumeErrors=True
        )
    except FirstError as e:
        e.subFailure.raiseException()
        raise  # not reached: raiseException always raises
