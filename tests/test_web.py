"""The lobby's files over plain HTTP: ``/``, ``/static/``, beside the API and ``/ws``."""

from __future__ import annotations

import email.utils
import re

import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

from gameserver import GameServer
from gameserver._http.lobby import STATIC_DIR
from gameserver.client import GameClient
from tests.conftest import make_settings


def header(response, name: str) -> str | None:
    values = response.headers.getRawHeaders(name.encode())
    return values[0].decode("latin-1") if values else None


@pytest_twisted.ensureDeferred
async def test_root_serves_the_lobby_page(running):
    response = await running.client().http("GET", "/")
    assert response.status == 200
    assert header(response, "Content-Type") == "text/html; charset=utf-8"
    body = response.body.decode("utf-8")
    assert body.startswith("<!doctype html>")
    assert '<script type="module" src="static/lobby.js"></script>' in body
    assert 'href="static/lobby.css"' in body
    assert header(response, "Cache-Control") == "no-cache"
    assert header(response, "X-Content-Type-Options") == "nosniff"
    policy = header(response, "Content-Security-Policy")
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy


@pytest_twisted.ensureDeferred
async def test_static_files_have_their_content_types(running):
    client = running.client()
    expected = {
        "/static/gameserver.js": "application/javascript; charset=utf-8",
        "/static/lobby.js": "application/javascript; charset=utf-8",
        "/static/lobby.css": "text/css; charset=utf-8",
        "/static/index.html": "text/html; charset=utf-8",
    }
    for path, content_type in expected.items():
        response = await client.http("GET", path)
        assert response.status == 200, path
        assert header(response, "Content-Type") == content_type, path
        assert header(response, "Cache-Control") == "no-cache", path
        assert header(response, "Access-Control-Allow-Origin") == "*", path
        name = path.rsplit("/", 1)[1]
        assert response.body == (STATIC_DIR / name).read_bytes(), path
        policy = header(response, "Content-Security-Policy")
        assert (policy is not None) == path.endswith(".html"), path


@pytest_twisted.ensureDeferred
async def test_the_client_library_is_an_es_module(running):
    response = await running.client().http("GET", "/static/gameserver.js")
    source = response.body.decode("utf-8")
    for name in ("GameClient", "GameServerError", "decodeToken"):
        assert re.search(rf"^export (class|function) {name}\b", source, re.M), name
    # No build step: one import, of the vendored codec, by a relative path.
    imports = re.findall(r'^\s*import\s.*?from\s+"([^"]+)"', source, re.M)
    assert imports == ["./vendor/msgpack/index.mjs"]
    codec = await running.client().http("GET", "/static/vendor/msgpack/index.mjs")
    assert codec.status == 200
    assert header(codec, "Content-Type").startswith("application/javascript")


@pytest_twisted.ensureDeferred
async def test_unchanged_files_are_revalidated_cheaply(running):
    client = running.client()
    first = await client.http("GET", "/static/gameserver.js")
    modified = header(first, "Last-Modified")
    assert email.utils.parsedate_to_datetime(modified)
    again = await treq.get(
        running.url + "/static/gameserver.js",
        headers={"If-Modified-Since": modified},
    )
    assert again.code == 304
    assert await again.content() == b""


@pytest_twisted.ensureDeferred
async def test_unknown_static_files_are_404(running):
    client = running.client()
    for path in (
        "/static/nope.js",
        "/static/",  # no directory listing
        "/static/%2e%2e/__init__.py",  # nothing outside static/
        "/static/..%2f__init__.py",
        "/static/../__init__.py",
        "/static/gameserver.js/x",
        "/nope",
        # A NUL byte is refused, not a 500 from the file system calls.
        "/static/%00",
        "/static/gameserver.js%00",
        "/static/%00/x",
        "/static/gameserver.js/%00",
        "/%00",
    ):
        response = await client.http("GET", path)
        assert response.status == 404, path
        assert b"__future__" not in response.body, path
    # The bare directory redirects to the (404) listing, like any directory.
    response = await client.http("GET", "/static")
    assert response.status == 302
    assert header(response, "Location") == "/static/"


@pytest_twisted.ensureDeferred
async def test_head_and_post(running):
    client = running.client()
    head = await client.http("HEAD", "/static/gameserver.js")
    assert head.status == 200
    assert head.body == b""
    post = await client.http("POST", "/static/gameserver.js", b"x")
    assert post.status == 405
    assert header(post, "Allow") == "GET, HEAD"


@pytest_twisted.ensureDeferred
async def test_the_api_and_websocket_still_work(running):
    client, connection = await running.socket()
    games = await client.http("GET", "/api/games/")
    assert games.status == 200
    assert "chat" in [g["name"] for g in games.body]
    room = await running.room(client)
    reply = await connection.join(room["id"])
    assert reply["data"]["is_successful"] is True
    missing = await client.http("GET", "/api/nope/")
    assert missing.status == 404
    assert missing.body["code"] == "not_found"


@pytest_twisted.ensureDeferred
async def test_mounted_under_a_prefix(running):
    """Embedded as ``/game``: the bare prefix redirects to ``/game/``, so the
    page's relative links (``static/...``, ``api/...``, ``ws``) resolve."""
    server = GameServer(make_settings())
    root = Resource()
    root.putChild(b"game", server.resource)
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
    try:
        base = f"http://127.0.0.1:{port.getHost().port}"
        client = GameClient(base)
        bare = await client.http("GET", "/game")
        assert bare.status == 302
        assert header(bare, "Location") == "/game/"
        page = await client.http("GET", "/game/")
        assert page.status == 200
        assert b"static/lobby.js" in page.body
        script = await client.http("GET", "/game/static/gameserver.js")
        assert script.status == 200
        games = await client.http("GET", "/game/api/games/")
        assert games.status == 200
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_the_monitor_page_is_served_at_admin(running):
    """``/admin/``: the page and its own files only (the same policy as the
    lobby: no inline script or style), linked relatively to ``../static/``."""
    client = running.client()
    response = await client.http("GET", "/admin/")
    assert response.status == 200
    assert header(response, "Content-Type") == "text/html; charset=utf-8"
    body = response.body.decode("utf-8")
    assert body == (STATIC_DIR / "admin.html").read_text("utf-8")
    assert '<script type="module" src="../static/admin.js"></script>' in body
    assert 'href="../static/admin.css"' in body
    assert len(re.findall(r"<script\b", body)) == len(
        re.findall(r"<script [^>]*src=", body)
    )
    assert "<style" not in body
    assert " style=" not in body
    policy = header(response, "Content-Security-Policy")
    assert "script-src 'self'" in policy
    assert "style-src 'self'" in policy
    assert header(response, "Cache-Control") == "no-cache"
    for path, content_type in {
        "/static/admin.js": "application/javascript; charset=utf-8",
        "/static/admin.css": "text/css; charset=utf-8",
        "/static/session.js": "application/javascript; charset=utf-8",
    }.items():
        file = await client.http("GET", path)
        assert file.status == 200, path
        assert header(file, "Content-Type") == content_type, path
    # Plain modules, no build step: imports by relative paths only.
    for name in ("admin.js", "lobby.js"):
        source = (STATIC_DIR / name).read_text("utf-8")
        imports = re.findall(r'^\s*import\s.*?from\s+"([^"]+)"', source, re.M)
        assert {"./gameserver.js", "./session.js"} <= set(imports), name
        assert all(i.startswith("./") for i in imports), name
    bare = await client.http("GET", "/admin")
    assert bare.status == 302
    assert header(bare, "Location") == "/admin/"
    for path in ("/admin/x", "/admin/%00", "/admin/static/admin.js"):
        assert (await client.http("GET", path)).status == 404, path
    assert (await client.http("POST", "/admin/", b"x")).status == 405


@pytest_twisted.ensureDeferred
async def test_the_monitor_page_under_a_prefix():
    """Embedded as ``/game``: ``/game/admin/`` serves the page, whose
    ``../static/`` and ``../api/`` resolve under the prefix."""
    server = GameServer(make_settings())
    root = Resource()
    root.putChild(b"game", server.resource)
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
    try:
        client = GameClient(f"http://127.0.0.1:{port.getHost().port}")
        bare = await client.http("GET", "/game/admin")
        assert bare.status == 302
        assert header(bare, "Location") == "/game/admin/"
        page = await client.http("GET", "/game/admin/")
        assert page.status == 200
        assert b"../static/admin.js" in page.body
        script = await client.http("GET", "/game/static/admin.js")
        assert script.status == 200
        stats = await client.http("GET", "/game/api/admin/stats/")
        assert stats.status == 401
    finally:
        await port.stopListening()
