"""The bucket: presigned staging uploads, learning an object's SHA-256, promotion and clean-up."""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

from botocore.exceptions import ClientError

from domain.model import ObjectFacts, sha256_b64_to_hex, sha256_hex_to_b64

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_MISSING = {"404", "NoSuchKey", "NotFound"}
_CHUNK = 4 * 1024 * 1024


class ObjectChanged(Exception):
    """The staging object is no longer the one that was hashed (its ETag moved)."""


@dataclass(frozen=True, slots=True)
class PresignedPut:
    url: str
    headers: dict[str, str]


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

    def copy(self, source_key: str, target_key: str, *, etag: str) -> bool:
        """Server-side copy of the staged bytes to their content key. False if the source is gone.

        Copying is idempotent: the target key is derived from the bytes, so a retry or a racing
        worker writes the same bytes again. CopySourceIfMatch makes sure they are the bytes that
        were hashed.
        """
        try:
            self._s3.copy_object(
                Bucket=self.bucket,
                Key=target_key,
                CopySource={"Bucket": self.bucket, "Key": source_key},
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

    def exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise
        return True
