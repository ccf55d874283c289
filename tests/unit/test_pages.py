"""Page tokens of the hash list: opaque, and refused when edited or minted elsewhere."""

import pytest

from domain.errors import InvalidInput
from domain.pages import decode_page_token, encode_page_token

pytestmark = pytest.mark.unit

SECRET = b"0123456789abcdef0123"
HASH = "ab" * 32


def test_round_trip() -> None:
    assert decode_page_token(encode_page_token(HASH, SECRET), SECRET) == HASH


def test_token_does_not_expose_a_raw_key() -> None:
    token = encode_page_token(HASH, SECRET)
    assert "sha256" not in token and "{" not in token


@pytest.mark.parametrize(
    "token",
    ["", "abc", "!!!!", "a" * 600, "eyJ2IjoxfQ", "e30" + "A" * 22],
)
def test_malformed_tokens_are_bad_input(token: str) -> None:
    with pytest.raises(InvalidInput):
        decode_page_token(token, SECRET)


def test_tampered_token_is_bad_input() -> None:
    token = encode_page_token(HASH, SECRET)
    flipped = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    with pytest.raises(InvalidInput):
        decode_page_token(flipped, SECRET)


def test_token_from_another_secret_is_bad_input() -> None:
    with pytest.raises(InvalidInput):
        decode_page_token(encode_page_token(HASH, b"another-secret-entirely"), SECRET)
