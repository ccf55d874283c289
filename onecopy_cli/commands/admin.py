"""`onecopy admin reconcile` recounts the counters server-side; `admin redrive` empties the DLQ;
`admin erase-owner` deletes every upload of one owner through the API; `admin health` shows
whether ingest flows and the background jobs ran, and exits 1 when something needs attention.

The recount runs in the ReconcileFunction Lambda (it scans the tables where they live); this
command invokes it synchronously and shows its report.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from onecopy_cli import argtypes
from onecopy_cli.api import ApiError
from onecopy_cli.context import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Context
from onecopy_cli.lambda_client import DEFAULT_LOCAL_ENDPOINT
from onecopy_cli.output import health_view, reconcile_view
from onecopy_cli.redrive import DEFAULT_LOCAL_EMULATOR, local_queue_urls, redrive

EMULATOR_ENV = "ONECOPY_EMULATOR_ENDPOINT"

LAMBDA_ENDPOINT_ENV = "ONECOPY_LAMBDA_ENDPOINT"
DEFAULT_FUNCTION = "ReconcileFunction"
STACK_OUTPUT = "ReconcileFunctionName"

RECONCILE_EPILOG = f"""\
where the function is:
  (default)                  {DEFAULT_FUNCTION} at ${LAMBDA_ENDPOINT_ENV}, else at
                             {DEFAULT_LOCAL_ENDPOINT} (the local stack, like
                             `sam local start-lambda`)
  --lambda-endpoint URL      another Lambda endpoint
  --stack NAME               the deployed stack's {STACK_OUTPUT} output, invoked in AWS
                             with your usual AWS configuration (profile, region)

A repair is applied only when two consecutive recounts agree (no upload completing meanwhile);
otherwise nothing changes and the report says so: run it again when uploads are quiet.

exit status: 0 when the counters are clean or were repaired, 1 when drift remains or the
invocation failed, 2 for usage errors.
"""

_SUB = re.compile(r"[^/\s]{1,255}")  # as the API takes it
ERASE_PAUSE = 1.0  # seconds between calls that changed nothing while uploads are being stored
ERASE_EPILOG = """\
example:
  onecopy admin erase-owner 6f1c0a52-3d1e-4b8e-9a57-1f0c2d3e4b5a

SUB is the owner's `sub` claim (`onecopy whoami` shows it to that user), not a user name.
Each call to the API erases for a bounded time and says what it did; the command calls
again until nothing is left, printing the running totals on stderr after each call:
uploads deleted, pending uploads aborted, and uploads whose bytes are being stored right
now (they are deleted by a later call, once stored). At the end it prints one line on
stdout (--json: one object with the totals).

Ctrl-C stops between calls or during one; nothing is lost: run the same command again and it
goes on where it stopped.

exit status: 0 when every upload of the owner is gone; 1 on failure ("admins only" for other
users), or when nothing changed for --timeout seconds; 3 when not signed in; 130 when
interrupted.
"""

HEALTH_EPILOG = """\
example (cron, or any script):
  onecopy admin health --json > health.json || echo "onecopy needs attention"

exit status: 0 when nothing needs attention; 1 when something does (the view lists it), or
on failure ("admins only" for other users; the message is on stderr and stdout stays empty);
3 when not signed in.
"""


def register(subcommands: Any, common: argparse.ArgumentParser) -> None:
    admin = subcommands.add_parser(
        "admin",
        parents=[common],
        help="operator commands (health, reconcile, redrive, erase-owner)",
        description="Operator commands.",
    )
    commands = admin.add_subparsers(dest="admin_command", metavar="COMMAND", required=True)
    parser = commands.add_parser(
        "reconcile",
        parents=[common],
        help="recount the dedup counters from the tables; --repair corrects drift",
        description="Recount files, uploads, duplicates and bytes from the uploads and\n"
        "contents tables, and compare them with the counters the API reports.",
        epilog=RECONCILE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repair", action="store_true", help="correct the drift found")
    parser.add_argument("--json", action="store_true", help="print the function's JSON as is")
    parser.add_argument(
        "--function-name",
        metavar="NAME",
        help=f"the function to invoke (default: {DEFAULT_FUNCTION})",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--lambda-endpoint",
        metavar="URL",
        help=f"the Lambda endpoint (default: ${LAMBDA_ENDPOINT_ENV}, "
        f"else {DEFAULT_LOCAL_ENDPOINT})",
    )
    where.add_argument(
        "--stack", metavar="NAME", help=f"find the function in this stack's {STACK_OUTPUT} output"
    )
    parser.add_argument("--region", metavar="REGION", help="the AWS region (default: boto3's)")
    parser.set_defaults(run=run_reconcile)

    redrive = commands.add_parser(
        "redrive",
        parents=[common],
        help="move dead-lettered S3 events back to the ingest queue",
        description="Move the messages the worker failed five times from the dead-letter queue\n"
        "back to the ingest queue (after fixing what made them fail).",
        epilog=f"""\
where the queues are:
  (default)               the local stack's, at ${EMULATOR_ENV}, else {DEFAULT_LOCAL_EMULATOR}
  --endpoint-url URL      another emulator
  --stack NAME            the deployed stack's DeadLetterQueueUrl and IngestQueueUrl outputs
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = redrive.add_mutually_exclusive_group()
    where.add_argument("--endpoint-url", metavar="URL", help="the SQS endpoint of a local stack")
    where.add_argument("--stack", metavar="NAME", help="a deployed stack's queues")
    redrive.add_argument("--region", metavar="REGION", help="the AWS region (default: boto3's)")
    redrive.add_argument("--limit", type=int, metavar="N", help="move at most N messages")
    redrive.set_defaults(run=run_redrive)

    erase = commands.add_parser(
        "erase-owner",
        parents=[common],
        help="delete every upload of one owner (admins only)",
        description="Delete every upload of one owner, pending ones included, through the API.\n"
        "For members of the admins group.",
        epilog=ERASE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    erase.add_argument("sub", type=_sub, metavar="SUB", help="the owner: their token's sub")
    erase.add_argument(
        "--json", action="store_true", help="print the totals as one JSON object at the end"
    )
    erase.add_argument(
        "--timeout",
        type=argtypes.seconds,
        default=300.0,
        metavar="SECONDS",
        help="give up when nothing has changed for this long (default: 300)",
    )
    erase.set_defaults(run=run_erase_owner)

    health = commands.add_parser(
        "health",
        parents=[common],
        help="queues, dead letters and the background jobs (admins only)",
        description="Show the service's health: the ingest queue (waiting, in flight, the oldest\n"
        "message's age), the dead-letter queue, the last reconciliation and the collector's\n"
        "backlog and last run. What needs an operator comes first, each item naming the\n"
        "CloudWatch alarm it matches. For members of the admins group.",
        epilog=HEALTH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    health.add_argument("--json", action="store_true", help="print the API's JSON as is")
    health.set_defaults(run=run_health)


def run_redrive(args: argparse.Namespace, ctx: Context) -> int:
    if args.limit is not None and args.limit < 1:
        ctx.console.error("--limit must be at least 1")
        return EXIT_USAGE
    if args.stack:
        invoker = ctx.make_invoker(endpoint_url=None, region=args.region)
        dlq_url = invoker.stack_output(args.stack, "DeadLetterQueueUrl")
        queue_url = invoker.stack_output(args.stack, "IngestQueueUrl")
        sqs = invoker.sqs(None)
    else:
        endpoint = args.endpoint_url or ctx.environ.get(EMULATOR_ENV) or DEFAULT_LOCAL_EMULATOR
        invoker = ctx.make_invoker(endpoint_url=endpoint, region=args.region)
        sqs = invoker.sqs(endpoint)
        dlq_url, queue_url = local_queue_urls(sqs)
    moved = redrive(sqs, dlq_url, queue_url, limit=args.limit)
    ctx.console.result(f"moved {moved} message{'s' if moved != 1 else ''} back to {queue_url}")
    return EXIT_OK


def run_reconcile(args: argparse.Namespace, ctx: Context) -> int:
    console = ctx.console
    if args.stack and args.function_name:
        console.error("--function-name and --stack both name the function: give one")
        return EXIT_USAGE
    if args.stack:
        invoker = ctx.make_invoker(endpoint_url=None, region=args.region)
        function_name = invoker.stack_output(args.stack, STACK_OUTPUT)
    else:
        endpoint = (
            args.lambda_endpoint or ctx.environ.get(LAMBDA_ENDPOINT_ENV) or DEFAULT_LOCAL_ENDPOINT
        )
        invoker = ctx.make_invoker(endpoint_url=endpoint, region=args.region)
        function_name = args.function_name or DEFAULT_FUNCTION
    report = invoker.invoke(function_name, {"repair": args.repair})
    if not isinstance(report, dict) or "clean" not in report:
        console.error(f"{function_name} did not answer with a reconciliation report: {report!r}")
        return EXIT_FAILED
    if args.json:
        console.result(json.dumps(report))
    else:
        console.result(reconcile_view(report))
    if report.get("clean") or report.get("repaired"):
        return EXIT_OK
    if args.repair:
        console.error(
            "not repaired: the recounts disagreed (uploads were completing); "
            "run it again when uploads are quiet"
        )
    else:
        console.error("drift found; `onecopy admin reconcile --repair` corrects it")
    return EXIT_FAILED


def run_health(args: argparse.Namespace, ctx: Context) -> int:
    health = ctx.client().get_health()
    ok = health.get("ok")
    if not isinstance(ok, bool):
        raise ApiError(200, f"unexpected answer from the API: ok={ok!r}")
    if args.json:
        ctx.console.result(json.dumps(health))
    else:
        ctx.console.result(health_view(health, now=datetime.now(UTC), color=ctx.color))
    return EXIT_OK if ok else EXIT_FAILED


def _sub(text: str) -> str:
    value = text.strip()
    if not _SUB.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"not an owner's sub (1 to 255 characters, no space or '/'): {text!r}"
        )
    return value


def run_erase_owner(args: argparse.Namespace, ctx: Context) -> int:
    console = ctx.console
    client = ctx.client()
    deleted = aborted = 0
    last_change = time.monotonic()
    try:
        while True:
            answer = client.erase_owner(args.sub)
            step = (_count(answer, "deleted"), _count(answer, "aborted"))
            waiting = _count(answer, "waiting")
            deleted += step[0]
            aborted += step[1]
            done = answer.get("done") is True
            console.note(
                f"erasing {args.sub}: {deleted} deleted, {aborted} aborted"
                + ("" if done else f", {waiting} being stored")
            )
            if done:
                break
            if any(step):
                last_change = time.monotonic()
                continue
            # Nothing this time: uploads are being stored (they go once stored), so wait a bit.
            if time.monotonic() - last_change >= args.timeout:
                console.error(
                    f"nothing changed for {args.timeout:g} s while {_n(waiting, 'upload')} of "
                    f"{args.sub} {'was' if waiting == 1 else 'were'} being stored: "
                    "run the same command again later"
                )
                return EXIT_FAILED
            time.sleep(ERASE_PAUSE)
    except KeyboardInterrupt:
        console.error(
            f"interrupted after {deleted} deleted and {aborted} aborted: "
            "run the same command again to go on"
        )
        return EXIT_INTERRUPTED
    if args.json:
        # The API's shape, with the totals of every call.
        totals = {"owner": args.sub, "deleted": deleted, "aborted": aborted}
        console.result(json.dumps({**totals, "waiting": 0, "done": True}))
    elif deleted or aborted:
        console.result(
            f"erased {args.sub}: {_n(deleted, 'upload')} deleted, "
            f"{_n(aborted, 'pending upload')} aborted"
        )
    else:
        console.result(
            f"nothing left to erase for {args.sub} (an owner is a sub, as `onecopy whoami` "
            "shows it, not a user name)"
        )
    return EXIT_OK


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _count(answer: dict[str, Any], key: str) -> int:
    value = answer.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ApiError(200, f"unexpected answer from the API: {key}={value!r}")
    return value
