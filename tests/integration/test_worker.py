"""The worker Lambda against moto: SQS batches of S3 notifications in, batchItemFailures out.

Where it matters the notifications are the ones moto's bucket really sent to the ingest queue
(its own key encoding and missing fields), drained and handed to the handler as Lambda would.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from adapters import clients
from domain.model import UploadStatus, content_key, staging_key
from handlers import wiring
from service.uploads import UploadPolicy, create_upload
from tests.invariants import Expected, State, check_invariants, read_state
from tests.lambda_events import s3_notification, sqs_event
from tests.pipeline import FakeContext

pytestmark = pytest.mark.integration

A = b"first content\n"
B = b"second content, a little longer\n"

POLICY = UploadPolicy(
    url_ttl_seconds=900,
    multipart_threshold=100 * 1024**2,
    part_size=16 * 1024**2,
    max_pending=100,
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Worker:
    """Drives the worker handler the way the SQS event source mapping does."""

    def __init__(self, resources: Any, module: ModuleType) -> None:
        self.resources = resources
        self.module = module
        self.s3 = clients.s3()
        self.ddb = clients.dynamodb()
        self.sqs = boto3.client("sqs")
        self.expected = Expected()

    def create(self, data: bytes, *, owner: str = "alice", declare: bool = True) -> str:
        created = create_upload(
            owner=owner,
            filename="f.txt",
            size=len(data),
            content_type="text/plain",
            sha256=sha(data) if declare else None,
            ledger=wiring.ledger(),
            store=wiring.store(),
            multipart=False,
            policy=POLICY,
        )
        return created.upload.upload_id

    def upload(self, data: bytes, **kwargs: Any) -> str:
        """Create an upload and PUT its bytes; moto queues the notification."""
        upload_id = self.create(data, **kwargs)
        self.s3.put_object(Bucket=self.resources.bucket, Key=staging_key(upload_id), Body=data)
        self.expected.delivered(upload_id, data)
        return upload_id

    def drain(self) -> list[str]:
        """Every message moto's bucket sent to the ingest queue so far (bodies, in order)."""
        bodies: list[str] = []
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=self.resources.queue_url, MaxNumberOfMessages=10
            ).get("Messages", [])
            if not messages:
                return bodies
            for m in messages:
                bodies.append(m["Body"])
                self.sqs.delete_message(
                    QueueUrl=self.resources.queue_url, ReceiptHandle=m["ReceiptHandle"]
                )

    def invoke(self, event: dict[str, Any]) -> list[str]:
        """Run one batch; the ids of the messages reported as failed."""
        response = self.module.lambda_handler(event, FakeContext())
        return [f["itemIdentifier"] for f in response["batchItemFailures"]]

    def status(self, upload_id: str) -> UploadStatus:
        upload = wiring.ledger().get_upload(upload_id)
        assert upload is not None
        return upload.status

    def state(self) -> State:
        return read_state(self.resources, self.s3, self.ddb)

    def check(self, *settled: str, allow_orphans: bool = False) -> None:
        check_invariants(
            self.resources, self.s3, self.ddb, settled=settled, allow_orphans=allow_orphans
        )
        if not allow_orphans:
            self.expected.check(self.state())


@pytest.fixture
def worker(aws: Any) -> Iterator[Worker]:
    from handlers import worker as module

    w = Worker(aws, module)
    w.drain()  # the s3:TestEvent sent when the notification was configured
    yield w


def ids(event: dict[str, Any]) -> list[str]:
    return [r["messageId"] for r in event["Records"]]


def test_the_notification_s3_sends_leads_to_a_stored_upload(worker: Worker) -> None:
    upload_id = worker.upload(A)
    bodies = worker.drain()
    assert len(bodies) == 1

    failed = worker.invoke(sqs_event(*bodies))

    assert failed == []
    assert worker.status(upload_id) is UploadStatus.STORED
    assert worker.state().keys("") == {content_key(sha(A))}
    worker.check(upload_id)


def test_the_test_event_s3_sends_on_configuration_is_skipped(aws: Any) -> None:
    from handlers import worker as module

    w = Worker(aws, module)
    bodies = w.drain()
    assert [json.loads(b).get("Event") for b in bodies] == ["s3:TestEvent"]
    before = w.state()

    assert w.invoke(sqs_event(*bodies)) == []
    assert w.state() == before


def test_a_batch_with_a_duplicate_and_its_original_stores_the_content_once(worker: Worker) -> None:
    first = worker.upload(A, owner="alice")
    second = worker.upload(A, owner="alice")
    other = worker.upload(B, owner="bob")
    bodies = worker.drain()

    # Reordered: the later upload's event first.
    failed = worker.invoke(sqs_event(bodies[1], bodies[2], bodies[0]))

    assert failed == []
    assert worker.status(second) is UploadStatus.STORED
    assert worker.status(first) is UploadStatus.DUPLICATE
    assert worker.status(other) is UploadStatus.STORED
    worker.expected = Expected()
    for upload_id, data in ((second, A), (other, B), (first, A)):
        worker.expected.delivered(upload_id, data)
    worker.check(first, second, other)


def test_redelivered_messages_change_nothing(worker: Worker) -> None:
    upload_id = worker.upload(A)
    [body] = worker.drain()
    assert worker.invoke(sqs_event(body)) == []
    after_first = worker.state()

    # The same notification again, several times, alone and twice within one batch.
    for event in (sqs_event(body), sqs_event(body, body), sqs_event(body)):
        assert worker.invoke(event) == []

    assert worker.state() == after_first
    worker.check(upload_id)


def test_a_malformed_message_fails_alone(worker: Worker) -> None:
    before_id = worker.upload(A)
    after_id = worker.upload(B)
    first, second = worker.drain()
    event = sqs_event(first, "this is not an S3 notification", second)

    failed = worker.invoke(event)

    # Only the bad message is retried (and dead-lettered); its neighbours are acknowledged.
    assert failed == [ids(event)[1]]
    assert worker.status(before_id) is UploadStatus.STORED
    assert worker.status(after_id) is UploadStatus.STORED
    worker.check(before_id, after_id)


@pytest.mark.parametrize(
    "body",
    [
        '{"Records": [{"eventName": "ObjectCreated:Put"}]}',
        '{"Records": [{}]}',
        "[]",
        "",
    ],
)
def test_every_kind_of_malformed_message_is_reported(worker: Worker, body: str) -> None:
    good = worker.upload(A)
    [good_body] = worker.drain()
    event = sqs_event(good_body, body)

    assert worker.invoke(event) == [ids(event)[1]]
    worker.check(good)


def test_an_unexpected_error_fails_only_its_message_and_is_retried(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    doomed = worker.upload(A)
    fine = worker.upload(B)
    bodies = worker.drain()
    ledger = wiring.ledger()
    original = ledger.record_stored

    def flaky(upload: Any, content: Any, replaces: Any) -> Any:
        if upload.upload_id == doomed:
            raise RuntimeError("DynamoDB is having a bad day")
        return original(upload, content, replaces=replaces)

    monkeypatch.setattr(ledger, "record_stored", flaky)
    event = sqs_event(*bodies)

    failed = worker.invoke(event)

    assert failed == [ids(event)[0]]
    assert worker.status(doomed) is UploadStatus.PENDING
    assert worker.status(fine) is UploadStatus.STORED
    # The copy happened before the failure: an orphan until the retry records it.
    assert staging_key(doomed) in worker.state().objects
    worker.check(fine, allow_orphans=True)

    monkeypatch.setattr(ledger, "record_stored", original)
    assert worker.invoke(sqs_event(bodies[0])) == []
    assert worker.status(doomed) is UploadStatus.STORED
    worker.check(doomed, fine)


def test_a_batch_that_fails_entirely_fails_the_invocation(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload_id = worker.upload(A)
    bodies = worker.drain()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(wiring.ledger(), "get_upload", broken)

    # Lambda then returns every message to the queue, as a failure of each would.
    with pytest.raises(BatchProcessingError):
        worker.invoke(sqs_event(*bodies))
    monkeypatch.undo()

    assert worker.status(upload_id) is UploadStatus.PENDING
    worker.expected.pending(upload_id)
    worker.check()


@pytest.mark.parametrize(
    "name",
    ["my file.txt", "a+b", "100%", "100%25", "café/日本 語", "😀", " +%2F+ ", "dir/file"],
)
def test_objects_under_staging_that_are_no_upload_are_ignored(worker: Worker, name: str) -> None:
    key = f"staging/{name}"
    worker.s3.put_object(Bucket=worker.resources.bucket, Key=key, Body=b"stray")
    moto_bodies = worker.drain()
    aws_body = s3_notification(key, size=5, etag="0" * 32, bucket=worker.resources.bucket)
    before = worker.state()

    failed = worker.invoke(sqs_event(*moto_bodies, aws_body))

    assert failed == []
    assert worker.state() == before
    assert key in before.objects
    worker.check()


@pytest.mark.parametrize(
    ("key", "event_name", "bucket"),
    [
        # Well formed, but no upload was ever created: left for the lifecycle rule.
        (f"staging/{uuid.uuid4().hex}", "ObjectCreated:Put", None),
        ("elsewhere/file", "ObjectCreated:Put", None),
        ("UPLOAD", "ObjectRemoved:Delete", None),
        ("UPLOAD", "ObjectCreated:Put", "someone-elses-bucket"),
    ],
    ids=["unknown-upload", "outside-staging", "removed", "other-bucket"],
)
def test_notifications_the_worker_has_no_business_with_are_acknowledged(
    worker: Worker, key: str, event_name: str, bucket: str | None
) -> None:
    upload_id = worker.create(A)
    key = staging_key(upload_id) if key == "UPLOAD" else key
    body = s3_notification(
        key, size=len(A), etag="0" * 32, bucket=bucket or worker.resources.bucket
    )
    body["Records"][0]["eventName"] = event_name
    before = worker.state()

    assert worker.invoke(sqs_event(body)) == []

    assert worker.state() == before
    worker.expected.pending(upload_id)
    worker.check()


def test_a_message_with_several_records_processes_each(worker: Worker) -> None:
    first = worker.upload(A)
    second = worker.upload(B)
    records = [r for b in worker.drain() for r in json.loads(b)["Records"]]

    assert worker.invoke(sqs_event({"Records": records})) == []

    assert {worker.status(first), worker.status(second)} == {UploadStatus.STORED}
    worker.check(first, second)


def test_a_zero_byte_file_goes_through(worker: Worker) -> None:
    first = worker.upload(b"", owner="alice")
    second = worker.upload(b"", owner="alice", declare=False)

    assert worker.invoke(sqs_event(*worker.drain())) == []

    assert [worker.status(first), worker.status(second)] == [
        UploadStatus.STORED,
        UploadStatus.DUPLICATE,
    ]
    worker.check(first, second)


def test_bytes_that_do_not_match_are_rejected_through_the_handler(worker: Worker) -> None:
    upload_id = worker.create(A)
    forged = bytes(reversed(A))
    worker.s3.put_object(Bucket=worker.resources.bucket, Key=staging_key(upload_id), Body=forged)

    assert worker.invoke(sqs_event(*worker.drain())) == []

    assert worker.status(upload_id) is UploadStatus.REJECTED
    assert worker.state().objects == {}
    worker.expected.delivered(upload_id, forged, sha256=sha(A))
    worker.check(upload_id)


def test_an_empty_batch_is_nothing_to_do(worker: Worker) -> None:
    assert worker.invoke({"Records": []}) == []


@pytest.mark.parametrize("event", [{}, [], None, {"Records": [{"body": "{}"}]}, {"detail": {}}])
def test_an_event_that_is_not_an_sqs_batch_is_refused_with_a_clear_error(
    worker: Worker, event: Any
) -> None:
    # Given an invoke that did not come from the SQS event source mapping (no message ids)
    before = worker.state()

    # When the worker is invoked with it, then it says so and touches nothing
    with pytest.raises(worker.module.NotAnSqsBatch, match="Records"):
        worker.module.lambda_handler(event, FakeContext())
    assert worker.state() == before
