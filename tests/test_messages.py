"""The wire format: strict decoding into ``Envelope``, compact UTF-8 encoding."""

from __future__ import annotations

import json

import pytest

from gameserver._errors import BadMessage
from gameserver._wire import messages
from gameserver._wire.messages import Envelope, Frame, decode, dumps


def _refused(payload: str | bytes) -> BadMessage:
    """Decode ``payload`` expecting ``BadMessage`` and nothing else."""
    with pytest.raises(BadMessage) as info:
        decode(payload)
    assert info.value.code == "bad_message"
    return info.value


def _with_value(literal: str) -> str:
    """An otherwise valid message with ``literal`` as the JSON of a data value."""
    return '{"type": "X", "data": {"v": ' + literal + "}}"


# -- JSON that Python's json module accepts or chokes on --------------------


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "   ",
        "{",
        '{"type": "X"',
        '{"type": "X",}',
        "{'type': 'X'}",
        '{"type": "X"} trailing',
        '{"type": "X"}{"type": "Y"}',
        '{type: "X"}',
        "\ufeff" + '{"type": "X"}',
    ],
)
def test_malformed_json(payload):
    _refused(payload)


@pytest.mark.parametrize(
    "payload", ['[{"type": "X"}]', "[]", '"X"', "42", "4.2", "null", "true"]
)
def test_non_object_top_level(payload):
    err = _refused(payload)
    assert "object" in err.detail


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(
    "template",
    [
        "{c}",
        '{{"type": "X", "room_id": {c}}}',
        '{{"type": "X", "data": {{"v": {c}}}}}',
        '{{"type": "X", "data": {{"v": [1, [2, {c}]]}}}}',
    ],
)
def test_non_finite_constants_anywhere(template, constant):
    _refused(template.format(c=constant))


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1.5e99999"])
def test_float_overflowing_to_infinity(number):
    # json turns these literals into inf, which dumps() then cannot encode:
    # they are as non-finite as the Infinity constant.
    _refused(_with_value(number))


@pytest.mark.parametrize(
    "payload",
    [
        r'{"type": "X", "data": {"v": "\ud800"}}',
        r'{"type": "X", "data": {"v": "a\udfffb"}}',
        r'{"type": "X", "data": {"\ud800": 1}}',
        r'{"type": "X", "data": {"v": [1, ["\uDC00"]]}}',
        r'{"type": "\ud83d"}',
        # A pair in the wrong order is two lone surrogates.
        r'{"type": "X", "data": {"v": "\ude00\ud83d"}}',
    ],
)
def test_lone_surrogate_escapes(payload):
    err = _refused(payload)
    assert "surrogate" in err.detail
    _refused(payload.encode("ascii"))


def test_lone_surrogate_in_str_payload_without_escape():
    # A str can hold a lone surrogate as a character rather than an escape.
    _refused('{"type": "X", "data": {"v": "\ud800"}}')


def test_surrogate_pair_escape_is_accepted():
    payload = r'{"type": "X", "data": {"v": "\ud83d\ude00", "k\uD83D\uDE00": 1}}'
    envelope = decode(payload)
    assert envelope.data == {"v": "\U0001f600", "k\U0001f600": 1}
    assert decode(payload.encode("ascii")) == envelope
    # And it re-encodes cleanly.
    assert dumps(envelope.data["v"]) == '"\U0001f600"'.encode()


def test_escaped_backslash_before_u_is_not_a_surrogate():
    envelope = decode(r'{"type": "X", "data": {"v": "\\ud800"}}')
    assert envelope.data == {"v": "\\ud800"}


@pytest.mark.parametrize(
    "payload",
    [
        '{"type": "X", "type": "Y"}',
        '{"type": "X", "data": {"a": 1, "a": 1}}',
        '{"type": "X", "data": {"v": [{"a": 1, "b": 2, "a": 3}]}}',
    ],
)
def test_duplicate_keys(payload):
    err = _refused(payload)
    assert "duplicate" in err.detail


def test_huge_integer():
    _refused(_with_value("9" * 5000))
    _refused(_with_value("-" + "9" * 5000))
    _refused('{"type": "X", "room_id": ' + "1" * 5000 + "}")


@pytest.mark.parametrize("opening,closing", [("[", "]"), ('{"a":', "}")])
def test_deep_nesting(opening, closing):
    depth = 100_000
    _refused(_with_value(opening * depth + "1" + closing * depth))
    _refused(opening * depth + closing * depth)


@pytest.mark.parametrize("wrap", [lambda v: [v], lambda v: {"k": v}])
def test_nesting_is_limited_to_the_same_depth_in_both_formats(wrap):
    import msgpack

    def envelope(levels: int) -> dict:
        value: object = 1
        for _ in range(levels - 2):  # the envelope and data are two levels
            value = wrap(value)
        return {"type": "X", "data": {"v": value}}

    deepest, deeper = envelope(messages.MAX_DEPTH), envelope(messages.MAX_DEPTH + 1)
    assert decode(dumps(deepest)).data == deepest["data"]
    assert messages.decode_msgpack(msgpack.packb(deepest)).data == deepest["data"]
    assert "nested deeper than 100" in _refused(dumps(deeper)).detail
    with pytest.raises(BadMessage, match="nested deeper than 100"):
        messages.decode_msgpack(msgpack.packb(deeper))


@pytest.mark.parametrize(
    "payload",
    [
        b'{"type": "\xff"}',
        b'{"type": "X", "data": {"v": "\xc3"}}',
        b'{"type": "X", "data": {"v": "\xc0\xaf"}}',  # overlong "/"
        b'{"type": "X", "data": {"v": "\xed\xa0\x80"}}',  # UTF-8 encoded surrogate
        b'{"type": "X"}\xfe',
    ],
)
def test_invalid_utf8_bytes(payload):
    _refused(payload)


def test_loads_only_raises_bad_message():
    for payload in ["NaN", "[" * 100_000, "1" * 5000, b"\xff", r'"\ud800"']:
        with pytest.raises(BadMessage):
            messages.loads(payload)
    assert messages.loads(b'[1, "\xc3\xa9"]') == [1, "\u00e9"]


# -- the envelope -------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        '{"type": "X", "extra": 1}',
        '{"type": "X", "Type": "X"}',
        '{"type": "X", "data": {}, "roomId": 1}',
    ],
)
def test_unknown_envelope_keys(payload):
    err = _refused(payload)
    assert "unknown envelope key" in err.detail


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"data": {}},
        {"type": ""},
        {"type": None},
        {"type": 1},
        {"type": True},
        {"type": ["X"]},
        {"type": {"name": "X"}},
        {"type": "X" * (messages.MAX_TYPE_LENGTH + 1)},
    ],
)
def test_bad_type(obj):
    err = _refused(json.dumps(obj))
    assert "'type'" in err.detail


def test_type_at_max_length_is_accepted():
    long_type = "X" * messages.MAX_TYPE_LENGTH
    assert len(long_type) == 64
    assert decode(json.dumps({"type": long_type})).type == long_type


@pytest.mark.parametrize("room_id", ["1", 1.0, 1.5, True, False, -1, [1], {"id": 1}])
def test_bad_room_id(room_id):
    err = _refused(json.dumps({"type": "X", "room_id": room_id}))
    assert "'room_id'" in err.detail


@pytest.mark.parametrize("data", [[], [1], "x", 1, 1.5, True])
def test_data_must_be_an_object(data):
    err = _refused(json.dumps({"type": "X", "data": data}))
    assert "'data'" in err.detail


def test_minimal_envelope_gets_defaults():
    envelope = decode('{"type": "JOIN_ROOM"}')
    assert envelope == Envelope("JOIN_ROOM")
    assert envelope.room_id is None
    assert envelope.data == {}


def test_null_room_id_and_data_mean_defaults():
    envelope = decode('{"type": "X", "room_id": null, "data": null}')
    assert envelope == Envelope("X", None, {})


def test_full_envelope_from_bytes():
    payload = json.dumps(
        {"type": "CHAT_MESSAGE", "room_id": 7, "data": {"text": "h\u00e9 \U0001f600"}},
        ensure_ascii=False,
    ).encode("utf-8")
    envelope = decode(payload)
    assert envelope == Envelope("CHAT_MESSAGE", 7, {"text": "h\u00e9 \U0001f600"})


def test_room_id_zero_is_accepted():
    assert decode('{"type": "X", "room_id": 0}').room_id == 0


def test_defaults_are_not_shared():
    first = decode('{"type": "X"}')
    first.data["mutated"] = True
    assert decode('{"type": "X"}').data == {}
    assert Envelope("X").data == {}


# -- encoding -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value,type_name", [({1, 2}, "set"), (object(), "object"), (b"raw", "bytes")]
)
def test_dumps_refuses_non_json_values(value, type_name):
    with pytest.raises(TypeError) as info:
        dumps({"data": {"v": value}})
    assert type_name in str(info.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_dumps_refuses_non_finite_floats(value):
    with pytest.raises(ValueError):
        dumps({"v": value})


def test_dumps_is_compact_utf8():
    encoded = dumps({"type": "X", "data": {"text": "\u00e9\u4e2d \U0001f600"}})
    assert isinstance(encoded, bytes)
    assert encoded == '{"type":"X","data":{"text":"\u00e9\u4e2d \U0001f600"}}'.encode()
    assert b"\\u" not in encoded


def test_dumps_round_trips_through_decode():
    msg = messages.message("CHAT_MESSAGE", {"text": "\U0001f600"}, room_id=3)
    assert decode(dumps(msg)) == Envelope("CHAT_MESSAGE", 3, {"text": "\U0001f600"})


def test_error_message_shape():
    msg = messages.error("room_full", "full", room_id=2, request_type="JOIN_ROOM")
    assert msg == {
        "type": messages.ERROR,
        "room_id": 2,
        "data": {"code": "room_full", "detail": "full", "request_type": "JOIN_ROOM"},
    }
    assert messages.message("X", {}) == {"type": "X", "data": {}}


def _parse_frame(wire: bytes) -> tuple[int, bytes]:
    """(first byte, payload) of a server frame, read by the RFC 6455 rules."""
    assert wire[1] & 0x80 == 0, "a server's frames are not masked"
    length, offset = wire[1] & 0x7F, 2
    if length == 126:
        length, offset = int.from_bytes(wire[2:4], "big"), 4
    elif length == 127:
        length, offset = int.from_bytes(wire[2:10], "big"), 10
    assert len(wire) == offset + length
    return wire[0], wire[offset:]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_frame_keeps_payload_and_frames_it_once(size):
    payload = dumps({"type": "X", "data": {"text": "\u00e9" + "x" * size}})
    frame = Frame.of(payload)
    assert frame.payload == payload
    first, framed = _parse_frame(frame.wire)
    assert first == 0x81  # FIN, text
    assert framed == payload
    assert frame.wire is frame.wire  # built once, whoever asks


def test_built_frame_is_the_envelope_with_its_data_encoded_once():
    data = {"user": {"id": 1, "username": "a"}, "text": "h\u00e9", "ts": 1.5}
    frame = Frame.build("CHAT_MESSAGE", data, 7)
    assert json.loads(frame.payload) == messages.message("CHAT_MESSAGE", data, 7)
    assert frame.data == dumps(data)
    assert json.loads(Frame.build("X", {}).payload) == {"type": "X", "data": {}}
    with pytest.raises(TypeError, match="data of X must be JSON"):
        Frame.build("X", {"bad": {1, 2}})
