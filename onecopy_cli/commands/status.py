"""`onecopy status UPLOAD_ID`: what became of one upload."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from onecopy_cli import argtypes
from onecopy_cli.context import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Context
from onecopy_cli.output import upload_view
from onecopy_cli.upload import TERMINAL, wait_until_done

UPLOAD_ID = re.compile(r"[0-9a-f]{32}")


def register(subcommands: Any, common: argparse.ArgumentParser) -> None:
    parser = subcommands.add_parser(
        "status",
        parents=[common],
        help="show the state of an upload",
        description="Show the state of an upload: pending, stored, duplicate or rejected.",
        epilog="exit status: 0 when the upload was found (and, with --wait, decided); 1 otherwise.",
    )
    parser.add_argument("upload_id", metavar="UPLOAD_ID", help="as printed by `onecopy upload`")
    parser.add_argument("--json", action="store_true", help="print the API's JSON as is")
    parser.add_argument(
        "--wait", action="store_true", help="wait until the upload is no longer pending"
    )
    parser.add_argument(
        "--timeout",
        type=argtypes.seconds,
        default=300.0,
        metavar="SECONDS",
        help="with --wait: give up after this long (default: 300)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    upload_id = args.upload_id.strip().lower()
    if not UPLOAD_ID.fullmatch(upload_id):
        ctx.console.error(
            f"not an upload id: {args.upload_id!r} (expected 32 hex characters, "
            "as printed by `onecopy upload`)"
        )
        return EXIT_USAGE
    client = ctx.client()
    if args.wait:
        view = wait_until_done(client, upload_id, timeout=args.timeout)
    else:
        view = client.get_upload(upload_id)
    if args.json:
        ctx.console.result(json.dumps(view, ensure_ascii=False))
    else:
        ctx.console.result(upload_view(view, color=ctx.color))
    if args.wait and str(view.get("status", "")).upper() not in TERMINAL:
        ctx.console.error(f"still pending after {args.timeout:g} s")
        return EXIT_FAILED
    return EXIT_OK
