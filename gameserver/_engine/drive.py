"""Run what a handler returns without a Deferred when nothing waits.

Handlers may be plain functions, return a ``Deferred``, or be ``async def``.
Most finish at once, so ``settle`` gives their outcome synchronously and
builds a ``Deferred`` only for one that really waits on something.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure


class Ready:
    """An awaitable that is already done, for hooks that did nothing async.

    ``await`` on it gives ``None`` at once, so an author's ``await
    super().on_join(...)`` keeps working, while the engine sees that no
    turn needs to wait.
    """

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # a generator that ends at once


READY = Ready()


class Pending:
    """An outcome still to come: ``deferred`` fires with the result."""

    __slots__ = ("deferred",)

    def __init__(self, deferred: Deferred[Any]) -> None:
        self.deferred = deferred


def settle(result: Any) -> Any:
    """The value of ``result`` now, or a ``Pending`` if it must be waited for.

    A coroutine is run as far as it goes; if it finishes, its value (or
    exception) is returned (or raised) here, with no ``Deferred`` made.
    """
    if result is None or result is READY:
        return None
    if isinstance(result, Deferred):
        if result.called and not result.paused:
            box: list[Any] = []
            result.addBoth(box.append)
            outcome = box[0]
            if isinstance(outcome, Failure):
                outcome.raiseException()
            return outcome
        return Pending(result)
    if inspect.iscoroutine(result):
        return _step(result, None, None)
    if inspect.isawaitable(result):
        return _step(_awaiting(result), None, None)
    return result


async def _awaiting(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _step(
    coro: Coroutine[Any, Any, Any], value: Any, error: BaseException | None
) -> Any:
    """Resume ``coro``; its value if it ends, else a ``Pending`` for the rest."""
    try:
        waited = coro.throw(error) if error is not None else coro.send(value)
    except StopIteration as stop:
        return stop.value
    done: Deferred[Any] = Deferred()
    _wait(coro, waited, done)
    return Pending(done)


def _wait(coro: Coroutine[Any, Any, Any], waited: Any, done: Deferred[Any]) -> None:
    """Resume ``coro`` each time what it awaits fires, until it ends."""
    if not isinstance(waited, Deferred):
        error = TypeError(f"a handler awaited {waited!r}, which is not a Deferred")
        _resume(coro, error, done)
        return

    def fired(result: Any) -> Any:
        # Deferred.__await__ reads its own result when resumed, so a value
        # stays in place; a failure is thrown in, and consumed here.
        if isinstance(result, Failure):
            error = cast(BaseException, result.value)
            traceback = result.getTracebackObject()
            if traceback is not None:
                error = error.with_traceback(traceback)
            _resume(coro, error, done)
            return None
        _resume(coro, None, done)
        return result

    waited.addBoth(fired)


def _resume(
    coro: Coroutine[Any, Any, Any], error: BaseException | None, done: Deferred[Any]
) -> None:
    try:
        outcome = _step(coro, None, error)
    except BaseException:
        done.errback()
        return
    if isinstance(outcome, Pending):
        outcome.deferred.chainDeferred(done)
    else:
        done.callback(outcome)
