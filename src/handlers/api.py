"""The HTTP API: one Lambda behind API Gateway v2. Routes parse, call one service, map results."""

from __future__ import annotations

from functools import cache
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from adapters import clients
from adapters.dynamodb import Ledger
from adapters.s3 import ObjectStore
from domain.errors import AlreadyHeld, InvalidInput, NotFound
from domain.model import ANONYMOUS_OWNER, UPLOAD_ID_PATTERN
from handlers.schemas import (
    AlreadyHeldResponse,
    CreateUploadRequest,
    CreateUploadResponse,
    ErrorResponse,
    HeldFile,
    PutInstructions,
    UploadView,
    ValidationErrorResponse,
)
from handlers.settings import api_settings
from service import uploads

settings = api_settings()
logger = Logger()
metrics = Metrics()
app = APIGatewayHttpResolver(
    enable_validation=True,
    cors=CORSConfig(
        allow_origin=settings.allowed_origins[0],
        extra_origins=list(settings.allowed_origins[1:]),
        allow_headers=["Content-Type", "Authorization"],
        expose_headers=["Location"],
        max_age=600,
    ),
)


def _reply(description: str, model: type[BaseModel]) -> OpenAPIResponse:
    return {"description": description, "content": {"application/json": {"model": model}}}


_ERRORS: dict[int, OpenAPIResponse] = {
    400: _reply("Invalid input", ErrorResponse),
    404: _reply("Not found", ErrorResponse),
    422: _reply("The request does not match the schema", ValidationErrorResponse),
}


@cache
def _ledger() -> Ledger:
    return Ledger(
        clients.dynamodb(),
        uploads_table=settings.uploads_table,
        contents_table=settings.contents_table,
        stats_table=settings.stats_table,
        stats_shards=settings.stats_shards,
    )


@cache
def _store() -> ObjectStore:
    return ObjectStore(clients.s3(), clients.s3_presigner(), settings.bucket_name)


def _owner() -> str:
    """The JWT subject when an authorizer ran, else the anonymous owner."""
    claims = app.current_event.request_context.authorizer.jwt_claim or {}
    sub = claims.get("sub")
    return str(sub) if sub else ANONYMOUS_OWNER


def _json(status: HTTPStatus, body: dict[str, Any]) -> Response[Any]:
    return Response(status_code=status, content_type="application/json", body=body)


@app.post(
    "/uploads",
    summary="Create an upload and get a presigned PUT URL",
    responses={
        201: {
            "description": "Created",
            "content": {"application/json": {"schema": CreateUploadResponse.model_json_schema()}},
        },
        409: {
            "description": "This owner already holds the declared content; nothing to upload",
            "content": {"application/json": {"schema": AlreadyHeldResponse.model_json_schema()}},
        },
        **_ERRORS,
    },
)
def create_upload(body: CreateUploadRequest) -> Response[CreateUploadResponse]:
    created = uploads.create_upload(
        owner=_owner(),
        filename=body.filename,
        size=body.size,
        content_type=body.content_type,
        sha256=body.sha256,
        ledger=_ledger(),
        store=_store(),
        url_ttl_seconds=settings.upload_url_ttl_seconds,
    )
    logger.append_keys(upload_id=created.upload.upload_id)
    metrics.add_metric(name="UploadsCreated", unit=MetricUnit.Count, value=1)
    response = CreateUploadResponse(
        upload_id=created.upload.upload_id,
        status=created.upload.status,
        upload=PutInstructions(url=created.put.url, headers=created.put.headers),
        expires_at=created.expires_at,
    )
    return _json(HTTPStatus.CREATED, response.model_dump(mode="json"))


@app.get(
    "/uploads/<upload_id>",
    summary="The state of an upload",
    responses={
        200: {
            "description": "The upload",
            "content": {"application/json": {"schema": UploadView.model_json_schema()}},
        },
        **_ERRORS,
    },
)
def get_upload(
    upload_id: Annotated[str, Path(pattern=UPLOAD_ID_PATTERN, description="An upload id")],
) -> Response[UploadView]:
    upload = uploads.get_upload(upload_id, ledger=_ledger())
    return _json(HTTPStatus.OK, UploadView.of(upload).model_dump(mode="json", exclude_none=True))


# --- one place maps domain errors to HTTP --------------------------------------------------------


@app.exception_handler(InvalidInput)
def _invalid(exc: InvalidInput) -> Response[Any]:
    return _json(HTTPStatus.BAD_REQUEST, {"message": str(exc)})


@app.exception_handler(NotFound)
def _not_found(exc: NotFound) -> Response[Any]:
    return _json(HTTPStatus.NOT_FOUND, {"message": str(exc)})


@app.exception_handler(AlreadyHeld)
def _already_held(exc: AlreadyHeld) -> Response[Any]:
    held = exc.held
    metrics.add_metric(name="DuplicatesPrechecked", unit=MetricUnit.Count, value=1)
    body = AlreadyHeldResponse(
        message="this content is already stored for you; nothing to upload",
        upload_id=exc.upload_id,
        held=HeldFile(
            upload_id=held.upload_id,
            filename=held.filename,
            size=held.size,
            content_type=held.content_type,
            sha256=held.sha256 or "",
            created_at=held.created_at,
        ),
    )
    return _json(HTTPStatus.CONFLICT, body.model_dump(mode="json"))


@app.exception_handler(RequestValidationError)
def _validation(exc: RequestValidationError) -> Response[Any]:
    errors = exc.errors()
    detail = [
        {
            "loc": list(e.get("loc", ())),
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]
    first = detail[0] if detail else {"loc": [], "msg": "invalid request", "type": ""}
    if first["type"] == "json_invalid":
        message = "request body is not valid JSON"
    else:
        where = ".".join(str(p) for p in first["loc"])
        message = f"{where}: {first['msg']}" if where else str(first["msg"])
    return _json(HTTPStatus.UNPROCESSABLE_ENTITY, {"message": message, "detail": detail})


@app.not_found
def _no_route(_: Exception) -> Response[Any]:
    return _json(HTTPStatus.NOT_FOUND, {"message": "no such route"})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
