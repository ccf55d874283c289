"""Many clients of two owners at once, few distinct contents: every content stored once, each
owner told STORED once per content they hold, every count exact."""

from __future__ import annotations

import hashlib
import os
import threading
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.localstack import (
    RunningStack,
    create_upload,
    object_exists,
    object_keys,
    put_bytes,
    read_stats,
    sha256_hex,
    wait_for_terminal,
    wait_until,
)

pytestmark = pytest.mark.e2e

UPLOADS = 20
CONTENTS = 4
OWNERS = ("alice", "bob")


def _one_client(
    api_url: str,
    data: bytes,
    declare_sha256: bool,
    headers: Mapping[str, str],
    start: threading.Barrier,
) -> Any:
    """Create, PUT, poll; a 409 (content already held) is the DUPLICATE answer without a PUT."""
    start.wait()
    created = create_upload(api_url, data, declare_sha256=declare_sha256, headers=headers)
    if created.status_code == 409:
        return created.json()["upload_id"], "DUPLICATE", created.json()["held"]["sha256"]
    assert created.status_code == 201, created.text
    body = created.json()
    put = put_bytes(body["upload"], data)
    assert put.status_code == 200, put.text
    view = wait_for_terminal(api_url, body["upload_id"], timeout=60, headers=headers)
    return view["upload_id"], view["status"], view["sha256"]


def test_concurrent_uploads_of_few_contents_store_each_once_and_count_exactly(
    local_stack: RunningStack,
) -> None:
    # Given 4 distinct contents of distinct sizes, each to be uploaded 5 times by separate clients,
    # 3 of them alice's and 2 bob's
    contents = [os.urandom(20_000 + 1000 * n) for n in range(CONTENTS)]
    jobs = [contents[n % CONTENTS] for n in range(UPLOADS)]
    owners = [OWNERS[(n // CONTENTS) % 2] for n in range(UPLOADS)]
    auth = {owner: local_stack.auth(owner) for owner in OWNERS}
    cas_before = object_keys(local_stack, "cas/sha256/")
    stats_before = read_stats(local_stack)

    # When all 20 clients start at once (half declare the hash, half leave it to the worker)
    start = threading.Barrier(UPLOADS)
    with ThreadPoolExecutor(UPLOADS) as pool:
        futures = [
            pool.submit(_one_client, local_stack.api_url, data, n % 2 == 0, auth[owners[n]], start)
            for n, data in enumerate(jobs)
        ]
        results = [f.result() for f in futures]

    # Then each owner is told STORED exactly once per content (the upload that gave them the
    # content, whether its bytes were copied or matched the other owner's), DUPLICATE otherwise
    digests = {sha256_hex(data) for data in contents}
    assert [sha for _, _, sha in results] == [sha256_hex(data) for data in jobs]
    stored = Counter(
        (owners[n], sha) for n, (_, status, sha) in enumerate(results) if status == "STORED"
    )
    assert stored == {(owner, digest): 1 for owner in OWNERS for digest in digests}
    statuses = Counter(status for _, status, _ in results)
    assert statuses == {"STORED": 2 * CONTENTS, "DUPLICATE": UPLOADS - 2 * CONTENTS}

    # ... exactly 4 new content objects, each holding the bytes its key names
    new_keys = object_keys(local_stack, "cas/sha256/") - cas_before
    assert new_keys == {f"cas/sha256/{digest}" for digest in digests}
    s3 = local_stack.client("s3")
    for key in new_keys:
        body = s3.get_object(Bucket=local_stack.bucket, Key=key)["Body"].read()
        assert f"cas/sha256/{hashlib.sha256(body).hexdigest()}" == key

    # ... each content record counts its 5 uploads, whoever made them
    ddb = local_stack.client("dynamodb")
    for digest in digests:
        item = ddb.get_item(
            TableName=local_stack.contents_table, Key={"sha256": {"S": digest}}, ConsistentRead=True
        )["Item"]
        assert item["upload_count"]["N"] == str(UPLOADS // CONTENTS)

    # ... the counters moved by exactly what happened: every upload but each content's first is
    # a deduplication, across owners too
    stats_after = read_stats(local_stack)
    assert {name: stats_after[name] - stats_before[name] for name in stats_after} == {
        "files": CONTENTS,
        "uploads": UPLOADS,
        "duplicates": UPLOADS - CONTENTS,
        "bytes_stored": sum(len(data) for data in contents),
        "bytes_saved": sum(len(data) for data in jobs) - sum(len(data) for data in contents),
    }

    # ... and no staging object is left behind
    for upload_id, _, _ in results:
        wait_until(
            lambda upload_id=upload_id: not object_exists(local_stack, f"staging/{upload_id}"),
            what=f"staging/{upload_id} to be deleted",
        )
