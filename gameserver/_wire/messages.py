"""The wire format: JSON text frames holding ``{type, room_id?, data?}``.

Decoding is strict, because Python's ``json`` is not: it accepts ``NaN``,
lone surrogates and duplicate keys, and raises odd exceptions on huge
integers or deep nesting. Each of those becomes a ``BadMessage`` here.
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any

import attrs

from gameserver._errors import BadMessage

VALIDATE_CONNECTION = "VALIDATE_CONNECTION"
JOIN_ROOM = "JOIN_ROOM"
LEAVE_ROOM = "LEAVE_ROOM"
ERROR = "ERROR"
USER_JOINED = "USER_JOINED"
USER_LEFT = "USER_LEFT"
USER_DISCONNECTED = "USER_DISCONNECTED"
ROOM_DELETED = "ROOM_DELETED"
CHAT_MESSAGE = "CHAT_MESSAGE"
CHAT_HISTORY = "CHAT_HISTORY"
START_GAME = "START_GAME"
GAME_STARTED = "GAME_STARTED"
GAME_FINISHED = "GAME_FINISHED"

MAX_TYPE_LENGTH = 64
_ENVELOPE_KEYS = frozenset({"type", "room_id", "data"})
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


@attrs.frozen(slots=True)
class Envelope:
    type: str
    room_id: int | None = None
    data: dict[str, Any] = attrs.Factory(dict)


class Frame:
    """A message encoded once and framed once, for any number of sockets.

    ``payload`` is the JSON text; ``wire`` the whole WebSocket frame (a
    server's frames are not masked, so one frame serves every socket),
    built the first time a socket needs it: a frame only handed to another
    process is never framed here. ``data`` keeps the encoding of the
    message's ``data`` alone when the frame was built from it, so that a
    chat message is stored without being encoded a second time.
    """

    __slots__ = ("_wire", "data", "payload")

    def __init__(self, payload: bytes, data: bytes | None = None) -> None:
        self.payload = payload
        self.data = data
        self._wire: bytes | None = None

    @classmethod
    def of(cls, payload: bytes) -> Frame:
        return cls(payload)

    @classmethod
    def build(cls, type_: str, data: Any, room_id: int | None = None) -> Frame:
        """The envelope ``{type, room_id, data}``, encoding ``data`` once.

        Data JSON cannot hold raises ``TypeError`` naming the message type.
        """
        try:
            encoded = dumps(data)
        except (TypeError, ValueError) as e:
            raise TypeError(f"data of {type_} must be JSON-serialisable: {e}") from None
        head = _type_prefix(type_)
        if room_id is not None:
            head += b',"room_id":%d' % room_id
        return cls(head + b',"data":' + encoded + b"}", encoded)

    @property
    def wire(self) -> bytes:
        wire = self._wire
        if wire is None:
            wire = self._wire = text_frame(self.payload)
        return wire


@functools.lru_cache(maxsize=1024)
def _type_prefix(type_: str) -> bytes:
    return b'{"type":' + dumps(type_)


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame (RFC 6455, section 5.2)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 0x10000:
        header = b"\x81\x7e" + n.to_bytes(2, "big")
    else:
        header = b"\x81\x7f" + n.to_bytes(8, "big")
    return header + payload


def _reject_constant(name: str) -> Any:
    raise BadMessage(f"{name} is not valid JSON")


def _finite_float(literal: str) -> float:
    """Refuse a number like ``1e400``, which ``json`` would turn into ``inf``."""
    value = float(literal)
    if not math.isfinite(value):
        raise BadMessage(f"number {literal[:32]} is out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise BadMessage("duplicate key in JSON object")
    return obj


def _check_strings(value: Any) -> None:
    """Refuse lone surrogates, which decode fine but cannot be re-encoded."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise BadMessage("lone surrogate in JSON string") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def loads(text: str | bytes) -> Any:
    """Parse JSON strictly, raising only ``BadMessage``."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        else:
            # A str may hold a lone surrogate as a character, not an escape.
            text.encode("utf-8")
        value = _decode(text)
    except BadMessage:
        raise
    except UnicodeDecodeError:
        raise BadMessage("message is not valid UTF-8") from None
    except UnicodeEncodeError:
        raise BadMessage("lone surrogate in JSON string") from None
    except RecursionError:
        raise BadMessage("JSON nested too deeply") from None
    except ValueError as e:
        raise BadMessage(f"malformed JSON: {e}") from None
    if _SURROGATE_ESCAPE.search(text):
        _check_strings(value)
    return value


def decode(payload: str | bytes) -> Envelope:
    obj = loads(payload)
    if not isinstance(obj, dict):
        raise BadMessage("a message must be a JSON object")
    unknown = obj.keys() - _ENVELOPE_KEYS
    if unknown:
        raise BadMessage(f"unknown envelope key(s): {', '.join(sorted(unknown))}")
    type_ = obj.get("type")
    if not isinstance(type_, str) or not type_ or len(type_) > MAX_TYPE_LENGTH:
        raise BadMessage(
            f"'type' must be a non-empty string of at most {MAX_TYPE_LENGTH} characters"
        )
    room_id = obj.get("room_id")
    if room_id is not None and (type(room_id) is not int or room_id < 0):
        raise BadMessage("'room_id' must be a non-negative integer")
    data = obj.get("data")
    if data is None:
        data = {}
    elif not isinstance(data, dict):
        raise BadMessage("'data' must be a JSON object")
    return Envelope(type_, room_id, data)


def dumps(value: Any) -> bytes:
    """Encode compactly; a value JSON cannot hold raises ``TypeError``/``ValueError``."""
    return _encode(value).encode("utf-8")


# One encoder and one decoder for the process: ``json.dumps`` and
# ``json.loads`` build a new one for every call given options.
_encode = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode
_decode = json.JSONDecoder(
    parse_constant=_reject_constant,
    parse_float=_finite_float,
    object_pairs_hook=_unique_keys,
).decode


def message(type_: str, data: dict[str, Any], room_id: int | None = None) -> dict:
    msg: dict[str, Any] = {"type": type_}
    if room_id is not None:
        msg["room_id"] = room_id
    msg["data"] = data
    return msg


def error(
    code: str,
    detail: str,
    *,
    room_id: int | None = None,
    request_type: str | None = None,
) -> dict:
    data: dict[str, Any] = {"code": code, "detail": detail}
    if request_type is not None:
        data["request_type"] = request_type
    return message(ERROR, data, room_id)
