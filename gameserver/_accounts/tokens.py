"""JSON Web Tokens: short-lived access tokens and longer refresh tokens.

PyJWT alone would accept a token without ``exp`` and cannot tell an access
token from a refresh token, so every claim is required and a
``token_type`` claim is checked. Expiry is checked against the injected
clock, so tests can move time with ``task.Clock``.
"""

from __future__ import annotations

import secrets

import jwt
from twisted.internet.interfaces import IReactorTime

from gameserver._errors import InvalidToken
from gameserver._settings import MIN_SECRET_BYTES

ALGORITHM = "HS256"
ACCESS = "access"
REFRESH = "refresh"
_REQUIRED = ["exp", "iat", "sub", "token_type"]
#: Tolerated clock skew between processes, in seconds.
LEEWAY = 5


def _is_user_id(sub: object) -> bool:
    # Not str.isdigit() alone: it is true for "²" (int() refuses) and "٣".
    return isinstance(sub, str) and sub.isascii() and sub.isdigit()


class Tokens:
    def __init__(
        self,
        secret: bytes,
        *,
        access_lifetime: float,
        refresh_lifetime: float,
        clock: IReactorTime,
    ) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(
                f"the token secret must be at least {MIN_SECRET_BYTES} bytes"
            )
        self._secret = secret
        self._lifetimes = {ACCESS: access_lifetime, REFRESH: refresh_lifetime}
        self._clock = clock

    def issue(self, user_id: int, token_type: str) -> str:
        now = int(self._clock.seconds())
        claims = {
            "sub": str(user_id),
            "token_type": token_type,
            "iat": now,
            "exp": now + int(self._lifetimes[token_type]),
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def user_id(self, token: object, expected_type: str) -> int:
        """The user a valid token of ``expected_type`` names, else ``InvalidToken``."""
        if not isinstance(token, str) or not token:
            raise InvalidToken("a token must be a non-empty string")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={
                    "require": _REQUIRED,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidTokenError as e:
            raise InvalidToken(f"invalid token: {e}") from None
        if claims["token_type"] != expected_type:
            raise InvalidToken(f"expected an {expected_type} token")
        exp, iat, sub = claims["exp"], claims["iat"], claims["sub"]
        if not all(type(v) is int for v in (exp, iat)) or not _is_user_id(sub):
            raise InvalidToken("malformed token claims")
        now = self._clock.seconds()
        if exp <= now:
            raise InvalidToken("token has expired", code="token_expired")
        if iat > now + LEEWAY:
            raise InvalidToken("token issued in the future")
        return int(sub)
