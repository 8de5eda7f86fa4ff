from __future__ import annotations

import pytest

from echobase.app.gateway.middleware import client_ip, is_loopback, normalise_origin


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://Echobase.Test", "https://echobase.test"),
        ("https://echobase.test:443", "https://echobase.test"),
        ("http://localhost:80", "http://localhost"),
        ("https://echobase.test:8443", "https://echobase.test:8443"),
        ("https://echobase.test/", "https://echobase.test"),
        ("http://[::1]:3000", "http://[::1]:3000"),
        ("null", None),
        ("", None),
        ("https://a.test, https://echobase.test", None),
        ("https://echobase.test,", None),
        ("ftp://echobase.test", None),
        ("https://user@echobase.test", None),
        ("https://echobase.test:99999", None),
        ("javascript:alert(1)", None),
        ("https://echo base.test", None),
    ],
)
def test_normalise_origin(raw: str, expected: str | None) -> None:
    assert normalise_origin(raw) == expected


TRUSTED = frozenset({"127.0.0.1"})


@pytest.mark.parametrize(
    ("peer", "xff", "trusted", "expected"),
    [
        ("203.0.113.9", "1.2.3.4", TRUSTED, "203.0.113.9"),  # untrusted peer: header ignored
        ("127.0.0.1", None, TRUSTED, "127.0.0.1"),
        ("127.0.0.1", "203.0.113.9", TRUSTED, "203.0.113.9"),
        # The client wrote "1.2.3.4"; our proxy appended the real address last.
        ("127.0.0.1", "1.2.3.4, 203.0.113.9", TRUSTED, "203.0.113.9"),
        ("127.0.0.1", "203.0.113.9", frozenset(), "127.0.0.1"),
        ("127.0.0.1", "127.0.0.1, 127.0.0.1", TRUSTED, "127.0.0.1"),
        (None, None, TRUSTED, "unknown"),
    ],
)
def test_client_ip_believes_only_trusted_proxies(peer, xff, trusted, expected) -> None:
    assert client_ip(peer, xff, trusted) == expected


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("127.9.9.9")
    assert not is_loopback("10.0.0.1") and not is_loopback("unknown")
