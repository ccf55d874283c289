"""Floor: Powertools' HTTP API resolver with validation (as handlers.api) and one pydantic model."""

import boto3  # noqa: F401  (every function imports it; the ratio's baseline)
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.logging import correlation_paths
from pydantic import BaseModel, Field

logger = Logger()
metrics = Metrics()
app = APIGatewayHttpResolver(enable_validation=True)


class CreateUpload(BaseModel):
    filename: str = Field(min_length=1, max_length=255)
    size: int = Field(ge=0)


@app.post("/uploads")
def create_upload(body: CreateUpload) -> dict[str, int]:
    return {"size": body.size}


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def lambda_handler(event: dict, context: object) -> dict:
    return app.resolve(event, context)
