"""`onecopy download ID`: fetch stored bytes into a file, checking their SHA-256."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from onecopy_cli import argtypes
from onecopy_cli.console import Progress
from onecopy_cli.context import EXIT_OK, Context
from onecopy_cli.download import download
from onecopy_cli.output import human_size

EPILOG = """\
examples:
  onecopy download 3f2a...c9              save under the upload's own name, here
  onecopy download 3f2a...c9 -o out/      ... in out/
  onecopy download <sha256> -o copy.bin   a content you hold, by its hash

The bytes are checked against the SHA-256 the service recorded before the file appears; on a
mismatch nothing is saved. Prints `saved  <sha256>  <size>  <path>`.

exit status: 0 when saved and verified, 1 otherwise, 2 for usage errors.
"""


def register(subcommands: Any, common: argparse.ArgumentParser) -> None:
    parser = subcommands.add_parser(
        "download",
        parents=[common],
        help="download a stored file and verify its SHA-256",
        description="Download the bytes stored for an upload id or a SHA-256 you hold.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "identifier",
        type=argtypes.upload_or_sha256,
        metavar="ID",
        help="an upload id (32 hex characters) or a SHA-256 (64)",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="PATH",
        help="the file to write, or a directory to write into "
        "(default: the upload's filename in the current directory)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    parser.add_argument(
        "--no-progress", action="store_true", help="never draw the progress bar on stderr"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    console = ctx.console
    bar: list[Progress] = []

    def on_start(size: int) -> None:
        if console.interactive and not args.no_progress:
            bar.append(console.start_progress(1, size))

    def on_chunk(nbytes: int) -> None:
        if bar:
            bar[0].advance(nbytes)

    try:
        saved = download(
            ctx.client(),
            args.identifier,
            output=args.output,
            force=args.force,
            on_start=on_start,
            on_chunk=on_chunk,
        )
    finally:
        console.stop_progress()
    console.result(f"saved  {saved.sha256}  {human_size(saved.size):>9}  {saved.path}")
    return EXIT_OK
