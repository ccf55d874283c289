"""Poison and edge messages through the worker Lambda: each one ends in a defined outcome.

The outcomes a message can have: acknowledged without effect, a terminal upload (REJECTED
included), or a batch item failure, which SQS hands out again and dead-letters after five
receives. Whatever the message, no bytes are lost and no counter moves unless an upload
completed. The notifications are the ones moto's bucket really sent to the ingest queue, or
AWS's own format (tests.lambda_events) where moto's differs.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.exceptions import ClientError

from adapters import clients
from domain.model import staging_key
from tests import faults
from tests.faults import Rig
from tests.lambda_events import s3_notification, sample, sqs_event
from tests.pipeline import FakeContext, Pipeline

pytestmark = pytest.mark.integration

DATA = b"poison or not, nothing is lost\n"
MAX_RECEIVES = 5  # template.yaml: the ingest queue's redrive policy


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def stack() -> Iterator[Any]:
    with faults.moto_stack() as resources:
        yield resources


@pytest.fixture
def rig(stack: Any) -> Rig:
    from handlers import worker

    faults.wipe(stack)
    return Rig(stack, worker)


def held_and_pending(rig: Rig) -> tuple[str, str]:
    """A world with something to lose: a stored upload, and one whose bytes wait in staging."""
    stored = rig.uploaded(DATA)
    assert rig.deliver(*stored.bodies) == []
    pending = rig.uploaded(b"waiting for its turn\n", owner="bob")
    rig.expected.delivered(stored.upload_id, DATA)
    rig.expected.pending(pending.upload_id)
    return stored.upload_id, pending.upload_id


TEST_EVENT = json.dumps(json.loads(sample("sqs_s3_test_event.json")["Records"][0]["body"]))

MALFORMED = {
    "not-json": "this is not an S3 notification",
    "truncated-json": '{"Records": [{"eventName": "ObjectCreated:Put"',
    "empty-body": "",
    "json-null": "null",
    "json-string": '"s3:TestEvent"',
    "json-list": '[{"eventName": "ObjectCreated:Put"}]',
    "wrong-object": '{"hello": "world"}',
    "empty-records": '{"Records": []}',
    "records-not-a-list": '{"Records": {"eventName": "ObjectCreated:Put"}}',
    "record-without-s3": '{"Records": [{"eventName": "ObjectCreated:Put", '
    '"eventTime": "2024-05-01T12:00:00.000Z"}]}',
    "record-without-key": '{"Records": [{"eventName": "ObjectCreated:Put", '
    '"eventTime": "2024-05-01T12:00:00.000Z", "s3": {"bucket": {"name": "b"}, "object": {}}}]}',
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_message_fails_alone_and_touches_nothing(rig: Rig, body: str) -> None:
    stored, _ = held_and_pending(rig)
    before = rig.state()
    event = sqs_event(body, TEST_EVENT)

    response = rig.worker.lambda_handler(event, FakeContext())

    # Only the bad message is retried (then dead-lettered); its neighbour is acknowledged.
    assert response["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
    assert rig.state() == before
    rig.check([stored])


def test_a_batch_of_nothing_but_poison_fails_the_invocation(rig: Rig) -> None:
    stored, _ = held_and_pending(rig)
    before = rig.state()

    # Lambda then returns the whole batch to the queue, as a failure of each message would.
    with pytest.raises(BatchProcessingError):
        rig.worker.lambda_handler(sqs_event(*MALFORMED.values()), FakeContext())

    assert rig.state() == before
    rig.check([stored])


# --- dead-lettering, with moto's real queue and redrive policy ---------------------------------


def _receives_until_dead(rig: Rig) -> int:
    """Poll the ingest queue as Lambda would until nothing is left; how many rounds failed."""
    failures = 0
    while rig.poll():
        failures += 1
        assert failures <= MAX_RECEIVES
    return failures


def _dead_letters(rig: Rig) -> list[str]:
    messages = rig.sqs.receive_message(QueueUrl=rig.resources.dlq_url, MaxNumberOfMessages=10).get(
        "Messages", []
    )
    return [m["Body"] for m in messages]


def test_a_poison_message_is_dead_lettered_after_five_receives(rig: Rig) -> None:
    stored, _ = held_and_pending(rig)
    before = rig.state()
    rig.sqs.send_message(QueueUrl=rig.resources.queue_url, MessageBody=MALFORMED["not-json"])

    failures = _receives_until_dead(rig)

    assert failures == MAX_RECEIVES
    assert _dead_letters(rig) == [MALFORMED["not-json"]]
    assert rig.state() == before
    rig.check([stored])


def _unavailable(call: faults.Call) -> BaseException:
    return ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "CopyObject")


def test_an_upload_that_fails_five_times_waits_in_the_dlq_and_completes_on_redrive(
    rig: Rig,
) -> None:
    upload_id = rig.create(DATA)
    rig.put(upload_id, DATA)  # moto's bucket queues the notification itself

    with faults.outage(clients.s3(), operation="CopyObject", error=_unavailable):
        failures = _receives_until_dead(rig)

    # Nothing lost: the upload waits, its bytes still in staging, no counter moved.
    [dead] = _dead_letters(rig)
    assert failures == MAX_RECEIVES
    state = rig.state()
    assert state.status(upload_id) == "PENDING"
    assert staging_key(upload_id) in state.objects
    assert set(state.counters.values()) == {0}
    rig.check([], due=[upload_id])

    # The redrive (DLQ -> source queue) once the outage is over completes it.
    rig.sqs.send_message(QueueUrl=rig.resources.queue_url, MessageBody=dead)
    assert rig.poll() == []
    rig.expected.delivered(upload_id, DATA)
    rig.check_settled([upload_id])


# --- notifications that name no upload, or no object any more ----------------------------------


def test_a_notification_for_an_unknown_upload_is_acknowledged_and_left_alone(rig: Rig) -> None:
    stored, _ = held_and_pending(rig)
    stray = staging_key(uuid.uuid4().hex)
    rig.s3.put_object(Bucket=rig.resources.bucket, Key=stray, Body=b"nobody asked for this")
    before = rig.state()

    assert rig.deliver(*rig.notifications()) == []

    # Not ours to delete: the bucket's lifecycle rule expires staging.
    assert rig.state() == before
    assert stray in before.objects
    rig.check([stored])


def test_an_object_deleted_before_processing_leaves_its_upload_completable(rig: Rig) -> None:
    upload_id = rig.create(DATA)
    rig.put(upload_id, DATA)
    [first] = rig.notifications()
    rig.s3.delete_object(Bucket=rig.resources.bucket, Key=staging_key(upload_id))
    before = rig.state()

    assert rig.deliver(first) == []

    assert rig.state() == before
    assert before.status(upload_id) == "PENDING"
    # The URL can still deliver the bytes, and then the upload completes as usual.
    rig.put(upload_id, DATA)
    assert rig.deliver(*rig.notifications(), first) == []
    rig.expected.delivered(upload_id, DATA)
    rig.check_settled([upload_id])


# --- zero bytes --------------------------------------------------------------------------------


def test_zero_byte_files_are_stored_once_and_count_no_bytes(rig: Rig) -> None:
    declared = rig.uploaded(b"", sha256=sha(b""), checksum=True)  # HeadObject tells the hash
    undeclared = rig.uploaded(b"", owner="bob")  # streamed: nothing to read, still hashed

    assert rig.deliver(*declared.bodies, *undeclared.bodies) == []
    held = Pipeline(rig.resources, owner="alice").call(
        "POST", "/uploads", {"filename": "empty", "size": 0, "sha256": sha(b"")}
    )

    assert held.status == 409
    rig.expected.delivered(declared.upload_id, b"")
    rig.expected.delivered(undeclared.upload_id, b"")
    rig.expected.held_duplicate(held.body["upload_id"], b"")
    rig.check_settled([declared.upload_id, undeclared.upload_id])
    assert rig.state().counters == {
        "files": 1,
        "uploads": 3,
        "duplicates": 2,
        "bytes_saved": 0,
        "bytes_stored": 0,
    }


# --- keys ------------------------------------------------------------------------------------

HEX = "0123456789abcdef" * 2
STRAY_NAMES = [
    "my file.txt",
    "a+b",
    "100%",
    "100%25",
    "café/日本 語",
    "😀",
    " +%2F+ ",
    f"{HEX} ",  # an upload id and a space
    f"{HEX}+",
    f"{HEX.upper()}",
    f"{HEX}/part",
    f"{HEX[:-1]}é",
]


@pytest.mark.parametrize("name", STRAY_NAMES)
def test_a_key_that_is_no_upload_is_acknowledged_and_left_alone(rig: Rig, name: str) -> None:
    stored, _ = held_and_pending(rig)
    key = f"staging/{name}"
    rig.s3.put_object(Bucket=rig.resources.bucket, Key=key, Body=b"stray")
    # moto's own notification (it encodes '/' too), and AWS's form ('+' for spaces, '/' kept).
    bodies = [*rig.notifications(), json.dumps(_aws_notification(rig, key))]
    before = rig.state()

    assert rig.deliver(*bodies) == []

    assert rig.state() == before
    assert key in before.objects
    rig.check([stored])


def _aws_notification(rig: Rig, key: str) -> dict[str, Any]:
    head = rig.s3.head_object(Bucket=rig.resources.bucket, Key=key)
    return s3_notification(
        key, size=head["ContentLength"], etag=head["ETag"].strip('"'), bucket=rig.resources.bucket
    )


def test_an_upload_key_in_every_encoding_is_processed_exactly_once(rig: Rig) -> None:
    target = rig.uploaded(DATA)
    key = staging_key(target.upload_id)
    aws = _aws_notification(rig, key)
    every_byte = json.loads(json.dumps(aws))
    every_byte["Records"][0]["s3"]["object"]["key"] = "".join(f"%{b:02X}" for b in key.encode())
    slash = json.loads(json.dumps(aws))
    slash["Records"][0]["s3"]["object"]["key"] = quote(key, safe="")

    assert rig.deliver(*target.bodies, json.dumps(aws), json.dumps(every_byte)) == []
    assert rig.deliver(json.dumps(slash)) == []

    rig.expected.delivered(target.upload_id, DATA)
    rig.check_settled([target.upload_id])


# --- the presigned URL used again --------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["STORED", "DUPLICATE", "REJECTED"])
def test_a_second_put_to_a_used_url_is_removed_and_counts_nothing(rig: Rig, outcome: str) -> None:
    if outcome == "DUPLICATE":
        first = rig.uploaded(DATA, owner="bob")
        assert rig.deliver(*first.bodies) == []
        rig.expected.delivered(first.upload_id, DATA)
    arrived = b"P" * len(DATA) if outcome == "REJECTED" else DATA
    # Declared, bob's hash of content he holds would be answered 409 (nothing to PUT).
    declared = {} if outcome == "DUPLICATE" else {"sha256": sha(DATA)}
    upload_id = rig.create(DATA, owner="bob", **declared)
    rig.put(upload_id, arrived)
    rig.expected.delivered(upload_id, arrived, sha256=sha(DATA))
    assert rig.deliver(*rig.notifications()) == []
    assert rig.state().status(upload_id) == outcome
    before = rig.state()

    # The URL stays valid for its TTL and staging is free again: the PUT succeeds ...
    rig.put(upload_id, DATA)
    assert staging_key(upload_id) in rig.state().objects
    assert rig.deliver(*rig.notifications()) == []

    # ... and its bytes are removed without a trace: the upload keeps its first outcome.
    assert rig.state() == before
    rig.check_settled([upload_id])


def test_a_second_put_while_the_first_bytes_wait_is_refused(rig: Rig) -> None:
    target = rig.uploaded(DATA)
    before = rig.state()

    with pytest.raises(ClientError) as refused:
        rig.put(target.upload_id, b"other bytes, same URL")

    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    assert rig.state() == before
    assert rig.notifications() == []
    assert rig.deliver(*target.bodies) == []
    rig.expected.delivered(target.upload_id, DATA)
    rig.check_settled([target.upload_id])


def test_the_fixture_queue_dead_letters_after_five_receives(stack: Any) -> None:
    """The redrive policy the tests above rely on is template.yaml's, as created in moto."""
    sqs = boto3.client("sqs")
    attributes = sqs.get_queue_attributes(
        QueueUrl=stack.queue_url, AttributeNames=["RedrivePolicy"]
    )["Attributes"]

    policy = json.loads(attributes["RedrivePolicy"])

    assert int(policy["maxReceiveCount"]) == MAX_RECEIVES
    assert policy["deadLetterTargetArn"].endswith(stack.dlq_url.rsplit("/", 1)[-1])
