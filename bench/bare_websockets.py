"""A second floor: the ``websockets`` library's ``broadcast()`` (no accounts, no store).

    python bench/bare_websockets.py --port 8101

The same protocol as ``bare_autobahn.py``: ``{"type": "JOIN", "room": N}``
first, then every message is decoded, encoded once and handed to every
member of the room with ``websockets.broadcast``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from websockets.asyncio.server import broadcast, serve

ROOMS: dict[int, set] = {}


async def handler(websocket) -> None:
    first = json.loads(await websocket.recv())
    room = ROOMS.setdefault(int(first["room"]), set())
    room.add(websocket)
    await websocket.send('{"type":"JOINED"}')
    try:
        async for payload in websocket:
            message = json.loads(payload)
            broadcast(room, json.dumps(message, separators=(",", ":")))
    finally:
        room.discard(websocket)


async def main(port: int) -> None:
    async with serve(
        handler, "127.0.0.1", port, compression=None, ping_interval=None, backlog=1024
    ):
        print("ready", flush=True, file=sys.stderr)
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
