"""Finding the installed games: Twisted plugins that provide ``IGame``."""

from __future__ import annotations

from collections.abc import Iterable

import attrs
from twisted.plugin import IPlugin, getPlugins
from zope.interface import implementer
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from gameserver.interfaces import IGame


class GameLoadError(Exception):
    """A game plugin is broken or missing; the message names it."""


@implementer(IPlugin, IGame)
@attrs.frozen(kw_only=True)
class Game:
    """A game described by data alone; Twisted finds it as a plugin."""

    name: str
    description: str
    min_players: int = 1
    max_players: int = 8


def installed_games(only: Iterable[str] | None = None) -> dict[str, IGame]:
    """Every ``IGame`` plugin on ``sys.path``, or just the ones named."""
    import twisted.plugins

    games: dict[str, IGame] = {}
    for game in getPlugins(IGame, twisted.plugins):
        try:
            verifyObject(IGame, game)
        except Invalid as e:
            raise GameLoadError(f"the game plugin {game!r} is broken: {e}") from None
        if game.name in games:
            raise GameLoadError(f"two game plugins are named {game.name!r}")
        games[game.name] = game
    if only is None:
        return games
    wanted = list(only)
    missing = [name for name in wanted if name not in games]
    if missing:
        raise GameLoadError(
            f"no game named {', '.join(missing)} (installed: {', '.join(sorted(games))})"
        )
    return {name: games[name] for name in wanted}
