"""What the services need from storage, as small protocols.

The DynamoDB and S3 adapters implement them against AWS; tests/fakes.py implements them in
memory, with the same guarded-write semantics, so the services' decisions run in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Protocol

from domain.lifecycle import Applied, Deletion, Verdict
from domain.model import Content, Holding, ObjectFacts, StatsDelta, Upload, UploadStatus
from domain.multipart import MultipartState


class StagedObject(Protocol):
    @property
    def facts(self) -> ObjectFacts: ...

    @property
    def etag(self) -> str: ...

    @property
    def downloaded(self) -> bool: ...


class ObjectStorePort(Protocol):
    def inspect(self, key: str) -> StagedObject | None: ...

    def copy(
        self, source_key: str, target_key: str, *, etag: str, size: int | None = None
    ) -> bool: ...

    def delete(self, key: str) -> None: ...

    def abort_multipart(self, key: str, s3_upload_id: str) -> None: ...


class LedgerPort(Protocol):
    def get_upload(self, upload_id: str) -> Upload | None: ...

    def get_multipart_upload(
        self, upload_id: str
    ) -> tuple[Upload, MultipartState | None] | None: ...

    def get_content(self, sha256: str) -> Content | None: ...

    def get_holding(self, owner: str, sha256: str) -> Holding | None: ...

    def claim_content(self, upload_id: str, sha256: str) -> bool: ...

    def record_stored(
        self, upload: Upload, content: Content, replaces: Content | None
    ) -> Applied: ...

    def record_match(self, upload: Upload, verdict: Verdict) -> Applied: ...

    def record_duplicate(self, upload: Upload) -> Applied: ...

    def record_rejected(self, upload: Upload) -> Applied: ...

    def record_deleted(self, deletion: Deletion, at: datetime) -> set[Applied]: ...

    def list_uploads(
        self,
        owner: str,
        limit: int,
        after: tuple[str, str] | None,
        *,
        status: UploadStatus | None = None,
        prefix: str | None = None,
    ) -> tuple[list[Upload], tuple[str, str] | None]: ...

    def collectable(self, cutoff: datetime) -> Iterator[str]: ...

    def mark_collecting(
        self, sha256: str, cutoff: datetime, at: datetime, lease: datetime
    ) -> bool: ...

    def mark_gone(self, sha256: str, at: datetime, lease: datetime) -> bool: ...

    def read_stats(self) -> StatsDelta: ...
