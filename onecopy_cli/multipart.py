"""Sending one file in parts: part URLs fetched in batches, parts PUT in parallel and retried.

The server plans the parts when the upload is created (every part `part_size` bytes but the last)
and signs each part's exact Content-Length, so a part's bytes are fixed by its number. That makes
parts independent: any of them can be sent, retried or, after an interruption, sent by another
run (`onecopy upload --resume`), and S3 keeps whichever copy of a part number arrived last.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from onecopy_cli.api import Api, ApiError, CliError, PartSlot, StorageError, Unreachable
from onecopy_cli.files import Cancelled, FileBody

PART_ATTEMPTS = 3
FIRST_RETRY_DELAY = 0.5  # seconds, doubled after each failed attempt
URLS_PER_REQUEST = 100  # the API's limit for POST /uploads/{id}/parts
# S3 takes one transient error code on a part with a 400 status: the connection sat idle too long.
_TRANSIENT_CODES = frozenset({"RequestTimeout", "SlowDown", "InternalError", "ServiceUnavailable"})


@dataclass(frozen=True, slots=True)
class Plan:
    """How a file of `size` bytes is cut: parts 1..part_count, all part_size but the last."""

    size: int
    part_size: int
    part_count: int

    def __post_init__(self) -> None:
        fits = self.size >= 1 and self.part_size >= 1
        if not fits or self.part_count != -(-self.size // self.part_size):
            raise CliError(
                f"the API's part plan does not fit the file: {self.part_count} parts of "
                f"{self.part_size} bytes for {self.size} bytes"
            )

    def offset_of(self, part_number: int) -> int:
        return (part_number - 1) * self.part_size

    def size_of(self, part_number: int) -> int:
        if part_number < self.part_count:
            return self.part_size
        return self.size - self.part_size * (self.part_count - 1)


class PartFailed(CliError):
    """A part could not be sent: refused outright, or PART_ATTEMPTS transient failures."""

    def __init__(self, part_number: int, cause: CliError, attempts: int) -> None:
        times = f" {attempts} times" if attempts > 1 else ""
        super().__init__(f"part {part_number} failed{times}: {cause}")
        self.part_number = part_number
        self.cause = cause
        self.attempts = attempts


class PartSender:
    """Sends the given parts of one multipart upload and returns their ETags.

    URLs are asked for lazily, up to URLS_PER_REQUEST at a time, so a long upload does not hold
    URLs that expire before their turn. A part whose URL expired anyway gets a fresh one; other
    transient failures are retried after a backoff. After a part fails for good no new part
    starts, but parts already in flight finish: each one held is one a resume need not send.
    """

    def __init__(
        self,
        api: Api,
        upload_id: str,
        path: Path,
        plan: Plan,
        *,
        parallel: int,
        cancel: threading.Event,
        sleep: Callable[[float], object],
        on_bytes: Callable[[int], None],
        on_part_done: Callable[[int], None] | None = None,
        urls: Sequence[PartSlot] = (),
    ) -> None:
        self.api = api
        self.upload_id = upload_id
        self.path = path
        self.plan = plan
        self.parallel = parallel
        self.cancel = cancel
        self.sleep = sleep
        self.on_bytes = on_bytes
        self.on_part_done = on_part_done
        self.etags: dict[int, str] = {}  # the parts this sender got into the bucket so far
        self._urls: dict[int, PartSlot] = {slot.part_number: slot for slot in urls}
        self._batches: dict[int, list[int]] = {}
        self._url_lock = threading.Lock()

    def send(self, part_numbers: Sequence[int]) -> dict[int, str]:
        """ETag by part number for every part in `part_numbers`, or the first failure raised."""
        numbers = sorted(part_numbers)
        for start in range(0, len(numbers), URLS_PER_REQUEST):
            batch = numbers[start : start + URLS_PER_REQUEST]
            for n in batch:
                self._batches[n] = batch
        failures: list[BaseException] = []
        stop = threading.Event()

        def run(n: int) -> None:
            if stop.is_set() or self.cancel.is_set():
                return
            try:
                self.etags[n] = self._send_part(n)
            except BaseException as exc:
                failures.append(exc)
                stop.set()
                return
            if self.on_part_done is not None:
                self.on_part_done(n)

        with ThreadPoolExecutor(
            max_workers=max(min(self.parallel, len(numbers)), 1),
            thread_name_prefix="onecopy-part",
        ) as pool:
            wait([pool.submit(run, n) for n in numbers])
        if self.cancel.is_set():
            raise Cancelled
        if failures:
            raise failures[0]
        return dict(self.etags)

    def _send_part(self, n: int) -> str:
        size = self.plan.size_of(n)
        for attempt in range(1, PART_ATTEMPTS + 1):
            if self.cancel.is_set():
                raise Cancelled
            sent = 0

            def counted(nbytes: int) -> None:
                nonlocal sent
                sent += nbytes
                self.on_bytes(nbytes)

            body = FileBody(
                self.path,
                size,
                offset=self.plan.offset_of(n),
                on_chunk=counted,
                cancel=self.cancel,
            )
            try:
                slot = self._url(n)
                return self.api.put_part(slot.url, slot.headers, body)
            except (Unreachable, ApiError, StorageError) as exc:
                if sent:
                    self.on_bytes(-sent)  # these bytes go again, or never count
                if attempt == PART_ATTEMPTS or not _transient(exc):
                    raise PartFailed(n, exc, attempt) from exc
                if isinstance(exc, StorageError) and exc.expired:
                    self._forget_url(n)  # the next attempt asks for a fresh one right away
                else:
                    self.sleep(FIRST_RETRY_DELAY * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _url(self, n: int) -> PartSlot:
        with self._url_lock:
            if n not in self._urls:
                wanted = [m for m in self._batches.get(n, [n]) if m not in self._urls] or [n]
                for slot in self.api.presign_parts(self.upload_id, wanted):
                    self._urls[slot.part_number] = slot
                if n not in self._urls:
                    raise ApiError(200, f"the API returned no URL for part {n}")
            return self._urls[n]

    def _forget_url(self, n: int) -> None:
        with self._url_lock:
            self._urls.pop(n, None)
            self._batches[n] = [n]


def _transient(exc: CliError) -> bool:
    if isinstance(exc, Unreachable):
        return True
    if isinstance(exc, StorageError):
        return exc.status >= 500 or exc.expired or exc.code in _TRANSIENT_CODES
    return isinstance(exc, ApiError) and exc.status >= 500
