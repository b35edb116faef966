"""The admin API under ``/api/admin/``: what the monitor page shows and does.

Only admins (``Settings.admins``, or marked in the store with
``gameserver-admin``): anyone else with a valid token gets 403, no token
401. Every action (close, kick, ban, unban) is logged with the admin who
did it. Reads go through ``IOversight``, so that in memory they come from
the engine and on Redis from what every room's owner saved.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger
from twisted.web.server import Request

from gameserver._engine.room import DELETE, Work
from gameserver._errors import (
    Forbidden,
    GameServerError,
    InvalidInput,
    NotFound,
    Unavailable,
)
from gameserver._http.api import _ID, JsonApi, Result, _query
from gameserver._models import RoomState, RoomView, UserRecord
from gameserver._settings import Settings
from gameserver._wire.session import CLOSE_KICKED

if TYPE_CHECKING:
    from gameserver._server import GameServer

log = Logger()

#: Why a room an admin closed is gone, as its members' ``ROOM_CLOSED`` says.
CLOSED_BY_ADMIN = "closed by an admin"
#: Seconds after a ban when its user's sockets are closed once more.
RECLOSE_AFTER = 2.0
#: Most users a search answers with.
MAX_FOUND = 20
_SEARCH = re.compile(r"[A-Za-z0-9_.-]{1,32}")


class Conflict(GameServerError):
    status = 409


def is_admin(settings: Settings, record: UserRecord) -> bool:
    """Marked in the store, or named at start; never a guest (anyone may
    take a free name as a guest, an admin's among them)."""
    if record.guest_until is not None:
        return False
    return record.admin or record.username.casefold() in settings.admins


async def check_admins(server: GameServer) -> None:
    """Warn of each name ``--admins`` gives that has no account yet: whoever
    signs up under it first becomes an admin."""
    for name in server.settings.admins:
        try:
            record = await server.store.get_user_by_name(name)
        except GameServerError as e:
            log.warn("cannot check the admins: {detail}", detail=e.detail)
            return
        if record is None or record.guest_until is not None:
            log.warn(
                "--admins names {name}, which has no account yet: whoever signs"
                " up as {name} first will be an admin; sign up as {name} now",
                name=name,
            )


class AdminApi(JsonApi):
    def __init__(self, server: GameServer) -> None:
        super().__init__(server.settings, server.accounts)
        self._server = server
        self._routes = [
            (("stats",), {b"GET": self._stats}),
            (("rooms",), {b"GET": self._rooms}),
            (("rooms", _ID), {b"GET": self._room}),
            (("rooms", _ID, "close"), {b"POST": self._close}),
            (("users",), {b"GET": self._users}),
            (("users", _ID, "kick"), {b"POST": self._kick}),
            (("users", _ID, "ban"), {b"POST": self._ban}),
            (("users", _ID, "unban"), {b"POST": self._unban}),
        ]

    async def _admin(self, request: Request) -> UserRecord:
        record = await self._accounts.authenticate_record(self._bearer(request))
        if not is_admin(self._settings, record):
            raise Forbidden("only admins may use the admin API")
        return record

    def _now(self) -> float:
        return float(self._server.engine.clock.seconds())

    # Reading

    async def _stats(self, request: Request) -> Result:
        await self._admin(request)
        server = self._server
        body: dict[str, Any] = {
            "at": self._now(),
            "process": server.engine.process_id,
            "sockets": server.websocket_factory.countConnections,
            "sockets_validated": server.sockets.connections(),
            "users": len(server.sockets.users()),
            "rooms": len(server.engine.rooms),
            "deliveries": server.engine.counters.deliveries,
        }
        processes = await server.oversight.processes()
        if processes is not None:
            body["processes"] = processes
        return 200, body

    async def _rooms(self, request: Request) -> Result:
        await self._admin(request)
        game = _query(request, "game") or None
        raw_state = _query(request, "state") or None
        state = None
        if raw_state is not None:
            try:
                state = RoomState(raw_state)
            except ValueError:
                allowed = ", ".join(s.value for s in RoomState)
                raise InvalidInput(f"'state' must be one of: {allowed}") from None
        views = await self._server.oversight.rooms(game)
        now = self._now()
        return 200, {
            "results": [
                _room_json(view, now)
                for view in views
                if state is None or view.record.state is state
            ]
        }

    async def _room(self, request: Request, room_id: int) -> Result:
        await self._admin(request)
        view = await self._server.oversight.room(room_id)
        if view is None:
            raise NotFound(f"there is no room {room_id}", code="room_not_found")
        body = _room_json(view, self._now())
        state: Any = None
        if view.state is not None:
            state = json.loads(view.state)
        else:  # never saved: what it starts with
            game = self._server.games.get(view.record.game)
            state = None if game is None else game.initial_state()
        body["data"] = {
            "state": state,
            "entries": {k: json.loads(v) for k, v in (view.entries or {}).items()},
        }
        body["chat"] = [json.loads(entry) for entry in view.chat or ()]
        return 200, body

    async def _users(self, request: Request) -> Result:
        await self._admin(request)
        q = _query(request, "q") or ""
        if not _SEARCH.fullmatch(q):
            raise InvalidInput(
                "'q' must be 1 to 32 letters, digits, '.', '_' or '-':"
                " a username or its start"
            )
        server = self._server
        found = await server.store.find_users(q, MAX_FOUND)
        online = await server.oversight.online([r.id for r in found])
        return 200, {
            "results": [
                {
                    "id": r.id,
                    "username": r.username,
                    "admin": is_admin(self._settings, r),
                    "banned": r.banned,
                    "online": r.id in online,
                }
                for r in found
            ]
        }

    # Acting

    async def _close(self, request: Request, room_id: int) -> Result:
        admin = await self._admin(request)
        server = self._server
        await server.rooms.get(room_id)  # 404 if there is none
        work = Work(DELETE, room_id, user=admin.ref, data={"reason": CLOSED_BY_ADMIN})
        await server.hosting.request(work)
        if await server.store.get_room(room_id) is not None:
            # Refused on the way (its owner could not be reached in time).
            raise Unavailable("the room could not be closed now: try again")
        log.info(
            "admin {admin} closed room {room}",
            admin=admin.username,
            admin_id=admin.id,
            room=room_id,
        )
        return 200, {"closed": room_id}

    async def _target(self, user_id: int) -> UserRecord:
        record = await self._server.store.get_user(user_id)
        if record is None:
            raise NotFound(f"there is no user {user_id}", code="user_not_found")
        return record

    async def _kick(self, request: Request, user_id: int) -> Result:
        admin = await self._admin(request)
        user = await self._target(user_id)
        await self._server.hosting.close_user(user.ref, CLOSE_KICKED, "kicked")
        _logged("kicked", admin, user)
        return 200, {"kicked": user_id}

    async def _ban(self, request: Request, user_id: int) -> Result:
        admin = await self._admin(request)
        user = await self._target(user_id)
        if is_admin(self._settings, user):
            raise Conflict(
                "an admin cannot be banned (revoke it first; not yourself either)",
                code="cannot_ban_admin",
            )
        # The flag first: a socket validating meanwhile is refused.
        await self._server.store.set_user_flags(user_id, banned=True)
        await self._server.hosting.close_user(user.ref, CLOSE_KICKED, "banned")

        # A socket whose validation read the record just before the flag was
        # set may register after the close reached its process: again, later.
        async def again() -> None:
            await self._server.hosting.close_user(user.ref, CLOSE_KICKED, "banned")

        self._server.clock.callLater(
            RECLOSE_AFTER,
            lambda: ensureDeferred(again()).addErrback(
                lambda f: log.warn("closing a banned user again failed: {f}", f=f)
            ),
        )
        _logged("banned", admin, user)
        return 200, {"banned": user_id}

    async def _unban(self, request: Request, user_id: int) -> Result:
        admin = await self._admin(request)
        user = await self._target(user_id)
        await self._server.store.set_user_flags(user_id, banned=False)
        _logged("unbanned", admin, user)
        return 200, {"unbanned": user_id}


def _logged(done: str, admin: UserRecord, user: UserRecord) -> None:
    """Every admin action on a user is logged, with who did it."""
    log.info(
        "admin {admin} " + done + " {user}",
        admin=admin.username,
        admin_id=admin.id,
        user=user.username,
        user_id=user.id,
    )


def _room_json(view: RoomView, now: float) -> dict[str, Any]:
    """The room as the API lists it, with who is there and how busy it is."""
    record = view.record
    present = view.present
    return {
        **record.to_json(),
        "players": [
            {**p.to_json(), "present": p.id in present} for p in record.players
        ],
        "spectators": [s.to_json() for s in record.spectators],
        "process": view.process,
        "age": round(max(0.0, now - record.created), 3) if record.created else None,
        "messages_per_minute": view.messages_per_minute,
    }
