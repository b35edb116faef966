"""gameserver: small multiplayer games on Twisted and Autobahn."""

from gameserver.errors import GameServerError
from gameserver.games import Game, installed_games
from gameserver.interfaces import IConnection, IGame, IGroupLayer, IStore
from gameserver.models import Room, RoomState, UserRef
from gameserver.server import GameServer
from gameserver.settings import Settings
from gameserver.store import MemoryStore

__all__ = [
    "Game",
    "GameServer",
    "GameServerError",
    "IConnection",
    "IGame",
    "IGroupLayer",
    "IStore",
    "MemoryStore",
    "Room",
    "RoomState",
    "Settings",
    "UserRef",
    "installed_games",
]
