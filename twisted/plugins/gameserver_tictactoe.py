"""Tic-tac-toe, found by Twisted's plugin system as an ``IGame``."""

from games.tictactoe import tictactoe

__all__ = ["tictactoe"]
