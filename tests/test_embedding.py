"""The README's embedding example serves the API and WebSocket under a prefix."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor

from examples.embedded import make_site
from gameserver.client import GameClient
from tests.conftest import PASSWORD, SECRET


@pytest_twisted.ensureDeferred
async def test_embedded_site_serves_under_a_prefix():
    port = reactor.listenTCP(0, make_site(SECRET), interface="127.0.0.1")
    try:
        base = f"http://127.0.0.1:{port.getHost().port}"
        host = GameClient(base)
        page = await host.http("GET", "/")
        assert page.status == 200
        assert b"My app" in page.body
        client = GameClient(base + "/game")
        assert (await client.register("alice", PASSWORD)).status == 201
        assert (await client.login("alice", PASSWORD)).status == 200
        games = await client.http("GET", "/api/games/")
        assert "chat" in [g["name"] for g in games.body]
        room = (await client.create_room("r", "chat")).body
        listing = await client.http("GET", "/api/rooms/")
        assert listing.body["results"][0]["id"] == room["id"]
        connection = await client.connect()
        reply = await connection.join(room["id"])
        assert reply["data"]["is_successful"] is True
        await connection.close()
        # Through WebSocketResource, the subprotocol chooses the format too.
        packed = GameClient(base + "/game", format="msgpack")
        packed.access = client.access
        connection = await packed.connect()
        assert connection.protocol.websocket_protocol_in_use == "gameserver.msgpack"
        reply = await connection.join(room["id"])
        assert reply["data"]["is_successful"] is True
        await connection.close()
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_readme_chat_example(running):
    from examples.chat import main

    seen = await main(reactor, running.url)
    assert seen[:3] == ["JOIN_ROOM: ok", "JOIN_ROOM: wrong_password", "JOIN_ROOM: ok"]
    assert seen[3].startswith("alice-") and seen[3].endswith(": hello bob")
