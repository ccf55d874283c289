"""The upload contract over real HTTP: create, PUT to the presigned URL, poll; signed in as alice
(the client helpers' default user)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.localstack import (
    RunningStack,
    create_upload,
    object_exists,
    read_stats,
    sha256_b64,
    sha256_hex,
    upload,
    wait_until,
)

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("declare_sha256", [True, False], ids=["with-sha256", "size-only"])
def test_creating_an_upload_returns_a_presigned_put_bound_to_the_declaration(
    local_stack: RunningStack, declare_sha256: bool
) -> None:
    # Given a file the client describes
    data = os.urandom(2048)

    # When it asks for an upload
    before = datetime.now(UTC)
    response = create_upload(
        local_stack.api_url, data, declare_sha256=declare_sha256, content_type="image/png"
    )

    # Then it gets a PENDING upload and one PUT, signed over what it declared
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"upload_id", "status", "upload", "expires_at"}
    assert body["status"] == "PENDING"
    put = body["upload"]
    assert put["method"] == "PUT"
    expected_headers = {
        "Content-Length": str(len(data)),
        "Content-Type": "image/png",
        "If-None-Match": "*",
    }
    if declare_sha256:
        expected_headers["x-amz-checksum-sha256"] = sha256_b64(data)
    assert put["headers"] == expected_headers

    url = urlsplit(put["url"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}" == local_stack.endpoint_url
    assert url.path == f"/{local_stack.bucket}/staging/{body['upload_id']}"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert 0 < int(query["X-Amz-Expires"]) <= 900
    signed = set(query["X-Amz-SignedHeaders"].split(";"))
    assert {"host", "content-length", "content-type", "if-none-match"} <= signed
    assert ("x-amz-checksum-sha256" in signed) is declare_sha256

    expires_at = datetime.fromisoformat(body["expires_at"])
    assert before < expires_at <= datetime.now(UTC) + timedelta(seconds=900)


def test_bytes_put_to_the_url_are_stored_under_their_sha256(local_stack: RunningStack) -> None:
    # Given content the service has never seen
    data = os.urandom(100_000)
    stats_before = read_stats(local_stack)

    # When a client uploads it and polls
    view = upload(local_stack.api_url, data, filename="photo.jpg", content_type="image/jpeg")

    # Then it is STORED with its SHA-256, once, under its content key; staging is cleared
    assert view["status"] == "STORED"
    assert view["sha256"] == sha256_hex(data)
    assert (view["filename"], view["size"], view["content_type"]) == (
        "photo.jpg",
        len(data),
        "image/jpeg",
    )
    stored = local_stack.client("s3").get_object(
        Bucket=local_stack.bucket, Key=f"cas/sha256/{sha256_hex(data)}"
    )
    assert stored["Body"].read() == data
    wait_until(
        lambda: not object_exists(local_stack, f"staging/{view['upload_id']}"),
        what="the staging object to be deleted",
    )
    stats_after = read_stats(local_stack)
    assert stats_after["files"] - stats_before["files"] == 1
    assert stats_after["bytes_stored"] - stats_before["bytes_stored"] == len(data)


def test_the_same_bytes_uploaded_again_are_a_duplicate(local_stack: RunningStack) -> None:
    # Given content that is stored already
    data = os.urandom(50_000)
    first = upload(local_stack.api_url, data, filename="a.bin")
    stats_before = read_stats(local_stack)

    # When the same bytes are uploaded again, without declaring their hash (the worker finds it)
    second = upload(local_stack.api_url, data, filename="copy-of-a.bin", declare_sha256=False)

    # Then the second upload is a DUPLICATE (its owner already held the content), and the bytes
    # it saved count
    assert first["status"] == "STORED"
    assert second["status"] == "DUPLICATE"
    assert second["sha256"] == first["sha256"] == sha256_hex(data)
    stats_after = read_stats(local_stack)
    delta = {name: stats_after[name] - stats_before[name] for name in stats_after}
    assert delta == {
        "files": 0,
        "uploads": 1,
        "duplicates": 1,
        "bytes_saved": len(data),
        "bytes_stored": 0,
    }


def test_declaring_a_hash_the_owner_holds_answers_409_with_nothing_to_upload(
    local_stack: RunningStack,
) -> None:
    # Given content alice already holds
    data = os.urandom(30_000)
    held = upload(local_stack.api_url, data, filename="original.txt", content_type="text/plain")
    stats_before = read_stats(local_stack)

    # When she declares the same SHA-256 for a new upload
    response = create_upload(local_stack.api_url, data, filename="again.txt")

    # Then the answer is 409 with the held file's metadata, and no PUT to make
    assert response.status_code == 409, response.text
    body = response.json()
    assert "upload" not in body
    assert body["status"] == "DUPLICATE"
    assert body["message"]
    assert body["held"] == {
        "upload_id": held["upload_id"],
        "filename": "original.txt",
        "size": len(data),
        "content_type": "text/plain",
        "sha256": sha256_hex(data),
        # When she first held it: the held upload's completion.
        "created_at": held["completed_at"],
    }
    # ... and the request is recorded as a DUPLICATE upload that saved the whole size
    recorded = requests.get(
        f"{local_stack.api_url}/uploads/{body['upload_id']}",
        headers=local_stack.auth("alice"),
        timeout=30,
    )
    assert recorded.json()["status"] == "DUPLICATE"
    stats_after = read_stats(local_stack)
    assert stats_after["duplicates"] - stats_before["duplicates"] == 1
    assert stats_after["bytes_saved"] - stats_before["bytes_saved"] == len(data)
    assert stats_after["files"] == stats_before["files"]
