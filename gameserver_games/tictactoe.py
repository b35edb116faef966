"""Tic-tac-toe: two players, X and O, three in a row wins.

The game starts by itself when the second player takes a seat. X always
moves first; the first seated player is X in game one, and the players swap
on every rematch. Everything lives in ``room.state`` so a reconnecting
player (or another server process) sees exactly the saved board.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gameserver import (
    BaseRouter,
    Game,
    GameRoom,
    GameServerError,
    Handler,
    Helper,
    RoomState,
    UserRef,
)

BOARD = "BOARD"
MOVE = "MOVE"
REMATCH = "REMATCH"

#: Every three-in-a-row, as cell indexes (0..8, row by row).
LINES: tuple[tuple[int, int, int], ...] = (
    (0, 1, 2),
    (3, 4, 5),
    (6, 7, 8),
    (0, 3, 6),
    (1, 4, 7),
    (2, 5, 8),
    (0, 4, 8),
    (2, 4, 6),
)


def new_state() -> dict[str, Any]:
    """An empty board with nobody playing yet."""
    return {
        "cells": [None] * 9,
        # [X's id, O's id] of the current (or last) game.
        "players": [],
        # Keyed by str(user id): JSON object keys are strings.
        "marks": {},
        "turn": None,
        "winner": None,
        "draw": False,
        "line": None,
        "rematch": [],
    }


def board(state: dict[str, Any]) -> dict[str, Any]:
    """The public view of the state: what a BOARD message carries."""
    return {
        "cells": state["cells"],
        "turn": state["turn"],
        "marks": state["marks"],
        "winner": state["winner"],
        "draw": state["draw"],
        "line": state["line"],
    }


def winning_line(cells: list[str | None]) -> list[int] | None:
    for line in LINES:
        a, b, c = (cells[i] for i in line)
        if a is not None and a == b == c:
            return list(line)
    return None


class TicTacToeRouter(BaseRouter):
    """MOVE and REMATCH, and what joining, leaving and starting mean here."""

    def get_routes(
        self, routes: Mapping[str, Handler] | None = None
    ) -> dict[str, Handler]:
        return super().get_routes(
            {MOVE: self.move, REMATCH: self.rematch, **(routes or {})}
        )

    # Messages

    def move(
        self, room: GameRoom, user: UserRef, helper: Helper, data: dict[str, Any]
    ) -> None:
        state = room.state
        if room.status is not RoomState.IN_GAME:
            raise GameServerError("no game is in progress", code="not_in_game")
        self._require_player(room, user)
        if state["turn"] != user.id:
            raise GameServerError("it is not your turn", code="not_your_turn")
        cell = data.get("cell")
        # bool is an int subclass: refuse True/False explicitly.
        if type(cell) is not int or not 0 <= cell <= 8:
            raise GameServerError(
                "'cell' must be an integer from 0 to 8", code="bad_cell"
            )
        if state["cells"][cell] is not None:
            raise GameServerError(f"cell {cell} is already taken", code="cell_taken")
        state["cells"][cell] = state["marks"][str(user.id)]
        line = winning_line(state["cells"])
        if line is not None:
            self._end(room, helper, winner=user.id, line=line)
        elif all(state["cells"]):
            self._end(room, helper, winner=None)
        else:
            state["turn"] = self._opponent(state, user.id)
            helper.broadcast(BOARD, board(state))

    def rematch(
        self, room: GameRoom, user: UserRef, helper: Helper, data: dict[str, Any]
    ) -> None:
        state = room.state
        if room.status is not RoomState.FINISHED:
            raise GameServerError(
                "there is no finished game to replay", code="not_finished"
            )
        self._require_player(room, user)
        if not all(room.has_player(p) for p in state["players"]):
            raise GameServerError("your opponent has left", code="opponent_left")
        if user.id not in state["rematch"]:
            state["rematch"].append(user.id)
        helper.broadcast(REMATCH, {"players": state["rematch"]})
        if set(state["rematch"]) == set(state["players"]):
            helper.start_game()

    # Lifecycle

    def on_join(self, room: GameRoom, user: UserRef, helper: Helper) -> None:
        if room.status is not RoomState.IN_GAME and len(room.players) == 2:
            helper.start_game()  # on_start broadcasts the new board to both
        else:
            helper.self_send(BOARD, board(room.state))

    def on_reconnect(self, room: GameRoom, user: UserRef, helper: Helper) -> None:
        helper.self_send(BOARD, board(room.state))

    def on_spectate(self, room: GameRoom, user: UserRef, helper: Helper) -> None:
        helper.self_send(BOARD, board(room.state))

    def on_leave(self, room: GameRoom, user: UserRef, helper: Helper) -> None:
        state = room.state
        if user.id in state["rematch"]:
            state["rematch"].remove(user.id)
        if room.status is RoomState.IN_GAME and user.id in state["players"]:
            self._end(room, helper, winner=self._opponent(state, user.id))

    def on_start(self, room: GameRoom, helper: Helper, options: dict[str, Any]) -> None:
        previous = room.state["players"]
        if len(previous) == 2 and all(room.has_player(p) for p in previous):
            x, o = previous[1], previous[0]  # a rematch: the other one starts
        else:
            x, o = (p.id for p in room.players[:2])
        room.state.clear()
        room.state.update(new_state())
        room.state.update(players=[x, o], marks={str(x): "X", str(o): "O"}, turn=x)
        helper.broadcast(BOARD, board(room.state))

    # Rules

    @staticmethod
    def _require_player(room: GameRoom, user: UserRef) -> None:
        if user.id not in room.state["players"] or not room.has_player(user):
            raise GameServerError(
                "you are not playing in this game", code="not_a_player"
            )

    @staticmethod
    def _opponent(state: dict[str, Any], user_id: int) -> int:
        x, o = state["players"]
        return o if user_id == x else x

    @staticmethod
    def _end(
        room: GameRoom,
        helper: Helper,
        *,
        winner: int | None,
        line: list[int] | None = None,
    ) -> None:
        """A win, a draw (no winner), or a forfeit (a winner and no line)."""
        state = room.state
        state.update(turn=None, winner=winner, draw=winner is None, line=line)
        helper.broadcast(BOARD, board(state))
        helper.finish_game()


class TicTacToe(Game):
    """The game as a plugin: two seats, so every seated user plays."""

    name = "tictactoe"
    description = "Tic-tac-toe for two: three in a row wins."
    min_players = 2
    max_players = 2
    routers = (TicTacToeRouter,)

    def initial_state(self) -> dict[str, Any]:
        return new_state()


tictactoe = TicTacToe()
