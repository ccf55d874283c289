"""Bytes that reach staging without matching the declaration are REJECTED, and count nowhere.

Through the presigned URL they cannot arrive (size and checksum are signed), so these tests
put them in place with a plain S3 client, as a misbehaving writer with bucket access could.
"""

from __future__ import annotations

import os

import pytest

from tests.localstack import (
    RunningStack,
    create_upload,
    object_exists,
    read_stats,
    sha256_hex,
    wait_for_terminal,
    wait_until,
)

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("declare_sha256", "actual", "reason"),
    [
        (True, lambda declared: os.urandom(len(declared)), "checksum_mismatch"),
        (False, lambda declared: declared + b"extra", "size_mismatch"),
    ],
    ids=["other-bytes-same-size", "more-bytes-than-declared"],
)
def test_bytes_unlike_the_declaration_are_rejected_and_cleared(
    local_stack: RunningStack, declare_sha256: bool, actual: object, reason: str
) -> None:
    # Given an upload declared for some content
    declared = os.urandom(8192)
    response = create_upload(local_stack.api_url, declared, declare_sha256=declare_sha256)
    assert response.status_code == 201, response.text
    upload_id = response.json()["upload_id"]
    stats_before = read_stats(local_stack)

    # When other bytes land on its staging key
    arrived = actual(declared)  # type: ignore[operator]
    local_stack.client("s3").put_object(
        Bucket=local_stack.bucket, Key=f"staging/{upload_id}", Body=arrived
    )

    # Then the worker rejects the upload with the reason, stores nothing and clears staging
    view = wait_for_terminal(local_stack.api_url, upload_id)
    assert view["status"] == "REJECTED"
    assert view["reason"] == reason
    wait_until(
        lambda: not object_exists(local_stack, f"staging/{upload_id}"),
        what="the staging object to be deleted",
    )
    assert not object_exists(local_stack, f"cas/sha256/{sha256_hex(arrived)}")
    assert not object_exists(local_stack, f"cas/sha256/{sha256_hex(declared)}")
    assert read_stats(local_stack) == stats_before
