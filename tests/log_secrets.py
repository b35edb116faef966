"""No token, password or hash is ever logged: checked over a whole test run.

Every log event of the session (as the text log and as the JSON log write
it) goes to one file, as do the logs of the server processes the tests
start; every token a server here issues and every one a test client
receives is remembered. At the end, a run whose logs hold any of them, the
suite's secret or password, or a stored hash's prefix fails, naming what
leaked and where to look. ``GAMESERVER_KEEP_TEST_LOG=1`` keeps the file
(``/tmp/gameserver-test-log-*.log``) of a clean run too, to read.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import (
    eventAsJSON,
    formatEventAsClassicLogText,
    globalLogPublisher,
)

#: The prefix every stored password hash starts with (``passwords.py``).
HASH_PREFIX = "scrypt$"
#: Tokens issued or received during the run.
TOKENS: set[str] = set()
_KEY = pytest.StashKey[Path]()


class _Recorder:
    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="utf-8")

    def __call__(self, event: dict[str, Any]) -> None:
        text = formatEventAsClassicLogText(event)
        if text:
            self._file.write(text)
        try:
            self._file.write(eventAsJSON(event) + "\n")
        except Exception as e:  # an event JSON cannot hold: say so, go on
            self._file.write(f"(unserialisable event: {e!r})\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _remember_tokens() -> None:
    """Wrap what issues tokens here and what clients receive from any server."""
    from gameserver._accounts.tokens import Tokens
    from gameserver.client import GameClient

    issue = Tokens.issue

    def issuing(self: Tokens, user_id: int, token_type: str) -> str:
        token = issue(self, user_id, token_type)
        TOKENS.add(token)
        return token

    Tokens.issue = issuing  # type: ignore[method-assign]
    http = GameClient.http

    async def remembering(self: GameClient, *args: Any, **kwargs: Any) -> Any:
        response = await http(self, *args, **kwargs)
        body = getattr(response, "body", None)
        if isinstance(body, dict):
            for key in ("access", "refresh"):
                if isinstance(body.get(key), str):
                    TOKENS.add(body[key])
        return response

    GameClient.http = remembering  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    fd, name = tempfile.mkstemp(prefix="gameserver-test-log-", suffix=".log")
    os.close(fd)
    path = Path(name)
    config.stash[_KEY] = path
    recorder = _Recorder(path)
    globalLogPublisher.addObserver(recorder)
    config.add_cleanup(lambda: globalLogPublisher.removeObserver(recorder))
    config.add_cleanup(recorder.close)
    _remember_tokens()


def _secrets() -> dict[str, str]:
    from tests.cluster import SECRET as CLUSTER_SECRET
    from tests.conftest import PASSWORD, SECRET

    return {
        "the test secret (SECRET)": SECRET,
        "the cluster tests' secret": CLUSTER_SECRET,
        "the test password (PASSWORD)": PASSWORD,
        "a password hash (scrypt$...)": HASH_PREFIX,
    }


#: Runs of base64url characters long enough to be a JWT's signature.
_SEGMENT = re.compile(r"[A-Za-z0-9_-]{40,}")


def _leaks(texts: dict[str, str]) -> list[str]:
    """What leaked where. A token counts as leaked if its signature (the
    part unique to it) is in a log, whole or cut short after it."""
    signatures = {token.rpartition(".")[2]: token for token in TOKENS}
    leaks = set()
    for where, text in texts.items():
        for what, secret in _secrets().items():
            if secret in text or json.dumps(secret)[1:-1] in text:
                leaks.add(f"{what} in {where}")
        for segment in set(_SEGMENT.findall(text)):
            token = signatures.get(segment)
            if token is not None:
                leaks.add(f"a token a test received ({token[:16]}...) in {where}")
    return sorted(leaks)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.stash.get(_KEY, None)
    if path is None:
        return
    texts = {str(path): path.read_text(encoding="utf-8", errors="replace")}
    factory = getattr(session.config, "_tmp_path_factory", None)
    base = factory.getbasetemp() if factory is not None else None
    if base is not None and base.exists():
        for log in base.rglob("gameserver-*.log"):  # the server processes'
            texts[str(log)] = log.read_text(errors="replace")
    leaks = _leaks(texts)
    if leaks:
        session.config.stash[_LEAKS] = leaks
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif not os.environ.get("GAMESERVER_KEEP_TEST_LOG"):
        path.unlink(missing_ok=True)


_LEAKS = pytest.StashKey[list[str]]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    leaks = config.stash.get(_LEAKS, None)
    if leaks:
        terminalreporter.section("secrets in the logs", red=True, bold=True)
        for leak in leaks[:50]:
            terminalreporter.line(f"LEAKED: {leak}", red=True)
        terminalreporter.line(
            "The logs of this run hold secrets (above); nothing may log a token,"
            " a password or a hash. The run fails."
        )
