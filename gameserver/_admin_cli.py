"""``gameserver-admin``: mark accounts admin in a Redis store, or list them.

In memory the store is inside the server's process, and nothing outside
it can reach it: there, name admins with ``--admins`` at start.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from twisted.internet import task
from twisted.internet.defer import ensureDeferred

from gameserver._redis.connection import RedisAddress, RedisConnection
from gameserver._redis.probe import probe
from gameserver._redis.store import RedisStore

#: Seconds to wait for the connection to Redis.
CONNECT_TIMEOUT = 5.0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gameserver-admin",
        description="Grant or revoke the admin mark of gameserver accounts in"
        " a Redis store (in memory, use twistd gameserver --admins instead).",
    )
    p.add_argument("--redis", required=True, help="e.g. redis://127.0.0.1:6379/0")
    commands = p.add_subparsers(dest="command", required=True)
    for name, help_ in (
        ("grant", "make the user an admin"),
        ("revoke", "make the user an admin no more"),
    ):
        command = commands.add_parser(name, help=help_)
        command.add_argument("username")
    commands.add_parser("list", help="the users marked admin in the store")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        probe(args.redis)
    except ValueError as e:
        sys.exit(f"gameserver-admin: {e}")
    task.react(lambda reactor: ensureDeferred(_run(reactor, args)))


async def _run(reactor: Any, args: argparse.Namespace) -> None:
    redis = RedisConnection(RedisAddress.parse(args.redis), reactor)
    try:
        waited = 0.0
        while not redis.connected:
            if waited >= CONNECT_TIMEOUT:
                raise SystemExit("gameserver-admin: Redis did not answer in time")
            await task.deferLater(reactor, 0.05, lambda: None)
            waited += 0.05
        await _command(RedisStore(redis), args)
    finally:
        await redis.disconnect()


async def _command(store: RedisStore, args: argparse.Namespace) -> None:
    if args.command == "list":
        for admin in await store.admins():
            print(f"{admin.id}\t{admin.username}")
        return
    record = await store.get_user_by_name(args.username)
    if record is None:
        raise SystemExit(f"gameserver-admin: there is no user {args.username!r}")
    grant = args.command == "grant"
    await store.set_user_flags(record.id, admin=grant)
    state = "is an admin" if grant else "is not an admin"
    print(f"{record.username} (id {record.id}) {state} now")


if __name__ == "__main__":
    main()
