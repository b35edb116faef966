"""The public face of the package, and the checks that keep the code clean.

``gameserver`` exports a small facade over private modules: each exported
name must be the very object its module defines (as klein's
``test_exports.py`` checks), and importing the package must not install a
reactor (as treq's ``test_import.py`` checks), so that an application can
still choose its own. The type checker and the linter run here too, so
that the test command keeps them clean.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import gameserver

REPO = Path(__file__).resolve().parent.parent

#: Each public name, and the private module that defines it.
EXPORTS = {
    "BaseRouter": "gameserver._routers",
    "ChatMessage": "gameserver._chat",
    "Game": "gameserver._game",
    "GameLoadError": "gameserver._game",
    "GameRoom": "gameserver._gameroom",
    "GameServer": "gameserver._server",
    "GameServerError": "gameserver._errors",
    "Handler": "gameserver._routers",
    "Helper": "gameserver._helper",
    "IConnection": "gameserver._interfaces",
    "IGame": "gameserver._interfaces",
    "IGroupLayer": "gameserver._interfaces",
    "IStore": "gameserver._interfaces",
    "MemoryStore": "gameserver._memory.store",
    "Room": "gameserver._models",
    "RoomState": "gameserver._models",
    "Settings": "gameserver._settings",
    "TimerHandle": "gameserver._helper",
    "UserRef": "gameserver._models",
    "game_from_module": "gameserver._game",
    "installed_games": "gameserver._game",
}


def test_all_names_exactly_the_exports():
    assert sorted(gameserver.__all__) == sorted(EXPORTS)


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_each_export_is_the_object_its_module_defines(name):
    module = importlib.import_module(EXPORTS[name])
    assert getattr(gameserver, name) is getattr(module, name)


def test_the_public_modules_import_on_their_own():
    for name in ("gameserver.testing", "gameserver.client"):
        assert importlib.import_module(name)


def test_importing_gameserver_installs_no_reactor():
    code = (
        "import sys\n"
        "import gameserver, gameserver.testing, gameserver.client\n"
        "assert 'twisted.internet.reactor' not in sys.modules, 'a reactor was installed'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def _tool(name: str) -> list[str]:
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{name} is not installed: pip install '.[test]'")
    return [path]


def test_the_type_checker_is_clean():
    result = subprocess.run(
        [*_tool("mypy"), "--no-incremental"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_linter_and_the_formatter_are_clean():
    for args in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run(
            [*_tool("ruff"), *args], cwd=REPO, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
