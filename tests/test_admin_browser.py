"""``gameserver.js`` in Chromium when an admin kicks or bans its user: it
stops, instead of reconnecting at once (which would undo a kick) or
retrying a banned token for ever."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.test_browser import PASSWORD, Server, browser, contexts, run_server

__all__ = ["browser", "contexts"]  # fixtures, used by name

SETUP = """async ({ name, password }) => {
  const { GameClient } = await import("/static/gameserver.js");
  window.opened = 0;
  class CountingSocket extends WebSocket {
    constructor(...args) {
      super(...args);
      window.opened += 1;
    }
  }
  const client = new GameClient({ WebSocket: CountingSocket, minReconnectDelay: 100 });
  window.client = client;
  window.errors = [];
  client.addEventListener("error", (e) => window.errors.push(e.detail.code));
  await client.register(name, password);
  await client.login(name, password);
  await client.connect();
  return client.user.id;
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from run_server(tmp_path_factory, access_lifetime=300, admins=["boss"])


def test_a_kicked_or_banned_client_stops(server: Server, contexts) -> None:
    boss = server.user("boss")
    _, page = contexts()
    page.goto(server.url + "/")
    user_id = page.evaluate(SETUP, {"name": "kickme", "password": PASSWORD})
    assert page.evaluate("window.client.state") == "open"

    status, body = server.api("POST", f"/api/admin/users/{user_id}/kick/", token=boss)
    assert (status, body) == (200, {"kicked": user_id})
    page.wait_for_function("window.errors.includes('kicked')")
    page.wait_for_timeout(1000)  # ten times the reconnect delay: none came
    assert page.evaluate("[window.client.state, window.opened]") == ["closed", 1]

    # Connecting again is the page's choice; then a ban.
    page.evaluate("window.client.connect()")
    assert page.evaluate("[window.client.state, window.opened]") == ["open", 2]
    status, _ = server.api("POST", f"/api/admin/users/{user_id}/ban/", token=boss)
    assert status == 200
    page.wait_for_function("window.errors.includes('banned')")
    refused = page.evaluate(
        "window.client.connect().then(() => 'connected', (e) => e.code)"
    )
    assert refused == "banned"
    page.wait_for_timeout(1000)
    assert page.evaluate("[window.client.state, window.opened]") == ["closed", 3]

    status, _ = server.api("POST", f"/api/admin/users/{user_id}/unban/", token=boss)
    assert status == 200
    assert (
        page.evaluate("window.client.connect().then(() => window.client.state)")
        == "open"
    )
