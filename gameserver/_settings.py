"""Every knob of a server in one place, with safe defaults for a public one."""

from __future__ import annotations

import math
from collections.abc import Iterable

import attrs

from gameserver._wire.addresses import HEADERS, parse_networks

MIN_SECRET_BYTES = 32


def _check_secret(instance: object, attribute: attrs.Attribute, value: bytes) -> None:
    if len(value) < MIN_SECRET_BYTES:
        raise ValueError(
            f"the token secret must be at least {MIN_SECRET_BYTES} bytes long"
            f" (got {len(value)})"
        )


def _positive(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{attribute.name} must be positive (got {value!r})")


def _log_size(instance: object, attribute: attrs.Attribute, value: int) -> None:
    # A commit sends at most this many entries, in one call of Lua's
    # unpack, whose limit is near 8000.
    if type(value) is not int or not 1 <= value <= 5000:
        raise ValueError(f"{attribute.name} must be a whole number 1 to 5000")


def _networks(
    instance: object, attribute: attrs.Attribute, value: tuple[str, ...]
) -> None:
    parse_networks(value)


def _proxy_header(instance: object, attribute: attrs.Attribute, value: str) -> None:
    if value not in HEADERS:
        raise ValueError(f"{attribute.name} must be one of {', '.join(HEADERS)}")


def _to_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _to_names(value: Iterable[str]) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else value
    return tuple(name.casefold() for name in names)


def _to_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


@attrs.frozen(kw_only=True)
class Settings:
    secret: bytes = attrs.field(
        converter=_to_bytes, validator=_check_secret, repr=False
    )
    #: Token lifetimes, in seconds.
    access_lifetime: float = attrs.field(default=5 * 60, validator=_positive)
    refresh_lifetime: float = attrs.field(default=24 * 60 * 60, validator=_positive)
    #: Guest accounts made per second by the whole server, and in a burst.
    guest_rate: float = attrs.field(default=2.0, validator=_positive)
    guest_burst: int = attrs.field(default=20, validator=_positive)
    #: Seconds between looks for guests whose refresh token has expired.
    guest_sweep: float = attrs.field(default=60.0, validator=_positive)
    #: Origins allowed for WebSocket upgrades and CORS; Autobahn-style
    #: wildcards (``https://*.example.com``). ``*`` allows all.
    allowed_origins: tuple[str, ...] = attrs.field(default=("*",), converter=_to_tuple)
    #: Seconds a socket may stay open without a ``VALIDATE_CONNECTION``.
    validate_timeout: float = attrs.field(default=10.0, validator=_positive)
    max_message_size: int = attrs.field(default=64 * 1024, validator=_positive)
    #: Heartbeat: ping every ``ping_interval`` s, drop after ``ping_timeout`` s.
    ping_interval: float = attrs.field(default=20.0, validator=_positive)
    ping_timeout: float = attrs.field(default=10.0, validator=_positive)
    max_connections: int = attrs.field(default=10_000, validator=_positive)
    max_connections_per_user: int = attrs.field(default=5, validator=_positive)
    #: Token bucket per connection: sustained messages per second, and burst.
    message_rate: float = attrs.field(default=20.0, validator=_positive)
    message_burst: int = attrs.field(default=40, validator=_positive)
    #: Messages refused in a row before a flooding socket is closed (1008).
    flood_limit: int = attrs.field(default=100, validator=_positive)
    #: Bytes queued for a client that does not read before it is dropped.
    max_outbound_buffer: int = attrs.field(default=1024 * 1024, validator=_positive)
    max_request_body: int = attrs.field(default=64 * 1024, validator=_positive)
    page_size: int = attrs.field(default=10, validator=_positive)
    chat_max_length: int = attrs.field(default=500, validator=_positive)
    #: Largest state document or named entry of a room, as JSON bytes.
    max_state_size: int = attrs.field(default=256 * 1024, validator=_positive)
    #: scrypt cost as log2(N); each step doubles the time of a hash.
    password_cost: int = attrs.field(default=15, validator=_positive)
    max_concurrent_hashes: int = attrs.field(default=2, validator=_positive)
    #: Hashes that may wait for a thread; past that, logins get 503.
    max_queued_hashes: int = attrs.field(default=64, validator=_positive)
    #: Turns one room may have waiting or not yet saved; past that a new
    #: message is refused at once with ``busy``, so a flooded room's
    #: latency stays within this many turns.
    max_pending_turns: int = attrs.field(default=64, validator=_positive)
    #: Seconds of a room's messages kept for users who come back
    #: (``JOIN_ROOM {resume}``), and at most how many messages.
    resume_window: float = attrs.field(default=120.0, validator=_positive)
    resume_log: int = attrs.field(default=1000, validator=_log_size)
    #: Seconds a seat found by ``POST /api/rooms/quick/`` is held for the
    #: user's ``JOIN_ROOM``.
    seat_hold: float = attrs.field(default=30.0, validator=_positive)
    #: Seconds a turn may wait (a handler awaiting something) before it fails
    #: with ``timeout`` and the room goes on.
    turn_timeout: float = attrs.field(default=30.0, validator=_positive)
    #: With Redis: seconds a room's lease lasts unless its owner renews it,
    #: which is how long a room waits before another process takes over
    #: from a dead owner.
    lease_ttl: float = attrs.field(default=5.0, validator=_positive)
    #: With Redis: a process that has not said it is alive for this long is
    #: taken for dead; it says so every ``heartbeat_interval`` seconds.
    process_ttl: float = attrs.field(default=6.0, validator=_positive)
    heartbeat_interval: float = attrs.field(default=2.0, validator=_positive)
    #: With Redis: how often stored timers of rooms nobody owns are looked for.
    timer_poll: float = attrs.field(default=0.25, validator=_positive)
    #: With Redis: seconds before work forwarded to a room's owner and not
    #: yet acknowledged is sent again (the owner may have changed).
    forward_retry: float = attrs.field(default=0.5, validator=_positive)
    #: With Redis: seconds between an owner's checks that its rooms' present
    #: users still have sockets where the rooms think (a lost disconnect).
    presence_check: float = attrs.field(default=15.0, validator=_positive)
    #: With Redis: seconds an owner keeps a room nobody is in, with no
    #: timers, before giving it back.
    idle_release: float = attrs.field(default=60.0, validator=_positive)
    #: Seconds a stop (SIGTERM, ``GameServer.stop``) may take: the turns in
    #: flight finish, the sockets close (1012) and, with Redis, the rooms
    #: are handed over once their players are back elsewhere.
    drain_timeout: float = attrs.field(default=10.0, validator=_positive)
    #: Usernames (any case) that are admins, besides those marked in the
    #: store: they may use ``/api/admin/``.
    admins: tuple[str, ...] = attrs.field(default=(), converter=_to_names)
    # Per client address and per account (``_guard.py``); with Redis,
    # shared by every process.
    #: Proxies (addresses or CIDRs) whose ``proxy_header`` names the client;
    #: from any other peer the header is ignored.
    trusted_proxies: tuple[str, ...] = attrs.field(
        default=(), converter=_to_tuple, validator=_networks
    )
    #: The header those proxies set: ``x-forwarded-for`` or ``forwarded``.
    proxy_header: str = attrs.field(default="x-forwarded-for", validator=_proxy_header)
    #: WebSocket connections one address may hold open, and how many of
    #: them may not be validated yet (past either: HTTP 429 at the handshake).
    max_sockets_per_address: int = attrs.field(default=50, validator=_positive)
    max_unvalidated_per_address: int = attrs.field(default=10, validator=_positive)
    #: HTTP API requests per second of one address, sustained and in a burst.
    http_rate: float = attrs.field(default=20.0, validator=_positive)
    http_burst: int = attrs.field(default=100, validator=_positive)
    #: Failed logins of one username from one address after which each
    #: attempt waits ``login_backoff`` seconds, doubled every time up to
    #: ``login_backoff_max``; forgotten ``login_forget`` seconds later. The
    #: same for all the logins of one address, and, looser (so that a
    #: stranger cannot easily lock a user out), of one username from any
    #: address. Guesses at a room's password count per user and room like
    #: ``login_failures``, and per room like ``room_guesses_per_room``.
    login_failures: int = attrs.field(default=5, validator=_positive)
    login_failures_per_address: int = attrs.field(default=20, validator=_positive)
    login_failures_per_username: int = attrs.field(default=100, validator=_positive)
    room_guesses_per_room: int = attrs.field(default=50, validator=_positive)
    login_backoff: float = attrs.field(default=1.0, validator=_positive)
    login_backoff_max: float = attrs.field(default=900.0, validator=_positive)
    login_forget: float = attrs.field(default=900.0, validator=_positive)
    #: Accounts and guest accounts one address may make in an hour.
    signups_per_address: int = attrs.field(default=10, validator=_positive)
    guests_per_address: int = attrs.field(default=30, validator=_positive)
