"""The abuse limits: per client address, per username, per user and room.

``Guard`` is the policy (which counter, how many, what the refusal says);
the counting itself is an ``ILimiter``, in memory or on Redis. Each
refusal is a ``TooManyRequests`` (HTTP 429 with ``Retry-After``, or
``ERROR too_many_requests`` with ``retry_after`` on a socket).

Password guesses are counted before they are checked, so that a burst of
guesses sent at once is cut off like one sent in turn, and the count is
forgiven afterwards for a right guess. The check comes before the user is
looked up: a refusal says nothing of whether the user exists.

When the counters cannot be reached (Redis is down) the limits let
everything through rather than refuse everyone; the store is down too
then, and the requests fail on their own.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from gameserver._errors import GameServerError, TooManyRequests
from gameserver._interfaces import ILimiter
from gameserver._settings import Settings
from gameserver._wire.addresses import ClientAddresses

log = Logger()

CODE = "too_many_requests"
#: The limits, as ``Guard.refused`` and the metrics name them.
LIMITS = ("sockets", "unvalidated", "http", "signup", "guest", "login", "room_password")
#: Seconds a client over the open sockets cap is told to wait.
SOCKETS_RETRY = 30.0
#: Longest key kept of a username tried (longer ones cannot exist anyway).
MAX_NAME_KEY = 64
HOUR = 3600.0


#: Seconds between two warnings that the counters are unreachable.
WARN_EVERY = 60.0


class Guard:
    def __init__(
        self, settings: Settings, limiter: ILimiter, clock: IReactorTime
    ) -> None:
        self.settings = settings
        self.limiter = limiter
        self.clock = clock
        self.addresses = ClientAddresses(
            settings.trusted_proxies, settings.proxy_header
        )
        #: Refusals by limit, for metrics and logs.
        self.refused: Counter[str] = Counter()
        self._warned = -WARN_EVERY

    def _open(self, failure: Failure, default: Any) -> Any:
        """The counters are unreachable: let the request through (and say so,
        once a minute, not once a request)."""
        now = self.clock.seconds()
        if now - self._warned >= WARN_EVERY:
            self._warned = now
            if failure.check(GameServerError):
                log.warn(
                    "abuse limits not counted (letting clients through): {e}",
                    e=failure.getErrorMessage(),
                )
            else:
                # Not Redis being away: a bug, or a reply the scripts did
                # not expect. The client goes through all the same (a
                # socket must not hang in its handshake), with a traceback.
                log.failure(
                    "the abuse limits failed (letting clients through)", failure
                )
        return default

    def _refuse(self, kind: str, detail: str, retry_after: float) -> TooManyRequests:
        self.refused[kind] += 1
        return TooManyRequests(detail, retry_after=retry_after, code=CODE)

    # Sockets

    def open_socket(self, address: str) -> Deferred[TooManyRequests | bool]:
        """Count a new socket of ``address``: True if counted (its validation
        and close are to be told), False if let in uncounted (the counters
        are unreachable: it must not be uncounted either, which would take
        another socket's count), or the refusal to answer it with (already
        fired in memory: no wait)."""
        s = self.settings
        return (
            self.limiter.open_socket(
                address, s.max_sockets_per_address, s.max_unvalidated_per_address
            )
            .addErrback(self._open, -1)
            .addCallback(self._judged)
        )

    def _judged(self, answer: int) -> TooManyRequests | bool:
        s = self.settings
        if answer == 1:
            return self._refuse(
                "sockets",
                f"too many connections from your address (at most"
                f" {s.max_sockets_per_address})",
                SOCKETS_RETRY,
            )
        if answer == 2:
            return self._refuse(
                "unvalidated",
                f"too many connections from your address not yet validated"
                f" (at most {s.max_unvalidated_per_address})",
                s.validate_timeout,
            )
        return answer == 0

    def socket_validated(self, address: str) -> None:
        self.limiter.socket_changed(address, 0, -1)

    def socket_closed(self, address: str, validated: bool) -> None:
        self.limiter.socket_changed(address, -1, 0 if validated else -1)

    # HTTP

    async def http_request(self, address: str) -> None:
        s = self.settings
        wait = await self._take(f"http:{address}", s.http_rate, s.http_burst)
        if wait:
            raise self._refuse(
                "http", "too many requests from your address: slow down", wait
            )

    async def signup(self, address: str) -> None:
        await self._hourly("signup", address, self.settings.signups_per_address)

    async def guest(self, address: str) -> None:
        await self._hourly("guest", address, self.settings.guests_per_address)

    async def _hourly(self, kind: str, address: str, n: int) -> None:
        """At most ``n`` of these an hour from one address."""
        wait = await self._take(f"{kind}:{address}", n / HOUR, n)
        if wait:
            what = {"signup": "sign-ups", "guest": "guest accounts"}[kind]
            raise self._refuse(
                kind, f"at most {n} {what} an hour from one address", wait
            )

    async def _take(self, key: str, rate: float, burst: int) -> float:
        return await self.limiter.take(
            key, self.clock.seconds(), rate, burst
        ).addErrback(self._open, 0.0)

    # Password guesses

    async def login_attempt(self, username: str, address: str | None) -> None:
        """Count a login, or refuse it while its address, its username from
        that address, or its username from everywhere backs off.

        The strict count is per username *and* address, so that a stranger
        cannot lock a user out by failing their logins; the username alone
        has a looser one, against guesses spread over many addresses.
        Counted one after another, so that a refused login counts nowhere
        further (and the counts before it are forgiven).
        """
        s = self.settings
        name = _name_key(username)
        counters = [(f"login:{name}", s.login_failures_per_username)]
        if address is not None:
            counters[:0] = [
                (f"login-from:{address}", s.login_failures_per_address),
                (f"login:{name}:{address}", s.login_failures),
            ]
        await self._attempt(
            counters, "login", "too many failed logins: wait before trying again"
        )

    def login_done(
        self, username: str, address: str | None, success: bool | None
    ) -> None:
        """A counted login succeeded (its username from its address starts
        afresh), failed (it stays counted) or was not judged (``None``:
        forgiven)."""
        if success is False:
            return
        name = _name_key(username)
        self.limiter.forgive(f"login:{name}", False)
        if address is not None:
            self.limiter.forgive(f"login:{name}:{address}", success is True)
            self.limiter.forgive(f"login-from:{address}", False)

    async def room_guess(self, user_id: int, room_id: int) -> None:
        """Count a guess at a room's password, or refuse it while the user
        (for this room) or the room (from everyone: new accounts each get
        their own count) backs off."""
        s = self.settings
        await self._attempt(
            [
                (f"room:{room_id}:{user_id}", s.login_failures),
                (f"room:{room_id}", s.room_guesses_per_room),
            ],
            "room_password",
            "too many wrong passwords for this room: wait before trying again",
        )

    async def _attempt(
        self, counters: list[tuple[str, int]], kind: str, detail: str
    ) -> None:
        """Count a try on each ``(key, free tries)`` in turn; the first that
        says wait refuses it, and the counts before it are forgiven."""
        s = self.settings
        now = self.clock.seconds()
        for i, (key, free) in enumerate(counters):
            wait = await self.limiter.attempt(
                key, now, free, s.login_backoff, s.login_backoff_max, s.login_forget
            ).addErrback(self._open, 0.0)
            if wait:
                for counted, _ in counters[:i]:
                    self.limiter.forgive(counted, False)
                raise self._refuse(kind, detail, wait)

    def room_done(self, user_id: int, room_id: int, success: bool | None) -> None:
        if success is not False:
            self.limiter.forgive(f"room:{room_id}:{user_id}", success is True)
            self.limiter.forgive(f"room:{room_id}", False)


def _name_key(username: str) -> str:
    return username.casefold()[:MAX_NAME_KEY]
