"""The HTTP API under ``/api/``: accounts, tokens, games and rooms, as JSON.

Every failure is ``{"detail": ..., "code": ...}`` with its status; a
handler never lets a traceback reach the client.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from gameserver._accounts.accounts import Accounts
from gameserver._engine.rooms import Rooms
from gameserver._errors import (
    GameServerError,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    TooManyRequests,
    Unavailable,
)
from gameserver._interfaces import IGame
from gameserver._models import UserRef
from gameserver._settings import Settings
from gameserver._wire import messages
from gameserver._wire.addresses import UNIX
from gameserver._wire.origins import OriginPolicy

if TYPE_CHECKING:
    from gameserver._guard import Guard

log = Logger()

Result = tuple[int, Any]
#: Where a request keeps its client's address once worked out.
_CLIENT_KEY = "gameserver_client_key"
_ID = object()
_BEARER = re.compile(rb"Bearer\s+(\S+)", re.IGNORECASE)


class PayloadTooLarge(GameServerError):
    code = "too_large"
    status = 413


class MethodNotAllowed(GameServerError):
    code = "method_not_allowed"
    status = 405


class LimitedRequest(Request):
    """Refuses a body over ``max_body`` bytes as it arrives, not once buffered.

    twisted.web would otherwise spool any body to disk before a resource
    could look at its size.
    """

    max_body = 64 * 1024
    _received = 0
    _refused = False

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.max_body:
            self._refuse()
        super().gotLength(None if self._refused else length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > self.max_body:
            self._refuse()
            return
        super().handleContentChunk(data)

    def _refuse(self) -> None:
        self._refused = True
        body = messages.dumps(
            {"detail": f"the body is over {self.max_body} bytes", "code": "too_large"}
        )
        transport: Any = self.channel.transport
        transport.write(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        transport.loseConnection()


def request_factory(max_body: int) -> type[LimitedRequest]:
    return type("Request", (LimitedRequest,), {"max_body": max_body})


Routes = list[tuple[tuple[object, ...], dict[bytes, Callable[..., Awaitable[Result]]]]]


class JsonApi(Resource):
    """What every JSON endpoint tree shares: routing, bodies, bearer tokens,
    CORS and the ``{"detail", "code"}`` errors. A subclass fills ``_routes``;
    ``mount`` serves another tree under one path segment of this one."""

    isLeaf = True
    #: Stopping: logins, sign-ups and new tokens are refused (503).
    draining = False

    def __init__(
        self, settings: Settings, accounts: Accounts, guard: Guard | None = None
    ) -> None:
        """``guard``: the per-address limits (requests, sign-ups, logins)."""
        super().__init__()
        self._guard = guard
        self._settings = settings
        self._accounts = accounts
        self._origins = OriginPolicy(settings.allowed_origins)
        self._routes: Routes = []
        self._mounted: dict[str, JsonApi] = {}
        #: What a stopping server refuses: it would hand out sessions that
        #: are about to be closed.
        self._logins: set[Callable[..., Awaitable[Result]]] = set()
        #: Answers by route pattern (``rooms/{id}``) and status, for the metrics.
        self.requests: dict[tuple[str, int], int] = {}

    def mount(self, segment: str, api: JsonApi) -> None:
        """Serve ``api`` under ``segment``/ of this tree."""
        self._mounted[segment] = api

    def render(self, request: Request) -> int:
        ensureDeferred(self._respond(request))
        return NOT_DONE_YET

    async def _respond(self, request: Request) -> None:
        finished = [False]
        request.notifyFinish().addBoth(lambda _: finished.__setitem__(0, True))
        self._cors(request)
        route = ["unmatched"]
        try:
            if self._guard is not None:
                await self._guard.http_request(self._address(request))
            status, body = await self._route(request, route)
        except GameServerError as e:
            status, body = e.status, {"detail": e.detail, "code": e.code}
            if e.status == 401:
                request.setHeader(b"WWW-Authenticate", b"Bearer")
            if isinstance(e, TooManyRequests):
                request.setHeader(b"Retry-After", str(e.wait_seconds).encode())
        except Exception:
            log.failure("{method} {uri} failed", method=request.method, uri=request.uri)
            status, body = (
                500,
                {"detail": "internal server error", "code": "internal_error"},
            )
        key = (route[0], status)
        self.requests[key] = self.requests.get(key, 0) + 1
        if finished[0]:
            return
        request.setResponseCode(status)
        if body is not None:
            request.setHeader(b"Content-Type", b"application/json")
            request.write(messages.dumps(body))
        request.finish()

    def _cors(self, request: Request) -> None:
        origin = request.getHeader(b"Origin")
        if origin is None:
            return
        if self._origins.allow_all:
            request.setHeader(b"Access-Control-Allow-Origin", b"*")
        elif self._origins.allows(origin.decode("latin-1")):
            request.setHeader(b"Access-Control-Allow-Origin", origin)
            request.setHeader(b"Vary", b"Origin")
        else:
            return
        request.setHeader(
            b"Access-Control-Allow-Headers", b"Authorization, Content-Type"
        )
        request.setHeader(
            b"Access-Control-Allow-Methods", b"GET, POST, DELETE, OPTIONS"
        )
        request.setHeader(b"Access-Control-Max-Age", b"600")

    async def _route(
        self, request: Request, route: list[str], segments: list[str] | None = None
    ) -> Result:
        """``route[0]`` is set to the pattern matched, never the raw path."""
        if segments is None:
            segments = [s.decode("utf-8", "replace") for s in request.postpath or ()]
            if segments and segments[-1] == "":
                segments.pop()
        if segments and segments[0] in self._mounted:
            inner = [route[0]]
            try:
                return await self._mounted[segments[0]]._route(
                    request, inner, segments[1:]
                )
            finally:
                if inner[0] != route[0]:
                    route[0] = f"{segments[0]}/{inner[0]}"
        for pattern, methods in self._routes:
            args = _match(pattern, segments)
            if args is None:
                continue
            route[0] = "/".join("{id}" if p is _ID else str(p) for p in pattern)
            if request.method == b"OPTIONS":
                return 204, None
            handler = methods.get(request.method)
            if self.draining and handler in self._logins:
                raise Unavailable("this server is restarting: try again shortly")
            if handler is None:
                allowed = ", ".join(m.decode() for m in methods)
                request.setHeader(b"Allow", allowed.encode())
                raise MethodNotAllowed(f"use {allowed}")
            return await handler(request, *args)
        raise NotFound("no such endpoint")

    def _address(self, request: Request) -> str:
        """The client's address, as the limits count it (``addresses``):
        worked out once a request (the rate, then a login's or sign-up's
        own limits, ask for it)."""
        known = getattr(request, _CLIENT_KEY, None)
        if known is not None:
            return str(known)
        assert self._guard is not None
        addresses = self._guard.addresses
        peer = request.getClientAddress()
        host = getattr(peer, "host", None) or UNIX  # not IP: a UNIX socket
        header = None
        if addresses.any_trusted:
            values = request.requestHeaders.getRawHeaders(
                addresses.header.encode("ascii")
            )
            if values:
                header = b", ".join(values).decode("latin-1")
        key = addresses.client(host, header)
        setattr(request, _CLIENT_KEY, key)
        return key

    def _client(self, request: Request) -> str | None:
        return None if self._guard is None else self._address(request)

    def _body(self, request: Request, empty: Any = None) -> Any:
        """The JSON body; ``empty`` (if given) for a request with none."""
        limit = self._settings.max_request_body
        content: Any = request.content
        raw = content.read(limit + 1)
        if len(raw) > limit:
            raise PayloadTooLarge(f"the body is over {limit} bytes")
        if empty is not None and not raw.strip():
            return empty
        try:
            return messages.loads(raw)
        except GameServerError as e:
            raise InvalidInput(f"the body is not valid JSON ({e.detail})") from None

    def _bearer(self, request: Request) -> str:
        """The request's access token, unchecked; 401 if it has none."""
        header = request.getHeader(b"Authorization")
        found = _BEARER.fullmatch(header.strip()) if header else None
        if found is None:
            raise NotAuthenticated("send 'Authorization: Bearer <access token>'")
        return found.group(1).decode("ascii", "replace")

    async def _user(self, request: Request) -> UserRef:
        return await self._accounts.authenticate(self._bearer(request))


class ApiResource(JsonApi):
    def __init__(
        self,
        settings: Settings,
        accounts: Accounts,
        rooms: Rooms,
        games: Mapping[str, IGame],
        guard: Guard | None = None,
    ) -> None:
        super().__init__(settings, accounts, guard)
        self._rooms = rooms
        self._games = games
        self._routes = [
            (("users",), {b"POST": self._create_user}),
            (("users", "claim"), {b"POST": self._claim}),
            (("token",), {b"POST": self._token}),
            (("token", "refresh"), {b"POST": self._refresh}),
            (("token", "guest"), {b"POST": self._guest}),
            (("games",), {b"GET": self._list_games}),
            (("rooms",), {b"GET": self._list_rooms, b"POST": self._create_room}),
            (("rooms", "quick"), {b"POST": self._quick}),
            (("rooms", _ID), {b"GET": self._get_room, b"DELETE": self._delete_room}),
        ]
        self._logins = {self._create_user, self._token, self._refresh, self._guest}

    async def _create_user(self, request: Request) -> Result:
        user = await self._accounts.register(self._body(request), self._client(request))
        return 201, user.to_json()

    async def _token(self, request: Request) -> Result:
        return 200, await self._accounts.login(
            self._body(request), self._client(request)
        )

    async def _guest(self, request: Request) -> Result:
        return 200, await self._accounts.guest(
            self._body(request, empty={}), self._client(request)
        )

    async def _claim(self, request: Request) -> Result:
        user = await self._user(request)
        claimed = await self._accounts.claim(
            user, self._body(request), self._client(request)
        )
        return 200, claimed.to_json()

    async def _refresh(self, request: Request) -> Result:
        return 200, await self._accounts.refresh(self._body(request))

    async def _list_games(self, request: Request) -> Result:
        return 200, [
            {
                "name": g.name,
                "description": g.description,
                "min_players": g.min_players,
                "max_players": g.max_players,
            }
            for g in sorted(self._games.values(), key=lambda g: g.name)
        ]

    async def _list_rooms(self, request: Request) -> Result:
        await self._user(request)
        game = _query(request, "game")
        raw_page = _query(request, "page") or "1"
        if not (raw_page.isascii() and raw_page.isdigit() and len(raw_page) <= 9):
            raise InvalidInput("'page' must be a positive integer")
        number, size = int(raw_page), self._settings.page_size
        page = await self._rooms.page(number, size, game)

        def link(n: int) -> str:
            """Relative to the host, so a forged Host header cannot leak in."""
            query = {"page": n} if game is None else {"page": n, "game": game}
            base = "/".join(
                quote(seg.decode("utf-8", "replace")) for seg in request.prepath or ()
            )
            return f"/{base}/rooms/?{urlencode(query)}"

        return 200, {
            "count": page.count,
            "next": link(number + 1) if number * size < page.count else None,
            "previous": link(number - 1) if number > 1 else None,
            "results": [room.to_json() for room in page.items],
        }

    async def _create_room(self, request: Request) -> Result:
        user = await self._user(request)
        room = await self._rooms.create(user, self._body(request))
        return 201, room.to_json()

    async def _quick(self, request: Request) -> Result:
        """A seat in an open room of the game, held for the user's JOIN_ROOM."""
        user = await self._user(request)
        matchmaker = self._rooms.matchmaker
        if matchmaker is None:
            raise NotFound("quick join is not served here")
        return 200, await matchmaker.reserve(user, self._body(request))

    async def _get_room(self, request: Request, room_id: int) -> Result:
        await self._user(request)
        return 200, (await self._rooms.get(room_id)).to_json()

    async def _delete_room(self, request: Request, room_id: int) -> Result:
        user = await self._user(request)
        await self._rooms.delete(room_id, user)
        return 204, None


def _match(pattern: tuple[object, ...], segments: list[str]) -> list[int] | None:
    if len(pattern) != len(segments):
        return None
    args = []
    for expected, actual in zip(pattern, segments, strict=True):
        if expected is _ID:
            if not actual.isascii() or not actual.isdigit() or len(actual) > 18:
                return None
            args.append(int(actual))
        elif expected != actual:
            return None
    return args


def _query(request: Request, name: str) -> str | None:
    values = request.args.get(name.encode())
    return values[0].decode("utf-8", "replace") if values else None
