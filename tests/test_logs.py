"""``--log-format json`` under real twistd processes, and what log events carry.

(That no secret is ever logged is checked over the whole run: see
``tests/log_secrets.py``.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import eventAsJSON, globalLogPublisher

from gameserver import BaseRouter, Game
from gameserver.client import GameClient
from tests.cluster import REPO, SECRET
from tests.conftest import PASSWORD
from tests.redis_server import free_port


def _twistd(*args: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from twisted.scripts.twistd import run; run()",
        *args,
    ]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO))


async def _serving(port: int, process: subprocess.Popen, out) -> GameClient:
    client = GameClient(f"http://127.0.0.1:{port}")
    for _ in range(300):
        assert process.poll() is None, out()
        try:
            if (await client.http("GET", "/api/games/")).status == 200:
                return client
        except Exception:
            pass
        await deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"the server did not start:\n{out()}")


async def _use(client: GameClient) -> None:
    """A user who signs up, logs in, validates a socket and chats in a room."""
    assert (await client.register("logged", PASSWORD)).status == 201
    assert (await client.login("logged", PASSWORD)).status == 200
    room = (await client.create_room("a room", "chat")).body
    connection = await client.connect()
    assert (await connection.join(room["id"]))["data"]["is_successful"]
    connection.send("CHAT_MESSAGE", room["id"], {"text": "hello"})
    await connection.receive("CHAT_MESSAGE")
    connection.abort()


def _events(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines
    return [json.loads(line) for line in lines]  # every line is JSON alone


@pytest_twisted.ensureDeferred
async def test_twistd_n_writes_one_json_object_per_line_on_stdout(tmp_path, redis_url):
    port = free_port()
    log_path = tmp_path / f"gameserver-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            _twistd(
                "-n",
                "--pidfile=",
                "gameserver",
                "--listen",
                f"tcp:{port}:interface=127.0.0.1",
                "--redis",
                redis_url,
                "--secret",
                SECRET,
                "--games",
                "chat",
                "--log-format",
                "json",
            ),
            cwd=tmp_path,
            env=_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        client = await _serving(port, process, log_path.read_text)
        await _use(client)
        await deferLater(reactor, 0.2, lambda: None)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
    text = log_path.read_text()
    events = _events(text)
    messages = [e["message"] for e in events]
    assert any("starting up" in m for m in messages)  # twistd's own, in JSON too
    assert any("POST /api/token/" in m for m in messages)  # the access log
    started = [
        e for e in events if e.get("log_format", "").startswith("gameserver process")
    ]
    assert len(started) == 1 and len(started[0]["process"]) == 32
    for event in events:
        assert "log_level" in event and "log_time" in event
    assert PASSWORD not in text and SECRET not in text
    assert client.access is not None and client.access not in text
    assert "scrypt$" not in text


@pytest_twisted.ensureDeferred
async def test_twistd_as_a_daemon_writes_json_to_its_logfile(tmp_path):
    port = free_port()
    log_path = tmp_path / f"gameserver-{port}.log"
    pid_path = tmp_path / "twistd.pid"
    started = subprocess.run(
        _twistd(
            f"--pidfile={pid_path}",
            f"--logfile={log_path}",
            "gameserver",
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            "--secret",
            SECRET,
            "--games",
            "chat",
            "--log-format",
            "json",
        ),
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        timeout=30,
    )
    assert started.returncode == 0, started.stderr
    for _ in range(100):
        if pid_path.exists() and pid_path.read_text().strip():
            break
        await deferLater(reactor, 0.05, lambda: None)
    pid = int(pid_path.read_text())
    try:
        client = GameClient(f"http://127.0.0.1:{port}")
        for _ in range(300):
            try:
                if (await client.http("GET", "/api/games/")).status == 200:
                    break
            except Exception:
                pass
            await deferLater(reactor, 0.05, lambda: None)
        await _use(client)
    finally:
        os.kill(pid, signal.SIGTERM)
        for _ in range(200):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            await deferLater(reactor, 0.05, lambda: None)
    events = _events(log_path.read_text())
    assert any("Server Shut Down" in e["message"] for e in events)
    assert any("POST /api/users/" in e["message"] for e in events)


def test_json_logs_and_twistd_s_own_logger_are_refused_together(tmp_path):
    refused = subprocess.run(
        _twistd(
            "-n",
            "--logger",
            "twisted.logger.textFileLogObserver",
            "gameserver",
            "--port",
            "0",
            "--log-format",
            "json",
        ),
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        timeout=30,
    )
    assert refused.returncode != 0
    assert b"--logger" in refused.stdout + refused.stderr
    bad = subprocess.run(
        _twistd("-n", "gameserver", "--port", "0", "--log-format", "xml"),
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        timeout=30,
    )
    assert bad.returncode != 0
    assert b"--log-format is text or json" in bad.stdout + bad.stderr


class Broken(BaseRouter):
    def explode(self, room, user, helper, data):
        raise RuntimeError("the game's own bug")


@pytest_twisted.ensureDeferred
async def test_a_failed_handler_is_logged_with_its_room_user_and_process(start_any):
    games = {"broken": Game(name="broken", max_players=4, routers=[Broken])}
    server = await start_any(games=games)
    alice, a = await server.socket()
    room_id = (await server.room(alice, game="broken"))["id"]
    assert (await a.join(room_id))["data"]["is_successful"]
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        a.send("explode", room_id)
        assert (await a.receive("ERROR"))["data"]["code"] == "handler_error"
    finally:
        globalLogPublisher.removeObserver(seen.append)
    failed = [e for e in seen if "a handler of" in e.get("log_format", "")]
    assert len(failed) == 1
    event = failed[0]
    assert event["room_id"] == room_id
    assert event["user_id"] == alice.user_id
    assert event["process"] == server.server.engine.process_id
    # The JSON form carries them too, as fields of their own.
    as_json = json.loads(eventAsJSON(event))
    assert (as_json["room_id"], as_json["user_id"]) == (room_id, alice.user_id)


@pytest_twisted.ensureDeferred
async def test_twist_takes_the_json_observer_too(tmp_path):
    port = free_port()
    log_path = tmp_path / f"gameserver-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "twisted",
                "gameserver",
                "--listen",
                f"tcp:{port}:interface=127.0.0.1",
                "--secret",
                SECRET,
                "--games",
                "chat",
                "--log-format",
                "json",
            ],
            cwd=tmp_path,
            env=_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        client = await _serving(port, process, log_path.read_text)
        await _use(client)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
    events = _events(log_path.read_text())
    assert any("POST /api/token/" in e["message"] for e in events)
