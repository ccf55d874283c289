"""`onecopy upload FILE...`: upload files concurrently; print what became of each."""

from __future__ import annotations

import argparse
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onecopy_cli import argtypes
from onecopy_cli.context import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, Context
from onecopy_cli.output import human_size, result_json, result_line
from onecopy_cli.upload import FileResult, Outcome, Uploader

if TYPE_CHECKING:
    from collections.abc import Sequence

MAX_PARALLEL = 32

EXAMPLES = """\
examples:
  onecopy upload report.pdf             upload one file
  onecopy upload photos/*.jpg -j 8      eight at a time
  onecopy upload --json *.csv | jq .    machine-readable, one object per line

Each file prints one line: stored (new content), duplicate (the content was already stored;
nothing new kept) or rejected (the bytes did not match what was declared), then its SHA-256,
size, name and upload id.

exit status: 0 if every file was stored or a duplicate, 1 otherwise, 2 for usage errors.
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
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    files: list[str] = args.files
    console = ctx.console
    cancel = threading.Event()
    show_progress = console.interactive and not args.no_progress
    progress = console.start_progress(len(files), _total_size(files)) if show_progress else None
    uploader = Uploader(
        ctx.client(pool_size=args.parallel),
        timeout=args.timeout,
        progress=progress,
        cancel=cancel,
    )
    results: list[FileResult] = []
    with ThreadPoolExecutor(max_workers=min(args.parallel, len(files))) as pool:
        futures = [pool.submit(uploader.upload, path) for path in files]
        try:
            for future in as_completed(futures):
                result = future.result()
                results.append(result)
                report(result, ctx, as_json=args.json)
        except KeyboardInterrupt:
            # Workers notice at their next chunk or poll; leaving the `with` waits for them.
            cancel.set()
            pool.shutdown(wait=False, cancel_futures=True)
            console.stop_progress()
            console.error("interrupted")
            return EXIT_INTERRUPTED
    console.stop_progress()
    if show_progress and len(files) > 1 and not args.json:
        console.note(summary(results))
    return EXIT_OK if all(result.ok for result in results) else EXIT_FAILED


def report(result: FileResult, ctx: Context, *, as_json: bool) -> None:
    console = ctx.console
    if as_json:
        console.result(result_json(result))
    elif result.outcome is not Outcome.FAILED:
        console.result(result_line(result, color=ctx.color))
    if result.error is None:
        return
    if result.unreachable:
        console.error(result.error, once=True)
    else:
        console.error(f"{result.path}: {result.error}")


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
