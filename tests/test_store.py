"""Contract tests for ``IStore`` (accounts and room records): every
implementation must pass them all.

They use only the interface (no private attributes), so that another store
is tested by adding it to the ``store`` fixture's params. What a room's
owner saves as its turns go is tested through servers, in
``test_saving.py``.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from gameserver import MemoryStore
from gameserver._errors import UsernameTaken
from gameserver._interfaces import IStore
from gameserver._models import Page, Room, RoomState, UserRecord, UserRef

ALICE = UserRef(1, "alice")
MISSING = 999_999


@pytest_twisted.async_yield_fixture(params=["memory", "redis"])
async def store(request):
    if request.param == "memory":
        yield MemoryStore()
        return
    from gameserver._redis.connection import RedisAddress, RedisConnection
    from gameserver._redis.store import RedisStore

    url = request.getfixturevalue("redis_url")
    from twisted.internet import reactor

    connection = RedisConnection(RedisAddress.parse(url), reactor)
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
async def test_guests_are_handed_out_once_when_their_time_is_over(store):
    early = await store.create_user("guest-0001", "", guest_until=100.0)
    late = await store.create_user("guest-0002", "", guest_until=200.0)
    account = await store.create_user("member", "hash-m")
    assert early.guest_until == 100.0 and account.guest_until is None
    assert (await store.get_user(late.id)).guest_until == 200.0
    assert await store.expired_guests(99.0, 10, 60.0) == []
    assert [r.id for r in await store.expired_guests(150.0, 10, 60.0)] == [early.id]
    assert await store.expired_guests(150.0, 10, 60.0) == []  # leased to one
    # Not removed within its lease (its remover failed): handed out again.
    again = await store.expired_guests(211.0, 10, 60.0)
    assert sorted(r.id for r in again) == [early.id, late.id]
    # A guest whose time is over cannot be claimed any more.
    assert await store.claim_guest(early.id, "hash-e", 211.0) is None
    assert await store.claim_guest(account.id, "x", 0.0) is None  # never a guest
    await store.remove_user(early.id)
    assert await store.get_user(early.id) is None
    assert await store.get_user_by_name("guest-0001") is None
    again = await store.create_user("GUEST-0001", "")  # the name is free
    assert again.id != early.id
    assert [r.id for r in await store.expired_guests(1e12, 10, 60.0)] == [late.id]


@pytest_twisted.ensureDeferred
async def test_a_guest_is_claimed_while_its_time_lasts(store):
    guest = await store.create_user("guest-0003", "", guest_until=100.0)
    claimed = await store.claim_guest(guest.id, "hash-g", 99.0)
    assert claimed is not None and claimed.guest_until is None
    assert (await store.get_user(guest.id)).password_hash == "hash-g"
    assert await store.expired_guests(1e12, 10, 60.0) == []  # claimed: no end
    assert await store.claim_guest(guest.id, "again", 99.0) is None


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


def test_redis_commands_are_packed_as_resp():
    from gameserver._redis.connection import encode

    assert encode(("SET", "k", "é", 12, 1.5, b"\x00")) == (
        b"*6\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\xc3\xa9\r\n$2\r\n12\r\n"
        b"$3\r\n1.5\r\n$1\r\n\x00\r\n"
    )
    for wrong in (True, None, [1]):
        with pytest.raises(TypeError):
            encode(("SET", "k", wrong))


@pytest_twisted.ensureDeferred
async def test_corked_redis_commands_leave_together_at_once(redis_url):
    """A commit must not wait for the next reactor iteration to be sent."""
    from twisted.internet import reactor

    from gameserver._redis.connection import RedisAddress, RedisConnection, _held_by

    connection = RedisConnection(RedisAddress.parse(redis_url), reactor)
    await _connected(connection)
    try:
        transport = connection._link.protocol.transport

        def held() -> int:
            """Bytes Twisted holds, to send in a later iteration."""
            return _held_by(transport)

        with connection.corked():
            replies = [connection("ECHO", str(n)) for n in range(3)]
            assert held() == 0  # kept back until the cork comes off
        assert held() == 0  # then handed to the socket at once
        assert [await r for r in replies] == ["0", "1", "2"]
        # Outside a cork, a command is Twisted's to send, with the iteration's.
        later = connection("ECHO", "x")
        assert held() > 0
        assert await later == "x"
    finally:
        await connection.disconnect()


# -- admins and bans ------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_user_flags_are_kept_in_the_record(store):
    alice = await store.create_user("alice", "hash-a")
    assert (alice.admin, alice.banned) == (False, False)
    marked = await store.set_user_flags(alice.id, admin=True)
    assert (marked.admin, marked.banned) == (True, False)
    banned = await store.set_user_flags(alice.id, banned=True)
    assert (banned.admin, banned.banned) == (True, True)  # the other kept
    again = await store.get_user(alice.id)
    assert again == banned and again.password_hash == "hash-a"
    assert await store.get_user_by_name("ALICE") == banned
    assert [r.id for r in await store.admins()] == [alice.id]
    await store.set_user_flags(alice.id, admin=False, banned=False)
    assert await store.admins() == []
    assert (await store.get_user(alice.id)).banned is False
    assert await store.set_user_flags(MISSING, banned=True) is None


@pytest_twisted.ensureDeferred
async def test_find_users_by_name_or_its_start(store):
    ids = {}
    for name in ("Ann", "anna", "annabel", "bob"):
        ids[name] = (await store.create_user(name, "h")).id
    found = await store.find_users("ANNA", 10)
    assert found[0].id == ids["anna"]  # the exact one first
    assert sorted(r.username for r in found) == ["anna", "annabel"]
    assert sorted(r.username for r in await store.find_users("an", 10)) == [
        "Ann",
        "anna",
        "annabel",
    ]
    assert len(await store.find_users("an", 2)) == 2
    assert await store.find_users("carl", 10) == []


@pytest_twisted.ensureDeferred
async def test_a_room_keeps_when_it_was_made(store):
    room = await store.create_room("dated", "chat", ALICE, 4, None, 1234.5)
    assert room.created == 1234.5
    assert (await store.get_room(room.id)).created == 1234.5
    undated = await _room(store)
    assert (await store.get_room(undated.id)).created == 0.0
