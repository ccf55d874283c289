"""Uploading one file: hash, ask the API for a slot, send the bytes, wait for the verdict.

The bytes go in one PUT, or in parts (multipart.py) for files above 100 MiB or when asked: parts
can be retried one by one, and an interrupted upload resumed from the parts the bucket holds.

Every way a file can end is a FileResult, never an exception, so one bad file in a batch never
stops the others and the caller decides the exit code from the results alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from onecopy_cli.api import (
    AlreadyStored,
    Api,
    ApiError,
    CliError,
    HeldPart,
    MultipartSlot,
    NotSignedIn,
    PartSlot,
    Unreachable,
)
from onecopy_cli.files import (
    DEFAULT_CONTENT_TYPE,
    Cancelled,
    FileBody,
    FileChanged,
    content_type_of,
    sha256_file,
)
from onecopy_cli.multipart import PartSender, Plan


class Progress(Protocol):
    """What an upload reports as bytes move (onecopy_cli.console.Progress draws it)."""

    def advance(self, nbytes: int) -> None: ...
    def skip(self, nbytes: int) -> None: ...
    def rewind(self, nbytes: int) -> None: ...
    def file_done(self, unsent_bytes: int = 0) -> None: ...


# Above this the bytes go in parts (the server's default threshold too).
MULTIPART_THRESHOLD = 100 * 1024**2
# S3's object limit; the API refuses more, so don't spend hours hashing it.
MAX_SIZE = 5 * 1024**4
DEFAULT_PART_PARALLEL = 4
TERMINAL = frozenset({"STORED", "DUPLICATE", "REJECTED"})
FIRST_DELAY = 0.2
MAX_DELAY = 2.0
# What one status request asks the API to wait for the upload to finish (the API's maximum).
STATUS_WAIT_SECONDS = 20


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
    # A multipart upload that stopped short: `onecopy upload --resume upload_id path` goes on.
    resumable: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.STORED, Outcome.DUPLICATE)


class _Tally:
    """The bytes of one file the progress bar was told about, so that when the file ends the
    rest (never sent: a duplicate, a failure) can be counted as done exactly once."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.counted = 0
        self._lock = threading.Lock()

    def sent(self, nbytes: int) -> None:
        """Bytes that went out; negative when a failed attempt's bytes are taken back."""
        with self._lock:
            self.counted += nbytes
        if self.progress is not None:
            if nbytes >= 0:
                self.progress.advance(nbytes)
            else:
                self.progress.rewind(-nbytes)

    def skipped(self, nbytes: int) -> None:
        with self._lock:
            self.counted += nbytes
        if self.progress is not None:
            self.progress.skip(nbytes)

    def finish(self, size: int | None) -> None:
        if self.progress is not None:
            self.progress.file_done(max((size or 0) - self.counted, 0))


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
        multipart: bool = False,
        part_parallel: int = DEFAULT_PART_PARALLEL,
        on_part_done: Callable[[int], None] | None = None,
    ) -> None:
        self.api = api
        self.timeout = timeout
        self.progress = progress
        self.cancel = cancel or threading.Event()
        self.clock = clock
        self.sleep = sleep or self._interruptible_sleep
        self.multipart = multipart
        self.part_parallel = part_parallel
        self.on_part_done = on_part_done
        self._unreachable: Unreachable | None = None

    def upload(self, path: str) -> FileResult:
        return self._run(path, lambda tally: self._upload(path, tally))

    def resume(self, path: str, upload_id: str) -> FileResult:
        """Finish an interrupted multipart upload: send only the parts the bucket lacks."""
        return self._run(path, lambda tally: self._resume(path, upload_id, tally))

    def _run(self, path: str, work: Callable[[_Tally], FileResult]) -> FileResult:
        tally = _Tally(self.progress)
        try:
            result = work(tally)
        except Cancelled:
            result = FileResult(path, Path(path).name, Outcome.FAILED, error="interrupted")
        tally.finish(result.size)
        return result

    def _upload(self, path: str, tally: _Tally) -> FileResult:
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
                error = f"too large ({size} bytes): S3 holds at most 5 TiB in one object"
                return replace(known, size=size, error=error)
            sha256, size = sha256_file(local, cancel=self.cancel)
        except OSError as exc:
            return replace(known, error=f"cannot read: {exc.strerror or exc}")
        known = replace(known, sha256=sha256, size=size, content_type=content_type_of(local))

        # An empty file cannot be cut into parts: it is one (empty) PUT whatever was asked.
        in_parts = size > 0 and (self.multipart or size > MULTIPART_THRESHOLD)
        try:
            answer = self.api.create_upload(
                filename=known.filename,
                size=size,
                content_type=known.content_type or DEFAULT_CONTENT_TYPE,
                sha256=sha256,
                multipart=in_parts,
            )
        except Unreachable as exc:
            self._unreachable = exc
            return replace(known, error=str(exc), unreachable=True)
        except NotSignedIn:
            # Every other file would fail the same way: stop the run (main exits "not signed in").
            raise
        except CliError as exc:
            return replace(known, error=str(exc))
        if isinstance(answer, AlreadyStored):
            return replace(
                known, outcome=Outcome.DUPLICATE, upload_id=answer.upload_id, already_stored=True
            )
        known = replace(known, upload_id=answer.upload_id)
        if isinstance(answer, MultipartSlot):
            try:
                plan = Plan(size, answer.part_size, answer.part_count)
            except CliError as exc:
                return replace(known, error=str(exc))
            return self._send_parts(known, local, plan, {}, (), tally)

        body: bytes | FileBody = (
            b""  # requests would send an empty iterable as chunked, which S3 refuses.
            if size == 0
            else FileBody(local, size, on_chunk=tally.sent, cancel=self.cancel)
        )
        try:
            self.api.put_object(answer.url, answer.headers, body)
        except FileChanged as exc:
            return replace(known, error=f"changed while uploading ({exc}); nothing was stored")
        except CliError as exc:
            return replace(known, error=str(exc))
        return self._verdict(known)

    def _resume(self, path: str, upload_id: str, tally: _Tally) -> FileResult:
        local = Path(path)
        known = FileResult(path, local.name, Outcome.FAILED, upload_id=upload_id)
        problem = _unreadable(local)
        if problem is not None:
            return replace(known, error=problem)
        try:
            view = self.api.get_upload(upload_id)
            size = local.stat().st_size
        except CliError as exc:
            return replace(known, error=str(exc))
        except OSError as exc:
            return replace(known, error=f"cannot read: {exc.strerror or exc}")
        status = str(view.get("status", "")).upper()
        if status in TERMINAL:
            # Finished after all (the interruption came after the last part): say how.
            return self._outcome(replace(known, size=view.get("size")), view)
        if view.get("size") != size:
            error = (
                f"is {size} bytes but upload {upload_id} was started for {view.get('size')} "
                "bytes: not the same file"
            )
            return replace(known, size=size, error=error)
        try:
            sha256, size = sha256_file(local, cancel=self.cancel)
        except OSError as exc:
            return replace(known, error=f"cannot read: {exc.strerror or exc}")
        except Cancelled:
            return replace(known, size=size, error="interrupted", resumable=True)
        known = replace(
            known, sha256=sha256, size=size, content_type=view.get("content_type") or None
        )
        try:
            held = self.api.list_parts(upload_id)
            plan, first = self._learn_plan(upload_id, size)
        except CliError as exc:
            return replace(known, error=f"cannot resume: {exc}")
        # A held part of the wrong size (not this plan's) is sent again: S3 keeps the last copy.
        usable = {
            part.part_number: part
            for part in held
            if 1 <= part.part_number <= plan.part_count
            and part.size == plan.size_of(part.part_number)
        }
        return self._send_parts(known, local, plan, usable, [first], tally)

    def _learn_plan(self, upload_id: str, size: int) -> tuple[Plan, PartSlot]:
        """The part size the server chose at creation, read off part 1's signed Content-Length
        (GET /uploads/{id} does not repeat it). The URL is kept: part 1 may still be missing."""
        first = next(
            (s for s in self.api.presign_parts(upload_id, [1]) if s.part_number == 1), None
        )
        if first is None:
            raise CliError("the API returned no URL for part 1")
        try:
            part_size = int(first.headers["Content-Length"])
        except (KeyError, ValueError) as exc:
            raise CliError(f"the API's URL for part 1 signs no Content-Length ({exc})") from exc
        return Plan(size, part_size, -(-size // max(part_size, 1))), first

    def _send_parts(
        self,
        known: FileResult,
        local: Path,
        plan: Plan,
        held: dict[int, HeldPart],
        urls: Sequence[PartSlot],
        tally: _Tally,
    ) -> FileResult:
        assert known.upload_id is not None
        tally.skipped(sum(part.size for part in held.values()))
        missing = [n for n in range(1, plan.part_count + 1) if n not in held]
        sender = PartSender(
            self.api,
            known.upload_id,
            local,
            plan,
            parallel=self.part_parallel,
            cancel=self.cancel,
            sleep=self.sleep,
            on_bytes=tally.sent,
            on_part_done=self.on_part_done,
            urls=urls,
        )
        try:
            sent = sender.send(missing)
        except Cancelled:
            return self._stopped(known, plan, held, sender, "interrupted")
        except FileChanged as exc:
            # Parts already sent hold the old bytes: resuming would only end REJECTED.
            return replace(known, error=f"changed while uploading ({exc}); start the upload again")
        except CliError as exc:
            return self._stopped(known, plan, held, sender, str(exc))
        if self.cancel.is_set():
            return self._stopped(known, plan, held, sender, "interrupted")
        etags = {n: part.etag for n, part in held.items()} | sent
        try:
            self._complete(known.upload_id, sorted(etags.items()))
        except Cancelled:
            return self._stopped(known, plan, held, sender, "interrupted")
        except CliError as exc:
            return replace(known, error=f"could not complete: {exc}", resumable=True)
        return self._verdict(known)

    def _stopped(
        self,
        known: FileResult,
        plan: Plan,
        held: dict[int, HeldPart],
        sender: PartSender,
        why: str,
    ) -> FileResult:
        done = len(held) + len(sender.etags)
        error = f"{why} ({done} of {plan.part_count} parts uploaded)"
        return replace(known, error=error, resumable=True)

    def _complete(self, upload_id: str, parts: Sequence[tuple[int, str]]) -> None:
        """POST complete, up to 3 times while the answer is lost or a 5xx. A 409 after such a
        retry means an earlier call got through: the upload is complete all the same."""
        for attempt in range(1, 4):
            try:
                self.api.complete_upload(upload_id, parts)
                return
            except (Unreachable, ApiError) as exc:
                if attempt > 1 and isinstance(exc, ApiError) and exc.status == 409:
                    return
                transient = isinstance(exc, Unreachable) or exc.status >= 500
                if not transient or attempt == 3:
                    raise
            self.sleep(FIRST_DELAY * 2**attempt)

    def _verdict(self, known: FileResult) -> FileResult:
        assert known.upload_id is not None
        try:
            view = wait_until_done(
                self.api, known.upload_id, timeout=self.timeout, clock=self.clock, sleep=self.sleep
            )
        except Cancelled:
            # The bytes are in: the verdict comes whether or not anyone waits for it.
            error = (
                "interrupted while waiting for the verdict; "
                f"check with: onecopy status --wait {known.upload_id}"
            )
            return replace(known, error=error)
        except CliError as exc:
            return replace(known, error=f"uploaded, but could not learn the outcome: {exc}")
        return self._outcome(known, view)

    def _outcome(self, known: FileResult, view: dict[str, Any]) -> FileResult:
        status = str(view.get("status", "")).upper()
        if status not in TERMINAL:
            error = (
                f"still being processed after {self.timeout:g} s; "
                f"check later with: onecopy status {known.upload_id}"
            )
            return replace(known, outcome=Outcome.PENDING, error=error)
        reason = view.get("reason") if status == "REJECTED" else None
        if known.sha256 is None and view.get("sha256"):
            known = replace(known, sha256=str(view["sha256"]))
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
    """Wait until the upload is terminal or `timeout` seconds passed; return the last view.

    Each request asks the API to hold on until the upload is done (GET ?wait=, up to 20 s), so
    a result arrives as soon as it exists, with one request. An answer that came back sooner than
    asked (an error, or time nearly up) is retried after a pause of 0.2 s backing off to 2 s. A
    5xx or a dropped connection is retried until the deadline; a 4xx is not.
    """
    deadline = clock() + timeout
    delay = FIRST_DELAY
    while True:
        asked = clock()
        wait = max(0, min(STATUS_WAIT_SECONDS, int(deadline - asked)))
        try:
            view: dict[str, Any] | None = api.get_upload(upload_id, wait=wait)
        except (Unreachable, ApiError) as exc:
            if (isinstance(exc, ApiError) and exc.status < 500) or clock() >= deadline:
                raise
            view = None
        if view is not None and str(view.get("status", "")).upper() in TERMINAL:
            return view
        remaining = deadline - clock()
        if remaining <= 0 and view is not None:
            return view
        if view is not None and wait and clock() - asked >= wait:
            continue  # the API waited as asked: ask again at once
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
