"""Mount gameserver inside an existing twisted.web site, without twistd.

Run it with ``python examples/embedded.py`` and open http://localhost:8080/:
the host app keeps its own pages, and gameserver lives under /game/.
"""

from __future__ import annotations

import os
import sys

from twisted.internet import reactor
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.web.resource import Resource
from twisted.web.server import Site

from gameserver import GameServer, Settings


class Home(Resource):
    def render_GET(self, request):
        return b"My app, with games at /game/api/ and /game/ws\n"


def make_site(secret: str) -> Site:
    game_server = GameServer(Settings(secret=secret))
    root = Resource()
    root.putChild(b"", Home())
    root.putChild(b"game", game_server.resource)
    return Site(root)


if __name__ == "__main__":
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    reactor.listenTCP(8080, make_site(os.environ["GAMESERVER_SECRET"]))
    reactor.run()
