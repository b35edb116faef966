"""Which web pages may call the server: one allowlist for CORS and WebSocket.

Autobahn compares the WebSocket ``Origin`` as ``scheme://host:port`` with
the port always written out, while browsers send ``https://host`` for the
default port. Each entry is therefore also allowed with its default port,
so ``https://play.example`` means the same thing to both checks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from autobahn.util import wildcards2patterns

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HAS_PORT = re.compile(r":(\d+|\*)$")


def expand(origins: Iterable[str]) -> list[str]:
    """The entries, plus each one with its scheme's default port."""
    expanded = []
    for origin in origins:
        expanded.append(origin)
        scheme, sep, _ = origin.partition("://")
        if sep and scheme in _DEFAULT_PORTS and not _HAS_PORT.search(origin):
            expanded.append(f"{origin}:{_DEFAULT_PORTS[scheme]}")
    return expanded


class OriginPolicy:
    def __init__(self, origins: Iterable[str]) -> None:
        origins = list(origins)
        self.allow_all = "*" in origins
        self.wildcards = expand(origins)
        self._patterns = wildcards2patterns(self.wildcards)

    def allows(self, origin: str) -> bool:
        return self.allow_all or any(p.match(origin) for p in self._patterns)
