"""Sign-up and log-in: users, passwords and the tokens they are traded for.

A guest is an account with no password, made on request, that lasts as
long as its refresh token: then it is removed (``GuestSweeper``), unless
its player chose a password first and claimed it.
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IReactorTime

from gameserver._accounts.passwords import PasswordHasher
from gameserver._accounts.tokens import ACCESS, REFRESH, Tokens
from gameserver._errors import (
    Banned,
    InvalidInput,
    InvalidToken,
    NotAGuest,
    NotAuthenticated,
    TooManyRequests,
    UsernameTaken,
)
from gameserver._interfaces import IStore
from gameserver._models import UserRecord, UserRef
from gameserver._wire.limits import TokenBucket

if TYPE_CHECKING:
    from gameserver._guard import Guard

USERNAME = re.compile(r"[A-Za-z0-9_.-]{3,32}")
MIN_PASSWORD = 8
MAX_PASSWORD = 256
#: Names made for guests start with this, and no other name may.
GUEST_PREFIX = "guest-"
#: Tries at a free made-up guest name: 4 hex digits, then 8.
_GUEST_NAME_TRIES = 8


def _username(username: object) -> str:
    if not isinstance(username, str) or not USERNAME.fullmatch(username):
        raise InvalidInput("a username is 3 to 32 letters, digits, '.', '_' or '-'")
    if username.casefold().startswith(GUEST_PREFIX):
        raise InvalidInput(f"names starting with {GUEST_PREFIX!r} are kept for guests")
    return username


def _password(password: object) -> str:
    if not isinstance(password, str) or not (
        MIN_PASSWORD <= len(password) <= MAX_PASSWORD
    ):
        raise InvalidInput(
            f"a password is {MIN_PASSWORD} to {MAX_PASSWORD} characters long"
        )
    return password


def _credentials(body: Any) -> tuple[str, str]:
    if not isinstance(body, dict):
        raise InvalidInput("expected a JSON object with 'username' and 'password'")
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise InvalidInput("'username' and 'password' must be strings")
    return username, password


class Accounts:
    def __init__(
        self,
        store: IStore,
        hasher: PasswordHasher,
        tokens: Tokens,
        *,
        clock: IReactorTime,
        guest_rate: float = 2.0,
        guest_burst: int = 20,
        guard: Guard | None = None,
    ) -> None:
        """``guest_rate``/``guest_burst``: guests made per second, server-wide;
        ``guard``: the per-address and per-username limits."""
        self._guard = guard
        self._store = store
        self._hasher = hasher
        self._tokens = tokens
        self._guests = TokenBucket(guest_rate, guest_burst, clock)
        self._guest_rate = guest_rate

    async def register(self, body: Any, address: str | None = None) -> UserRef:
        """A new account; ``address``: the client's, for its sign-up limit."""
        username, password = _credentials(body)
        _username(username)
        _password(password)
        if self._guard is not None and address is not None:
            await self._guard.signup(address)
        password_hash = await self._hasher.hash(password)
        record = await self._store.create_user(username, password_hash)
        return record.ref

    async def guest(self, body: Any, address: str | None = None) -> dict[str, Any]:
        """A new guest account (``username`` optional) and its tokens."""
        if not isinstance(body, dict):
            raise InvalidInput("expected a JSON object, with 'username' or without")
        chosen = body.get("username")
        if chosen is not None:
            _username(chosen)
        if self._guard is not None and address is not None:
            await self._guard.guest(address)
        if not self._guests.take():
            raise TooManyRequests(
                "too many guest accounts at once: try again shortly",
                retry_after=1 / self._guest_rate,
            )
        until = self._tokens.expires(REFRESH)
        if chosen is not None:
            record = await self._store.create_user(chosen, "", guest_until=until)
        else:
            for attempt in range(_GUEST_NAME_TRIES):
                digits = 2 if attempt < _GUEST_NAME_TRIES // 2 else 4
                name = GUEST_PREFIX + secrets.token_hex(digits)
                try:
                    record = await self._store.create_user(name, "", guest_until=until)
                    break
                except UsernameTaken:
                    continue
            else:
                raise UsernameTaken("no free guest name: try again")
        return {
            "access": self._tokens.issue(record.id, ACCESS),
            "refresh": self._tokens.issue(record.id, REFRESH),
            "user": record.ref.to_json(),
        }

    async def claim(
        self, user: UserRef, body: Any, address: str | None = None
    ) -> UserRef:
        """Make a guest a full account, keeping its id and name; it counts as
        a sign-up of ``address`` (else guests would be a way around that
        limit)."""
        password = _password(body.get("password") if isinstance(body, dict) else None)
        not_a_guest = NotAGuest("only a guest account can be claimed, and only once")
        record = await self._store.get_user(user.id)
        if record is None or record.guest_until is None:
            raise not_a_guest  # checked before the costly hash, and again after
        if self._guard is not None and address is not None:
            await self._guard.signup(address)
        password_hash = await self._hasher.hash(password)
        now = self._tokens.now()
        claimed = await self._store.claim_guest(user.id, password_hash, now)
        if claimed is None:
            raise not_a_guest
        return claimed.ref

    async def login(self, body: Any, address: str | None = None) -> dict[str, str]:
        """Tokens for a username and password; throttled per username and per
        ``address`` (the client's) before the user is even looked up."""
        username, password = _credentials(body)
        guard = self._guard
        if guard is None:
            return await self._login(username, password)
        await guard.login_attempt(username, address)
        try:
            tokens = await self._login(username, password)
        except NotAuthenticated:
            guard.login_done(username, address, False)
            raise
        except BaseException:
            guard.login_done(username, address, None)
            raise
        guard.login_done(username, address, True)
        return tokens

    async def _login(self, username: str, password: str) -> dict[str, str]:
        record = await self._store.get_user_by_name(username)
        if record is None or record.guest_until is not None:
            # A guest has no password: it cannot log in, only refresh.
            await self._hasher.spend(password)
        elif await self._hasher.verify(password, record.password_hash):
            if record.banned:  # told only to who knows the password
                raise Banned("this account is banned")
            return {
                "access": self._tokens.issue(record.id, ACCESS),
                "refresh": self._tokens.issue(record.id, REFRESH),
            }
        raise NotAuthenticated("wrong username or password", code="bad_credentials")

    async def refresh(self, body: Any) -> dict[str, str]:
        token = body.get("refresh") if isinstance(body, dict) else None
        user = await self._user(token, REFRESH)
        return {"access": self._tokens.issue(user.id, ACCESS)}

    async def authenticate(self, access_token: object) -> UserRef:
        return await self._user(access_token, ACCESS)

    async def authenticate_record(self, access_token: object) -> UserRecord:
        """``authenticate``, with the user's whole record (its flags)."""
        return await self._record(access_token, ACCESS)

    async def _user(self, token: object, token_type: str) -> UserRef:
        return (await self._record(token, token_type)).ref

    async def _record(self, token: object, token_type: str) -> UserRecord:
        user_id = self._tokens.user_id(token, token_type)
        record = await self._store.get_user(user_id)
        if record is None:
            raise InvalidToken("the token's user no longer exists")
        if record.guest_until is not None and record.guest_until <= self._tokens.now():
            # Being removed: its access token may outlive its end by minutes.
            raise InvalidToken("the guest account has expired", code="token_expired")
        if record.banned:
            raise Banned("this account is banned")
        return record
