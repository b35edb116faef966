"""The two wire formats, and which one a connection speaks.

A client picks its format with the WebSocket subprotocol it offers:
``gameserver.json`` (text frames, also what a client that offers none
gets) or ``gameserver.msgpack`` (binary frames). Either way the messages
are the same envelope, checked the same way (``messages``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

from gameserver._wire import messages


@attrs.frozen
class WireFormat:
    name: str
    #: What the client offers and the server answers in the handshake.
    subprotocol: str
    #: Whether its messages travel in binary frames (else text frames).
    binary: bool
    decode: Callable[[bytes], messages.Envelope] = attrs.field(repr=False)

    def mismatch(self) -> str:
        """What a client is told that sent the other kind of frame."""
        kind = "binary" if self.binary else "text"
        return (
            f"this connection speaks {self.name} ({self.subprotocol}):"
            f" send each message as one {kind} frame"
        )


JSON = WireFormat("json", "gameserver.json", False, messages.decode)
MSGPACK = WireFormat("msgpack", "gameserver.msgpack", True, messages.decode_msgpack)
FORMATS = {f.name: f for f in (JSON, MSGPACK)}
_BY_SUBPROTOCOL = {f.subprotocol: f for f in (JSON, MSGPACK)}


def choose(offered: Sequence[str]) -> WireFormat | None:
    """The format for a client's offer: the first it names that the server
    speaks, JSON if it names none, ``None`` if it names only others."""
    if not offered:
        return JSON
    for subprotocol in offered:
        chosen = _BY_SUBPROTOCOL.get(subprotocol)
        if chosen is not None:
            return chosen
    return None


def refusal(offered: Sequence[str]) -> str:
    """Why an offer that ``choose`` found nothing in is refused."""
    names = ", ".join(repr(p) for p in offered)
    return (
        f"unsupported WebSocket subprotocol {names}: this server speaks"
        f" {JSON.subprotocol} or {MSGPACK.subprotocol}"
    )
