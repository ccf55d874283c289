"""The bucket: presigned staging uploads, learning an object's SHA-256, promotion and clean-up."""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from domain.model import (
    MAX_SINGLE_PUT_SIZE,
    ObjectFacts,
    sha256_b64_to_hex,
    sha256_hex_to_b64,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_MISSING = {"404", "NoSuchKey", "NotFound"}
_CHUNK = 4 * 1024 * 1024
_LARGE_COPY = TransferConfig(multipart_chunksize=512 * 1024 * 1024, max_concurrency=16)


class ObjectChanged(Exception):
    """The staging object is no longer the one that was hashed (its ETag moved)."""


@dataclass(frozen=True, slots=True)
class PresignedPut:
    url: str
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class UploadedPart:
    part_number: int
    etag: str
    size: int


class MultipartResult(StrEnum):
    COMPLETED = "completed"
    GONE = "gone"  # completed or aborted before: S3 no longer knows the upload id
    INVALID_PART = "InvalidPart"  # a part is missing, or its ETag is not the one S3 holds
    INVALID_PART_ORDER = "InvalidPartOrder"
    ENTITY_TOO_SMALL = "EntityTooSmall"  # a part other than the last is under 5 MiB


def _quoted(etag: str) -> str:
    etag = etag.strip()
    return etag if etag.startswith('"') else f'"{etag}"'


@dataclass(frozen=True, slots=True)
class StagedObject:
    facts: ObjectFacts
    etag: str
    downloaded: bool


class _Readable(Protocol):
    def read(self, amt: int | None = ..., /) -> bytes: ...
    def close(self) -> None: ...


def hash_stream(
    body: _Readable, *, chunk_size: int = _CHUNK, max_buffered: int = 8
) -> tuple[int, str]:
    """SHA-256 and length of a stream, reading and hashing at the same time in bounded memory.

    A reader thread fills a queue of at most ``max_buffered`` chunks while this thread hashes;
    hashlib releases the GIL on large buffers, so network reads hide behind hashing (or the
    reverse). Memory stays near ``chunk_size * (max_buffered + 2)`` whatever the object size.
    """
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=max_buffered)
    stop = threading.Event()

    def pump() -> None:
        try:
            while not stop.is_set():
                chunk = body.read(chunk_size)
                if not chunk:
                    break
                chunks.put(chunk)
        except BaseException as exc:  # handed to the hashing thread, which re-raises it
            chunks.put(exc)
            return
        chunks.put(None)

    reader = threading.Thread(target=pump, name="s3-read", daemon=True)
    reader.start()
    digest = hashlib.sha256()
    size = 0
    try:
        while (item := chunks.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            digest.update(item)
            size += len(item)
    finally:
        stop.set()
        while reader.is_alive():  # unblock a reader waiting on a full queue
            with contextlib.suppress(queue.Empty):
                chunks.get_nowait()
            reader.join(timeout=0.05)
        body.close()
    return size, digest.hexdigest()


def content_disposition(filename: str) -> str:
    """RFC 6266: an ASCII fallback name plus the exact UTF-8 name for browsers that read it."""
    fallback = "".join(ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\' else "_" for ch in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class ObjectStore:
    def __init__(self, client: S3Client, presigner: S3Client, bucket: str) -> None:
        self._s3 = client
        self._presigner = presigner
        self.bucket = bucket

    def presign_put(
        self, key: str, *, size: int, content_type: str, sha256: str | None, expires_in: int
    ) -> PresignedPut:
        """A URL that can create exactly this key once, with exactly the declared bytes."""
        headers = {"Content-Length": str(size), "Content-Type": content_type, "If-None-Match": "*"}
        params: dict[str, object] = {
            "Bucket": self.bucket,
            "Key": key,
            "ContentLength": size,
            "ContentType": content_type,
            "IfNoneMatch": "*",
        }
        if sha256 is not None:
            checksum = sha256_hex_to_b64(sha256)
            params["ChecksumSHA256"] = checksum
            headers["x-amz-checksum-sha256"] = checksum
        url = self._presigner.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=expires_in, HttpMethod="PUT"
        )
        return PresignedPut(url=url, headers=headers)

    def presign_get(self, key: str, *, filename: str, content_type: str, expires_in: int) -> str:
        """A GET of stored bytes that the browser saves under the upload's own name and type."""
        return self._presigner.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ResponseContentDisposition": content_disposition(filename),
                "ResponseContentType": content_type,
            },
            ExpiresIn=expires_in,
        )

    # --- multipart ----------------------------------------------------------------------------

    def start_multipart(self, key: str, *, content_type: str) -> str:
        resp = self._s3.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType=content_type
        )
        return resp["UploadId"]

    def presign_part(
        self, key: str, s3_upload_id: str, part_number: int, *, size: int, expires_in: int
    ) -> PresignedPut:
        """A URL for one part, binding its exact size (Content-Length is a signed header)."""
        url = self._presigner.generate_presigned_url(
            "upload_part",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "UploadId": s3_upload_id,
                "PartNumber": part_number,
                "ContentLength": size,
            },
            ExpiresIn=expires_in,
            HttpMethod="PUT",
        )
        return PresignedPut(url=url, headers={"Content-Length": str(size)})

    def list_parts(self, key: str, s3_upload_id: str) -> list[UploadedPart] | None:
        """The parts S3 holds for a multipart upload; None once it is completed or aborted."""
        parts: list[UploadedPart] = []
        try:
            paginator = self._s3.get_paginator("list_parts")
            for page in paginator.paginate(Bucket=self.bucket, Key=key, UploadId=s3_upload_id):
                parts += [
                    UploadedPart(p["PartNumber"], p["ETag"], p["Size"])
                    for p in page.get("Parts", [])
                ]
        except ClientError as exc:
            if _code(exc) == "NoSuchUpload":
                return None
            raise
        return parts

    def complete_multipart(
        self, key: str, s3_upload_id: str, parts: list[tuple[int, str]]
    ) -> MultipartResult:
        try:
            self._s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=s3_upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": n, "ETag": _quoted(etag)} for n, etag in parts]
                },
            )
        except ClientError as exc:
            code = _code(exc)
            if code == "NoSuchUpload":
                return MultipartResult.GONE
            if code in {"InvalidPart", "InvalidPartOrder", "EntityTooSmall"}:
                return MultipartResult(code)
            raise
        return MultipartResult.COMPLETED

    def abort_multipart(self, key: str, s3_upload_id: str) -> None:
        try:
            self._s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=s3_upload_id)
        except ClientError as exc:
            if _code(exc) != "NoSuchUpload":
                raise

    def inspect(self, key: str) -> StagedObject | None:
        """Size and SHA-256 of a staged object; None when it no longer exists.

        A single PUT with a signed x-amz-checksum-sha256 leaves a FULL_OBJECT checksum that S3
        verified on arrival, so HeadObject alone answers. Anything else (no checksum, or a
        multipart COMPOSITE one, which is a hash of part hashes) is streamed and hashed here.
        """
        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        etag = head["ETag"]
        checksum = head.get("ChecksumSHA256")
        if checksum and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
            digest = sha256_b64_to_hex(checksum)
            if digest is not None:
                facts = ObjectFacts(size=head["ContentLength"], sha256=digest)
                return StagedObject(facts=facts, etag=etag, downloaded=False)
        return self._hash_by_streaming(key, etag)

    def _hash_by_streaming(self, key: str, etag: str) -> StagedObject | None:
        try:
            # IfMatch pins the bytes we hash to the version HeadObject described.
            obj = self._s3.get_object(Bucket=self.bucket, Key=key, IfMatch=etag)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            if _code(exc) in {"PreconditionFailed", "412"}:
                raise ObjectChanged(key) from exc
            raise
        size, digest = hash_stream(obj["Body"])
        return StagedObject(ObjectFacts(size=size, sha256=digest), etag, True)

    def copy(self, source_key: str, target_key: str, *, etag: str, size: int | None = None) -> bool:
        """Server-side copy of the staged bytes to their content key. False if the source is gone.

        Copying is idempotent: the target key is derived from the bytes, so a retry or a racing
        worker writes the same bytes again. CopySourceIfMatch makes sure they are the bytes that
        were hashed.
        """
        source = {"Bucket": self.bucket, "Key": source_key}
        try:
            if size is not None and size > MAX_SINGLE_PUT_SIZE:
                # CopyObject stops at 5 GiB; the managed copy runs UploadPartCopy in parallel.
                self._s3.copy(
                    source,  # type: ignore[arg-type]
                    self.bucket,
                    target_key,
                    ExtraArgs={"CopySourceIfMatch": etag, "MetadataDirective": "COPY"},
                    Config=_LARGE_COPY,
                )
            else:
                self._s3.copy_object(
                    Bucket=self.bucket,
                    Key=target_key,
                    CopySource=source,  # type: ignore[arg-type]
                    CopySourceIfMatch=etag,
                    ChecksumAlgorithm="SHA256",
                    MetadataDirective="COPY",
                )
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            if _code(exc) in {"PreconditionFailed", "412"}:
                raise ObjectChanged(source_key) from exc
            raise
        return True

    def delete(self, key: str) -> None:
        # DeleteObject succeeds on a missing key, which is what makes clean-up idempotent.
        self._s3.delete_object(Bucket=self.bucket, Key=key)
