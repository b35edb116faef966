"""gameserver: small multiplayer games on Twisted and Autobahn.

Everything a game author or an embedder uses is here; the modules under
``gameserver._*`` are private and may change.
"""

from gameserver._chat import ChatMessage
from gameserver._errors import GameServerError
from gameserver._game import Game, GameLoadError, game_from_module, installed_games
from gameserver._gameroom import GameRoom
from gameserver._helper import Helper, TimerHandle
from gameserver._interfaces import IConnection, IGame, IGroupLayer, IStore
from gameserver._memory.store import MemoryStore
from gameserver._models import Room, RoomState, UserRef
from gameserver._routers import BaseRouter, Handler
from gameserver._server import GameServer
from gameserver._settings import Settings

__all__ = [
    "BaseRouter",
    "ChatMessage",
    "Game",
    "GameLoadError",
    "GameRoom",
    "GameServer",
    "GameServerError",
    "Handler",
    "Helper",
    "IConnection",
    "IGame",
    "IGroupLayer",
    "IStore",
    "MemoryStore",
    "Room",
    "RoomState",
    "Settings",
    "TimerHandle",
    "UserRef",
    "game_from_module",
    "installed_games",
]
