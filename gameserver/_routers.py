"""Routers: classes whose methods handle message types, as in the prototype.

A public method handles the type of its own name; ``get_routes`` maps other
type names to handlers, merged with the parent's::

    class ChatRouter(BaseRouter):
        def receive_message(self, room, user, helper, data): ...

        def get_routes(self, routes=None):
            return super().get_routes({"RCV_MSG": self.receive_message})

A method mapped to another name is reached only by that name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gameserver._gameroom import GameRoom
    from gameserver._helper import Helper
    from gameserver._models import UserRef

#: A message handler: ``(room, user, helper, data)``; it may return an
#: awaitable (``async def``, a ``Deferred``) or nothing.
Handler = Callable[["GameRoom", "UserRef", "Helper", dict[str, Any]], Any]

#: Types the framework handles itself; no router may claim them.
RESERVED = frozenset(
    {"VALIDATE_CONNECTION", "JOIN_ROOM", "LEAVE_ROOM", "ERROR", "START_GAME"}
)


class RouteConflict(Exception):
    """Two routers claim one message type; raised when the game is loaded."""


class BaseRouter:
    """Subclass and add handler methods ``(room, user, helper, data)``.

    The lifecycle hooks below are called for every router of the game (after
    the game's own); override the ones you need. Like everything defined
    here, they are never routes.
    """

    def __init__(self, game: Any = None) -> None:
        self.game = game

    def on_join(self, room: GameRoom, user: UserRef, helper: Helper) -> Any:
        """A user took a seat."""

    def on_reconnect(self, room: GameRoom, user: UserRef, helper: Helper) -> Any:
        """A seated user joined again: after a disconnect, or from another socket.

        Send them what they need to pick the game up (the board, a hand).
        """

    def on_resume(self, room: GameRoom, user: UserRef, helper: Helper) -> Any:
        """A seated user came back and was sent what they missed (``JOIN_ROOM
        {resume}``): undo what ``on_disconnect`` did; send no state."""

    def on_spectate(self, room: GameRoom, user: UserRef, helper: Helper) -> Any:
        """A user started watching: send them what a spectator may see."""

    def on_leave(self, room: GameRoom, user: UserRef, helper: Helper) -> Any:
        """A user gave up their seat (left, or disconnected outside a game)."""

    def on_disconnect(self, room: GameRoom, user: UserRef, helper: Helper) -> Any:
        """A seated user's last socket closed during a game; the seat is kept."""

    def on_start(self, room: GameRoom, helper: Helper, options: dict[str, Any]) -> Any:
        """The room went from ``waiting`` (or ``finished``) to ``in_game``."""

    def on_finish(self, room: GameRoom, helper: Helper) -> Any:
        """The room went from ``in_game`` to ``finished``."""

    def get_routes(
        self, routes: Mapping[str, Handler] | None = None
    ) -> dict[str, Handler]:
        handlers: dict[str, Handler] = {}
        for name, _ in inspect.getmembers(type(self), inspect.isfunction):
            if name.startswith("_") or hasattr(BaseRouter, name):
                continue
            handlers[name] = getattr(self, name)
        for type_, handler in (routes or {}).items():
            own_name = getattr(handler, "__name__", None)
            if getattr(handler, "__self__", None) is self and own_name != type_:
                handlers.pop(str(own_name), None)
        handlers.update(routes or {})
        return handlers


def collect_routes(
    routers: Iterable[BaseRouter], *, owner: str = "this game"
) -> dict[str, Handler]:
    """Merge the routers' routes, refusing two claims on one type."""
    merged: dict[str, Handler] = {}
    claimed_by: dict[str, str] = {}
    for router in routers:
        name = type(router).__name__
        for type_, handler in router.get_routes().items():
            if not callable(handler):
                raise RouteConflict(
                    f"{owner}: {name} routes {type_!r} to a non-callable"
                )
            if type_ in RESERVED:
                raise RouteConflict(
                    f"{owner}: {name} claims {type_!r}, which the server handles itself"
                )
            if type_ in merged:
                raise RouteConflict(
                    f"{owner}: {name} and {claimed_by[type_]} both handle {type_!r}"
                )
            merged[type_] = handler
            claimed_by[type_] = name
    return merged
