"""The two wire formats, and which one a connection speaks.

A client picks its format with the WebSocket subprotocol it offers:
``gameserver.json`` (text frames, also what a client that offers none
gets) or ``gameserver.msgpack`` (binary frames). Either way the messages
are the same envelope, checked the same way (``messages``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

from gameserver._errors import BadMessage
from gameserver._wire import messages

#: How many bytes of JSON one byte of MessagePack can become, at most: a
#: control character in a string (``\x01`` is one byte, ``"\u0001"`` six).
_MOST_JSON_PER_BYTE = 6
#: Offered subprotocols named in a refusal, at most.
_NAMED = 3


@attrs.frozen
class WireFormat:
    name: str
    #: What the client offers and the server answers in the handshake.
    subprotocol: str
    #: Whether its messages travel in binary frames (else text frames).
    binary: bool
    #: A client's message and the size limit, to the envelope, or ``BadMessage``.
    decode: Callable[[bytes, int], messages.Envelope] = attrs.field(repr=False)

    def answer(self, offered: Sequence[str]) -> str | None:
        """The subprotocol to answer: none to a client that offered none."""
        return self.subprotocol if offered else None

    def mismatch(self) -> str:
        """What a client is told that sent the other kind of frame."""
        kind = "binary" if self.binary else "text"
        return (
            f"this connection speaks {self.name} ({self.subprotocol}):"
            f" send each message as one {kind} frame"
        )


def _decode_json(payload: bytes, limit: int) -> messages.Envelope:
    """The frame's size is the message's: Autobahn and the protocol limit it."""
    return messages.decode(payload)


def _decode_msgpack(payload: bytes, limit: int) -> messages.Envelope:
    """Also refuse a message that would be over the limit in JSON, which is
    what the server turns it into: JSON members could not have sent it, and
    it would reach them (and Redis) bigger than any frame a client may send."""
    envelope = messages.decode_msgpack(payload)
    if len(payload) * _MOST_JSON_PER_BYTE > limit:
        as_json = messages.dumps(
            messages.message(envelope.type, envelope.data, envelope.room_id)
        )
        if len(as_json) > limit:
            raise BadMessage(
                f"the message is {len(as_json)} bytes in JSON,"
                f" over the limit of {limit}"
            )
    return envelope


JSON = WireFormat("json", "gameserver.json", False, _decode_json)
MSGPACK = WireFormat("msgpack", "gameserver.msgpack", True, _decode_msgpack)
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
    names = ", ".join(repr(p[:40]) for p in offered[:_NAMED])
    if len(offered) > _NAMED:
        names += f" and {len(offered) - _NAMED} more"
    return (
        f"unsupported WebSocket subprotocol {names}: this server speaks"
        f" {JSON.subprotocol} or {MSGPACK.subprotocol}"
    )
