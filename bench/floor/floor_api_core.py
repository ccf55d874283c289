"""Floor: the API without pydantic, its body checked by a pydantic_core validator.

The resolver runs with validation off (Powertools' validation needs pydantic); the schema is the
one a pydantic model would produce, written out as a build step could emit it.
"""

import boto3  # noqa: F401  (every function imports it; the ratio's baseline)
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from pydantic_core import SchemaValidator, ValidationError, core_schema

logger = Logger()
metrics = Metrics()
app = APIGatewayHttpResolver()
create_upload_body = SchemaValidator(
    core_schema.typed_dict_schema(
        {
            "filename": core_schema.typed_dict_field(
                core_schema.str_schema(min_length=1, max_length=255)
            ),
            "size": core_schema.typed_dict_field(core_schema.int_schema(ge=0)),
        }
    )
)


@app.exception_handler(ValidationError)
def invalid_body(error: ValidationError) -> Response:
    return Response(422, "application/json", '{"message": "invalid body"}')


@app.post("/uploads")
def create_upload() -> dict[str, int]:
    body = create_upload_body.validate_json(app.current_event.body or "")
    return {"size": body["size"]}


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def lambda_handler(event: dict, context: object) -> dict:
    return app.resolve(event, context)
