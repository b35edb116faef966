"""The browser lobby at ``/``, its files under ``/static/``, the monitor
page at ``/admin/``.

``lobby_root()`` is the resource ``GameServer`` mounts at the top of its
tree: it serves ``static/index.html`` for ``/``, the files of ``static/``
(the lobby and the ``gameserver.js`` client library) under ``/static/``,
``static/admin.html`` for ``/admin/``, and takes the ``api`` and ``ws``
children the server adds. The files are package data, found next to this
module, and are sent by ``twisted.web.static.File``, which streams a file
in chunks with a producer rather than reading it whole on the reactor
thread.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from twisted.web import pages, resource

with warnings.catch_warnings():
    # twisted.web.static builds its own error pages with a deprecated class
    # at import; nothing here uses them.
    warnings.simplefilter("ignore", DeprecationWarning)
    from twisted.web import static
from twisted.web.server import Request
from twisted.web.util import redirectTo

#: Where the lobby's files are, inside the installed package.
STATIC_DIR = Path(__file__).resolve().parent / "static"

#: Content types by extension: fixed here rather than read from the
#: machine's ``/etc/mime.types``, which differs from one system to another.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "application/javascript; charset=utf-8",
    ".mjs": "application/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/vnd.microsoft.icon",
    ".txt": "text/plain; charset=utf-8",
}

#: The lobby page loads only its own files and talks only to its own server.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class StaticFile(static.File):
    """``static.File`` with fixed content types, no directory listings, GET
    and HEAD only, and ``Cache-Control: no-cache`` (browsers revalidate with
    ``If-Modified-Since`` and get a cheap 304, so an upgraded server is never
    masked by a stale cache, in tests or in use)."""

    contentTypes = CONTENT_TYPES
    defaultType = "application/octet-stream"
    indexNames: list[str] = []

    def __init__(self, path: str | Path, *args: Any, **kwargs: Any) -> None:
        super().__init__(str(path), *args, **kwargs)
        # File.__init__ and createSimilarFile copy these per instance (and
        # File.__init__ would make a file with no known extension, such as
        # vendor/msgpack/LICENSE, text/html).
        self.contentTypes = CONTENT_TYPES
        self.defaultType = StaticFile.defaultType
        self.indexNames = []

    def render(self, request: Request) -> bytes | int:
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"Allow", b"GET, HEAD")
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"Method Not Allowed\n"
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        # Public files: a page on another origin may import gameserver.js
        # (module scripts are fetched with CORS). The API and the WebSocket
        # keep their own origin checks.
        request.setHeader(b"Access-Control-Allow-Origin", b"*")
        if self.path.endswith(".html"):
            # The page shows what players type (names, chat): the policy is
            # a second line of defence behind the lobby's own escaping.
            request.setHeader(
                b"Content-Security-Policy", CONTENT_SECURITY_POLICY.encode()
            )
            request.setHeader(b"Referrer-Policy", b"no-referrer")
        return super().render(request)

    def getChild(self, path: bytes, request: Request) -> resource.IResource:
        # A NUL byte (``%00``) makes the file system calls raise ValueError,
        # which would be a 500: no file has one in its name.
        if b"\0" in path:
            return pages.notFound("No Such Resource", "No such file.")
        return super().getChild(path, request)

    def directoryListing(self) -> resource.IResource:
        return pages.notFound("No Such Resource", "No such file.")


class LobbyRoot(resource.Resource):
    """The top of a server's tree: ``/`` is the lobby, ``/static/`` its files.

    Mounted under a prefix (``/game``), a request for the bare prefix is
    redirected to ``/game/`` so that the page's relative links resolve.
    """

    def __init__(self, static_dir: str | Path = STATIC_DIR) -> None:
        super().__init__()
        static_dir = Path(static_dir)
        self.putChild(b"", StaticFile(static_dir / "index.html"))
        self.putChild(b"static", StaticFile(static_dir))
        self.putChild(b"admin", AdminPage(static_dir))

    def getChild(self, path: bytes, request: Request) -> resource.IResource:
        return pages.notFound("No Such Resource", "No such page.")

    def render_GET(self, request: Request) -> bytes:
        return redirectTo(request.path + b"/", request)

    render_HEAD = render_GET


class AdminPage(resource.Resource):
    """``/admin/``: the monitor page (``static/admin.html``), for admins.

    The page is public like the lobby (its files hold no secret); what it
    shows comes from ``/api/admin/``, which refuses everyone but admins. It
    loads its scripts and styles from ``../static/``, so it works under any
    prefix the server's tree is mounted at; ``/admin`` is redirected to
    ``/admin/`` for those relative links to resolve.
    """

    def __init__(self, static_dir: Path) -> None:
        super().__init__()
        self.putChild(b"", StaticFile(static_dir / "admin.html"))

    def getChild(self, path: bytes, request: Request) -> resource.IResource:
        return pages.notFound("No Such Resource", "No such page.")

    def render_GET(self, request: Request) -> bytes:
        return redirectTo(request.path + b"/", request)

    render_HEAD = render_GET


def lobby_root() -> resource.Resource:
    """A resource serving the lobby at its ``""`` child, files at ``static``
    and the monitor page at ``admin``; ``GameServer`` adds ``api`` and
    ``ws`` beside them."""
    return LobbyRoot()
