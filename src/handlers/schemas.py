"""The HTTP contract: request and response bodies, validated by pydantic at the edge."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictInt,
    field_validator,
    model_serializer,
)

from domain.errors import InvalidInput
from domain.model import (
    _CONTENT_TYPE_RE,  # the one definition of a valid MIME type
    MAX_CONTENT_TYPE_LENGTH,
    MAX_FILENAME_LENGTH,
    MAX_SINGLE_PUT_SIZE,
    SHA256_PATTERN,
    Content,
    Holding,
    StatsDelta,
    Upload,
    UploadStatus,
    validate_content_type,
    validate_filename,
)
from domain.multipart import MAX_OBJECT_SIZE, MAX_PARTS, MAX_PARTS_PER_REQUEST


def _integral(value: object) -> object:
    # JSON Schema's "integer" includes 3.0, and clients may send it; 3.5 still fails StrictInt.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


JsonInt = Annotated[StrictInt, BeforeValidator(_integral)]

# The spec states the domain's text rules (validate_filename, validate_content_type) so a client
# can tell a valid body from the document alone; the domain rules stay the authority.
# A filename: no control characters (Cc), and at least one character that is not whitespace.
_NO_CONTROL = r"[^\x00-\x1f\x7f-\x9f]"
_NOT_BLANK = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
FILENAME_PATTERN = rf"^{_NO_CONTROL}*{_NOT_BLANK}{_NO_CONTROL}*$"
CONTENT_TYPE_PATTERN = _CONTENT_TYPE_RE.pattern

Sha256 = Annotated[
    str, Field(pattern=SHA256_PATTERN, description="SHA-256 as 64 lowercase hex characters")
]


class _OnSomeRoutes(BaseModel):
    """A body only the multipart or admin routes read or answer: built on the first request of
    one of them (defer_build), so a cold start serving any other route skips building it."""

    model_config = ConfigDict(defer_build=True)


# What an owner can see: a deleted upload (UploadStatus.DELETED) answers 404, never a status.
VisibleStatus = Literal["PENDING", "STORED", "DUPLICATE", "REJECTED"]


class CreateUploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(
        min_length=1,
        max_length=MAX_FILENAME_LENGTH,
        pattern=FILENAME_PATTERN,
        description="No control characters, and not only whitespace",
    )
    size: JsonInt = Field(
        ge=0,
        le=MAX_OBJECT_SIZE,
        description=(
            f"Bytes; at most {MAX_OBJECT_SIZE} (5 TiB, S3's object limit). Above the multipart "
            f"threshold (default 100 MiB) and always above {MAX_SINGLE_PUT_SIZE} (5 GiB, the "
            "single-PUT limit) the upload goes in parts"
        ),
    )
    content_type: str | None = Field(
        default=None,
        max_length=MAX_CONTENT_TYPE_LENGTH,
        pattern=CONTENT_TYPE_PATTERN,
        description="A MIME type such as application/pdf (default application/octet-stream)",
    )
    sha256: Sha256 | None = None
    multipart: StrictBool = Field(default=False, description="Upload in parts whatever the size")

    @field_validator("filename")
    @classmethod
    def _filename(cls, value: str) -> str:
        try:
            return validate_filename(value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None

    @field_validator("content_type")
    @classmethod
    def _content_type(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return validate_content_type(value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None


class PutInstructions(BaseModel):
    method: Literal["PUT"] = "PUT"
    url: str
    headers: dict[str, str] = Field(description="Send exactly these headers with the PUT")


class MultipartInstructions(BaseModel):
    part_size: int = Field(description="Bytes in every part but the last")
    part_count: int


class CreateUploadResponse(BaseModel):
    upload_id: str
    status: VisibleStatus
    upload: PutInstructions | None = Field(
        default=None, description="For a single PUT: where and how to send the bytes"
    )
    multipart: MultipartInstructions | None = Field(
        default=None, description="For an upload in parts: ask POST /uploads/{id}/parts for URLs"
    )
    expires_at: datetime

    @model_serializer(mode="wrap")
    def _omit_other_mode(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        return {k: v for k, v in handler(self).items() if v is not None}


class PartsRequest(_OnSomeRoutes):
    model_config = ConfigDict(extra="forbid")
    part_numbers: list[JsonInt] = Field(min_length=1, max_length=MAX_PARTS_PER_REQUEST)


class PartUrl(_OnSomeRoutes):
    part_number: int
    url: str
    headers: dict[str, str] = Field(description="Send exactly these headers with the PUT")


class PartsResponse(_OnSomeRoutes):
    parts: list[PartUrl]


class UploadedPartView(_OnSomeRoutes):
    part_number: int
    etag: str
    size: int


class UploadedPartsResponse(_OnSomeRoutes):
    parts: list[UploadedPartView]


class CompletedPart(_OnSomeRoutes):
    model_config = ConfigDict(extra="forbid")
    part_number: JsonInt = Field(ge=1, le=MAX_PARTS)
    etag: str = Field(
        min_length=1, max_length=1024, description="The ETag S3 returned for the part"
    )


class CompleteRequest(_OnSomeRoutes):
    model_config = ConfigDict(extra="forbid")
    parts: list[CompletedPart] = Field(min_length=1, max_length=MAX_PARTS)


class UploadView(BaseModel):
    upload_id: str
    status: VisibleStatus = Field(
        description="PENDING: waiting for the bytes. STORED: you now hold this content (whether "
        "its bytes were stored or matched a copy already kept). DUPLICATE: you already held it. "
        "REJECTED: see reason"
    )
    filename: str
    size: int
    content_type: str
    created_at: datetime
    sha256: str | None = None
    completed_at: datetime | None = None
    reason: str | None = Field(default=None, description="Why a REJECTED upload was rejected")

    @model_serializer(mode="wrap")
    def _omit_unknown(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        # Fields not known yet are left out rather than sent as null.
        return {k: v for k, v in handler(self).items() if v is not None}

    @classmethod
    def of(cls, upload: Upload) -> UploadView:
        return cls(
            upload_id=upload.upload_id,
            status=upload.status,
            filename=upload.filename,
            size=upload.size,
            content_type=upload.content_type,
            created_at=upload.created_at,
            sha256=upload.sha256,
            completed_at=upload.completed_at,
            reason=upload.reason.value if upload.reason else None,
        )


class HeldFile(BaseModel):
    upload_id: str
    filename: str
    size: int
    content_type: str
    sha256: str
    created_at: datetime = Field(description="When you first held this content")


class AlreadyHeldResponse(BaseModel):
    message: str
    upload_id: str = Field(description="The DUPLICATE upload recorded for this request")
    status: Literal[UploadStatus.DUPLICATE] = UploadStatus.DUPLICATE
    held: HeldFile


class ErrorResponse(BaseModel):
    message: str


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorResponse(BaseModel):
    message: str
    detail: list[ValidationIssue]


class UploadMetadata(BaseModel):
    upload_id: str
    filename: str
    size: int
    content_type: str
    status: VisibleStatus
    sha256: str
    duplicate: bool = Field(description="You already held this content when it was uploaded")
    created_at: datetime
    completed_at: datetime

    @classmethod
    def of(cls, upload: Upload) -> UploadMetadata:
        # Only held uploads have metadata, and they always know their content and end.
        assert upload.completed_at is not None and upload.sha256 is not None
        return cls(
            upload_id=upload.upload_id,
            filename=upload.filename,
            size=upload.size,
            content_type=upload.content_type,
            status=upload.status,
            sha256=upload.sha256,
            duplicate=upload.duplicate,
            created_at=upload.created_at,
            completed_at=upload.completed_at,
        )


class HashItem(_OnSomeRoutes):
    sha256: str
    size: int
    content_type: str
    upload_count: int = Field(
        description="Live uploads of this content, by anyone (0: unreferenced, awaiting collection)"
    )
    created_at: datetime

    @classmethod
    def of(cls, content: Content) -> HashItem:
        return cls(
            sha256=content.sha256,
            size=content.size,
            content_type=content.content_type,
            upload_count=content.upload_count,
            created_at=content.created_at,
        )


class ContentMetadata(BaseModel):
    """A content as its owner holds it: their own first upload, name and count, no one else's."""

    sha256: str
    size: int
    content_type: str
    filename: str = Field(description="The name of your first upload of it")
    upload_id: str = Field(
        description="Your first upload of it (it may since have been deleted: your other "
        "uploads of it keep the content)"
    )
    upload_count: int = Field(
        description="Your live uploads of it (409 pre-checks included, deleted ones not)"
    )
    created_at: datetime = Field(description="When you first held it")

    @classmethod
    def of(cls, holding: Holding) -> ContentMetadata:
        return cls(
            sha256=holding.sha256,
            size=holding.size,
            content_type=holding.content_type,
            filename=holding.filename,
            upload_id=holding.upload_id,
            upload_count=holding.upload_count,
            created_at=holding.created_at,
        )


class AuthConfigResponse(BaseModel):
    """What a client needs to sign in (Cognito InitiateAuth against cognito_endpoint)."""

    issuer: str = Field(description="The `iss` of the tokens the API accepts")
    user_pool_id: str = Field(description="Empty when the API trusts another OIDC issuer")
    client_id: str = Field(description="The app client to sign in with (no secret)")
    region: str
    cognito_endpoint: str = Field(
        description="Where to POST InitiateAuth (USER_PASSWORD_AUTH, REFRESH_TOKEN_AUTH); empty "
        "when the API trusts another OIDC issuer"
    )


class DownloadResponse(BaseModel):
    url: str = Field(description="Presigned GET of the stored bytes, saved under `filename`")
    expires_at: datetime
    filename: str


class StatsResponse(_OnSomeRoutes):
    total_files: int = Field(
        description="Distinct contents held now: stored, and referenced by at least one live "
        "(not deleted) upload"
    )
    total_uploads: int = Field(description="Live uploads: STORED or DUPLICATE, not deleted")
    duplicates_avoided: int = Field(
        description="Cumulative: every upload that ever ended held without a new copy, whoever "
        "held the bytes (a STORED upload that matched another owner's content counts too), 409 "
        "pre-checks included; deleting an upload does not undo the duplicate it avoided"
    )
    total_s3_size_saved: int = Field(
        description="Bytes saved now: the live uploads' bytes minus total_bytes_stored"
    )
    total_bytes_stored: int = Field(
        description="Bytes of the contents held now, each counted once (unreferenced contents "
        "awaiting collection are not counted)"
    )

    @classmethod
    def of(cls, totals: StatsDelta) -> StatsResponse:
        return cls(
            total_files=totals.files,
            total_uploads=totals.uploads,
            duplicates_avoided=totals.duplicates,
            total_s3_size_saved=totals.bytes_saved,
            total_bytes_stored=totals.bytes_stored,
        )


class UploadPageResponse(BaseModel):
    items: list[UploadView]
    last_evaluated_key: str | None = Field(
        description="Opaque token for the next page; null on the last page"
    )


class ErasureResponse(_OnSomeRoutes):
    owner: str
    deleted: int = Field(description="Uploads this call deleted (aborted ones included)")
    aborted: int = Field(description="Of those, uploads that were still PENDING")
    waiting: int = Field(
        description="Uploads whose bytes are being stored right now; a later call deletes them"
    )
    done: bool = Field(
        description="One whole pass deleted the last upload it found and nothing is waiting"
    )


class QueueView(_OnSomeRoutes):
    waiting: int = Field(description="Messages not yet received (SQS's approximate count)")
    in_flight: int = Field(description="Received and not yet deleted: being processed or retried")


class IngestQueueView(QueueView):
    oldest_message_age_seconds: float | None = Field(
        description="The oldest waiting message's age, from the CloudWatch metric SQS publishes "
        "each minute; null when there is no recent datapoint"
    )


class ReconciliationView(_OnSomeRoutes):
    at: datetime | None = Field(description="When it last ran; null if never")
    clean: bool | None = Field(description="Counters and reference counts matched the tables")
    drift: int | None = Field(description="The sum of every difference it found")
    repaired: bool | None


class CollectionView(_OnSomeRoutes):
    unreferenced: int = Field(
        description="Contents nobody references any more (kept for the grace period)"
    )
    due: int = Field(description="Of those, past their grace period: the next run's work")
    grace_seconds: int
    last_run_at: datetime | None = Field(description="When the collector last ran")
    last_collected: int | None = Field(description="Contents its last run removed")
    last_run_complete: bool | None = Field(
        description="False when the last run stopped for time (the next one goes on)"
    )


class HealthResponse(_OnSomeRoutes):
    ok: bool = Field(description="Nothing below needs attention")
    attention: list[str] = Field(description="What to look at, each naming its alarm")
    ingest_queue: IngestQueueView
    dead_letter_queue: QueueView
    reconciliation: ReconciliationView
    collection: CollectionView


class HashPageResponse(_OnSomeRoutes):
    items: list[HashItem]
    last_evaluated_key: str | None = Field(
        description="Opaque token for the next page; null on the last page"
    )
