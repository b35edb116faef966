"""Two users chat in a password-protected room, over the real API and WebSocket.

Usage: python examples/chat.py [http://localhost:8000]
"""

from __future__ import annotations

import secrets
import sys

from twisted.internet import task
from twisted.internet.defer import ensureDeferred

from gameserver.client import GameClient


async def main(reactor, url: str = "http://localhost:8000") -> list[str]:
    alice, bob = GameClient(url), GameClient(url)
    suffix = secrets.token_hex(3)
    for client, name in [(alice, "alice"), (bob, "bob")]:
        await client.register(f"{name}-{suffix}", "a long password")
        await client.login(f"{name}-{suffix}", "a long password")
    room = (await alice.create_room("Tea room", "chat", password="mint")).body
    a, b = await alice.connect(), await bob.connect()  # each sends VALIDATE_CONNECTION
    seen = []
    for reply in [
        await a.join(room["id"], "mint"),
        await b.join(room["id"], "earl grey"),  # refused: wrong_password
        await b.join(room["id"], "mint"),
    ]:
        seen.append(f"JOIN_ROOM: {reply['data'].get('error', 'ok')}")
    a.send("CHAT_MESSAGE", room["id"], {"text": "hello bob"})
    message = await b.receive("CHAT_MESSAGE")
    seen.append(f"{message['data']['user']['username']}: {message['data']['text']}")
    await a.close()
    await b.close()
    for line in seen:
        print(line)
    return seen


if __name__ == "__main__":
    task.react(lambda reactor: ensureDeferred(main(reactor, *sys.argv[1:])))
