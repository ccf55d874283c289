"""Uploads, contents and the decisions the worker makes about them.

Invariants the rest of the system relies on (and the tests check):

1. A content is stored under a key derived only from its SHA-256, so two copies of the same
   bytes can only ever land on the same key.
2. An upload leaves PENDING exactly once, for exactly one terminal state; every counter change
   is tied to that one transition and happens in the same atomic write.
3. A content record is only written after its object exists under the content key.
4. What an upload's status says is relative to its owner alone: STORED means "the owner now holds
   this content" (whether its bytes were promoted or matched a content someone else stored),
   DUPLICATE means "the owner already held it". Nothing an owner is told depends on what other
   owners hold; the admin counters still count every deduplication.
5. References are counted: a content's upload_count is the number of live (STORED or DUPLICATE,
   not deleted) uploads of it, a holding's the number of its owner's. A content whose count
   reaches 0 stays LIVE (and can be matched again) for a grace period, then the collector marks it
   COLLECTING (from then on nothing may reference it), removes its object and leaves a GONE
   tombstone whose generation fences any copy made before the removal (domain.lifecycle).
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
import uuid
import zlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from domain.errors import DomainError, InvalidInput

STAGING_PREFIX = "staging/"
CONTENT_PREFIX = "cas/sha256/"

# A single PUT (and a single CopyObject) stops at 5 GiB in S3.
MAX_SINGLE_PUT_SIZE = 5 * 1024**3
MAX_FILENAME_LENGTH = 255
MAX_CONTENT_TYPE_LENGTH = 255
DEFAULT_CONTENT_TYPE = "application/octet-stream"
# How long a PENDING upload outlives its last upload URL before DynamoDB's TTL removes it: longer
# than the queue's 4-day retention, so no event for its bytes can still be waiting by then.
PENDING_RETENTION = timedelta(days=5)

UPLOAD_ID_PATTERN = r"^[0-9a-f]{32}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
# Where an id may name either an upload or a content.
UPLOAD_OR_SHA256_PATTERN = r"^(?:[0-9a-f]{32}|[0-9a-f]{64})$"
_UPLOAD_ID_RE = re.compile(UPLOAD_ID_PATTERN)
_SHA256_RE = re.compile(SHA256_PATTERN)
# type "/" subtype, then optional parameters; RFC 6838 token characters only. The value ends up
# in HTTP headers (the signed PUT, downloads), so the only whitespace is spaces and tabs, and a
# quoted value holds visible ASCII: a CR or LF here would split a header in two.
_CONTENT_TYPE_RE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
    r"([ \t]*;[ \t]*[A-Za-z0-9!#$&^_.+-]+="
    r"(\"[ \t\x21\x23-\x5b\x5d-\x7e]*\"|[A-Za-z0-9!#$&^_.+-]+))*$"
)


class UploadStatus(StrEnum):
    PENDING = "PENDING"
    STORED = "STORED"
    DUPLICATE = "DUPLICATE"
    REJECTED = "REJECTED"
    # Deleted by its owner after it ended held by a deduplication: kept as a small tombstone
    # (no owner, no name) so that reconciliation can still count the duplicate it avoided. Never
    # shown to anyone; every other deleted upload leaves nothing behind.
    DELETED = "DELETED"

    @property
    def terminal(self) -> bool:
        return self is not UploadStatus.PENDING

    @property
    def held(self) -> bool:
        """The upload ended with its owner holding the content."""
        return self in (UploadStatus.STORED, UploadStatus.DUPLICATE)


class RejectReason(StrEnum):
    SIZE_MISMATCH = "size_mismatch"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    ABORTED = "aborted"  # the client gave up (DELETE /uploads/{id}) before the bytes were decided


class ContentState(StrEnum):
    """Where a content is in its life; only a LIVE content may gain a reference."""

    LIVE = "LIVE"  # its object exists under its content key
    COLLECTING = "COLLECTING"  # unreferenced past the grace period; the collector is removing it
    GONE = "GONE"  # its object was removed: a tombstone whose generation fences re-stores


# --- identifiers and keys ----------------------------------------------------------------------


def new_upload_id() -> str:
    return uuid.uuid4().hex


def is_upload_id(value: str) -> bool:
    return bool(_UPLOAD_ID_RE.fullmatch(value))


def is_sha256(value: str) -> bool:
    return bool(_SHA256_RE.fullmatch(value))


def staging_key(upload_id: str) -> str:
    return f"{STAGING_PREFIX}{upload_id}"


def upload_id_from_staging_key(key: str) -> str | None:
    """The upload a staging key belongs to, or None for any key the API never hands out."""
    if not key.startswith(STAGING_PREFIX):
        return None
    upload_id = key[len(STAGING_PREFIX) :]
    return upload_id if is_upload_id(upload_id) else None


def content_key(sha256: str) -> str:
    if not is_sha256(sha256):
        raise ValueError(f"not a lowercase hex SHA-256: {sha256!r}")
    return f"{CONTENT_PREFIX}{sha256}"


def stats_shard(upload_id: str, shards: int) -> int:
    """A stable shard per upload, so a retried transition always targets the same counter item."""
    return zlib.crc32(upload_id.encode()) % shards


def sha256_hex_to_b64(sha256: str) -> str:
    return base64.b64encode(bytes.fromhex(sha256)).decode()


def sha256_b64_to_hex(value: str) -> str | None:
    """Decode an S3 ChecksumSHA256 value; None when it is not a plain 32-byte digest."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


# --- input rules -------------------------------------------------------------------------------


def validate_filename(filename: str) -> str:
    if not filename or not filename.strip():
        raise InvalidInput("filename must not be empty")
    if len(filename) > MAX_FILENAME_LENGTH:
        raise InvalidInput(f"filename must be at most {MAX_FILENAME_LENGTH} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in filename):
        raise InvalidInput("filename must not contain control characters")
    return filename


def validate_content_type(content_type: str | None) -> str:
    if content_type is None:
        return DEFAULT_CONTENT_TYPE
    if len(content_type) > MAX_CONTENT_TYPE_LENGTH or not _CONTENT_TYPE_RE.fullmatch(content_type):
        raise InvalidInput("content_type must be a MIME type such as application/pdf")
    return content_type


def validate_size(size: int, limit: int = MAX_SINGLE_PUT_SIZE) -> int:
    if size < 0:
        raise InvalidInput("size must not be negative")
    if size > limit:
        raise InvalidInput(f"size exceeds the single-upload limit of {limit} bytes (5 GiB)")
    return size


# --- entities ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Upload:
    upload_id: str
    owner: str
    filename: str
    size: int
    content_type: str
    created_at: datetime
    declared_sha256: str | None = None
    status: UploadStatus = UploadStatus.PENDING
    sha256: str | None = None
    completed_at: datetime | None = None
    reason: RejectReason | None = None
    # While PENDING: when the last URL that can fill it expires (the per-owner cap counts only
    # uploads that can still receive bytes). Not kept once the upload completes.
    url_expires_at: datetime | None = None
    # Ended held without a new copy (verdict MATCH, REVIVE or DUPLICATE): a duplicate avoided.
    # None when unknown: uploads completed before the flag was recorded (see
    # domain.lifecycle.was_deduplicated).
    deduplicated: bool | None = None

    @property
    def duplicate(self) -> bool:
        return self.status is UploadStatus.DUPLICATE


@dataclass(frozen=True, slots=True)
class Holding:
    """One content as one owner holds it: what the owner may see of it, and nothing more."""

    owner: str
    sha256: str
    upload_id: str  # the upload that first gave the owner this content
    size: int
    filename: str
    content_type: str
    created_at: datetime
    upload_count: int  # the owner's own uploads of this content (never anyone else's)


class AlreadyHeld(DomainError):
    """The caller already holds this content: nothing needs uploading.

    Defined beside Holding, which it carries, so that domain.errors needs nothing from here.
    """

    def __init__(self, held: Holding, upload_id: str) -> None:
        super().__init__("content already stored for this owner")
        self.held = held
        self.upload_id = upload_id


@dataclass(frozen=True, slots=True)
class Content:
    sha256: str
    size: int
    content_type: str
    created_at: datetime
    last_uploaded_at: datetime
    upload_count: int  # live uploads of it, every owner's: its reference count
    first_upload_id: str
    state: ContentState = ContentState.LIVE
    # When upload_count last reached 0 (only while LIVE and unreferenced): the grace starts here.
    zero_since: datetime | None = None
    # Incremented by every store of the content's bytes, so that a store over a GONE tombstone
    # can require the very tombstone it read (a copy made before a collection is never trusted).
    generation: int = 0
    # While COLLECTING: until when the collector run that marked it may still be running (its
    # Lambda deadline plus a margin). No other run touches the object before then.
    collecting_until: datetime | None = None

    @property
    def referenced(self) -> bool:
        return self.upload_count > 0

    @property
    def key(self) -> str:
        return content_key(self.sha256)


@dataclass(frozen=True, slots=True)
class ObjectFacts:
    """What the worker learned about the bytes in staging."""

    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class StatsDelta:
    """How one terminal transition moves the dedup counters."""

    files: int = 0
    uploads: int = 0
    duplicates: int = 0
    bytes_saved: int = 0
    bytes_stored: int = 0

    def __add__(self, other: StatsDelta) -> StatsDelta:
        return StatsDelta(
            self.files + other.files,
            self.uploads + other.uploads,
            self.duplicates + other.duplicates,
            self.bytes_saved + other.bytes_saved,
            self.bytes_stored + other.bytes_stored,
        )


# --- decisions ---------------------------------------------------------------------------------


def check_bytes(upload: Upload, facts: ObjectFacts) -> RejectReason | None:
    """Do the bytes that arrived match what the client declared? None when they do."""
    if facts.size != upload.size:
        return RejectReason.SIZE_MISMATCH
    if upload.declared_sha256 is not None and facts.sha256 != upload.declared_sha256:
        return RejectReason.CHECKSUM_MISMATCH
    return None


def complete(
    upload: Upload,
    status: UploadStatus,
    at: datetime,
    *,
    sha256: str | None = None,
    reason: RejectReason | None = None,
    deduplicated: bool = False,
) -> Upload:
    """The upload's one transition out of PENDING."""
    if upload.status.terminal:
        raise ValueError(f"upload {upload.upload_id} is already {upload.status}")
    if not status.terminal or status is UploadStatus.DELETED:
        raise ValueError("an upload can only complete into a terminal state it can end in")
    if deduplicated and not status.held:
        raise ValueError("only a held upload can have avoided a duplicate")
    if (status is UploadStatus.REJECTED) != (reason is not None):
        raise ValueError("a reason is given exactly when the upload is rejected")
    if sha256 is not None and not is_sha256(sha256):
        raise ValueError(f"not a lowercase hex SHA-256: {sha256!r}")
    if status is not UploadStatus.REJECTED and sha256 is None:
        # A held upload without its hash would count bytes that no content record accounts for.
        raise ValueError(f"a {status} upload needs the SHA-256 of its content")
    return replace(
        upload,
        status=status,
        sha256=sha256,
        completed_at=at,
        reason=reason,
        url_expires_at=None,
        deduplicated=deduplicated,
    )


def new_content(upload: Upload, sha256: str, at: datetime, *, generation: int = 1) -> Content:
    return Content(
        sha256=sha256,
        size=upload.size,
        content_type=upload.content_type,
        created_at=at,
        last_uploaded_at=at,
        upload_count=1,
        first_upload_id=upload.upload_id,
        generation=generation,
    )


def new_holding(upload: Upload) -> Holding:
    """The holding an upload creates when it gives its owner a content they did not hold."""
    if upload.status is not UploadStatus.STORED or upload.sha256 is None:
        raise ValueError(f"upload {upload.upload_id} did not store a content")
    assert upload.completed_at is not None  # complete() sets it with the status
    return Holding(
        owner=upload.owner,
        sha256=upload.sha256,
        upload_id=upload.upload_id,
        size=upload.size,
        filename=upload.filename,
        content_type=upload.content_type,
        created_at=upload.completed_at,
        upload_count=1,
    )


def held_duplicate(upload: Upload, held: Holding, at: datetime) -> Upload:
    """The 409 pre-check: a new upload, born DUPLICATE of content its owner already holds.

    The savings counted are the held content's size, so a declaration of another size for the
    same hash is refused: it would count bytes that were never saved, and a presigned PUT for it
    could never succeed (no body of that size hashes to the declared SHA-256). The message names
    only the caller's own holding.
    """
    if upload.owner != held.owner:
        raise ValueError("the holding belongs to another owner")
    if upload.declared_sha256 != held.sha256:
        raise ValueError("the holding is for another content")
    if upload.size != held.size:
        raise InvalidInput(
            f"size {upload.size} does not match the {held.size} bytes you already stored "
            "with this sha256"
        )
    return complete(upload, UploadStatus.DUPLICATE, at, sha256=held.sha256, deduplicated=True)


def pending_expiry(created_at: datetime, url_ttl_seconds: int) -> int:
    """When DynamoDB's TTL may remove a PENDING upload (epoch seconds), long after its URL."""
    return int((created_at + timedelta(seconds=url_ttl_seconds) + PENDING_RETENTION).timestamp())
