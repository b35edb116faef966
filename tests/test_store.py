"""Contract tests for ``IStore``: every implementation must pass them all.

They use only the interface (no private attributes), so that another store
is tested by adding it to the ``store`` fixture's params.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from gameserver._errors import GameStarted, RoomFull, RoomNotFound, UsernameTaken
from gameserver._interfaces import IStore
from gameserver._models import Page, Room, RoomState, UserRecord, UserRef
from gameserver import MemoryStore

ALICE = UserRef(1, "alice")
BOB = UserRef(2, "bob")
CAROL = UserRef(3, "carol")
MISSING = 999_999


@pytest_twisted.async_yield_fixture(params=["memory", "redis"])
async def store(request):
    if request.param == "memory":
        yield MemoryStore()
        return
    from gameserver.store.redis import RedisAddress, RedisConnection, RedisStore

    url = request.getfixturevalue("redis_url")
    connection = RedisConnection(RedisAddress.parse(url))
    await _connected(connection)
    yield RedisStore(connection)
    await connection.disconnect()


async def _connected(connection) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    for _ in range(250):
        if connection.connected:
            return
        await deferLater(reactor, 0.02, lambda: None)
    raise AssertionError("no connection to Redis")


async def _room(
    store, *, name="room", game="tictactoe", max_players=2, password_hash=None
):
    return await store.create_room(name, game, ALICE, max_players, password_hash)


def test_provides_istore(store):
    assert verifyObject(IStore, store)


# -- users ----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_create_and_get_user(store):
    user = await store.create_user("Alice", "hash-a")
    assert isinstance(user, UserRecord)
    assert user.username == "Alice"
    assert user.password_hash == "hash-a"
    assert await store.get_user(user.id) == user
    assert user.ref == UserRef(user.id, "Alice")


@pytest_twisted.ensureDeferred
async def test_user_ids_are_distinct(store):
    alice = await store.create_user("alice", "h")
    bob = await store.create_user("bob", "h")
    assert alice.id != bob.id
    assert (await store.get_user(bob.id)).username == "bob"


@pytest.mark.parametrize("again", ["alice", "Alice", "ALICE", "aLiCe"])
@pytest_twisted.ensureDeferred
async def test_duplicate_username_is_taken_in_any_case(store, again):
    first = await store.create_user("Alice", "h1")
    with pytest.raises(UsernameTaken):
        await store.create_user(again, "h2")
    # The first account is untouched.
    assert await store.get_user_by_name("alice") == first
    assert (await store.get_user(first.id)).password_hash == "h1"


@pytest.mark.parametrize("lookup", ["Alice", "alice", "ALICE"])
@pytest_twisted.ensureDeferred
async def test_get_user_by_name_any_case(store, lookup):
    user = await store.create_user("Alice", "h")
    found = await store.get_user_by_name(lookup)
    assert found == user
    assert found.username == "Alice"


@pytest_twisted.ensureDeferred
async def test_missing_users_are_none(store):
    assert await store.get_user(MISSING) is None
    assert await store.get_user_by_name("nobody") is None
    await store.create_user("alice", "h")
    assert await store.get_user_by_name("alic") is None
    assert await store.get_user_by_name("alice2") is None


# -- rooms ----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_create_room(store):
    room = await store.create_room("Fun", "tictactoe", ALICE, 4, None)
    assert isinstance(room, Room)
    assert room.name == "Fun"
    assert room.game == "tictactoe"
    assert room.owner == ALICE
    assert room.max_players == 4
    assert room.state == RoomState.WAITING
    assert room.players == ()
    assert room.password_hash is None
    assert not room.has_password
    assert await store.get_room(room.id) == room


@pytest_twisted.ensureDeferred
async def test_create_room_with_password(store):
    room = await _room(store, password_hash="scrypt$...")
    assert room.has_password
    assert (await store.get_room(room.id)).password_hash == "scrypt$..."


@pytest_twisted.ensureDeferred
async def test_room_ids_increase(store):
    ids = [(await _room(store)).id for _ in range(5)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 5


@pytest_twisted.ensureDeferred
async def test_get_missing_room_is_none(store):
    assert await store.get_room(MISSING) is None


@pytest_twisted.ensureDeferred
async def test_list_rooms_empty(store):
    page = await store.list_rooms(None, 0, 10)
    assert isinstance(page, Page)
    assert page.count == 0
    assert tuple(page.items) == ()


@pytest_twisted.ensureDeferred
async def test_list_rooms_paging_newest_first(store):
    rooms = [await _room(store, name=f"r{i}") for i in range(5)][::-1]
    ids = [r.id for r in rooms]

    page = await store.list_rooms(None, 0, 10)
    assert page.count == 5
    assert [r.id for r in page.items] == ids
    assert list(page.items) == rooms

    page = await store.list_rooms(None, 1, 2)
    assert page.count == 5
    assert [r.id for r in page.items] == ids[1:3]

    page = await store.list_rooms(None, 4, 2)
    assert page.count == 5
    assert [r.id for r in page.items] == ids[4:]

    page = await store.list_rooms(None, 5, 2)
    assert page.count == 5
    assert tuple(page.items) == ()

    page = await store.list_rooms(None, 100, 2)
    assert page.count == 5
    assert tuple(page.items) == ()


@pytest_twisted.ensureDeferred
async def test_list_rooms_game_filter(store):
    a1 = await _room(store, game="chess")
    await _room(store, game="tictactoe")
    a2 = await _room(store, game="chess")
    await _room(store, game="tictactoe")
    a3 = await _room(store, game="chess")

    page = await store.list_rooms("chess", 0, 10)
    assert page.count == 3
    assert [r.id for r in page.items] == [a3.id, a2.id, a1.id]
    assert all(r.game == "chess" for r in page.items)

    page = await store.list_rooms("chess", 1, 1)
    assert page.count == 3
    assert [r.id for r in page.items] == [a2.id]

    page = await store.list_rooms("go", 0, 10)
    assert page.count == 0
    assert tuple(page.items) == ()

    assert (await store.list_rooms(None, 0, 10)).count == 5


@pytest_twisted.ensureDeferred
async def test_list_rooms_reflects_current_state(store):
    room = await _room(store)
    await store.seat_player(room.id, BOB)
    await store.set_room_state(room.id, RoomState.IN_GAME)
    (listed,) = (await store.list_rooms(None, 0, 10)).items
    assert listed.players == (BOB,)
    assert listed.state == RoomState.IN_GAME


@pytest_twisted.ensureDeferred
async def test_delete_room(store):
    keep = await _room(store)
    room = await _room(store)
    assert await store.delete_room(room.id) is True
    assert await store.get_room(room.id) is None
    assert await store.delete_room(room.id) is False
    assert await store.delete_room(MISSING) is False
    page = await store.list_rooms(None, 0, 10)
    assert page.count == 1
    assert [r.id for r in page.items] == [keep.id]


@pytest_twisted.ensureDeferred
async def test_deleted_room_ids_are_not_reused(store):
    first = await _room(store)
    await store.delete_room(first.id)
    second = await _room(store)
    assert second.id > first.id


# -- seats ----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_seat_new_player(store):
    room = await _room(store, max_players=3)
    seated, new = await store.seat_player(room.id, BOB)
    assert new is True
    assert seated.players == (BOB,)
    assert seated.has_player(BOB.id)
    seated, new = await store.seat_player(room.id, CAROL)
    assert new is True
    assert seated.players == (BOB, CAROL)
    assert (await store.get_room(room.id)).players == (BOB, CAROL)


@pytest_twisted.ensureDeferred
async def test_seat_already_seated_player(store):
    room = await _room(store, max_players=3)
    await store.seat_player(room.id, BOB)
    seated, new = await store.seat_player(room.id, BOB)
    assert new is False
    assert seated.players == (BOB,)
    assert (await store.get_room(room.id)).players == (BOB,)


@pytest_twisted.ensureDeferred
async def test_seat_in_full_room(store):
    room = await _room(store, max_players=2)
    await store.seat_player(room.id, ALICE)
    await store.seat_player(room.id, BOB)
    with pytest.raises(RoomFull):
        await store.seat_player(room.id, CAROL)
    assert (await store.get_room(room.id)).players == (ALICE, BOB)


@pytest_twisted.ensureDeferred
async def test_seat_after_game_started(store):
    room = await _room(store, max_players=3)
    await store.seat_player(room.id, ALICE)
    await store.set_room_state(room.id, RoomState.IN_GAME)
    with pytest.raises(GameStarted):
        await store.seat_player(room.id, BOB)
    assert (await store.get_room(room.id)).players == (ALICE,)


@pytest_twisted.ensureDeferred
async def test_seated_player_keeps_seat_in_full_started_room(store):
    room = await _room(store, max_players=2)
    await store.seat_player(room.id, ALICE)
    await store.seat_player(room.id, BOB)
    await store.set_room_state(room.id, RoomState.IN_GAME)
    seated, new = await store.seat_player(room.id, BOB)
    assert new is False
    assert seated.players == (ALICE, BOB)
    assert seated.state == RoomState.IN_GAME


@pytest_twisted.ensureDeferred
async def test_seat_in_unknown_room(store):
    with pytest.raises(RoomNotFound):
        await store.seat_player(MISSING, BOB)
    room = await _room(store)
    await store.delete_room(room.id)
    with pytest.raises(RoomNotFound):
        await store.seat_player(room.id, BOB)


@pytest_twisted.ensureDeferred
async def test_unseat_player(store):
    room = await _room(store, max_players=3)
    await store.seat_player(room.id, ALICE)
    await store.seat_player(room.id, BOB)
    await store.seat_player(room.id, CAROL)
    after = await store.unseat_player(room.id, BOB.id)
    assert isinstance(after, Room)
    assert after.id == room.id
    assert after.players == (ALICE, CAROL)
    assert (await store.get_room(room.id)).players == (ALICE, CAROL)


@pytest_twisted.ensureDeferred
async def test_unseat_player_not_seated(store):
    room = await _room(store)
    await store.seat_player(room.id, ALICE)
    after = await store.unseat_player(room.id, BOB.id)
    assert after.players == (ALICE,)


@pytest_twisted.ensureDeferred
async def test_unseat_frees_the_seat(store):
    room = await _room(store, max_players=1)
    await store.seat_player(room.id, ALICE)
    await store.unseat_player(room.id, ALICE.id)
    seated, new = await store.seat_player(room.id, BOB)
    assert new is True
    assert seated.players == (BOB,)


@pytest_twisted.ensureDeferred
async def test_unseat_in_unknown_room_is_none(store):
    assert await store.unseat_player(MISSING, BOB.id) is None


# -- state ----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_set_room_state(store):
    room = await _room(store)
    await store.seat_player(room.id, BOB)
    for state in (RoomState.IN_GAME, RoomState.FINISHED, RoomState.WAITING):
        after = await store.set_room_state(room.id, state)
        assert after.state == state
        assert after.players == (BOB,)
        assert (await store.get_room(room.id)).state == state


@pytest_twisted.ensureDeferred
async def test_set_room_state_accepts_the_value(store):
    room = await _room(store)
    after = await store.set_room_state(room.id, "in_game")
    assert after.state == RoomState.IN_GAME
    assert (await store.get_room(room.id)).state is RoomState.IN_GAME


@pytest_twisted.ensureDeferred
async def test_set_state_of_unknown_room(store):
    with pytest.raises(RoomNotFound):
        await store.set_room_state(MISSING, RoomState.IN_GAME)


# -- a turn's commit ------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_commit_writes_state_entries_chat_status_and_timers(store):
    from gameserver._models import Commit, TimerSpec

    room = await _room(store)
    assert await store.load_state(room.id) is None
    timer = TimerSpec("t1", "q", 100.5, "Router", "tick", (1, "a"))
    await store.commit(
        room.id,
        Commit(
            state='{"n": 1}',
            entries={"deck": "[1, 2]", "gone": None},
            chat=['{"text": "a"}', '{"text": "b"}', '{"text": "c"}'],
            chat_keep=2,
            status=RoomState.IN_GAME,
            timers={"q": timer},
        ),
    )
    assert await store.load_state(room.id) == '{"n": 1}'
    assert await store.get_entry(room.id, "deck") == "[1, 2]"
    assert await store.get_entry(room.id, "gone") is None
    assert await store.chat_backlog(room.id) == ['{"text": "b"}', '{"text": "c"}']
    assert (await store.get_room(room.id)).state is RoomState.IN_GAME
    assert await store.get_timer(room.id, "q") == timer
    assert await store.due_timers(100.0, 10) == []
    assert await store.due_timers(100.5, 10) == [(room.id, "q", "t1")]

    await store.commit(room.id, Commit(entries={"deck": None}, timers={"q": None}))
    assert await store.get_entry(room.id, "deck") is None
    assert await store.get_timer(room.id, "q") is None
    assert await store.due_timers(1000, 10) == []
    assert await store.load_state(room.id) == '{"n": 1}'  # None keeps it


@pytest_twisted.ensureDeferred
async def test_commit_can_clear_timers_then_set_new_ones(store):
    from gameserver._models import Commit, TimerSpec

    room = await _room(store)
    old = TimerSpec("a", "old", 5, "", "tick")
    await store.commit(room.id, Commit(timers={"old": old}))
    new = TimerSpec("b", "new", 6, "", "tick")
    await store.commit(room.id, Commit(clear_timers=True, timers={"new": new}))
    assert await store.get_timer(room.id, "old") is None
    assert await store.get_timer(room.id, "new") == new
    assert await store.due_timers(10, 10) == [(room.id, "new", "b")]


@pytest_twisted.ensureDeferred
async def test_commit_to_a_deleted_room_is_ignored(store):
    from gameserver._models import Commit, TimerSpec

    room = await _room(store)
    await store.delete_room(room.id)
    await store.commit(
        room.id, Commit(state="{}", timers={"t": TimerSpec("x", "t", 1, "", "m")})
    )
    assert await store.load_state(room.id) is None
    assert await store.get_room(room.id) is None
    assert await store.due_timers(10, 10) == []
