"""The HTTP API: one Lambda behind API Gateway v2. Routes parse, call one service, map results."""

from __future__ import annotations

import json
from datetime import timedelta
from functools import cache
from http import HTTPStatus
from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from domain import access
from domain.access import Caller, Forbidden, TooManyPending, Unauthenticated
from domain.errors import Conflict, InvalidInput, NotFound
from domain.model import (
    UPLOAD_ID_PATTERN,
    UPLOAD_OR_SHA256_PATTERN,
    AlreadyHeld,
    Upload,
    UploadStatus,
)
from handlers import wiring
from handlers.api_events import HttpApiEvent, JwtClaims
from handlers.schemas import (
    AlreadyHeldResponse,
    AuthConfigResponse,
    CollectionView,
    CompleteRequest,
    ContentMetadata,
    CreateUploadRequest,
    CreateUploadResponse,
    DownloadResponse,
    ErasureResponse,
    ErrorResponse,
    HashItem,
    HashPageResponse,
    HealthResponse,
    HeldFile,
    IngestQueueView,
    MultipartInstructions,
    PartsRequest,
    PartsResponse,
    PartUrl,
    PutInstructions,
    QueueView,
    ReconciliationView,
    StatsResponse,
    UploadedPartsResponse,
    UploadedPartView,
    UploadMetadata,
    UploadPageResponse,
    UploadView,
    ValidationErrorResponse,
)
from handlers.settings import api_settings, table_settings
from service import catalog, deletion, health, multipart, uploads

settings = api_settings()
table_settings()  # the tables' settings every function shares: validated at start too
logger = Logger()
metrics = Metrics()


def _json_body(text: str) -> Any:
    """The request body as JSON; every way a hostile body fails to parse is a JSONDecodeError.

    Powertools turns a JSONDecodeError into a validation error (a 422), but lets the others escape
    as a 500: an integer past Python's 4,300-digit conversion limit (ValueError) and nesting
    deeper than the interpreter's stack (RecursionError). It calls this only for routes that read
    a JSON body, which is where a request without a Content-Type is refused (415): the API
    documents JSON bodies only.
    """
    if not app.current_event.headers.get("content-type"):
        raise RequestUnsupportedContentType("no Content-Type", errors=[])
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None
    except ValueError:
        # Python's own message advises sys.set_int_max_str_digits(): not for API clients.
        raise json.JSONDecodeError("a number has too many digits", text, 0) from None


app = APIGatewayHttpResolver(
    enable_validation=True,
    json_body_deserializer=_json_body,
    cors=CORSConfig(
        allow_origin=settings.allowed_origins[0],
        extra_origins=list(settings.allowed_origins[1:]),
        allow_headers=["Content-Type", "Authorization"],
        expose_headers=["Location"],
        max_age=600,
    ),
)


def _declared_query_only(
    app: APIGatewayHttpResolver, next_middleware: NextMiddleware
) -> Response[Any]:
    # An unknown query parameter is a client's mistake (a misspelt `limit` would silently page by
    # 100): refuse it, as the document's query (no additional parameters) says, instead of
    # ignoring it.
    # (Only on a route of ours: a 404 or 405 answers as such whatever the query.)
    route = app.context.get("_route")
    if route is None or not any(route is ours for ours in _routes()):
        return next_middleware(app)
    declared = {field.alias for field in route.dependant.query_params}
    unknown = sorted(set(app.current_event.query_string_parameters or {}) - declared)
    if unknown:
        raise InvalidInput(f"unknown query parameter: {unknown[0]!r}")
    return next_middleware(app)


app.use(middlewares=[_declared_query_only])


def _routes() -> list[Any]:
    # Powertools keeps the registered routes only in these two private lists.
    return app._static_routes + app._dynamic_routes


def _reply(description: str, model: Any) -> OpenAPIResponse:
    return {"description": description, "content": {"application/json": {"model": model}}}


BEARER = "bearerAuth"
OPENAPI_INFO: dict[str, Any] = {
    "title": "onecopy",
    "version": "1.0.0",
    "description": (
        "Serverless file deduplication: every distinct content is stored once under its SHA-256. "
        "Sign in (GET /auth/config says where), create an upload, PUT the bytes to the presigned "
        "URL, then GET /uploads/{upload_id}?wait=20 until STORED (you now hold the content) or "
        "DUPLICATE (you already held it). "
        "Everything an owner sees is their own: another owner's uploads and contents answer 404."
    ),
}
BEARER_DESCRIPTION = (
    "A Cognito ID or access token of the API's app client "
    "(`Authorization: Bearer <token>`), checked by API Gateway's JWT authorizer"
)
# Every operation but the public ones (sign-in configuration and these documents).
SIGNED_IN: list[dict[str, list[str]]] = [{BEARER: []}]

# API Gateway's throttling (template parameters ThrottlingRateLimit/BurstLimit) answers any route.
_THROTTLED: dict[int, OpenAPIResponse] = {
    429: _reply("Too Many Requests: API Gateway's throttling", ErrorResponse),
}
_ERRORS: dict[int, OpenAPIResponse] = {
    400: _reply("Invalid input", ErrorResponse),
    401: _reply("No valid token (answered by API Gateway's authorizer)", ErrorResponse),
    404: _reply("Not found, or not yours (the same answer)", ErrorResponse),
    422: _reply("The request does not match the schema", ValidationErrorResponse),
    **_THROTTLED,
}
# Routes that read a body answer 415 to anything but JSON.
_BODY_ERRORS: dict[int, OpenAPIResponse] = {
    **_ERRORS,
    415: _reply("The body is not application/json", ErrorResponse),
}


@cache
def _upload_policy() -> uploads.UploadPolicy:
    return uploads.UploadPolicy(
        url_ttl_seconds=settings.upload_url_ttl_seconds,
        multipart_threshold=settings.multipart_threshold_bytes,
        part_size=settings.multipart_part_size_bytes,
        max_pending=settings.max_pending_uploads,
    )


def _caller() -> Caller:
    """Who the gateway's JWT authorizer verified. No claims means a route the gateway left
    unguarded: refused, never served as some default owner."""
    try:
        claims = JwtClaims.model_validate(app.current_event.request_context.authorizer.jwt_claim)
    except ValidationError:
        raise Unauthenticated("Unauthorized") from None
    return access.caller(claims.sub, claims.groups)


def _owner() -> str:
    return _caller().sub


def _admin() -> Caller:
    return access.require_admin(_caller())


def _json(
    status: HTTPStatus, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response[Any]:
    return Response(status_code=status, content_type="application/json", body=body, headers=headers)


# What a client does next with a new upload's id: documents the workflow, and lets a stateful
# fuzzer chain the calls.
_UPLOAD_LINKS = {
    name: {"operationId": operation, "parameters": {param: "$response.body#/upload_id"}}
    for name, operation, param in (
        ("GetUpload", "get_upload_uploads__upload_id__get", "upload_id"),
        ("DeleteUpload", "delete_upload_uploads__upload_id__delete", "upload_id"),
        ("PresignParts", "presign_parts_uploads__upload_id__parts_post", "upload_id"),
        ("ListParts", "list_parts_uploads__upload_id__parts_get", "upload_id"),
        ("CompleteUpload", "complete_upload_uploads__upload_id__complete_post", "upload_id"),
        ("GetMetadata", "get_metadata_metadata__id__get", "id"),
        ("GetDownload", "get_download_download__id__get", "id"),
    )
}


@app.post(
    "/uploads",
    summary="Create an upload: a presigned PUT URL, or a multipart upload for large files",
    security=SIGNED_IN,
    responses={
        201: {
            **_reply(
                "Created: PUT the bytes to upload.url with upload.headers, or (multipart) ask for "
                "part URLs. Also the answer for a sha256 that only another owner holds",
                CreateUploadResponse,
            ),
            "links": _UPLOAD_LINKS,
        },
        409: _reply("You already hold this content; nothing to upload", AlreadyHeldResponse),
        **_BODY_ERRORS,
        429: {
            **_reply(
                "Too many of your uploads are waiting for their bytes (Retry-After says when "
                "to try again), or API Gateway's throttling",
                ErrorResponse,
            ),
            "headers": {
                "Retry-After": {
                    "description": "With the pending cap: seconds until a pending upload's URL "
                    "will have expired",
                    "schema": {"type": "integer"},
                }
            },
        },
    },
)
def create_upload(body: CreateUploadRequest) -> Response[CreateUploadResponse]:
    created = uploads.create_upload(
        owner=_owner(),
        filename=body.filename,
        size=body.size,
        content_type=body.content_type,
        sha256=body.sha256,
        multipart=body.multipart,
        policy=_upload_policy(),
        ledger=wiring.ledger(),
        store=wiring.store(),
    )
    logger.append_keys(upload_id=created.upload.upload_id)
    metrics.add_metric(name="UploadsCreated", unit=MetricUnit.Count, value=1)
    put, plan = created.put, created.multipart
    response = CreateUploadResponse(
        upload_id=created.upload.upload_id,
        status=created.upload.status,
        upload=PutInstructions(url=put.url, headers=put.headers) if put else None,
        multipart=(
            MultipartInstructions(part_size=plan.part_size, part_count=plan.part_count)
            if plan
            else None
        ),
        expires_at=created.expires_at,
    )
    return _json(HTTPStatus.CREATED, response.model_dump(mode="json"))


UploadIdParam = Annotated[str, Path(pattern=UPLOAD_ID_PATTERN, description="An upload id")]


@app.delete(
    "/uploads/<upload_id>",
    summary="Delete one of your uploads (a pending one is aborted: REJECTED, reason aborted)",
    description="A STORED, DUPLICATE or REJECTED upload is deleted: afterwards it, its metadata "
    "and its download answer 404, and it leaves your list. Its content stays stored while anyone "
    "else still references it, and is collected after the grace period otherwise. A PENDING "
    "upload is aborted instead (delete it again to remove it).",
    security=SIGNED_IN,
    responses={
        204: {"description": "Deleted, or aborted", "content": {}},  # no body
        409: _reply("Its bytes are being stored right now: try again shortly", ErrorResponse),
        **_ERRORS,
    },
)
def delete_upload(upload_id: UploadIdParam) -> Response[None]:
    removed = deletion.remove_upload(
        upload_id, owner=_owner(), ledger=wiring.ledger(), store=wiring.store()
    )
    metrics.add_metric(
        name="UploadsDeleted" if removed is deletion.Removed.DELETED else "UploadsAborted",
        unit=MetricUnit.Count,
        value=1,
    )
    return Response(status_code=HTTPStatus.NO_CONTENT, body=None)


@app.get(
    "/uploads",
    summary="Your uploads, newest first, a page at a time",
    description="Follow last_evaluated_key until it is null: with a filter, a page may hold "
    "fewer than `limit` uploads while more follow.",
    security=SIGNED_IN,
    responses={200: _reply("One page of your uploads", UploadPageResponse), **_ERRORS},
)
def list_uploads(
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size")] = 100,
    status: Annotated[
        Literal["PENDING", "STORED", "DUPLICATE", "REJECTED"] | None,
        Query(description="Only uploads in this state"),
    ] = None,
    prefix: Annotated[
        str | None,
        Query(min_length=1, max_length=255, description="Only files whose name starts so"),
    ] = None,
    last_evaluated_key: Annotated[
        str | None, Query(max_length=512, description="Token from the previous page")
    ] = None,
) -> Response[UploadPageResponse]:
    page = catalog.list_uploads(
        limit,
        last_evaluated_key,
        owner=_owner(),
        status=UploadStatus(status) if status else None,
        prefix=prefix,
        ledger=wiring.ledger(),
        secret=wiring.page_token_secret(),
    )
    body = UploadPageResponse(
        items=[UploadView.of(u) for u in page.uploads], last_evaluated_key=page.next_token
    )
    return _json(HTTPStatus.OK, body.model_dump(mode="json"))


@app.post(
    "/uploads/<upload_id>/parts",
    summary="Presigned URLs for some parts of a multipart upload (at most 100 per call)",
    security=SIGNED_IN,
    responses={
        200: _reply("One URL per requested part", PartsResponse),
        409: _reply("Not a pending multipart upload", ErrorResponse),
        **_BODY_ERRORS,
    },
)
def presign_parts(upload_id: UploadIdParam, body: PartsRequest) -> Response[PartsResponse]:
    parts = multipart.presign_parts(
        upload_id,
        body.part_numbers,
        owner=_owner(),
        ledger=wiring.ledger(),
        store=wiring.store(),
        ttl_seconds=settings.upload_url_ttl_seconds,
    )
    response = PartsResponse(
        parts=[PartUrl(part_number=n, url=p.url, headers=p.headers) for n, p in parts]
    )
    return _json(HTTPStatus.OK, response.model_dump(mode="json"))


@app.get(
    "/uploads/<upload_id>/parts",
    summary="The parts S3 already holds, to resume an interrupted multipart upload",
    security=SIGNED_IN,
    responses={
        200: _reply("Parts received so far", UploadedPartsResponse),
        409: _reply("Not a pending multipart upload", ErrorResponse),
        **_ERRORS,
    },
)
def list_parts(upload_id: UploadIdParam) -> Response[UploadedPartsResponse]:
    parts = multipart.uploaded_parts(
        upload_id, owner=_owner(), ledger=wiring.ledger(), store=wiring.store()
    )
    response = UploadedPartsResponse(
        parts=[UploadedPartView(part_number=p.part_number, etag=p.etag, size=p.size) for p in parts]
    )
    return _json(HTTPStatus.OK, response.model_dump(mode="json"))


@app.post(
    "/uploads/<upload_id>/complete",
    summary="Assemble the uploaded parts; the worker then stores or deduplicates the file",
    security=SIGNED_IN,
    responses={
        202: _reply("Accepted: poll GET /uploads/{upload_id}", UploadView),
        409: _reply("Already completed or aborted", ErrorResponse),
        **_BODY_ERRORS,
    },
)
def complete_upload(upload_id: UploadIdParam, body: CompleteRequest) -> Response[UploadView]:
    upload = multipart.complete(
        upload_id,
        [(p.part_number, p.etag) for p in body.parts],
        owner=_owner(),
        ledger=wiring.ledger(),
        store=wiring.store(),
    )
    return _json(HTTPStatus.ACCEPTED, UploadView.of(upload).model_dump(mode="json"))


# What a waiting GET keeps of the function's remaining time for its last read and its reply.
_REPLY_MARGIN_SECONDS = 2.0


@app.get(
    "/uploads/<upload_id>",
    summary="The state of one of your uploads; with wait=N, once it is stored or N s passed",
    security=SIGNED_IN,
    responses={
        200: _reply("The upload", UploadView),
        **_ERRORS,
    },
)
def get_upload(
    upload_id: UploadIdParam,
    wait: Annotated[
        int,
        Query(
            ge=0,
            le=uploads.MAX_WAIT_SECONDS,
            description="Seconds to wait for the upload to leave PENDING before answering "
            "(answers as soon as it does; 0, the default, answers at once)",
        ),
    ] = 0,
) -> Response[UploadView]:
    # Never wait into the function's timeout: the answer needs a read and a reply after it.
    left = app.lambda_context.get_remaining_time_in_millis() / 1000 - _REPLY_MARGIN_SECONDS
    upload = uploads.await_upload(
        upload_id, owner=_owner(), ledger=wiring.ledger(), seconds=min(wait, left)
    )
    return _json(HTTPStatus.OK, UploadView.of(upload).model_dump(mode="json", exclude_none=True))


IdParam = Annotated[
    str,
    Path(
        pattern=UPLOAD_OR_SHA256_PATTERN,
        description="An upload id (32 hex) or a content's SHA-256 (64 lowercase hex)",
    ),
]


@app.get(
    "/metadata/<id>",
    summary="Metadata of one of your stored uploads, or of a content you hold",
    security=SIGNED_IN,
    responses={
        200: _reply("The upload or the content", UploadMetadata | ContentMetadata),
        **_ERRORS,
    },
)
def get_metadata(id: IdParam) -> Response[UploadMetadata | ContentMetadata]:
    found = catalog.metadata(id, owner=_owner(), ledger=wiring.ledger())
    body: BaseModel = (
        UploadMetadata.of(found) if isinstance(found, Upload) else ContentMetadata.of(found)
    )
    return _json(HTTPStatus.OK, body.model_dump(mode="json"))


@app.get(
    "/download/<id>",
    summary="A presigned download of stored bytes you hold, under your upload's filename",
    security=SIGNED_IN,
    responses={
        200: _reply("Where to GET the bytes", DownloadResponse),
        302: {
            "description": "With redirect=true: Location is the presigned URL; the body repeats it",
            "headers": {
                "Location": {"description": "The presigned URL", "schema": {"type": "string"}}
            },
            "content": {"application/json": {"model": DownloadResponse}},
        },
        **_ERRORS,
    },
)
def get_download(
    id: IdParam,
    redirect: Annotated[bool, Query(description="Answer 302 to the URL instead of JSON")] = False,
) -> Response[DownloadResponse]:
    found = catalog.download(
        id,
        owner=_owner(),
        ledger=wiring.ledger(),
        store=wiring.store(),
        ttl_seconds=settings.download_url_ttl_seconds,
    )
    body = DownloadResponse(url=found.url, expires_at=found.expires_at, filename=found.filename)
    if redirect:
        return _json(HTTPStatus.FOUND, body.model_dump(mode="json"), {"Location": found.url})
    return _json(HTTPStatus.OK, body.model_dump(mode="json"))


_ADMIN_ERRORS: dict[int, OpenAPIResponse] = {
    401: _ERRORS[401],
    403: _reply("Signed in, but not in the admins group", ErrorResponse),
    **_THROTTLED,
}


@app.get(
    "/admin/stats",
    summary="Dedup statistics over every owner, summed over the counter shards (admins only)",
    security=SIGNED_IN,
    responses={200: _reply("The counters", StatsResponse), **_ADMIN_ERRORS},
)
def get_stats() -> Response[StatsResponse]:
    _admin()
    body = StatsResponse.of(catalog.stats(ledger=wiring.ledger()))
    return _json(HTTPStatus.OK, body.model_dump(mode="json"))


@app.get(
    "/admin/hashes",
    summary="Every stored content, a page at a time (admins only)",
    security=SIGNED_IN,
    responses={200: _reply("One page of hashes", HashPageResponse), **_ERRORS, **_ADMIN_ERRORS},
)
def list_hashes(
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size")] = 100,
    last_evaluated_key: Annotated[
        str | None, Query(max_length=512, description="Token from the previous page")
    ] = None,
) -> Response[HashPageResponse]:
    _admin()
    page = catalog.list_hashes(
        limit,
        last_evaluated_key,
        ledger=wiring.ledger(),
        secret=wiring.page_token_secret(),
    )
    body = HashPageResponse(
        items=[HashItem.of(c) for c in page.contents],
        last_evaluated_key=page.next_token,
    )
    return _json(HTTPStatus.OK, body.model_dump(mode="json"))


@app.get(
    "/admin/health",
    summary="Is ingest flowing? Queues, dead letters, the last reconciliation and collection "
    "(admins only)",
    security=SIGNED_IN,
    responses={200: _reply("The health view", HealthResponse), **_ADMIN_ERRORS},
)
def get_health() -> Response[HealthResponse]:
    _admin()
    found = health.health(
        ledger=wiring.ledger(),
        queues=wiring.queues(),
        metrics=wiring.queue_metrics(),
        grace=timedelta(seconds=settings.collection_grace_seconds),
        oldest_message_alarm_seconds=settings.oldest_message_alarm_seconds,
    )
    ops = found.operations
    body = HealthResponse(
        ok=not found.attention,
        attention=found.attention,
        ingest_queue=IngestQueueView(
            waiting=found.ingest.waiting,
            in_flight=found.ingest.in_flight,
            oldest_message_age_seconds=found.oldest_message_age_seconds,
        ),
        dead_letter_queue=QueueView(
            waiting=found.dead_letters.waiting, in_flight=found.dead_letters.in_flight
        ),
        reconciliation=ReconciliationView(
            at=ops.reconciled_at,
            clean=ops.reconcile_clean,
            drift=ops.reconcile_drift,
            repaired=ops.reconcile_repaired,
        ),
        collection=CollectionView(
            unreferenced=found.backlog.unreferenced,
            due=found.backlog.due,
            grace_seconds=settings.collection_grace_seconds,
            last_run_at=ops.collected_at,
            last_collected=ops.collected,
            last_run_complete=ops.collection_complete,
        ),
    )
    return _json(HTTPStatus.OK, body.model_dump(mode="json"))


# A Cognito sub is a UUID. Only URL-unreserved characters: Powertools matches routes on the raw
# (still percent-encoded) path, so any other character would be checked, and erased, encoded.
OwnerParam = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9._~-]{1,255}$",
        description="The owner's `sub` claim (`onecopy whoami` shows yours)",
    ),
]
# Leave this much of the function's time for the answer: the rest of the work waits for the
# next call.
_ERASE_RESERVE_MS = 3000


@app.post(
    "/admin/owners/<owner>/erase",
    summary="Delete every upload of one owner, as far as one call's time allows (admins only)",
    description="Idempotent and resumable: call again until `done`. Uploads the owner creates "
    "while it runs are deleted by a later call; disable the owner's sign-in first to stop them.",
    security=SIGNED_IN,
    responses={200: _reply("What this call did", ErasureResponse), **_ERRORS, **_ADMIN_ERRORS},
)
def erase_owner(owner: OwnerParam) -> Response[ErasureResponse]:
    who = _admin()
    context = app.lambda_context
    result = deletion.erase_owner(
        owner,
        ledger=wiring.ledger(),
        store=wiring.store(),
        has_time=lambda: context.get_remaining_time_in_millis() > _ERASE_RESERVE_MS,
    )
    logger.info(
        "erasure", extra={"erased_owner": owner, "admin": who.sub, "deleted": result.deleted}
    )
    metrics.add_metric(name="UploadsErased", unit=MetricUnit.Count, value=result.deleted)
    body = ErasureResponse(
        owner=owner,
        deleted=result.deleted,
        aborted=result.aborted,
        waiting=result.waiting,
        done=result.done,
    )
    return _json(HTTPStatus.OK, body.model_dump(mode="json"))


@app.get(
    "/auth/config",
    summary="Where and how to sign in (public)",
    responses={
        200: _reply("The token issuer and the app client to sign in with", AuthConfigResponse),
        **_THROTTLED,
    },
)
def get_auth_config() -> Response[AuthConfigResponse]:
    # Read through the cached factory, not the module's import-time copy: a local stack (or a
    # test) that creates a new user pool resets the settings, and clients must get that pool.
    config = api_settings()
    body = AuthConfigResponse(
        issuer=config.auth_issuer,
        user_pool_id=config.auth_user_pool_id,
        client_id=config.auth_client_id,
        region=config.region,
        cognito_endpoint=config.auth_cognito_endpoint,
    )
    return _json(HTTPStatus.OK, body.model_dump(mode="json"))


@app.get("/openapi.json", include_in_schema=False)
def get_openapi() -> Response[Any]:
    return Response(
        status_code=HTTPStatus.OK,
        content_type="application/json",
        body=openapi_json(),
    )


@app.get("/docs", include_in_schema=False, compress=True)
def get_docs() -> Response[str]:
    from handlers import docs

    return Response(
        status_code=HTTPStatus.OK,
        content_type="text/html",
        body=docs.swagger_page(app, _openapi_info()),
    )


@cache
def openapi_json() -> str:
    """The API's OpenAPI 3.1 document, generated from the routes and models above (once per
    environment: the routes never change)."""
    return app.get_openapi_json_schema(**_openapi_info())


def _openapi_info() -> dict[str, Any]:
    # Imported here: only the two document routes need the OpenAPI models (handlers.docs).
    from handlers import docs

    return {**OPENAPI_INFO, "security_schemes": {BEARER: docs.bearer_scheme(BEARER_DESCRIPTION)}}


# --- one place maps domain errors to HTTP --------------------------------------------------------


@app.exception_handler(InvalidInput)
def _invalid(exc: InvalidInput) -> Response[Any]:
    return _json(HTTPStatus.BAD_REQUEST, {"message": str(exc)})


@app.exception_handler(NotFound)
def _not_found(exc: NotFound) -> Response[Any]:
    return _json(HTTPStatus.NOT_FOUND, {"message": str(exc)})


@app.exception_handler(Conflict)
def _conflict(exc: Conflict) -> Response[Any]:
    return _json(HTTPStatus.CONFLICT, {"message": str(exc)})


@app.exception_handler(Unauthenticated)
def _unauthenticated(_: Unauthenticated) -> Response[Any]:
    # API Gateway's own answer to a missing or bad token, word for word.
    return _json(HTTPStatus.UNAUTHORIZED, {"message": "Unauthorized"})


@app.exception_handler(Forbidden)
def _forbidden(exc: Forbidden) -> Response[Any]:
    return _json(HTTPStatus.FORBIDDEN, {"message": str(exc)})


@app.exception_handler(TooManyPending)
def _too_many_pending(exc: TooManyPending) -> Response[Any]:
    metrics.add_metric(name="PendingCapReached", unit=MetricUnit.Count, value=1)
    return _json(
        HTTPStatus.TOO_MANY_REQUESTS,
        {"message": str(exc)},
        {"Retry-After": str(exc.retry_after_seconds)},
    )


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
        reason = errors[0].get("ctx", {}).get("error") if errors else None
        message = "request body is not valid JSON" + (f" ({reason})" if reason else "")
    else:
        where = ".".join(str(p) for p in first["loc"])
        message = f"{where}: {first['msg']}" if where else str(first["msg"])
    return _json(HTTPStatus.UNPROCESSABLE_ENTITY, {"message": message, "detail": detail})


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported_media(_: RequestUnsupportedContentType) -> Response[Any]:
    return _json(
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"message": "the body must be application/json"}
    )


@app.exception_handler(UnicodeDecodeError)
def _undecodable_body(exc: UnicodeDecodeError) -> Response[Any]:
    # A body that is not UTF-8 is not JSON; Powertools lets the decode error escape. Decoding it
    # again tells that error apart from a bug elsewhere, which must stay a 500.
    try:
        app.current_event.decoded_body  # noqa: B018
    except UnicodeDecodeError:
        issue = {"loc": ["body"], "msg": "the body is not UTF-8", "type": "json_invalid"}
        return _json(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            {"message": "request body is not valid JSON", "detail": [issue]},
        )
    raise exc


@app.exception_handler(ValueError)
def _unreadable_body(exc: ValueError) -> Response[Any]:
    # Powertools raises a bare ValueError for a multipart/form-data body without a boundary; any
    # other ValueError is a bug and must stay a 500.
    if _media_type() != "multipart/form-data":
        raise exc
    return _unsupported_media(RequestUnsupportedContentType(str(exc), errors=[]))


def _media_type() -> str:
    return app.current_event.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _allowed_methods(path: str) -> list[str]:
    # Powertools matches method and path together and calls a miss on either "not found".
    return sorted({route.method for route in _routes() if route.rule.match(path)})


@app.not_found
def _no_route(_: Exception) -> Response[Any]:
    allowed = _allowed_methods(app.current_event.path)
    if allowed:
        return _json(
            HTTPStatus.METHOD_NOT_ALLOWED,
            {"message": f"method {app.current_event.http_method} not allowed here"},
            {"Allow": ", ".join(allowed)},
        )
    return _json(HTTPStatus.NOT_FOUND, {"message": "no such route"})


def _not_http_api(error: ValidationError) -> dict[str, Any]:
    # A misrouted event (a REST API, a test invoke, another service) has no request to answer;
    # say so in the shape both API Gateway payload formats accept, rather than crash.
    logger.warning("not an HTTP API request", extra={"errors": error.errors(include_input=False)})
    return {
        "statusCode": HTTPStatus.BAD_REQUEST,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(
            {"message": "not an API Gateway HTTP API request (payload format version 2.0)"}
        ),
        "isBase64Encoded": False,
    }


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    try:
        HttpApiEvent.model_validate(event)
    except ValidationError as error:
        return _not_http_api(error)
    return app.resolve(event, context)
