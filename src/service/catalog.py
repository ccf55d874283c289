"""Reading what is stored: metadata, downloads, statistics and the hash list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from adapters.dynamodb import Ledger
from adapters.s3 import ObjectStore
from domain.errors import NotFound
from domain.model import (
    Content,
    StatsDelta,
    Upload,
    UploadStatus,
    content_key,
    is_sha256,
    is_upload_id,
)
from domain.pages import decode_page_token, encode_page_token
from service.clock import utcnow

_HELD = (UploadStatus.STORED, UploadStatus.DUPLICATE)


@dataclass(frozen=True, slots=True)
class Metadata:
    """Either an upload (with the content it resolved to) or a content, as asked."""

    upload: Upload | None
    content: Content


@dataclass(frozen=True, slots=True)
class Download:
    url: str
    expires_at: datetime
    filename: str


@dataclass(frozen=True, slots=True)
class HashPage:
    contents: list[Content]
    next_token: str | None


def _held_upload(identifier: str, owner: str, ledger: Ledger) -> Upload:
    """The upload an id names: an upload id, or a hash this owner holds (404 for anyone else)."""
    upload: Upload | None = None
    if is_upload_id(identifier):
        upload = ledger.get_upload(identifier)
    elif is_sha256(identifier):
        upload = ledger.find_held(owner, identifier)
    if upload is None or upload.status not in _HELD or upload.sha256 is None:
        raise NotFound(f"nothing stored for {identifier}")
    return upload


def metadata(identifier: str, *, owner: str, ledger: Ledger) -> Metadata:
    upload = _held_upload(identifier, owner, ledger)
    assert upload.sha256 is not None
    content = ledger.get_content(upload.sha256)
    if content is None:
        raise NotFound(f"nothing stored for {identifier}")
    return Metadata(upload=upload if is_upload_id(identifier) else None, content=content)


def download(
    identifier: str, *, owner: str, ledger: Ledger, store: ObjectStore, ttl_seconds: int
) -> Download:
    upload = _held_upload(identifier, owner, ledger)
    assert upload.sha256 is not None
    url = store.presign_get(
        content_key(upload.sha256),
        filename=upload.filename,
        content_type=upload.content_type,
        expires_in=ttl_seconds,
    )
    return Download(url, utcnow() + timedelta(seconds=ttl_seconds), upload.filename)


def stats(*, ledger: Ledger) -> StatsDelta:
    return ledger.read_stats()


def list_hashes(limit: int, token: str | None, *, ledger: Ledger, secret: bytes) -> HashPage:
    after = decode_page_token(token, secret) if token else None
    contents, last = ledger.list_contents(limit, after)
    return HashPage(contents, encode_page_token(last, secret) if last else None)
