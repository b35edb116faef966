"""Access and refresh tokens, checked against an injected clock."""

from __future__ import annotations

import jwt
import pytest
from twisted.internet.task import Clock

from gameserver._accounts.tokens import ACCESS, LEEWAY, REFRESH, Tokens
from gameserver._errors import InvalidToken
from gameserver._settings import MIN_SECRET_BYTES, Settings

SECRET = b"s" * MIN_SECRET_BYTES
OTHER_SECRET = b"o" * MIN_SECRET_BYTES
NOW = 1_800_000_000
ACCESS_LIFETIME = 300
REFRESH_LIFETIME = 86_400


@pytest.fixture
def clock():
    clock = Clock()
    clock.advance(NOW)
    return clock


@pytest.fixture
def tokens(clock):
    return Tokens(
        SECRET,
        access_lifetime=ACCESS_LIFETIME,
        refresh_lifetime=REFRESH_LIFETIME,
        clock=clock,
    )


def _claims(**overrides):
    claims = {"sub": "42", "token_type": ACCESS, "iat": NOW, "exp": NOW + 60}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _craft(key=SECRET, algorithm="HS256", **overrides):
    return jwt.encode(_claims(**overrides), key, algorithm=algorithm)


def _peek(token):
    """The claims of a token, signature checked but not the (fake) time."""
    return jwt.decode(
        token,
        SECRET,
        algorithms=["HS256"],
        options={"verify_exp": False, "verify_iat": False},
    )


def _refused(tokens, token, expected_type=ACCESS, code="invalid_token"):
    with pytest.raises(InvalidToken) as info:
        tokens.user_id(token, expected_type)
    assert info.value.code == code
    return info.value


# -- round trips and token types ---------------------------------------------


@pytest.mark.parametrize("token_type", [ACCESS, REFRESH])
def test_round_trip(tokens, token_type):
    token = tokens.issue(42, token_type)
    assert isinstance(token, str)
    assert tokens.user_id(token, token_type) == 42


def test_issued_claims(tokens):
    claims = _peek(tokens.issue(7, ACCESS))
    assert claims["sub"] == "7"
    assert claims["token_type"] == ACCESS
    assert claims["iat"] == NOW
    assert claims["exp"] == NOW + ACCESS_LIFETIME
    claims = _peek(tokens.issue(7, REFRESH))
    assert claims["exp"] == NOW + REFRESH_LIFETIME


def test_tokens_are_unique(tokens):
    assert tokens.issue(1, ACCESS) != tokens.issue(1, ACCESS)


def test_refresh_token_refused_as_access(tokens):
    _refused(tokens, tokens.issue(42, REFRESH), ACCESS)


def test_access_token_refused_as_refresh(tokens):
    _refused(tokens, tokens.issue(42, ACCESS), REFRESH)


@pytest.mark.parametrize("token_type", ["", "Access", "admin", 1, ["access"]])
def test_unknown_token_type_refused(tokens, token_type):
    _refused(tokens, _craft(token_type=token_type))


# -- expiry -------------------------------------------------------------------


@pytest.mark.parametrize(
    "token_type,lifetime", [(ACCESS, ACCESS_LIFETIME), (REFRESH, REFRESH_LIFETIME)]
)
def test_expiry_exactly_at_exp(tokens, clock, token_type, lifetime):
    token = tokens.issue(42, token_type)
    clock.advance(lifetime - 1)
    assert tokens.user_id(token, token_type) == 42
    clock.advance(1)
    err = _refused(tokens, token, token_type, code="token_expired")
    assert isinstance(err, InvalidToken)
    clock.advance(10_000)
    _refused(tokens, token, token_type, code="token_expired")


def test_expiry_with_fractional_clock(tokens, clock):
    token = tokens.issue(42, ACCESS)
    clock.advance(ACCESS_LIFETIME - 0.001)
    assert tokens.user_id(token, ACCESS) == 42
    clock.advance(0.001)
    _refused(tokens, token, code="token_expired")


def test_already_expired_crafted_token(tokens):
    _refused(tokens, _craft(iat=NOW - 100, exp=NOW - 1), code="token_expired")


# -- crafted claims -----------------------------------------------------------


@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "token_type"])
def test_missing_claim_refused(tokens, missing):
    token = _craft(**{missing: None})
    assert missing not in _peek(token)
    _refused(tokens, token)


def test_crafted_token_with_every_claim_accepted(tokens):
    # The control for the tests above and below: the crafting itself is sound.
    assert tokens.user_id(_craft(), ACCESS) == 42


@pytest.mark.parametrize(
    "overrides",
    [
        {"sub": "abc"},
        {"sub": ""},
        {"sub": "-1"},
        {"sub": "4.2"},
        {"sub": " 42"},
        # Unicode digits: isdigit() is true, but they are no user id.
        {"sub": "\u00b2"},
        {"sub": "\u0663"},
        {"sub": 42},
        {"exp": float(NOW + 60)},
        {"exp": str(NOW + 60)},
        {"iat": float(NOW)},
        {"iat": True},
    ],
)
def test_malformed_claims_refused(tokens, overrides):
    _refused(tokens, _craft(**overrides))


def test_iat_far_in_the_future_refused(tokens):
    _refused(tokens, _craft(iat=NOW + 3600, exp=NOW + 7200))


def test_iat_within_leeway_accepted(tokens):
    assert tokens.user_id(_craft(iat=NOW + LEEWAY), ACCESS) == 42
    _refused(tokens, _craft(iat=NOW + LEEWAY + 1))


# -- signatures and algorithms -------------------------------------------------


def test_alg_none_refused(tokens):
    token = jwt.encode(_claims(), None, algorithm="none")
    assert token.endswith(".")
    _refused(tokens, token)
    # Also with the signature of a real token pasted on.
    signature = tokens.issue(42, ACCESS).rsplit(".", 1)[1]
    _refused(tokens, token + signature)


def test_other_secret_refused(tokens):
    _refused(tokens, _craft(key=OTHER_SECRET))
    other = Tokens(
        OTHER_SECRET,
        access_lifetime=ACCESS_LIFETIME,
        refresh_lifetime=REFRESH_LIFETIME,
        clock=Clock(),
    )
    _refused(tokens, other.issue(42, ACCESS))


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_other_hmac_algorithm_with_same_secret_refused(tokens, algorithm):
    _refused(tokens, _craft(algorithm=algorithm))


def test_tampered_payload_refused(tokens):
    header, _, signature = tokens.issue(42, ACCESS).split(".")
    forged = jwt.encode(_claims(sub="1"), SECRET).split(".")[1]
    _refused(tokens, f"{header}.{forged}.{signature}")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b.c",
        "a.b",
        "...",
        "\u00e9.\u00e9.\u00e9",
        "Bearer x",
        None,
        0,
        42,
        b"bytes",
        ["token"],
    ],
)
def test_garbage_refused(tokens, token):
    _refused(tokens, token)


# -- this server's own header: checked without PyJWT -----------------------


def _own(key: bytes = SECRET, **overrides) -> str:
    """A token with exactly the header ``Tokens.issue`` writes: the direct path."""
    from gameserver._accounts import tokens as module

    token = _craft(key, **overrides)
    assert token.split(".")[0] == module._OWN_HEADER
    return token


def test_own_tokens_take_the_direct_path_and_others_still_work(tokens, monkeypatch):
    from gameserver._accounts import tokens as module

    own = tokens.issue(42, ACCESS)
    assert own.split(".")[0] == module._OWN_HEADER
    other = jwt.encode(_claims(), SECRET, algorithm="HS256", headers={"kid": "a"})
    assert other.split(".")[0] != module._OWN_HEADER
    called = []
    real = jwt.decode
    monkeypatch.setattr(
        module.jwt, "decode", lambda *a, **k: called.append(1) or real(*a, **k)
    )
    assert tokens.user_id(own, ACCESS) == 42
    assert called == []  # no PyJWT
    assert tokens.user_id(other, ACCESS) == 42
    assert called == [1]


def _other_signature(token: str) -> str:
    """Another signature: its first character changed, whose six bits all count.

    Changing the last one may not: its lowest two bits are padding.
    """
    head, _, signature = token.rpartition(".")
    first = "A" if signature[0] != "A" else "B"
    return f"{head}.{first}{signature[1:]}"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t + ".x",  # four segments
        lambda t: t.rsplit(".", 1)[0] + ".",  # no signature
        lambda t: t[:-2] + "!!",  # not base64url
        lambda t: _other_signature(t),
        lambda t: t.rsplit(".", 1)[0] + "." + "A" * 43 + "=",  # padded
    ],
)
def test_own_header_with_a_bad_signature_is_refused(tokens, mangle):
    _refused(tokens, mangle(tokens.issue(42, ACCESS)))


def test_own_header_signed_with_another_key_is_refused(tokens):
    _refused(tokens, _own(OTHER_SECRET))


@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "token_type"])
def test_own_header_missing_a_claim_is_refused(tokens, missing):
    _refused(tokens, _own(**{missing: None}))


def test_own_header_with_claims_not_an_object_is_refused(tokens):
    head = tokens.issue(42, ACCESS).split(".")[0]
    import base64
    import hashlib
    import hmac

    payload = base64.urlsafe_b64encode(b"[1, 2]").rstrip(b"=").decode()
    signature = hmac.new(SECRET, f"{head}.{payload}".encode(), hashlib.sha256).digest()
    encoded = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    _refused(tokens, f"{head}.{payload}.{encoded}")


# -- secrets ------------------------------------------------------------------


def test_short_secret_refused_by_tokens(clock):
    with pytest.raises(ValueError):
        Tokens(
            b"s" * (MIN_SECRET_BYTES - 1),
            access_lifetime=ACCESS_LIFETIME,
            refresh_lifetime=REFRESH_LIFETIME,
            clock=clock,
        )


def test_settings_refuses_31_byte_secret():
    assert MIN_SECRET_BYTES == 32
    with pytest.raises(ValueError):
        Settings(secret=b"s" * 31)
    with pytest.raises(ValueError):
        Settings(secret="s" * 31)


def test_settings_accepts_str_secret_as_bytes():
    settings = Settings(secret="s" * 32)
    assert settings.secret == b"s" * 32
    # The length that counts is in bytes: 16 two-byte characters are enough.
    assert Settings(secret="\u00e9" * 16).secret == "\u00e9".encode() * 16


def test_settings_secret_not_in_repr():
    assert "sss" not in repr(Settings(secret="s" * 32))
