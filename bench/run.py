"""Side by side in one run: gameserver in memory, on Redis, and two bare floors.

    python bench/run.py                       # everything, about 25 minutes
    python bench/run.py --targets memory,autobahn --scenarios fanout
    python bench/run.py --targets memory,memory-msgpack,redis,redis-msgpack \
        --scenarios fanout                    # the two wire formats

Each server runs pinned to core 0 (with its Redis, for the Redis target, so
that the figure is per core), the load generator (``bench/loadgen.py``) to
core 1. Prints a markdown table and writes ``docs/bench.json`` and the plot
``docs/bench.png`` (delivered per second and p99 against offered load).
Compare the ratios of one run: this machine is shared, and absolute
figures drift by 10-30 % from one run to the next.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SECRET = "benchmark secret, long enough for HS256 tokens"
TARGETS = {
    "memory": "gameserver, in memory",
    "redis": "gameserver, on Redis (Redis on the server's core)",
    "memory-msgpack": "gameserver, in memory, MessagePack",
    "redis-msgpack": "gameserver, on Redis, MessagePack",
    "autobahn": "bare Autobahn (json + sendMessage per member)",
    "websockets": "bare websockets (broadcast())",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the server did not start")


class Server:
    """One target's processes, pinned to core 0."""

    def __init__(self, target: str, log_dir: Path, profile: Path | None) -> None:
        self.target = target
        #: What runs: memory or redis (either format), or a bare server.
        self.server, _, format = target.partition("-")
        self.format = format or "json"
        self.port = free_port()
        self.processes: list[subprocess.Popen] = []
        self.log = (log_dir / f"{target}.log").open("ab")
        self.profile = profile

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def start(self) -> list[int]:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        pin = ["taskset", "-c", "0"]
        if self.server in ("memory", "redis"):
            # ``twist`` runs the plugin; only ``twistd`` can profile it.
            command = [sys.executable, "-m", "twisted", "--log-format=text"]
            if self.profile is not None:
                command = [
                    sys.executable,
                    "-c",
                    "from twisted.scripts.twistd import run; run()",
                    "--nodaemon",
                    "--pidfile=",
                    "--profile",
                    str(self.profile),
                    "--profiler",
                    "cprofile",
                    "--savestats",
                ]
            command += [
                "gameserver",
                "--listen",
                f"tcp:{self.port}:interface=127.0.0.1:backlog=1024",
                "--games",
                "chat",
                "--password-cost",
                "4",
                "--max-connections",
                "20000",
                "--max-connections-per-user",
                "10",
                "--message-rate",
                "200",
                "--message-burst",
                "400",
                # Every client is 127.0.0.1: the per-address limits count
                # (their cost is measured) but are not reached.
                "--max-sockets-per-address",
                "1000000",
                "--max-unvalidated-per-address",
                "1000000",
                "--http-rate",
                "1000000",
                "--http-burst",
                "1000000",
                "--signups-per-address",
                "1000000",
                "--secret",
                SECRET,
            ]
            if self.server == "redis":
                redis_port = free_port()
                redis = subprocess.Popen(
                    [
                        *pin,
                        shutil.which("redis-server") or "redis-server",
                        "--port",
                        str(redis_port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ],
                    stdout=self.log,
                    stderr=subprocess.STDOUT,
                )
                self.processes.append(redis)
                wait_for_port(redis_port, redis)
                command += ["--redis", f"redis://127.0.0.1:{redis_port}/0"]
        else:
            command = [
                sys.executable,
                str(REPO / "bench" / f"bare_{self.server}.py"),
                "--port",
                str(self.port),
            ]
        process = subprocess.Popen(
            [*pin, *command],
            cwd=REPO,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.processes.insert(0, process)
        wait_for_port(self.port, process)
        time.sleep(0.5)
        return [p.pid for p in self.processes]

    @property
    def kind(self) -> str:
        return "gameserver" if self.server in ("memory", "redis") else "bare"

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.log.close()


def run_generator(
    servers: list[Server], scenario: str, args: argparse.Namespace
) -> dict:
    command = [
        "taskset",
        "-c",
        "1",
        sys.executable,
        str(REPO / "bench" / "loadgen.py"),
        "--scenario",
        scenario,
        "--step",
        str(args.step),
        "--tries",
        str(args.tries),
    ]
    for server in servers:
        pids = "+".join(str(pid) for pid in server.pids)
        command += [
            "--target",
            f"{server.target}={server.kind},http://127.0.0.1:{server.port},{pids}"
            f",{server.format}",
        ]
    if args.rates:
        command += ["--rates", args.rates]
    if args.connections:
        command += ["--connections", str(args.connections)]
    names = ", ".join(s.target for s in servers)
    print(f"# {scenario}: {names}", file=sys.stderr, flush=True)
    result = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"the generator failed on {scenario} ({names})")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_scenario(
    targets: list[str], scenario: str, args: argparse.Namespace, log_dir: Path
) -> dict:
    """Fan-out and connect: every target up at once, interleaved; idle, one
    at a time (it reads a server's memory)."""
    groups = [[t] for t in targets] if scenario == "idle" else [targets]
    results: dict[str, Any] = {}
    for group in groups:
        servers = []
        try:
            for target in group:
                profile = None
                if (
                    args.profile
                    and target == args.profile_target
                    and scenario != "idle"
                ):
                    base = Path(args.profile)  # one file per scenario
                    profile = base.with_name(f"{base.stem}.{scenario}{base.suffix}")
                server = Server(target, log_dir, profile)
                servers.append(server)
                server.start()
            results.update(run_generator(servers, scenario, args))
        finally:
            for server in servers:
                server.stop()
    results.pop("generator_loop", None)
    return results


def cell(value: Any, fmt: str = "{}") -> str:
    """A table's cell: ``-`` for a figure not measured."""
    return "-" if value in (None, "") else fmt.format(value)


def table(results: dict[str, dict[str, dict]]) -> str:
    rows = [
        "| server | fan-out knee, deliveries/s | server CPU µs per delivery at the knee"
        " | p99 at 5k deliveries/s | generator CPU at the knee"
        " | KB per idle joined connection | connect + validate + join per s |",
        "|---|---|---|---|---|---|---|",
    ]
    for target, scenarios in results.items():
        fanout = scenarios.get("fanout", {})
        knee = fanout.get("knee") or {}
        at_5k = next((s for s in fanout.get("steps", []) if s["offered"] <= 5000), {})
        idle = scenarios.get("idle", {})
        connect = scenarios.get("connect", {})
        at_least = "≥ " if _never_failed(fanout) else ""
        rows.append(
            f"| {TARGETS[target]} | {at_least}{cell(knee.get('delivered'), '{:,}')}"
            f" | {cell(knee.get('server_us_per_delivery'))}"
            f" | {cell(at_5k.get('p99_ms'), '{} ms')}"
            f" | {cell(knee.get('generator_cpu'), '{:.0%}')}"
            f" | {cell(idle.get('kb_per_connection'))}"
            f" | {cell(connect.get('per_second'), '{:,}')} |"
        )
    return "\n".join(rows)


def formats_table(results: dict[str, dict[str, dict]]) -> str:
    """JSON against MessagePack: the wire bytes and the server's CPU."""
    rows = [
        "| server | bytes per delivered chat frame | bytes per chat message sent"
        " | server CPU µs per delivery at 100k/s | fan-out knee, deliveries/s"
        " | server CPU µs per delivery at the knee |",
        "|---|---|---|---|---|---|",
    ]
    for target, scenarios in results.items():
        fanout = scenarios.get("fanout")
        if not fanout or target.partition("-")[0] not in ("memory", "redis"):
            continue
        knee = fanout.get("knee") or {}
        steps = fanout.get("steps") or [{}]
        # Below the rates where the server's core is busy all the time.
        at_100k = min(steps, key=lambda s: abs(s.get("offered", 0) - 100_000))
        at_least = "≥ " if _never_failed(fanout) else ""
        rows.append(
            f"| {TARGETS[target]} | {cell(at_100k.get('bytes_per_delivery'))}"
            f" | {cell(at_100k.get('bytes_per_message_sent'))}"
            f" | {cell(at_100k.get('server_us_per_delivery'))}"
            f" | {at_least}{cell(knee.get('delivered'), '{:,}')}"
            f" | {cell(knee.get('server_us_per_delivery'))} |"
        )
    return "\n".join(rows)


def _never_failed(fanout: dict) -> bool:
    """The knee is the top rate offered: the server may go further."""
    steps, knee = fanout.get("steps") or [], fanout.get("knee")
    return bool(steps) and knee is not None and knee == steps[-1]


def ratios(results: dict[str, dict[str, dict]]) -> list[str]:
    def knee(target: str) -> float | None:
        step = results.get(target, {}).get("fanout", {}).get("knee")
        return step["delivered"] if step else None

    def connects(target: str) -> float | None:
        return results.get(target, {}).get("connect", {}).get("per_second")

    lines = []
    for name, a, b, get in [
        ("fan-out knee, memory / bare Autobahn", "memory", "autobahn", knee),
        ("fan-out knee, memory / bare websockets", "memory", "websockets", knee),
        ("fan-out knee, Redis / memory", "redis", "memory", knee),
        ("connects per second, memory / bare Autobahn", "memory", "autobahn", connects),
        ("connects per second, Redis / bare Autobahn", "redis", "autobahn", connects),
        ("fan-out knee, msgpack / JSON, in memory", "memory-msgpack", "memory", knee),
        ("fan-out knee, msgpack / JSON, on Redis", "redis-msgpack", "redis", knee),
    ]:
        x, y = get(a), get(b)
        if x and y:
            # A knee at the top rate offered is a lower bound.
            bound = ""
            if get is knee:
                top_a = _never_failed(results[a]["fanout"])
                top_b = _never_failed(results[b]["fanout"])
                bound = {
                    (True, False): "≥ ",
                    (False, True): "≤ ",
                    (True, True): "(both at the top rate) ",
                }.get((top_a, top_b), "")
            lines.append(f"- {name}: {bound}{x / y:.2f}")
    return lines


def plot(results: dict[str, dict[str, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (delivered, latency) = plt.subplots(1, 2, figsize=(11, 4.2))
    for target, scenarios in results.items():
        steps = scenarios.get("fanout", {}).get("steps", [])
        if not steps:
            continue
        offered = [s["offered"] / 1000 for s in steps]
        delivered.plot(
            offered, [s["delivered"] / 1000 for s in steps], "o-", label=TARGETS[target]
        )
        latency.plot(offered, [s["p99_ms"] for s in steps], "o-", label=TARGETS[target])
    top = max(
        (
            s["offered"] / 1000
            for r in results.values()
            for s in r.get("fanout", {}).get("steps", [])
        ),
        default=1,
    )
    delivered.plot([0, top], [0, top], ":", color="grey", linewidth=1)
    delivered.set(
        xlabel="offered, thousand deliveries/s",
        ylabel="delivered, thousand/s",
        title="Fan-out: 50 rooms x 10 members, chat",
    )
    latency.set(
        xlabel="offered, thousand deliveries/s",
        ylabel="p99 latency, ms (log)",
        yscale="log",
        title="p99 latency",
    )
    latency.axhline(100, color="grey", linestyle=":", linewidth=1)
    delivered.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--targets", default="memory,redis,autobahn,websockets")
    parser.add_argument("--scenarios", default="fanout,idle,connect")
    parser.add_argument("--rates", default="")
    parser.add_argument("--step", type=float, default=4.0)
    parser.add_argument(
        "--tries", type=int, default=2, help="tries per rate and target"
    )
    parser.add_argument("--connections", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "docs" / "bench"))
    parser.add_argument(
        "--profile",
        default="",
        help="cProfile one target to this path, a file per scenario but idle"
        " (x.prof: x.fanout.prof, x.connect.prof)",
    )
    parser.add_argument(
        "--profile-target", default="memory", help="the target --profile profiles"
    )
    args = parser.parse_args()
    targets = args.targets.split(",")
    results: dict[str, dict[str, dict]] = {t: {} for t in targets}
    with tempfile.TemporaryDirectory() as logs:
        for scenario in args.scenarios.split(","):
            for target, result in run_scenario(
                targets, scenario, args, Path(logs)
            ).items():
                results[target][scenario] = result
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    plot(results, out.with_suffix(".png"))
    print(table(results))
    print()
    if any(target.endswith("-msgpack") for target in targets):
        print(formats_table(results))
        print()
    print("\n".join(ratios(results)))


if __name__ == "__main__":
    main()
