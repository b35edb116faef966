"""The contracts between layers.

Stores and hostings are asynchronous where Redis makes them so (their
methods return awaitables); the in-memory implementations answer at once
through the same contracts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, Any

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from gameserver._chat import ChatMessage
    from gameserver._engine.room import LiveRoom, Work
    from gameserver._engine.turns import Changes
    from gameserver._gameroom import GameRoom
    from gameserver._helper import Helper
    from gameserver._models import Page, Room, RoomView, UserRecord, UserRef
    from gameserver._wire.messages import Frame


class IStore(Interface):
    """Accounts and room records: what the HTTP API lists and a join checks.

    A room's game data (state, entries, chat, timers, presence) belongs to
    the process that owns the room, and is saved by its committer.
    """

    def create_user(
        username: str, password_hash: str, guest_until: float | None = None
    ) -> Awaitable[UserRecord]:
        """Store a new user (a guest until ``guest_until``, if given); raise
        ``UsernameTaken`` (case-insensitive)."""

    def claim_guest(
        user_id: int, password_hash: str, now: float
    ) -> Awaitable[UserRecord | None]:
        """Make a guest whose time is not over a full account with this
        password, at once; ``None`` if the user is not such a guest."""

    def expired_guests(
        now: float, limit: int, lease: float
    ) -> Awaitable[list[UserRecord]]:
        """Up to ``limit`` guests whose time is over, for ``remove_user``:
        each handed to one caller (across processes), and to another after
        ``lease`` seconds if it is still there (its remover failed)."""

    def remove_user(user_id: int) -> Awaitable[None]:
        """Forget a user and free their name."""

    def get_user(user_id: int) -> Awaitable[UserRecord | None]:
        """The ``UserRecord`` with this id, or ``None``."""

    def get_user_by_name(username: str) -> Awaitable[UserRecord | None]:
        """The ``UserRecord`` with this username (any case), or ``None``."""

    def create_room(
        name: str,
        game: str,
        owner: UserRef,
        max_players: int,
        password_hash: str | None,
        created: float = 0.0,
    ) -> Awaitable[Room]:
        """Store a new ``Room`` in the ``waiting`` state, made at ``created``
        (the server's clock), and return it."""

    def get_room(room_id: int) -> Awaitable[Room | None]:
        """The ``Room`` with this id, or ``None``."""

    def list_rooms(game: str | None, offset: int, limit: int) -> Awaitable[Page]:
        """A ``Page`` of rooms, newest first, optionally of one game only."""

    def pool_rooms(game: str, key: str) -> Awaitable[list[int]]:
        """The rooms ``QUICK_JOIN`` may seat a user of this game and match key
        in (a superset: some may have filled, started or gone since)."""

    def pool_add(game: str, key: str, room_id: int) -> Awaitable[None]:
        """Offer a room to quick joins of this game and match key."""

    def pool_remove(game: str, key: str, room_ids: list[int]) -> Awaitable[None]:
        """Offer these rooms no more."""

    def pool_lock(game: str, key: str, holder: str, ttl: float) -> Awaitable[bool]:
        """Take the pool's lock for ``ttl`` seconds unless another holder has it,
        so that quick joins of several processes choose rooms one at a time."""

    def pool_unlock(game: str, key: str, holder: str) -> Awaitable[None]:
        """Give the lock back, if this holder still has it."""

    def set_user_flags(
        user_id: int, *, admin: bool | None = None, banned: bool | None = None
    ) -> Awaitable[UserRecord | None]:
        """Mark a user admin or not, banned or not (``None``: unchanged), at
        once; the record as it is now, or ``None`` if there is no such user."""

    def find_users(prefix: str, limit: int) -> Awaitable[list[UserRecord]]:
        """Up to ``limit`` users whose name is ``prefix`` or starts with it
        (any case), the exact one first."""

    def admins() -> Awaitable[list[UserRecord]]:
        """The users marked admin in the store, by id."""


class IOversight(Interface):
    """What the admin API reads beyond the store's records: who owns each
    room, who is present, how busy it is, and who is online, in every
    process (in memory, this one)."""

    def rooms(game: str | None) -> Awaitable[list[RoomView]]:
        """Every room (of one game, if given), newest first."""

    def room(room_id: int) -> Awaitable[RoomView | None]:
        """One room with its data (state, entries, chat), or ``None``."""

    def online(user_ids: list[int]) -> Awaitable[set[int]]:
        """Those of these users with a socket in some process."""

    def processes() -> Awaitable[int | None]:
        """How many processes are alive; ``None`` in memory (this one only)."""


class IConnection(Interface):
    """One client socket, as the dispatcher, the engine and the tests see it."""

    id = Attribute("A number unique among this process's sockets.")
    user = Attribute("The validated ``UserRef``, or ``None`` before that.")
    open = Attribute("Whether the socket can still be sent to.")

    def send(message: dict[str, Any]) -> None:
        """Encode a message (a dict) and queue it for this client."""

    def send_frame(frame: Frame) -> None:
        """Queue a ``Frame`` (encoded and framed once) for this client."""

    def authenticated(user: UserRef) -> None:
        """The socket was validated as ``user``."""

    def close(code: int, reason: str) -> None:
        """Start the closing handshake."""


class IGroupLayer(Interface):
    """This process's validated sockets, by user, and delivery to them.

    Membership is per user, not per socket: a message to a user reaches
    each of their sockets.
    """

    def add(connection: IConnection) -> bool:
        """Register a socket; whether it is its user's first in this process."""

    def remove(connection: IConnection) -> bool:
        """Forget a socket; whether it was its user's last in this process."""

    def count(user_id: int) -> int:
        """How many sockets this user has in this process."""

    def users() -> list[int]:
        """The users with a socket in this process."""

    def connection(connection_id: int) -> IConnection | None:
        """The socket with this id, or ``None``."""

    def deliver(user_ids: Iterable[int], frame: Frame) -> None:
        """Hand ``frame`` to every socket of each of these users."""

    def deliver_to(connection_id: int, frame: Frame) -> None:
        """Hand ``frame`` to one socket, if it is still here."""


class IHosting(Interface):
    """Where a room's work is done: its owner, here or in another process.

    In memory every room is owned here. With Redis a room has one owner at a
    time, and work for it is forwarded there and acknowledged once saved.
    """

    def submit(work: Work) -> None:
        """Send ``work`` to its room's owner; refusals go to ``work.reply``."""

    def request(work: Work) -> Deferred[None]:
        """``submit``, and return a ``Deferred`` that fires once it is saved."""

    def user_connected(user: UserRef) -> Awaitable[None]:
        """The user has a socket in this process now (awaitable)."""

    def user_disconnected(user: UserRef) -> None:
        """The user's last socket in this process closed."""

    def close_user(user: UserRef, code: int, reason: str) -> Awaitable[None]:
        """Close the user's sockets, in every process."""

    def rooms_of(user: UserRef) -> Awaitable[tuple[list[int], list[int]]]:
        """The rooms the user is seated or present in, and those it made."""


class ICommitter(Interface):
    """Saves what turns changed, then delivers what they sent."""

    def commit(room: LiveRoom, changes: Changes) -> None:
        """Save ``changes`` (perhaps with others'), then deliver its messages.

        When saved, call ``Engine.saved``; when the room cannot be saved
        (its lease was lost, the store failed), give it up with the
        hosting's ``lost``.
        """

    def refuse(room: LiveRoom, work: Work, frame: Frame) -> None:
        """Send a refusal of ``work`` now, outside the turn order (``busy``)."""

    def duplicate(room: LiveRoom, work: Work) -> None:
        """``work`` was done and saved already: acknowledge it again."""


class IGame(Interface):
    """A game that rooms can be created for, found as a Twisted plugin.

    ``gameserver.Game`` implements all of it; subclass that.
    """

    name = Attribute("Unique short name, used in rooms and URLs.")
    description = Attribute("One line for the lobby.")
    min_players = Attribute("Fewest players needed to start.")
    max_players = Attribute("Most players a room of this game can seat.")
    routes = Attribute("Message type to handler ``(room, user, helper, data)``.")
    chat_backlog = Attribute("How many chat messages a room keeps.")
    max_spectators = Attribute("Most users watching one room without a seat.")

    def initial_state() -> Any:
        """The JSON state document of a new room."""

    def match_key(user: UserRef, options: dict[str, Any]) -> str:
        """The pool ``QUICK_JOIN`` seats the user from, given its ``options``."""

    def can_start(
        room: GameRoom, user: UserRef, helper: Helper, options: dict[str, Any]
    ) -> Any:
        """Raise a ``GameServerError`` to refuse the owner's ``START_GAME``."""

    def on_join(room: GameRoom, user: UserRef, helper: Helper) -> Any:
        """A user took a seat; raise a ``GameServerError`` to refuse them."""

    def on_reconnect(room: GameRoom, user: UserRef, helper: Helper) -> Any:
        """A seated user came back."""

    def on_resume(room: GameRoom, user: UserRef, helper: Helper) -> Any:
        """A seated user came back and got what they missed: no state to send."""

    def on_spectate(room: GameRoom, user: UserRef, helper: Helper) -> Any:
        """A user started watching (no seat): send what spectators may see."""

    def on_leave(room: GameRoom, user: UserRef, helper: Helper) -> Any:
        """A user gave up their seat."""

    def on_disconnect(room: GameRoom, user: UserRef, helper: Helper) -> Any:
        """A seated user's last socket closed during a game."""

    def on_start(room: GameRoom, helper: Helper, options: dict[str, Any]) -> Any:
        """The game started."""

    def on_finish(room: GameRoom, helper: Helper) -> Any:
        """The game finished."""

    def on_chat(
        room: GameRoom, user: UserRef, helper: Helper, message: ChatMessage
    ) -> Any:
        """Return the ``ChatMessage`` to send (changed or not), or ``None``."""


class ILimiter(Interface):
    """The per-address and per-account counters of the abuse limits.

    In memory they are this process's; on Redis every process shares them,
    so a client cannot multiply a limit by spreading over processes. Each
    answer is a ``Deferred`` (already fired in memory). Time is the
    caller's ``now`` (its injected clock), so both run on a ``task.Clock``.
    """

    def take(key: str, now: float, rate: float, burst: int) -> Deferred[float]:
        """Spend a token of the bucket ``key`` (``rate`` a second, ``burst``
        at most): 0 if there was one, else the seconds until there is."""

    def attempt(
        key: str, now: float, free: int, backoff: float, most: float, forget: float
    ) -> Deferred[float]:
        """Count an attempt (a password guess) against ``key``, unless it is
        backing off: then the seconds left, and nothing is counted. From the
        ``free``-th attempt on, the next ones wait ``backoff`` seconds,
        doubled at each (at most ``most``); attempts are forgotten ``forget``
        seconds after the last wait ends."""

    def forgive(key: str, reset: bool) -> None:
        """The last attempt was not a failure: all of ``key`` is forgotten
        (``reset``, a success), or only that attempt (it was not judged)."""

    def open_socket(
        address: str, most_open: int, most_unvalidated: int
    ) -> Deferred[int]:
        """Count a new, unvalidated socket of ``address``, unless that
        address has ``most_open`` sockets open (answer 1) or
        ``most_unvalidated`` not yet validated (answer 2): 0 if counted."""

    def socket_changed(address: str, opened: int, unvalidated: int) -> None:
        """Change the address's counts (a socket validated: 0, -1; one
        closed: -1, and -1 again if it never validated): only for a socket
        ``open_socket`` counted (answered 0)."""
