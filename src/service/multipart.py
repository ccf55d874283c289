"""Uploads that arrive in parts: presigned part URLs, resuming, completing and aborting.

S3 does the heavy lifting; the service only hands out URLs for this upload's own S3 multipart id
(a client can never name another upload's parts), checks the completion list against the plan
made at creation, and translates S3's answers into the domain's.
"""

from __future__ import annotations

from adapters.dynamodb import Ledger
from adapters.s3 import MultipartResult, ObjectStore, PresignedPut, UploadedPart
from domain.access import owned
from domain.errors import Conflict, InvalidInput
from domain.model import Upload, is_upload_id, staging_key
from domain.multipart import MultipartState, check_completion, check_part_numbers
from service import clock

_S3_REFUSALS = {
    MultipartResult.INVALID_PART: "a part is missing or its ETag is not the one S3 returned",
    MultipartResult.INVALID_PART_ORDER: "parts must be listed in ascending part number order",
    MultipartResult.ENTITY_TOO_SMALL: "every part but the last must be at least 5 MiB",
}


def _pending_multipart(upload_id: str, owner: str, ledger: Ledger) -> tuple[Upload, MultipartState]:
    """The caller's pending multipart upload; another owner's answers as an unknown id, before
    anything about its state is told."""
    found = ledger.get_multipart_upload(upload_id) if is_upload_id(upload_id) else None
    upload = owned(found[0] if found else None, owner, upload_id)
    state = found[1] if found else None
    if upload.status.terminal:
        raise Conflict(f"upload {upload_id} is already {upload.status.value}")
    if state is None:
        raise Conflict(f"upload {upload_id} is a single PUT, not a multipart upload")
    if state.assembled:
        raise Conflict(f"upload {upload_id} was already completed")
    return upload, state


def presign_parts(
    upload_id: str,
    part_numbers: list[int],
    *,
    owner: str,
    ledger: Ledger,
    store: ObjectStore,
    ttl_seconds: int,
) -> list[tuple[int, PresignedPut]]:
    upload, state = _pending_multipart(upload_id, owner, ledger)
    numbers = check_part_numbers(part_numbers, state.plan)
    key = staging_key(upload_id)
    return [
        (
            n,
            store.presign_part(
                key,
                state.s3_upload_id,
                n,
                size=state.plan.size_of(n, upload.size),
                expires_in=ttl_seconds,
            ),
        )
        for n in numbers
    ]


def uploaded_parts(
    upload_id: str, *, owner: str, ledger: Ledger, store: ObjectStore
) -> list[UploadedPart]:
    _, state = _pending_multipart(upload_id, owner, ledger)
    parts = store.list_parts(staging_key(upload_id), state.s3_upload_id)
    if parts is None:
        raise Conflict(f"upload {upload_id} was already completed or aborted")
    return parts


def complete(
    upload_id: str,
    parts: list[tuple[int, str]],
    *,
    owner: str,
    ledger: Ledger,
    store: ObjectStore,
) -> Upload:
    """Ask S3 to assemble the parts; the worker takes it from there (the upload stays PENDING)."""
    upload, state = _pending_multipart(upload_id, owner, ledger)
    ordered = check_completion(parts, state.plan)
    result = store.complete_multipart(staging_key(upload_id), state.s3_upload_id, ordered)
    if result is MultipartResult.GONE:
        raise Conflict(f"upload {upload_id} was already completed or aborted")
    if result is not MultipartResult.COMPLETED:
        raise InvalidInput(_S3_REFUSALS[result])
    if not ledger.mark_assembled(upload_id, clock.utcnow()):
        # S3 answers a repeated completion with success; the marker is what makes it a 409.
        raise Conflict(f"upload {upload_id} was already completed")
    return upload
