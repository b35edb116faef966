"""Real gameserver processes sharing one Redis, for the multi-process tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.task import deferLater

from gameserver.client import GameClient
from tests.redis_server import free_port

REPO = Path(__file__).resolve().parent.parent
GAMES = REPO / "tests" / "cluster_games"
SECRET = "cluster test secret, long enough for HS256"
#: Per-address limits no test reaches by accident (every client is
#: 127.0.0.1, and the processes share the counters); ``extra`` may lower them.
GENEROUS = (
    "--max-sockets-per-address=100000",
    "--max-unvalidated-per-address=100000",
    "--http-rate=100000",
    "--http-burst=100000",
    "--signups-per-address=100000",
    "--guests-per-address=100000",
    "--login-failures=100000",
)


class ServerProcess:
    """``twistd -n gameserver --redis URL`` on a port of its own."""

    def __init__(
        self,
        redis_url: str,
        log_dir: Path,
        port: int | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.redis_url = redis_url
        self.extra = extra
        self.port = port or free_port()
        self.log_path = log_dir / f"gameserver-{self.port}.log"
        self.process: subprocess.Popen | None = None
        self.paused = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> GameClient:
        return GameClient(self.url)

    async def start(self) -> ServerProcess:
        env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{GAMES}")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "twisted",
                    "--log-format=text",
                    "gameserver",
                    "--listen",
                    f"tcp:{self.port}:interface=127.0.0.1",
                    "--redis",
                    self.redis_url,
                    "--secret",
                    SECRET,
                    "--games",
                    "chat,tictactoe,counter,trivia",
                    # Teardown stops one process while the others live: its
                    # drain would wait for users who will not come back.
                    "--drain-timeout",
                    "3",
                    *GENEROUS,
                    *self.extra,
                ],
                cwd=self.log_path.parent,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        for _ in range(300):
            if self.process.poll() is not None:
                raise AssertionError(f"gameserver exited:\n{self.output()}")
            try:
                response = await self.client().http("GET", "/api/games/")
                if response.status == 200:
                    return self
            except Exception:
                pass
            await deferLater(reactor, 0.05, lambda: None)
        raise AssertionError(f"gameserver did not start:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the process hangs, as in a long GC pause or a cut network."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def resume_if_paused(self) -> None:
        if self.paused and self.process is not None and self.process.poll() is None:
            self.resume()

    @property
    def process_id(self) -> str:
        """The id the process goes by in Redis, from its log."""
        match = re.search(r"gameserver process ([0-9a-f]{32})", self.output())
        assert match, self.output()
        return match.group(1)

    def terminate(self) -> None:
        """SIGTERM, without waiting: a clean stop, as in a rolling restart."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
