"""What both hostings share: refusing work for a room that is not there, and
delivering a turn's messages to this process's sockets."""

from __future__ import annotations

from collections.abc import Iterable

from gameserver._engine.room import JOIN, LEAVE, MESSAGE, RESERVE, Work, error_frame
from gameserver._engine.sockets import LocalSockets
from gameserver._engine.turns import Out
from gameserver._stats import Counters
from gameserver._wire.messages import Frame


def missing(work: Work, counters: Counters) -> Frame | None:
    """The answer to a client's work for a room that does not exist (counted
    as a refusal when there is a socket to answer)."""
    room_id = work.room_id
    if work.kind in (JOIN, LEAVE, RESERVE):
        code, detail = "room_not_found", f"there is no room {room_id}"
    elif work.kind == MESSAGE:
        code = "not_in_room"
        detail = f"you are not in room {room_id}; send JOIN_ROOM first"
    else:
        return None
    frame = error_frame(work, code, detail)
    if work.reply is not None:
        counters.refused(frame.type, code)
    return frame


def deliver_local(sockets: LocalSockets, process_id: str, out: Iterable[Out]) -> None:
    """Hand each message to this process's sockets of its recipients."""
    for frame, target in out:
        if type(target) is tuple:
            sockets.deliver(target, frame)
        elif target.process == process_id:  # type: ignore[union-attr]
            sockets.deliver_to(target.connection, frame)  # type: ignore[union-attr]
