"""Tic-tac-toe, found by Twisted's plugin system as an ``IGame``."""

from gameserver_games.tictactoe import tictactoe

__all__ = ["tictactoe"]
