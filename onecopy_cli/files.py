"""Local files: hashing, content types, and a body that streams exactly the declared bytes."""

from __future__ import annotations

import hashlib
import mimetypes
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

CHUNK = 1024 * 1024
DEFAULT_CONTENT_TYPE = "application/octet-stream"


class Cancelled(Exception):
    """The user interrupted the run; in-flight work stops at the next chunk."""


class FileChanged(Exception):
    """The file is not the size it was when it was hashed, or cannot be read any more.

    Deliberately not an OSError: raised from inside a request body, an OSError would be taken
    for a network failure by urllib3 and reported as one.
    """


def sha256_file(
    path: Path,
    *,
    on_chunk: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
) -> tuple[str, int]:
    """(hex SHA-256, size in bytes), read in 1 MiB chunks so memory stays flat for any size."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            if cancel is not None and cancel.is_set():
                raise Cancelled
            digest.update(chunk)
            size += len(chunk)
            if on_chunk is not None:
                on_chunk(len(chunk))
    return digest.hexdigest(), size


def content_type_of(path: Path) -> str:
    guessed, encoding = mimetypes.guess_type(path.name, strict=False)
    if guessed is None:
        return DEFAULT_CONTENT_TYPE
    # report.csv.gz is not a CSV for whoever downloads it: it is gzip bytes.
    if encoding is not None:
        return {"gzip": "application/gzip", "bzip2": "application/x-bzip2"}.get(
            encoding, DEFAULT_CONTENT_TYPE
        )
    return guessed


class FileBody:
    """Exactly `size` bytes of a file from `offset` on (a whole file, or one part of it), as an
    iterable with a len() (so requests sends a Content-Length and streams it), reporting progress
    and honouring cancellation. Iterating again starts again: a retried request resends it all."""

    def __init__(
        self,
        path: Path,
        size: int,
        *,
        offset: int = 0,
        on_chunk: Callable[[int], None] | None = None,
        cancel: threading.Event | None = None,
        chunk_size: int = 256 * 1024,
    ) -> None:
        self.path = path
        self.size = size
        self.offset = offset
        self.on_chunk = on_chunk
        self.cancel = cancel
        self.chunk_size = chunk_size

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        remaining = self.size
        try:
            stream = self.path.open("rb")
        except OSError as exc:
            raise FileChanged(f"cannot read it any more: {exc.strerror or exc}") from exc
        with stream:
            if self.offset:
                stream.seek(self.offset)
            while remaining > 0:
                if self.cancel is not None and self.cancel.is_set():
                    raise Cancelled
                try:
                    chunk = stream.read(min(self.chunk_size, remaining))
                except OSError as exc:
                    raise FileChanged(f"cannot read it any more: {exc.strerror or exc}") from exc
                if not chunk:
                    # Sending fewer bytes than the Content-Length would leave the request
                    # hanging until the server times out; stop now with the real reason.
                    raise FileChanged(f"it shrank below {self.size} bytes while uploading")
                remaining -= len(chunk)
                if self.on_chunk is not None:
                    self.on_chunk(len(chunk))
                yield chunk
