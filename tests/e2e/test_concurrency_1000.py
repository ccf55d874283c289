"""1,000 clients, 50 contents, every S3 event delivered twice: each content stored exactly once.

A dedicated stack (4 pollers, --duplicate-deliveries) so that the counters can be compared with
absolute numbers and every delivery of every event overlaps with others. Every upload is alice's,
and none declares its SHA-256: the API's 409 pre-check would otherwise answer some of her uploads
without a PUT, and every one of the 1,000 must go through S3 and the worker.

The stack lifts the per-owner cap on uploads waiting for their bytes (MaxPendingUploads, as
`--parameter-overrides` would) to 1,000, so that all of them race at once.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from onecopy_local.resources import Resources, parameter_default
from tests.invariants import check_invariants
from tests.localstack import (
    START_TIMEOUT,
    STOP_TIMEOUT,
    TERMINAL,
    RunningStack,
    object_keys,
    put_bytes,
    sha256_hex,
    start_stack,
    wait_until,
)

UPLOADS = 1000
CONTENTS = 50
CLIENTS = 32
POLL_SECONDS = 0.2  # the pollers share one serialized API function with the uploads in flight
REQUEST_TIMEOUT_S = 60
# pytest-timeout's limit for this test covers the module fixture's start and stop of the stack
# too. The test's own deadline (against hangs: shared CI machines are slow) is what is left of it
# after those, one request's timeout and the final checks, so a slow run fails with this test's
# message, not pytest-timeout's.
TIMEOUT_S = 900
MARGIN_S = REQUEST_TIMEOUT_S + 30
BUDGET_S = TIMEOUT_S - START_TIMEOUT - STOP_TIMEOUT - MARGIN_S

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(TIMEOUT_S)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    log_dir: Path = tmp_path_factory.mktemp("concurrency-1000")
    with start_stack(
        log_dir,
        *("--workers", "4", "--duplicate-deliveries"),
        *("--max-pending-uploads", str(UPLOADS)),
    ) as running:
        yield running


_local = threading.local()


def _session(auth: dict[str, str]) -> requests.Session:
    """One keep-alive session per client thread (a Session is not meant to be shared), signed in."""
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
        _local.session.headers.update(auth)
    session: requests.Session = _local.session
    return session


def _send(api_url: str, auth: dict[str, str], data: bytes, n: int, deadline: float) -> str:
    """A client's first two moves, as the browser or the CLI makes them: create, then PUT."""
    assert time.monotonic() < deadline, f"upload {n} not even created before the deadline"
    created = _session(auth).post(
        f"{api_url}/uploads",
        json={"filename": f"file-{n}.bin", "size": len(data)},
        timeout=REQUEST_TIMEOUT_S,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    put = put_bytes(body["upload"], data)
    assert put.status_code == 200, put.text
    upload_id: str = body["upload_id"]
    return upload_id


def _poll(api_url: str, auth: dict[str, str], upload_id: str, deadline: float) -> dict[str, Any]:
    """The client's last move: GET the upload until it is terminal (or the deadline passes)."""
    while True:
        view = _session(auth).get(f"{api_url}/uploads/{upload_id}", timeout=REQUEST_TIMEOUT_S)
        assert view.status_code == 200, view.text
        result: dict[str, Any] = view.json()
        if result["status"] in TERMINAL:
            return result
        assert time.monotonic() < deadline, f"upload {upload_id} still PENDING"
        time.sleep(POLL_SECONDS)


def _queue_drained(stack: RunningStack) -> bool:
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(int(value) == 0 for value in attributes.values())


def _queue_arn(queue_url: str) -> str:
    account, name = queue_url.rstrip("/").split("/")[-2:]
    return f"arn:aws:sqs:us-east-1:{account}:{name}"


def _resources(stack: RunningStack) -> Resources:
    """What the invariants read (the bucket and the tables), from the stack's banner."""
    return Resources(
        region="us-east-1",
        bucket=stack.bucket,
        uploads_table=stack.uploads_table,
        contents_table=stack.contents_table,
        stats_table=stack.stats_table,
        # Named as the uploads table is; the banner does not list it.
        holdings_table=stack.uploads_table.removesuffix("-uploads") + "-holdings",
        user_pool_id=stack.user_pool_id,
        user_pool_client_id=stack.client_id,
        stats_shards=int(parameter_default("StatsShards")),
        queue_url=stack.queue_url,
        dlq_url=stack.dlq_url,
        queue_arn=_queue_arn(stack.queue_url),
        dlq_arn=_queue_arn(stack.dlq_url),
        page_token_secret_arn="",  # the banner does not name it, and the invariants never read it
    )


def test_1000_uploads_of_50_contents_delivered_twice_store_each_content_once(
    stack: RunningStack,
) -> None:
    # Given 50 distinct small contents of distinct sizes, each to be uploaded 20 times
    contents = [hashlib.sha256(b"%d" % n).digest() * (64 + 8 * n) for n in range(CONTENTS)]
    per_content = UPLOADS // CONTENTS
    jobs = [contents[n // per_content] for n in range(UPLOADS)]
    digests = {sha256_hex(data) for data in contents}
    alice = stack.auth("alice")

    # When 32 client threads push every upload through the API and S3, then poll them (a
    # client polling each upload right after its PUT would mostly spend the API's one
    # environment on answering PENDING)
    started = time.monotonic()
    deadline = started + BUDGET_S
    assert BUDGET_S >= 300, "the timeout leaves the test too little time"
    results: list[dict[str, Any]] = []
    with ThreadPoolExecutor(CLIENTS) as pool:
        sent = list(
            pool.map(lambda n: _send(stack.api_url, alice, jobs[n], n, deadline), range(UPLOADS))
        )
        results += pool.map(
            lambda upload_id: _poll(stack.api_url, alice, upload_id, deadline), sent
        )
    wait_until(
        lambda: _queue_drained(stack),
        timeout=max(0.0, deadline - time.monotonic()),
        what="the ingest queue to drain",
    )
    elapsed = time.monotonic() - started
    print(f"\n{UPLOADS} uploads settled and the queue drained in {elapsed:.1f} s")

    # Then exactly one upload per content is STORED (it gave alice the content), the other 950
    # are DUPLICATEs of it (she already held it)
    statuses = Counter(view["status"] for view in results)
    assert statuses == {"STORED": CONTENTS, "DUPLICATE": UPLOADS - CONTENTS}
    assert [view["sha256"] for view in results] == [sha256_hex(data) for data in jobs]
    assert {view["sha256"] for view in results if view["status"] == "STORED"} == digests

    # ... every event really was delivered a second time
    log = stack.log()
    assert log.count("worker: duplicate delivery of staging/") >= UPLOADS
    for view in results:
        assert f"duplicate delivery of staging/{view['upload_id']} " in log

    # ... the counters the API reports to an admin are exact
    stats = requests.get(f"{stack.api_url}/admin/stats", headers=stack.auth("admin"), timeout=30)
    assert stats.status_code == 200, stats.text
    stored_bytes = sum(len(data) for data in contents)
    assert stats.json() == {
        "total_files": CONTENTS,
        "total_uploads": UPLOADS,
        "duplicates_avoided": UPLOADS - CONTENTS,
        "total_s3_size_saved": sum(len(data) for data in jobs) - stored_bytes,
        "total_bytes_stored": stored_bytes,
    }

    # ... the bucket holds the 50 contents, each under the hash of its bytes, and nothing staged
    assert object_keys(stack, "cas/sha256/") == {f"cas/sha256/{d}" for d in digests}
    s3 = stack.client("s3")
    for digest in digests:
        body = s3.get_object(Bucket=stack.bucket, Key=f"cas/sha256/{digest}")["Body"].read()
        assert sha256_hex(body) == digest
    assert object_keys(stack, "staging/") == set()

    # ... every invariant holds and no message was dead-lettered
    check_invariants(
        _resources(stack),
        s3,
        stack.client("dynamodb"),
        settled=[view["upload_id"] for view in results],
    )
    dead = stack.client("sqs").receive_message(QueueUrl=stack.dlq_url, WaitTimeSeconds=0)
    assert dead.get("Messages", []) == []
