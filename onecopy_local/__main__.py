"""`make run` / `onecopy-local`: the API gateway (with the template's JWT authorizer, CORS,
throttling and access log), the AWS emulator (enforcing IAM; its Cognito holds the user pool and
the local users, its CloudWatch SQS's queue metrics, with --kms its KMS the key of every resource),
every function of template.yaml in an environment of its own, and a Lambda Invoke endpoint, on
127.0.0.1."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from onecopy_local._http import LOGGER
from onecopy_local.lambda_runtime import FunctionError
from onecopy_local.resources import parameter_default, parameter_minimum
from onecopy_local.stack import (
    DEFAULT_API_CONCURRENCY,
    DEFAULT_API_PORT,
    DEFAULT_EMULATOR_PORT,
    DEFAULT_LAMBDA_PORT,
    DEFAULT_METRICS_INTERVAL,
    DEFAULT_PASSWORD,
    DEFAULT_VISIBILITY_TIMEOUT,
    DEFAULT_WORKERS,
    INVOKABLE_FUNCTIONS,
    LOCAL_USERS,
    REGION,
    WORKER_FUNCTION,
    LocalStack,
)
from onecopy_local.worker import BATCH_SIZE

READY = "Ready. Press Ctrl-C to stop."
PASSWORD_ENV = "ONECOPY_LOCAL_PASSWORD"  # noqa: S105 (a variable name)
NO_IAM_WARNING = (
    "WARNING: IAM enforcement is OFF (--no-iam): every function may make any AWS call, so a "
    "grant missing from template.yaml will not show here and will fail once deployed."
)


def short_grace_warning(seconds: int) -> str | None:
    """What to say when the grace is shorter than `sam deploy` accepts (tests shorten it)."""
    minimum = parameter_minimum("CollectionGracePeriodSeconds")
    if seconds >= minimum:
        return None
    return (
        f"WARNING: --collection-grace {seconds} is below the {minimum} s that sam deploy accepts "
        "(CollectionGracePeriodSeconds' MinValue): fine for tests, but a worker that stalls "
        "longer than the grace may land a copy after its content was collected (README, "
        "Correctness)."
    )


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("a port is 0..65535 (0 picks a free one)")
    return port


def _rate(value: str) -> float:
    rate = float(value)
    if not rate > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return rate


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _non_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return number


def _seconds(value: str) -> float:
    seconds = float(value)
    if not seconds >= 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return seconds


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return number


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="onecopy-local",
        description="Run onecopy locally: the HTTP API (with template.yaml's authorizer, "
        "throttling and access log), an AWS emulator (moto behind a proxy that enforces what S3 "
        "enforces and each function's IAM policy, KMS key grants included; SQS's metrics are "
        "published into its CloudWatch), the worker, and a Lambda Invoke endpoint for "
        f"{', '.join(INVOKABLE_FUNCTIONS)} (what `sam local start-lambda` serves). "
        "State lives in memory.",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=_port(os.environ.get("ONECOPY_PORT", str(DEFAULT_API_PORT))),
        help="API port (env ONECOPY_PORT; default %(default)s; 0 picks a free one)",
    )
    parser.add_argument(
        "--emulator-port",
        type=_port,
        default=_port(os.environ.get("ONECOPY_EMULATOR_PORT", str(DEFAULT_EMULATOR_PORT))),
        help="emulator port (env ONECOPY_EMULATOR_PORT; default %(default)s; 0 picks a free one)",
    )
    parser.add_argument(
        "--lambda-port",
        type=_port,
        default=_port(os.environ.get("ONECOPY_LAMBDA_PORT", str(DEFAULT_LAMBDA_PORT))),
        help="Lambda Invoke endpoint port, for boto3's lambda client and `onecopy admin "
        "reconcile` (env ONECOPY_LAMBDA_PORT; default %(default)s; 0 picks a free one)",
    )
    parser.add_argument(
        "--workers",
        type=_count,
        default=DEFAULT_WORKERS,
        help="concurrent queue pollers, each one worker environment (default %(default)s)",
    )
    parser.add_argument(
        "--api-concurrency",
        type=_positive,
        default=DEFAULT_API_CONCURRENCY,
        help="the most execution environments of the API's functions at once: overlapping "
        "requests each get one, started on demand as Lambda does (default %(default)s)",
    )
    parser.add_argument(
        "--visibility-timeout",
        type=_count,
        default=DEFAULT_VISIBILITY_TIMEOUT,
        help="the ingest queue's visibility timeout in seconds, i.e. how soon a failed message "
        "is retried (default %(default)s; AWS uses template.yaml's value)",
    )
    parser.add_argument(
        "--duplicate-deliveries",
        action="store_true",
        help="deliver every S3 event message twice, as SQS's at-least-once delivery may: a "
        "poller sends a marked copy of each S3 event message it receives back to the queue "
        "before invoking the worker (the copy is not copied again)",
    )
    parser.add_argument(
        "--no-iam",
        action="store_true",
        help="do not enforce IAM: the emulator then authorizes every call of every function "
        "(an escape hatch for experiments; by default each function may do only what its "
        "policies in template.yaml grant)",
    )
    parser.add_argument(
        "--throttle-rate",
        type=_rate,
        default=float(parameter_default("ThrottlingRateLimit")),
        help="requests per second the API accepts, all callers together (template parameter "
        "ThrottlingRateLimit; default %(default)s); beyond it and the burst: 429",
    )
    parser.add_argument(
        "--throttle-burst",
        type=_positive,
        default=int(parameter_default("ThrottlingBurstLimit")),
        help="requests the API accepts in a burst above the rate (template parameter "
        "ThrottlingBurstLimit; default %(default)s)",
    )
    parser.add_argument(
        "--max-pending-uploads",
        type=_positive,
        default=int(parameter_default("MaxPendingUploads")),
        help="uploads one owner may have waiting for their bytes at once (template parameter "
        "MaxPendingUploads; default %(default)s); beyond it POST /uploads answers 429",
    )
    parser.add_argument(
        "--collection-grace",
        type=_non_negative,
        default=int(parameter_default("CollectionGracePeriodSeconds")),
        metavar="SECONDS",
        help="how long an unreferenced content is kept before the collector removes it "
        "(template parameter CollectionGracePeriodSeconds; default %(default)s). Less than the "
        "template's minimum "
        f"({parameter_minimum('CollectionGracePeriodSeconds')}) is for tests: sam deploy "
        "refuses it, and the stack warns",
    )
    parser.add_argument(
        "--collector-schedule",
        default=str(parameter_default("CollectorSchedule")),
        metavar="EXPR",
        help="how often the collector runs, as rate(N minutes|hours|days) (template parameter "
        "CollectorSchedule; default %(default)s); invoke CollectorFunction to run it now",
    )
    parser.add_argument(
        "--kms",
        action="store_true",
        help="encrypt with a customer-managed KMS key, as template parameter KmsKeyArn does on "
        "AWS: the stack creates a symmetric key in the emulator and encrypts the bucket (SSE-KMS "
        "with a Bucket Key), the tables and both queues with it; the functions' policies get "
        "their EncryptionKey statements, and each caller needs kms:Decrypt / "
        "kms:GenerateDataKey on the key wherever AWS asks for them (default: AWS's own keys)",
    )
    parser.add_argument(
        "--metrics-interval",
        type=_seconds,
        default=DEFAULT_METRICS_INTERVAL,
        metavar="SECONDS",
        help="how often SQS's metrics of the ingest queue and the dead-letter queue "
        "(ApproximateAgeOfOldestMessage, ApproximateNumberOfMessagesVisible and -NotVisible, "
        "namespace AWS/SQS) are put into the emulator's CloudWatch, where GET /admin/health "
        "reads them (default %(default)g; AWS publishes every 60; 0: not at all)",
    )
    parser.add_argument(
        "--access-log",
        type=Path,
        metavar="PATH",
        help="append the API's access log to this file, one line per request rendered from the "
        "HttpApi's AccessLogSettings.Format in template.yaml (default: this process's log, "
        "stderr)",
    )
    parser.add_argument(
        "--stop-on-eof",
        action="store_true",
        help="also stop when stdin closes (for supervisors and test fixtures)",
    )
    return parser.parse_args(argv)


def banner(stack: LocalStack) -> str:
    r = stack.resources
    pids = ", ".join(str(pid) for pid in stack.worker_pids) or "none"
    rows = [
        ("API", stack.api_url),
        ("Lambda endpoint", f"{stack.lambda_url}  ({', '.join(INVOKABLE_FUNCTIONS)})"),
        (
            "Emulator endpoint",
            f"{stack.endpoint_url}  (AWS_ENDPOINT_URL; operator credentials testing/testing, "
            f"{REGION})",
        ),
        (
            "IAM",
            "enforced (policies from template.yaml)"
            if stack.enforce_iam
            else "OFF (--no-iam): every call of every function is allowed",
        ),
        *_function_rows(stack),
        ("User pool", f"{r.user_pool_id}  (issuer {r.issuer})"),
        (
            "App client",
            f"{r.user_pool_client_id}  (USER_PASSWORD_AUTH at {stack.cognito_endpoint})",
        ),
        ("Users", ", ".join(_user(name, groups) for name, groups in LOCAL_USERS.items())),
        (
            "Password",
            f"{stack.password}  (every local user; set ${PASSWORD_ENV} to choose another)",
        ),
        (
            "Sign in",
            f"onecopy --api {stack.api_url} login  (or open {stack.api_url}/ in a browser)",
        ),
        (
            "Throttling",
            f"{stack.throttle.rate:g} requests/s, bursts of {stack.throttle.burst} "
            "(--throttle-rate, --throttle-burst)",
        ),
        (
            "KMS key",
            f"{r.kms_key_arn}  (KmsKeyArn: bucket, tables and queues; --kms)"
            if r.kms_key_arn
            else "none  (AWS-owned and AWS-managed keys; --kms for a customer-managed one)",
        ),
        (
            "Queue metrics",
            f"AWS/SQS every {stack.metrics_interval:g} s into the emulator's CloudWatch "
            "(--metrics-interval; AWS: every 60 s)"
            if stack.metrics_interval
            else "off (--metrics-interval 0): GET /admin/health knows no oldest message age",
        ),
        (
            "Access log",
            f"{stack.access_log_path}  (--access-log)"
            if stack.access_log_path is not None
            else "stderr, one JSON line per request (--access-log PATH for a file)",
        ),
        ("Bucket", r.bucket),
        ("Queue", r.queue_url),
        ("Dead-letter queue", r.dlq_url),
        ("Uploads table", r.uploads_table),
        ("Contents table", r.contents_table),
        ("Stats table", r.stats_table),
        ("Holdings table", r.holdings_table),
        ("Workers", f"{stack.workers} pollers, batches of up to {BATCH_SIZE} (pids {pids})"),
        (
            "Deliveries",
            "every S3 event twice (--duplicate-deliveries)"
            if stack.duplicate_deliveries
            else "once each, as SQS usually does",
        ),
        (
            "Visibility timeout",
            f"{stack.visibility_timeout} s locally, so retries come quickly; AWS uses "
            f"{stack.template_visibility_timeout} s from template.yaml",
        ),
    ]
    lines = ["onecopy local stack (in memory, 127.0.0.1 only; state is lost on exit)"]
    lines += [f"  {label:<20}{value}" for label, value in rows]
    return "\n".join(lines)


def _user(name: str, groups: tuple[str, ...]) -> str:
    return f"{name} ({', '.join(groups)})" if groups else name


def _function_rows(stack: LocalStack) -> list[tuple[str, str]]:
    """One row per function: its identity's access key, then what runs it and how it is reached."""
    rows = []
    for logical_id, pool in stack.functions.items():
        principal = stack.principals[logical_id]
        pids = ", ".join(str(pid) for pid in pool.pids)
        reached = [r.key for r in stack.routes if r.function == logical_id]
        if logical_id in INVOKABLE_FUNCTIONS:
            reached.append("Lambda endpoint")
        if logical_id == WORKER_FUNCTION:
            reached.append("the ingest queue's pollers")
        scaling = f"; up to {pool.size} on demand" if pool.size > pool.warm else ""
        rows.append(
            (
                logical_id,
                f"{principal.access_key}  (role {logical_id}Role; process {pids}{scaling}; "
                f"{', '.join(reached)})",
            )
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger(LOGGER).setLevel(logging.INFO)
    stop = threading.Event()

    def on_signal(signum: int, _: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting for a clean shutdown
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    stack = LocalStack(
        port=args.port,
        emulator_port=args.emulator_port,
        workers=args.workers,
        api_concurrency=args.api_concurrency,
        visibility_timeout=args.visibility_timeout,
        lambda_port=args.lambda_port,
        duplicate_deliveries=args.duplicate_deliveries,
        enforce_iam=not args.no_iam,
        password=os.environ.get(PASSWORD_ENV) or DEFAULT_PASSWORD,
        throttle_rate=args.throttle_rate,
        throttle_burst=args.throttle_burst,
        max_pending_uploads=args.max_pending_uploads,
        collection_grace_seconds=args.collection_grace,
        collector_schedule=args.collector_schedule,
        kms=args.kms,
        metrics_interval=args.metrics_interval,
        access_log=args.access_log,
    )
    if args.no_iam:
        print(NO_IAM_WARNING, file=sys.stderr, flush=True)
    if (warning := short_grace_warning(args.collection_grace)) is not None:
        print(warning, file=sys.stderr, flush=True)
    try:
        stack.start()
    except (OSError, FunctionError, ValueError) as exc:
        print(f"onecopy-local: {exc}", file=sys.stderr)
        return 1
    if args.stop_on_eof:
        threading.Thread(target=_stop_on_eof, args=(stop,), daemon=True).start()
    print(banner(stack), flush=True)
    print(READY, flush=True)
    while not stop.wait(0.5):
        pass
    print("Stopping...", flush=True)
    stack.close()
    print("Stopped.", flush=True)
    return 0


def _stop_on_eof(stop: threading.Event) -> None:
    # The raw descriptor: a daemon thread blocked in sys.stdin's buffered reader holds its lock
    # and makes interpreter shutdown abort.
    while os.read(0, 1024):
        pass
    stop.set()


if __name__ == "__main__":
    sys.exit(main())
