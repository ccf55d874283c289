"""`onecopy stats`: how much the service stores, and how much deduplication saved (admins)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from onecopy_cli.context import EXIT_OK, Context
from onecopy_cli.output import stats_view


def register(subcommands: Any, common: argparse.ArgumentParser) -> None:
    parser = subcommands.add_parser(
        "stats",
        parents=[common],
        help="show storage and deduplication totals (admins only)",
        description="Show the service's totals, across all users: distinct contents stored, "
        "uploads, duplicates avoided (a content matched for another user counts too), bytes "
        "stored and bytes that did not need storing again. For members of the admins group.",
        epilog='exit status: 0 ok; 1 on failure ("admins only" for other users); 3 when not '
        "signed in.",
    )
    parser.add_argument("--json", action="store_true", help="print the API's JSON as is")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    stats = ctx.client().get_stats()
    ctx.console.result(json.dumps(stats) if args.json else stats_view(stats))
    return EXIT_OK
