"""The games bundled with gameserver, as ``IGame`` plugins."""

from games.chat import chat

__all__ = ["chat"]
