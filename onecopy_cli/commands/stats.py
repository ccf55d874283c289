"""`onecopy stats`: how much the service stores, and how much deduplication saved."""

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
        help="show storage and deduplication totals",
        description="Show the service's totals: distinct contents stored, uploads, duplicates "
        "avoided, bytes stored and bytes that did not need storing again.",
    )
    parser.add_argument("--json", action="store_true", help="print the API's JSON as is")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    stats = ctx.client().get_stats()
    ctx.console.result(json.dumps(stats) if args.json else stats_view(stats))
    return EXIT_OK
