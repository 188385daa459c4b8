"""The helpers behind every feature's key layout: hash tags, digests, encodings, scripts."""

from __future__ import annotations

import pytest

from {{ cookiecutter.package_name }}.scripts import b64url, b64url_decode, digest, hash_tagged


def test_keys_put_the_tag_in_braces_after_the_prefix() -> None:
    assert hash_tagged("svc", "c:v1:items", "e", "abc") == "svc:{c:v1:items}:e:abc"


def test_a_digest_is_the_start_of_sha256_in_hex() -> None:
    assert digest("abc") == "ba7816bf8f01cfea414140de5dae2223"
    assert digest(b"abc", 8) == "ba7816bf"


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff\xfe", b"session data"])
def test_b64url_has_no_padding_and_round_trips(data: bytes) -> None:
    text = b64url(data)
    assert "=" not in text
    assert "+" not in text
    assert "/" not in text
    assert b64url_decode(text) == data
