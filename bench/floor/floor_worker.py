"""Floor: Powertools' SQS batch processor (as handlers.worker) and one pydantic model."""

import boto3  # noqa: F401  (every function imports it; the ratio's baseline)
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import BaseModel, Field

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)


class ObjectCreated(BaseModel):
    key: str = Field(min_length=1)
    size: int = Field(ge=0)


def record_handler(record: SQSRecord) -> None:
    ObjectCreated.model_validate_json(record.body)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context: object) -> dict:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
