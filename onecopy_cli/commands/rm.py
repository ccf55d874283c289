"""`onecopy rm ID...`: delete uploads (DELETE /uploads/{id}); a pending one is aborted instead."""

from __future__ import annotations

import argparse
from typing import Any

from onecopy_cli import argtypes
from onecopy_cli.api import Api, ApiError, Unreachable
from onecopy_cli.context import EXIT_FAILED, EXIT_OK, Context

EPILOG = """\
examples:
  onecopy rm 3f2a...c9                  delete one upload
  onecopy ls --status rejected --json | jq -r '.[].upload_id' | xargs -r onecopy rm

Each id prints one line:
  deleted  ID   the upload is gone: `ls` and `status` no longer know it.
  aborted  ID   it was pending: it will never be stored, and stays listed as rejected
                (reason "aborted"); `onecopy rm ID` again deletes it.
  removed  ID   the API accepted the removal, but which of the two could not be checked.
A failure is printed on stderr and the other ids are still removed: an id that is unknown
(or not yours, or already deleted) answers 404; a pending upload whose bytes are being
stored at this very moment answers 409: try again in a few seconds.

exit status: 0 when every id was removed; 1 when any failed; 2 for usage errors; 3 when not
signed in.
"""


def register(subcommands: Any, common: argparse.ArgumentParser) -> None:
    parser = subcommands.add_parser(
        "rm",
        parents=[common],
        help="delete uploads (a pending one is aborted)",
        description="Delete uploads of yours by their ids; a pending upload is aborted instead.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "upload_ids",
        nargs="+",
        type=argtypes.upload_id,
        metavar="ID",
        help="upload ids, as printed by `onecopy upload` and `onecopy ls`",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    console = ctx.console
    failed = 0
    # Once each: a pending id given twice would be aborted, then deleted.
    for upload_id in dict.fromkeys(args.upload_ids):
        try:
            client.delete_upload(upload_id)
        except ApiError as exc:
            # The API answered for this id alone (404, 409, ...): go on with the others. A lost
            # sign-in or an unreachable API stops the run in main(), as for every command.
            console.error(f"{upload_id}: {exc}")
            failed += 1
            continue
        console.result(f"{_what_happened(client, upload_id)}  {upload_id}")
    return EXIT_FAILED if failed else EXIT_OK


def _what_happened(client: Api, upload_id: str) -> str:
    """Ask after the fact, so that the answer holds even if the upload changed meanwhile: an
    aborted upload is still there (REJECTED, reason "aborted"), a deleted one is gone."""
    try:
        view = client.get_upload(upload_id)
    except ApiError as exc:
        return "deleted" if exc.status == 404 else "removed"
    except Unreachable:
        return "removed"  # the DELETE was answered 204: removed it is, one way or the other
    if view.get("status") == "REJECTED" and view.get("reason") == "aborted":
        return "aborted"
    return "removed"
