"""A room to talk in: the smallest game, using only the built-in chat."""

from gameserver import Game

chat = Game(
    name="chat",
    description="A chat room: talk with everyone who joins.",
    min_players=1,
    max_players=50,
)
