"""The load generator: a process of its own, on a core of its own.

    python bench/loadgen.py --scenario fanout \\
        --target memory=gameserver,http://127.0.0.1:8000,1234

(``name=kind,url,pids[,format]``; give several ``--target`` to compare them
in one run: ``bench/run.py`` starts the servers and does this.) A
gameserver target speaks ``--format`` (``json``, the default, or
``msgpack``: binary frames, subprotocol ``gameserver.msgpack``) unless its
spec names its own.

It speaks just enough HTTP and WebSocket itself (asyncio, on uvloop when
installed) to sign users up, connect, validate, join and send, and parses
only what it must of what it receives, so that it has headroom: every
result carries the generator's own CPU, to show it was not the bottleneck.
The kind ``bare`` drives the bare servers of ``bench/`` instead (no accounts:
``{"type": "JOIN", "room": N}`` first, then chat).

Scenarios (one JSON object on stdout):

- ``fanout``: rooms x members, open-loop steps of rising rates; for each
  step the deliveries offered and delivered per second, p50/p99 latency,
  loss, the server's CPU per delivery (every pid given, Redis too), and
  the bytes of one delivered chat frame and of one sent;
- ``idle``: the server's RSS as validated, joined, idle connections are
  added, 10 % at a time; the slope from 10 % to 100 % is the cost of one;
- ``connect``: connect + validate + join per second, 50 in flight, in
  rounds of 1,000 that alternate between the targets (8 each), each
  round's sockets closed before the next.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import resource
import statistics
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import msgpack

try:
    import uvloop
except ImportError:  # the standard loop is fine, just slower
    uvloop = None

PASSWORD = "benchmark password"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TEXT_KEY = b'"text":"'
PACKED_TEXT_KEY = b"\xa4text"
SUBPROTOCOLS = {"json": None, "msgpack": "gameserver.msgpack"}


# Measuring processes


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# HTTP, just enough


async def http(
    host: str, port: int, method: str, path: str, body: Any = None, token: str = ""
) -> tuple[int, Any]:
    reader, writer = await asyncio.open_connection(host, port)
    raw = b"" if body is None else json.dumps(body).encode()
    head = [
        f"{method} {path} HTTP/1.0",  # 1.0: no chunked encoding
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(raw)}",
        "Connection: close",
    ]
    if token:
        head.append(f"Authorization: Bearer {token}")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + raw)
    response = await reader.read()
    writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    _, _, content = rest.partition(b"\r\n\r\n")
    status = int(status_line.split()[1])
    try:
        return status, json.loads(content) if content else None
    except ValueError:
        return status, content


# WebSocket, just enough


class Socket(asyncio.Protocol):
    """A client WebSocket: frames out (masked with a zero key), data frames in
    (text or binary, whichever the format is)."""

    def __init__(self, on_text: Any = None, opcode: int = 0x81) -> None:
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.buffer = b""
        self.handshaking = True
        self.on_text = on_text
        self.opcode = opcode
        self.waiting: asyncio.Future[bytes] | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        if self.handshaking:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(
                    ConnectionError(buffer[:200].decode("latin-1"))
                )
                return
            self.handshaking = False
            self.opened.set_result(None)
            buffer = buffer[end + 4 :]
        i, n = 0, len(buffer)
        while n - i >= 2:
            length = buffer[i + 1] & 0x7F
            if length < 126:
                start = i + 2
            elif length == 126:
                if n - i < 4:
                    break
                length = int.from_bytes(buffer[i + 2 : i + 4], "big")
                start = i + 4
            else:
                if n - i < 10:
                    break
                length = int.from_bytes(buffer[i + 2 : i + 10], "big")
                start = i + 10
            end = start + length
            if end > n:
                break
            opcode = buffer[i] & 0x0F
            i = end
            if opcode == 1 or opcode == 2:
                payload = buffer[start:end]
                if self.waiting is not None and not self.waiting.done():
                    self.waiting.set_result(payload)
                elif self.on_text is not None:
                    self.on_text(payload)
            elif opcode == 9:  # ping: pong with the same payload
                self._send(0x8A, buffer[start:end])
            elif opcode == 8:
                self.transport.close()
                return
        self.buffer = buffer[i:]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed before opening"))
        if not self.closed.done():
            self.closed.set_result(None)

    def _send(self, first: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            header = bytes((first, 0x80 | n))
        elif n < 0x10000:
            header = bytes((first, 0xFE)) + n.to_bytes(2, "big")
        else:
            header = bytes((first, 0xFF)) + n.to_bytes(8, "big")
        # A zero masking key: the payload goes as it is.
        self.transport.write(header + b"\x00\x00\x00\x00" + payload)

    def send(self, payload: bytes) -> None:
        self._send(self.opcode, payload)

    async def request(self, payload: bytes) -> bytes:
        self.waiting = asyncio.get_running_loop().create_future()
        self.send(payload)
        reply = await self.waiting
        self.waiting = None
        return reply


async def open_socket(
    host: str, port: int, path: str, on_text: Any = None, format: str = "json"
) -> Socket:
    loop = asyncio.get_running_loop()
    opcode = 0x82 if format == "msgpack" else 0x81
    _, socket = await loop.create_connection(
        lambda: Socket(on_text, opcode), host, port
    )
    key = base64.b64encode(os.urandom(16)).decode()
    subprotocol = SUBPROTOCOLS[format]
    offer = f"Sec-WebSocket-Protocol: {subprotocol}\r\n" if subprotocol else ""
    socket.transport.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\n{offer}"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await socket.opened
    return socket


# The two kinds of server


class Target:
    def __init__(self, kind: str, url: str, format: str = "json") -> None:
        parts = urlsplit(url)
        self.kind = kind
        self.format = format
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.tokens: list[str] = []
        self.rooms: list[int] = []

    async def prepare(self, users: int, rooms: int, members: int) -> None:
        """Sign up users and make rooms (a gameserver), or number rooms (bare)."""
        if self.kind == "bare":
            self.rooms = list(range(1, rooms + 1))
            self.tokens = [""] * users
            return
        stamp = f"{os.getpid()}{int(time.time() * 1000) % 10**8}"
        names = [f"u{stamp}x{n}" for n in range(users + 1)]
        limit = asyncio.Semaphore(16)

        async def sign_up(name: str) -> str:
            async with limit:
                status, _ = await http(
                    self.host,
                    self.port,
                    "POST",
                    "/api/users/",
                    {"username": name, "password": PASSWORD},
                )
                assert status == 201, status
                status, body = await http(
                    self.host,
                    self.port,
                    "POST",
                    "/api/token/",
                    {"username": name, "password": PASSWORD},
                )
                assert status == 200, (status, body)
                return body["access"]

        tokens = await asyncio.gather(*(sign_up(n) for n in names))
        owner, self.tokens = tokens[0], list(tokens[1:])
        for n in range(rooms):
            status, body = await http(
                self.host,
                self.port,
                "POST",
                "/api/rooms/",
                {"name": f"bench {n}", "game": "chat", "max_players": members},
                owner,
            )
            assert status == 201, body
            self.rooms.append(body["id"])

    async def join(self, index: int, room: int, on_text: Any = None) -> Socket:
        """Connect, validate and join ``room``: what a player does first."""
        path = "/" if self.kind == "bare" else "/ws"
        socket = await open_socket(self.host, self.port, path, on_text, self.format)
        if self.kind == "bare":
            reply = await socket.request(
                json.dumps({"type": "JOIN", "room": room}).encode()
            )
            assert b"JOINED" in reply, reply
            return socket
        token = self.tokens[index]
        reply = self.decode(
            await socket.request(
                self.encode({"type": "VALIDATE_CONNECTION", "data": {"token": token}})
            )
        )
        assert reply["data"]["is_successful"] is True, reply
        socket.waiting = asyncio.get_running_loop().create_future()
        socket.send(self.encode({"type": "JOIN_ROOM", "room_id": room}))
        while (reply := self.decode(await socket.waiting))["type"] != "JOIN_ROOM":
            socket.waiting = asyncio.get_running_loop().create_future()
        socket.waiting = None
        assert reply["data"]["is_successful"] is True, reply
        return socket

    def encode(self, message: dict) -> bytes:
        if self.format == "msgpack":
            return msgpack.packb(message)
        return json.dumps(message).encode()

    def decode(self, payload: bytes) -> dict:
        if self.format == "msgpack":
            return msgpack.unpackb(payload)
        return json.loads(payload)

    def chat(self, room: int, text: str) -> bytes:
        if self.kind == "bare":
            return b'{"type":"CHAT_MESSAGE","data":{"text":"%s"}}' % text.encode()
        if self.format == "msgpack":
            return msgpack.packb(
                {"type": "CHAT_MESSAGE", "room_id": room, "data": {"text": text}}
            )
        return b'{"type":"CHAT_MESSAGE","room_id":%d,"data":{"text":"%s"}}' % (
            room,
            text.encode(),
        )


# Scenarios


class Fanout:
    """One target's rooms of members, for the fan-out steps."""

    def __init__(self, name: str, target: Target, pids: list[int]) -> None:
        self.name = name
        self.target = target
        self.pids = pids
        self.sockets: list[list[Socket]] = []
        self.received: dict[int, int] = {}
        self.latencies: dict[int, list[float]] = {}
        self.steps: list[dict[str, Any]] = []
        self.failures = 0
        self.bytes: dict[int, int] = {}
        self.on_text = self.on_packed if target.format == "msgpack" else self.on_json

    def on_json(self, payload: bytes) -> None:
        at = payload.find(TEXT_KEY)
        if at < 0:
            return
        start = at + 8
        stop = payload.index(b'"', start)
        self.count(payload, payload[start:stop])

    def on_packed(self, payload: bytes) -> None:
        at = payload.find(PACKED_TEXT_KEY)
        if at < 0:
            return
        header = payload[at + 5]
        if header & 0xE0 == 0xA0:  # a fixstr
            start, length = at + 6, header & 0x1F
        elif header == 0xD9:  # a str 8
            start, length = at + 7, payload[at + 6]
        else:
            return
        self.count(payload, payload[start : start + length])

    def count(self, payload: bytes, text: bytes) -> None:
        step, _, sent = text.partition(b":")
        number = int(step)
        latencies = self.latencies.get(number)
        if latencies is None:
            return
        self.received[number] += 1
        # The frame's header: 2 bytes, 4 from 126 bytes of payload on.
        self.bytes[number] += len(payload) + (2 if len(payload) < 126 else 4)
        latencies.append((time.perf_counter_ns() - int(sent)) / 1e6)

    async def prepare(self, rooms: int, members: int) -> None:
        target = self.target
        await target.prepare(rooms * members, rooms, members)
        for r, room in enumerate(target.rooms):
            self.sockets.append(
                [
                    await target.join(r * members + m, room, self.on_text)
                    for m in range(members)
                ]
            )

    async def step(self, number: int, rate: int, args: argparse.Namespace) -> dict:
        """Offer ``rate`` deliveries a second for ``args.step`` seconds, open-loop."""
        rooms, members = len(self.sockets), len(self.sockets[0])
        self.received[number] = 0
        self.bytes[number] = 0
        self.latencies[number] = []
        per_second = rate / members  # each message is delivered to every member
        perf = time.perf_counter_ns
        chat, room_ids = self.target.chat, self.target.rooms
        cpu0, own0, wall0 = cpu_seconds(self.pids), own_cpu(), time.monotonic()
        each0 = [cpu_seconds([pid]) for pid in self.pids]
        sent = 0
        start = time.monotonic()
        while True:
            elapsed = time.monotonic() - start
            if elapsed >= args.step:
                break
            for _ in range(int(elapsed * per_second) - sent):
                room = sent % rooms
                member = (sent // rooms) % members
                self.sockets[room][member].send(
                    chat(room_ids[room], f"{number}:{perf()}")
                )
                sent += 1
            await asyncio.sleep(0.001)
        expected = sent * members
        drain_until = time.monotonic() + args.drain
        while self.received[number] < expected and time.monotonic() < drain_until:
            await asyncio.sleep(0.01)
        cpu1, own1, wall1 = cpu_seconds(self.pids), own_cpu(), time.monotonic()
        each1 = [cpu_seconds([pid]) for pid in self.pids]
        got = self.received[number]
        wire_bytes = self.bytes.pop(number)
        latencies = sorted(self.latencies.pop(number))
        sample = chat(room_ids[0], f"{number}:{perf()}")
        result = {
            "offered": round(expected / args.step),
            "delivered": round(got / args.step),
            "lost": expected - got,
            "p50_ms": round(latencies[len(latencies) // 2], 2) if latencies else None,
            "p99_ms": round(latencies[int(len(latencies) * 0.99)], 2)
            if latencies
            else None,
            "server_us_per_delivery": round((cpu1 - cpu0) / got * 1e6, 1)
            if got
            else None,
            "us_per_delivery_by_pid": [
                round((b - a) / got * 1e6, 1) if got else None
                for a, b in zip(each0, each1, strict=True)
            ],
            "generator_cpu": round((own1 - own0) / (wall1 - wall0), 2),
            "bytes_per_delivery": round(wire_bytes / got, 1) if got else None,
            "bytes_per_message_sent": len(sample) + 6,  # header and mask
        }
        return result


def _good(step: dict, limit: float) -> bool:
    return step["lost"] == 0 and step["p99_ms"] is not None and step["p99_ms"] < limit


async def fanout(
    targets: list[tuple[str, Target, list[int]]], args: argparse.Namespace
) -> dict:
    """The rate steps, each run against every target in turn.

    Interleaved, the targets see the same machine: this one is shared, and
    its speed drifts over minutes. Each rate is tried ``args.tries`` times
    on a target, keeping the better: one outside hiccup does not end a
    target's climb. A target stops after two rates in a row that fail.
    """
    runs = [Fanout(name, target, pids) for name, target, pids in targets]
    for run in runs:
        await run.prepare(args.rooms, args.members)
    await asyncio.sleep(1.0)
    # The generator's own collections would show as the servers' latency:
    # what setup made is frozen, and young objects are collected rarely.
    gc.collect()
    gc.freeze()
    gc.set_threshold(200_000, 100, 100)
    number = 0
    for rate in args.rates:
        for run in runs:
            if run.failures >= 2:
                continue
            best = None
            for _ in range(args.tries):
                number += 1
                step = await run.step(number, rate, args)
                print(
                    json.dumps({"target": run.name, **step}),
                    file=sys.stderr,
                    flush=True,
                )
                if best is None or (step["p99_ms"] or 1e9) < (best["p99_ms"] or 1e9):
                    best = step
                await asyncio.sleep(args.settle)
                if _good(step, args.p99_limit):
                    break
            assert best is not None
            run.steps.append(best)
            run.failures = 0 if _good(best, args.p99_limit) else run.failures + 1
    results = {}
    for run in runs:
        good = [s for s in run.steps if _good(s, args.p99_limit)]
        knee = max(good, key=lambda s: s["delivered"]) if good else None
        results[run.name] = {"scenario": "fanout", "steps": run.steps, "knee": knee}
    return results


async def idle(target: Target, args: argparse.Namespace, pids: list[int]) -> dict:
    total, members = args.connections, 10
    rooms = total // members
    await target.prepare(total, rooms, members)
    sockets: list[Socket] = []
    points = []
    batch = total // 10
    limit = asyncio.Semaphore(50)

    async def one(index: int) -> Socket:
        async with limit:
            return await target.join(index, target.rooms[index // members])

    for _ in range(10):
        start = len(sockets)
        sockets += await asyncio.gather(*(one(i) for i in range(start, start + batch)))
        await asyncio.sleep(0.5)
        points.append((len(sockets), rss_kb(pids[0])))
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    slope = statistics.linear_regression(xs, ys).slope
    return {
        "scenario": "idle",
        "points": points,
        "kb_per_connection": round(slope, 2),
        "generator_cpu_s": round(own_cpu(), 1),
    }


async def connect(
    targets: list[tuple[str, Target, list[int]]], args: argparse.Namespace
) -> dict:
    """Connect + validate + join per second, ``in_flight`` at a time.

    Rounds alternate between the targets, as the fan-out steps do; each
    target's figure is the median of its rounds.
    """
    rounds, members, in_flight = args.rounds, 10, args.in_flight
    total = args.connects
    for _, target, _ in targets:
        await target.prepare(total, total // members, members)
    per_round = total // rounds
    rates: dict[str, list[float]] = {name: [] for name, _, _ in targets}
    cpu: dict[str, list[float]] = {name: [] for name, _, _ in targets}
    own: list[float] = []
    for r in range(rounds):
        for name, target, pids in targets:
            limit = asyncio.Semaphore(in_flight)
            opened: list[Socket] = []

            async def one(
                index: int,
                target: Target = target,
                limit: asyncio.Semaphore = limit,
                opened: list[Socket] = opened,
            ) -> None:
                async with limit:
                    opened.append(
                        await target.join(index, target.rooms[index // members])
                    )

            own0, cpu0 = own_cpu(), cpu_seconds(pids)
            start = time.monotonic()
            first = r * per_round
            await asyncio.gather(*(one(i) for i in range(first, first + per_round)))
            elapsed = time.monotonic() - start
            rates[name].append(per_round / elapsed)
            cpu[name].append((cpu_seconds(pids) - cpu0) / per_round * 1000)
            own.append((own_cpu() - own0) / elapsed)
            # Closed before the next round (every server shares one core):
            # a round's disconnects are done before the next one starts.
            for socket in opened:
                socket.transport.close()
            await asyncio.wait_for(
                asyncio.gather(*(socket.closed for socket in opened)), 30
            )
            await asyncio.sleep(1.5)
    return {
        name: {
            "scenario": "connect",
            "per_second": round(statistics.median(rates[name])),
            "rounds": [round(x) for x in rates[name]],
            "server_ms_per_connect": round(statistics.median(cpu[name]), 2),
            "generator_cpu": round(max(own), 2),
        }
        for name in rates
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--target",
        action="append",
        required=True,
        metavar="NAME=KIND,URL,PID[+PID][,FORMAT]",
        help="a server to load (KIND: gameserver or bare); fan-out takes several",
    )
    parser.add_argument(
        "--format",
        choices=sorted(SUBPROTOCOLS),
        default="json",
        help="the wire format of gameserver targets that name none",
    )
    parser.add_argument(
        "--scenario", choices=["fanout", "idle", "connect"], required=True
    )
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument(
        "--rates",
        default="5000,10000,20000,30000,40000,50000,60000,70000,80000,90000,"
        "100000,110000,120000,130000,140000,150000,160000,180000,200000,220000,"
        "240000,260000,280000,300000,320000,360000,400000",
    )
    parser.add_argument("--step", type=float, default=4.0)
    parser.add_argument("--tries", type=int, default=2)
    parser.add_argument("--drain", type=float, default=2.0)
    parser.add_argument("--settle", type=float, default=0.3)
    parser.add_argument("--p99-limit", type=float, default=100.0)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument(
        "--connects", type=int, default=8000, help="connect: in all, over the rounds"
    )
    parser.add_argument(
        "--rounds", type=int, default=8, help="connect: rounds per target"
    )
    args = parser.parse_args()
    args.rates = [int(r) for r in args.rates.split(",")]
    targets = []
    for spec in args.target:
        name, _, rest = spec.partition("=")
        kind, url, pids, *named = rest.split(",")
        format = named[0] if named else args.format if kind == "gameserver" else "json"
        if kind == "bare" and format != "json":
            parser.error(f"{name}: the bare servers speak JSON only")
        targets.append(
            (name, Target(kind, url, format), [int(p) for p in pids.split("+")])
        )
    if uvloop is not None:
        uvloop.install()
    if args.scenario == "fanout":
        result = asyncio.run(fanout(targets, args))
    elif args.scenario == "connect":
        result = asyncio.run(connect(targets, args))
    else:
        if len(targets) != 1:
            parser.error("idle takes one --target: it reads one server's memory")
        name, target, pids = targets[0]
        result = {name: asyncio.run(idle(target, args, pids))}
    result["generator_loop"] = "uvloop" if uvloop is not None else "asyncio"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
