"""`onecopy info ID`: what is stored for an upload id or a content's SHA-256."""

from __future__ import annotations

import argparse
import json
from typing import Any

from onecopy_cli import argtypes
from onecopy_cli.context import EXIT_OK, Context
from onecopy_cli.output import metadata_view


def register(subcommands: Any, common: argparse.ArgumentParser) -> None:
    parser = subcommands.add_parser(
        "info",
        parents=[common],
        help="show what is stored for an upload id or a SHA-256",
        description="Show the metadata of a stored upload (by its upload id) or of a content "
        "you hold (by its SHA-256): name, size, type, hash, times.",
        epilog="exit status: 0 when found; 1 when nothing is stored under ID (a pending or "
        "rejected upload has nothing stored); 2 for usage errors.",
    )
    parser.add_argument(
        "identifier",
        type=argtypes.upload_or_sha256,
        metavar="ID",
        help="an upload id (32 hex characters) or a SHA-256 (64)",
    )
    parser.add_argument("--json", action="store_true", help="print the API's JSON as is")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    meta = ctx.client().get_metadata(args.identifier)
    if args.json:
        ctx.console.result(json.dumps(meta, ensure_ascii=False))
    else:
        ctx.console.result(metadata_view(meta, color=ctx.color))
    return EXIT_OK
