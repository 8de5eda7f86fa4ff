from __future__ import annotations

import time

import jwt
import pytest

from echobase.app.core.security import (
    TokenExpiredError,
    TokenInvalidError,
    TokenUser,
    decode_token,
    hash_password,
    issue_token,
    verify_password,
)

KEY = "k" * 48
USER = TokenUser(7, "alice", "Alice A")


def test_token_round_trip_and_claims() -> None:
    token = issue_token(USER, KEY, 900, now=1_000_000)
    claims = jwt.decode(token, KEY, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {
        "userId": 7,
        "username": "alice",
        "fullName": "Alice A",
        "iat": 1_000_000,
        "exp": 1_000_900,
    }
    assert decode_token(issue_token(USER, KEY, 900), KEY) == USER


def test_expired_and_forged_tokens() -> None:
    with pytest.raises(TokenExpiredError):
        decode_token(issue_token(USER, KEY, 60, now=time.time() - 120), KEY)
    with pytest.raises(TokenInvalidError):
        decode_token(issue_token(USER, "other" * 10, 60), KEY)
    unsigned = jwt.encode(
        {"userId": 7, "username": "a", "iat": 1, "exp": 2**40}, None, algorithm="none"
    )
    with pytest.raises(TokenInvalidError):
        decode_token(unsigned, KEY)
    hs512 = jwt.encode(
        {"userId": 7, "username": "a", "iat": 1, "exp": 2**40}, KEY, algorithm="HS512"
    )
    with pytest.raises(TokenInvalidError):
        decode_token(hs512, KEY)
    missing = jwt.encode({"username": "a", "iat": 1, "exp": 2**40}, KEY, algorithm="HS256")
    with pytest.raises(TokenInvalidError):
        decode_token(missing, KEY)
    bad_type = jwt.encode(
        {"userId": True, "username": "a", "iat": 1, "exp": 2**40}, KEY, algorithm="HS256"
    )
    with pytest.raises(TokenInvalidError):
        decode_token(bad_type, KEY)


def test_long_passwords_count_every_byte() -> None:
    base = "Aa1" + "x" * 80
    stored = hash_password(base + "1", rounds=4)
    assert verify_password(base + "1", stored)
    assert not verify_password(base + "2", stored)  # differs only after byte 72
    assert not verify_password("anything", "not-a-bcrypt-hash")
