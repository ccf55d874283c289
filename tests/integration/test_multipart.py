"""Multipart uploads through the API handler and the worker, against moto."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import boto3
import pytest

from tests.invariants import check_invariants
from tests.pipeline import Pipeline

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.fixture
def pipe(aws: Any) -> Pipeline:
    return Pipeline(aws)


def _state(upload_id: str) -> Any:
    from handlers import wiring

    found = wiring.ledger().get_multipart_upload(upload_id)
    assert found is not None
    return found[1]


def _put_part(pipe: Pipeline, upload_id: str, number: int, data: bytes) -> str:
    """What a client's PUT to the presigned part URL does (moto in-process serves no URLs)."""
    etag: str = boto3.client("s3").upload_part(
        Bucket=pipe.resources.bucket,
        Key=f"staging/{upload_id}",
        UploadId=_state(upload_id).s3_upload_id,
        PartNumber=number,
        Body=data,
    )["ETag"]
    return etag


def _start(pipe: Pipeline, data: bytes, **extra: Any) -> dict[str, Any]:
    reply = pipe.call(
        "POST", "/uploads", {"filename": "big.bin", "size": len(data), "multipart": True} | extra
    )
    assert reply.status == 201, reply.body
    body: dict[str, Any] = reply.body
    return body


def _upload_all(pipe: Pipeline, data: bytes, created: dict[str, Any]) -> list[dict[str, Any]]:
    size = created["multipart"]["part_size"]
    return [
        {
            "part_number": n + 1,
            "etag": _put_part(pipe, created["upload_id"], n + 1, data[o : o + size]),
        }
        for n, o in enumerate(range(0, len(data), size))
    ]


def test_a_multipart_upload_is_stored_then_a_copy_is_a_duplicate(pipe: Pipeline) -> None:
    data = os.urandom(20 * MiB)
    created = _start(pipe, data)
    assert "upload" not in created and created["multipart"]["part_count"] == 2
    urls = pipe.call("POST", f"/uploads/{created['upload_id']}/parts", {"part_numbers": [1, 2]})
    assert urls.status == 200
    assert [p["headers"]["Content-Length"] for p in urls.body["parts"]] == [
        str(16 * MiB),
        str(4 * MiB),
    ]
    assert all(
        "X-Amz-Signature=" in p["url"] and "partNumber=" in p["url"] for p in urls.body["parts"]
    )
    parts = _upload_all(pipe, data, created)
    done = pipe.call("POST", f"/uploads/{created['upload_id']}/complete", {"parts": parts})
    assert done.status == 202 and done.body["status"] == "PENDING"
    pipe.drain()
    final = pipe.call("GET", f"/uploads/{created['upload_id']}").body
    assert final["status"] == "STORED" and final["sha256"] == hashlib.sha256(data).hexdigest()

    again = _start(pipe, data)
    pipe.call(
        "POST", f"/uploads/{again['upload_id']}/complete", {"parts": _upload_all(pipe, data, again)}
    )
    pipe.drain()
    assert pipe.call("GET", f"/uploads/{again['upload_id']}").body["status"] == "DUPLICATE"
    check_invariants(pipe.resources, boto3.client("s3"), boto3.client("dynamodb"))


def test_resume_lists_the_parts_already_held(pipe: Pipeline) -> None:
    data = os.urandom(20 * MiB)
    created = _start(pipe, data)
    etag = _put_part(pipe, created["upload_id"], 1, data[: 16 * MiB])
    held = pipe.call("GET", f"/uploads/{created['upload_id']}/parts")
    assert held.status == 200
    assert held.body["parts"] == [{"part_number": 1, "etag": etag, "size": 16 * MiB}]


def test_completing_twice_is_a_conflict(pipe: Pipeline) -> None:
    data = os.urandom(6 * MiB)
    created = _start(pipe, data)
    parts = _upload_all(pipe, data, created)
    path = f"/uploads/{created['upload_id']}/complete"
    assert pipe.call("POST", path, {"parts": parts}).status == 202
    assert pipe.call("POST", path, {"parts": parts}).status == 409
    pipe.drain()
    assert pipe.call("POST", path, {"parts": parts}).status == 409


@pytest.mark.parametrize(
    "parts",
    [
        [{"part_number": 1, "etag": '"0123456789abcdef0123456789abcdef"'}],  # wrong ETag
        [{"part_number": 1, "etag": "x"}, {"part_number": 2, "etag": "y"}],  # out of plan
        [],
        [{"part_number": 0, "etag": "x"}],
        [{"part_number": 1}],
    ],
)
def test_bad_completions_are_4xx_and_lose_nothing(pipe: Pipeline, parts: list[Any]) -> None:
    data = os.urandom(6 * MiB)
    created = _start(pipe, data)
    good = _upload_all(pipe, data, created)
    reply = pipe.call("POST", f"/uploads/{created['upload_id']}/complete", {"parts": parts})
    assert 400 <= reply.status < 500 and reply.body["message"]
    # The parts are still there: the client can complete correctly afterwards
    assert (
        pipe.call("POST", f"/uploads/{created['upload_id']}/complete", {"parts": good}).status
        == 202
    )
    pipe.drain()
    assert pipe.call("GET", f"/uploads/{created['upload_id']}").body["status"] == "STORED"


@pytest.mark.parametrize("numbers", [[0], [3], [1, 1], list(range(1, 102)), [], ["1"]])
def test_bad_part_requests_are_4xx(pipe: Pipeline, numbers: list[Any]) -> None:
    created = _start(pipe, os.urandom(6 * MiB))
    reply = pipe.call("POST", f"/uploads/{created['upload_id']}/parts", {"part_numbers": numbers})
    assert 400 <= reply.status < 500 and reply.body["message"]


def test_parts_of_a_single_put_upload_are_a_conflict(pipe: Pipeline) -> None:
    created = pipe.create(b"small")
    reply = pipe.call("POST", f"/uploads/{created.body['upload_id']}/parts", {"part_numbers": [1]})
    assert reply.status == 409


def test_abort_discards_the_parts_and_counts_nothing(pipe: Pipeline) -> None:
    data = os.urandom(6 * MiB)
    created = _start(pipe, data)
    _put_part(pipe, created["upload_id"], 1, data)
    assert pipe.call("DELETE", f"/uploads/{created['upload_id']}").status == 204
    status = pipe.call("GET", f"/uploads/{created['upload_id']}").body
    assert status["status"] == "REJECTED" and status["reason"] == "aborted"
    assert pipe.call("GET", f"/uploads/{created['upload_id']}/parts").status == 409
    # Deleting it again removes the aborted upload itself.
    assert pipe.call("DELETE", f"/uploads/{created['upload_id']}").status == 204
    assert pipe.call("GET", f"/uploads/{created['upload_id']}").status == 404
    assert pipe.call("DELETE", f"/uploads/{created['upload_id']}").status == 404
    uploads = boto3.client("s3").list_multipart_uploads(Bucket=pipe.resources.bucket)
    assert not uploads.get("Uploads")
    assert pipe.as_admin().call("GET", "/admin/stats").body["total_uploads"] == 0
    check_invariants(pipe.resources, boto3.client("s3"), boto3.client("dynamodb"))


def test_abort_of_a_single_put_upload(pipe: Pipeline) -> None:
    created = pipe.create(b"never mind")
    upload_id = created.body["upload_id"]
    assert pipe.call("DELETE", f"/uploads/{upload_id}").status == 204
    pipe.put(upload_id, b"never mind")  # the bytes arrive anyway: ignored, and cleared
    pipe.drain()
    assert pipe.call("GET", f"/uploads/{upload_id}").body["reason"] == "aborted"
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=pipe.resources.bucket)
    assert pipe.call("DELETE", f"/uploads/{'0' * 32}").status == 404
