"""Timed events: named after their callback, so that any process can fire them.

A timer is kept with its room (``LiveRoom.timers``) and saved with the turn
that set it; the room's owner arms it on its clock, and whoever owns the
room when it is due fires it, as a turn, exactly once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gameserver._errors import GameServerError
from gameserver._interfaces import IGame
from gameserver._models import TimerSpec

if TYPE_CHECKING:
    from gameserver._engine.turns import Turn
    from gameserver._gameroom import GameRoom
    from gameserver._helper import Helper


def callback_ref(game: IGame, callback: Any) -> tuple[str, str]:
    """Name a timer callback: ``(router class, method)``, or ``("", method)``."""
    owner = getattr(callback, "__self__", None)
    name = getattr(callback, "__name__", "")
    if owner is game:
        return "", name
    for router in getattr(game, "router_instances", ()):
        if owner is router:
            return type(router).__qualname__, name
    raise TypeError(
        "a timer callback must be a method of the game or of one of its routers"
        f" (got {callback!r})"
    )


def callback_of(game: IGame, spec: TimerSpec) -> Any:
    owner: Any = game
    if spec.router:
        owner = next(
            (
                r
                for r in getattr(game, "router_instances", ())
                if type(r).__qualname__ == spec.router
            ),
            None,
        )
    method = getattr(owner, spec.method, None)
    if method is None:
        raise GameServerError(
            f"timer {spec.name!r} names {spec.router}.{spec.method}, which"
            f" {game.name} no longer has",
            code="handler_error",
        )
    return method


def fire(turn: Turn, room: GameRoom, helper: Helper) -> Any:
    """The turn of a due timer, if it is still the one the room keeps.

    A timer cancelled or replaced meanwhile (by a turn queued before it)
    is no longer there, and nothing happens.
    """
    assert turn.work.timer is not None
    name, timer_id = turn.work.timer
    spec = turn.room.timers.get(name)
    if spec is None or spec.id != timer_id:
        return None
    turn.timer_op("cancel", name)
    return callback_of(turn.room.game, spec)(room, helper, *spec.args)
