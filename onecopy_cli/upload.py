"""Uploading one file: hash, ask the API for a slot, PUT the bytes, wait for the verdict.

Every way a file can end is a FileResult, never an exception, so one bad file in a batch never
stops the others and the caller decides the exit code from the results alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onecopy_cli.api import AlreadyStored, Api, ApiError, CliError, Unreachable
from onecopy_cli.files import (
    DEFAULT_CONTENT_TYPE,
    Cancelled,
    FileBody,
    FileChanged,
    content_type_of,
    sha256_file,
)

if TYPE_CHECKING:
    from onecopy_cli.console import Progress

# S3 takes at most 5 GiB in one PUT; the API refuses more, so don't spend minutes hashing it.
MAX_SIZE = 5 * 1024**3
TERMINAL = frozenset({"STORED", "DUPLICATE", "REJECTED"})
FIRST_DELAY = 0.2
MAX_DELAY = 2.0


class Outcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    PENDING = "pending"  # still not decided when --timeout ran out
    FAILED = "failed"  # never got a verdict: missing file, API error, interrupted...


@dataclass(frozen=True, slots=True)
class FileResult:
    path: str
    filename: str
    outcome: Outcome
    sha256: str | None = None
    size: int | None = None
    content_type: str | None = None
    upload_id: str | None = None
    reason: str | None = None
    already_stored: bool = False
    error: str | None = None
    # The API could not be reached at all: the same for every file, so said once.
    unreachable: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.STORED, Outcome.DUPLICATE)


class Uploader:
    def __init__(
        self,
        api: Api,
        *,
        timeout: float = 300.0,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.api = api
        self.timeout = timeout
        self.progress = progress
        self.cancel = cancel or threading.Event()
        self.clock = clock
        self.sleep = sleep or self._interruptible_sleep
        self._unreachable: Unreachable | None = None

    def upload(self, path: str) -> FileResult:
        sent = [0]

        def on_chunk(n: int) -> None:
            sent[0] += n
            if self.progress is not None:
                self.progress.advance(n)

        try:
            result = self._upload(path, on_chunk)
        except Cancelled:
            result = FileResult(path, Path(path).name, Outcome.FAILED, error="interrupted")
        if self.progress is not None:
            self.progress.file_done(max((result.size or 0) - sent[0], 0))
        return result

    def _upload(self, path: str, on_chunk: Callable[[int], None]) -> FileResult:
        local = Path(path)
        # What is known so far; each step that can end the file returns a copy of it.
        known = FileResult(path, local.name, Outcome.FAILED)
        if self._unreachable is not None:
            # Once the API is known to be down, the remaining files would only repeat that.
            return replace(known, error=str(self._unreachable), unreachable=True)
        if self.cancel.is_set():
            raise Cancelled
        problem = _unreadable(local)
        if problem is not None:
            return replace(known, error=problem)
        try:
            size = local.stat().st_size
            if size > MAX_SIZE:
                error = f"too large ({size} bytes): one upload takes at most 5 GiB"
                return replace(known, size=size, error=error)
            sha256, size = sha256_file(local, cancel=self.cancel)
        except OSError as exc:
            return replace(known, error=f"cannot read: {exc.strerror or exc}")
        known = replace(known, sha256=sha256, size=size, content_type=content_type_of(local))

        try:
            answer = self.api.create_upload(
                filename=known.filename,
                size=size,
                content_type=known.content_type or DEFAULT_CONTENT_TYPE,
                sha256=sha256,
            )
        except Unreachable as exc:
            self._unreachable = exc
            return replace(known, error=str(exc), unreachable=True)
        except CliError as exc:
            return replace(known, error=str(exc))
        if isinstance(answer, AlreadyStored):
            return replace(
                known, outcome=Outcome.DUPLICATE, upload_id=answer.upload_id, already_stored=True
            )

        known = replace(known, upload_id=answer.upload_id)
        body: bytes | FileBody = (
            b""  # requests would send an empty iterable as chunked, which S3 refuses.
            if size == 0
            else FileBody(local, size, on_chunk=on_chunk, cancel=self.cancel)
        )
        try:
            self.api.put_object(answer.url, answer.headers, body)
        except FileChanged as exc:
            return replace(known, error=f"changed while uploading ({exc}); nothing was stored")
        except CliError as exc:
            return replace(known, error=str(exc))

        try:
            view = wait_until_done(
                self.api, answer.upload_id, timeout=self.timeout, clock=self.clock, sleep=self.sleep
            )
        except CliError as exc:
            return replace(known, error=f"uploaded, but could not learn the outcome: {exc}")
        status = str(view.get("status", "")).upper()
        if status not in TERMINAL:
            error = (
                f"still being processed after {self.timeout:g} s; "
                f"check later with: onecopy status {answer.upload_id}"
            )
            return replace(known, outcome=Outcome.PENDING, error=error)
        reason = view.get("reason") if status == "REJECTED" else None
        return replace(known, outcome=Outcome(status.lower()), reason=reason)

    def _interruptible_sleep(self, seconds: float) -> None:
        if self.cancel.wait(seconds):
            raise Cancelled


def wait_until_done(
    api: Api,
    upload_id: str,
    *,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> dict[str, Any]:
    """Poll the upload until it is terminal or `timeout` seconds passed; return the last view.

    Polls start 0.2 s apart (a small file is usually done by then) and back off to 2 s. A 5xx or
    a dropped connection while polling is retried until the deadline; a 4xx is not.
    """
    deadline = clock() + timeout
    delay = FIRST_DELAY
    while True:
        try:
            view: dict[str, Any] | None = api.get_upload(upload_id)
        except (Unreachable, ApiError) as exc:
            if (isinstance(exc, ApiError) and exc.status < 500) or clock() >= deadline:
                raise
            view = None
        if view is not None and str(view.get("status", "")).upper() in TERMINAL:
            return view
        remaining = deadline - clock()
        if remaining <= 0 and view is not None:
            return view
        sleep(max(min(delay, remaining), 0.0))
        delay = min(delay * 2, MAX_DELAY)


def _unreadable(path: Path) -> str | None:
    try:
        if path.is_dir():
            return "is a directory (upload the files in it, e.g. dir/*)"
        if not path.exists():
            return "no such file"
        if not path.is_file():
            return "not a regular file"
    except OSError as exc:
        return str(exc.strerror or exc)
    return None
