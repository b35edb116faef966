"""What each wire format costs the server per chat message, without sockets.

    PYTHONPATH=. python bench/codec.py

Times, in one process, the steps that differ between JSON and MessagePack
for one chat message fanned out to a room: decoding what the client sent
(strictly, as the server does), and making the frame the members get
(JSON: encode and frame once; MessagePack: the same, then the MessagePack
frame made from the JSON once); and what comes after, once per member:
one ``send`` of the frame to a socket (a Unix socket pair here, read
between batches), the same in both formats but for the frame's size.
"""

from __future__ import annotations

import socket
import timeit

import msgpack

from gameserver._wire import messages

CHAT = {"type": "CHAT_MESSAGE", "room_id": 1234, "data": {"text": "12:123456789012"}}
OUT = {
    "text": "12:123456789012",
    "user": {"id": 5678, "username": "u1733061234x77"},
    "team": None,
}


def best(statement, number: int = 20_000) -> float:
    """µs per call, the best of five runs."""
    return min(timeit.repeat(statement, number=number, repeat=5)) / number * 1e6


def main() -> None:
    as_json, as_msgpack = messages.dumps(CHAT), msgpack.packb(CHAT)

    def frame_json() -> bytes:
        return messages.Frame.build("CHAT_MESSAGE", OUT, 1234).wire

    def frame_both() -> bytes:
        frame = messages.Frame.build("CHAT_MESSAGE", OUT, 1234)
        frame.wire  # noqa: B018 - a JSON member's frame
        return frame.binary

    rows = [
        ("decode the message sent, JSON", best(lambda: messages.decode(as_json))),
        (
            "decode the message sent, MessagePack",
            best(lambda: messages.decode_msgpack(as_msgpack)),
        ),
        ("build the broadcast frame, JSON", best(frame_json)),
        ("build it in JSON and in MessagePack", best(frame_both)),
    ]
    for name, us in rows:
        print(f"| {name} | {us:.2f} |")
    frame = messages.Frame.build("CHAT_MESSAGE", OUT, 1234)
    for name, data in (("JSON", frame.wire), ("MessagePack", frame.binary)):
        print(f"| send one frame to a socket, {name} | {send_cost(data):.2f} |")
    sizes = f"{len(frame.wire)} / {len(frame.binary)}"
    print(f"| bytes of the frame, JSON / MessagePack | {sizes} |")


def send_cost(data: bytes, batch: int = 200) -> float:
    """µs per ``send`` of ``data``, the best of five runs of 100 batches."""
    writer, reader = socket.socketpair()
    writer.setblocking(False)
    try:

        def batches() -> None:
            for _ in range(100):
                for _ in range(batch):
                    writer.send(data)
                while True:
                    try:
                        reader.recv(1 << 20, socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        break

        return min(timeit.repeat(batches, number=1, repeat=5)) / (100 * batch) * 1e6
    finally:
        writer.close()
        reader.close()


if __name__ == "__main__":
    main()
