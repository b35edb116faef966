"""What both hostings share: refusing work for a room that is not there, and
delivering a turn's messages to this process's sockets."""

from __future__ import annotations

from collections.abc import Iterable

from gameserver._engine.room import JOIN, LEAVE, MESSAGE, Work, join_type
from gameserver._engine.sockets import LocalSockets
from gameserver._engine.turns import Out
from gameserver._wire import messages
from gameserver._wire.messages import Frame


def missing(work: Work) -> Frame | None:
    """The answer to a client's work for a room that does not exist."""
    room_id = work.room_id
    if work.kind == JOIN:
        data = {
            "is_successful": False,
            "error": "room_not_found",
            "detail": f"there is no room {room_id}",
        }
        return Frame.build(join_type(work), data, room_id)
    if work.kind == LEAVE:
        data = {
            "is_successful": False,
            "error": "room_not_found",
            "detail": f"there is no room {room_id}",
        }
        return Frame.build(messages.LEAVE_ROOM, data, room_id)
    if work.kind == MESSAGE:
        data = {
            "code": "not_in_room",
            "detail": f"you are not in room {room_id}; send JOIN_ROOM first",
            "request_type": work.type,
        }
        return Frame.build(messages.ERROR, data, room_id)
    return None


def error_frame(work: Work, code: str, detail: str) -> Frame:
    """An ``ERROR`` (or a refused JOIN/LEAVE) for work that could not be done."""
    if work.kind in (JOIN, LEAVE):
        type_ = join_type(work) if work.kind == JOIN else messages.LEAVE_ROOM
        data = {"is_successful": False, "error": code, "detail": detail}
        return Frame.build(type_, data, work.room_id)
    data = {"code": code, "detail": detail, "request_type": work.type}
    return Frame.build(messages.ERROR, data, work.room_id)


def deliver_local(sockets: LocalSockets, process_id: str, out: Iterable[Out]) -> None:
    """Hand each message to this process's sockets of its recipients."""
    for frame, target in out:
        if type(target) is tuple:
            sockets.deliver(target, frame)
        elif target.process == process_id:  # type: ignore[union-attr]
            sockets.deliver_to(target.connection, frame)  # type: ignore[union-attr]
