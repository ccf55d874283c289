"""Creating uploads and reading their state: what the HTTP API does."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from adapters.dynamodb import Ledger
from adapters.s3 import ObjectStore, PresignedPut
from domain.access import check_pending_cap, owned
from domain.errors import Conflict, NotFound
from domain.lifecycle import Applied
from domain.model import (
    MAX_SINGLE_PUT_SIZE,
    AlreadyHeld,
    RejectReason,
    Upload,
    UploadStatus,
    complete,
    held_duplicate,
    is_upload_id,
    new_upload_id,
    staging_key,
    validate_content_type,
    validate_filename,
    validate_size,
)
from domain.multipart import MultipartState, PartPlan, plan_parts
from domain.ports import LedgerPort, ObjectStorePort
from service import clock


@dataclass(frozen=True, slots=True)
class NewUpload:
    upload: Upload
    expires_at: datetime
    put: PresignedPut | None = None  # a single PUT ...
    multipart: PartPlan | None = None  # ... or parts, presigned on request


@dataclass(frozen=True, slots=True)
class UploadPolicy:
    """Tunables of upload creation (validated settings, passed in by the handler)."""

    url_ttl_seconds: int
    multipart_threshold: int
    part_size: int
    max_pending: int  # per owner


# S3's lifecycle rule aborts incomplete multipart uploads a day after they start.
MULTIPART_LIFETIME = timedelta(days=1)


def create_upload(
    *,
    owner: str,
    filename: str,
    size: int,
    content_type: str | None,
    sha256: str | None,
    multipart: bool,
    policy: UploadPolicy,
    ledger: Ledger,
    store: ObjectStore,
) -> NewUpload:
    """Record a PENDING upload and presign the one PUT that may fill it, or start it in parts.

    Sizes above the multipart threshold (and any size when the client asks) go in parts: S3's
    single PUT stops at 5 GiB, and parts can be retried and resumed one by one.

    When the client declares a hash this owner already holds, nothing needs uploading: the
    request is recorded as a DUPLICATE upload (so counters and reconciliation see it) and
    AlreadyHeld is raised. Only the caller's own holding is consulted: a hash that only someone
    else holds gets a normal upload, exactly like unknown content, and counts nothing until its
    bytes arrive and S3 has verified them. A hash alone is never proof of possession.

    Beyond `policy.max_pending` uploads waiting for bytes, TooManyPending is raised before
    anything is written. The count comes from a GSI (eventually consistent), so concurrent
    creates can overshoot the cap by at most their number.
    """
    now = clock.utcnow()
    in_parts = multipart or size > min(policy.multipart_threshold, MAX_SINGLE_PUT_SIZE)
    plan = plan_parts(size, policy.part_size) if in_parts else None
    # Parts are presigned on request until S3's lifecycle rule aborts the multipart upload.
    expires_at = now + (
        MULTIPART_LIFETIME if in_parts else timedelta(seconds=policy.url_ttl_seconds)
    )
    upload = Upload(
        upload_id=new_upload_id(),
        owner=owner,
        filename=validate_filename(filename),
        size=size if in_parts else validate_size(size),
        content_type=validate_content_type(content_type),
        created_at=now,
        declared_sha256=sha256,
        url_expires_at=expires_at,
    )
    if sha256 is not None:
        held = ledger.get_holding(owner, sha256)
        if held is not None:
            duplicate = held_duplicate(upload, held, now)
            if ledger.record_held_duplicate(duplicate) is Applied.APPLIED:
                raise AlreadyHeld(held, duplicate.upload_id)
            # The owner deleted their last upload of it since the read: fall through to a
            # normal upload rather than answer from a stale read.
    # A held duplicate waits for no bytes, so only a real upload is subject to the cap.
    check_pending_cap(
        ledger.count_pending(owner, now),
        policy.max_pending,
        retry_after_seconds=policy.url_ttl_seconds,
    )
    key = staging_key(upload.upload_id)
    if plan is not None:
        s3_upload_id = store.start_multipart(key, content_type=upload.content_type)
        ledger.create_upload(upload, MultipartState(s3_upload_id, plan))
        return NewUpload(upload=upload, expires_at=expires_at, multipart=plan)
    ledger.create_upload(upload)
    put = store.presign_put(
        key,
        size=upload.size,
        content_type=upload.content_type,
        sha256=sha256,
        expires_in=policy.url_ttl_seconds,
    )
    return NewUpload(upload=upload, put=put, expires_at=expires_at)


def get_upload(upload_id: str, *, owner: str, ledger: LedgerPort) -> Upload:
    """The caller's own upload; another owner's answers exactly as an unknown id."""
    return owned(
        ledger.get_upload(upload_id) if is_upload_id(upload_id) else None, owner, upload_id
    )


# GET /uploads/{id}?wait=N: the longest a client may ask to wait. API Gateway ends an HTTP API
# integration at 30 s and the function's timeout (template.yaml) leaves room for the last read.
MAX_WAIT_SECONDS = 20
# Reads while waiting: soon at first (most uploads finish within a second of their PUT), then
# at most one a second, so a 20 s wait costs about 24 reads, not a client's busy polling.
_FIRST_WAIT_READ_SECONDS = 0.1
_WAIT_READ_BACKOFF = 1.5
_MAX_WAIT_READ_SECONDS = 1.0


def wait_read_delays() -> Iterator[float]:
    """The pauses between a waiting GET's reads of the upload (the cost model reads them too)."""
    delay = _FIRST_WAIT_READ_SECONDS
    while True:
        yield delay
        delay = min(delay * _WAIT_READ_BACKOFF, _MAX_WAIT_READ_SECONDS)


def await_upload(upload_id: str, *, owner: str, ledger: LedgerPort, seconds: float) -> Upload:
    """The caller's upload as soon as it is terminal, or as it is when ``seconds`` have passed.

    Reads the ledger, never anything the worker writes elsewhere, so waiting changes nothing; an
    upload deleted while waited on answers 404 as an unknown id, as a fresh GET would.
    """
    upload = get_upload(upload_id, owner=owner, ledger=ledger)
    deadline = clock.monotonic() + max(seconds, 0.0)
    delays = wait_read_delays()
    while not upload.status.terminal:
        remaining = deadline - clock.monotonic()
        if remaining <= 0:
            break
        clock.sleep(min(next(delays), remaining))
        upload = get_upload(upload_id, owner=owner, ledger=ledger)
    return upload


def abort_pending(
    upload: Upload, state: MultipartState | None, *, ledger: LedgerPort, store: ObjectStorePort
) -> Upload:
    """Give up on a pending upload: REJECTED (aborted), parts discarded, nothing counted.

    The guarded transition is the same one the worker uses, so an abort racing the worker ends
    in exactly one of the two outcomes, never both. Conflict once the upload is terminal, or once
    a worker claimed it (its bytes are being stored).
    """
    upload_id = upload.upload_id
    if upload.status.terminal:
        raise Conflict(f"upload {upload_id} is already {upload.status.value}")
    key = staging_key(upload_id)
    if state is not None and not state.assembled:
        store.abort_multipart(key, state.s3_upload_id)
    aborted = complete(upload, UploadStatus.REJECTED, clock.utcnow(), reason=RejectReason.ABORTED)
    if ledger.record_rejected(aborted) is not Applied.APPLIED:
        current = ledger.get_upload(upload_id)
        if current is None:
            raise NotFound(f"no upload {upload_id}")
        if current.status is UploadStatus.PENDING:
            raise Conflict(f"upload {upload_id} is being stored right now; try again shortly")
        raise Conflict(f"upload {upload_id} is already {current.status.value}")
    # Bytes that already arrived go now; the worker would also remove them on its delivery.
    store.delete(key)
    return aborted


def abort_upload(
    upload_id: str, *, owner: str, ledger: LedgerPort, store: ObjectStorePort
) -> Upload:
    """Abort the caller's pending upload (another owner's answers as an unknown id)."""
    found = ledger.get_multipart_upload(upload_id) if is_upload_id(upload_id) else None
    upload = owned(found[0] if found else None, owner, upload_id)
    return abort_pending(upload, found[1] if found else None, ledger=ledger, store=store)
