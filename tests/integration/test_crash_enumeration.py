"""Kill the worker right before and right after each of its AWS calls, then redeliver.

Every AWS call the worker makes for one S3 record is numbered (tests.faults.CallLog); for each
call k the worker dies just before k is sent or just after k was answered, by a BaseException
raised from botocore's hook that nothing in the code can catch. The message is then delivered
again, once and then several more times, and the stored state must be exactly what one clean
delivery gives. Between the crash and the redelivery only two deviations are allowed: an object
under cas/ without its record when the crash fell between the copy and the transaction, and the
upload's staging object, which the redelivery removes.

Scenarios: new content (hash from HeadObject, or streamed), a content another owner stored (a
match: STORED without a copy), a content the owner already holds (a duplicate: the match's
transaction fails on the holding, then the duplicate's applies), two rejections, a multipart
object; and a worker overtaken at step k (tests.faults.Scheduler) by another worker storing the
same content for another owner or for the same one, by a second delivery of its own message, by
the client aborting, or by a second worker completing the upload after which the client PUTs
other bytes to the URL.
Overtaken workers are crashed at k, and separately resumed.

The step lists below are the enumeration itself: `test_each_scenario_makes_exactly_the_listed_
calls` fails as soon as the worker's call sequence changes, so no step can go untested. S3's
CopySourceIfMatch, which moto ignores, is enforced here as S3 does (tests.faults).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from adapters import clients
from adapters.s3 import ObjectChanged
from domain.model import staging_key
from tests import faults
from tests.faults import CallLog, Crash, Fault, Rig, Scheduler, Target, When
from tests.lambda_events import sqs_event
from tests.pipeline import FakeContext, Pipeline

pytestmark = pytest.mark.integration

DATA = b"crash me if you can\n"
FORGED = b"crash ME if you can\n"  # the declared size, other bytes

# The worker's calls for one record, in order, per scenario.
NEW_HEAD = (
    "GetItem",  # the upload
    "HeadObject",
    "GetItem",  # the content
    "UpdateItem",  # the claim
    "CopyObject",
    "TransactWriteItems",
    "DeleteObject",
)
NEW_STREAMED = (
    "GetItem",
    "HeadObject",
    "GetObject",
    "GetItem",
    "UpdateItem",
    "CopyObject",
    "TransactWriteItems",
    "DeleteObject",
)
MATCH = ("GetItem", "HeadObject", "GetItem", "TransactWriteItems", "DeleteObject")
DUPLICATE = (
    "GetItem",
    "HeadObject",
    "GetItem",
    "TransactWriteItems",  # as a match: cancelled, the owner's holding exists
    "TransactWriteItems",  # as a duplicate
    "DeleteObject",
)
REJECTED = ("GetItem", "HeadObject", "GetObject", "TransactWriteItems", "DeleteObject")

SINGLE = {
    "new-head": NEW_HEAD,  # S3 verified a SHA-256 on arrival: HeadObject alone tells the hash
    "new-streamed": NEW_STREAMED,  # no declared hash: the worker reads and hashes the bytes
    "match": MATCH,  # another owner's content
    "duplicate": DUPLICATE,  # the owner's own content again
    "rejected-checksum": REJECTED,
    "rejected-size": REJECTED,
    "multipart": NEW_STREAMED,  # a multipart object has no full-object SHA-256: streamed
}
# A worker (A) on new content is overtaken at step k; it follows NEW_STREAMED up to there.
RACES = {
    "race-two-uploads": NEW_STREAMED,  # B stores the same content from bob's upload
    "race-two-uploads-same-owner": NEW_STREAMED,  # ... from another upload of alice's
    "race-two-uploads-other-after": NEW_STREAMED,  # ... only after A died at k
    "race-same-upload": NEW_STREAMED,  # one message handed to A and B at once
    "race-abort": NEW_STREAMED,  # the client aborts the upload (DELETE /uploads/{id})
    "race-second-put": NEW_STREAMED,  # B completes it, then the client PUTs other bytes again
}
WHEN: tuple[When, ...] = ("before", "after")


def _cases(scenarios: dict[str, tuple[str, ...]]) -> list[Any]:
    return [
        pytest.param(name, k, when, id=f"{name}-{k:02d}-{op}-{when}")
        for name, ops in scenarios.items()
        for k, op in enumerate(ops, 1)
        for when in WHEN
    ]


STEPS_ENUMERATED = sum(len(ops) for ops in (*SINGLE.values(), *RACES.values()))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def stack() -> Iterator[Any]:
    # The second context is entered inside the first: the clients are moto's.
    with (
        faults.moto_stack() as resources,
        faults.strict_copy_source(clients.s3(), boto3.client("s3")),
    ):
        yield resources


@pytest.fixture
def rig(stack: Any) -> Rig:
    from handlers import worker

    faults.wipe(stack)
    return Rig(stack, worker)


def _multipart(rig: Rig, data: bytes) -> Target:
    """The client's flow for a file in parts: create, PUT the part, complete through the API."""
    from handlers import wiring

    upload_id = rig.create(data, multipart=True)
    found = wiring.ledger().get_multipart_upload(upload_id)
    assert found is not None and found[1] is not None
    etag = rig.s3.upload_part(
        Bucket=rig.resources.bucket,
        Key=staging_key(upload_id),
        UploadId=found[1].s3_upload_id,
        PartNumber=1,
        Body=data,
    )["ETag"]
    done = Pipeline(rig.resources, owner="alice").call(
        "POST", f"/uploads/{upload_id}/complete", {"parts": [{"part_number": 1, "etag": etag}]}
    )
    assert done.status == 202, done.body
    bodies = rig.notifications()
    # moto announces the assembled object twice (Put, then CompleteMultipartUpload): the
    # second is one more redelivery.
    assert len(bodies) == 2
    return Target(upload_id, bodies)


def given(rig: Rig, scenario: str) -> Target:
    """Set up the scenario's world and return the delivery that will be crashed."""
    if scenario == "new-head":
        target = rig.uploaded(DATA, sha256=sha(DATA), checksum=True)
    elif scenario == "new-streamed" or scenario.startswith("race-"):
        target = rig.uploaded(DATA)
    elif scenario in ("match", "duplicate"):
        first = rig.uploaded(DATA, sha256=sha(DATA), checksum=True)
        assert rig.deliver(*first.bodies) == []
        rig.expected.delivered(first.upload_id, DATA)
        if scenario == "match":
            target = rig.uploaded(DATA, owner="bob", sha256=sha(DATA), checksum=True)
        else:  # declared, alice's hash would be answered 409; S3 still verifies the checksum
            target = rig.uploaded(DATA, checksum=True)
        target.settled.append(first.upload_id)
    elif scenario == "rejected-checksum":
        upload_id = rig.create(DATA, sha256=sha(DATA))
        # Bytes that arrived unverified (as through parts): only the worker can catch them.
        rig.put(upload_id, FORGED)
        rig.expected.delivered(upload_id, FORGED, sha256=sha(DATA))
        return Target(upload_id, rig.notifications())
    elif scenario == "rejected-size":
        upload_id = rig.create(DATA)
        rig.put(upload_id, DATA + b"!")
        rig.expected.delivered(upload_id, DATA + b"!", size=len(DATA))
        return Target(upload_id, rig.notifications())
    elif scenario == "multipart":
        target = _multipart(rig, DATA)
    else:
        raise AssertionError(scenario)
    rig.expected.delivered(target.upload_id, DATA)
    return target


def redelivered(rig: Rig, target: Target) -> None:
    """Once: the state becomes exactly a clean delivery's. Several times more: nothing moves."""
    assert rig.deliver(target.bodies[0]) == []
    settled = [target.upload_id, *target.settled]
    rig.check_settled(settled)
    after = rig.state()

    for _ in range(3):
        assert rig.deliver(*target.bodies) == []

    assert rig.state() == after
    rig.check_settled(settled)


def _orphan_possible(calls: list[str]) -> bool:
    """Only a worker that copied and never recorded may leave bytes nobody accounts for."""
    return "CopyObject" in calls and "TransactWriteItems" not in calls


# --- the enumeration is complete ---------------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(SINGLE))
def test_each_scenario_makes_exactly_the_listed_calls(rig: Rig, scenario: str) -> None:
    target = given(rig, scenario)

    with CallLog(clients.s3(), clients.dynamodb()) as log:
        assert rig.deliver(target.bodies[0]) == []

    assert log.operations == list(SINGLE[scenario])
    rig.check_settled([target.upload_id, *target.settled])


def test_the_enumeration_covers_every_step_twice(capsys: pytest.CaptureFixture[str]) -> None:
    cases = _cases(SINGLE) + _cases(RACES)

    with capsys.disabled():
        print(f"\ncrash enumeration: {STEPS_ENUMERATED} steps, {len(cases)} crash points")

    assert len(cases) == 2 * STEPS_ENUMERATED
    assert len({c.id for c in cases}) == len(cases)


# --- one worker, crashed at every step ---------------------------------------------------------


@pytest.mark.parametrize(("scenario", "k", "when"), _cases(SINGLE))
def test_a_crash_at_any_step_is_undone_by_redelivery(
    rig: Rig, scenario: str, k: int, when: When
) -> None:
    target = given(rig, scenario)
    fault = Fault(k, when)

    with CallLog(clients.s3(), clients.dynamodb(), fault=fault) as log, pytest.raises(Crash):
        rig.deliver(target.bodies[0])

    assert log.fired is not None and log.fired.operation == SINGLE[scenario][k - 1]
    made = log.operations[: k - 1] if when == "before" else log.operations[:k]
    rig.check(target.settled, allow_orphans=_orphan_possible(made), due=(target.upload_id,))
    redelivered(rig, target)


# --- the handler's own path: an exception fails only its message -------------------------------


def _failure(when: str) -> Callable[[faults.Call], BaseException]:
    if when == "before":
        # The call itself failed (botocore's retries exhausted): nothing reached AWS.
        return lambda call: ClientError(
            {"Error": {"Code": "InternalError", "Message": "injected"}}, call.operation
        )
    # AWS applied the call but its answer was lost on the way back.
    return lambda call: ReadTimeoutError(endpoint_url=f"https://{call.service}.amazonaws.com")


@pytest.mark.parametrize(("scenario", "k", "when"), _cases({"new-streamed": NEW_STREAMED}))
def test_an_error_at_any_step_fails_only_its_message(
    rig: Rig, scenario: str, k: int, when: When
) -> None:
    target = given(rig, scenario)
    neighbour = rig.uploaded(b"a neighbour in the same batch\n", owner="bob")
    rig.expected.delivered(neighbour.upload_id, b"a neighbour in the same batch\n")
    event = sqs_event(target.bodies[0], neighbour.bodies[0])
    fault = Fault(k, when, _failure(when))

    with CallLog(clients.s3(), clients.dynamodb(), fault=fault) as log:
        response = rig.worker.lambda_handler(event, FakeContext())

    assert log.fired is not None
    assert response["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
    made = log.operations[: k - 1] if when == "before" else log.operations[:k]
    rig.check([neighbour.upload_id], allow_orphans=_orphan_possible(made), due=(target.upload_id,))
    target.settled.append(neighbour.upload_id)
    redelivered(rig, target)


# --- a worker overtaken at every step: by another worker, the client, or both ----------------


def overtake(rig: Rig, scheduler: Scheduler, scenario: str, target: Target) -> list[str]:
    """What happens while A is paused; returns the uploads that are settled afterwards."""
    if scenario.startswith("race-two-uploads"):
        other = rig.uploaded(DATA, owner="alice" if scenario.endswith("same-owner") else "bob")
        rig.expected.delivered(other.upload_id, DATA)
        b = scheduler.spawn("B", rig.handle(other.bodies[0]))
        scheduler.finish(b)
        assert b.state == "done", b.error
        target.settled.append(other.upload_id)
        return [other.upload_id]
    if scenario == "race-abort":
        reply = Pipeline(rig.resources, owner="alice").call(
            "DELETE", f"/uploads/{target.upload_id}"
        )
        assert reply.status in (204, 409), reply.body
        if reply.status == 204:
            rig.expected.aborted(target.upload_id)
        return []
    b = scheduler.spawn("B", rig.handle(target.bodies[0]))
    scheduler.finish(b)
    assert b.state == "done", b.error
    if scenario == "race-second-put":
        # Staging is free again and the URL still valid: the same PUT, other bytes.
        rig.put(target.upload_id, FORGED)
        target.bodies += rig.notifications()
    return [target.upload_id]


@pytest.mark.parametrize(("scenario", "k", "when"), _cases(RACES))
def test_an_overtaken_worker_crashed_at_any_step(
    rig: Rig, scenario: str, k: int, when: str
) -> None:
    target = given(rig, scenario)

    with Scheduler(clients.s3(), clients.dynamodb()) as scheduler:
        a = scheduler.spawn("A", rig.handle(target.bodies[0]))
        for _ in range(k - 1):
            scheduler.step(a)
        assert a.next_call == RACES[scenario][k - 1]
        if not scenario.endswith("other-after"):
            settled = overtake(rig, scheduler, scenario, target)
        scheduler.crash(a, after_call=when == "after")
        if scenario.endswith("other-after"):
            settled = overtake(rig, scheduler, scenario, target)

    assert a.state == "crashed", a.error
    rig.check(settled, allow_orphans=_orphan_possible(a.calls), due=(target.upload_id,))
    redelivered(rig, target)


RESUMED = {name: ops for name, ops in RACES.items() if not name.endswith("other-after")}


@pytest.mark.parametrize(
    ("scenario", "k"),
    [
        pytest.param(name, k, id=f"{name}-{k:02d}-{op}")
        for name, ops in RESUMED.items()
        for k, op in enumerate(ops, 1)
    ],
)
def test_an_overtaken_worker_that_resumes_leaves_nothing_behind(
    rig: Rig, scenario: str, k: int
) -> None:
    target = given(rig, scenario)

    with Scheduler(clients.s3(), clients.dynamodb()) as scheduler:
        a = scheduler.spawn("A", rig.handle(target.bodies[0]))
        for _ in range(k - 1):
            scheduler.step(a)
        overtake(rig, scheduler, scenario, target)
        scheduler.finish(a)

    # A may fail (the bytes it hashed were replaced): SQS then hands its message out again.
    assert a.state == "done" or isinstance(a.error, ObjectChanged), a.error
    redelivered(rig, target)
