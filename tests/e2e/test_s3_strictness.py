"""What S3 refuses, the local emulator refuses too: a presigned PUT binds what was declared."""

from __future__ import annotations

import importlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import boto3
import pytest
import requests
from botocore.config import Config

from tests.localstack import (
    RunningStack,
    create_upload,
    get_upload,
    object_exists,
    put_bytes,
    sha256_b64,
    sha256_hex,
    start_stack,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def idle_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """A stack without workers: what lands in staging stays there."""
    with start_stack(tmp_path_factory.mktemp("idle-stack"), "--workers", "0") as stack:
        yield stack


def _s3_error(response: requests.Response) -> str:
    code = ET.fromstring(response.content).findtext("Code")
    assert code is not None, response.text
    return code


def _new_upload(stack: RunningStack, data: bytes, **options: Any) -> dict[str, Any]:
    response = create_upload(stack.api_url, data, **options)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _nothing_arrived(stack: RunningStack, upload_id: str, *contents: bytes) -> None:
    assert get_upload(stack.api_url, upload_id)["status"] == "PENDING"
    assert not object_exists(stack, f"staging/{upload_id}")
    for content in contents:
        assert not object_exists(stack, f"cas/sha256/{sha256_hex(content)}")


def test_bytes_that_differ_from_the_signed_checksum_are_refused_with_bad_digest(
    local_stack: RunningStack,
) -> None:
    # Given an upload that declared the SHA-256 of some content
    declared = os.urandom(4096)
    created = _new_upload(local_stack, declared)

    # When the client PUTs other bytes of the same size, with the signed checksum header
    other = os.urandom(4096)
    response = put_bytes(created["upload"], other)

    # Then S3's answer is 400 BadDigest and nothing is stored, so the upload stays PENDING
    assert response.status_code == 400
    assert _s3_error(response) == "BadDigest"
    _nothing_arrived(local_stack, created["upload_id"], declared, other)


def test_a_content_length_other_than_the_signed_one_is_refused(local_stack: RunningStack) -> None:
    # Given an upload declared with a size
    data = os.urandom(4096)
    created = _new_upload(local_stack, data, declare_sha256=False)

    # When the client PUTs one byte more (so Content-Length differs from the signed one)
    response = requests.put(
        created["upload"]["url"],
        data=data + b"!",
        headers={**created["upload"]["headers"], "Content-Length": str(len(data) + 1)},
        timeout=30,
    )

    # Then the signature does not match and nothing is stored
    assert response.status_code == 403
    assert _s3_error(response) == "SignatureDoesNotMatch"
    _nothing_arrived(local_stack, created["upload_id"], data, data + b"!")


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def _tampered_signature(url: str) -> str:
    signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    flipped = signature[:-1] + ("1" if signature.endswith("0") else "0")
    return _with_query(url, **{"X-Amz-Signature": flipped})


TAMPERINGS = {
    "signature-changed": lambda url, headers: (_tampered_signature(url), headers),
    "expiry-extended": lambda url, headers: (
        _with_query(url, **{"X-Amz-Expires": "3600"}),
        headers,
    ),
    "other-key": lambda url, headers: (url.replace("/staging/", "/staging/0"), headers),
    "if-none-match-dropped": lambda url, headers: (
        url,
        {k: v for k, v in headers.items() if k != "If-None-Match"},
    ),
    "checksum-header-dropped": lambda url, headers: (
        url,
        {k: v for k, v in headers.items() if k != "x-amz-checksum-sha256"},
    ),
    "content-type-changed": lambda url, headers: (
        url,
        {**headers, "Content-Type": "text/html"},
    ),
}


@pytest.mark.parametrize("tamper", TAMPERINGS.values(), ids=TAMPERINGS.keys())
def test_a_tampered_url_or_header_is_refused(local_stack: RunningStack, tamper: Any) -> None:
    # Given a valid upload URL and its headers
    data = os.urandom(1024)
    created = _new_upload(local_stack, data)

    # When the client changes any signed part of the request
    url, headers = tamper(created["upload"]["url"], created["upload"]["headers"])
    response = requests.put(url, data=data, headers=headers, timeout=30)

    # Then S3 refuses it: the signature no longer matches
    assert response.status_code == 403, response.text
    assert _s3_error(response) == "SignatureDoesNotMatch"
    _nothing_arrived(local_stack, created["upload_id"], data)


@contextmanager
def _signing_clock(when: datetime) -> Iterator[None]:
    """Make botocore sign as if it were ``when`` (its pure-Python and its CRT signers)."""

    def now(remove_tzinfo: bool = True) -> datetime:
        return when.replace(tzinfo=None) if remove_tzinfo else when

    with ExitStack() as patches:
        for module in ("botocore.auth", "botocore.crt.auth"):  # the CRT one needs awscrt
            with suppress(ImportError):
                importlib.import_module(module)
                patches.enter_context(mock.patch(f"{module}.get_current_datetime", now))
        yield


def test_an_expired_url_is_refused(local_stack: RunningStack) -> None:
    # Given an upload, and a URL for its key signed 16 minutes ago for 15 minutes
    data = os.urandom(1024)
    created = _new_upload(local_stack, data)
    presigner = boto3.client(
        "s3",
        endpoint_url=local_stack.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        aws_session_token=None,
        config=Config(signature_version="s3v4"),
    )
    with _signing_clock(datetime.now(UTC) - timedelta(minutes=16)):
        url = presigner.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": local_stack.bucket,
                "Key": f"staging/{created['upload_id']}",
                "ContentLength": len(data),
                "ContentType": "application/octet-stream",
                "IfNoneMatch": "*",
                "ChecksumSHA256": sha256_b64(data),
            },
            ExpiresIn=900,
            HttpMethod="PUT",
        )

    # When the client PUTs with it, exactly as instructed
    response = requests.put(url, data=data, headers=created["upload"]["headers"], timeout=30)

    # Then S3 says the request has expired, and nothing is stored
    assert response.status_code == 403
    assert _s3_error(response) == "AccessDenied"
    assert "expired" in response.text
    _nothing_arrived(local_stack, created["upload_id"], data)


def test_a_second_put_to_a_used_url_is_refused_while_the_object_is_there(
    idle_stack: RunningStack,
) -> None:
    # Given an upload whose bytes were PUT and are still in staging (no worker runs here)
    data = os.urandom(2048)
    created = _new_upload(idle_stack, data, declare_sha256=False)
    assert put_bytes(created["upload"], data).status_code == 200

    # When the same URL is used again, with other bytes of the same size
    response = put_bytes(created["upload"], os.urandom(2048))

    # Then If-None-Match: * (signed) refuses it and the first bytes stay
    assert response.status_code == 412
    assert _s3_error(response) == "PreconditionFailed"
    staged = idle_stack.client("s3").get_object(
        Bucket=idle_stack.bucket, Key=f"staging/{created['upload_id']}"
    )
    assert staged["Body"].read() == data
