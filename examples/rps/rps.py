"""Rock, paper, scissors for two: the game of the README's tutorial."""

from gameserver import BaseRouter, Game, GameServerError

BEATS = {"rock": "scissors", "paper": "rock", "scissors": "paper"}


class RpsRouter(BaseRouter):
    def on_join(self, room, user, helper):
        if len(room.players) == 2:
            helper.start_game()

    def on_start(self, room, helper, options):
        room.state["choices"] = {}
        helper.broadcast("ROUND", {"players": [p.to_json() for p in room.players]})

    def choose(self, room, user, helper, data):
        if room.status != "in_game":
            raise GameServerError("wait for the round to start", code="not_in_game")
        choice = data.get("choice")
        if choice not in BEATS:
            raise GameServerError("choose rock, paper or scissors", code="bad_choice")
        choices = room.state["choices"]
        choices[str(user.id)] = choice
        helper.self_send("CHOSEN", {"choice": choice})
        if len(choices) == 2:
            (a, choice_a), (b, choice_b) = choices.items()
            winner = None
            if choice_a != choice_b:
                winner = int(a) if BEATS[choice_a] == choice_b else int(b)
            helper.broadcast("RESULT", {"choices": choices, "winner": winner})
            helper.finish_game()

    def rematch(self, room, user, helper, data):
        if room.status == "finished":
            helper.start_game()


class RockPaperScissors(Game):
    name = "rps"
    description = "Rock, paper, scissors for two."
    min_players = 2
    max_players = 2
    routers = [RpsRouter]


rps = RockPaperScissors()
