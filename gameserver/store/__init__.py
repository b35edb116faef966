"""Where users and rooms live: in memory by default, Redis for several processes."""

from gameserver.store.memory import MemoryStore

__all__ = ["MemoryStore"]
