"""Abuse protection: per-address caps and rates, login and room-password
throttling, sign-up and guest limits; in memory, and on Redis shared by
every process (two servers on one Redis, a limit reached by spreading
over both). Time is a ``task.Clock`` wherever a limit waits."""

from __future__ import annotations

import io
import json

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import Clock, deferLater
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers
from twisted.web.server import Site
from zope.interface.verify import verifyObject

from gameserver import Settings
from gameserver._interfaces import ILimiter
from gameserver._memory.limiter import MemoryLimiter
from gameserver._redis import keys
from gameserver._redis.connection import RedisAddress, RedisConnection
from gameserver._redis.limiter import RedisLimiter
from gameserver._tap import Options
from gameserver._wire.addresses import ClientAddresses, forwarded_for, parse_ip
from tests.conftest import PASSWORD, SECRET, make_settings
from tests.test_handshake import _Raw, _request


def _clock() -> Clock:
    clock = Clock()
    clock.advance(1_800_000_000)
    return clock


def _limits(**overrides) -> Settings:
    """Test settings with the given limits tight and the others generous
    (as ``make_settings`` makes them)."""
    return make_settings(**overrides)


async def _tick(seconds: float = 0.01) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def _http(server, method, path, body=None, headers=None):
    """A request with headers of our choosing: (status, headers, JSON body)."""
    agent = Agent(reactor)
    raw_headers = Headers({b"Content-Type": [b"application/json"]})
    for name, value in (headers or {}).items():
        raw_headers.addRawHeader(name.encode(), value.encode())
    producer = (
        None
        if body is None
        else FileBodyProducer(io.BytesIO(json.dumps(body).encode()))
    )
    response = await agent.request(
        method.encode(), f"{server.url}{path}".encode(), raw_headers, producer
    )
    raw = await readBody(response)
    parsed = json.loads(raw) if raw.startswith((b"{", b"[")) else raw
    return response.code, response.headers, parsed


def _retry_after(headers) -> int:
    return int(headers.getRawHeaders(b"retry-after")[0])


# Who the client is


def test_an_untrusted_peer_s_forwarding_headers_are_ignored():
    addresses = ClientAddresses(["10.0.0.0/8"])
    assert addresses.client("198.51.100.7", "203.0.113.1") == "198.51.100.7"
    assert addresses.client("198.51.100.7", None) == "198.51.100.7"
    nobody = ClientAddresses([])
    assert nobody.client("10.1.1.1", "203.0.113.1") == "10.1.1.1"


def test_from_a_trusted_proxy_the_right_most_untrusted_hop_is_the_client():
    addresses = ClientAddresses(["10.0.0.0/8", "192.0.2.1"])
    # The client wrote "1.1.1.1" itself; the proxies appended the rest.
    header = "1.1.1.1, 203.0.113.5, 192.0.2.1, 10.0.0.2"
    assert addresses.client("10.0.0.1", header) == "203.0.113.5"
    assert addresses.client("10.0.0.1", "203.0.113.5:4711") == "203.0.113.5"
    # Only proxies: the farthest one; garbage: the proxy that wrote it.
    assert addresses.client("10.0.0.1", "10.0.0.3, 10.0.0.2") == "10.0.0.3"
    assert addresses.client("10.0.0.1", "unknown") == "10.0.0.1"
    assert addresses.client("10.0.0.1", "1.1.1.1, nonsense, 10.0.0.2") == "10.0.0.2"
    assert addresses.client("10.0.0.1", "") == "10.0.0.1"


def test_a_long_forwarding_header_is_read_from_its_end_only():
    addresses = ClientAddresses(["10.0.0.0/8"])
    header = "1.1.1.1, " * 5000 + "x" * 5000 + ", 203.0.113.5, 10.0.0.2"
    assert addresses.client("10.0.0.1", header) == "203.0.113.5"
    assert addresses.client("10.0.0.1", "10.0.0.3, " * 5000 + "10.0.0.4") == (
        "10.0.0.3"
    )
    assert addresses.client("10.0.0.1", "y" * 10_000) == "10.0.0.1"


def test_rfc_7239_forwarded_is_read_when_the_proxies_set_it():
    value = 'for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711"'
    assert forwarded_for(value) == ["192.0.2.60", "[2001:db8:cafe::17]:4711"]
    # No address holds a comma or a semicolon: quotes do not protect them,
    # so a quote a client leaves open cannot swallow what proxies append.
    assert forwarded_for('for="a,b";by=x, proto=https') == ["a", "", ""]
    unbalanced = 'for="1.2.3.4, for=9.9.9.9'
    assert forwarded_for(unbalanced) == ["1.2.3.4", "9.9.9.9"]
    addresses = ClientAddresses(["10.0.0.0/8"], "forwarded")
    assert addresses.client("10.0.0.1", value) == "2001:db8:cafe::/64"
    assert addresses.client("10.0.0.1", unbalanced) == "9.9.9.9"
    # The header the proxies do not set is the client's own: not read.
    assert addresses.of_headers("10.0.0.1", {"x-forwarded-for": "1.2.3.4"}) == (
        "10.0.0.1"
    )


def test_ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4():
    addresses = ClientAddresses([])
    assert addresses.client("2001:db8:1:2:3:4:5:6", None) == "2001:db8:1:2::/64"
    assert addresses.client("::ffff:198.51.100.7", None) == "198.51.100.7"
    # Translated IPv4 clients count as their IPv4 address: 6to4 (a /48 of
    # each IPv4 address's own) and NAT64 (one /64 shared by all of them).
    assert addresses.client("2002:c633:6407::1", None) == "198.51.100.7"
    assert addresses.client("64:ff9b::c633:6407", None) == "198.51.100.7"
    assert addresses.client("64:ff9b::c633:6408", None) == "198.51.100.8"
    # A proxy named by its IPv4-mapped network is its IPv4 network.
    mapped = ClientAddresses(["::ffff:10.0.0.0/104"])
    assert mapped.client("10.1.2.3", "203.0.113.9") == "203.0.113.9"
    # A proxy on a UNIX socket, when trusted as "unix".
    assert ClientAddresses([]).client("unix", "203.0.113.9") == "unix"
    unix = ClientAddresses(["unix", "10.0.0.0/8"])
    assert unix.client("unix", "203.0.113.9, 10.0.0.2") == "203.0.113.9"
    assert unix.client("unix", None) == "unix"
    assert parse_ip("[::1]:80") is not None and parse_ip("nope") is None
    with pytest.raises(ValueError, match="not an address"):
        ClientAddresses(["10.0.0.0/33"])
    with pytest.raises(ValueError):
        make_settings(trusted_proxies=["bad"])
    with pytest.raises(ValueError):
        make_settings(proxy_header="x-real-ip")


# The counters, alike in memory and on Redis


@pytest_twisted.async_yield_fixture(params=["memory", "redis"])
async def limiter(request):
    if request.param == "memory":
        yield MemoryLimiter()
        return
    url = request.getfixturevalue("redis_url")
    redis = RedisConnection(RedisAddress.parse(url), reactor)
    for _ in range(200):
        if redis.connected:
            break
        await _tick()
    yield RedisLimiter(redis, "p1")
    await redis.disconnect()


async def _ttls(limiter) -> list[int]:
    """The expiry left (ms) of every limit key on Redis."""
    redis = limiter._redis
    found = await redis("KEYS", f"{keys.PREFIX}:limit:*")
    found += await redis("KEYS", f"{keys.PREFIX}:addr:*")
    found += await redis("KEYS", keys.process_addresses("*"))
    return [int(await redis("PTTL", key)) for key in found]


def test_both_counters_keep_the_contract(limiter):
    assert verifyObject(ILimiter, limiter)


@pytest_twisted.ensureDeferred
async def test_a_bucket_refills_at_its_rate(limiter):
    now = 1_800_000_000.0
    assert [await limiter.take("b", now, 2.0, 3) for _ in range(3)] == [0, 0, 0]
    assert await limiter.take("b", now, 2.0, 3) == pytest.approx(0.5)
    assert await limiter.take("b", now + 0.5, 2.0, 3) == 0
    assert await limiter.take("b", now + 0.5, 2.0, 3) == pytest.approx(0.5)
    assert await limiter.take("other", now, 2.0, 3) == 0
    if isinstance(limiter, RedisLimiter):  # gone once full again
        assert all(0 < ttl <= 1500 for ttl in await _ttls(limiter))


@pytest_twisted.ensureDeferred
async def test_attempts_back_off_twice_as_long_each_time(limiter):
    now = 1_800_000_000.0

    async def attempt(at):
        return await limiter.attempt("k", at, 3, 1.0, 5.0, 60.0)

    assert [await attempt(now) for _ in range(3)] == [0, 0, 0]  # the 3rd: 1 s
    assert await attempt(now) == pytest.approx(1.0)
    assert await attempt(now + 1) == 0  # the 4th: 2 s
    assert await attempt(now + 2) == pytest.approx(1.0)
    assert await attempt(now + 3) == 0  # the 5th: 4 s
    assert await attempt(now + 7) == 0  # the 6th: 8 s, at most 5
    assert await attempt(now + 7) == pytest.approx(5.0)
    limiter.forgive("k", True)  # a success: all forgotten
    assert await attempt(now + 7) == 0
    assert await attempt(now + 7) == 0
    limiter.forgive("k", False)  # one not judged: forgiven alone
    assert [await attempt(now + 7) for _ in range(2)] == [0, 0]
    assert await attempt(now + 7) == pytest.approx(1.0)
    # Forgotten a minute after the last wait ends.
    assert await attempt(now + 8 + 60) == 0
    assert await attempt(now + 8 + 60) == 0
    if isinstance(limiter, RedisLimiter):
        assert all(0 < ttl <= 61_000 for ttl in await _ttls(limiter))


@pytest_twisted.ensureDeferred
async def test_sockets_are_counted_open_and_unvalidated(limiter):
    assert [await limiter.open_socket("a", 3, 2) for _ in range(3)] == [0, 0, 2]
    limiter.socket_changed("a", 0, -1)  # one validated
    assert await limiter.open_socket("a", 3, 2) == 0
    assert await limiter.open_socket("a", 3, 2) == 1  # three open
    limiter.socket_changed("a", -1, -1)
    limiter.socket_changed("a", -1, 0)
    assert await limiter.sockets("a") == (1, 1)
    limiter.socket_changed("a", -1, -1)
    assert await limiter.sockets("a") == (0, 0)
    if isinstance(limiter, RedisLimiter):  # nothing left behind
        assert await _ttls(limiter) == []


def test_in_memory_spent_counters_are_swept_as_new_ones_come():
    """Each new counter sweeps two of the oldest: a flood of new names
    leaves no more than its live counters behind, and no sweep scans them
    all at once."""
    limiter = MemoryLimiter()
    now = 1_800_000_000.0
    for n in range(1000):
        limiter.take(f"address{n}", now, 1.0, 5)
        limiter.attempt(f"name{n}", now, 5, 1.0, 10.0, 60.0)
    assert len(limiter) == 2000
    later = now + 61  # every one of them spent
    for n in range(1000):
        limiter.take(f"next{n}", later, 1.0, 5)
    assert len(limiter) == 1000  # the 2000 swept, two a new one
    # Live counters are kept however often they are looked at.
    limiter.attempt("alice", later, 1, 1.0, 10.0, 60.0)
    for n in range(3000):
        limiter.take(f"more{n}", later, 1.0, 5)
    assert limiter.attempt("alice", later, 1, 1.0, 10.0, 60.0).result > 0
    # A counter reset and made again (a user's every good login) is listed
    # once, not once a login.
    quiet = MemoryLimiter()
    for n in range(5000):
        quiet.attempt("bob", now + n, 5, 1.0, 10.0, 60.0)
        quiet.forgive("bob", True)
    assert len(quiet._order) == 1


# HTTP requests per address


@pytest_twisted.ensureDeferred
async def test_http_requests_are_rated_per_address(start_any):
    clock = _clock()
    server = await start_any(_limits(http_rate=1.0, http_burst=3), clock=clock)
    for _ in range(3):
        status, _, _ = await _http(server, "GET", "/api/games/")
        assert status == 200
    status, headers, body = await _http(server, "GET", "/api/games/")
    assert status == 429 and _retry_after(headers) == 1
    assert body["code"] == "too_many_requests" and body["detail"]
    clock.advance(1)
    assert (await _http(server, "GET", "/api/games/"))[0] == 200
    assert server.server.guard.refused["http"] == 1
    _, _, scrape = await _http(server, "GET", "/metrics")
    assert b'gameserver_limit_refusals_total{limit="http"} 1.0' in scrape
    assert b'gameserver_limit_refusals_total{limit="login"} 0.0' in scrape
    if start_any.mode == "redis":  # one bucket for both processes
        other = await start_any(_limits(http_rate=1.0, http_burst=3), clock=clock)
        assert (await _http(other, "GET", "/api/games/"))[0] == 429


@pytest_twisted.ensureDeferred
async def test_a_spoofed_x_forwarded_for_is_ignored_and_a_proxy_s_honoured(
    start_any,
):
    clock = _clock()
    direct = await start_any(_limits(http_rate=1.0, http_burst=2), clock=clock)
    for spoofed in ("1.1.1.1", "2.2.2.2"):
        headers = {"X-Forwarded-For": spoofed}
        assert (await _http(direct, "GET", "/api/games/", headers=headers))[0] == 200
    status, _, _ = await _http(
        direct, "GET", "/api/games/", headers={"X-Forwarded-For": "3.3.3.3"}
    )
    assert status == 429  # all three were 127.0.0.1's
    proxied = await start_any(
        _limits(http_rate=1.0, http_burst=2, trusted_proxies=["127.0.0.1"]),
        clock=clock,
    )
    for client in ("1.1.1.1", "2.2.2.2", "2001:db8::1", "2001:db8::2"):
        headers = {"X-Forwarded-For": f"6.6.6.6, {client}"}
        assert (await _http(proxied, "GET", "/api/games/", headers=headers))[0] == 200
    # 2001:db8::1 and ::2 are one /64: its two tokens are spent.
    headers = {"X-Forwarded-For": "2001:db8::3"}
    assert (await _http(proxied, "GET", "/api/games/", headers=headers))[0] == 429
    headers = {"X-Forwarded-For": "1.1.1.1"}
    assert (await _http(proxied, "GET", "/api/games/", headers=headers))[0] == 200
    assert (await _http(proxied, "GET", "/api/games/", headers=headers))[0] == 429


# Sockets per address


def _port(server) -> int:
    """A server's port: a listening port's, a process's, or a number."""
    port = getattr(server, "port", server)
    return port if isinstance(port, int) else port.getHost().port


async def _answer(server, data: bytes) -> bytes:
    """What the server answers ``data`` with, up to its end of headers."""
    raw = _Raw()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", _port(server)), raw)
    raw.transport.write(data)
    for _ in range(300):
        if b"\r\n\r\n" in raw.received or raw.lost.called:
            break
        await _tick()
    raw.transport.abortConnection()
    await raw.lost
    return raw.received


async def _open_raw(server, *lines: str) -> _Raw:
    """A socket that completes the handshake and never validates."""
    raw = _Raw()
    port = _port(server)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), raw)
    raw.transport.write(_request(*lines))
    for _ in range(300):
        if b"\r\n\r\n" in raw.received:
            break
        await _tick()
    assert raw.received.startswith(b"HTTP/1.1 101 "), raw.received
    return raw


async def _until(predicate, seconds: float = 3.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        await _tick()
    raise AssertionError("not reached in time")


def _refusal(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 429 Too Many Requests\r\n"), answer
    retry = [line for line in head.split(b"\r\n") if line.startswith(b"Retry-After:")]
    return int(retry[0].split(b":")[1]), json.loads(body)


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "autobahn"])
@pytest_twisted.ensureDeferred
async def test_unvalidated_sockets_per_address_are_refused_at_the_handshake(
    start_any, lean
):
    server = await start_any(_limits(max_unvalidated_per_address=2))
    other = server
    if start_any.mode == "redis":  # spread over two processes
        other = await start_any(_limits(max_unvalidated_per_address=2))
    extra = () if lean else ("X-Note: caf\xe9",)  # Autobahn's handshake
    waiting = [await _open_raw(where, *extra) for where in (server, other)]
    assert _refusal(await _answer(other, _request(*extra)))[0] == 10
    retry, body = _refusal(await _answer(server, _request(*extra)))
    assert retry == 10  # the validation deadline: they are gone by then
    assert body["code"] == "too_many_requests" and "not yet validated" in body["detail"]
    waiting[0].transport.loseConnection()
    await waiting[0].lost
    assert server.server.guard.refused["unvalidated"] >= 1
    for _ in range(100):  # the close is counted (on Redis, once it is saved)
        answer = await _answer(server, _request(*extra))
        if answer.startswith(b"HTTP/1.1 101 "):
            break
        await _tick()
    else:
        raise AssertionError("a closed socket still counted")
    client = await server.user()
    validated = await server.connect(client)  # once validated, not counted
    assert (await validated.request("NOPE"))["data"]["code"] == "unknown_type"
    waiting.append(await _open_raw(server, *extra))
    assert _refusal(await _answer(server, _request(*extra)))[0] == 10
    for raw in waiting[1:]:
        raw.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_open_sockets_per_address_are_capped_across_processes(start_any):
    settings = _limits(max_sockets_per_address=3)
    first = await start_any(settings)
    second = await start_any(settings) if start_any.mode == "redis" else first
    client = await first.user()
    sockets = [
        await first.connect(client),
        await second.connect(client),
        await second.connect(client),
    ]
    retry, body = _refusal(await _answer(first, _request()))
    assert retry == 30 and "too many connections" in body["detail"]
    with pytest.raises(Exception, match="429"):
        await client.connect()
    await sockets[1].close()
    await _until(lambda: not sockets[1].protocol.transport.connected)
    for _ in range(100):
        answer = await _answer(first, _request())
        if answer.startswith(b"HTTP/1.1 101 "):
            break
        await _tick()
    else:
        raise AssertionError("a closed socket still counted")


@pytest_twisted.ensureDeferred
async def test_the_mounted_endpoint_counts_sockets_too(make_server):
    """``resource`` in someone else's Site: /ws through WebSocketResource."""
    from twisted.internet.endpoints import serverFromString

    server = await make_server(_limits(max_unvalidated_per_address=1))
    site = Site(server.server.resource)
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site)
    try:
        number = port.getHost().port
        first = await _open_raw(number)
        _, body = _refusal(await _answer(number, _request()))
        assert body["code"] == "too_many_requests"
        first.transport.loseConnection()
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_sockets_from_a_trusted_proxy_count_per_forwarded_client(make_server):
    server = await make_server(
        _limits(max_unvalidated_per_address=1, trusted_proxies=["127.0.0.0/8"])
    )
    held = [
        await _open_raw(server, "X-Forwarded-For: 203.0.113.1"),
        await _open_raw(server, "X-Forwarded-For: 203.0.113.2"),
    ]
    refused = await _answer(server, _request("X-Forwarded-For: 203.0.113.1"))
    assert _refusal(refused)[1]["code"] == "too_many_requests"
    for raw in held:
        raw.transport.loseConnection()
    spoofer = await make_server(_limits(max_unvalidated_per_address=1))
    held = [await _open_raw(spoofer, "X-Forwarded-For: 203.0.113.1")]
    refused = await _answer(spoofer, _request("X-Forwarded-For: 203.0.113.2"))
    assert _refusal(refused)[1]["code"] == "too_many_requests"
    held[0].transport.loseConnection()


# Logins


async def _login(server, username, password=PASSWORD, address=None):
    headers = None if address is None else {"X-Forwarded-For": address}
    body = {"username": username, "password": password}
    return await _http(server, "POST", "/api/token/", body, headers)


@pytest_twisted.ensureDeferred
async def test_failed_logins_back_off_the_same_whether_the_user_exists(start_any):
    clock = _clock()
    settings = _limits(login_failures=3, login_backoff=1.0)
    server = await start_any(settings, clock=clock)
    await server.user("alice")
    answers = {}
    for name in ("alice", "nobody"):
        statuses = [(await _login(server, name, "wrong password"))[0] for _ in range(3)]
        assert statuses == [401, 401, 401]
        status, headers, body = await _login(server, name, "wrong password")
        answers[name] = (status, _retry_after(headers), body)
    assert answers["alice"] == answers["nobody"]
    assert answers["alice"][0] == 429 and answers["alice"][1] == 1
    assert answers["alice"][2]["code"] == "too_many_requests"
    # The right password waits too, then works, and starts alice afresh.
    assert (await _login(server, "alice"))[0] == 429
    clock.advance(1)
    assert (await _login(server, "alice", "wrong password"))[0] == 401  # the 4th: 2 s
    clock.advance(1)
    status, headers, _ = await _login(server, "alice")
    assert status == 429 and _retry_after(headers) == 1
    clock.advance(1)
    assert (await _login(server, "ALICE"))[0] == 200  # any case: one username
    statuses = [(await _login(server, "alice", "wrong password"))[0] for _ in range(3)]
    assert statuses == [401, 401, 401]
    if start_any.mode == "redis":  # the other process knows
        other = await start_any(settings, clock=clock)
        assert (await _login(other, "alice"))[0] == 429


@pytest_twisted.ensureDeferred
async def test_failed_logins_back_off_per_address_too(start_any):
    clock = _clock()
    settings = _limits(
        login_failures=100, login_failures_per_address=4, trusted_proxies=["127.0.0.1"]
    )
    server = await start_any(settings, clock=clock)
    other = (
        await start_any(settings, clock=clock) if start_any.mode == "redis" else server
    )
    await server.user("bob")
    for n, where in enumerate([server, other, server, other]):
        assert (await _login(where, f"name{n}", "wrong", "198.51.100.1"))[0] == 401
    status, headers, _ = await _login(server, "bob", PASSWORD, "198.51.100.1")
    assert status == 429 and _retry_after(headers) == 1
    assert (await _login(other, "bob", PASSWORD, "198.51.100.2"))[0] == 200


@pytest_twisted.ensureDeferred
async def test_a_stranger_cannot_lock_a_user_out_and_spread_guesses_back_off(
    start_any,
):
    """Failures from one address back off that address's logins of the
    user, not the user's own from elsewhere; failures spread over many
    addresses back off the username past its looser count."""
    clock = _clock()
    settings = _limits(
        login_failures=3,
        login_failures_per_username=6,
        login_backoff=1.0,
        trusted_proxies=["127.0.0.1"],
    )
    server = await start_any(settings, clock=clock)
    await server.user("carol")
    for _ in range(3):
        assert (await _login(server, "carol", "wrong", "198.51.100.9"))[0] == 401
    assert (await _login(server, "carol", "wrong", "198.51.100.9"))[0] == 429
    # carol, from her own address, is not locked out by the stranger.
    assert (await _login(server, "carol", PASSWORD, "203.0.113.5"))[0] == 200
    # The stranger's three count for the username (the success forgave only
    # itself): three more, spread over new addresses, reach its six.
    for n in range(3):
        answer = await _login(server, "carol", "wrong", f"192.0.2.{n + 1}")
        assert answer[0] == 401
    status, headers, body = await _login(server, "carol", "wrong", "192.0.2.99")
    assert status == 429 and body["code"] == "too_many_requests"


# Room passwords


@pytest_twisted.ensureDeferred
async def test_room_password_guesses_back_off_per_user_and_room(start_any):
    clock = _clock()
    settings = _limits(login_failures=3, login_backoff=1.0)
    server = await start_any(settings, clock=clock)
    owner, guesser = await server.user(), await server.user()
    room = (await owner.create_room("locked", "chat", password="mint")).body
    open_room = (await owner.create_room("other", "chat", password="sage")).body
    connection = await server.connect(guesser)
    for _ in range(3):
        refused = await connection.join(room["id"], "wrong")
        assert refused["data"]["error"] == "wrong_password"
    if start_any.mode == "redis":  # another process knows
        other = await start_any(settings, clock=clock)
        elsewhere = await other.connect(guesser)
        answer = await elsewhere.join(room["id"], "mint")
        assert answer["data"]["code"] == "too_many_requests"
    throttled = await connection.join(room["id"], "mint")
    assert throttled["type"] == "ERROR"
    assert throttled["data"]["code"] == "too_many_requests"
    assert throttled["data"]["retry_after"] == 1
    assert throttled["data"]["request_type"] == "JOIN_ROOM"
    # Another room is another counter; the socket goes on.
    assert (await connection.join(open_room["id"], "sage"))["data"]["is_successful"]
    clock.advance(1)
    joined = await connection.join(room["id"], "mint")
    assert joined["data"]["is_successful"] is True
    await connection.leave(room["id"])
    for _ in range(3):  # the right one started the count afresh
        refused = await connection.join(room["id"], "wrong")
        assert refused["data"]["error"] == "wrong_password"


@pytest_twisted.ensureDeferred
async def test_room_password_guesses_of_many_users_back_off_the_room(start_any):
    """A new account for every few guesses does not get around the room's
    own count."""
    clock = _clock()
    settings = _limits(login_failures=2, room_guesses_per_room=4, login_backoff=1.0)
    server = await start_any(settings, clock=clock)
    owner = await server.user()
    room = (await owner.create_room("vault", "chat", password="mint")).body
    for _ in range(2):
        guesser = await server.connect(await server.user())
        for _ in range(2):
            refused = await guesser.join(room["id"], "wrong")
            assert refused["data"]["error"] == "wrong_password"
    fresh = await server.connect(await server.user())
    throttled = await fresh.join(room["id"], "wrong")
    assert throttled["data"]["code"] == "too_many_requests"


# Sign-ups and guests


@pytest_twisted.ensureDeferred
async def test_sign_ups_and_guests_are_limited_per_address(start_any):
    clock = _clock()
    settings = _limits(signups_per_address=2, guests_per_address=2)
    server = await start_any(settings, clock=clock)
    other = (
        await start_any(settings, clock=clock) if start_any.mode == "redis" else server
    )
    body = {"password": PASSWORD}
    for n, where in enumerate([server, other]):
        status, _, _ = await _http(
            where, "POST", "/api/users/", {**body, "username": f"signup{n}"}
        )
        assert status == 201
    status, headers, answer = await _http(
        server, "POST", "/api/users/", {**body, "username": "signup3"}
    )
    assert status == 429 and answer["code"] == "too_many_requests"
    assert _retry_after(headers) == 1800  # two an hour: one every half hour
    for where in (server, other):
        assert (await _http(where, "POST", "/api/token/guest/"))[0] == 200
    status, headers, answer = await _http(other, "POST", "/api/token/guest/")
    assert status == 429 and answer["code"] == "too_many_requests"
    clock.advance(1800)
    status, _, _ = await _http(
        other, "POST", "/api/users/", {**body, "username": "signup3"}
    )
    assert status == 201
    assert (await _http(server, "POST", "/api/token/guest/"))[0] == 200
    # Claiming a guest makes an account: it counts as a sign-up too.
    clock.advance(1800)
    status, _, guest = await _http(server, "POST", "/api/token/guest/", {})
    assert status == 200
    status, _, _ = await _http(
        server, "POST", "/api/users/", {**body, "username": "signup4"}
    )
    assert status == 201
    status, _, _ = await _http(
        server,
        "POST",
        "/api/users/claim/",
        body,
        {"Authorization": f"Bearer {guest['access']}"},
    )
    assert status == 429  # the half hour's sign-up went to signup4
    clock.advance(1800)  # a sign-up and a guest more (the token is stale)
    status, _, guest = await _http(server, "POST", "/api/token/guest/", {})
    assert status == 200
    status, _, _ = await _http(
        server,
        "POST",
        "/api/users/claim/",
        body,
        {"Authorization": f"Bearer {guest['access']}"},
    )
    assert status == 200


# On Redis: a dead process's sockets stop counting when it is buried


@pytest_twisted.ensureDeferred
async def test_a_buried_process_s_sockets_count_no_more(redis_url):
    from tests.conftest import start_on_redis, stop

    settings = _limits(max_sockets_per_address=2)
    server = await start_on_redis(redis_url, settings)
    try:
        redis = server.server.backend.redis
        # A process that died holding two sockets of 127.0.0.1.
        dead = RedisLimiter(redis, "dead-process")
        assert await dead.open_socket("127.0.0.1", 2, 2) == 0
        assert await dead.open_socket("127.0.0.1", 2, 2) == 0
        await redis("SADD", keys.PROCESSES, "dead-process")
        _refusal(await _answer(server, _request()))
        await server.server.backend._bury("dead-process")
        assert await dead.sockets("127.0.0.1") == (0, 0)
        assert not int(await redis("EXISTS", keys.process_addresses("dead-process")))
        answer = await _answer(server, _request())
        assert answer.startswith(b"HTTP/1.1 101 ")
    finally:
        await stop(server)


# On Redis: the socket counts stay right through failures


class _Flaky:
    """A Redis connection that can be down (``down``: every command fails at
    once), lose answers (``lose``: the command runs, its answer is lost), fail
    the commands named in ``fail``, or hold the answers of the scripts in
    ``hold`` until released."""

    def __init__(self, redis: RedisConnection) -> None:
        self.redis = redis
        self.down = False
        self.lose = False
        self.fail: set[str] = set()
        self.hold: set[str] = set()
        self.held: list = []

    @property
    def connected(self) -> bool:
        return not self.down and self.redis.connected

    @property
    def counts(self):
        return self.redis.counts

    def _failed(self):
        from twisted.internet.defer import fail

        from gameserver._errors import Unavailable

        return fail(Unavailable("down"))

    def __call__(self, *command):
        if self.down or command[0] in self.fail:
            return self._failed()
        d = self.redis(*command)
        if self.lose:
            d.addCallback(lambda _: self._failed())
        return d

    def run(self, script, keys_, args):
        if self.down:
            return self._failed()
        d = self.redis.run(script, keys_, args)
        if self.lose:
            d.addCallback(lambda _: self._failed())
        if script.sha in self.hold:
            from twisted.internet.defer import Deferred

            later: Deferred = Deferred()
            d.addCallback(lambda reply: self.held.append((later, reply)))
            return later
        return d

    def release(self) -> None:
        held, self.held = self.held, []
        for d, reply in held:
            d.callback(reply)


@pytest_twisted.async_yield_fixture
async def flaky(redis_url):
    redis = RedisConnection(RedisAddress.parse(redis_url), reactor)
    await _until(lambda: redis.connected)
    yield _Flaky(redis)
    await redis.disconnect()


async def _settle(flaky) -> None:
    """Every command sent so far has been answered."""
    await flaky.redis("PING")


@pytest_twisted.ensureDeferred
async def test_closes_lost_in_an_outage_are_repaired_not_a_lockout(flaky):
    from gameserver._redis import scripts
    from gameserver._redis.limiter import REPAIR_EVERY

    clock = _clock()
    limiter = RedisLimiter(flaky, "p1", clock)
    assert [await limiter.open_socket("a", 5, 2) for _ in range(2)] == [0, 0]
    assert await limiter.open_socket("a", 5, 2) == 2
    flaky.down = True  # both close during a short outage
    limiter.socket_changed("a", -1, -1)
    limiter.socket_changed("a", -1, -1)
    flaky.down = False
    clock.advance(REPAIR_EVERY)
    await _settle(flaky)
    assert await limiter.sockets("a") == (0, 0)
    assert not int(await flaky.redis("EXISTS", keys.process_addresses("p1")))
    assert await limiter.open_socket("a", 5, 2) == 0
    # An open whose answer is lost: let in uncounted, and Redis's count of
    # it is taken back at the next call that succeeds.
    flaky.lose = True
    with pytest.raises(Exception, match="down"):
        await limiter.open_socket("a", 5, 2)
    flaky.lose = False
    assert await limiter.sockets("a") == (2, 2)
    assert await limiter.open_socket("b", 5, 2) == 0
    await _settle(flaky)
    assert await limiter.sockets("a") == (1, 1)
    # A validation lost: repaired, but not while an open of the address is
    # out (its count would be overwritten).
    flaky.down = True
    limiter.socket_changed("a", 0, -1)
    flaky.down = False
    flaky.hold = {scripts.OPEN_SOCKET.sha}
    opening = limiter.open_socket("a", 5, 2)
    await _settle(flaky)
    clock.advance(REPAIR_EVERY)
    await _settle(flaky)
    assert await limiter.sockets("a") == (2, 2)  # the open ran, not the repair
    flaky.hold = set()
    flaky.release()
    assert await opening == 0
    await _settle(flaky)
    assert await limiter.sockets("a") == (2, 1)
    assert all(ttl > 0 for ttl in await _ttls(limiter))


@pytest_twisted.ensureDeferred
async def test_a_refused_socket_leaves_no_count_without_expiry(flaky):
    limiter = RedisLimiter(flaky, "p1", _clock())
    key = keys.address_sockets("a")
    await flaky.redis("HSET", key, "other", 3, "other:u", 3)
    assert await limiter.open_socket("a", 5, 2) == 2
    assert int(await flaky.redis("PTTL", key)) > 0


@pytest_twisted.ensureDeferred
async def test_a_socket_let_in_uncounted_does_not_uncount_another(make_server):
    from twisted.internet.defer import fail

    from gameserver._errors import Unavailable

    server = await make_server(_limits(max_unvalidated_per_address=5))
    limiter = server.server.guard.limiter
    counted = await _open_raw(server)
    real = limiter.open_socket
    limiter.open_socket = lambda *a: fail(Unavailable("down"))
    uncounted = await _open_raw(server)  # the counters unreachable: let in
    limiter.open_socket = real
    assert await limiter.sockets("127.0.0.1") == (1, 1)
    uncounted.transport.loseConnection()
    await uncounted.lost
    await _tick()
    assert await limiter.sockets("127.0.0.1") == (1, 1)
    counted.transport.loseConnection()
    await counted.lost
    await _until(lambda: not limiter._sockets)


@pytest_twisted.ensureDeferred
async def test_a_socket_is_listed_for_the_burial_by_its_open(flaky):
    from gameserver._redis.limiter import forget_process

    flaky.fail = {"SADD"}  # a separate SADD, lost, would leave it unlisted
    dead = RedisLimiter(flaky, "dead", _clock())
    assert await dead.open_socket("a", 5, 5) == 0
    flaky.fail = set()
    assert all(ttl > 0 for ttl in await _ttls(dead))  # the set expires too
    await forget_process(flaky.redis, "dead")
    assert await dead.sockets("a") == (0, 0)


@pytest_twisted.ensureDeferred
async def test_a_last_close_while_an_open_is_out_leaves_the_address_listed(flaky):
    from gameserver._redis.limiter import forget_process

    dead = RedisLimiter(flaky, "dead", _clock())
    assert await dead.open_socket("b", 5, 5) == 0
    opening = dead.open_socket("b", 5, 5)
    dead.socket_changed("b", -1, -1)  # sent after the open: runs after it
    assert await opening == 0
    await _settle(flaky)
    await forget_process(flaky.redis, "dead")
    assert await dead.sockets("b") == (0, 0)


# Options


def test_the_limits_have_options_with_safe_defaults():
    options = Options()
    options.parseOptions(["--secret", SECRET])
    settings = options["settings"]
    assert settings.trusted_proxies == ()
    assert (settings.max_sockets_per_address, settings.max_unvalidated_per_address) == (
        50,
        10,
    )
    assert (settings.http_rate, settings.http_burst, settings.login_failures) == (
        20.0,
        100,
        5,
    )
    assert (settings.signups_per_address, settings.guests_per_address) == (10, 30)
    options = Options()
    options.parseOptions(
        [
            "--secret",
            SECRET,
            "--trusted-proxies",
            "10.0.0.0/8, 192.0.2.1",
            "--proxy-header",
            "Forwarded",
            "--max-sockets-per-address",
            "7",
            "--max-unvalidated-per-address",
            "3",
            "--http-rate",
            "5",
            "--http-burst",
            "9",
            "--login-failures",
            "4",
            "--signups-per-address",
            "2",
            "--guests-per-address",
            "6",
        ]
    )
    settings = options["settings"]
    assert settings.trusted_proxies == ("10.0.0.0/8", "192.0.2.1")
    assert settings.proxy_header == "forwarded"
    assert (
        settings.max_sockets_per_address,
        settings.max_unvalidated_per_address,
        settings.http_rate,
        settings.http_burst,
        settings.login_failures,
        settings.signups_per_address,
        settings.guests_per_address,
    ) == (7, 3, 5.0, 9, 4, 2, 6)
    from twisted.python.usage import UsageError

    with pytest.raises(UsageError, match="not an address"):
        Options().parseOptions(["--secret", SECRET, "--trusted-proxies", "proxy"])


# Real processes


@pytest.mark.cluster
@pytest_twisted.ensureDeferred
async def test_real_processes_share_the_socket_cap_and_forget_a_dead_one_s(cluster):
    """Two ``twistd gameserver`` on one Redis: sockets spread over both reach
    the cap of 2; one process is SIGKILLed holding a socket, and once the
    other buries it (``--process-ttl 1``) that socket counts no more."""
    extra = ("--max-sockets-per-address=2", "--process-ttl=1")
    a = await cluster(extra=extra)
    b = await cluster(extra=extra)
    client = a.client()
    assert (await client.register("spreader", PASSWORD)).status == 201
    assert (await client.login("spreader", PASSWORD)).status == 200
    on_a = await client.connect()
    on_b = b.client()
    on_b.access = client.access
    held = await on_b.connect()
    for server in (a, b):
        refused = await _answer(server, _request())
        assert _refusal(refused)[1]["code"] == "too_many_requests"
    a.kill()
    for _ in range(300):  # the heartbeat's silence, then the burial
        answer = await _answer(b, _request())
        if answer.startswith(b"HTTP/1.1 101 "):
            break
        await _tick(0.05)
    else:
        raise AssertionError("the dead process's socket still counts")
    on_a.abort()
    await held.close()


@pytest_twisted.ensureDeferred
async def test_with_redis_down_the_limits_let_clients_through(redis_server, redis_url):
    from tests.conftest import start_on_redis, stop

    server = await start_on_redis(redis_url, _limits(http_burst=1))
    try:
        redis_server.stop()
        await _until(lambda: not server.server.backend.redis.connected, 10)
        for _ in range(3):  # over the burst, and let through: not counted
            assert (await _http(server, "GET", "/api/games/"))[0] == 200
        assert (await _answer(server, _request())).startswith(b"HTTP/1.1 101 ")
        status, _, body = await _login(server, "anyone", "wrong password")
        assert status == 503 and body["code"] == "unavailable"  # the store's answer
    finally:
        redis_server.start()
        await stop(server)


@pytest_twisted.ensureDeferred
async def test_a_process_that_stops_leaves_no_socket_counts(redis_url):
    from tests.conftest import start_on_redis, stop

    server = await start_on_redis(redis_url, _limits())
    process = server.server.backend.process_id
    held = await _open_raw(server)
    redis = RedisConnection(RedisAddress.parse(redis_url), reactor)
    try:
        await _until(lambda: redis.connected)
        assert await RedisLimiter(redis, "reader").sockets("127.0.0.1") == (1, 1)
        assert await redis("SMEMBERS", keys.process_addresses(process)) == ["127.0.0.1"]
        await stop(server)
        assert not int(await redis("EXISTS", keys.address_sockets("127.0.0.1")))
        assert not int(await redis("EXISTS", keys.process_addresses(process)))
    finally:
        held.transport.abortConnection()
        await redis.disconnect()


@pytest_twisted.ensureDeferred
async def test_a_handshake_that_never_ends_is_refused_not_buffered(running):
    endless = b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 40_000
    answer = await _answer(running, endless)
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_a_limiter_bug_lets_the_client_through_and_is_logged():
    """Not Redis being away but an error nobody expected: the socket is let
    in uncounted (never left hanging in its handshake), with a traceback."""
    from twisted.internet.defer import fail
    from twisted.logger import globalLogPublisher

    from gameserver._guard import Guard

    class Broken(MemoryLimiter):
        def open_socket(self, address, most_open, most_unvalidated):
            return fail(ValueError("a bug"))

    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        guard = Guard(_limits(), Broken(), _clock())
        answered = []
        guard.open_socket("192.0.2.1").addCallback(answered.append)
        assert answered == [False]  # let in, and not counted
    finally:
        globalLogPublisher.removeObserver(seen.append)
    failures = [e for e in seen if "log_failure" in e]
    assert failures and failures[0]["log_failure"].check(ValueError)
