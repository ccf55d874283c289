"""The worker: S3 ObjectCreated -> SQS -> here. Each SQS message succeeds or fails on its own."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic_core import ValidationError

from handlers import wiring
from handlers.events import S3Notification, S3Record, SqsBatch
from handlers.settings import worker_settings
from service.ingest import Outcome, ingest_object

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse

settings = worker_settings()
logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)


class NotAnSqsBatch(ValueError):
    """The worker was invoked with something other than an SQS batch of messages."""


_METRIC = {
    Outcome.STORED: "FilesStored",
    # STORED for its owner, but a deduplication: counted with the duplicates in the statistics.
    Outcome.MATCHED: "ContentsMatched",
    Outcome.DUPLICATE: "DuplicatesFound",
    Outcome.REJECTED: "UploadsRejected",
}


def record_handler(record: SQSRecord) -> None:
    """One SQS message; raising makes it (alone) retried, and after 5 receives dead-lettered."""
    notification = S3Notification.model_validate_json(record.body)
    if notification.is_test_event:
        logger.info("skipping s3:TestEvent")
        return
    for s3_record in notification.records:
        _ingest(s3_record)


def _ingest(s3_record: S3Record) -> None:
    if (
        not s3_record.event_name.startswith("ObjectCreated:")
        or s3_record.bucket != settings.bucket_name
    ):
        logger.info(
            "ignoring event", extra={"event_name": s3_record.event_name, "bucket": s3_record.bucket}
        )
        return
    result = ingest_object(s3_record.key, ledger=wiring.ledger(), store=wiring.store())
    upload = result.upload
    logger.info(
        "ingested",
        extra={
            "outcome": result.outcome.value,
            "key": s3_record.key,
            "upload_id": result.upload_id,
            "sha256": upload.sha256 if upload else None,
            "reason": upload.reason.value if upload and upload.reason else None,
            "downloaded": result.downloaded,
        },
    )
    if (name := _METRIC.get(result.outcome)) is not None:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
        latency = datetime.now(UTC) - s3_record.event_time
        metrics.add_metric(
            name="ProcessingLatency",
            unit=MetricUnit.Milliseconds,
            value=max(latency.total_seconds() * 1000, 0),
        )
    if result.outcome in (Outcome.MATCHED, Outcome.DUPLICATE) and upload is not None:
        metrics.add_metric(name="BytesSaved", unit=MetricUnit.Bytes, value=upload.size)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: Any, context: LambdaContext) -> PartialItemFailureResponse:
    try:
        batch = SqsBatch.model_validate(event)
    except ValidationError as error:
        # Not from the SQS event source mapping (a bad test invoke): no message to fail or retry.
        first = error.errors(include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "event"
        raise NotAnSqsBatch(
            f"not an SQS batch (Records of messages with a messageId): {where}: {first['msg']}"
        ) from None
    if not batch.records:
        return {"batchItemFailures": []}
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
