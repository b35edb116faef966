"""The start-up check of ``--redis``: a one-line error instead of a hang.

It speaks just enough RESP over a plain blocking socket, before the
reactor runs: a bad URL, an unreachable server, a wrong password or
database each get a message of their own.
"""

from __future__ import annotations

import socket

from gameserver._redis.connection import RedisAddress


def probe(url: str, *, timeout: float = 3.0) -> str:
    """Return ``url`` if a Redis answers there as configured; else ``ValueError``."""
    address = RedisAddress.parse(url)
    where = f"{address.host}:{address.port}"
    commands: list[tuple[str, ...]] = []
    if address.password is not None:
        commands.append(("AUTH", address.password))
    commands += [("SELECT", str(address.db)), ("PING",)]
    try:
        with socket.create_connection(
            (address.host, address.port), timeout=timeout
        ) as s:
            for command in commands:
                s.sendall(_resp(command))
                reply = s.recv(256)
                if not reply.startswith((b"+OK", b"+PONG")):
                    detail = reply.decode("utf-8", "replace").strip() or "no answer"
                    raise ValueError(f"{where} refused {command[0]}: {detail}")
    except OSError as e:
        raise ValueError(f"cannot reach Redis at {where}: {e}") from None
    return url


def _resp(command: tuple[str, ...]) -> bytes:
    parts = [f"*{len(command)}\r\n".encode()]
    for arg in command:
        raw = arg.encode("utf-8")
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)
