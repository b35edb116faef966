"""The package as a user gets it: build a wheel, install it, run ``twistd``.

Twisted finds plugins by scanning ``twisted/plugins/`` on ``sys.path``, and a
dropin that is left out of the wheel, or that fails to import, is skipped
without an error. So these tests build a wheel from a copy of the checkout,
install it into a fresh virtualenv, and check from outside the checkout that
``twistd gameserver`` and the bundled games are found and that the server runs.

They are plain subprocess tests: nothing here runs under the test reactor.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import site
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import attrs
import pytest

REPO = Path(__file__).resolve().parent.parent
SECRET = "packaging-test-secret-0123456789abcdefgh"
#: The project's own dropins, as the checkout has them.
DROPINS = sorted(p.name for p in (REPO / "twisted" / "plugins").glob("*.py"))
assert len(SECRET) == 40

#: ``twistd`` for the venv's interpreter. The venv sees Twisted through a
#: ``.pth`` file (see ``dependency_view``), so it has no ``bin/twistd`` script
#: of its own, and the one on $PATH would run another interpreter.
TWISTD = (
    "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"
)

#: Run in the venv: which plugins Twisted finds, and where they came from.
PROBE = """
import json, sys
import twisted.plugins
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
import gameserver
from gameserver import installed_games
from gameserver._interfaces import IGame

makers = list(getPlugins(IServiceMaker))
games = list(getPlugins(IGame))
print(json.dumps({
    "tapnames": [m.tapname for m in makers],
    "games": [g.name for g in games],
    "installed_games": sorted(installed_games()),
    "gameserver": gameserver.__file__,
    "dropins": {
        name: sys.modules[name].__file__
        for name in sys.modules
        if name.startswith("twisted.plugins.gameserver_")
    },
    "sys_path": sys.path,
    "prefix": sys.prefix,
}))
"""


@attrs.frozen
class Installed:
    wheel: Path
    source: Path
    venv: Path
    python: Path
    #: An empty directory outside the checkout to run things from.
    workdir: Path


def clean_env(**extra: str) -> dict[str, str]:
    """The environment minus anything that could put the checkout on sys.path."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "PYTHONPATH",
            "PYTHONHOME",
            "PYTHONSTARTUP",
            "PYTHONUSERBASE",
            "VIRTUAL_ENV",
            "GAMESERVER_SECRET",
        }
    }
    env["PYTHONNOUSERSITE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra)
    return env


def run(cmd: list[str | Path], cwd: Path, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("env", clean_env())
    result = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=kw.pop("timeout", 120),
        **kw,
    )
    return result


def check(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (
        f"{result.args} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result


#: What this project installs at the top of site-packages.
OURS = ("gameserver", "gameserver_games")


def _ours(name: str) -> bool:
    stem = name.split("-")[0].split(".")[0].lower()
    return stem in OURS or "gameserver" in name.lower()


def dependency_view(dest: Path) -> Path:
    """The running interpreter's site-packages, less any installed gameserver.

    The test venv needs Twisted, Autobahn and the rest, which are installed
    where pytest runs. ``venv --system-site-packages`` is not enough: under
    CI pytest runs in a venv of its own, whose packages a nested venv does
    not see, and where ``pip install .`` has put gameserver and its dropins,
    which must not stand in for the wheel under test. So this links every
    package there into ``dest`` except ours, and rebuilds ``twisted/plugins``
    without our dropins. ``.pth`` files are left out (and so editable installs).
    """
    dest.mkdir()
    for directory in map(Path, site.getsitepackages()):
        if not directory.is_dir():
            continue
        for entry in sorted(directory.iterdir()):
            target = dest / entry.name
            if (
                _ours(entry.name)
                or entry.suffix == ".pth"
                or entry.name.startswith("__")
                or target.exists()
                or target.is_symlink()
            ):
                continue
            if entry.name == "twisted":
                target.mkdir()
                for child in entry.iterdir():
                    if child.name not in ("plugins", "__pycache__"):
                        (target / child.name).symlink_to(child)
                (target / "plugins").mkdir()
                for child in (entry / "plugins").iterdir():
                    if not _ours(child.name) and child.suffix == ".py":
                        (target / "plugins" / child.name).symlink_to(child)
            else:
                target.symlink_to(entry)
    assert (dest / "twisted" / "plugins" / "__init__.py").exists()
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("packaging")
    source = base / "src"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            "dropin.cache",
            ".venv",
            ".ruff_cache",
            ".pytest_cache",
            ".benchmarks",
        ),
    )
    dist = base / "dist"
    built = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            source,
            "-w",
            dist,
        ],
        cwd=base,
    )
    if "invalid command 'bdist_wheel'" in built.stdout + built.stderr:
        pytest.fail(
            "building without isolation needs the 'wheel' package next to"
            " setuptools < 70.1: pip install '.[test]'\n" + built.stderr
        )
    check(built)
    wheels = list(dist.glob("gameserver-*.whl"))
    assert len(wheels) == 1, f"expected one gameserver wheel, got {wheels}"

    venv = base / "venv"
    check(run([sys.executable, "-m", "venv", venv], base))
    python = venv / "bin" / "python"
    site_packages = Path(
        check(
            run(
                [
                    python,
                    "-c",
                    "import sysconfig; print(sysconfig.get_path('purelib'))",
                ],
                cwd=base,
            )
        ).stdout.strip()
    )
    deps = dependency_view(base / "deps")
    (site_packages / "gameserver-test-deps.pth").write_text(f"{deps}\n")
    check(
        run(
            [venv / "bin" / "pip", "install", "--no-deps", "--no-index", wheels[0]],
            cwd=base,
        )
    )
    workdir = base / "work"
    workdir.mkdir()
    return Installed(wheels[0], source, venv, python, workdir)


# -- the wheel -------------------------------------------------------------


def test_wheel_holds_the_dropins_and_packages(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())

    dropins = {f"twisted/plugins/{name}" for name in DROPINS}
    assert "twisted/plugins/gameserver_plugin.py" in dropins
    assert dropins <= names
    # Twisted's own namespace must not be shadowed by an installed package.
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    assert not [n for n in names if n.endswith("dropin.cache")]
    # Only the project's dropins go under twisted/.
    assert {n for n in names if n.startswith("twisted/")} == dropins

    # Every module of both packages, subpackages included.
    for package in ("gameserver", "gameserver_games"):
        assert f"{package}/__init__.py" in names
        modules = {
            p.relative_to(installed.source).as_posix()
            for p in (installed.source / package).rglob("*.py")
        }
        assert modules, package
        assert modules <= names, f"missing from the wheel: {sorted(modules - names)}"
    for package in ("_wire", "_engine", "_accounts", "_http", "_memory", "_redis"):
        assert f"gameserver/{package}/__init__.py" in names, package
    assert "gameserver/py.typed" in names  # the type hints are for users too
    assert "gameserver_games/trivia.json" in names
    # No top-level name another distribution might also install.
    assert not [n for n in names if n.startswith("games/")]
    # The lobby and the JavaScript client are package data.
    for name in (
        "index.html",
        "gameserver.js",
        "lobby.js",
        "lobby.css",
        "session.js",
        "ui.js",
        "admin.html",
        "admin.js",
        "admin.css",
        "vendor/msgpack/index.mjs",
        "vendor/msgpack/utils/utf8.mjs",
        "vendor/msgpack/LICENSE",
    ):
        assert f"gameserver/_http/static/{name}" in names, name
    assert not [n for n in names if n.startswith("tests/")]


def test_wheel_metadata_declares_the_dependencies(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        text = wheel.read(metadata).decode("utf-8")
    requires = {
        line.split(":", 1)[1].strip().split(" ")[0].split(">")[0].lower()
        for line in text.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    }
    assert {"twisted", "autobahn", "pyjwt", "attrs", "msgpack"} <= requires


# -- the installed package -------------------------------------------------


def test_installed_plugins_are_found_outside_the_checkout(
    installed: Installed,
) -> None:
    result = check(run([installed.python, "-c", PROBE], cwd=installed.workdir))
    probe = json.loads(result.stdout.strip().splitlines()[-1])

    assert "gameserver" in probe["tapnames"]
    assert "chat" in probe["games"]
    assert "chat" in probe["installed_games"]

    # Loaded from the venv, not from the checkout or its copy.
    site = Path(installed.venv).resolve()
    gameserver_file = Path(probe["gameserver"]).resolve()
    assert gameserver_file.is_relative_to(site), probe["gameserver"]
    assert not gameserver_file.is_relative_to(REPO), probe["gameserver"]
    assert Path(probe["prefix"]).resolve() == site
    assert set(probe["dropins"]) == {
        f"twisted.plugins.{name.removesuffix('.py')}" for name in DROPINS
    }
    for path in probe["dropins"].values():
        assert Path(path).resolve().is_relative_to(site), path
    for entry in probe["sys_path"]:
        if entry:
            resolved = Path(entry).resolve()
            assert not resolved.is_relative_to(REPO), entry
            assert not resolved.is_relative_to(installed.source), entry


# -- twistd ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, body: object = None, timeout: float = 10.0):
    """``(status, decoded JSON body)``; HTTP errors are answers too."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(
        url,
        data=data,
        method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json"} if data else {},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    return status, json.loads(raw) if raw else None


def twistd(installed: Installed, *args: str) -> list[str]:
    return [str(installed.python), "-c", TWISTD, "-n", "--pidfile=", *args]


@contextlib.contextmanager
def serving(installed: Installed, *args: str, env: dict[str, str]):
    """Run ``twistd -n gameserver ARGS`` until it answers; stop it cleanly after."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = installed.workdir / f"twistd-{port}.log"
    args = tuple(a.replace("{port}", str(port)) for a in args)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            twistd(installed, "gameserver", *args),
            cwd=installed.workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def output() -> str:
        return log_path.read_text(errors="replace")

    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                pytest.fail(f"twistd exited {process.returncode}:\n{output()}")
            try:
                request(f"{base}/api/games/", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"twistd did not answer in 15 s:\n{output()}")
                time.sleep(0.1)
        yield base, output
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
    # A clean shutdown on SIGTERM (twistd re-raises the signal once its
    # reactor has stopped), and nothing went wrong while serving.
    assert process.returncode in (0, -signal.SIGTERM), output()
    assert "Server Shut Down." in output(), output()
    assert "Traceback" not in output(), output()


def test_twistd_serves_the_api(installed: Installed) -> None:
    with serving(
        installed, "--port", "{port}", env=clean_env(GAMESERVER_SECRET=SECRET)
    ) as (base, output):
        status, games = request(f"{base}/api/games/")
        assert status == 200, games
        assert "chat" in [g["name"] for g in games], games

        status, user = request(
            f"{base}/api/users/", {"username": "alice", "password": "secret123"}
        )
        assert status == 201, user
        assert user["username"] == "alice"

        status, tokens = request(
            f"{base}/api/token/", {"username": "alice", "password": "secret123"}
        )
        assert status == 200, tokens
        assert tokens["access"] and tokens["refresh"]

        # The lobby's files come from the installed package.
        with urllib.request.urlopen(f"{base}/static/gameserver.js", timeout=10) as r:
            assert r.status == 200
            assert b"export class GameClient" in r.read()

        # The secret came from $GAMESERVER_SECRET: no warning about a random one.
        assert "random secret" not in output()


#: Run in the venv against a twistd server: two users chat over WebSockets.
CHAT_SCRIPT = """
import sys
from twisted.internet import task
from twisted.internet.defer import ensureDeferred
from gameserver.client import GameClient

async def main(reactor, base):
    alice, bob = GameClient(base), GameClient(base)
    for client, name in [(alice, "alice"), (bob, "bob")]:
        assert (await client.register(name, "a long password")).status == 201
        assert (await client.login(name, "a long password")).status == 200
    room = (await alice.create_room("r", "chat", password="mint")).body
    a, b = await alice.connect(), await bob.connect()
    assert (await a.join(room["id"], "mint"))["data"]["is_successful"]
    assert not (await b.join(room["id"], "nope"))["data"]["is_successful"]
    assert (await b.join(room["id"], "mint"))["data"]["is_successful"]
    a.send("CHAT_MESSAGE", room["id"], {"text": "over twistd"})
    print((await b.receive("CHAT_MESSAGE"))["data"]["text"])

task.react(lambda reactor: ensureDeferred(main(reactor, sys.argv[1])))
"""


def test_twistd_listen_endpoint_websocket_and_random_secret(
    installed: Installed,
) -> None:
    with serving(
        installed,
        "--listen",
        "tcp:{port}:interface=127.0.0.1",
        "--games",
        "chat",
        env=clean_env(),
    ) as (base, output):
        result = check(
            run(
                [installed.python, "-c", CHAT_SCRIPT, base],
                cwd=installed.workdir,
                timeout=30,
            )
        )
        assert result.stdout.strip().endswith("over twistd")
        assert "random secret" in output()
        status, games = request(f"{base}/api/games/")
        assert [g["name"] for g in games] == ["chat"]


def test_twistd_rejects_a_short_secret(installed: Installed) -> None:
    result = run(
        twistd(installed, "gameserver", "--port", "0", "--secret", "short"),
        cwd=installed.workdir,
        timeout=30,
    )
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "at least 32 bytes long" in message, message
    assert "Traceback" not in message, message


def test_twistd_rejects_a_bad_redis_url(installed: Installed) -> None:
    result = run(
        twistd(
            installed,
            "gameserver",
            "--port",
            "0",
            "--secret",
            SECRET,
            "--redis",
            "notaurl",
        ),
        cwd=installed.workdir,
        timeout=30,
    )
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "--redis: not a redis://host[:port][/db] URL: 'notaurl'" in message, message
    assert "Traceback" not in message, message


def test_a_game_installed_with_pip_is_found(installed: Installed) -> None:
    """The README's tutorial: a separate package whose dropin adds a game."""
    check(
        run(
            [
                installed.venv / "bin" / "pip",
                "install",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                installed.source / "examples" / "rps",
            ],
            cwd=installed.workdir,
        )
    )
    probe = "from gameserver import installed_games; print(sorted(installed_games()))"
    result = check(run([installed.python, "-c", probe], cwd=installed.workdir))
    assert "'rps'" in result.stdout
    assert "'chat'" in result.stdout
