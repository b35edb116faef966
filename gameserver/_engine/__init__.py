"""The engine: the dispatcher, rooms held by their owner, turns and timers."""
