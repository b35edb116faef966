"""The games bundled with gameserver, as ``IGame`` plugins."""

from gameserver_games.chat import chat

__all__ = ["chat"]
