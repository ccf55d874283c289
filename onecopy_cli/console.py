"""Where output goes: results on stdout, messages and the progress bar on stderr.

The progress bar is only drawn when stderr is a terminal; piped or redirected output never sees
a control character. Every write goes through one lock, so worker threads can report at will and
a result line never lands in the middle of the bar.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from typing import TextIO

from onecopy_cli.output import human_size

_CLEAR_LINE = "\r\x1b[K"
_REDRAW_EVERY = 0.1  # seconds; redrawing per chunk would cost more than the upload.


class Console:
    def __init__(
        self,
        out: TextIO,
        err: TextIO,
        *,
        interactive: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out
        self.err = err
        self.interactive = _is_tty(err) if interactive is None else interactive
        self._clock = clock
        self._lock = threading.RLock()
        self._bar: Progress | None = None
        self._printed: set[str] = set()

    def result(self, line: str) -> None:
        with self._lock:
            self._clear_bar()
            self.out.write(line + "\n")
            self.out.flush()
            self._draw_bar(force=True)

    def error(self, message: str, *, once: bool = False) -> None:
        """`onecopy: message` on stderr; with once=True, a message repeated by several files
        (the API being down, say) is printed only the first time."""
        with self._lock:
            if once:
                if message in self._printed:
                    return
                self._printed.add(message)
            self._clear_bar()
            self.err.write(f"onecopy: {message}\n")
            self.err.flush()
            self._draw_bar(force=True)

    def note(self, message: str) -> None:
        with self._lock:
            self._clear_bar()
            self.err.write(message + "\n")
            self.err.flush()
            self._draw_bar(force=True)

    def start_progress(self, total_files: int, total_bytes: int) -> Progress:
        bar = Progress(self, total_files, total_bytes)
        if self.interactive:
            with self._lock:
                self._bar = bar
                self._draw_bar(force=True)
        return bar

    def stop_progress(self) -> None:
        with self._lock:
            self._clear_bar()
            self._bar = None

    def _changed(self) -> None:
        if self.interactive:
            with self._lock:
                self._draw_bar(force=False)

    def _clear_bar(self) -> None:
        if self._bar is not None and self._bar.drawn:
            self.err.write(_CLEAR_LINE)
            self.err.flush()
            self._bar.drawn = False

    def _draw_bar(self, *, force: bool) -> None:
        bar = self._bar
        if bar is None:
            return
        now = self._clock()
        if not force and now - bar.drawn_at < _REDRAW_EVERY:
            return
        width = shutil.get_terminal_size((80, 24)).columns
        self.err.write(_CLEAR_LINE + bar.render(width, now))
        self.err.flush()
        bar.drawn = True
        bar.drawn_at = now


class Progress:
    """Bytes sent across all files of one run, and how many files are finished."""

    def __init__(self, console: Console, total_files: int, total_bytes: int) -> None:
        self._console = console
        self._lock = threading.Lock()
        self.total_files = total_files
        self.total_bytes = total_bytes
        self.done_files = 0
        self.done_bytes = 0
        self.sent_bytes = 0  # what went over the wire: the transfer rate counts only this
        self.started = console._clock()
        self.drawn = False
        self.drawn_at = float("-inf")

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self.done_bytes = min(self.done_bytes + nbytes, self.total_bytes)
            self.sent_bytes += nbytes
        self._console._changed()

    def skip(self, nbytes: int) -> None:
        """Bytes that need no sending (parts an earlier run already uploaded) count as done."""
        with self._lock:
            self.done_bytes = min(self.done_bytes + nbytes, self.total_bytes)
        self._console._changed()

    def rewind(self, nbytes: int) -> None:
        """A failed attempt's bytes will be sent again: take them back."""
        with self._lock:
            self.done_bytes = max(self.done_bytes - nbytes, 0)
            self.sent_bytes = max(self.sent_bytes - nbytes, 0)
        self._console._changed()

    def file_done(self, unsent_bytes: int = 0) -> None:
        """A file finished; bytes it never had to send (a duplicate, a failure) count as done."""
        with self._lock:
            self.done_files += 1
            self.done_bytes = min(self.done_bytes + unsent_bytes, self.total_bytes)
        self._console._changed()

    def render(self, width: int, now: float) -> str:
        with self._lock:
            done, total, sent = self.done_bytes, self.total_bytes, self.sent_bytes
            files = f"{self.done_files}/{self.total_files} files"
        fraction = done / total if total else 1.0
        elapsed = max(now - self.started, 1e-9)
        # Once every byte is sent the rest is waiting for verdicts: a rate would only sink.
        rate = f"  {human_size(int(sent / elapsed))}/s" if sent and done < total else ""
        text = f" {fraction:4.0%}  {human_size(done)} / {human_size(total)}{rate}  {files}"
        bar_width = max(min(width - len(text) - 3, 40), 0)
        if bar_width < 10:
            return text.strip()[: max(width - 1, 0)]
        filled = int(bar_width * fraction)
        return f"[{'#' * filled}{'.' * (bar_width - filled)}]{text}"


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False
