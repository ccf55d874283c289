"""Move dead-lettered S3 events back to the ingest queue, so the worker tries them again.

Safe to run at any time: the worker is idempotent, so a message that is redriven twice (a crash
between send and delete) changes nothing the second time.
"""

from __future__ import annotations

from typing import Any

from onecopy_cli.api import CliError

# The names `onecopy-local` gives its queues (onecopy_local.resources, prefix "onecopy").
LOCAL_QUEUE = "onecopy-ingest"
LOCAL_DLQ = "onecopy-ingest-dlq"
DEFAULT_LOCAL_EMULATOR = "http://127.0.0.1:4566"


def redrive(sqs: Any, dlq_url: str, queue_url: str, *, limit: int | None = None) -> int:
    """Move up to `limit` messages (all, by default); returns how many moved."""
    moved = 0
    while limit is None or moved < limit:
        batch = min(10, limit - moved) if limit is not None else 10
        messages = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=batch,
            MessageAttributeNames=["All"],
            WaitTimeSeconds=1,
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            # Send first, delete after: a crash in between leaves a duplicate, never a loss.
            attributes = message.get("MessageAttributes") or {}
            sqs.send_message(
                QueueUrl=queue_url,
                MessageBody=message["Body"],
                **({"MessageAttributes": attributes} if attributes else {}),
            )
            sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
            moved += 1
    return moved


def local_queue_urls(sqs: Any) -> tuple[str, str]:
    try:
        return (
            sqs.get_queue_url(QueueName=LOCAL_DLQ)["QueueUrl"],
            sqs.get_queue_url(QueueName=LOCAL_QUEUE)["QueueUrl"],
        )
    except Exception as exc:  # botocore's connection and client errors alike
        raise CliError(
            f"cannot find the local stack's queues ({exc}). Is it running? (`make run`)"
        ) from exc
