"""Password hashing and session tokens."""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import bcrypt
import jwt

JWT_ALGORITHM = "HS256"


def _prehash(password: str) -> bytes:
    # bcrypt only reads 72 bytes (and bcrypt>=5 refuses more): hashing first lets every
    # character of a long passphrase count and keeps the input a fixed 44 bytes.
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def hash_password(password: str, rounds: int) -> str:
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds)).decode("ascii")


def verify_password(password: str, password_hash: str) -> bool:
    try:
        return bcrypt.checkpw(_prehash(password), password_hash.encode("ascii"))
    except ValueError:
        return False


@dataclass(frozen=True)
class TokenUser:
    user_id: int
    username: str
    full_name: str


class TokenExpiredError(Exception):
    pass


class TokenInvalidError(Exception):
    pass


def issue_token(user: TokenUser, key: str, lifetime_seconds: int, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    claims = {
        "userId": user.user_id,
        "username": user.username,
        "fullName": user.full_name,
        "iat": issued,
        "exp": issued + lifetime_seconds,
    }
    return jwt.encode(claims, key, algorithm=JWT_ALGORITHM)


def decode_token(token: str, key: str) -> TokenUser:
    try:
        # Pinning the algorithm list rejects alg:none and RS/HS confusion outright.
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[JWT_ALGORITHM],
            options={"require": ["exp", "iat", "userId", "username"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenExpiredError from None
    except jwt.PyJWTError:
        raise TokenInvalidError from None
    user_id, username = claims.get("userId"), claims.get("username")
    if not isinstance(user_id, int) or isinstance(user_id, bool) or user_id < 1:
        raise TokenInvalidError
    if not isinstance(username, str):
        raise TokenInvalidError
    return TokenUser(user_id, username, str(claims.get("fullName", "")))
