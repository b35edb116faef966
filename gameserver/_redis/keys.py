"""Every Redis key gameserver uses, in one place.

A room's keys share the hash tag ``{room:N}``, a user's ``{user:N}``, and
the processes' ``{processes}``, so that every script touches one hash
slot only, as Redis Cluster requires. The rest (id counters, the username
index, the room listings, the index of due timers) are updated by
commands of their own; the socket counts' scripts touch an address's hash
and a process's address set, two slots (see "Past one Redis").
"""

from __future__ import annotations

PREFIX = "gs"

USER_IDS = f"{PREFIX}:users:next"
USER_NAMES = f"{PREFIX}:users:names"
#: Guest accounts not yet handed out as expired, scored by their end.
GUESTS = f"{PREFIX}:users:guests"
#: The users marked admin in the store (``gameserver-admin``).
ADMINS = f"{PREFIX}:users:admins"
ROOM_IDS = f"{PREFIX}:rooms:next"
ROOMS = f"{PREFIX}:rooms"
#: Due timers of every room: ``room_id|name`` scored by deadline.
TIMERS = f"{PREFIX}:timers"
PROCESSES = f"{PREFIX}:{{processes}}"

#: The parts of a room, in the order the room scripts take them as KEYS.
ROOM_PARTS = (
    "meta",
    "state",
    "entries",
    "chat",
    "timers",
    "present",
    "groups",
    "seen",
    "lease",
    "log",
)


def user(user_id: int) -> str:
    return f"{PREFIX}:user:{user_id}"


def rooms_of_game(game: str) -> str:
    return f"{PREFIX}:rooms:game:{game}"


def room(room_id: int, part: str) -> str:
    return f"{PREFIX}:{{room:{room_id}}}:{part}"


def room_keys(room_id: int) -> list[str]:
    return [room(room_id, part) for part in ROOM_PARTS]


def online(user_id: int) -> str:
    """Hash: the processes holding the user's sockets."""
    return f"{PREFIX}:{{user:{user_id}}}:online"


def user_rooms(user_id: int) -> str:
    """Set: the rooms the user is present in (a hint, kept by the rooms' owners)."""
    return f"{PREFIX}:{{user:{user_id}}}:rooms"


def pool(game: str, key: str) -> str:
    """Set: the rooms quick joins of this game and match key may seat in."""
    return f"{PREFIX}:pool:{game}:{key}"


def pool_lock(game: str, key: str) -> str:
    """The holder of the pool's lock (a matchmaker choosing a room)."""
    return f"{pool(game, key)}:lock"


def user_seats(user_id: int) -> str:
    """Set: the rooms the user holds a seat in without being present there
    (kept by the rooms' owners; with ``user_rooms``, every room of theirs)."""
    return f"{PREFIX}:{{user:{user_id}}}:seats"


def user_owns(user_id: int) -> str:
    """Set: the rooms the user made (kept by the store and the owners)."""
    return f"{PREFIX}:{{user:{user_id}}}:owns"


def alive(process_id: str) -> str:
    return f"{PREFIX}:{{processes}}:alive:{process_id}"


def buried(process_id: str) -> str:
    """Set when another process starts letting this one's users go."""
    return f"{PREFIX}:{{processes}}:buried:{process_id}"


def process_users(process_id: str) -> str:
    return f"{PREFIX}:{{processes}}:users:{process_id}"


def channel(process_id: str) -> str:
    """The pub/sub channel a process reads: only what is for its sockets."""
    return f"{PREFIX}:proc:{process_id}"


def limit(kind: str, key: str) -> str:
    """A counter of the abuse limits: a bucket or a record of failed attempts."""
    return f"{PREFIX}:limit:{kind}:{key}"


def address_sockets(address: str) -> str:
    """Hash: per process, its open sockets from this address (field: the
    process id) and those not yet validated (``<process id>:u``)."""
    return f"{PREFIX}:addr:{address}:sockets"


def process_addresses(process_id: str) -> str:
    """Set: the addresses a process counts sockets of, cleared when it is buried."""
    return f"{PREFIX}:{{processes}}:addresses:{process_id}"
