"""Plain counters kept where things happen, for ``/metrics`` to read.

No ``prometheus_client`` object is touched on the hot path: a message costs
a dictionary lookup and an integer increment here, and the collector in
``_http/health.py`` turns these into metric families only when scraped.
Label values are bounded: a ``Tally`` has a fixed set of labels (or a cap),
and everything else is counted as ``other``, so a client sending made-up
message types cannot grow the exposition.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator

#: The label of whatever a ``Tally`` does not name.
OTHER = "other"

#: Upper bounds (seconds) of the duration histograms' buckets.
TURN_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
#: A commit waits on Redis, not on a handler: it has no 5 s bucket.
COMMIT_BUCKETS = TURN_BUCKETS[:-1]

#: A monotonic real clock for durations: the engine's injected clock may be
#: a ``task.Clock`` (tests) or wall time, neither of which measures a turn.
now = time.perf_counter


class Tally:
    """Counts by label, over a bounded set of labels.

    Each label has a one-item list, so counting is ``cells.get(label,
    other)[0] += 1``: one lookup, one increment, and nothing is ever
    inserted for a label outside the set. With ``cap``, labels not known
    in advance are added as they come, up to ``cap`` of them.
    """

    __slots__ = ("_cap", "cells", "other")

    def __init__(self, labels: Iterable[str] = (), *, cap: int = 0) -> None:
        self.cells: dict[str, list[int]] = {label: [0] for label in labels}
        self.other = [0]
        self._cap = len(self.cells) + cap

    def count(self, label: str, n: int = 1) -> None:
        cell = self.cells.get(label)
        if cell is None:
            if len(self.cells) < self._cap:
                cell = self.cells[label] = [0]
            else:
                cell = self.other
        cell[0] += n

    def items(self) -> Iterator[tuple[str, int]]:
        for label, cell in self.cells.items():
            yield label, cell[0]
        yield OTHER, self.other[0]


class Histogram:
    """Observations in fixed buckets: a bisect and two additions each.

    ``counts[i]`` holds the observations in bucket ``i`` alone (not
    cumulative; the last is over every bound), as ``bisect_left`` puts a
    value equal to a bound in that bound's bucket (Prometheus' ``le``).
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative counts by upper bound, as Prometheus wants them."""
        total, out = 0, []
        for bound, count in zip(self.bounds, self.counts, strict=False):
            total += count
            out.append((_bound(bound), float(total)))
        total += self.counts[-1]
        out.append(("+Inf", float(total)))
        return out


def _bound(value: float) -> str:
    return repr(float(value))


class Counters:
    """One server's message, refusal and duration figures.

    ``received`` is by message type (the dispatcher's and the games'
    types, else ``other``); ``sent`` by type too, one per message made
    however many sockets it reaches, counted by the process that made it
    (a room's owner, for what a turn sends); ``deliveries`` counts frames
    handed to sockets here, one per socket. ``refusals`` is by error
    code: every ``ERROR`` and refused reply sent. The same counters serve
    tests and benchmarks.
    """

    __slots__ = (
        "commit_seconds",
        "deliveries",
        "failed_turns",
        "flood_closes",
        "outbound_drops",
        "rate_limited",
        "received",
        "refusals",
        "refused_busy",
        "sent",
        "timers_fired",
        "turn_seconds",
        "turns",
    )

    def __init__(self, types: Iterable[str] = (), codes: Iterable[str] = ()) -> None:
        self.received = Tally(types)
        #: Types a game sends are its own: the first 256 are named.
        self.sent = Tally(types, cap=256)
        self.refusals = Tally(codes, cap=64)
        self.deliveries = 0
        #: Turns run (messages, joins, timers, hooks), those rolled back,
        #: messages refused ``busy``, and timed events fired.
        self.turns = 0
        self.failed_turns = 0
        self.refused_busy = 0
        self.timers_fired = 0
        self.rate_limited = 0
        self.flood_closes = 0
        self.outbound_drops = 0
        self.turn_seconds = Histogram(TURN_BUCKETS)
        self.commit_seconds = Histogram(COMMIT_BUCKETS)

    def refused(self, type_: str, code: str) -> None:
        """A refusal (an ``ERROR`` or a refused reply) made for a client."""
        self.sent.count(type_)
        self.refusals.count(code)
