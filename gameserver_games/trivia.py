"""Trivia: timed multiple-choice questions, scored by speed, alone or in teams.

The owner sends ``START_GAME {rounds?, seconds?, teams?}``; every question is
broadcast with its deadline (never its answer), players send ``ANSWER``, and
a ``RESULT`` follows when time is up or everyone has answered. After the last
round a ``SCOREBOARD`` is broadcast and the game finishes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from gameserver import (
    BaseRouter,
    ChatMessage,
    Game,
    GameRoom,
    GameServerError,
    Handler,
    Helper,
    RoomState,
    UserRef,
)

QUESTION = "QUESTION"
ANSWER = "ANSWER"
ANSWERED = "ANSWERED"
RESULT = "RESULT"
SCORES = "SCORES"
SCOREBOARD = "SCOREBOARD"
TEAMS = "TEAMS"
ERROR = "ERROR"

TEAM_NAMES = ("red", "blue")
DEFAULT_ROUNDS = 5
MAX_ROUNDS = 20
DEFAULT_SECONDS = 15
MIN_SECONDS, MAX_SECONDS = 5, 60
MAX_POINTS, MIN_POINTS = 1000, 100
#: The name of the timer that closes the open question.
QUESTION_TIMER = "question"
#: The name of the timer that asks the next question after a result.
NEXT_TIMER = "next"

# Phases of ``room.state["phase"]``.
ASKING, PAUSED, OVER = "question", "pause", "over"

Question = dict[str, Any]


def load_questions(text: str) -> list[Question]:
    """Parse and check a question bank, so a broken one fails at import."""
    bank = json.loads(text)
    if not isinstance(bank, list) or not bank:
        raise ValueError("a question bank is a non-empty JSON list")
    for number, item in enumerate(bank):
        choices = item.get("choices") if isinstance(item, dict) else None
        if (
            not isinstance(item.get("question"), str)
            or not isinstance(choices, list)
            or len(choices) < 2
            or not all(isinstance(c, str) for c in choices)
            or not _is_int(item.get("answer"))
            or not 0 <= item["answer"] < len(choices)
        ):
            raise ValueError(f"question {number} of the bank is malformed")
    return bank


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _default(value: Any, default: Any) -> Any:
    return default if value is None else value


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# Read once at import: the bank is a few kilobytes of package data, and
# reading it in a handler would be blocking file I/O on the reactor thread.
QUESTIONS: list[Question] = load_questions(
    resources.files("gameserver_games").joinpath("trivia.json").read_text("utf-8")
)


class TriviaRouter(BaseRouter):
    """Routes ``ANSWER`` to the game, which keeps all the rules."""

    game: Trivia

    def get_routes(
        self, routes: Mapping[str, Handler] | None = None
    ) -> dict[str, Handler]:
        return super().get_routes({ANSWER: self.answer})

    async def answer(
        self, room: GameRoom, user: UserRef, helper: Helper, data: dict[str, Any]
    ) -> None:
        await self.game.answer(room, user, helper, data)


class Trivia(Game):
    """The game; ``rng``, ``questions`` and ``pause`` are injectable for tests."""

    name = "trivia"
    description = "Timed multiple-choice questions: answer fast, alone or in teams."
    min_players = 1
    max_players = 12
    routers = (TriviaRouter,)

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        questions: Sequence[Question] | None = None,
        pause: float = 3.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.rng = random.Random() if rng is None else rng
        self.questions = list(QUESTIONS if questions is None else questions)
        #: Seconds between a question's result and the next question.
        self.pause = pause

    # Lifecycle

    async def can_start(
        self, room: GameRoom, user: UserRef, helper: Helper, options: dict[str, Any]
    ) -> None:
        """Refuse bad options before the room leaves ``waiting``."""
        self._options(options)

    async def on_start(
        self, room: GameRoom, helper: Helper, options: dict[str, Any]
    ) -> None:
        await super().on_start(room, helper, options)
        await self._disband_teams(helper)
        rounds, seconds, teams = self._options(options)
        picked = self.rng.sample(self.questions, rounds)
        room.set("questions", picked)
        players = [p.to_json() for p in room.players]
        room.state = {
            "rounds": rounds,
            "seconds": seconds,
            "players": players,
            "scores": {str(p["id"]): 0 for p in players},
        }
        if teams:
            order = list(room.players)
            self.rng.shuffle(order)
            team_of = {str(p.id): TEAM_NAMES[i % 2] for i, p in enumerate(order)}
            for player in order:
                helper.group_add(team_of[str(player.id)], player)
            room.state["teams"] = team_of
            helper.broadcast(TEAMS, _teams(room.state))
        await self._ask(room, helper, 0, picked)

    async def on_join(self, room: GameRoom, user: UserRef, helper: Helper) -> None:
        await super().on_join(room, user, helper)
        await self._catch_up(room, user, helper)

    async def on_reconnect(self, room: GameRoom, user: UserRef, helper: Helper) -> None:
        await super().on_reconnect(room, user, helper)
        await self._catch_up(room, user, helper)

    async def on_spectate(self, room: GameRoom, user: UserRef, helper: Helper) -> None:
        """A spectator sees what players see: the question, never its answer."""
        await super().on_spectate(room, user, helper)
        await self._catch_up(room, user, helper)

    async def on_leave(self, room: GameRoom, user: UserRef, helper: Helper) -> None:
        """A player gave up their seat: the others need not wait for them."""
        await super().on_leave(room, user, helper)
        if room.status is not RoomState.IN_GAME:
            return
        if not room.players:
            room.state["phase"] = OVER
            helper.finish_game()
        elif room.state.get("phase") == ASKING and self._everyone_answered(room):
            await self._close_question(room, helper)

    async def on_chat(
        self, room: GameRoom, user: UserRef, helper: Helper, message: ChatMessage
    ) -> ChatMessage | None:
        """No room-wide chat while a question is open: nobody shouts the answer."""
        open_question = (
            room.status is RoomState.IN_GAME and room.state.get("phase") == ASKING
        )
        if open_question and message.team is None:
            return None
        return message

    # Messages

    async def answer(
        self, room: GameRoom, user: UserRef, helper: Helper, data: dict[str, Any]
    ) -> None:
        state = room.state
        if room.status is not RoomState.IN_GAME or state.get("phase") not in (
            ASKING,
            PAUSED,
        ):
            raise GameServerError("no trivia game is in progress", code="not_in_game")
        uid = str(user.id)
        if uid not in state["scores"]:
            raise GameServerError("you are not playing this game", code="not_in_game")
        index, choice = data.get("index"), data.get("choice")
        if not _is_int(index):
            raise GameServerError("'index' must be an integer", code="invalid")
        if state["phase"] != ASKING or index != state["index"]:
            raise GameServerError(
                f"question {index} is not the open question", code="stale_question"
            )
        if uid in state["answers"]:
            raise GameServerError(
                "you have already answered this question", code="already_answered"
            )
        question = (await room.get("questions"))[index]
        if not _is_int(choice) or not 0 <= choice < len(question["choices"]):
            raise GameServerError(
                f"'choice' must be 0 to {len(question['choices']) - 1}",
                code="bad_choice",
            )
        points = 0
        if choice == question["answer"]:
            seconds = state["seconds"]
            remaining = min(max(state["deadline"] - helper.now(), 0.0), seconds)
            points = max(MIN_POINTS, round(MAX_POINTS * remaining / seconds))
        state["answers"][uid] = choice
        state["gained"][uid] = points
        state["scores"][uid] += points
        helper.self_send(ANSWERED, {"index": index})
        if self._everyone_answered(room):
            await self._close_question(room, helper)

    # Timers

    async def time_up(self, room: GameRoom, helper: Helper, index: int) -> None:
        """The question's timer fired; it may have closed early meanwhile."""
        state = room.state
        if (
            room.status is RoomState.IN_GAME
            and state.get("phase") == ASKING
            and state["index"] == index
        ):
            await self._close_question(room, helper)

    async def next_question(self, room: GameRoom, helper: Helper, index: int) -> None:
        state = room.state
        if (
            room.status is RoomState.IN_GAME
            and state.get("phase") == PAUSED
            and state["index"] + 1 == index
        ):
            await self._ask(room, helper, index)

    # Rules

    def _options(self, options: dict[str, Any]) -> tuple[int, float, bool]:
        rounds = _default(options.get("rounds"), DEFAULT_ROUNDS)
        seconds = _default(options.get("seconds"), DEFAULT_SECONDS)
        teams = _default(options.get("teams"), False)
        most = min(MAX_ROUNDS, len(self.questions))
        if not _is_int(rounds) or not 1 <= rounds <= most:
            raise GameServerError(f"'rounds' must be 1 to {most}", code="invalid")
        if not _is_number(seconds) or not MIN_SECONDS <= seconds <= MAX_SECONDS:
            raise GameServerError(
                f"'seconds' must be {MIN_SECONDS} to {MAX_SECONDS}", code="invalid"
            )
        if not isinstance(teams, bool):
            raise GameServerError("'teams' must be true or false", code="invalid")
        return rounds, seconds, teams

    async def _ask(
        self,
        room: GameRoom,
        helper: Helper,
        index: int,
        questions: list[Question] | None = None,
    ) -> None:
        if questions is None:
            questions = await room.get("questions")
        state = room.state
        handle = helper.call_later(
            state["seconds"], self.time_up, index, name=QUESTION_TIMER
        )
        state.update(
            phase=ASKING, index=index, deadline=handle.deadline, answers={}, gained={}
        )
        helper.broadcast(QUESTION, _question(state, questions[index]))

    async def _close_question(self, room: GameRoom, helper: Helper) -> None:
        helper.cancel_timer(QUESTION_TIMER)  # when it closes early
        state = room.state
        index = state["index"]
        question = (await room.get("questions"))[index]
        result = {
            "index": index,
            "answer": question["answer"],
            "answers": state["answers"],
            "gained": {uid: state["gained"].get(uid, 0) for uid in state["scores"]},
            **_scores(state),
        }
        helper.broadcast(RESULT, result)
        if index + 1 < state["rounds"]:
            state["phase"] = PAUSED
            helper.call_later(
                self.pause, self.next_question, index + 1, name=NEXT_TIMER
            )
            return
        state["phase"] = OVER
        helper.broadcast(SCOREBOARD, _scoreboard(state))
        helper.finish_game()

    def _everyone_answered(self, room: GameRoom) -> bool:
        """Every seated player of this game has answered (disconnected ones too)."""
        state = room.state
        return all(
            str(p.id) in state["answers"]
            for p in room.players
            if str(p.id) in state["scores"]
        )

    async def _catch_up(self, room: GameRoom, user: UserRef, helper: Helper) -> None:
        """Bring a player who (re)joined mid-game up to date."""
        state = room.state
        if room.status is not RoomState.IN_GAME or state.get("phase") not in (
            ASKING,
            PAUSED,
        ):
            return
        if "teams" in state:
            helper.self_send(TEAMS, _teams(state))
        helper.self_send(SCORES, _scores(state))
        if state["phase"] == ASKING:
            question = (await room.get("questions"))[state["index"]]
            helper.self_send(QUESTION, _question(state, question))
            if str(user.id) in state["answers"]:
                helper.self_send(ANSWERED, {"index": state["index"]})

    async def _disband_teams(self, helper: Helper) -> None:
        """Teams of an earlier game in this room do not carry over."""
        for team in TEAM_NAMES:
            for user_id in await helper.group_members(team):
                helper.group_remove(team, user_id)


def _question(state: dict[str, Any], question: Question) -> dict[str, Any]:
    """What players see of a question: never its answer."""
    return {
        "index": state["index"],
        "total": state["rounds"],
        "question": question["question"],
        "choices": question["choices"],
        "deadline": state["deadline"],
    }


def _teams(state: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    teams: dict[str, list[dict[str, Any]]] = {team: [] for team in TEAM_NAMES}
    for player in state["players"]:
        teams[state["teams"][str(player["id"])]].append(player)
    return teams


def _scores(state: dict[str, Any]) -> dict[str, Any]:
    scores: dict[str, Any] = {"scores": dict(state["scores"])}
    if "teams" in state:
        team_scores = dict.fromkeys(TEAM_NAMES, 0)
        for uid, team in state["teams"].items():
            team_scores[team] += state["scores"][uid]
        scores["team_scores"] = team_scores
    return scores


def _scoreboard(state: dict[str, Any]) -> dict[str, Any]:
    ranking = sorted(
        (
            {"user": player, "score": state["scores"][str(player["id"])]}
            for player in state["players"]
        ),
        key=lambda entry: -entry["score"],
    )
    board = {**_scores(state), "ranking": ranking}
    board["winner"] = _leader([(e["user"], e["score"]) for e in ranking])
    if "team_scores" in board:
        board["winning_team"] = _leader(list(board["team_scores"].items()))
    return board


def _leader(scored: list[tuple[Any, int]]) -> Any:
    """Who has the highest score, or ``None`` when nobody leads alone."""
    best = max((score for _, score in scored), default=None)
    leaders = [who for who, score in scored if score == best]
    return leaders[0] if len(leaders) == 1 else None


trivia = Trivia()
