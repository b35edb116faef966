"""The common WebSocket opening handshake, read in one pass, with no I/O.

Autobahn's handshake is general: it reads every variant of the request,
logs each step and goes through a ``Deferred`` for ``onConnect``; profiled,
it was the largest part of a connection's cost. ``read`` takes only the
request every client sends (``GET``, HTTP/1.1, a host, ``Upgrade:
websocket``, ``Connection: Upgrade``, version 13, a well-formed key, each
of those once, subprotocols offered at most once each) and answers
``None`` for anything else,
which Autobahn then reads and answers as it always does, errors included.
The protocol applies the same checks Autobahn would to what ``read``
returns (origin, connection count) and leaves anything it doubts to
Autobahn too.

Extensions a client offers are not read: this server accepts none (no
compression), and a server may ignore the extensions it does not accept
(RFC 6455, section 9.1).
"""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs

import attrs

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_BASE64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
#: Headers a request must not repeat: Autobahn refuses or merges repeats.
_ONCE = frozenset(
    (
        "host",
        "upgrade",
        "connection",
        "sec-websocket-version",
        "sec-websocket-key",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "origin",
    )
)


@attrs.frozen
class Request:
    """A plain upgrade request: what Autobahn would have read from it."""

    status_line: str
    headers: dict[str, str]
    uri: str
    path: str
    params: dict[str, list[str]]
    host: str
    #: The port in the Host header, if it names one.
    port: int | None
    #: The Origin header, or "" without one.
    origin: str
    key: str
    #: The subprotocols offered, in the client's order.
    protocols: tuple[str, ...]
    #: Bytes after the request: the client's first frames, perhaps.
    rest: bytes


def read(data: bytes) -> Request | None:
    """The request at the start of ``data``, if it is the plain case."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or not data[:end].isascii():
        return None
    block = data[:end].decode("ascii")
    if block.count("\n") != block.count("\r\n") or "\r\r" in block:
        return None  # a bare line break: Autobahn splits those its own way
    lines = block.split("\r\n")
    method, _, rest = lines[0].partition(" ")
    uri, _, version = rest.partition(" ")
    if method != "GET" or version != "HTTP/1.1" or not uri.startswith("/"):
        return None
    if "#" in uri or " " in uri:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if not colon or not name or line[0] in " \t":
            return None  # a bad line or a folded one: Autobahn decides
        if name in headers and name in _ONCE:
            return None
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    offered = headers.get("sec-websocket-protocol")
    protocols = () if offered is None else tuple(p.strip() for p in offered.split(","))
    if len(set(protocols)) != len(protocols):
        return None
    if not _has_token(headers.get("upgrade"), "websocket"):
        return None
    if not _has_token(headers.get("connection"), "upgrade"):
        return None
    if headers.get("sec-websocket-version") != "13":
        return None
    key = headers.get("sec-websocket-key", "")
    if len(key) != 24 or key[-2:] != "==" or not _BASE64.issuperset(key[:-2]):
        return None
    host = headers.get("host")
    if not host:
        return None
    port = None
    if ":" in host and not host.endswith("]"):
        host, _, number = host.rpartition(":")
        if not number.isdigit():
            return None
        port = int(number)
    path, _, query = uri.partition("?")
    return Request(
        status_line=lines[0],
        headers=headers,
        uri=uri,
        path=path,
        params=parse_qs(query) if query else {},
        host=host,
        port=port,
        origin=headers.get("origin", ""),
        key=key,
        protocols=protocols,
        rest=data[end + 4 :],
    )


def response(key: str, server: str | None, protocol: str | None = None) -> bytes:
    """The 101 answer, as Autobahn writes it, with the subprotocol chosen."""
    accept = base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest())
    return b"".join(
        (
            b"HTTP/1.1 101 Switching Protocols\r\n",
            f"Server: {server}\r\n".encode("latin-1") if server else b"",
            b"Upgrade: WebSocket\r\nConnection: Upgrade\r\n",
            f"Sec-WebSocket-Protocol: {protocol}\r\n".encode() if protocol else b"",
            b"Sec-WebSocket-Accept: ",
            accept,
            b"\r\n\r\n",
        )
    )


def refusal(status: int, reason: str, body: bytes, retry_after: int) -> bytes:
    """An HTTP refusal of the handshake with a JSON body and ``Retry-After``
    (a client over a per-address limit), the connection closed after it."""
    return b"".join(
        (
            f"HTTP/1.1 {status} {reason}\r\n".encode("ascii"),
            f"Retry-After: {retry_after}\r\n".encode("ascii"),
            b"Content-Type: application/json\r\n",
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("ascii"),
            body,
        )
    )


def _has_token(value: str | None, token: str) -> bool:
    return value is not None and any(
        part.strip().lower() == token for part in value.split(",")
    )
