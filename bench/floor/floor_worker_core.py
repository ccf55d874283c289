"""Floor: the worker without pydantic, each record checked by a pydantic_core validator."""

import boto3  # noqa: F401  (every function imports it; the ratio's baseline)
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic_core import SchemaValidator, core_schema

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)
object_created = SchemaValidator(
    core_schema.typed_dict_schema(
        {
            "key": core_schema.typed_dict_field(core_schema.str_schema(min_length=1)),
            "size": core_schema.typed_dict_field(core_schema.int_schema(ge=0)),
        }
    )
)


def record_handler(record: SQSRecord) -> None:
    object_created.validate_json(record.body)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context: object) -> dict:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
