"""Games: what an author writes, and how the server finds the installed ones.

A game is an ``IGame``: a name, player counts, router classes and hooks.
Subclass ``Game`` and expose an instance in a module under
``twisted/plugins/``; Twisted's plugin system finds it wherever it is
installed.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Iterable, Sequence
from types import ModuleType
from typing import Any

from twisted.logger import Logger
from twisted.plugin import IPlugin, getCache, getPlugins
from twisted.python.modules import getModule
from zope.interface import implementer
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from gameserver._chat import ChatMessage
from gameserver._engine.drive import READY
from gameserver._interfaces import IGame
from gameserver._routers import BaseRouter, collect_routes

log = Logger()


class GameLoadError(Exception):
    """A game plugin is broken or missing; the message names it."""


@implementer(IPlugin, IGame)
class Game:
    """Subclass with class attributes, or instantiate with keywords."""

    name: str = ""
    description: str = ""
    min_players: int = 1
    max_players: int = 8
    routers: Sequence[type[BaseRouter]] = ()
    #: Chat messages kept per room and sent to a user who joins.
    chat_backlog: int = 50
    #: Most users watching one room without a seat.
    max_spectators: int = 50

    def __init__(
        self,
        *,
        name: str | None = None,
        description: str | None = None,
        min_players: int | None = None,
        max_players: int | None = None,
        routers: Sequence[type[BaseRouter]] | None = None,
        max_spectators: int | None = None,
    ) -> None:
        for attribute, value in [
            ("name", name),
            ("description", description),
            ("min_players", min_players),
            ("max_players", max_players),
            ("routers", routers),
            ("max_spectators", max_spectators),
        ]:
            if value is not None:
                setattr(self, attribute, value)
        if not isinstance(self.name, str) or not self.name:
            raise GameLoadError(f"{type(self).__name__} has no name")
        if not 1 <= self.min_players <= self.max_players:
            raise GameLoadError(
                f"game {self.name!r}: need 1 <= min_players <= max_players"
            )
        if type(self.max_spectators) is not int or self.max_spectators < 0:
            raise GameLoadError(
                f"game {self.name!r}: max_spectators must be a whole number >= 0"
            )
        self.router_instances = [router(self) for router in self.routers]
        self.routes = collect_routes(self.router_instances, owner=f"game {self.name!r}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def initial_state(self) -> dict[str, Any]:
        """The state document of a new room."""
        return {}

    def match_key(self, user: Any, options: dict[str, Any]) -> str:
        """Who ``QUICK_JOIN`` may seat together: users with the same key (a
        language, a skill band). Raise a ``GameServerError`` for bad ``options``.
        One pool for the whole game unless overridden."""
        return ""

    # The hooks call each router's hook of the same name, in order. They
    # return an awaitable (``await super().on_join(...)`` works), which is
    # already done when no router's hook waited on anything.

    def can_start(
        self, room: Any, user: Any, helper: Any, options: dict[str, Any]
    ) -> Any:
        """Raise a ``GameServerError`` to refuse the owner's ``START_GAME``."""
        return READY

    def on_join(self, room: Any, user: Any, helper: Any) -> Any:
        return self._each("on_join", room, user, helper)

    def on_reconnect(self, room: Any, user: Any, helper: Any) -> Any:
        return self._each("on_reconnect", room, user, helper)

    def on_resume(self, room: Any, user: Any, helper: Any) -> Any:
        return self._each("on_resume", room, user, helper)

    def on_spectate(self, room: Any, user: Any, helper: Any) -> Any:
        return self._each("on_spectate", room, user, helper)

    def on_leave(self, room: Any, user: Any, helper: Any) -> Any:
        return self._each("on_leave", room, user, helper)

    def on_disconnect(self, room: Any, user: Any, helper: Any) -> Any:
        return self._each("on_disconnect", room, user, helper)

    def on_start(self, room: Any, helper: Any, options: dict[str, Any]) -> Any:
        return self._each("on_start", room, helper, options)

    def on_finish(self, room: Any, helper: Any) -> Any:
        return self._each("on_finish", room, helper)

    def on_chat(
        self, room: Any, user: Any, helper: Any, message: ChatMessage
    ) -> ChatMessage | Awaitable[ChatMessage | None] | None:
        """Change, redirect (``team``) or refuse (return ``None``) a chat message."""
        return message

    def _each(self, hook: str, *args: Any) -> Any:
        routers = self.router_instances
        for index, router in enumerate(routers):
            result = getattr(router, hook)(*args)
            if result is not READY and inspect.isawaitable(result):
                return _rest(result, routers[index + 1 :], hook, args)
        return READY


async def _rest(
    first: Awaitable[Any], routers: Sequence[BaseRouter], hook: str, args: tuple
) -> None:
    """The hooks after one that waits, in order."""
    await first
    for router in routers:
        result = getattr(router, hook)(*args)
        if inspect.isawaitable(result):
            await result


def game_from_module(module: ModuleType, **overrides: Any) -> Game:
    """The prototype's form: a module with ``routers = [ChatRouter, GameRouter]``."""
    routers = getattr(module, "routers", None)
    if not isinstance(routers, list | tuple):
        raise GameLoadError(f"{module.__name__} has no 'routers' list")
    doc = (module.__doc__ or "").strip()
    options: dict[str, Any] = {
        "name": getattr(module, "name", module.__name__.rpartition(".")[2]),
        "description": doc.splitlines()[0] if doc else "",
        "routers": list(routers),
    }
    for attribute in ("min_players", "max_players", "max_spectators"):
        if hasattr(module, attribute):
            options[attribute] = getattr(module, attribute)
    options.update(overrides)
    return Game(**options)


def installed_games(only: Iterable[str] | None = None) -> dict[str, IGame]:
    """Every ``IGame`` plugin on ``sys.path``, or just the ones named.

    Twisted skips a dropin that fails to import with only a log line; here
    each one is named in a warning (and in the error, if a game asked for
    is missing), so a broken game is never just absent.
    """
    import twisted.plugins

    broken = broken_dropins(twisted.plugins)
    for name, error in broken:
        log.warn("plugin {name} failed to import: {error}", name=name, error=error)
    games: dict[str, IGame] = {}
    for game in getPlugins(IGame, twisted.plugins):
        try:
            verifyObject(IGame, game)
        except Invalid as e:
            raise GameLoadError(f"the game plugin {game!r} is broken: {e}") from None
        if game.name in games:
            raise GameLoadError(f"two game plugins are named {game.name!r}")
        games[game.name] = game
    wanted = sorted(games) if only is None else list(only)
    missing = [name for name in wanted if name not in games]
    if missing:
        problems = [f"no game named {', '.join(missing)}"]
        problems += [
            f"plugin {name} failed to import: {error}" for name, error in broken
        ]
        raise GameLoadError(
            "; ".join(problems) + f" (installed: {', '.join(sorted(games)) or 'none'})"
        )
    return {name: games[name] for name in wanted}


def broken_dropins(package: ModuleType) -> list[tuple[str, str]]:
    """The dropins Twisted could not import, each with the reason."""
    cached = getCache(package)
    broken = []
    for module in getModule(package.__name__).iterModules():
        if module.name.rpartition(".")[2] in cached:
            continue
        try:
            importlib.import_module(module.name)
        except Exception as e:
            broken.append((module.name, f"{type(e).__name__}: {e}"))
    return broken
