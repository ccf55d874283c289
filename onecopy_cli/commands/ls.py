"""`onecopy ls`: your uploads, newest first, walking the pages of GET /uploads."""

from __future__ import annotations

import argparse
import json
from typing import Any

from onecopy_cli import argtypes
from onecopy_cli.api import ApiError
from onecopy_cli.context import EXIT_OK, Context
from onecopy_cli.output import UPLOADS_HEADER, upload_row

MAX_PAGE = 1000  # the API's limit
STATUSES = ("PENDING", "STORED", "DUPLICATE", "REJECTED")

EPILOG = """\
examples:
  onecopy ls                          every upload of yours, newest first
  onecopy ls --status pending         those still waiting for their bytes
  onecopy ls --prefix report --limit 5
                                      the five newest whose filename starts with "report"
  onecopy ls --json | jq -r '.[].upload_id'

Each upload prints one line: its id, status, size, when it was created (UTC) and its
filename. The list is printed as the pages arrive. --json prints one JSON array of the
API's views of the uploads (the fields of `onecopy status --json`).

exit status: 0 ok; 1 on failure; 2 for usage errors; 3 when not signed in.
"""


def register(subcommands: Any, common: argparse.ArgumentParser) -> None:
    parser = subcommands.add_parser(
        "ls",
        parents=[common],
        help="list your uploads, newest first",
        description="List your uploads, newest first: pending, stored, duplicate and rejected.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--status",
        type=str.upper,
        choices=STATUSES,
        metavar="STATUS",
        help="only the uploads in this state: pending, stored, duplicate or rejected",
    )
    parser.add_argument(
        "--prefix",
        type=argtypes.name_prefix,
        metavar="NAME_PREFIX",
        help="only the uploads whose filename starts with this (case matters)",
    )
    parser.add_argument(
        "--limit",
        type=argtypes.positive,
        metavar="N",
        help="show at most N uploads, the newest (default: all)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON array of the uploads instead"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    console = ctx.console
    wanted: int | None = args.limit
    page_size = min(wanted, MAX_PAGE) if wanted is not None else MAX_PAGE
    # The header waits for the first page: a refusal (401, 403) leaves stdout empty.
    header_due = not args.json
    collected: list[dict[str, Any]] = []  # for --json: one array, printed whole or not at all
    count = 0
    token: str | None = None
    seen: set[str] = set()
    while wanted is None or count < wanted:
        page = client.list_uploads(
            limit=page_size, status=args.status, prefix=args.prefix, token=token
        )
        if header_due:
            console.result(UPLOADS_HEADER)
            header_due = False
        items: list[dict[str, Any]] = list(page.get("items") or [])
        if wanted is not None:
            items = items[: wanted - count]
        count += len(items)
        if args.json:
            collected += items
        else:
            for item in items:
                console.result(upload_row(item, color=ctx.color))
        # A page may hold fewer than `limit` items (or none) while more follow: only the
        # absence of a token ends the list.
        token = page.get("last_evaluated_key")
        if not token:
            break
        if token in seen:
            # A token handed out twice would walk in a circle for ever.
            raise ApiError(200, "the API returned the same page token twice; stopping")
        seen.add(token)
    if args.json:
        console.result(json.dumps(collected, ensure_ascii=False))
    elif console.interactive:
        console.note(f"{count} upload{'' if count == 1 else 's'}")
    return EXIT_OK
