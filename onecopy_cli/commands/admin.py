"""`onecopy admin reconcile` recounts the counters server-side; `admin redrive` empties the DLQ.

The recount runs in the ReconcileFunction Lambda (it scans the tables where they live); this
command invokes it synchronously and shows its report.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from onecopy_cli.context import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Context
from onecopy_cli.lambda_client import DEFAULT_LOCAL_ENDPOINT
from onecopy_cli.output import reconcile_view
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


def register(subcommands: Any, common: argparse.ArgumentParser) -> None:
    admin = subcommands.add_parser(
        "admin",
        parents=[common],
        help="operator commands (reconcile, redrive)",
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
