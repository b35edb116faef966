"""Salted scrypt hashes, computed in the thread pool behind a semaphore."""

from __future__ import annotations

import hashlib
import threading
import time
import types

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from gameserver._accounts import passwords
from gameserver._accounts.passwords import PasswordHasher

COST = 10


@pytest.fixture
def hasher():
    return PasswordHasher(reactor, cost=COST)


class _ScryptSpy:
    """Stands in for ``hashlib`` in the module, recording each scrypt call."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.threads: list[threading.Thread] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def scrypt(self, *args, **kwargs):
        with self._lock:
            self.threads.append(threading.current_thread())
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                time.sleep(self.delay)
            return hashlib.scrypt(*args, **kwargs)
        finally:
            with self._lock:
                self.active -= 1


@pytest.fixture
def spy(monkeypatch):
    spy = _ScryptSpy()
    monkeypatch.setattr(
        passwords, "hashlib", types.SimpleNamespace(scrypt=spy.scrypt), raising=True
    )
    return spy


@pytest_twisted.ensureDeferred
async def test_hash_then_verify(hasher):
    encoded = await hasher.hash("correct horse")
    assert isinstance(encoded, str)
    assert encoded.startswith(f"scrypt${COST}$")
    assert await hasher.verify("correct horse", encoded) is True


@pytest_twisted.ensureDeferred
async def test_wrong_password(hasher):
    encoded = await hasher.hash("correct horse")
    assert await hasher.verify("correct horsf", encoded) is False
    assert await hasher.verify("", encoded) is False
    assert await hasher.verify("Correct horse", encoded) is False


@pytest_twisted.ensureDeferred
async def test_non_ascii_password(hasher):
    encoded = await hasher.hash("p\u00e4ssw\u00f6rd \U0001f600")
    assert await hasher.verify("p\u00e4ssw\u00f6rd \U0001f600", encoded) is True
    assert await hasher.verify("passwort \U0001f600", encoded) is False


@pytest_twisted.ensureDeferred
async def test_hashes_are_salted(hasher):
    first = await hasher.hash("same password")
    second = await hasher.hash("same password")
    assert first != second
    # The salts differ, not just the encoding.
    assert first.split("$")[4] != second.split("$")[4]
    assert await hasher.verify("same password", first) is True
    assert await hasher.verify("same password", second) is True


@pytest_twisted.ensureDeferred
async def test_hash_does_not_contain_password(hasher):
    password = "hunter2-very-secret"
    encoded = await hasher.hash(password)
    assert password not in encoded
    assert password.encode() not in encoded.encode()


@pytest_twisted.ensureDeferred
async def test_verify_with_hash_of_another_cost(hasher):
    encoded = await PasswordHasher(reactor, cost=COST + 1).hash("pw")
    assert await hasher.verify("pw", encoded) is True


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "garbage",
        "$$$$$",
        "scrypt$10$8$1$AAAA",
        "scrypt$10$8$1$AAAA$AAAA$extra",
        "bcrypt$10$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA",
        "scrypt$ten$8$1$AAAA$AAAA",
        "scrypt$10$8$1$not base64!$AAAA",
        "scrypt$10$8$1$AAAA$not base64!",
        "scrypt$0$8$1$AAAA$AAAA",
        "scrypt$-1$8$1$AAAA$AAAA",
        "scrypt$10$0$1$AAAA$AAAA",
        "scrypt$10$8$0$AAAA$AAAA",
        "scrypt$64$8$1$AAAA$AAAA",
        "scrypt$10$99999999999999999999$1$AAAA$AAAA",
        "scrypt$10$8$1$AAAA$AAAA",
    ],
)
@pytest_twisted.ensureDeferred
async def test_malformed_hash_is_false(hasher, encoded):
    assert await hasher.verify("pw", encoded) is False


@pytest_twisted.ensureDeferred
async def test_truncated_real_hash_is_false(hasher):
    encoded = await hasher.hash("pw")
    assert await hasher.verify("pw", encoded[:-4]) is False
    assert await hasher.verify("pw", encoded.rsplit("$", 1)[0]) is False


@pytest_twisted.ensureDeferred
async def test_hashing_runs_off_the_reactor_thread(hasher, spy):
    encoded = await hasher.hash("pw")
    assert await hasher.verify("pw", encoded) is True
    assert len(spy.threads) == 2
    for thread in spy.threads:
        assert thread is not threading.main_thread()
        assert thread is not threading.current_thread()


@pytest_twisted.ensureDeferred
async def test_concurrency_cap(spy):
    spy.delay = 0.1
    hasher = PasswordHasher(reactor, cost=COST, max_concurrent=1)
    encoded = await defer.gatherResults(
        [defer.ensureDeferred(hasher.hash(f"pw{i}")) for i in range(3)]
    )
    assert len(spy.threads) == 3
    assert spy.max_active == 1
    assert len(set(encoded)) == 3


@pytest_twisted.ensureDeferred
async def test_concurrency_cap_above_one(spy):
    # The control for the test above: the spy does see parallel hashes.
    spy.delay = 0.2
    hasher = PasswordHasher(reactor, cost=COST, max_concurrent=2)
    await defer.gatherResults(
        [defer.ensureDeferred(hasher.hash(f"pw{i}")) for i in range(4)]
    )
    assert len(spy.threads) == 4
    assert spy.max_active == 2


@pytest_twisted.ensureDeferred
async def test_spend_completes(hasher, spy):
    assert await hasher.spend("anything") is None
    # The first call makes a decoy hash, then checks against it.
    assert len(spy.threads) == 2
    assert await hasher.spend("anything else") is None
    # Later calls reuse the decoy: one scrypt each, like a real check.
    assert len(spy.threads) == 3
