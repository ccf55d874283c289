"""Lambda's SQS event source mapping, locally: poll the ingest queue and invoke the worker.

The pollers are threads of the stack (the mapping is a Lambda service, not part of the function)
and poll with WorkerFunction's credentials, as the mapping uses the function's role. Each batch
goes to one of the function's execution environments (onecopy_local.lambda_runtime). Per batch,
as the event source mapping does:

- ReceiveMessage (up to 10, long poll), build the Lambda SQS event, invoke the function;
- delete the messages not listed in ``batchItemFailures``; if the function failed, or reported
  an identifier that is not in the batch, delete none;
- leave failures to reappear after the visibility timeout; the queue's redrive policy moves a
  message to the dead-letter queue after its fifth receive.

With ``--duplicate-deliveries`` a poller also exercises SQS's at-least-once delivery on purpose:
before invoking the function it sends a copy of every S3 event message it receives back to the
queue, marked with the ``DUPLICATE_MARKER`` message attribute so that the copy is not copied
again. Every S3 event then reaches the worker (at least) twice, possibly on two pollers at once.
That resend is a test device, not Lambda: it uses a client of its own (the operator's).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from onecopy_local._http import LOGGER

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(LOGGER)

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
    duplicates_via: SQSClient | None = None,
) -> int:
    """Receive one batch, invoke, delete what succeeded. Returns how many messages came.

    duplicates_via: first send, with this client, a marked copy of each unmarked S3 event
        message back to the queue (see the module's docstring).
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
    if duplicates_via is not None:
        send_duplicates(duplicates_via, queue_url, messages)
    try:
        result = invoke(sqs_event(messages, queue_arn, region))
    except Exception as exc:
        # The function's environment has logged its traceback already.
        log.error(
            "worker: the function failed (%s); the batch of %d will be retried", exc, len(messages)
        )
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


# --- the pollers ---------------------------------------------------------------------------------


class EventSourceMapping:
    """``pollers`` threads, each receiving batches with ``sqs`` (a client holding the function's
    credentials, as the mapping polls with the function's role) and invoking the function.

    ``close()`` lets each poller finish the batch in hand, then joins them.
    """

    def __init__(
        self,
        invoke: Invoke,
        *,
        sqs: SQSClient,
        queue_url: str,
        queue_arn: str,
        region: str,
        pollers: int,
        wait_seconds: int = 1,
        duplicates_via: SQSClient | None = None,
    ) -> None:
        self._invoke = invoke
        self._sqs = sqs
        self._queue_url = queue_url
        self._queue_arn = queue_arn
        self._region = region
        self._wait_seconds = wait_seconds
        self._duplicates_via = duplicates_via
        self.pollers = pollers
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> EventSourceMapping:
        for n in range(self.pollers):
            thread = threading.Thread(target=self._run, name=f"poller-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                poll_once(
                    self._sqs,
                    queue_url=self._queue_url,
                    queue_arn=self._queue_arn,
                    region=self._region,
                    invoke=self._invoke,
                    wait_seconds=self._wait_seconds,
                    duplicates_via=self._duplicates_via,
                )
            except Exception as exc:
                if self._stop.is_set():
                    break
                log.warning("worker: polling failed (%s); retrying", exc)
                self._stop.wait(1.0)

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.1))
            if thread.is_alive():
                log.warning("worker: %s did not stop in time", thread.name)
        self._threads.clear()
