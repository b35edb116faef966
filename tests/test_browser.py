"""End-to-end: the lobby and ``gameserver.js`` in a real headless Chromium.

The server runs in a subprocess (its own reactor, on a free port), with the
bundled games and a trivia question bank whose right answer is always the
choice "Right", so a test knows what to click. Playwright's sync API drives
Debian's ``/usr/bin/chromium`` (``playwright install`` is not used).

Without a browser these tests are skipped locally, but fail under CI
(``$CI`` set): the README's test command must prove the lobby works.

Screenshots go to a temporary directory; to refresh the README's pictures,
run ``GAMESERVER_SCREENSHOTS=docs python -m pytest tests/test_browser.py``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from tests.conftest import GENEROUS

try:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        Page,
        expect,
        sync_playwright,
    )
except ImportError:  # pragma: no cover - reported by the browser fixture
    sync_playwright = None

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("GAMESERVER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery"
TIMEOUT_MS = 15_000

#: The test server: real games, a cheap password hash, and a trivia bank
#: whose right answer is always "Right". Its arguments: the token secret, the
#: access tokens' lifetime in seconds, more settings as a JSON object, and
#: optionally a Redis URL to share (in memory without one).
SERVER = """
import json, random, sys

from twisted.internet import reactor, task
from twisted.logger import globalLogBeginner, textFileLogObserver

from gameserver import GameServer, Settings

# To the log file the run's check for secrets reads (tests/log_secrets.py).
globalLogBeginner.beginLoggingTo(
    [textFileLogObserver(sys.stderr)], redirectStandardIO=False
)
from gameserver_games.chat import chat
from gameserver_games.tictactoe import tictactoe
from gameserver_games.trivia import Trivia

questions = [
    {
        "question": f"Question {n}: which answer is right?",
        "choices": ["Wrong", "Right", "Not this", "Nor this"],
        "answer": 1,
    }
    for n in range(6)
]
trivia = Trivia(questions=questions, rng=random.Random(0), pause=1.0)
settings = Settings(
    secret=sys.argv[1],
    password_cost=10,
    access_lifetime=float(sys.argv[2]),
    **json.loads(sys.argv[3]),
)
games = {"chat": chat, "tictactoe": tictactoe, "trivia": trivia}
redis = sys.argv[4] if len(sys.argv) > 4 else ""
if redis:
    server = GameServer.with_redis(settings, redis, games=games)
    server.backend.startService()
    reactor.addSystemEventTrigger("before", "shutdown", server.backend.stopService)
else:
    server = GameServer(settings, games=games)

def ready():
    backend = server.backend
    return backend is None or (backend.redis.connected and backend.hosting.channel.ready)

def listening(port):
    print(json.dumps({"port": port.getHost().port}), flush=True)

def failed(failure):
    failure.printTraceback()
    reactor.stop()

def listen(_=None):
    if not ready():
        return task.deferLater(reactor, 0.02, listen)
    server.listen("tcp:0:interface=127.0.0.1").addCallbacks(listening, failed)

reactor.callWhenRunning(listen)
reactor.run()
"""


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run the browser tests")
    pytest.skip(reason)


# -- fixtures ----------------------------------------------------------------


class Server:
    def __init__(self, url: str, process: subprocess.Popen, log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log

    def api(self, method: str, path: str, body: Any = None, token: str | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def user(self, name: str) -> str:
        """Register ``name`` and return an access token."""
        status, body = self.api(
            "POST", "/api/users/", {"username": name, "password": PASSWORD}
        )
        assert status == 201, body
        status, tokens = self.api(
            "POST", "/api/token/", {"username": name, "password": PASSWORD}
        )
        assert status == 200, tokens
        return tokens["access"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from run_server(tmp_path_factory, access_lifetime=300)


@pytest.fixture(scope="module")
def short_lived_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose access tokens last 10 seconds: refreshing is seen soon."""
    yield from run_server(tmp_path_factory, access_lifetime=SHORT_LIFETIME)


SHORT_LIFETIME = 10


@pytest.fixture(scope="module")
def one_guest_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that makes one guest account, then refuses more (for 1000 s)."""
    yield from run_server(
        tmp_path_factory, access_lifetime=300, guest_burst=1, guest_rate=0.001
    )


@pytest.fixture(scope="module")
def quick_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own: no other test's open room in its quick-join pools."""
    yield from run_server(tmp_path_factory, access_lifetime=300)


def run_server(
    tmp_path_factory: pytest.TempPathFactory,
    access_lifetime: float,
    *,
    redis_url: str = "",
    secret: str = "",
    **settings: Any,
) -> Iterator[Server]:
    """A server process; with ``redis_url``, on that Redis (give servers
    that share one Redis the same ``secret``)."""
    # Named as the run's check for secrets looks for (tests/log_secrets.py).
    log = tmp_path_factory.mktemp("browser") / "gameserver-browser.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as err:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                SERVER,
                secret or secrets.token_urlsafe(32),
                str(access_lifetime),
                # Every page comes from 127.0.0.1: per-address limits aside.
                json.dumps({**GENEROUS, **settings}),
                redis_url,
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    try:
        line = _read_line(process, timeout=30)
        if not line:
            pytest.fail(f"the test server did not start:\n{log.read_text()}")
        port = json.loads(line)["port"]
        yield Server(f"http://127.0.0.1:{port}", process, log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        process.stdout.close()
    errors = log.read_text(errors="replace")
    assert "Traceback" not in errors, errors


def _read_line(process: subprocess.Popen, timeout: float) -> str:
    """The server's first line of output (its port), or "" if it died."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if selector.select(timeout=0.2):
                return process.stdout.readline().decode()
            if process.poll() is not None:
                return ""
    return ""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if sync_playwright is None:
        unavailable("the 'playwright' package is not installed (pip install '.[test]')")
    if not os.path.exists(CHROMIUM):
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``$GAMESERVER_SCREENSHOTS`` (e.g. ``docs``) or a temp dir."""
    chosen = os.environ.get("GAMESERVER_SCREENSHOTS")
    if chosen:
        path = Path(chosen)
        if not path.is_absolute():
            path = REPO / path
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def contexts(browser: Browser) -> Iterator[Any]:
    """Make browser contexts (one per user); all are closed after the test."""
    made: list[BrowserContext] = []
    expect.set_options(timeout=TIMEOUT_MS)

    def make(**options: Any) -> tuple[BrowserContext, Page]:
        options.setdefault("viewport", {"width": 1100, "height": 760})
        context = browser.new_context(**options)
        context.set_default_timeout(TIMEOUT_MS)
        made.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on(
            "console",
            lambda message: (
                errors.append(message.text)
                if "Content Security Policy" in message.text
                else None
            ),
        )
        page.js_errors = errors  # checked at the end of the test
        return context, page

    yield make
    for context in made:
        for page in context.pages:
            assert not page.js_errors, page.js_errors
        context.close()


PHONE = {
    "viewport": {"width": 390, "height": 760},
    "is_mobile": True,
    "has_touch": True,
}


# -- helpers -----------------------------------------------------------------


def sign_up(page: Page, url: str, name: str, query: str = "") -> None:
    page.goto(url + "/" + query)
    expect(page.get_by_test_id("auth-view")).to_be_visible()
    page.get_by_test_id("auth-username").fill(name)
    page.get_by_test_id("auth-password").fill(PASSWORD)
    page.get_by_test_id("signup").click()
    expect(page.get_by_test_id("lobby-view")).to_be_visible()
    expect(page.get_by_test_id("username")).to_have_text(name)
    expect(page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "open"
    )


def create_room(page: Page, game: str, name: str, password: str = "") -> None:
    page.get_by_test_id("create-game").select_option(game)
    page.get_by_test_id("create-name").fill(name)
    page.get_by_test_id("create-password").fill(password)
    page.get_by_test_id("create-submit").click()
    expect(page.get_by_test_id("room-view")).to_be_visible()
    expect(page.get_by_test_id("room-name")).to_have_text(name)


def room_row(page: Page, name: str):
    return page.get_by_test_id("room").filter(
        has=page.get_by_test_id("room-title").get_by_text(name, exact=True)
    )


def say(page: Page, text: str) -> None:
    page.get_by_test_id("chat-input").fill(text)
    page.get_by_test_id("chat-input").press("Enter")


def cell(page: Page, index: int):
    return page.get_by_test_id(f"cell-{index}")


def move(page: Page, other: Page, index: int, mark: str) -> None:
    cell(page, index).click()
    expect(cell(page, index)).to_have_text(mark)
    expect(cell(other, index)).to_have_text(mark)


def fits(page: Page) -> bool:
    """Nothing sticks out sideways: the page works on a phone-sized screen."""
    return page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )


def member(page: Page, name: str):
    return page.get_by_test_id("member").and_(page.locator(f'[data-user="{name}"]'))


#: An init script: the page's clock (``Date.now``) an hour ahead of the
#: server's, as on a machine whose clock is wrong.
CLOCK_AHEAD = """
(() => {
  const now = Date.now.bind(Date);
  Date.now = () => now() + 3600e3;
})();
"""

#: In the page: a token with the given claims (not signed: the server refuses it).
FORGE = """
const forge = (claims) =>
  "e30." + btoa(JSON.stringify({ sub: "1", token_type: "access", ...claims })).replace(/=+$/, "") + ".x";
"""


def websocket_frames(page: Page) -> list[tuple[str, str | bytes]]:
    """The page's WebSocket frames, ``("sent" | "received", payload)``, as they
    go: a text frame's payload is a str, a binary frame's bytes."""
    frames: list[tuple[str, str | bytes]] = []

    def opened(socket: Any) -> None:
        socket.on("framesent", lambda payload: frames.append(("sent", payload)))
        socket.on("framereceived", lambda payload: frames.append(("received", payload)))

    page.on("websocket", opened)
    return frames


def api_requests(page: Page, path: str = "/api/") -> list[str]:
    """The URLs of the page's requests to ``path``, as they are made."""
    seen: list[str] = []
    page.on("request", lambda request: path in request.url and seen.append(request.url))
    return seen


# -- the tests ---------------------------------------------------------------


@pytest.mark.parametrize("wire_format", ["json", "msgpack"])
def test_two_players_password_room_chat_tictactoe_and_a_dropped_connection(
    server: Server, contexts, shots: Path, wire_format: str
) -> None:
    # One game in each wire format, on one server: other names the second
    # time (a username is taken for good); the README's pictures are JSON's.
    query = "?format=msgpack" if wire_format == "msgpack" else ""
    a, b, duel = ("alice", "bob", "Duel")
    if wire_format != "json":
        a, b, duel = (f"{a}-{wire_format}", f"{b}-{wire_format}", f"Duel {wire_format}")
    _, alice = contexts()
    bob_context, bob = contexts(**PHONE)
    alice_frames = websocket_frames(alice)
    bob_frames = websocket_frames(bob)
    sign_up(alice, server.url, a, query)
    sign_up(bob, server.url, b, query)

    create_room(alice, "tictactoe", duel, password="mint")
    expect(alice.get_by_test_id("ttt-status")).to_have_text(
        "Waiting for a second player…"
    )

    # Bob finds the room (the list refreshes by itself), locked.
    row = room_row(bob, duel)
    expect(row).to_be_visible()
    expect(row.get_by_test_id("room-lock")).to_be_visible()
    expect(row.get_by_test_id("room-players")).to_have_text("1/2 players")
    row.get_by_test_id("room-join").click()
    expect(bob.get_by_test_id("password-dialog")).to_be_visible()
    bob.get_by_test_id("join-password").fill("not-mint")
    bob.get_by_test_id("join-submit").click()
    expect(bob.get_by_test_id("join-error")).to_have_text("Wrong password.")
    expect(bob.get_by_test_id("lobby-view")).to_be_visible()
    bob.get_by_test_id("join-password").fill("mint")
    bob.get_by_test_id("join-submit").click()
    expect(bob.get_by_test_id("room-view")).to_be_visible()
    expect(bob.get_by_test_id("password-dialog")).to_be_hidden()

    # The game starts with both seated: Alice, seated first, is X.
    expect(alice.get_by_test_id("ttt-status")).to_have_text("Your turn: you are X.")
    expect(bob.get_by_test_id("ttt-status")).to_have_text(f"{a}'s turn (X).")
    expect(alice.get_by_test_id("room-state")).to_have_text("playing")
    expect(member(alice, b)).to_have_attribute("data-online", "yes")

    # Chat, both ways.
    say(alice, f"hello {b}")
    expect(bob.get_by_test_id("chat-message").last).to_contain_text(f"{a} hello {b}")
    say(bob, f"hi {a}")
    expect(alice.get_by_test_id("chat-message").last).to_contain_text(f"{b} hi {a}")

    # An illegal move is explained, from the server's ERROR detail.
    cell(bob, 4).click()
    expect(bob.get_by_test_id("game-error")).to_have_text("It is not your turn.")
    expect(cell(bob, 4)).to_have_text("")

    move(alice, bob, 0, "X")
    move(bob, alice, 3, "O")
    cell(bob, 0).click()
    expect(bob.get_by_test_id("game-error")).to_have_text("It is not your turn.")
    move(alice, bob, 1, "X")

    # Bob's connection drops mid-game: the page says so, Alice sees him
    # away, and the seat is kept.
    bob_context.set_offline(True)
    bob.evaluate("window.gameserverLobby.client.socket.close()")
    expect(bob.get_by_test_id("connection-banner")).to_be_visible()
    expect(bob.get_by_test_id("connection-banner")).to_contain_text("reconnecting")
    expect(member(alice, b)).to_have_attribute("data-online", "no")
    bob_context.set_offline(False)

    # He comes back to the same game in the same state, and it goes on.
    expect(bob.get_by_test_id("connection-banner")).to_be_hidden()
    expect(member(alice, b)).to_have_attribute("data-online", "yes")
    for index, mark in [(0, "X"), (1, "X"), (3, "O")]:
        expect(cell(bob, index)).to_have_text(mark)
    expect(bob.get_by_test_id("ttt-status")).to_have_text("Your turn: you are O.")
    move(bob, alice, 4, "O")
    say(bob, "good luck")
    expect(alice.get_by_test_id("chat-message").last).to_contain_text("good luck")
    expect(alice.get_by_test_id("ttt-status")).to_have_text("Your turn: you are X.")
    if wire_format == "json":
        alice.screenshot(path=str(shots / "game.png"))
        bob.screenshot(path=str(shots / "game-phone.png"), full_page=True)
    assert fits(bob)

    move(alice, bob, 2, "X")
    expect(alice.get_by_test_id("ttt-status")).to_have_text("You won!")
    expect(bob.get_by_test_id("ttt-status")).to_have_text(f"{a} won.")
    for index in (0, 1, 2):
        expect(cell(alice, index)).to_have_class(re.compile(r"\bwin\b"))
    expect(alice.get_by_test_id("room-state")).to_have_text("finished")

    # A rematch: both ask, and the other player starts.
    alice.get_by_test_id("rematch").click()
    expect(bob.get_by_test_id("rematch-status")).to_have_text(f"{a} wants a rematch.")
    bob.get_by_test_id("rematch").click()
    expect(bob.get_by_test_id("ttt-status")).to_have_text("Your turn: you are X.")
    expect(alice.get_by_test_id("ttt-status")).to_have_text(f"{b}'s turn (X).")
    for index in range(9):
        expect(cell(alice, index)).to_have_text("")
    move(bob, alice, 8, "X")

    # A reload keeps the session and brings Alice back to her seat.
    alice.reload()
    expect(alice.get_by_test_id("room-view")).to_be_visible()
    expect(alice.get_by_test_id("username")).to_have_text(a)
    expect(cell(alice, 8)).to_have_text("X")
    expect(alice.get_by_test_id("ttt-status")).to_have_text("Your turn: you are O.")

    # The pages spoke the format asked for, on every socket (Bob's second,
    # Alice's after the reload): each frame both ways is an envelope in
    # MessagePack, in a binary frame, or in JSON, in a text frame.
    protocol = "gameserver.msgpack" if wire_format == "msgpack" else ""
    for page, frames in ((alice, alice_frames), (bob, bob_frames)):
        expect(page.get_by_test_id("wire-format")).to_have_text(wire_format)
        spoken = page.evaluate("window.gameserverLobby.client.socket.protocol")
        assert spoken == protocol
        sent: set[str] = set()
        received: set[str] = set()
        for direction, payload in frames:
            if wire_format == "msgpack":
                assert isinstance(payload, bytes), (direction, payload)
                message = msgpack.unpackb(payload)
            else:
                assert isinstance(payload, str), (direction, payload)
                message = json.loads(payload)
            # A room's messages carry their seq; what a client sends does not.
            keys = {"type", "room_id", "data"}
            assert set(message) <= (keys if direction == "sent" else keys | {"seq"})
            (sent if direction == "sent" else received).add(message["type"])
        assert {"VALIDATE_CONNECTION", "JOIN_ROOM", "CHAT_MESSAGE", "MOVE"} <= sent
        assert {"VALIDATE_CONNECTION", "JOIN_ROOM", "CHAT_MESSAGE", "BOARD"} <= received


def test_lobby_lists_filters_and_shows_the_rooms(
    server: Server, contexts, shots: Path
) -> None:
    dave = server.user("dave")
    for body in (
        {"name": "Tea room", "game": "chat", "password": "mint"},
        {"name": "Quiz night", "game": "trivia", "max_players": 8},
    ):
        status, room = server.api("POST", "/api/rooms/", body, dave)
        assert status == 201, room
    carol_context, carol = contexts()
    sign_up(carol, server.url, "carol")
    expect(room_row(carol, "Quiz night")).to_be_visible()
    expect(room_row(carol, "Quiz night").get_by_test_id("room-players")).to_have_text(
        "0/8 players"
    )
    expect(room_row(carol, "Tea room").get_by_test_id("room-lock")).to_be_visible()
    carol.get_by_test_id("create-game").select_option("chat")
    carol.get_by_test_id("create-name").fill("Study group")
    carol.screenshot(path=str(shots / "lobby.png"))

    # Filter by game.
    carol.get_by_test_id("room-filter").select_option("trivia")
    expect(carol.get_by_test_id("room")).to_have_count(1)
    expect(room_row(carol, "Quiz night")).to_be_visible()
    carol.get_by_test_id("room-filter").select_option("")
    expect(room_row(carol, "Tea room")).to_be_visible()

    # A chat room is just chat; leaving goes back to the list.
    carol.get_by_test_id("create-submit").click()
    expect(carol.get_by_test_id("room-name")).to_have_text("Study group")
    expect(carol.get_by_test_id("ttt-board")).to_have_count(0)
    say(carol, "anyone here?")
    expect(carol.get_by_test_id("chat-message").last).to_contain_text("anyone here?")
    carol.get_by_test_id("leave").click()
    expect(carol.get_by_test_id("lobby-view")).to_be_visible()

    # Refusals are explained: a full room is not offered, and joining it
    # anyway (a list a moment old) says why.
    status, solo = server.api(
        "POST", "/api/rooms/", {"name": "Solo", "game": "chat", "max_players": 1}, dave
    )
    assert status == 201
    joined = carol.evaluate(
        """async ({ id, password }) => {
            const { GameClient } = await import("/static/gameserver.js");
            const erin = new GameClient();
            await erin.register("erin", password);
            await erin.login("erin", password);
            await erin.connect();
            return (await erin.join(id)).players.length;
        }""",
        {"id": solo["id"], "password": PASSWORD},
    )
    assert joined == 1
    expect(room_row(carol, "Solo")).to_contain_text("full")
    expect(room_row(carol, "Solo").get_by_test_id("room-join")).to_have_count(0)
    carol.evaluate(
        "(id) => window.gameserverLobby.joinRoom({ id, name: 'Solo' })", solo["id"]
    )
    expect(carol.get_by_test_id("notice")).to_have_text(
        re.compile("This room is full.")
    )
    expect(carol.get_by_test_id("lobby-view")).to_be_visible()

    # Paging: 11 more rooms make a second page, kept current by polling;
    # the newest come first.
    for n in range(11):
        status, _ = server.api(
            "POST", "/api/rooms/", {"name": f"Room {n}", "game": "chat"}, dave
        )
        assert status == 201
    expect(room_row(carol, "Room 10")).to_be_visible()
    expect(carol.get_by_test_id("page-next")).to_be_enabled()
    carol.get_by_test_id("page-next").click()
    expect(carol.get_by_test_id("page-info")).to_have_text(
        re.compile(r"^page 2 of \d+$")
    )
    expect(room_row(carol, "Room 0")).to_be_visible()
    carol.get_by_test_id("page-prev").click()
    expect(carol.get_by_test_id("page-info")).to_have_text(
        re.compile(r"^page 1 of \d+$")
    )

    # A second window starts logged in as carol; logging out there (to play
    # as someone else) leaves the first window's session alone.
    second = carol_context.new_page()
    second.js_errors = []
    second.on("pageerror", lambda error: second.js_errors.append(str(error)))
    second.goto(server.url + "/")
    expect(second.get_by_test_id("username")).to_have_text("carol")
    second.get_by_test_id("logout").click()
    expect(second.get_by_test_id("auth-view")).to_be_visible()
    second.reload()
    expect(second.get_by_test_id("auth-view")).to_be_visible()
    carol.reload()
    expect(carol.get_by_test_id("username")).to_have_text("carol")
    expect(carol.get_by_test_id("lobby-view")).to_be_visible()


def test_trivia_round_with_teams_countdown_and_scores(
    server: Server, contexts, shots: Path
) -> None:
    _, quinn = contexts()
    _, robin = contexts(**PHONE)
    # Both pages' clocks are an hour ahead of the server's: a countdown from
    # the page's own clock would read 0 (or an hour), one from the server's
    # deadline (with the offset learned from the server) reads 5, 4, 3...
    for page in (quinn, robin):
        page.add_init_script(script=CLOCK_AHEAD)
    sign_up(quinn, server.url, "quinn")
    sign_up(robin, server.url, "robin")
    create_room(quinn, "trivia", "Quiz")
    # Other tests' rooms may fill the first pages: filter by game.
    robin.get_by_test_id("room-filter").select_option("trivia")
    row = room_row(robin, "Quiz")
    row.get_by_test_id("room-join").click()
    expect(robin.get_by_test_id("room-view")).to_be_visible()
    expect(robin.get_by_test_id("trivia-waiting")).to_have_text(
        "Waiting for quinn to start the game…"
    )
    expect(member(quinn, "robin")).to_be_visible()

    # The owner starts one short round in two teams.
    quinn.get_by_test_id("trivia-rounds").fill("1")
    quinn.get_by_test_id("trivia-seconds").fill("5")
    quinn.get_by_test_id("trivia-teams").check()
    quinn.get_by_test_id("trivia-start").click()

    for page in (quinn, robin):
        expect(page.get_by_test_id("trivia-question")).to_have_text(
            re.compile(r"which answer is right\?")
        )
        expect(page.get_by_test_id("trivia-progress")).to_have_text("Question 1 of 1")
        # The countdown runs from the server's deadline: 5 seconds at most.
        expect(page.get_by_test_id("trivia-countdown")).to_have_text(
            re.compile(r"^[1-5]$")
        )
        expect(page.get_by_test_id("chat-scope")).to_be_visible()
        offset = page.evaluate("window.gameserverLobby.client.clockOffset")
        assert abs(offset + 3600) < 2, offset

    # Room-wide chat is closed during a question; team chat works.
    say(robin, "it is B!")
    expect(robin.get_by_test_id("chat-error")).to_have_text(
        "Chat to everyone is closed while a question is open: team chat still works."
    )
    quinn.get_by_test_id("chat-scope").select_option(index=1)
    say(quinn, "psst")
    expect(quinn.get_by_test_id("chat-message").last).to_contain_text("psst")
    expect(quinn.get_by_test_id("chat-message").last).to_have_attribute(
        "data-team", re.compile(r"^(red|blue)$")
    )

    quinn.get_by_role("button", name="Right", exact=True).click()
    expect(quinn.get_by_test_id("trivia-answer-state")).to_have_text(
        "Answer locked in."
    )
    quinn.screenshot(path=str(shots / "trivia.png"))
    assert fits(robin)
    robin.get_by_role("button", name="Wrong", exact=True).click()

    # Everyone answered: the result, the scores, the final board.
    expect(quinn.get_by_test_id("my-score")).to_have_text(re.compile(r"^[1-9]\d*$"))
    expect(robin.get_by_test_id("my-score")).to_have_text("0")
    expect(quinn.get_by_test_id("trivia-winner")).to_have_text(
        re.compile(r"^Team (red|blue) wins!$")
    )
    expect(robin.get_by_test_id("trivia-scoreboard")).to_contain_text("quinn")
    expect(quinn.get_by_test_id("room-state")).to_have_text("finished")
    expect(quinn.get_by_test_id("trivia-start")).to_have_text("Play again")
    assert robin.get_by_test_id("chat-message").filter(has_text="psst").count() == 0


def test_a_guest_plays_chats_and_keeps_the_account(
    one_guest_server: Server, contexts
) -> None:
    server = one_guest_server
    _, host = contexts()
    _, guest = contexts(**PHONE)
    sign_up(host, server.url, "hostess")
    create_room(host, "chat", "Guests welcome")

    # No account, no password: the server makes up a name.
    guest.goto(server.url + "/")
    guest.get_by_test_id("guest-play").click()
    expect(guest.get_by_test_id("lobby-view")).to_be_visible()
    expect(guest.get_by_test_id("username")).to_have_text(
        re.compile(r"^guest-[0-9a-f]{4,8}$")
    )
    name = guest.get_by_test_id("username").text_content()
    expect(guest.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "open"
    )
    expect(guest.get_by_test_id("guest-name")).to_have_text(name)
    expect(guest.get_by_test_id("guest-claim")).to_be_visible()
    assert fits(guest)

    # A guest joins, chats and is seen like anyone.
    room_row(guest, "Guests welcome").get_by_test_id("room-join").click()
    expect(guest.get_by_test_id("room-view")).to_be_visible()
    expect(member(host, name)).to_be_visible()
    say(guest, "hello from a guest")
    expect(host.get_by_test_id("chat-message").last).to_contain_text(
        f"{name} hello from a guest"
    )

    # Keeping the account: a short password is refused, a good one taken.
    guest.get_by_test_id("guest-claim").click()
    guest.get_by_test_id("claim-password").fill("short")
    guest.get_by_test_id("claim-submit").click()
    expect(guest.get_by_test_id("claim-error")).to_have_text(
        "A password is at least 8 characters long."
    )
    guest.get_by_test_id("claim-password").fill(PASSWORD)
    guest.get_by_test_id("claim-submit").click()
    expect(guest.get_by_test_id("claim-dialog")).to_be_hidden()
    expect(guest.get_by_test_id("notice-text")).to_contain_text(name)
    expect(guest.get_by_test_id("guest-claim")).to_be_hidden()
    assert guest.evaluate("window.gameserverLobby.client.isGuest") is False
    again = "window.gameserverLobby.client.claim('x'.repeat(8)).catch((e) => e.code)"
    assert guest.evaluate(again) == "not_a_guest"
    assert fits(guest)
    # The session goes on, with the same tokens.
    say(guest, "still here")
    expect(host.get_by_test_id("chat-message").last).to_contain_text(
        f"{name} still here"
    )

    # This server makes one guest only: the next is refused, in words...
    _, fresh = contexts()
    fresh.goto(server.url + "/")
    fresh.get_by_test_id("guest-play").click()
    expect(fresh.get_by_test_id("auth-error")).to_contain_text("guest")
    expect(fresh.get_by_test_id("auth-view")).to_be_visible()
    # ...and the kept account logs in with its password.
    fresh.get_by_test_id("auth-username").fill(name)
    fresh.get_by_test_id("auth-password").fill(PASSWORD)
    fresh.get_by_test_id("login").click()
    expect(fresh.get_by_test_id("lobby-view")).to_be_visible()
    expect(fresh.get_by_test_id("username")).to_have_text(name)
    expect(fresh.get_by_test_id("guest-bar")).to_be_hidden()


def test_play_now_seats_a_guest_and_a_player_in_one_game(
    quick_server: Server, contexts
) -> None:
    server = quick_server
    _, guest = contexts(**PHONE)
    _, player = contexts()
    guest_frames = websocket_frames(guest)
    guest.goto(server.url + "/")
    guest.get_by_test_id("guest-play").click()
    expect(guest.get_by_test_id("username")).to_have_text(re.compile(r"^guest-"))
    expect(guest.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "open"
    )
    name = guest.get_by_test_id("username").text_content()
    sign_up(player, server.url, "quick-player")
    # A refusal (it names no room) rejects quickJoin() at once.
    refused = guest.evaluate(
        """() => window.gameserverLobby.client.quickJoin("nope").then(
          () => null, (e) => [e.name, e.code, window.gameserverLobby.client.rooms])"""
    )
    assert refused == ["GameServerError", "invalid", []]

    # No room is open: the guest's quick join makes one, the guest's own...
    guest.get_by_test_id("play-now-tictactoe").click()
    expect(guest.get_by_test_id("room-view")).to_be_visible()
    expect(guest.get_by_test_id("room-owner")).to_have_text(name)
    expect(guest.get_by_test_id("ttt-status")).to_have_text(
        "Waiting for a second player…"
    )
    assert fits(guest)
    # ...and the player's takes its free seat: the game starts.
    player.get_by_test_id("play-now-tictactoe").click()
    expect(player.get_by_test_id("room-view")).to_be_visible()
    rooms = [
        page.evaluate("window.gameserverLobby.client.rooms") for page in (guest, player)
    ]
    assert len(rooms[0]) == 1 and rooms[0] == rooms[1], rooms
    (room_id,) = rooms[0]
    expect(player.get_by_test_id("room-owner")).to_have_text(name)
    expect(member(guest, "quick-player")).to_be_visible()
    expect(guest.get_by_test_id("ttt-status")).to_have_text("Your turn: you are X.")
    expect(player.get_by_test_id("ttt-status")).to_have_text(f"{name}'s turn (X).")
    move(guest, player, 0, "X")
    move(player, guest, 3, "O")

    # A quick-joined room is a joined room: after a drop, JOIN_ROOM by its id.
    rejoined = guest.evaluate(
        """() => new Promise((resolve) => {
          const client = window.gameserverLobby.client;
          client.addEventListener("rejoin", ({ detail }) => resolve(
            [detail.roomId, detail.room?.id ?? null, detail.error?.code ?? null],
          ), { once: true });
          client.socket.close();
        })"""
    )
    assert rejoined == [room_id, room_id, None]

    move(guest, player, 1, "X")
    move(player, guest, 4, "O")
    move(guest, player, 2, "X")
    expect(guest.get_by_test_id("ttt-status")).to_have_text("You won!")
    expect(player.get_by_test_id("ttt-status")).to_have_text(f"{name} won.")
    for index in (0, 1, 2):
        expect(cell(player, index)).to_have_class(re.compile(r"\bwin\b"))
    expect(player.get_by_test_id("room-state")).to_have_text("finished")
    sent = [json.loads(p) for way, p in guest_frames if way == "sent"]
    assert [m["data"] for m in sent if m["type"] == "QUICK_JOIN"] == [
        {"game": "nope"},
        {"game": "tictactoe"},
    ]
    assert [m.get("room_id") for m in sent if m["type"] == "JOIN_ROOM"] == [room_id]


#: Runs in the page: the client library on its own, against the server.
CLIENT_SCRIPT = """
async ({ name, password, format }) => {
  const { GameClient, decodeToken } = await import("/static/gameserver.js");
  const out = {};
  // A wire format the client does not know is refused at once.
  try {
    new GameClient({ format: "nope" });
  } catch (e) {
    out.badFormat = [e.name, e.code];
  }
  const store = new Map();
  const storage = {
    getItem: (k) => store.get(k) ?? null,
    setItem: (k, v) => store.set(k, v),
    removeItem: (k) => store.delete(k),
  };
  const client = new GameClient({ storage, minReconnectDelay: 100, format });
  const states = [];
  client.addEventListener("statechange", (e) => states.push(e.detail.state));
  const errors = [];
  client.addEventListener("error", (e) => errors.push([e.detail.code, e.detail.requestType]));
  const rejoins = [];
  client.addEventListener("rejoin", (e) => rejoins.push(e.detail.roomId));

  await client.register(name, password);
  try {
    await client.register(name, password);
  } catch (e) {
    out.taken = [e.code, e.status];
  }
  await client.login(name, password);
  out.stored = JSON.parse(store.get("gameserver.session")).username;
  const claims = decodeToken(client.session.access);
  out.lifetime = claims.exp - claims.iat;

  // An access token that has expired (by its exp claim) is refreshed first.
  const forge = (exp) =>
    "e30." + btoa(JSON.stringify({ exp, iat: exp - 300, sub: "1" })).replace(/=+$/, "") + ".x";
  client.session.access = forge(Math.floor(Date.now() / 1000) - 60);
  out.games = (await client.listGames()).map((g) => g.name);
  const page = await client.listRooms();
  out.refreshed = decodeToken(client.session.access).exp > Date.now() / 1000;
  // A token the server refuses (bad signature, far exp) is refreshed on 401.
  client.session.access = forge(Math.floor(Date.now() / 1000) + 3600);
  const room = await client.createRoom({ name: "js", game: "chat", password: "pass" });
  out.createdAfter401 = room.name;

  // The socket's VALIDATE_CONNECTION refused (4001): refresh, then connect.
  client.session.access = forge(Math.floor(Date.now() / 1000) + 3600);
  out.user = (await client.connect()).username;
  out.state = client.state;
  out.format = client.format;
  out.protocol = client.socket.protocol;
  out.offset = Math.abs(client.clockOffset);

  try {
    await client.join(987654);
  } catch (e) {
    out.missing = [e.name, e.code, e.detail];
  }
  // The owner needs no password (README): a wrong one is ignored.
  out.ownerJoined = (await client.join(room.id, "nope")).id === room.id;
  const joined = await client.join(room.id, "pass");
  out.joined = joined.id === room.id;

  const heard = new Promise((resolve) => client.on("CHAT_MESSAGE", (m) => resolve(m.data.text)));
  client.send("CHAT_MESSAGE", room.id, { text: "hello from js" });
  out.chat = await heard;

  // An ERROR nobody waits for is an "error" event with code and request type.
  const errored = new Promise((resolve) =>
    client.addEventListener("error", (e) => resolve(e.detail), { once: true }),
  );
  client.send("NO_SUCH_TYPE", room.id, {});
  const error = await errored;
  out.unknown = [error.code, error.requestType, error.roomId === room.id];

  // A request/reply pair that fails: START_GAME by the owner of a chat room
  // is fine, but a second one is refused with the server's code.
  await client.request("START_GAME", room.id, {}, { reply: "GAME_STARTED" });
  try {
    await client.request("START_GAME", room.id, {}, { reply: "GAME_STARTED" });
  } catch (e) {
    out.startAgain = e.code;
  }

  // Drop the socket: the client reconnects, validates, rejoins the room,
  // resuming from the last seq it saw (nothing was missed: no CHAT_HISTORY).
  const back = new Promise((resolve) =>
    client.addEventListener("rejoin", (e) => resolve(e.detail), { once: true }),
  );
  const histories = [];
  client.on("CHAT_HISTORY", (m) => histories.push(m.data.messages.length));
  const lastSeq = client.lastSeq(room.id);
  client.socket.close();
  const rejoined = await back;
  out.resumed = [rejoined.resumed, rejoined.spectator, Number.isInteger(lastSeq)];
  out.histories = histories;
  out.rejoins = [...rejoins];
  out.states = [...states];
  out.rooms = client.rooms;
  const again = new Promise((resolve) => client.on("CHAT_MESSAGE", (m) => m.data.text === "still here" && resolve(true)));
  client.send("CHAT_MESSAGE", room.id, { text: "still here" });
  out.again = await again;

  await client.leave(room.id);
  out.roomsAfterLeave = client.rooms;
  client.close();
  out.closed = client.state;
  out.errors = errors;
  client.logout();
  out.storedAfterLogout = store.has("gameserver.session");
  return out;
}
"""


@pytest.mark.parametrize("wire_format", ["json", "msgpack"])
def test_javascript_client_library(server: Server, contexts, wire_format: str) -> None:
    _, page = contexts()
    page.goto(server.url + "/")
    name = f"jsclient-{wire_format}"
    out = page.evaluate(
        CLIENT_SCRIPT, {"name": name, "password": PASSWORD, "format": wire_format}
    )
    assert out["badFormat"] == ["GameServerError", "bad_format"]
    assert out["taken"] == ["username_taken", 409]
    assert out["stored"] == name
    assert out["lifetime"] == 300
    assert set(out["games"]) == {"chat", "tictactoe", "trivia"}
    assert out["refreshed"] is True
    assert out["createdAfter401"] == "js"
    assert out["user"] == name
    assert out["state"] == "open"
    assert out["format"] == wire_format
    assert out["protocol"] == ("gameserver.msgpack" if wire_format == "msgpack" else "")
    assert out["offset"] < 5
    assert out["missing"][:2] == ["GameServerError", "room_not_found"]
    assert out["missing"][2]
    assert out["ownerJoined"] is True
    assert out["joined"] is True
    assert out["chat"] == "hello from js"
    assert out["unknown"] == ["unknown_type", "NO_SUCH_TYPE", True]
    assert out["startAgain"] == "game_started"
    assert out["resumed"] == [True, False, True]
    assert out["histories"] == []
    assert out["rooms"] == [out["rejoins"][0]]
    assert out["states"][:2] == ["connecting", "open"]
    assert "reconnecting" in out["states"]
    assert out["states"][-1] == "open"
    assert out["again"] is True
    assert out["roomsAfterLeave"] == []
    assert out["closed"] == "closed"
    assert out["storedAfterLogout"] is False


def test_reconnecting_rejoins_every_room_before_it_is_open(
    server: Server, contexts
) -> None:
    """After a drop every JOIN_ROOM is sent before the state is "open";
    connect() meanwhile waits for the connection; a room that is gone is
    reported once, as a "rejoin" event (not also as an "error")."""
    _, page = contexts()
    page.goto(server.url + "/")
    out = page.evaluate(
        """async ({ name, password }) => {
          const { GameClient } = await import("/static/gameserver.js");
          const sent = [];
          class RecordingSocket extends WebSocket {
            send(data) {
              sent.push(JSON.parse(data));
              return super.send(data);
            }
          }
          // The first retry comes 1 to 2 s after the drop: time to delete a room.
          const client = new GameClient({ WebSocket: RecordingSocket, minReconnectDelay: 2000 });
          const errors = [];
          client.addEventListener("error", (e) => errors.push(e.detail.code));
          const sessions = [];
          client.addEventListener("session", (e) => sessions.push(e.detail));
          await client.register(name, password);
          await client.login(name, password);
          const rooms = [];
          for (const n of ["a", "b", "c"]) {
            rooms.push(await client.createRoom({ name: `rejoin ${n}`, game: "chat" }));
          }
          await client.connect();
          for (const room of rooms) await client.join(room.id);

          let dropped = null;
          let joinsWhenOpen = null;
          client.addEventListener("statechange", (e) => {
            if (e.detail.state === "open" && dropped !== null && joinsWhenOpen === null) {
              joinsWhenOpen = sent.slice(dropped).filter((m) => m.type === "JOIN_ROOM").map((m) => m.room_id);
            }
          });
          const rejoins = new Promise((resolve) => {
            const seen = [];
            client.addEventListener("rejoin", ({ detail }) => {
              seen.push([detail.roomId, detail.error?.code ?? null, detail.room?.id ?? null]);
              if (seen.length === rooms.length) resolve(seen);
            });
          });
          const reconnecting = new Promise((resolve) =>
            client.addEventListener("statechange", (e) => e.detail.state === "reconnecting" && resolve()),
          );
          dropped = sent.length;
          client.socket.close();
          await reconnecting;
          const connectedAgain = client.connect().then(() => client.state);
          await client.deleteRoom(rooms[2].id);
          const out = {
            session: sessions[0],
            user: client.user,
            stateWhenConnected: await connectedAgain,
            rejoins: await rejoins,
          };
          await new Promise((resolve) => setTimeout(resolve, 200));
          out.joinsWhenOpen = joinsWhenOpen;
          out.errors = errors;
          out.rooms = client.rooms;
          out.ids = rooms.map((room) => room.id);
          client.logout();
          return out;
        }""",
        {"name": "rejoiner", "password": PASSWORD},
    )
    a, b, c = out["ids"]
    assert out["session"] == {"user": out["user"]}
    assert out["user"]["username"] == "rejoiner"
    assert out["stateWhenConnected"] == "open"
    assert out["joinsWhenOpen"] == [a, b, c]
    assert sorted(out["rejoins"]) == [
        [a, None, a],
        [b, None, b],
        [c, "room_not_found", None],
    ]
    assert out["errors"] == []
    assert out["rooms"] == [a, b]


def test_closing_during_the_refresh_after_a_refused_token(
    server: Server, contexts
) -> None:
    """close() or logout() while the client refreshes a token the socket
    refused (4001) leaves it closed, not stuck "connecting"."""
    _, page = contexts()
    page.goto(server.url + "/")
    out = page.evaluate(
        """async ({ name, password }) => {
          const { GameClient } = await import("/static/gameserver.js");
          """
        + FORGE
        + """
          const out = {};
          for (const how of ["close", "logout"]) {
            let client = null;
            let refreshed = null;
            const fetch = (url, init) => {
              const response = globalThis.fetch(url, init);
              if (String(url).includes("/api/token/refresh/") && !refreshed) {
                refreshed = response;
                client[how](); // while the refresh is on its way
              }
              return response;
            };
            client = new GameClient({ fetch });
            if (how === "close") await client.register(name, password);
            await client.login(name, password);
            const states = [];
            client.addEventListener("statechange", (e) => states.push(e.detail.state));
            // A token the server refuses: the socket is closed with 4001.
            client.session.access = forge({ iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 3600 });
            const connected = client.connect().then(() => "open", (e) => e.code);
            while (!refreshed) await new Promise((resolve) => setTimeout(resolve, 10));
            await refreshed;
            await new Promise((resolve) => setTimeout(resolve, 300));
            out[how] = { state: client.state, states, connect: await connected, loggedIn: client.loggedIn };
            client.logout();
          }
          return out;
        }""",
        {"name": "closer", "password": PASSWORD},
    )
    assert out["close"] == {
        "state": "closed",
        "states": ["connecting", "closed"],
        "connect": "closed",
        "loggedIn": True,
    }
    assert out["logout"] == {
        "state": "closed",
        "states": ["connecting", "closed"],
        "connect": "closed",
        "loggedIn": False,
    }


def test_reconnect_backoff_grows_with_jitter_up_to_a_cap(
    server: Server, contexts
) -> None:
    """Against a socket that never opens, the client retries after delays that
    double up to maxReconnectDelay, half of each one random; its window
    "online" listener exists only while it wants a connection."""
    _, page = contexts()
    page.goto(server.url + "/")
    out = page.evaluate(
        """async () => {
          const { GameClient } = await import("/static/gameserver.js");
          """
        + FORGE
        + """
          const now = Math.floor(Date.now() / 1000);
          const session = JSON.stringify({
            username: "nobody", userId: 1, refresh: "r", access: forge({ iat: now, exp: now + 3600 }),
          });
          const storage = { getItem: () => session, setItem() {}, removeItem() {} };
          const online = { added: 0, removed: 0 };
          const add = window.addEventListener;
          const remove = window.removeEventListener;
          window.addEventListener = function (type, ...rest) {
            if (type === "online") online.added += 1;
            return add.call(this, type, ...rest);
          };
          window.removeEventListener = function (type, ...rest) {
            if (type === "online") online.removed += 1;
            return remove.call(this, type, ...rest);
          };
          const run = async (random) => {
            const opened = [];
            class NeverOpens {
              constructor() {
                opened.push(performance.now());
                this.readyState = 0;
                setTimeout(() => {
                  this.readyState = 3;
                  this.onclose?.({ code: 1006 });
                }, 0);
              }
              send() {}
              close() {}
            }
            const realRandom = Math.random;
            Math.random = () => random;
            const client = new GameClient({
              storage, WebSocket: NeverOpens, minReconnectDelay: 100, maxReconnectDelay: 800,
            });
            const states = new Set();
            client.addEventListener("statechange", (e) => states.add(e.detail.state));
            try {
              client.connect().catch(() => {});
              while (opened.length < 6) await new Promise((resolve) => setTimeout(resolve, 10));
            } finally {
              Math.random = realRandom;
              client.close();
            }
            const listening = { ...online };
            // Closed: the browser coming back online opens nothing.
            window.dispatchEvent(new Event("online"));
            await new Promise((resolve) => setTimeout(resolve, 50));
            client.logout();
            return {
              gaps: opened.slice(1).map((t, i) => t - opened[i]),
              after: opened.length,
              states: [...states],
              listening,
            };
          };
          const idle = new GameClient({ storage });
          const out = { idle: { ...online } };
          out.low = await run(0);
          out.high = await run(0.999);
          out.online = online;
          return out;
        }"""
    )
    # Equal jitter: each delay is half its ceiling plus up to as much again at
    # random; ceilings double from 100 ms and stop at 800 ms.
    slack = 150  # timers are never early, but may be late on a busy machine
    for run, ceilings in (
        (out["low"], [50, 100, 200, 400, 400]),
        (out["high"], [100, 200, 400, 800, 800]),
    ):
        assert len(run["gaps"]) == 5
        for gap, expected in zip(run["gaps"], ceilings, strict=True):
            assert expected - 2 <= gap <= expected + slack, (run["gaps"], ceilings)
        assert run["after"] == 6
        assert run["states"] == ["connecting", "closed"]
    # The random half: the same attempts wait about twice as long.
    assert sum(out["high"]["gaps"]) > 1.5 * sum(out["low"]["gaps"])
    # No listener for a client that never connected; one per connect(),
    # removed by close().
    assert out["idle"] == {"added": 0, "removed": 0}
    assert out["low"]["listening"] == {"added": 1, "removed": 1}
    assert out["online"] == {"added": 2, "removed": 2}


def test_the_access_token_is_refreshed_by_a_timer_before_it_expires(
    short_lived_server: Server, contexts
) -> None:
    """With 10-second access tokens the client refreshes a fifth of the
    lifetime before expiry, with no API call asking for it, once."""
    server = short_lived_server
    _, page = contexts()
    page.goto(server.url + "/")
    requests = api_requests(page)
    out = page.evaluate(
        """async ({ name, password }) => {
          const { GameClient, decodeToken } = await import("/static/gameserver.js");
          const client = new GameClient();
          await client.register(name, password);
          await client.login(name, password);
          const user = await client.connect();
          const first = client.session.access;
          const started = performance.now();
          while (client.session.access === first && performance.now() - started < 14000) {
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
          const out = {
            user: user.username,
            after: (performance.now() - started) / 1000,
            leftOnTheOldToken: decodeToken(first).exp - client.serverNow(),
            newer: decodeToken(client.session.access).iat > decodeToken(first).iat,
          };
          await new Promise((resolve) => setTimeout(resolve, 1000));
          out.state = client.state;
          client.logout();
          return out;
        }""",
        {"name": "ticker", "password": PASSWORD},
    )
    assert out["user"] == "ticker"
    assert out["newer"] is True
    # Refreshed ~2 s (a fifth of 10 s) before the old token's expiry.
    assert 0.5 < out["leftOnTheOldToken"] < 3.5, out
    assert 5 < out["after"] < SHORT_LIFETIME, out
    assert out["state"] == "open"
    refreshes = [url for url in requests if "/api/token/refresh/" in url]
    others = [url for url in requests if "/api/token/refresh/" not in url]
    assert len(refreshes) == 1, requests
    assert [url.split("/api/")[1] for url in others] == ["users/", "token/"]


def test_a_page_clock_ahead_of_the_server_does_not_refresh_in_a_loop(
    server: Server, contexts
) -> None:
    """The client learns the server's clock from each token's ``iat``: a page
    an hour ahead does not take every token for an expired one."""
    _, page = contexts()
    page.add_init_script(script=CLOCK_AHEAD)
    page.goto(server.url + "/")
    refreshes = api_requests(page, "/api/token/refresh/")
    out = page.evaluate(
        """async ({ name, password }) => {
          const { GameClient } = await import("/static/gameserver.js");
          const client = new GameClient();
          await client.register(name, password);
          await client.login(name, password);
          await client.listRooms();
          await new Promise((resolve) => setTimeout(resolve, 3000));
          await client.listRooms();
          const out = { offset: client.clockOffset };
          client.logout();
          return out;
        }""",
        {"name": "earlybird", "password": PASSWORD},
    )
    assert len(refreshes) <= 1, len(refreshes)
    assert abs(out["offset"] + 3600) < 3, out


#: An init script: the list of games answers a second late.
SLOW_GAMES = """
(() => {
  const fetch = window.fetch.bind(window);
  window.gamesAnswered = false;
  window.fetch = async (input, init) => {
    if (!String(input).includes("/api/games/")) return fetch(input, init);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    try {
      return await fetch(input, init);
    } finally {
      window.gamesAnswered = true;
    }
  };
})();
"""


def test_a_stored_session_that_cannot_be_refreshed_shows_the_login_form(
    server: Server, contexts
) -> None:
    """A reload with a stored session whose access token has expired and
    whose refresh token the server refuses: the login form, saying why, and
    not an empty lobby drawn over it once the games are loaded."""
    _, page = contexts()
    page.add_init_script(script=SLOW_GAMES)
    page.goto(server.url + "/")
    expect(page.get_by_test_id("auth-view")).to_be_visible()
    page.evaluate(
        "() => {"
        + FORGE
        + """
          const now = Math.floor(Date.now() / 1000);
          const session = JSON.stringify({
            username: "ghost", userId: 1, refresh: "garbage",
            access: forge({ iat: now - 400, exp: now - 100 }),
          });
          localStorage.setItem("gameserver.session", session);
          sessionStorage.setItem("gameserver.session", session);
        }"""
    )
    refreshes = api_requests(page, "/api/token/refresh/")
    page.reload()
    expect(page.get_by_test_id("auth-error")).to_have_text(
        "Your session has expired: log in again."
    )
    page.wait_for_function("() => window.gamesAnswered === true")
    page.wait_for_timeout(500)
    expect(page.get_by_test_id("auth-view")).to_be_visible()
    expect(page.get_by_test_id("lobby-view")).to_be_hidden()
    expect(page.get_by_test_id("whoami")).to_be_hidden()
    assert len(refreshes) == 1
    # And one can log in again from there.
    server.user("ghost")
    page.get_by_test_id("auth-username").fill("ghost")
    page.get_by_test_id("auth-password").fill(PASSWORD)
    page.get_by_test_id("login").click()
    expect(page.get_by_test_id("lobby-view")).to_be_visible()
    expect(page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "open"
    )


#: An init script: once ``window.slowFirstPage`` is set, the first page of
#: rooms answers two seconds late.
SLOW_FIRST_PAGE = r"""
(() => {
  const fetch = window.fetch.bind(window);
  window.slowFirstPage = false;
  window.firstPageAsked = 0;
  window.fetch = async (input, init) => {
    if (window.slowFirstPage && /\/api\/rooms\/\?page=1(&|$)/.test(String(input))) {
      window.firstPageAsked += 1;
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
    return fetch(input, init);
  };
})();
"""


def test_paging_while_the_poll_is_out(server: Server, contexts) -> None:
    """A click on "next" while the poll's request for page 1 is out fetches
    page 2 at once, and the late page 1 is not drawn under "page 2"."""
    owner = server.user("pager")
    for n in range(12):
        status, _ = server.api(
            "POST", "/api/rooms/", {"name": f"Paged {n}", "game": "chat"}, owner
        )
        assert status == 201
    _, page = contexts()
    page.add_init_script(script=SLOW_FIRST_PAGE)
    sign_up(page, server.url, "reader")
    expect(room_row(page, "Paged 11")).to_be_visible()  # the newest come first
    expect(page.get_by_test_id("page-next")).to_be_enabled()
    page.evaluate(
        """() => {
          window.drawn = [];
          const list = document.querySelector('[data-testid="room-list"]');
          new MutationObserver(() =>
            window.drawn.push({
              label: document.querySelector('[data-testid="page-info"]').textContent,
              titles: [...list.querySelectorAll('[data-testid="room-title"]')].map((e) => e.textContent),
            }),
          ).observe(list, { childList: true });
          window.slowFirstPage = true;
        }"""
    )
    page.wait_for_function("() => window.firstPageAsked > 0")  # the poll's request
    page.get_by_test_id("page-next").click()
    expect(page.get_by_test_id("page-info")).to_have_text(
        re.compile(r"^page 2 of \d+$"), timeout=1500
    )
    expect(room_row(page, "Paged 0")).to_be_visible()
    page.wait_for_timeout(2500)  # the late page 1 has come back by now
    expect(page.get_by_test_id("page-info")).to_have_text(re.compile(r"^page 2 "))
    expect(room_row(page, "Paged 0")).to_be_visible()
    drawn = page.evaluate("window.drawn")
    assert drawn[-1]["label"].startswith("page 2 "), drawn
    for snapshot in drawn:
        if snapshot["label"].startswith("page 2 "):
            assert "Paged 11" not in snapshot["titles"], snapshot


def quick_game(
    server: Server, contexts, player_name: str
) -> tuple[Page, Page, str, int]:
    """A guest (on a phone) and a player quick-join one tic-tac-toe game: the
    guest's page, the player's, the guest's name (the guest is X) and the
    room's id."""
    _, guest = contexts(**PHONE)
    _, player = contexts()
    guest.goto(server.url + "/")
    guest.get_by_test_id("guest-play").click()
    expect(guest.get_by_test_id("username")).to_have_text(re.compile(r"^guest-"))
    name = guest.get_by_test_id("username").text_content()
    assert name
    sign_up(player, server.url, player_name)
    guest.get_by_test_id("play-now-tictactoe").click()
    expect(guest.get_by_test_id("ttt-status")).to_have_text(
        "Waiting for a second player…"
    )
    player.get_by_test_id("play-now-tictactoe").click()
    expect(guest.get_by_test_id("ttt-status")).to_have_text("Your turn: you are X.")
    expect(player.get_by_test_id("ttt-status")).to_have_text(f"{name}'s turn (X).")
    (room_id,) = guest.evaluate("window.gameserverLobby.client.rooms")
    return guest, player, name, room_id


def room_row_by_id(page: Page, room_id: int):
    """A room of the list, by id: every quick room has the same name."""
    return page.locator(f'[data-testid="room"][data-room-id="{room_id}"]')


def watch(page: Page, room_id: int) -> None:
    """Watch a room from the list: the room view, marked "watching"."""
    row = room_row_by_id(page, room_id)
    expect(row.get_by_test_id("room-watch")).to_be_visible()
    row.get_by_test_id("room-watch").click()
    expect(page.get_by_test_id("room-view")).to_be_visible()
    expect(page.get_by_test_id("room-watching")).to_be_visible()
    expect(page.get_by_test_id("room-view")).to_have_attribute("data-spectator", "yes")


def test_a_spectator_watches_a_quick_game_of_a_guest_and_a_player(
    quick_server: Server, contexts, shots: Path
) -> None:
    server = quick_server
    guest, player, name, room_id = quick_game(server, contexts, "watched-player")
    move(guest, player, 0, "X")
    say(player, "good game")

    # A third user finds the game in the list, playing: no Join, but Watch.
    watcher_context, watcher = contexts(**PHONE)
    sign_up(watcher, server.url, "watcher")
    row = room_row_by_id(watcher, room_id)
    expect(row.get_by_test_id("room-status")).to_have_text("playing")
    expect(row.get_by_test_id("room-join")).to_have_count(0)
    assert fits(watcher)  # the list, with its Watch buttons, on a phone
    watcher.screenshot(path=str(shots / "lobby-watch-phone.png"))
    watch(watcher, room_id)
    expect(watcher.get_by_test_id("leave")).to_have_text("Stop watching")
    # The board as it is (the game's on_spectate), the chat's backlog.
    expect(cell(watcher, 0)).to_have_text("X")
    expect(watcher.get_by_test_id("ttt-status")).to_have_text(
        "watched-player's turn (O)."
    )
    expect(watcher.get_by_test_id("chat-message").last).to_contain_text("good game")
    expect(member(watcher, name)).to_be_visible()
    expect(member(watcher, "watcher")).to_have_count(0)  # not a player
    assert fits(watcher)
    # The players see someone watching; the watcher counts itself.
    for page in (guest, player, watcher):
        expect(page.get_by_test_id("spectator-count")).to_have_text("1 watching")
    watcher.screenshot(path=str(shots / "spectator-phone.png"), full_page=True)
    expect(guest.get_by_test_id("chat-system").last).to_have_text(
        "watcher is watching."
    )

    # The moves and the chat reach the watcher; it chats too.
    move(player, guest, 4, "O")
    expect(cell(watcher, 4)).to_have_text("O")
    say(guest, "nice one")
    expect(watcher.get_by_test_id("chat-message").last).to_contain_text("nice one")
    say(watcher, "go X!")
    for page in (guest, player):
        expect(page.get_by_test_id("chat-message").last).to_contain_text("go X!")

    # It cannot move: the board's buttons are off, and a MOVE sent anyway is
    # refused by the server (ERROR "spectator"), said in words.
    for index in range(9):
        expect(cell(watcher, index)).to_be_disabled()
    watcher.evaluate(
        """() => {
          const { client } = window.gameserverLobby;
          client.send("MOVE", client.rooms[0], { cell: 8 });
        }"""
    )
    expect(watcher.get_by_test_id("game-error")).to_have_text(
        "You are watching this game: only its players can move."
    )
    expect(cell(guest, 8)).to_have_text("")

    # Another tab of the watcher's lists the room with its spectator.
    second = watcher_context.new_page()
    second.js_errors = []
    second.on("pageerror", lambda error: second.js_errors.append(str(error)))
    second.goto(server.url + "/")
    expect(
        room_row_by_id(second, room_id).get_by_test_id("room-spectators")
    ).to_have_text("1 watching")
    second.close()

    # The game ends as the watcher sees it; it is offered no rematch.
    move(guest, player, 1, "X")
    move(player, guest, 5, "O")
    move(guest, player, 2, "X")
    expect(watcher.get_by_test_id("ttt-status")).to_have_text(f"{name} (X) won.")
    expect(watcher.get_by_test_id("room-state")).to_have_text("finished")
    expect(guest.get_by_test_id("rematch")).to_be_visible()
    expect(watcher.get_by_test_id("rematch")).to_have_count(0)

    # Stop watching: back to the list; the players see it go.
    watcher.get_by_test_id("leave").click()
    expect(watcher.get_by_test_id("lobby-view")).to_be_visible()
    expect(guest.get_by_test_id("chat-system").last).to_have_text(
        "watcher stopped watching."
    )
    expect(guest.get_by_test_id("spectator-count")).to_be_hidden()


#: In the page: note each "rejoin" event's detail, for the test to read.
NOTE_REJOINS = """() => {
  window.rejoins = [];
  window.gameserverLobby.client.addEventListener("rejoin", ({ detail }) =>
    window.rejoins.push({
      roomId: detail.roomId,
      resumed: detail.resumed ?? null,
      spectator: detail.spectator ?? null,
      error: detail.error?.code ?? null,
    }),
  );
}"""


def drop(context: BrowserContext, page: Page) -> None:
    """Take the page offline and close its socket: it is reconnecting."""
    context.set_offline(True)
    page.evaluate("window.gameserverLobby.client.socket.close()")
    expect(page.get_by_test_id("connection-banner")).to_contain_text("reconnecting")


def back(context: BrowserContext, page: Page) -> None:
    context.set_offline(False)
    expect(page.get_by_test_id("connection-banner")).to_be_hidden()
    expect(page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "open"
    )


def chat_lines(page: Page, text: str):
    return page.get_by_test_id("chat-message").filter(has_text=text)


def test_a_dropped_watcher_and_player_resume_with_no_gap(
    quick_server: Server, contexts
) -> None:
    """The watcher's and a player's pages drop and come back: each rejoins
    with `resume` (and the watcher as a spectator), the server sends what
    they missed, and the chat shows it once, with no gap."""
    server = quick_server
    guest, player, name, room_id = quick_game(server, contexts, "resume-player")
    move(guest, player, 0, "X")
    watcher_context, watcher = contexts()
    frames = websocket_frames(watcher)
    sign_up(watcher, server.url, "resume-watcher")
    watch(watcher, room_id)
    expect(cell(watcher, 0)).to_have_text("X")
    say(guest, "before the drop")
    expect(chat_lines(watcher, "before the drop")).to_have_count(1)
    watcher.evaluate(NOTE_REJOINS)

    # The watcher drops; the game and the chat go on without it.
    drop(watcher_context, watcher)
    expect(player.get_by_test_id("chat-system").last).to_have_text(
        "resume-watcher stopped watching."
    )
    move(player, guest, 4, "O")
    say(guest, "while you were away")
    say(player, "still away")
    expect(chat_lines(guest, "still away")).to_have_count(1)
    back(watcher_context, watcher)

    # Back as a spectator, with what it missed, once each, in order.
    expect(cell(watcher, 4)).to_have_text("O")
    expect(chat_lines(watcher, "still away")).to_have_count(1)
    for text in ("before the drop", "while you were away"):
        expect(chat_lines(watcher, text)).to_have_count(1)
    texts = watcher.get_by_test_id("chat-message").all_inner_texts()
    expected = [
        f"{name} before the drop",
        f"{name} while you were away",
        "resume-player still away",
    ]
    assert len(texts) == 3, texts
    assert all(t.endswith(e) for t, e in zip(texts, expected, strict=True)), texts
    expect(watcher.get_by_test_id("room-watching")).to_be_visible()
    for index in range(9):
        expect(cell(watcher, index)).to_be_disabled()
    (rejoin,) = watcher.evaluate("window.rejoins")
    assert rejoin["spectator"] is True and rejoin["error"] is None
    assert rejoin["resumed"] is True, rejoin
    joins = [
        json.loads(payload)
        for way, payload in frames
        if way == "sent" and json.loads(payload)["type"] == "JOIN_ROOM"
    ]
    assert joins[0]["data"] == {"spectate": True}
    resume = joins[-1]["data"]
    assert resume["spectate"] is True and isinstance(resume["resume"], int), resume
    # Every room message it took had a seq above the one before.
    seqs = [
        message["seq"]
        for message in (
            json.loads(payload) for way, payload in frames if way == "received"
        )
        if "seq" in message
    ]
    assert seqs == sorted(set(seqs)) and resume["resume"] in seqs

    # A player drops mid-game too: back in its seat, the board and the chat
    # as they are, and it plays on.
    guest_context = guest.context
    guest.evaluate(NOTE_REJOINS)
    drop(guest_context, guest)
    expect(member(player, name)).to_have_attribute("data-online", "no")
    say(player, "your turn, when you are back")
    say(watcher, "they dropped")
    back(guest_context, guest)
    expect(member(player, name)).to_have_attribute("data-online", "yes")
    for text in ("your turn, when you are back", "they dropped", "still away"):
        expect(chat_lines(guest, text)).to_have_count(1)
    (rejoin,) = guest.evaluate("window.rejoins")
    assert rejoin["resumed"] is True and rejoin["spectator"] is False, rejoin
    expect(guest.get_by_test_id("ttt-status")).to_have_text("Your turn: you are X.")
    move(guest, player, 1, "X")
    expect(cell(watcher, 1)).to_have_text("X")
    assert fits(guest)


def test_the_client_library_drops_room_messages_seen_already(
    server: Server, contexts
) -> None:
    """gameserver.js keeps the highest seq of each room: a message whose seq
    is not above it reaches no listener; rooms are counted apart, and a
    message with no seq always passes."""
    _, page = contexts()
    page.goto(server.url + "/")
    out = page.evaluate(
        """async () => {
          const { GameClient } = await import("/static/gameserver.js");
          const client = new GameClient();
          const heard = [];
          client.on("NOTE", (m) => heard.push(m.data.t));
          const deliver = (message) => client._receive(JSON.stringify(message));
          deliver({ seq: 10, type: "NOTE", room_id: 1, data: { t: "a" } });
          deliver({ seq: 10, type: "NOTE", room_id: 1, data: { t: "same seq" } });
          deliver({ seq: 9, type: "NOTE", room_id: 1, data: { t: "older" } });
          deliver({ seq: 12, type: "NOTE", room_id: 1, data: { t: "b" } });
          deliver({ seq: 3, type: "NOTE", room_id: 2, data: { t: "other room" } });
          deliver({ type: "NOTE", room_id: 1, data: { t: "no seq" } });
          return { heard, one: client.lastSeq(1), two: client.lastSeq(2), three: client.lastSeq(3) };
        }"""
    )
    assert out == {
        "heard": ["a", "b", "other room", "no seq"],
        "one": 12,
        "two": 3,
        "three": None,
    }
