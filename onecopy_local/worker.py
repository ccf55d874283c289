"""Lambda's SQS event source mapping, locally: poll the ingest queue and invoke the worker.

Each poller runs in its own process, as each Lambda execution environment is its own sandbox:
Powertools' batch processor keeps a batch's state on a module-level object, so two invocations
must never share an interpreter. Per batch, as the event source mapping does:

- ReceiveMessage (up to 10, long poll), build the Lambda SQS event, invoke the handler;
- delete the messages not listed in ``batchItemFailures``; if the handler raised, or reported
  an identifier that is not in the batch, delete none;
- leave failures to reappear after the visibility timeout; the queue's redrive policy moves a
  message to the dead-letter queue after its fifth receive.

With ``--duplicate-deliveries`` a poller also exercises SQS's at-least-once delivery on purpose:
before invoking the function it sends a copy of every S3 event message it receives back to the
queue, marked with the ``DUPLICATE_MARKER`` message attribute so that the copy is not copied
again. Every S3 event then reaches the worker (at least) twice, possibly on two pollers at once.

A poller stops when its stdin closes (the stack stopping, or dying) or on SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from onecopy_local._http import LOGGER

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(LOGGER)

READY = "onecopy-local-worker: ready"
BATCH_SIZE = 10
DUPLICATE_MARKER = "onecopy-local-duplicate"
Invoke = Callable[[dict[str, Any]], Any]


def sqs_event(messages: Sequence[Mapping[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda's SQS event source mapping passes to the function."""
    records = []
    for message in messages:
        record: dict[str, Any] = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": dict(message.get("Attributes", {})),
            "messageAttributes": {
                name: _message_attribute(value)
                for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        }
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        records.append(record)
    return {"Records": records}


def _message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    attribute: dict[str, Any] = {
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": [b64(v) for v in value.get("BinaryListValues", [])],
        "dataType": value["DataType"],
    }
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = b64(value["BinaryValue"])
    return attribute


def poll_once(
    sqs: SQSClient,
    *,
    queue_url: str,
    queue_arn: str,
    region: str,
    invoke: Invoke,
    wait_seconds: int = 1,
    duplicate_deliveries: bool = False,
) -> int:
    """Receive one batch, invoke, delete what succeeded. Returns how many messages came.

    duplicate_deliveries: first send a marked copy of each unmarked S3 event message back to
        the queue (see the module's docstring).
    """
    received = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=BATCH_SIZE,
        WaitTimeSeconds=wait_seconds,
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    )
    messages = received.get("Messages", [])
    if not messages:
        return 0
    if duplicate_deliveries:
        send_duplicates(sqs, queue_url, messages)
    try:
        result = invoke(sqs_event(messages, queue_arn, region))
    except Exception:
        log.exception("worker: the function failed; the batch of %d will be retried", len(messages))
        return len(messages)
    failed = _failed_ids(result)
    ids = {m["MessageId"] for m in messages}
    if failed is None or not failed <= ids:
        log.error("worker: invalid batchItemFailures %r; the whole batch will be retried", result)
        return len(messages)
    done = [m for m in messages if m["MessageId"] not in failed]
    for start in range(0, len(done), BATCH_SIZE):
        entries = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
            for i, m in enumerate(done[start : start + BATCH_SIZE])
        ]
        response = sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)  # type: ignore[arg-type]
        for failure in response.get("Failed", []):
            log.warning("worker: could not delete a message: %s", failure.get("Message"))
    return len(messages)


def send_duplicates(sqs: SQSClient, queue_url: str, messages: Sequence[Mapping[str, Any]]) -> int:
    """Send a marked copy of each S3 event message not itself a copy; returns how many were sent.

    The copy goes out before the original is processed, so the two deliveries can overlap.
    """
    copies = [m for m in messages if _is_s3_event(m) and not _is_duplicate(m)]
    sent = 0
    for start in range(0, len(copies), BATCH_SIZE):
        batch = copies[start : start + BATCH_SIZE]
        entries = [
            {
                "Id": str(i),
                "MessageBody": m["Body"],
                "MessageAttributes": {
                    DUPLICATE_MARKER: {"DataType": "String", "StringValue": m["MessageId"]}
                },
            }
            for i, m in enumerate(batch)
        ]
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)  # type: ignore[arg-type]
        for failure in response.get("Failed", []):
            log.warning("worker: could not send a duplicate: %s", failure.get("Message"))
        for entry in response.get("Successful", []):
            message = batch[int(entry["Id"])]
            log.info(
                "worker: duplicate delivery of %s (message %s)",
                ", ".join(_object_keys(message)),
                message["MessageId"],
            )
            sent += 1
    return sent


def _s3_records(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    try:
        body = json.loads(message["Body"])
    except (TypeError, ValueError):
        return []
    records = body.get("Records") if isinstance(body, dict) else None
    if not isinstance(records, list):
        return []
    return [r for r in records if isinstance(r, dict) and r.get("eventSource") == "aws:s3"]


def _is_s3_event(message: Mapping[str, Any]) -> bool:
    return bool(_s3_records(message))


def _is_duplicate(message: Mapping[str, Any]) -> bool:
    return DUPLICATE_MARKER in message.get("MessageAttributes", {})


def _object_keys(message: Mapping[str, Any]) -> list[str]:
    keys = []
    for record in _s3_records(message):
        key = record.get("s3", {}).get("object", {}).get("key")
        keys.append(unquote_plus(key) if isinstance(key, str) else "?")
    return keys


def _failed_ids(result: Any) -> set[str] | None:
    """The message ids the function reported as failed; None for a malformed report."""
    if result is None:
        return set()
    if not isinstance(result, dict):
        return None
    failures = result.get("batchItemFailures") or []
    ids = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier:
            return None
        ids.add(str(identifier))
    return ids


# --- the parent side: a pool of poller processes -------------------------------------------------


class WorkerPool:
    """N poller processes, each one warm worker environment. ``close()`` waits for all of them."""

    def __init__(
        self,
        count: int,
        *,
        queue_url: str,
        queue_arn: str,
        region: str,
        env: dict[str, str],
        wait_seconds: int = 1,
        duplicate_deliveries: bool = False,
    ) -> None:
        self.count = count
        self._args = [
            "--queue-url",
            queue_url,
            "--queue-arn",
            queue_arn,
            "--region",
            region,
            "--wait-seconds",
            str(wait_seconds),
            *(["--duplicate-deliveries"] if duplicate_deliveries else []),
        ]
        self._env = env
        self._processes: list[subprocess.Popen[bytes]] = []
        self._relays: list[threading.Thread] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes]

    def start(self, ready_timeout: float = 60.0) -> WorkerPool:
        ready: list[threading.Event] = []
        for n in range(self.count):
            process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
                [sys.executable, "-m", "onecopy_local.worker", *self._args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=self._env,
            )
            self._processes.append(process)
            event = threading.Event()
            relay = threading.Thread(
                target=_relay, args=(process, event), name=f"worker-{n}-output", daemon=True
            )
            relay.start()
            self._relays.append(relay)
            ready.append(event)
        deadline = time.monotonic() + ready_timeout
        for process, event in zip(self._processes, ready, strict=True):
            while not event.wait(0.1):
                if process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"worker process {process.pid} did not start")
        return self

    def close(self, timeout: float = 30.0) -> None:
        for process in self._processes:
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
        deadline = time.monotonic() + timeout
        for process in self._processes:
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not stop in time; killing it", process.pid)
                process.kill()
                process.wait()
        for relay in self._relays:
            relay.join(5.0)
        self._processes.clear()
        self._relays.clear()


def _relay(process: subprocess.Popen[bytes], ready: threading.Event) -> None:
    """Copy a poller's output (the function's logs) to ours, and notice its ready line."""
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.decode(errors="replace")
        if line.rstrip("\n") == READY:
            ready.set()
            continue
        sys.stdout.write(line)
        sys.stdout.flush()


# --- the child side: one poller process ----------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onecopy_local.worker")
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--queue-arn", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--wait-seconds", type=int, default=1)
    parser.add_argument("--duplicate-deliveries", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)

    stop = threading.Event()
    # Ctrl-C reaches the whole process group; the parent decides when pollers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=_stop_on_eof, args=(stop,), daemon=True).start()

    import boto3

    from onecopy_local.lambda_runtime import Function, FunctionConfig

    function = Function(FunctionConfig.from_template("WorkerFunction", args.region))
    sqs = boto3.client("sqs", region_name=args.region)
    print(READY, flush=True)
    while not stop.is_set():
        try:
            poll_once(
                sqs,
                queue_url=args.queue_url,
                queue_arn=args.queue_arn,
                region=args.region,
                invoke=function.invoke,
                wait_seconds=args.wait_seconds,
                duplicate_deliveries=args.duplicate_deliveries,
            )
        except Exception as exc:
            if stop.is_set():
                break
            log.warning("worker %d: polling failed (%s); retrying", os.getpid(), exc)
            stop.wait(1.0)
    return 0


def _stop_on_eof(stop: threading.Event) -> None:
    # The raw descriptor: a daemon thread blocked in sys.stdin's buffered reader holds its lock
    # and makes interpreter shutdown abort.
    while os.read(0, 1024):
        pass
    stop.set()


if __name__ == "__main__":
    sys.exit(main())
