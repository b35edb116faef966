"""The floor: a bare Autobahn room broadcast server (no accounts, no store).

    python bench/bare_autobahn.py --port 8100

A client's first message ``{"type": "JOIN", "room": N}`` puts it in room N
(answered ``{"type": "JOINED"}``); every later message is decoded and
encoded again as JSON and sent to each member of the room with
``sendMessage``: the plain way to write such a server on Autobahn, with
Nagle's algorithm off as a real server would have it.
"""

from __future__ import annotations

import argparse
import json
import sys

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor

ROOMS: dict[int, set[BareProtocol]] = {}


class BareProtocol(WebSocketServerProtocol):
    room: int | None = None

    def onOpen(self) -> None:
        self.transport.setTcpNoDelay(True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        message = json.loads(payload)
        if self.room is None:
            self.room = int(message["room"])
            ROOMS.setdefault(self.room, set()).add(self)
            self.sendMessage(b'{"type":"JOINED"}')
            return
        encoded = json.dumps(message, separators=(",", ":")).encode()
        for member in ROOMS[self.room]:
            member.sendMessage(encoded)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.room is not None:
            ROOMS[self.room].discard(self)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    factory = WebSocketServerFactory(f"ws://127.0.0.1:{args.port}")
    factory.protocol = BareProtocol
    factory.setProtocolOptions(
        autoPingInterval=0, perMessageCompressionAccept=lambda o: None
    )
    reactor.listenTCP(args.port, factory, interface="127.0.0.1", backlog=1024)
    print("ready", flush=True, file=sys.stderr)
    reactor.run()


if __name__ == "__main__":
    main()
