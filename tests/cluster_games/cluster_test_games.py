"""A game for the multi-process tests: slow read-modify-write turns, and timers."""

from twisted.internet import reactor
from twisted.internet.task import deferLater

from gameserver import BaseRouter, Game


class CounterRouter(BaseRouter):
    async def bump(self, room, user, helper, data):
        # Read, wait, write: two turns interleaving would lose an update.
        n = room.state.get("n", 0)
        await deferLater(reactor, 0.002, lambda: None)
        room.state["n"] = n + 1
        helper.self_send("BUMPED", {"n": room.state["n"]})

    async def hold(self, room, user, helper, data):
        """Hold the room for a while: a turn in progress when a process dies."""
        room.state["held"] = room.state.get("held", 0) + 1
        await deferLater(reactor, data["seconds"], lambda: None)
        helper.self_send("HELD", {"held": room.state["held"]})

    def count(self, room, user, helper, data):
        helper.self_send(
            "COUNT", {"n": room.state.get("n", 0), "rings": room.state.get("rings", 0)}
        )

    def arm(self, room, user, helper, data):
        handle = helper.call_later(data["delay"], self.ring, name="bell")
        helper.broadcast("ARMED", {"deadline": handle.deadline})

    def ring(self, room, helper):
        room.state["rings"] = room.state.get("rings", 0) + 1
        helper.broadcast("RING", {"rings": room.state["rings"]})


class Counter(Game):
    name = "counter"
    description = "For the multi-process tests."
    max_players = 10
    routers = [CounterRouter]


counter = Counter()
