"""`onecopy upload FILE...`: upload files concurrently; print what became of each.

Test hook: with ONECOPY_TEST_INTERRUPT_AFTER_PARTS=N in the environment, the process sends itself
SIGINT (a real Ctrl-C) once N parts of multipart uploads are in the bucket, and holds the part's
thread until the interruption is noticed. The end-to-end tests use it to interrupt an upload at a
known point and resume it; nothing else should set it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onecopy_cli import argtypes
from onecopy_cli.api import CliError, NotSignedIn
from onecopy_cli.context import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Context
from onecopy_cli.output import human_size, result_json, result_line
from onecopy_cli.upload import DEFAULT_PART_PARALLEL, FileResult, Outcome, Uploader

if TYPE_CHECKING:
    from collections.abc import Sequence

MAX_PARALLEL = 32
INTERRUPT_AFTER_PARTS_ENV = "ONECOPY_TEST_INTERRUPT_AFTER_PARTS"

EXAMPLES = """\
examples:
  onecopy upload report.pdf             upload one file
  onecopy upload photos/*.jpg -j 8      eight at a time
  onecopy upload --json *.csv | jq .    machine-readable, one object per line
  onecopy upload --multipart big.iso    in parts, whatever the size
  onecopy upload --resume ID big.iso    finish an interrupted upload in parts

Each file prints one line: stored (you now hold this content), duplicate (you already held
it; nothing new kept) or rejected (the bytes did not match what was declared), then its
SHA-256, size, name and upload id. Statuses are yours alone: a content only another user
holds is uploaded and ends "stored", like a new one.

Files above 100 MiB go in parts, several at once (--part-parallel); a failed part is retried.
When an upload in parts is interrupted (Ctrl-C, or a part that keeps failing), the parts sent
so far stay in the bucket for a day, and the command to send only the rest is printed.

exit status: 0 if every file was stored or a duplicate, 1 otherwise, 2 for usage errors,
3 when not signed in (`onecopy login`), 130 when interrupted.
"""


def register(subcommands: Any, common: argparse.ArgumentParser) -> None:
    parser = subcommands.add_parser(
        "upload",
        parents=[common],
        help="upload files (each distinct content is stored once)",
        description="Upload files. Content the service already holds is not stored again.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="files to upload")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per file instead of a line"
    )
    parser.add_argument(
        "-j",
        "--parallel",
        type=argtypes.count(MAX_PARALLEL),
        default=4,
        metavar="N",
        help=f"upload up to N files at once (1-{MAX_PARALLEL}; default: 4)",
    )
    parser.add_argument(
        "--timeout",
        type=argtypes.seconds,
        default=300.0,
        metavar="SECONDS",
        help="how long to wait for each file's verdict after its bytes are sent (default: 300)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="never draw the progress bar on stderr"
    )
    parser.add_argument(
        "--multipart",
        action="store_true",
        help="upload in parts whatever the size (files above 100 MiB always are; "
        "an empty file never is)",
    )
    parser.add_argument(
        "--part-parallel",
        type=argtypes.count(MAX_PARALLEL),
        default=DEFAULT_PART_PARALLEL,
        metavar="N",
        help=f"send up to N parts of a file at once (1-{MAX_PARALLEL}; "
        f"default: {DEFAULT_PART_PARALLEL})",
    )
    parser.add_argument(
        "--resume",
        type=argtypes.upload_id,
        metavar="UPLOAD_ID",
        help="finish this interrupted upload in parts with FILE (exactly one): "
        "only the parts the bucket lacks are sent",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    files: list[str] = args.files
    console = ctx.console
    resume_id: str | None = args.resume
    if resume_id is not None and len(files) != 1:
        console.error(f"--resume continues one upload: give exactly one FILE, not {len(files)}")
        return EXIT_USAGE
    cancel = threading.Event()
    show_progress = console.interactive and not args.no_progress
    progress = console.start_progress(len(files), _total_size(files)) if show_progress else None
    uploader = Uploader(
        # A connection per part in flight, plus one per file for the API calls.
        ctx.client(pool_size=args.parallel * (args.part_parallel + 1)),
        timeout=args.timeout,
        progress=progress,
        cancel=cancel,
        multipart=args.multipart,
        part_parallel=args.part_parallel,
        on_part_done=_interrupt_hook(ctx.environ, cancel),
    )
    resume_command = _resume_command(args)
    results: list[FileResult] = []
    with ThreadPoolExecutor(max_workers=min(args.parallel, len(files))) as pool:
        futures: list[Future[FileResult]] = []
        reported: set[Future[FileResult]] = set()
        # Submitting is inside the try: a Ctrl-C that lands while later files are submitted
        # (the first may be sending parts already) must stop and report them too.
        try:
            if resume_id is not None:
                futures.append(pool.submit(uploader.resume, files[0], resume_id))
            else:
                futures.extend(pool.submit(uploader.upload, path) for path in files)
            for future in as_completed(futures):
                result = future.result()
                reported.add(future)
                results.append(result)
                report(result, ctx, as_json=args.json, resume_command=resume_command)
        except NotSignedIn:
            # No file can go without a sign-in: stop the others where they are and say so once.
            cancel.set()
            pool.shutdown(wait=False, cancel_futures=True)
            console.stop_progress()
            raise
        except KeyboardInterrupt:
            cancel.set()
            pool.shutdown(wait=False, cancel_futures=True)
            console.stop_progress()
            # Files in flight stop at their next chunk or poll; each says where it stopped, so
            # that an upload in parts can be resumed.
            for future in futures:
                if future not in reported and not future.cancelled():
                    report(future.result(), ctx, as_json=args.json, resume_command=resume_command)
            console.error("interrupted")
            return EXIT_INTERRUPTED
    console.stop_progress()
    if show_progress and len(files) > 1 and not args.json:
        console.note(summary(results))
    return EXIT_OK if all(result.ok for result in results) else EXIT_FAILED


def report(
    result: FileResult,
    ctx: Context,
    *,
    as_json: bool,
    resume_command: Callable[[FileResult], str] | None = None,
) -> None:
    console = ctx.console
    command = resume_command(result) if resume_command and result.resumable else None
    if as_json:
        console.result(result_json(result, resume=command))
    elif result.outcome is not Outcome.FAILED:
        console.result(result_line(result, color=ctx.color))
    if result.error is None:
        return
    if result.unreachable:
        console.error(result.error, once=True)
    else:
        console.error(f"{result.path}: {result.error}")
    if command is not None:
        console.error(f"upload {result.upload_id} can be resumed with: {command}")


def _resume_command(args: argparse.Namespace) -> Callable[[FileResult], str]:
    """The command line that resumes an upload, with the API address when it was a flag."""

    def command(result: FileResult) -> str:
        words = ["onecopy", "upload"]
        api = getattr(args, "api", None)
        if api:
            words += ["--api", api]
        words += ["--resume", str(result.upload_id), result.path]
        return shlex.join(words)

    return command


def _interrupt_hook(environ: Mapping[str, str], cancel: threading.Event) -> Callable[[int], None]:
    """See the module's docstring; a no-op unless the environment asks for it."""
    wanted = environ.get(INTERRUPT_AFTER_PARTS_ENV, "")
    if not wanted.strip():
        return lambda _part: None
    try:
        limit = int(wanted)
    except ValueError:
        raise CliError(f"{INTERRUPT_AFTER_PARTS_ENV} must be a whole number") from None
    lock = threading.Lock()
    count = 0

    def part_done(_part: int) -> None:
        nonlocal count
        with lock:
            count += 1
            fire = count == limit
        if fire:
            os.kill(os.getpid(), signal.SIGINT)
            cancel.wait(30)

    return part_done


def summary(results: Sequence[FileResult]) -> str:
    counts = {outcome: 0 for outcome in Outcome}
    for result in results:
        counts[result.outcome] += 1
    parts = [f"{n} {outcome.value}" for outcome, n in counts.items() if n]
    saved = sum(r.size or 0 for r in results if r.outcome is Outcome.DUPLICATE)
    text = f"{len(results)} files: " + ", ".join(parts)
    return text + (f"; {human_size(saved)} did not need storing again" if saved else "")


def _total_size(files: Sequence[str]) -> int:
    total = 0
    for path in files:
        try:
            total += Path(path).stat().st_size
        except OSError:
            continue  # reported when its turn comes
    return total
