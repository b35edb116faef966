"""The contracts between layers.

Everything that talks to a store or to the group layer is asynchronous, so
that the in-memory implementations can be swapped for Redis ones without
touching their callers.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IStore(Interface):
    """Durable state: users and rooms. Every method returns an awaitable."""

    def create_user(username, password_hash):
        """Store a new user; raise ``UsernameTaken`` (case-insensitive)."""

    def get_user(user_id):
        """The ``UserRecord`` with this id, or ``None``."""

    def get_user_by_name(username):
        """The ``UserRecord`` with this username (any case), or ``None``."""

    def create_room(name, game, owner, max_players, password_hash):
        """Store a new ``Room`` in the ``waiting`` state and return it."""

    def get_room(room_id):
        """The ``Room`` with this id, or ``None``."""

    def list_rooms(game, offset, limit):
        """A ``Page`` of rooms, newest first, optionally of one game only."""

    def delete_room(room_id):
        """Delete a room; return whether it existed."""

    def seat_player(room_id, user):
        """Atomically give ``user`` a seat; return ``(room, newly_seated)``.

        A user who already holds a seat keeps it whatever the room's state
        or capacity. Otherwise raise ``RoomFull`` or ``GameStarted``; raise
        ``RoomNotFound`` for an unknown room.
        """

    def unseat_player(room_id, user_id):
        """Remove a seat if held; return the room, or ``None`` if it is gone."""

    def set_room_state(room_id, state):
        """Move a room to ``state``; return the room (``RoomNotFound``)."""

    def load_state(room_id):
        """The room's game state as JSON text, or ``None`` if never saved."""

    def get_entry(room_id, key):
        """One named entry of the room as JSON text, or ``None``."""

    def commit(room_id, commit):
        """Write a turn's ``Commit`` atomically; ignored if the room is gone."""

    def get_timer(room_id, name):
        """The room's ``TimerSpec`` of this name, or ``None``."""

    def due_timers(until, limit):
        """``(room_id, name, id)`` of up to ``limit`` timers due by ``until``."""

    def chat_backlog(room_id):
        """The room's kept chat messages, oldest first, as JSON texts."""


class IRoomLocks(Interface):
    """Mutual exclusion of a room's turns across every process of a store."""

    def acquire(room_id):
        """Wait for the room's lock; return a token for ``release`` (awaitable)."""

    def release(room_id, token):
        """Give the lock back (awaitable)."""


class IConnection(Interface):
    """One client socket, as the group layer sees it."""

    user = Attribute("The authenticated ``UserRef``.")

    def send_frame(frame):
        """Queue an encoded ``Frame`` for this client."""


class IGroupLayer(Interface):
    """Named sets of users and the connections to reach them.

    Membership is per user, not per connection: a user with two sockets is
    one member, and a message to the group reaches both sockets.
    """

    def connect(connection):
        """Register an authenticated connection (awaitable: done when it can
        receive its user's messages)."""

    def disconnect(connection):
        """Forget a connection; return whether its user has none left."""

    def connection_count(user_id):
        """How many connections this user has in this process."""

    def user_online(user_id):
        """Whether the user has a connection in any process (awaitable)."""

    def add(group, user_id):
        """Add a user to a group (awaitable)."""

    def remove(group, user_id):
        """Remove a user from a group (awaitable)."""

    def discard(group):
        """Forget a group and its members (awaitable)."""

    def discard_room(room_id):
        """Forget a room's own group and all its named groups (awaitable)."""

    def is_member(group, user_id):
        """Whether the user is in the group (awaitable bool)."""

    def members(group):
        """The user ids in a group (awaitable frozenset)."""

    def groups_of(user_id):
        """The groups a user is in (awaitable frozenset)."""

    def send(group, message, exclude=None):
        """Deliver a message (a dict, or a ``Frame`` encoded once) to every member."""

    def send_to_user(user_id, message):
        """Deliver a message (a dict or a ``Frame``) to each of the user's sockets."""


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

    def initial_state():
        """The JSON state document of a new room."""

    def can_start(room, user, helper, options):
        """Raise a ``GameServerError`` to refuse the owner's ``START_GAME``."""

    def on_join(room, user, helper):
        """A user took a seat; raise a ``GameServerError`` to refuse them."""

    def on_reconnect(room, user, helper):
        """A seated user came back."""

    def on_leave(room, user, helper):
        """A user gave up their seat."""

    def on_disconnect(room, user, helper):
        """A seated user's last socket closed during a game."""

    def on_start(room, helper, options):
        """The game started."""

    def on_finish(room, helper):
        """The game finished."""

    def on_chat(room, user, helper, message):
        """Return the ``ChatMessage`` to send (changed or not), or ``None``."""
