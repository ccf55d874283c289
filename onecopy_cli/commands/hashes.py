"""`onecopy hashes`: every stored content, walking all pages of GET /admin/hashes."""

from __future__ import annotations

import argparse
import json
from typing import Any

from onecopy_cli import argtypes
from onecopy_cli.api import ApiError
from onecopy_cli.context import EXIT_OK, Context
from onecopy_cli.output import HASHES_HEADER, hash_row, human_size

MAX_PAGE = 1000  # the API's limit

EPILOG = """\
The list is printed as the pages arrive, so it starts at once however long it is.

--json prints JSON Lines: one object per content and line, as the API gives it
({"sha256", "size", "content_type", "upload_count", "created_at"}), like `upload --json`.
`onecopy hashes --json | jq -s .` makes one array of it.

exit status: 0 ok; 1 on failure ("admins only" for other users); 3 when not signed in.
"""


def register(subcommands: Any, common: argparse.ArgumentParser) -> None:
    parser = subcommands.add_parser(
        "hashes",
        parents=[common],
        help="list every stored content (all pages; admins only)",
        description="List every distinct content stored, whoever holds it: SHA-256, size, how\n"
        "many uploads refer to it, when it was first stored, its type. For members of the\n"
        "admins group.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per line instead of a table"
    )
    parser.add_argument(
        "--limit",
        type=argtypes.count(MAX_PAGE),
        default=MAX_PAGE,
        metavar="N",
        help=f"ask for N contents per page (1-{MAX_PAGE}; default: {MAX_PAGE})",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    console = ctx.console
    # The header waits for the first page: a refusal (403, 401) leaves stdout empty.
    header_due = not args.json
    count = total = 0
    token: str | None = None
    seen: set[str] = set()
    while True:
        page = client.list_hashes(limit=args.limit, token=token)
        if header_due:
            console.result(HASHES_HEADER)
            header_due = False
        for item in page.get("items") or []:
            console.result(json.dumps(item, ensure_ascii=False) if args.json else hash_row(item))
            count += 1
            total += item.get("size") or 0
        token = page.get("last_evaluated_key")
        if not token:
            break
        if token in seen:
            # A token handed out twice would walk in a circle for ever.
            raise ApiError(200, "the API returned the same page token twice; stopping")
        seen.add(token)
    if not args.json and console.interactive:
        console.note(f"{count} contents, {human_size(total)}")
    return EXIT_OK
