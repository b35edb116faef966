"""The bundled trivia game, as an ``IGame`` plugin.

A dropin of its own, so a broken trivia module hides only trivia. Do not also
import ``trivia`` in another dropin: Twisted would find the game twice.
"""

from gameserver_games.trivia import trivia

__all__ = ["trivia"]
