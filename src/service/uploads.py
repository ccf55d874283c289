"""Creating uploads and reading their state: what the HTTP API does."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from adapters.dynamodb import Applied, Ledger
from adapters.s3 import ObjectStore, PresignedPut
from domain.errors import AlreadyHeld, NotFound
from domain.model import (
    Upload,
    UploadStatus,
    is_upload_id,
    new_upload_id,
    staging_key,
    validate_content_type,
    validate_filename,
    validate_size,
)
from service.clock import utcnow


@dataclass(frozen=True, slots=True)
class NewUpload:
    upload: Upload
    put: PresignedPut
    expires_at: datetime


def create_upload(
    *,
    owner: str,
    filename: str,
    size: int,
    content_type: str | None,
    sha256: str | None,
    ledger: Ledger,
    store: ObjectStore,
    url_ttl_seconds: int,
) -> NewUpload:
    """Record a PENDING upload and presign the one PUT that may fill it.

    When the client declares a hash this owner already holds, nothing needs uploading: the
    request is recorded as a DUPLICATE upload (so counters and reconciliation see it) and
    AlreadyHeld is raised. Only the caller's own holdings are consulted, so the answer never
    tells whether someone else holds the content.
    """
    now = utcnow()
    upload = Upload(
        upload_id=new_upload_id(),
        owner=owner,
        filename=validate_filename(filename),
        size=validate_size(size),
        content_type=validate_content_type(content_type),
        created_at=now,
        declared_sha256=sha256,
    )
    if sha256 is not None:
        held = ledger.find_held(owner, sha256)
        if held is not None:
            duplicate = replace(
                upload, status=UploadStatus.DUPLICATE, sha256=sha256, completed_at=now
            )
            if ledger.record_held_duplicate(duplicate) is Applied.APPLIED:
                raise AlreadyHeld(held, duplicate.upload_id)
            # The content record was missing (cannot happen while contents are never deleted):
            # fall through to a normal upload rather than answer with a stale holding.
    ledger.create_upload(upload)
    put = store.presign_put(
        staging_key(upload.upload_id),
        size=upload.size,
        content_type=upload.content_type,
        sha256=sha256,
        expires_in=url_ttl_seconds,
    )
    return NewUpload(upload=upload, put=put, expires_at=now + timedelta(seconds=url_ttl_seconds))


def get_upload(upload_id: str, *, ledger: Ledger) -> Upload:
    upload = ledger.get_upload(upload_id) if is_upload_id(upload_id) else None
    if upload is None:
        raise NotFound(f"no upload {upload_id}")
    return upload
