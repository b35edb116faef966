"""``twistd gameserver``: options and the service they make."""

from __future__ import annotations

import gc
import os
import secrets

from twisted.application.service import IService, MultiService, Service
from twisted.logger import Logger
from twisted.python import usage

from gameserver import _logs
from gameserver._game import GameLoadError, installed_games
from gameserver._redis.probe import probe
from gameserver._server import GameServer
from gameserver._settings import MIN_SECRET_BYTES, Settings

log = Logger()


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = "Serve the gameserver HTTP API and WebSocket endpoint on one port."

    optParameters = [
        [
            "port",
            "p",
            None,
            "TCP port to listen on (shorthand for --listen tcp:PORT).",
            int,
        ],
        [
            "listen",
            "l",
            None,
            "A Twisted endpoint string, e.g. tcp:8000 or ssl:8443:...",
        ],
        [
            "secret",
            None,
            None,
            f"Token signing secret, at least {MIN_SECRET_BYTES} bytes"
            " (default: $GAMESERVER_SECRET, else a random one per start).",
        ],
        ["redis", None, None, "Redis URL, e.g. redis://127.0.0.1:6379/0."],
        [
            "metrics-listen",
            None,
            None,
            "Serve /metrics, /healthz and /readyz on this endpoint (e.g."
            " tcp:9100:interface=127.0.0.1) and not on the public one.",
        ],
        ["access-lifetime", None, 300, "Access token lifetime in seconds.", float],
        ["refresh-lifetime", None, 86400, "Refresh token lifetime in seconds.", float],
        ["origins", None, "*", "Comma-separated allowed origins (WebSocket and CORS)."],
        ["max-connections", None, 10000, "Most WebSocket connections served.", int],
        ["max-connections-per-user", None, 5, "Most sockets one user may hold.", int],
        ["max-message-size", None, 65536, "Largest message accepted, in bytes.", int],
        [
            "games",
            None,
            None,
            "Comma-separated names of the games to serve (default: all).",
        ],
        [
            "message-rate",
            None,
            20.0,
            "Messages per second a socket may send, sustained.",
            float,
        ],
        ["message-burst", None, 40, "Messages a socket may send in a burst.", int],
        [
            "max-pending-turns",
            None,
            64,
            "Turns a room may have waiting before new messages are refused (busy).",
            int,
        ],
        [
            "lease-ttl",
            None,
            5.0,
            "With --redis: seconds a room waits for a dead owner before another"
            " process takes it over.",
            float,
        ],
        [
            "process-ttl",
            None,
            6.0,
            "With --redis: seconds of silence after which a process is taken"
            " for dead and its users let go.",
            float,
        ],
        [
            "drain-timeout",
            None,
            10.0,
            "Seconds a stop (SIGTERM) may take: turns in flight finish, sockets"
            " close with 1012 (reconnect) and, with --redis, rooms are handed"
            " over once their players are back on another process.",
            float,
        ],
        [
            "password-cost",
            None,
            15,
            "scrypt cost (log2 N) of password hashes. Lower it for benchmarks"
            " and tests only.",
            int,
        ],
        [
            "admins",
            None,
            None,
            "Comma-separated usernames who are admins (besides those marked"
            " with gameserver-admin).",
        ],
        [
            "log-format",
            None,
            "text",
            "text, or json: one JSON object per log event, one per line, where"
            " twistd would write its log (stdout under -n, else --logfile).",
        ],
        # Per-address limits (README: "Limits for a public server").
        [
            "trusted-proxies",
            None,
            "",
            "Comma-separated addresses or CIDRs of your proxies: only from them"
            " is the forwarding header believed.",
        ],
        [
            "proxy-header",
            None,
            "x-forwarded-for",
            "The header the trusted proxies set: x-forwarded-for or forwarded.",
        ],
        [
            "max-sockets-per-address",
            None,
            50,
            "WebSocket connections one client address may hold open.",
            int,
        ],
        [
            "max-unvalidated-per-address",
            None,
            10,
            "Connections of one address that may wait to be validated.",
            int,
        ],
        ["http-rate", None, 20.0, "HTTP API requests per second per address.", float],
        ["http-burst", None, 100, "HTTP API requests per address in a burst.", int],
        [
            "login-failures",
            None,
            5,
            "Failed logins of a username (or room password guesses of a user)"
            " before each further try waits, twice as long every time.",
            int,
        ],
        [
            "signups-per-address",
            None,
            10,
            "Accounts one address may make an hour.",
            int,
        ],
        [
            "guests-per-address",
            None,
            30,
            "Guest accounts one address may make an hour.",
            int,
        ],
    ]

    def postOptions(self) -> None:
        if self["log-format"] not in _logs.FORMATS:
            raise usage.UsageError("--log-format is text or json")
        if self["log-format"] == "json":
            _logs.check(getattr(self, "parent", None))
        if self["port"] is not None and self["listen"] is not None:
            raise usage.UsageError("give --port or --listen, not both")
        if self["listen"] is None:
            self["listen"] = f"tcp:{8000 if self['port'] is None else self['port']}"
        if self["redis"] is not None:
            try:
                self["redis"] = probe(self["redis"])
            except ValueError as e:
                raise usage.UsageError(f"--redis: {e}") from None
        secret = self["secret"] or os.environ.get("GAMESERVER_SECRET")
        self["random_secret"] = not secret
        if self["redis"] is not None and not secret:
            raise usage.UsageError(
                "--redis needs --secret (or GAMESERVER_SECRET), the same for every"
                " process: a random one per process would make each refuse the"
                " others' tokens"
            )
        try:
            self["settings"] = Settings(
                secret=secret or secrets.token_urlsafe(48),
                access_lifetime=self["access-lifetime"],
                refresh_lifetime=self["refresh-lifetime"],
                allowed_origins=_csv(self["origins"]) or ("*",),
                max_connections=self["max-connections"],
                max_connections_per_user=self["max-connections-per-user"],
                max_message_size=self["max-message-size"],
                message_rate=self["message-rate"],
                message_burst=self["message-burst"],
                max_pending_turns=self["max-pending-turns"],
                lease_ttl=self["lease-ttl"],
                process_ttl=self["process-ttl"],
                heartbeat_interval=min(2.0, self["process-ttl"] / 3),
                password_cost=self["password-cost"],
                drain_timeout=self["drain-timeout"],
                admins=_csv(self["admins"] or ""),
                trusted_proxies=_csv(self["trusted-proxies"]),
                proxy_header=self["proxy-header"].strip().lower(),
                max_sockets_per_address=self["max-sockets-per-address"],
                max_unvalidated_per_address=self["max-unvalidated-per-address"],
                http_rate=self["http-rate"],
                http_burst=self["http-burst"],
                login_failures=self["login-failures"],
                signups_per_address=self["signups-per-address"],
                guests_per_address=self["guests-per-address"],
            )
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        try:
            self["game_plugins"] = installed_games(
                None if self["games"] is None else _csv(self["games"])
            )
        except GameLoadError as e:
            raise usage.UsageError(str(e)) from None


#: Young objects between collections (CPython's default is 700).
GC_THRESHOLD = 10_000


class CollectorPolicy(Service):
    """Keeps the cyclic garbage collector's pauses out of message latency.

    By default CPython collects the young generation every 700 allocations
    of containers, and each of those promotes whatever is alive at that
    instant (the turns and commits in flight) to the older generations, so
    that full collections, which walk every object of the process, come
    every few seconds under load: measured, each took 30-45 ms on the
    benchmark's server and set its p99. Frozen after start-up (the modules,
    games and settings: most of the process's objects, never garbage) and
    collected every 10,000 allocations, the full collections are rare and
    short; the young ones stay around a millisecond.
    """

    def startService(self) -> None:
        super().startService()
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_THRESHOLD, 10, 10)


def makeService(options: Options) -> IService:
    if options["random_secret"]:
        log.warn(
            "no --secret or GAMESERVER_SECRET given: using a random secret, so"
            " tokens will not survive a restart or work across processes"
        )
    if options["log-format"] == "json":
        service = _logs.json_root(getattr(options, "parent", None))
    else:
        service = MultiService()
    CollectorPolicy().setServiceParent(service)
    apart = options["metrics-listen"] is not None
    if options["redis"] is None:
        server = GameServer(
            options["settings"], games=options["game_plugins"], operations_apart=apart
        )
    else:
        server = GameServer.with_redis(
            options["settings"],
            options["redis"],
            games=options["game_plugins"],
            operations_apart=apart,
        )
    # The backend and the operations listener in the server's own service,
    # which stops them after the drain (health checks answer during it).
    serving = server.service(options["listen"])
    if apart:
        server.operations_service(options["metrics-listen"]).setServiceParent(serving)
    serving.setServiceParent(service)
    return service
