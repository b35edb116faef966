"""gameserver: small multiplayer games on Twisted and Autobahn."""

from gameserver.chat import ChatMessage
from gameserver.errors import GameServerError
from gameserver.gameroom import GameRoom
from gameserver.games import Game, GameLoadError, game_from_module, installed_games
from gameserver.helper import Helper, TimerHandle
from gameserver.interfaces import IConnection, IGame, IGroupLayer, IStore
from gameserver.models import Room, RoomState, UserRef
from gameserver.routing import BaseRouter
from gameserver.server import GameServer
from gameserver.settings import Settings
from gameserver.store import MemoryStore

__all__ = [
    "BaseRouter",
    "ChatMessage",
    "Game",
    "GameLoadError",
    "GameRoom",
    "GameServer",
    "GameServerError",
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
