"""Room broadcast throughput: one sender, N listeners, real WebSockets.

    python bench/broadcast.py [--members 50] [--messages 2000] [--redis URL]

Starts a server in this process (in memory, or on Redis), connects the
members over loopback, has one of them send chat messages as fast as the
server takes them, and reports deliveries per second. Client and server
share one core here, so compare runs with each other, not with a machine
that gives them one each.
"""

from __future__ import annotations

import argparse
import time

from gameserver.games import Game
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, ensureDeferred

from gameserver import GameServer, Settings
from gameserver.client import GameClient

PASSWORD = "benchmark password"


async def main(reactor_, args: argparse.Namespace) -> None:
    settings = Settings(
        secret="benchmark secret that is long enough!!",
        password_cost=10,
        message_rate=1e9,
        message_burst=10**9,
        max_connections_per_user=10**6,
    )
    games = {"chat": Game(name="chat", description="", max_players=args.members)}
    if args.redis:
        server = GameServer.with_redis(settings, args.redis, games=games)
        server.backend.startService()
        await task.deferLater(reactor, 0.5, lambda: None)
    else:
        server = GameServer(settings, games=games)
    port = await server.listen("tcp:0:interface=127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}"

    owner = GameClient(url)
    await owner.register("owner", PASSWORD)
    await owner.login("owner", PASSWORD)
    room = (await owner.create_room("bench", "chat")).body["id"]
    sockets = []
    for n in range(args.members):
        client = GameClient(url)
        await client.register(f"member{n}", PASSWORD)
        await client.login(f"member{n}", PASSWORD)
        socket = await client.connect()
        await socket.join(room)
        sockets.append(socket)
    for socket in sockets:  # drop the join notices
        socket.protocol.inbox.clear()

    expected = args.members * args.messages
    received = [0]
    done: Deferred[None] = Deferred()

    def count(payload: bytes, is_binary: bool) -> None:
        received[0] += 1
        if received[0] == expected and not done.called:
            done.callback(None)

    for socket in sockets:
        socket.protocol.onMessage = count
    started = time.perf_counter()
    sender = sockets[0]
    for n in range(args.messages):
        sender.send("CHAT_MESSAGE", room, {"text": f"message {n}"})
        if n % 100 == 99:
            await task.deferLater(reactor, 0, lambda: None)
    await done
    elapsed = time.perf_counter() - started
    print(
        f"{'redis' if args.redis else 'memory'}: {args.members} members,"
        f" {args.messages} messages: {expected} deliveries in {elapsed:.2f} s"
        f" = {expected / elapsed:,.0f} deliveries/s"
    )
    for socket in sockets:
        socket.abort()
    await port.stopListening()
    if args.redis:
        await server.backend.stopService()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--redis", default=None)
    task.react(lambda r: ensureDeferred(main(r, parser.parse_args())))
