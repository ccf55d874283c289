"""Reading what is stored: metadata, downloads, statistics and the hash list.

An owner reads only what they hold: their own uploads, and the contents they hold (through their
holding, which carries their own first upload, file name and upload count, never anyone else's).
Whatever another owner holds answers exactly as something that was never stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from adapters.dynamodb import Ledger
from adapters.s3 import ObjectStore
from domain.access import owns
from domain.errors import NotFound
from domain.model import (
    Content,
    Holding,
    StatsDelta,
    Upload,
    UploadStatus,
    content_key,
    is_sha256,
    is_upload_id,
)
from domain.pages import (
    decode_page_token,
    decode_uploads_token,
    encode_page_token,
    encode_uploads_token,
)
from service import clock

_HELD = (UploadStatus.STORED, UploadStatus.DUPLICATE)


@dataclass(frozen=True, slots=True)
class Download:
    url: str
    expires_at: datetime
    filename: str


@dataclass(frozen=True, slots=True)
class UploadPage:
    uploads: list[Upload]
    next_token: str | None


@dataclass(frozen=True, slots=True)
class HashPage:
    contents: list[Content]
    next_token: str | None


def metadata(identifier: str, *, owner: str, ledger: Ledger) -> Upload | Holding:
    """An upload id names one of the owner's held uploads; a SHA-256, a content they hold."""
    if is_upload_id(identifier):
        upload = ledger.get_upload(identifier)
        if upload is not None and owns(upload, owner) and upload.status in _HELD:
            return upload
    elif is_sha256(identifier):
        holding = ledger.get_holding(owner, identifier)
        if holding is not None:
            return holding
    raise NotFound(f"nothing stored for {identifier}")


def download(
    identifier: str, *, owner: str, ledger: Ledger, store: ObjectStore, ttl_seconds: int
) -> Download:
    """A presigned GET of the content, under the name the owner gave it."""
    held = metadata(identifier, owner=owner, ledger=ledger)
    assert held.sha256 is not None  # a held upload always has its content's hash
    url = store.presign_get(
        content_key(held.sha256),
        filename=held.filename,
        content_type=held.content_type,
        expires_in=ttl_seconds,
    )
    return Download(url, clock.utcnow() + timedelta(seconds=ttl_seconds), held.filename)


def stats(*, ledger: Ledger) -> StatsDelta:
    return ledger.read_stats()


def list_hashes(limit: int, token: str | None, *, ledger: Ledger, secret: bytes) -> HashPage:
    after = decode_page_token(token, secret) if token else None
    contents, last = ledger.list_contents(limit, after)
    return HashPage(contents, encode_page_token(last, secret) if last else None)


def list_uploads(
    limit: int,
    token: str | None,
    *,
    owner: str,
    status: UploadStatus | None,
    prefix: str | None,
    ledger: Ledger,
    secret: bytes,
) -> UploadPage:
    """One page of the caller's own uploads, newest first (a deleted one is in none)."""
    after = decode_uploads_token(token, owner, secret) if token else None
    found, last = ledger.list_uploads(owner, limit, after, status=status, prefix=prefix)
    return UploadPage(found, encode_uploads_token(owner, last, secret) if last else None)
