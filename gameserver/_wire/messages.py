"""The messages: ``{type, room_id?, data?}`` in JSON text or MessagePack.

Decoding is strict in both, because neither library is: Python's ``json``
accepts ``NaN``, lone surrogates and duplicate keys, and raises odd
exceptions on huge integers or deep nesting; ``msgpack`` also takes bytes,
extension types and non-string keys, which JSON cannot hold. Each of those
becomes a ``BadMessage`` here, so a message means the same in either format
and what a game keeps stays JSON.

Everything the server sends is encoded in JSON first, once (``Frame``);
the MessagePack frame is made from it when a socket that speaks it needs
it, once per message as well.
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any

import attrs
import msgpack
from twisted.logger import Logger

from gameserver._errors import BadMessage

VALIDATE_CONNECTION = "VALIDATE_CONNECTION"
JOIN_ROOM = "JOIN_ROOM"
QUICK_JOIN = "QUICK_JOIN"
LEAVE_ROOM = "LEAVE_ROOM"
ERROR = "ERROR"
USER_JOINED = "USER_JOINED"
USER_LEFT = "USER_LEFT"
USER_DISCONNECTED = "USER_DISCONNECTED"
ROOM_CLOSED = "ROOM_CLOSED"
CHAT_MESSAGE = "CHAT_MESSAGE"
CHAT_HISTORY = "CHAT_HISTORY"
START_GAME = "START_GAME"
GAME_STARTED = "GAME_STARTED"
GAME_FINISHED = "GAME_FINISHED"
#: The types the server itself handles or sends, whatever the games.
BUILTIN_TYPES = (
    VALIDATE_CONNECTION,
    JOIN_ROOM,
    QUICK_JOIN,
    LEAVE_ROOM,
    ERROR,
    USER_JOINED,
    USER_LEFT,
    USER_DISCONNECTED,
    ROOM_CLOSED,
    CHAT_MESSAGE,
    CHAT_HISTORY,
    START_GAME,
    GAME_STARTED,
    GAME_FINISHED,
)

MAX_TYPE_LENGTH = 64
#: Levels of nesting a message may have (the envelope is the first), in
#: either format: deeper input would only cost the decoder.
MAX_DEPTH = 100
_ENVELOPE_KEYS = frozenset({"type", "room_id", "data"})
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_TYPE_IN_HEAD = re.compile(rb'"type":"([A-Za-z0-9_.:-]{1,64})"')

log = Logger()


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
    process is never framed here. ``binary`` is the same message as a
    MessagePack binary frame, made from the JSON the first time a socket
    that speaks MessagePack needs it. ``data`` keeps the encoding of the
    message's ``data`` alone when the frame was built from it, so that a
    chat message is stored without being encoded a second time.
    """

    __slots__ = ("_binary", "_type", "_wire", "data", "payload", "seq")

    def __init__(
        self, payload: bytes, data: bytes | None = None, type_: str | None = None
    ) -> None:
        self.payload = payload
        self.data = data
        self._type = type_
        #: Its place in its room's messages (``seq`` on the wire), 0 if none.
        self.seq = 0
        self._wire: bytes | None = None
        self._binary: bytes | None = None

    def stamp(self, seq: int) -> None:
        """Number the message in its room's log, before it is sent anywhere."""
        self.payload = b'{"seq":%d,' % seq + self.payload[1:]
        self.seq = seq
        self._wire = self._binary = None

    @classmethod
    def of(cls, payload: bytes, type_: str | None = None) -> Frame:
        return cls(payload, None, type_)

    @property
    def type(self) -> str:
        """The message's type, for the metrics: known when built here, else
        read from the payload's head (a message logged and sent again)."""
        type_ = self._type
        if type_ is None:
            found = _TYPE_IN_HEAD.search(self.payload, 0, 128)
            type_ = self._type = found.group(1).decode() if found else "other"
        return type_

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
        return cls(head + b',"data":' + encoded + b"}", encoded, type_)

    @property
    def wire(self) -> bytes:
        wire = self._wire
        if wire is None:
            wire = self._wire = text_frame(self.payload)
        return wire

    @property
    def binary(self) -> bytes:
        binary = self._binary
        if binary is None:
            binary = self._binary = binary_frame(_repack(self.payload))
        return binary


@functools.lru_cache(maxsize=1024)
def _type_prefix(type_: str) -> bytes:
    return b'{"type":' + dumps(type_)


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame (RFC 6455, section 5.2)."""
    return _frame(0x81, payload)


def binary_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket binary frame."""
    return _frame(0x82, payload)


def _frame(first: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        header = bytes((first, n))
    elif n < 0x10000:
        header = bytes((first, 0x7E)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, 0x7F)) + n.to_bytes(8, "big")
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
        raise BadMessage("duplicate key in an object")
    return obj


def _depth(value: Any) -> int:
    """Levels of nesting of lists and objects (a scalar is 0)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in item)
    return deepest


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
    if text.count("[") + text.count("{") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise BadMessage(f"nested deeper than {MAX_DEPTH} levels")
    return value


def decode(payload: str | bytes) -> Envelope:
    """A JSON message, as a client sent it."""
    return envelope(loads(payload), "a JSON object")


def decode_msgpack(payload: bytes) -> Envelope:
    """A MessagePack message, as a client sent it."""
    return envelope(unpack(payload), "a MessagePack map")


def envelope(obj: Any, kind: str) -> Envelope:
    """Check a decoded message's envelope, whatever the format."""
    if not isinstance(obj, dict):
        raise BadMessage(f"a message must be {kind}")
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
        raise BadMessage(f"'data' must be {kind}")
    return Envelope(type_, room_id, data)


def _refuse_extension(code: int, data: bytes) -> Any:
    raise BadMessage(
        f"MessagePack extension type {code} is not allowed: JSON values only"
    )


_unpackb = functools.partial(
    msgpack.unpackb,
    raw=False,
    strict_map_key=True,
    object_pairs_hook=_unique_keys,
    ext_hook=_refuse_extension,
)


def unpack(payload: bytes) -> Any:
    """Parse MessagePack strictly, to JSON values only, raising only ``BadMessage``."""
    try:
        value = _unpackb(payload)
    except BadMessage:
        raise
    except UnicodeDecodeError:
        raise BadMessage("a MessagePack string is not valid UTF-8") from None
    except msgpack.StackError:
        raise BadMessage(f"nested deeper than {MAX_DEPTH} levels") from None
    except msgpack.ExtraData:
        raise BadMessage("bytes after the end of the MessagePack message") from None
    except msgpack.FormatError:
        raise BadMessage("malformed MessagePack: a byte that starts no value") from None
    except (ValueError, TypeError, OverflowError) as e:
        if "map key" in str(e):
            raise BadMessage("object keys must be strings") from None
        raise BadMessage(f"malformed MessagePack: {e}") from None
    _check_json_values(value)
    return value


def _check_json_values(value: Any) -> None:
    """Refuse what JSON could not hold: msgpack has no option to."""
    stack: list[tuple[Any, int]] = [([value], 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadMessage(f"nested deeper than {MAX_DEPTH} levels")
        children = item
        if type(item) is dict:
            for key in item:
                if type(key) is not str:
                    raise BadMessage("object keys must be strings")
            children = item.values()
        for child in children:
            kind = type(child)
            if kind is str or kind is int or kind is bool or child is None:
                continue
            if kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif kind is float:
                if not math.isfinite(child):
                    raise BadMessage("NaN and Infinity are not valid JSON numbers")
            elif kind is bytes:
                raise BadMessage(
                    "MessagePack bin values are not allowed: JSON values only"
                )
            else:
                raise BadMessage(f"MessagePack {kind.__name__} values are not allowed")


def _repack(payload: bytes) -> bytes:
    """The MessagePack form of a message the server encoded in JSON.

    JSON integers have no bound and MessagePack's stop at 64 bits: a message
    with a bigger one cannot go to a MessagePack socket, which gets an
    ``ERROR`` saying so instead of nothing.
    """
    value = _trusted_decode(payload.decode("utf-8"))
    try:
        return msgpack.packb(value)
    except OverflowError:
        log.error(
            "a {type} message holds an integer beyond 64 bits: not sent in MessagePack",
            type=value.get("type"),
        )
        return msgpack.packb(
            error(
                "unencodable",
                "a message for this connection held an integer beyond 64 bits,"
                " which MessagePack cannot carry",
                room_id=value.get("room_id"),
                request_type=value.get("type"),
            )
        )


def dumps(value: Any) -> bytes:
    """Encode compactly; a value JSON cannot hold raises ``TypeError``/``ValueError``."""
    return _encode(value).encode("utf-8")


# One encoder and one decoder for the process (and one that trusts its
# input, for what the server encoded itself): ``json.dumps`` and
# ``json.loads`` build a new one for every call given options.
_encode = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode
_decode = json.JSONDecoder(
    parse_constant=_reject_constant,
    parse_float=_finite_float,
    object_pairs_hook=_unique_keys,
).decode
_trusted_decode = json.JSONDecoder().decode


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
