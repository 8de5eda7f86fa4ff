"""Session tokens an attacker can make without the key, beyond the forgeries the auth tests
already try (tests/integration/test_gateway_auth.py: alg none, other HMACs, a wrong key,
tampering, future nbf, missing claims): asymmetric algorithms and RS/HS key confusion, keys
the token brings along, and malformed structure. Every one is a 401, never a 5xx."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PRODUCTS = "/api/v1/products"
INVALID = {"error": "Authentication failed", "message": "Invalid token"}


@pytest.fixture(scope="module")
def gw(gateway_factory):
    return gateway_factory("gw-tokens")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict, claims: object, signature: bytes = b"") -> str:
    return f"{_unsigned_input(header, claims)}.{_b64(signature)}"


def _unsigned_input(header: dict, claims: object) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


def _forgeries(backing, user) -> dict[str, str]:
    kid_header = {"alg": "HS256", "typ": "JWT", "kid": "../../../../dev/null"}
    now = int(time.time())
    # Valid in every claim (fullName is optional): only the signature or the form is wrong.
    claims = {"userId": user.id, "username": user.username, "iat": now, "exp": now + 900}
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_public = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ec_key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    valid = jwt.encode(claims, backing.jwt_key, algorithm="HS256")
    _, payload, signature = valid.split(".")
    # HS256 keyed with a public key: what a server that picks the algorithm from the header
    # and hands it its "verification key" would accept (PyJWT itself refuses to sign it).
    signing_input = _unsigned_input({"alg": "HS256", "typ": "JWT"}, claims)
    confused = hmac.new(rsa_public, signing_input.encode(), hashlib.sha256).digest()
    return {
        "RS256 with an attacker's key": jwt.encode(claims, rsa_key, algorithm="RS256"),
        "PS256 with an attacker's key": jwt.encode(claims, rsa_key, algorithm="PS256"),
        "ES256 with an attacker's key": jwt.encode(claims, ec_key, algorithm="ES256"),
        "HS256 keyed with a public key": f"{signing_input}.{_b64(confused)}",
        "RS256 header on the HS256 signature": _unsigned(
            {"alg": "RS256", "typ": "JWT"}, claims, base64.urlsafe_b64decode(signature + "==")
        ),
        "embedded jwk": jwt.encode(
            claims, rsa_key, algorithm="RS256", headers={"jwk": jwk, "kid": "attacker"}
        ),
        "jku to elsewhere": jwt.encode(
            claims, rsa_key, algorithm="RS256", headers={"jku": "https://evil.test/jwks.json"}
        ),
        # Signed with the empty key that /dev/null would give a server reading keys by kid.
        "kid path traversal": f"{_unsigned_input(kid_header, claims)}."
        + _b64(hmac.new(b"", _unsigned_input(kid_header, claims).encode(), "sha256").digest()),
        "kid sql injection": jwt.encode(
            claims, "x" * 32, algorithm="HS256", headers={"kid": "' UNION SELECT 'x' --"}
        ),
        "alg in lower case": _unsigned({"alg": "hs256"}, claims),
        "no alg": _unsigned({"typ": "JWT"}, claims),
        "nbf as a string": jwt.encode(
            {**claims, "nbf": "yesterday"}, backing.jwt_key, algorithm="HS256"
        ),
        "claims an array": _unsigned({"alg": "HS256"}, [claims]),
        "five parts (JWE)": valid + ".e30.e30",
        "two parts": f"{valid.rsplit('.', 1)[0]}",
        "bad base64": "@@@.###.$$$",
        "header not JSON": f"{_b64(b'not json')}.{payload}.{signature}",
        "64 kB": "A" * 65536,
    }


@pytest.fixture(scope="module")
def forgeries(backing, gw) -> dict[str, str]:
    return _forgeries(backing, gw.new_user())


FORGERIES = [
    "RS256 with an attacker's key",
    "PS256 with an attacker's key",
    "ES256 with an attacker's key",
    "HS256 keyed with a public key",
    "RS256 header on the HS256 signature",
    "embedded jwk",
    "jku to elsewhere",
    "kid path traversal",
    "kid sql injection",
    "alg in lower case",
    "no alg",
    "nbf as a string",
    "claims an array",
    "five parts (JWE)",
    "two parts",
    "bad base64",
    "header not JSON",
    "64 kB",
]


def test_every_forgery_is_tried(forgeries):
    assert sorted(forgeries) == sorted(FORGERIES)


@pytest.mark.parametrize("transport", ["cookie", "bearer"])
@pytest.mark.parametrize("label", FORGERIES)
def test_forged_token_is_401_never_5xx(gw, forgeries, label, transport):
    token = forgeries[label]
    if transport == "cookie":
        r = gw.get(PRODUCTS, token)
    else:
        r = gw.get(PRODUCTS, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, r.text
    assert r.json() == INVALID
    assert not gw.set_cookies(r)
