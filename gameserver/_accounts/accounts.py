"""Sign-up and log-in: users, passwords and the tokens they are traded for."""

from __future__ import annotations

import re
from typing import Any

from gameserver._accounts.passwords import PasswordHasher
from gameserver._accounts.tokens import ACCESS, REFRESH, Tokens
from gameserver._errors import InvalidInput, InvalidToken, NotAuthenticated
from gameserver._interfaces import IStore
from gameserver._models import UserRef

USERNAME = re.compile(r"[A-Za-z0-9_.-]{3,32}")
MIN_PASSWORD = 8
MAX_PASSWORD = 256


def _credentials(body: Any) -> tuple[str, str]:
    if not isinstance(body, dict):
        raise InvalidInput("expected a JSON object with 'username' and 'password'")
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise InvalidInput("'username' and 'password' must be strings")
    return username, password


class Accounts:
    def __init__(self, store: IStore, hasher: PasswordHasher, tokens: Tokens) -> None:
        self._store = store
        self._hasher = hasher
        self._tokens = tokens

    async def register(self, body: Any) -> UserRef:
        username, password = _credentials(body)
        if not USERNAME.fullmatch(username):
            raise InvalidInput("a username is 3 to 32 letters, digits, '.', '_' or '-'")
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise InvalidInput(
                f"a password is {MIN_PASSWORD} to {MAX_PASSWORD} characters long"
            )
        password_hash = await self._hasher.hash(password)
        record = await self._store.create_user(username, password_hash)
        return record.ref

    async def login(self, body: Any) -> dict[str, str]:
        username, password = _credentials(body)
        record = await self._store.get_user_by_name(username)
        if record is None:
            await self._hasher.spend(password)
        elif await self._hasher.verify(password, record.password_hash):
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

    async def _user(self, token: object, token_type: str) -> UserRef:
        user_id = self._tokens.user_id(token, token_type)
        record = await self._store.get_user(user_id)
        if record is None:
            raise InvalidToken("the token's user no longer exists")
        return record.ref
