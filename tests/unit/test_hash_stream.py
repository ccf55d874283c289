"""The worker's streaming hash: exact, bounded, and it never hides a read error."""

import hashlib
import io
import os

import pytest

from adapters.s3 import hash_stream

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 1_000_003])
def test_hash_and_length_match_hashlib(size: int) -> None:
    data = os.urandom(size)
    assert hash_stream(io.BytesIO(data), chunk_size=4096, max_buffered=2) == (
        size,
        hashlib.sha256(data).hexdigest(),
    )


class _FailingBody(io.BytesIO):
    def read(self, amt: int | None = None, /) -> bytes:
        if self.tell() >= 8192:
            raise ConnectionResetError("connection reset by peer")
        return super().read(amt)


def test_a_read_error_propagates() -> None:
    with pytest.raises(ConnectionResetError):
        hash_stream(_FailingBody(os.urandom(100_000)), chunk_size=4096, max_buffered=2)


class _TrackingBody(io.BytesIO):
    closed_by_us = False

    def close(self) -> None:
        self.closed_by_us = True
        super().close()


def test_the_body_is_closed() -> None:
    body = _TrackingBody(b"x" * 10_000)
    hash_stream(body, chunk_size=1024)
    assert body.closed_by_us
