"""The game author's contract: routing, ordering, effects, state, timers, chat."""

from __future__ import annotations

import types

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from gameserver import (
    BaseRouter,
    Game,
    GameLoadError,
    GameServerError,
    game_from_module,
)
from gameserver._routers import RouteConflict
from gameserver.testing import GameTest, settle

# Routing


class Greeter(BaseRouter):
    def hello(self, room, user, helper, data):
        helper.self_send("HI", {"to": user.username})

    def receive_message(self, room, user, helper, data):
        helper.broadcast("GOT", {"text": data.get("text")})

    def get_routes(self):
        return super().get_routes({"RCV_MSG": self.receive_message})

    def _private(self, room, user, helper, data):
        raise AssertionError("never routed")


def test_public_methods_route_by_name_and_get_routes_renames():
    router = Greeter()
    routes = router.get_routes()
    assert set(routes) == {"hello", "RCV_MSG"}
    assert routes["RCV_MSG"] == router.receive_message


def test_hooks_and_base_helpers_are_never_routes():
    class Hooked(BaseRouter):
        def on_join(self, room, user, helper):
            pass

        def on_start(self, room, helper, options):
            pass

        def play(self, room, user, helper, data):
            pass

    assert set(Hooked().get_routes()) == {"play"}


def test_get_routes_merges_down_the_class_chain():
    class Parent(BaseRouter):
        def receive_message(self, room, user, helper, data):
            pass

        def get_routes(self, routes=None):
            return super().get_routes(
                {"RCV_MSG": self.receive_message, **(routes or {})}
            )

    class Child(Parent):
        def shout(self, room, user, helper, data):
            pass

        def get_routes(self, routes=None):
            return super().get_routes({"SHOUT": self.shout, **(routes or {})})

    assert set(Child().get_routes()) == {"RCV_MSG", "SHOUT"}


def test_two_routers_claiming_one_type_fail_at_load():
    class Other(BaseRouter):
        def hello(self, room, user, helper, data):
            pass

    with pytest.raises(RouteConflict, match="'hello'"):
        Game(name="clash", routers=[Greeter, Other])


def test_routers_cannot_claim_server_types():
    class Sneaky(BaseRouter):
        def get_routes(self, routes=None):
            return super().get_routes({"JOIN_ROOM": self.join})

        def join(self, room, user, helper, data):
            pass

    with pytest.raises(RouteConflict, match="JOIN_ROOM"):
        Game(name="sneaky", routers=[Sneaky])


def test_bad_player_counts_fail_at_load():
    with pytest.raises(GameLoadError):
        Game(name="none", min_players=3, max_players=2)


def test_module_level_routers_list_is_a_game():
    module = types.ModuleType("party", "A party game.\n\nMore text.")
    module.routers = [Greeter]
    module.max_players = 4
    game = game_from_module(module)
    assert (game.name, game.description, game.max_players) == (
        "party",
        "A party game.",
        4,
    )
    assert "RCV_MSG" in game.routes


def _play(*routers, **options):
    game = Game(name="g", description="test", routers=list(routers), **options)
    test = GameTest(game)
    alice = test.player("alice")
    room = test.create_room("g", owner=alice)
    assert alice.join(room)["data"]["is_successful"]
    return test, alice, room


def test_dispatch_to_routes():
    test, alice, room = _play(Greeter)
    bob = test.player("bob")
    bob.join(room)
    alice.send("hello")
    assert alice.last("HI")["data"] == {"to": "alice"}
    assert not bob.received("HI")
    alice.send("RCV_MSG", {"text": "yo"})
    assert bob.last("GOT")["data"] == {"text": "yo"}
    alice.send("receive_message", {"text": "yo"})
    assert alice.last("ERROR")["data"]["code"] == "unknown_type"
    alice.send("_private")
    assert alice.last("ERROR")["data"]["code"] == "unknown_type"


# Handlers: sync, Deferred, async; failures


class Styles(BaseRouter):
    def plain(self, room, user, helper, data):
        room.state["plain"] = True
        helper.self_send("DONE", {"how": "plain"})

    def deferred(self, room, user, helper, data):
        d = Deferred()
        d.addCallback(lambda _: helper.self_send("DONE", {"how": "deferred"}))
        d.callback(None)
        return d

    async def coroutine(self, room, user, helper, data):
        room.state["count"] = room.state.get("count", 0) + 1
        helper.self_send("DONE", {"how": "async", "count": room.state["count"]})

    def crash(self, room, user, helper, data):
        room.state["count"] = 999
        helper.broadcast("SHOULD_NOT_ARRIVE", {})
        helper.call_later(1, self.plain)
        raise ValueError("secret internals")

    def refuse(self, room, user, helper, data):
        room.state["count"] = -1
        raise GameServerError("not like that", code="illegal_move")

    def not_json(self, room, user, helper, data):
        room.state["when"] = {1, 2}

    def send_not_json(self, room, user, helper, data):
        helper.broadcast("BAD", {"x": object()})


def test_handlers_may_be_plain_deferred_or_async():
    test, alice, room = _play(Styles)
    for kind in ["plain", "deferred", "coroutine"]:
        alice.send(kind)
    assert [m["data"]["how"] for m in alice.received("DONE")] == [
        "plain",
        "deferred",
        "async",
    ]
    assert test.state(room) == {"plain": True, "count": 1}


def test_a_failing_handler_rolls_back_and_reports_without_traceback():
    test, alice, room = _play(Styles)
    alice.send("coroutine")
    alice.send("crash")
    error = alice.last("ERROR")["data"]
    assert error["code"] == "handler_error"
    assert "secret internals" not in error["detail"]
    assert error["request_type"] == "crash"
    assert test.state(room) == {"count": 1}
    assert not alice.received("SHOULD_NOT_ARRIVE")
    test.advance(5)
    assert not test.state(room).get("plain")
    alice.send("coroutine")
    assert alice.last("DONE")["data"]["count"] == 2


def test_a_refusal_keeps_its_code_and_rolls_back():
    test, alice, room = _play(Styles)
    alice.send("refuse")
    assert alice.last("ERROR")["data"] == {
        "code": "illegal_move",
        "detail": "not like that",
        "request_type": "refuse",
    }
    assert test.state(room) in (None, {})


def test_non_json_state_or_message_is_a_clear_error(caplog):
    test, alice, room = _play(Styles)
    alice.send("not_json")
    assert alice.last("ERROR")["data"]["code"] == "handler_error"
    alice.send("send_not_json")
    assert alice.last("ERROR")["data"]["code"] == "handler_error"
    assert test.state(room) in (None, {})


# Ordering


class Slow(BaseRouter):
    gates: list[Deferred] = []

    async def slow(self, room, user, helper, data):
        room.state.setdefault("log", []).append(f"start {data['n']}")
        gate = Deferred()
        Slow.gates.append(gate)
        await gate
        room.state["log"].append(f"end {data['n']}")
        helper.broadcast("LOG", {"log": room.state["log"]})

    def fast(self, room, user, helper, data):
        room.state.setdefault("log", []).append("fast")
        helper.broadcast("LOG", {"log": room.state["log"]})


def test_one_room_handles_one_message_at_a_time_in_order():
    Slow.gates = []
    test, alice, room = _play(Slow)
    bob = test.player("bob")
    bob.join(room)
    alice.send("slow", {"n": 1}, wait=False)
    bob.send("fast", wait=False)
    bob.send("slow", {"n": 2}, wait=False)
    assert len(Slow.gates) == 1
    assert not bob.received("LOG")  # "fast" waits behind the first "slow"
    Slow.gates[0].callback(None)
    assert [m["data"]["log"][-1] for m in bob.received("LOG")] == ["end 1", "fast"]
    assert len(Slow.gates) == 2
    Slow.gates[1].callback(None)
    test.check_settled()
    assert bob.last("LOG")["data"]["log"] == [
        "start 1",
        "end 1",
        "fast",
        "start 2",
        "end 2",
    ]


def test_other_rooms_are_not_held_up():
    Slow.gates = []
    test, alice, room = _play(Slow)
    bob = test.player("bob")
    other = test.create_room("g", owner=bob)
    bob.join(other)
    alice.send("slow", {"n": 1}, wait=False)
    bob.send("fast", room=other, wait=False)
    assert bob.last("LOG")["data"]["log"] == ["fast"]
    Slow.gates[0].callback(None)
    test.check_settled()
    assert alice.last("LOG")["data"]["log"] == ["start 1", "end 1"]


# State and named entries


class Store(BaseRouter):
    async def put(self, room, user, helper, data):
        room.set(data["key"], data["value"])
        helper.self_send("PUT", {"key": data["key"]})

    async def fetch(self, room, user, helper, data):
        helper.self_send("VALUE", {"value": await room.get(data["key"], "missing")})

    async def put_then_fail(self, room, user, helper, data):
        room.set(data["key"], data["value"])
        raise GameServerError("no", code="nope")

    def drop(self, room, user, helper, data):
        room.delete(data["key"])

    def put_set(self, room, user, helper, data):
        room.set("odd", {"a": {1, 2}})

    def grow(self, room, user, helper, data):
        room.state["blob"] = "x" * data["size"]


def test_named_entries_are_read_on_demand_and_rolled_back():
    test, alice, room = _play(Store)
    alice.send("put", {"key": "deck", "value": [1, 2, 3]})
    alice.send("fetch", {"key": "deck"})
    assert alice.last("VALUE")["data"] == {"value": [1, 2, 3]}
    alice.send("put_then_fail", {"key": "deck", "value": "lost"})
    alice.send("fetch", {"key": "deck"})
    assert alice.last("VALUE")["data"] == {"value": [1, 2, 3]}
    alice.send("drop", {"key": "deck"})
    alice.send("fetch", {"key": "deck"})
    assert alice.last("VALUE")["data"] == {"value": "missing"}
    alice.send("put_set")
    assert alice.last("ERROR")["data"]["code"] == "handler_error"


def test_state_size_limit_is_a_clear_error():
    from gameserver import Settings

    game = Game(name="g", routers=[Store])
    test = GameTest(game, settings=Settings(secret="s" * 32, max_state_size=1000))
    alice = test.player("alice")
    room = test.create_room("g", owner=alice)
    alice.join(room)
    alice.send("grow", {"size": 100})
    alice.send("grow", {"size": 5000})
    error = alice.last("ERROR")["data"]
    assert error["code"] == "state_too_large"
    assert "1000" in error["detail"]
    assert len(test.state(room)["blob"]) == 100
    alice.send("put", {"key": "big", "value": "y" * 5000})
    assert alice.last("ERROR")["data"]["code"] == "state_too_large"


# Groups, private sends


class Teams(BaseRouter):
    def pick(self, room, user, helper, data):
        helper.group_add(data["team"])

    def unpick(self, room, user, helper, data):
        helper.group_remove(data["team"])

    def deal(self, room, user, helper, data):
        for player in room.players:
            helper.send_to(player, "HAND", {"cards": [player.id]})

    def tell(self, room, user, helper, data):
        helper.group_send(data["team"], "TEAM_NEWS", {"from": user.username})


def test_groups_are_teams_within_the_room_and_send_to_reaches_one_user():
    test, alice, room = _play(Teams)
    bob, carol = test.player("bob"), test.player("carol")
    bob.join(room)
    carol.join(room)
    alice.send("pick", {"team": "red"})
    bob.send("pick", {"team": "red"})
    carol.send("pick", {"team": "blue"})
    carol.send("tell", {"team": "red"})
    assert alice.received("TEAM_NEWS") and bob.received("TEAM_NEWS")
    assert not carol.received("TEAM_NEWS")
    bob.send("unpick", {"team": "red"})
    alice.send("tell", {"team": "red"})
    assert len(bob.received("TEAM_NEWS")) == 1
    alice.send("deal")
    for player in (alice, bob, carol):
        assert player.last("HAND")["data"] == {"cards": [player.user.id]}
        assert len(player.received("HAND")) == 1


# Timers


class Timed(BaseRouter):
    def arm(self, room, user, helper, data):
        handle = helper.call_later(
            data["delay"], self.ring, data.get("tag"), name=data.get("name")
        )
        helper.broadcast("ARMED", {"deadline": handle.deadline})

    def disarm(self, room, user, helper, data):
        helper.cancel_timer(data["name"])

    def ring(self, room, helper, tag):
        room.state.setdefault("rings", []).append(tag)
        helper.broadcast("RING", {"tag": tag, "at": helper.now()})

    def start(self, room, user, helper, data):
        helper.start_game()

    def finish(self, room, user, helper, data):
        helper.finish_game()


def test_timers_run_on_the_injected_clock_with_a_server_deadline():
    test, alice, room = _play(Timed)
    test.advance(100)
    alice.send("arm", {"delay": 10, "tag": "a"})
    assert alice.last("ARMED")["data"]["deadline"] == 110
    test.advance(9.9)
    assert not alice.received("RING")
    test.advance(0.1)
    assert alice.last("RING")["data"] == {"tag": "a", "at": 110}
    assert test.state(room)["rings"] == ["a"]


def test_timers_cancel_replace_and_end_with_the_game():
    test, alice, room = _play(Timed)
    alice.send("arm", {"delay": 5, "tag": "first", "name": "q"})
    alice.send("arm", {"delay": 8, "tag": "second", "name": "q"})
    test.advance(6)
    assert not alice.received("RING")
    test.advance(2)
    assert [m["data"]["tag"] for m in alice.received("RING")] == ["second"]
    alice.send("arm", {"delay": 5, "tag": "x", "name": "x"})
    alice.send("disarm", {"name": "x"})
    test.advance(10)
    assert len(alice.received("RING")) == 1
    alice.send("start")
    alice.send("arm", {"delay": 5, "tag": "late"})
    alice.send("finish")
    assert test.room(room).state == "finished"
    test.advance(10)
    assert len(alice.received("RING")) == 1


def test_timers_end_with_the_room():
    test, alice, room = _play(Timed)
    alice.send("arm", {"delay": 5, "tag": "x"})
    assert test.timers(room)
    settle(test.server.rooms.delete(room, alice.user))
    assert alice.last("ROOM_CLOSED")
    assert not test.timers(room)
    test.advance(10)
    assert not alice.received("RING")


def test_a_timer_waits_its_turn_behind_a_slow_handler():
    Slow.gates = []
    test, alice, room = _play(Timed, Slow)
    alice.send("arm", {"delay": 1, "tag": "t"})
    alice.send("slow", {"n": 1}, wait=False)
    test.clock.advance(1)
    assert not alice.received("RING")
    Slow.gates[0].callback(None)
    test.check_settled()
    assert alice.received("RING")
    assert test.state(room)["log"] == ["start 1", "end 1"]


# Lifecycle hooks


class Lifecycle(BaseRouter):
    def on_join(self, room, user, helper):
        room.state.setdefault("events", []).append(f"join {user.username}")
        if user.username == "mallory":
            raise GameServerError("no cheaters", code="banned")

    def on_reconnect(self, room, user, helper):
        room.state["events"].append(f"reconnect {user.username}")
        helper.self_send("WELCOME_BACK", {"events": room.state["events"]})

    def on_leave(self, room, user, helper):
        room.state["events"].append(f"leave {user.username}")

    def on_disconnect(self, room, user, helper):
        room.state["events"].append(f"disconnect {user.username}")

    def on_start(self, room, helper, options):
        room.state["events"].append(f"start {options}")

    def on_finish(self, room, helper):
        room.state["events"].append("finish")

    def end(self, room, user, helper, data):
        helper.finish_game()


def test_lifecycle_hooks():
    test, alice, room = _play(Lifecycle, min_players=2)
    bob = test.player("bob")
    bob.join(room)
    alice.send("START_GAME", {"mode": "fast"})
    assert alice.last("GAME_STARTED")["data"] == {"status": "in_game"}
    bob.disconnect()
    assert alice.last("USER_DISCONNECTED")["data"]["user"]["username"] == "bob"
    bob.reconnect()
    assert bob.join(room)["data"]["is_successful"]
    assert "reconnect bob" in bob.last("WELCOME_BACK")["data"]["events"]
    alice.send("end")
    assert bob.last("GAME_FINISHED")
    bob.leave()
    assert test.state(room)["events"] == [
        "join alice",
        "join bob",
        "start {'mode': 'fast'}",
        "disconnect bob",
        "reconnect bob",
        "finish",
        "leave bob",
    ]


def test_a_join_hook_may_refuse_and_the_seat_is_given_back():
    test, alice, room = _play(Lifecycle)
    mallory = test.player("mallory")
    reply = mallory.join(room)
    assert reply["data"]["is_successful"] is False
    assert reply["data"]["error"] == "banned"
    assert [p.username for p in test.room(room).players] == ["alice"]


def test_start_game_is_for_the_owner_with_enough_players():
    test, alice, room = _play(Lifecycle, min_players=2)
    alice.send("START_GAME")
    assert alice.last("ERROR")["data"]["code"] == "not_enough_players"
    bob = test.player("bob")
    bob.join(room)
    bob.send("START_GAME")
    assert bob.last("ERROR")["data"]["code"] == "not_owner"
    alice.send("START_GAME")
    alice.send("START_GAME")
    assert alice.last("ERROR")["data"]["code"] == "game_started"


# Built-in chat


class Quiet(BaseRouter):
    def hush(self, room, user, helper, data):
        room.state["quiet"] = data.get("quiet", True)

    def join_team(self, room, user, helper, data):
        helper.group_add(data["team"])


class QuietGame(Game):
    name = "quiet"
    routers = [Quiet]
    chat_backlog = 3

    async def on_chat(self, room, user, helper, message):
        if room.state.get("quiet"):
            return None
        if message.text.startswith("!"):
            import attrs

            return attrs.evolve(message, text=message.text.upper())
        return message


def _chat_room():
    test = GameTest(QuietGame())
    alice, bob, carol = test.player("alice"), test.player("bob"), test.player("carol")
    room = test.create_room("quiet", owner=alice)
    for player in (alice, bob, carol):
        player.join(room)
    return test, room, alice, bob, carol


def test_chat_reaches_everyone_with_a_server_timestamp():
    test, room, alice, bob, carol = _chat_room()
    test.advance(42)
    alice.send("CHAT_MESSAGE", {"text": "hello"})
    for player in (alice, bob, carol):
        data = player.last("CHAT_MESSAGE")["data"]
        assert data == {"user": alice.user.to_json(), "text": "hello", "ts": 42}
    for text in ["", "  ", None, "x" * 501]:
        alice.send("CHAT_MESSAGE", {"text": text})
        assert alice.last("ERROR")["data"]["code"] == "invalid"


def test_team_chat_only_reaches_the_team_and_only_members_may_send():
    test, room, alice, bob, carol = _chat_room()
    alice.send("join_team", {"team": "red"})
    bob.send("join_team", {"team": "red"})
    bob.send("CHAT_MESSAGE", {"text": "psst", "team": "red"})
    assert alice.last("CHAT_MESSAGE")["data"]["team"] == "red"
    assert bob.received("CHAT_MESSAGE")
    assert not carol.received("CHAT_MESSAGE")
    carol.send("CHAT_MESSAGE", {"text": "let me in", "team": "red"})
    assert carol.last("ERROR")["data"]["code"] == "not_in_team"
    assert len(alice.received("CHAT_MESSAGE")) == 1


def test_the_game_can_change_or_refuse_chat():
    test, room, alice, bob, carol = _chat_room()
    alice.send("CHAT_MESSAGE", {"text": "!loud"})
    assert bob.last("CHAT_MESSAGE")["data"]["text"] == "!LOUD"
    alice.send("hush")
    bob.send("CHAT_MESSAGE", {"text": "anyone?"})
    assert bob.last("ERROR")["data"]["code"] == "chat_refused"
    assert len(alice.received("CHAT_MESSAGE")) == 1


def test_chat_backlog_is_sent_to_joiners_without_other_teams_messages():
    test, room, alice, bob, carol = _chat_room()
    alice.send("join_team", {"team": "red"})
    for n in range(4):
        alice.send("CHAT_MESSAGE", {"text": f"m{n}"})
    alice.send("CHAT_MESSAGE", {"text": "secret", "team": "red"})
    dave = test.player("dave")
    dave.join(room)
    history = dave.last("CHAT_HISTORY")["data"]["messages"]
    assert [m["text"] for m in history] == ["m2", "m3"]
    alice.send("START_GAME")
    alice.reconnect()  # during a game, the seat and the team are kept
    alice.join(room)
    history = alice.last("CHAT_HISTORY")["data"]["messages"]
    assert [m["text"] for m in history] == ["m2", "m3", "secret"]


# Plugins


def test_bundled_games_are_found_as_plugins():
    from gameserver import installed_games

    assert "chat" in installed_games()
    with pytest.raises(GameLoadError, match="no game named nonesuch"):
        installed_games(["nonesuch"])


def test_a_broken_dropin_is_named(tmp_path, monkeypatch):
    import twisted.plugins

    from gameserver._game import broken_dropins

    plugins = tmp_path / "twisted" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "broken_game_dropin.py").write_text("import no_such_module_here\n")
    monkeypatch.setattr(
        twisted.plugins, "__path__", [*twisted.plugins.__path__, str(plugins)]
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    broken = dict(broken_dropins(twisted.plugins))
    assert "twisted.plugins.broken_game_dropin" in broken
    assert "no_such_module_here" in broken["twisted.plugins.broken_game_dropin"]


def test_a_plugin_that_does_not_provide_igame_fully_is_refused(tmp_path, monkeypatch):
    import twisted.plugins

    from gameserver import installed_games

    plugins = tmp_path / "twisted" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "half_game_dropin.py").write_text(
        "from twisted.plugin import IPlugin\n"
        "from zope.interface import implementer\n"
        "from gameserver._interfaces import IGame\n"
        "@implementer(IPlugin, IGame)\n"
        "class Half:\n"
        "    name = 'half'\n"
        "half = Half()\n"
    )
    monkeypatch.setattr(
        twisted.plugins, "__path__", [*twisted.plugins.__path__, str(plugins)]
    )
    with pytest.raises(GameLoadError, match="half"):
        installed_games()


# Over real sockets


@pytest_twisted.ensureDeferred
async def test_game_messages_over_websockets(make_server):
    server = await make_server(games={"g": Game(name="g", routers=[Greeter])})
    alice, a = await server.socket()
    _, b = await server.socket()
    room = await server.room(alice, game="g")
    await a.join(room["id"])
    await b.join(room["id"])
    a.send("RCV_MSG", room["id"], {"text": "over the wire"})
    assert (await b.receive("GOT"))["data"] == {"text": "over the wire"}
    reply = await a.request("RCV_MSG")
    assert reply["data"]["code"] == "bad_message"
    reply = await a.request("NOT_A_TYPE", room["id"])
    assert reply["data"]["code"] == "unknown_type"


def test_a_timer_cancelled_by_a_turn_queued_before_it_does_not_run():
    Slow.gates = []
    test, alice, room = _play(Timed, Slow)
    alice.send("arm", {"delay": 1, "tag": "t", "name": "q"})
    alice.send("slow", {"n": 1}, wait=False)
    alice.send("disarm", {"name": "q"}, wait=False)
    test.clock.advance(1)  # the timer is due, and queued behind both
    Slow.gates[0].callback(None)
    test.check_settled()
    assert alice.last("LOG")["data"]["log"] == ["start 1", "end 1"]
    assert not alice.received("RING")
    assert not test.timers(room)


def test_advance_measures_chained_timers_from_when_they_were_set():
    class Chain(BaseRouter):
        def go(self, room, user, helper, data):
            helper.call_later(15, self.first)

        def first(self, room, helper):
            helper.call_later(3, self.second)

        def second(self, room, helper):
            helper.broadcast("SECOND", {"at": helper.now()})

    test, alice, room = _play(Chain)
    alice.send("go")
    test.advance(18)
    assert alice.last("SECOND")["data"]["at"] == 18


def test_a_timer_whose_callback_fails_is_dropped_not_retried():
    class Faulty(BaseRouter):
        def arm(self, room, user, helper, data):
            helper.call_later(1, self.explode, name="boom")

        def explode(self, room, helper):
            room.state["exploded"] = room.state.get("exploded", 0) + 1
            raise RuntimeError("bad timer")

    test, alice, room = _play(Faulty)
    alice.send("arm")
    test.advance(1)
    assert test.state(room) in (None, {})  # the failed turn was rolled back
    assert "boom" not in test.timers(room)  # dropped: nobody fires it again
    test.advance(10)
    assert test.state(room) in (None, {})


def test_a_turn_that_waits_too_long_times_out_and_the_room_goes_on():
    class Stuck(BaseRouter):
        async def stuck(self, room, user, helper, data):
            room.state["before"] = True
            await Deferred()  # never fires
            room.state["after"] = True

        def ping(self, room, user, helper, data):
            helper.self_send("PONG", {"state": room.state})

    test, alice, room = _play(Stuck)
    alice.send("stuck", wait=False)
    alice.send("ping", wait=False)
    assert not alice.received("PONG")  # behind the stuck turn
    test.clock.advance(test.server.settings.turn_timeout)
    error = alice.last("ERROR")["data"]
    assert (error["code"], error["request_type"]) == ("timeout", "stuck")
    assert alice.last("PONG")["data"] == {"state": {}}  # the stuck turn's change undone
    test.check_settled()
