"""End-to-end: the monitor page at ``/admin/`` in a real headless Chromium.

The server process, the browser and the screenshots are ``test_browser``'s
(its server run with ``Settings(admins=...)``); the players are lobby pages
in browser contexts of their own, over real sockets. In memory one server
process; on Redis two sharing one Redis: the admin watches process A while
one player plays there and the other on process B.

To refresh the README's picture, run
``GAMESERVER_SCREENSHOTS=docs python -m pytest tests/test_admin_page.py``.
"""

# The fixtures imported from test_browser come back as test arguments.
# ruff: noqa: F811

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_browser import (  # noqa: F401 - fixtures
    PASSWORD,
    PHONE,
    Server,
    browser,
    contexts,
    create_room,
    fits,
    move,
    room_row,
    run_server,
    say,
    shots,
    sign_up,
)

try:
    from playwright.sync_api import Page, expect
except ImportError:  # pragma: no cover - reported by the browser fixture
    Page = expect = None  # type: ignore[assignment,misc]

ADMIN = "root"
#: Polls this often in the tests (ms): counts move within a second.
POLL = 500


@pytest.fixture(scope="module", params=["memory", "redis"])
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    """``(a, b)``: the server the admin watches, and the one a second player
    uses; the same one in memory, two processes on one Redis otherwise."""
    settings: dict[str, Any] = {"admins": [ADMIN]}
    if request.param == "memory":
        for server in run_server(tmp_path_factory, 300, **settings):
            yield server, server
        return
    redis = request.getfixturevalue("redis_server")
    if redis.process is None:
        redis.start()
    redis.flush()
    secret = secrets.token_urlsafe(32)
    for a in run_server(
        tmp_path_factory, 300, redis_url=redis.url, secret=secret, **settings
    ):
        for b in run_server(
            tmp_path_factory, 300, redis_url=redis.url, secret=secret, **settings
        ):
            yield a, b


# -- helpers -----------------------------------------------------------------


def token(server: Server, name: str) -> str:
    """An access token for ``name``, signed up first if need be."""
    server.api("POST", "/api/users/", {"username": name, "password": PASSWORD})
    status, tokens = server.api(
        "POST", "/api/token/", {"username": name, "password": PASSWORD}
    )
    assert status == 200, tokens
    return tokens["access"]


def log_in(page: Page, url: str, name: str) -> None:
    page.goto(f"{url}/admin/?poll={POLL}")
    expect(page.get_by_test_id("auth-view")).to_be_visible()
    page.get_by_test_id("auth-username").fill(name)
    page.get_by_test_id("auth-password").fill(PASSWORD)
    page.get_by_test_id("login").click()


def count(page: Page, name: str) -> int:
    text = page.get_by_test_id(name).text_content() or ""
    assert text.isdigit(), f"{name} shows {text!r}, not a count"
    return int(text)


def wait_count(page: Page, name: str, at_least: int) -> None:
    """Until the count shows, as digits (an empty cell is no 0), and is at
    least ``at_least``."""
    page.wait_for_function(
        "([name, least]) => {"
        " const text = document.querySelector(`[data-testid=${name}]`).textContent;"
        " return /^[0-9]+$/.test(text) && Number(text) >= least; }",
        arg=[name, at_least],
    )


def admin_row(page: Page, name: str):
    return page.get_by_test_id("room-row").filter(
        has=page.get_by_test_id("room-title").get_by_text(name, exact=True)
    )


def confirm(page: Page) -> None:
    expect(page.get_by_test_id("confirm-dialog")).to_be_visible()
    page.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("confirm-dialog")).to_be_hidden()


def join(page: Page, name: str) -> None:
    row = room_row(page, name)
    expect(row).to_be_visible()
    row.get_by_test_id("room-join").click()
    expect(page.get_by_test_id("room-name")).to_have_text(name)


def watch_socket(page: Page) -> None:
    """Record in the page the close codes of its sockets and the ROOM_CLOSED
    messages it gets."""
    page.evaluate(
        """() => {
            const client = window.gameserverLobby.client;
            window.closes = [];
            window.roomsClosed = [];
            const watch = (ws) => ws && ws.addEventListener("close", (e) => window.closes.push(e.code));
            watch(client.socket);
            client.addEventListener("statechange", () => {
                if (client.socket && !client.socket.watched) {
                    client.socket.watched = true;
                    watch(client.socket);
                }
            });
            client.socket.watched = true;
            client.on("ROOM_CLOSED", (m) => window.roomsClosed.push(m));
        }"""
    )


# -- the tests ---------------------------------------------------------------


def test_a_non_admin_is_told_so(servers: tuple[Server, Server], contexts) -> None:
    a, _ = servers
    token(a, "mallory")
    _, page = contexts()
    # A wrong password is explained and the form stays.
    page.goto(f"{a.url}/admin/")
    page.get_by_test_id("auth-username").fill("mallory")
    page.get_by_test_id("auth-password").fill("not the password")
    page.get_by_test_id("login").click()
    expect(page.get_by_test_id("auth-error")).to_have_text(
        "Wrong username or password."
    )
    log_in(page, a.url, "mallory")
    expect(page.get_by_test_id("refused-view")).to_be_visible()
    expect(page.get_by_test_id("refused-text")).to_contain_text(
        "You are logged in as mallory, who is not an admin"
    )
    expect(page.get_by_test_id("monitor-view")).to_be_hidden()
    # The API refuses the same user, whatever the page shows.
    status, body = a.api("GET", "/api/admin/rooms/", token=token(a, "mallory"))
    assert (status, body["code"]) == (403, "forbidden")
    # Another login from there.
    page.get_by_test_id("refused-logout").click()
    expect(page.get_by_test_id("auth-view")).to_be_visible()


def test_an_admin_watches_filters_inspects_closes_kicks_and_bans(
    servers: tuple[Server, Server], contexts, shots: Path
) -> None:
    a, b = servers
    redis = a is not b
    token(a, ADMIN)
    _, admin = contexts()
    log_in(admin, a.url, ADMIN)
    expect(admin.get_by_test_id("monitor-view")).to_be_visible()
    expect(admin.get_by_test_id("username")).to_have_text(ADMIN)
    expect(admin.get_by_test_id("poll-state")).to_have_attribute("data-state", "open")
    wait_count(admin, "sockets", 0)
    sockets, users = count(admin, "sockets"), count(admin, "users")
    if redis:
        expect(admin.get_by_test_id("processes")).to_have_text("2 processes")

    # Two players over real sockets: alice on the admin's process, bob on
    # the other one (the same one in memory). The counts move.
    alice_context, alice = contexts()
    bob_context, bob = contexts()
    sign_up(alice, a.url, "alice")
    sign_up(bob, b.url, "bob")
    wait_count(admin, "sockets", sockets + (1 if redis else 2))
    wait_count(admin, "users", users + (1 if redis else 2))
    # They play tictactoe, and chat: the message rate moves too.
    create_room(alice, "tictactoe", "Duel")
    join(bob, "Duel")
    expect(alice.get_by_test_id("ttt-status")).to_have_text("Your turn: you are X.")
    move(alice, bob, 4, "X")
    move(bob, alice, 0, "O")
    for n in range(4):
        say(alice, f"hello {n}")
        say(bob, f"hi {n}")
    expect(alice.get_by_test_id("chat-message").last).to_contain_text("hi 3")
    # A message rate was seen (the counter rose between two polls).
    admin.wait_for_function(
        "Number(document.querySelector('[data-testid=chart-rate]').dataset.max) > 0"
    )
    assert int(admin.get_by_test_id("chart-sockets").get_attribute("data-points")) >= 2

    # More rooms, made over HTTP, to filter.
    dave = token(a, "dave")
    for body in (
        {"name": "Board game", "game": "tictactoe"},
        {"name": "Tea room", "game": "chat", "password": "mint"},
    ):
        status, _ = a.api("POST", "/api/rooms/", body, dave)
        assert status == 201
    expect(admin_row(admin, "Tea room")).to_be_visible()
    expect(admin_row(admin, "Tea room").get_by_test_id("room-locked")).to_be_visible()
    # Newest first.
    expect(admin.get_by_test_id("room-title").first).to_have_text("Tea room")
    duel = admin_row(admin, "Duel")
    expect(duel.get_by_test_id("room-players")).to_have_text("2/2 (2 here)")
    expect(duel.get_by_test_id("room-state")).to_have_text("in game")
    expect(duel.get_by_test_id("room-owner")).to_have_text("alice")
    expect(duel.get_by_test_id("room-rate")).not_to_have_text("0.0")
    if redis:
        expect(duel.get_by_test_id("room-process")).to_be_visible()
    else:
        expect(duel.get_by_test_id("room-process")).to_be_hidden()
    admin.get_by_test_id("filter-game").select_option("tictactoe")
    expect(admin.get_by_test_id("room-row")).to_have_count(2)
    admin.get_by_test_id("filter-state").select_option("in_game")
    expect(admin.get_by_test_id("room-row")).to_have_count(1)
    expect(duel).to_be_visible()
    admin.get_by_test_id("filter-state").select_option("finished")
    expect(admin.get_by_test_id("rooms-empty")).to_be_visible()
    admin.get_by_test_id("filter-state").select_option("")
    admin.get_by_test_id("filter-game").select_option("chat")
    expect(admin.get_by_test_id("room-row")).to_have_count(1)
    expect(admin_row(admin, "Tea room")).to_be_visible()
    admin.get_by_test_id("filter-game").select_option("")
    admin.get_by_test_id("filter-search").fill("BOB")  # a player's name
    expect(admin.get_by_test_id("room-row")).to_have_count(1)
    expect(duel).to_be_visible()
    admin.get_by_test_id("filter-search").fill("tea")  # a room's name
    expect(admin.get_by_test_id("room-row")).to_have_count(1)
    expect(admin_row(admin, "Tea room")).to_be_visible()
    admin.get_by_test_id("filter-search").fill("")
    expect(admin.get_by_test_id("room-row")).to_have_count(3)
    # Sorted by name, then back.
    admin.get_by_test_id("sort-name").click()
    expect(admin.get_by_test_id("room-title").first).to_have_text("Board game")
    admin.get_by_test_id("sort-name").click()
    expect(admin.get_by_test_id("room-title").first).to_have_text("Tea room")
    admin.get_by_test_id("sort-age").click()

    # A room's state and members.
    duel.click()
    detail = admin.get_by_test_id("room-detail")
    expect(detail).to_be_visible()
    expect(admin.get_by_test_id("detail-name")).to_have_text("Duel")
    members = {
        name: detail.get_by_test_id("detail-member").and_(
            admin.locator(f'[data-user="{name}"]')
        )
        for name in ("alice", "bob")
    }
    for name in ("alice", "bob"):
        expect(members[name].get_by_test_id("presence")).to_have_text("present")
    expect(admin.get_by_test_id("detail-spectators")).to_have_text("Nobody watches.")
    expect(admin.get_by_test_id("detail-chat")).to_contain_text("bob: hi 3")
    state = admin.get_by_test_id("detail-state")
    expect(state).to_contain_text('"cells"')
    shown = json.loads(state.text_content() or "null")
    assert shown["cells"][0] == "O" and shown["cells"][4] == "X", shown
    expect(admin.get_by_test_id("detail-entries")).to_have_text("{}")
    expect(admin.get_by_test_id("detail-summary")).to_contain_text("owner alice")
    # The state follows the game.
    move(alice, bob, 8, "X")
    expect(state).to_contain_text('"X"\n  ]')
    if not redis:  # the README's picture
        admin.screenshot(path=str(shots / "admin.png"), full_page=True)

    # Bob's connection drops: he is away, his seat kept; then back.
    bob_context.set_offline(True)
    bob.evaluate("window.gameserverLobby.client.socket.close()")
    expect(members["bob"].get_by_test_id("presence")).to_have_text("away")
    expect(duel.get_by_test_id("room-players")).to_have_text("2/2 (1 here)")
    bob_context.set_offline(False)
    expect(members["bob"].get_by_test_id("presence")).to_have_text("present")

    # Errors are shown, and the page goes on: the API out of reach.
    admin.route("**/api/admin/stats/", lambda route: route.abort())
    expect(admin.get_by_test_id("poll-banner")).to_contain_text(
        "The server cannot be reached."
    )
    expect(admin.get_by_test_id("poll-state")).to_have_attribute(
        "data-state", "reconnecting"
    )
    admin.unroute("**/api/admin/stats/")
    expect(admin.get_by_test_id("poll-banner")).to_be_hidden()

    # Kick bob (on the other process with Redis): his socket closes 4003.
    watch_socket(bob)
    watch_socket(alice)
    bob_member = detail.get_by_test_id("detail-member").and_(
        admin.locator('[data-user="bob"]')
    )
    bob_member.get_by_test_id("kick").click()
    expect(admin.get_by_test_id("confirm-title")).to_have_text("Kick bob?")
    # Cancel does nothing.
    admin.get_by_test_id("confirm-cancel").click()
    expect(admin.get_by_test_id("confirm-dialog")).to_be_hidden()
    bob_member.get_by_test_id("kick").click()
    confirm(admin)
    expect(admin.get_by_test_id("notice")).to_contain_text("bob was kicked.")
    bob.wait_for_function("window.closes.includes(4003)")
    # His lobby says so, and does not come back by itself.
    expect(bob.get_by_test_id("notice-text")).to_have_text(
        "An admin closed the connection (kicked)."
    )
    expect(bob.get_by_test_id("connection-banner")).to_contain_text("Disconnected.")
    assert bob.evaluate("window.closes") == [4003]

    # Close the room: alice's page gets ROOM_CLOSED and says so.
    admin.get_by_test_id("close-room").click()
    expect(admin.get_by_test_id("confirm-title")).to_have_text("Close Duel?")
    confirm(admin)
    expect(admin.get_by_test_id("notice")).to_contain_text("Room Duel (#")
    expect(detail).to_be_hidden()
    expect(duel).to_have_count(0)
    alice.wait_for_function("window.roomsClosed.length === 1")
    assert alice.evaluate("window.roomsClosed[0].data.reason") == "closed by an admin"
    expect(alice.get_by_test_id("notice")).to_contain_text("closed by an admin")
    expect(alice.get_by_test_id("lobby-view")).to_be_visible()

    # A lookup the API refuses says why.
    admin.get_by_test_id("user-query").fill("no such name!")
    admin.get_by_test_id("user-search-submit").click()
    expect(admin.get_by_test_id("user-error")).to_contain_text("'q' must be 1 to 32")
    admin.get_by_test_id("user-query").fill("nobody-by-that-name")
    admin.get_by_test_id("user-search-submit").click()
    expect(admin.get_by_test_id("users-empty")).to_be_visible()
    expect(admin.get_by_test_id("user-error")).to_be_hidden()

    # Ban bob from the user lookup, then unban him: logins refused between.
    admin.get_by_test_id("user-query").fill("bo")
    admin.get_by_test_id("user-search-submit").click()
    found = admin.get_by_test_id("user-result").and_(admin.locator('[data-user="bob"]'))
    expect(found).to_be_visible()
    found.get_by_test_id("ban").click()
    confirm(admin)
    expect(found.get_by_test_id("user-banned")).to_be_visible()
    status, body = b.api(
        "POST", "/api/token/", {"username": "bob", "password": PASSWORD}
    )
    assert (status, body["code"]) == (403, "banned"), body
    _, banned = contexts()
    log_in(banned, b.url, "bob")
    expect(banned.get_by_test_id("auth-error")).to_have_text("This account is banned.")
    found.get_by_test_id("unban").click()
    confirm(admin)
    expect(found.get_by_test_id("user-banned")).to_have_count(0)
    status, body = b.api(
        "POST", "/api/token/", {"username": "bob", "password": PASSWORD}
    )
    assert status == 200, body
    # An admin cannot be banned: the refusal shows in the dialog.
    admin.get_by_test_id("user-query").fill(ADMIN)
    admin.get_by_test_id("user-search-submit").click()
    me = admin.get_by_test_id("user-result").and_(
        admin.locator(f'[data-user="{ADMIN}"]')
    )
    expect(me.get_by_test_id("user-admin")).to_be_visible()
    me.get_by_test_id("ban").click()
    admin.get_by_test_id("confirm-ok").click()
    expect(admin.get_by_test_id("confirm-error")).to_contain_text("cannot be banned")
    admin.get_by_test_id("confirm-cancel").click()


HOSTILE = '<img src=x onerror="window.pwned = 1"> a room'


def test_the_monitor_fits_a_phone_and_keeps_its_session(
    servers: tuple[Server, Server], contexts, shots: Path
) -> None:
    a, _ = servers
    owner = token(a, "phoebe")
    status, _ = a.api(
        "POST",
        "/api/rooms/",
        {"name": "A room with a long name", "game": "chat"},
        owner,
    )
    assert status == 201
    token(a, ADMIN)
    _, page = contexts(**PHONE)
    log_in(page, a.url, ADMIN)
    expect(page.get_by_test_id("monitor-view")).to_be_visible()
    row = admin_row(page, "A room with a long name")
    expect(row).to_be_visible()
    assert fits(page)
    row.click()
    expect(page.get_by_test_id("room-detail")).to_be_visible()
    expect(page.get_by_test_id("detail-players")).to_have_text("No players.")
    assert fits(page)
    if servers[0] is servers[1]:  # in memory, as the README's other picture
        page.screenshot(path=str(shots / "admin-phone.png"), full_page=True)

    # What users typed is shown as text, never run as HTML.
    status, _ = a.api("POST", "/api/rooms/", {"name": HOSTILE, "game": "chat"}, owner)
    assert status == 201
    admin_row(page, HOSTILE).click()  # its title is the text, whole
    expect(page.get_by_test_id("detail-name")).to_have_text(HOSTILE)
    # Put in as HTML, an <img> would be there (the CSP would only stop its
    # script): there is none, in the table or the detail.
    expect(page.locator("[data-testid=room-row] img")).to_have_count(0)
    expect(page.locator("[data-testid=room-detail] img")).to_have_count(0)

    # A reload keeps the session (the lobby's store): no login again.
    page.reload()
    expect(page.get_by_test_id("monitor-view")).to_be_visible()
    expect(page.get_by_test_id("auth-view")).to_be_hidden()
    # A session the server no longer takes (its refresh token refused too)
    # ends on the login form, saying why.
    page.evaluate(
        """() => {
            const client = window.gameserverAdmin.client;
            client._setSession({ ...client.session, access: "x.e30.x", refresh: "x.e30.x" });
        }"""
    )
    expect(page.get_by_test_id("auth-view")).to_be_visible()
    expect(page.get_by_test_id("auth-error")).to_have_text(
        "Your session has expired: log in again."
    )
    expect(page.get_by_test_id("monitor-view")).to_be_hidden()
