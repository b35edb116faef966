"""Figures of a room both backends' admin views compute the same way."""

from __future__ import annotations

from collections.abc import Reversible

from gameserver._engine.room import Logged

#: Seconds over which a room's message rate is counted.
RATE_WINDOW = 60.0


def per_minute(log: Reversible[Logged], now: float) -> float:
    """Messages of the room's log sent in the last ``RATE_WINDOW`` seconds,
    per minute. The log keeps at most ``resume_log`` messages (and
    ``resume_window`` seconds), so a room busier than that reads as that."""
    since = now - RATE_WINDOW
    count = 0
    for entry in reversed(log):
        if entry.at < since:
            break
        count += 1
    return rate(count)


def rate(count: int) -> float:
    """Messages per minute, of ``count`` messages in ``RATE_WINDOW`` seconds."""
    return count * 60.0 / RATE_WINDOW
