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

Deleting and collecting (issue 12), each killed before and after each of its calls and then
retried as it would be: the client's DELETE (an upload that is its content's last reference, a
DUPLICATE, a STORED upload of a content another owner holds too, a REJECTED one, a PENDING one
deleted twice: aborted, then gone) until it answers 404; the admin's erasure of an owner until
it is done; the collector's run over a content unreferenced past its grace, by its next run. The
end state must be a clean run's, exactly (`shape`: ids named, times elided). And a collection and
a new upload of the same content overtaking each other at every step, the collector or the
worker also crashed there: the new upload always ends STORED, with its bytes under cas/.

The step lists below are the enumeration itself: `test_each_scenario_makes_exactly_the_listed_
calls` and `test_each_operation_makes_exactly_the_listed_calls` fail as soon as a call sequence
changes, so no step can go untested. S3's CopySourceIfMatch, which moto ignores, is enforced
here as S3 does (tests.faults). KNOWN_BUGS lists the crash points where src/ falls short of a
clean run (strict xfails: fixing the bug shows).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from adapters import clients
from adapters.s3 import ObjectChanged
from domain.lifecycle import COLLECTION_LEASE_MARGIN
from domain.model import content_key, staging_key
from service import clock
from service.collector import Collection, collect
from service.ingest import ContentBeingCollected
from tests import faults
from tests.faults import CallLog, Crash, Fault, Rig, Scheduler, Target, Task, When
from tests.invariants import State
from tests.lambda_events import sqs_event
from tests.pipeline import FakeContext, Pipeline

pytestmark = [pytest.mark.integration, pytest.mark.long]

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
# Another owner's content, the bytes hashed: also what a revival of an unreferenced one makes.
MATCH_STREAMED = (
    "GetItem",
    "HeadObject",
    "GetObject",
    "GetItem",
    "TransactWriteItems",
    "DeleteObject",
)

SINGLE = {
    "new-head": NEW_HEAD,  # S3 verified a SHA-256 on arrival: HeadObject alone tells the hash
    "new-streamed": NEW_STREAMED,  # no declared hash: the worker reads and hashes the bytes
    "match": MATCH,  # another owner's content
    "duplicate": DUPLICATE,  # the owner's own content again
    "rejected-checksum": REJECTED,
    "rejected-size": REJECTED,
    "multipart": NEW_STREAMED,  # a multipart object has no full-object SHA-256: streamed
}
# A worker (A) is overtaken at step k; it follows its list up to there.
RACES = {
    "race-two-uploads": NEW_STREAMED,  # B stores the same content from bob's upload
    "race-two-uploads-same-owner": NEW_STREAMED,  # ... from another upload of alice's
    "race-two-uploads-other-after": NEW_STREAMED,  # ... only after A died at k
    "race-same-upload": NEW_STREAMED,  # one message handed to A and B at once
    "race-abort": NEW_STREAMED,  # the client DELETEs it: aborted, or (A completed it) deleted
    "race-second-put": NEW_STREAMED,  # B completes it, then the client PUTs other bytes again
    # A matches alice's content for bob; alice deletes its only other reference (issue 12): a
    # match then finds it unreferenced, and revives it instead.
    "race-delete": MATCH_STREAMED,
}
# A deletion first guesses whether the upload is its owner's last of the content and the content's
# last reference (domain.lifecycle.plan_deletion); when a guess was wrong the transaction is
# cancelled on that condition (nothing written) and the revised one applies.
# Every deletion of a terminal upload first deletes its staging object (idempotent): one left by
# a crash between the upload's terminal write and its clean-up would outlive the upload.
DELETE_LAST = (
    "GetItem",  # the upload
    "DeleteObject",  # its staging object, if a crash left one
    # A STORED upload that stored the bytes: first guessed the owner's last upload and the
    # content's last reference, rightly. The holding goes; the content becomes collectable.
    "TransactWriteItems",
)
DELETE_DUPLICATE = ("GetItem", "DeleteObject", "TransactWriteItems")  # a tombstone; one ref less
DELETE_SHARED = (
    "GetItem",
    "DeleteObject",
    # Guessed the content's last reference too: cancelled on the content only (bob's upload
    # references it as well), then applied with that guess revised.
    "TransactWriteItems",
    "TransactWriteItems",
)
DELETE_REJECTED = ("GetItem", "DeleteObject", "TransactWriteItems")  # it references nothing
DELETE_ABORTED = (
    "GetItem",  # the first DELETE: the upload is PENDING ...
    "TransactWriteItems",  # ... so it is aborted: REJECTED
    "DeleteObject",  # its staging object (if its bytes came)
    "GetItem",  # the second DELETE: REJECTED now ...
    "DeleteObject",
    "TransactWriteItems",  # ... so it is deleted
)
# The calls of the client's DELETE requests (the API Lambda), per scenario.
DELETES = {
    "delete-last": DELETE_LAST,  # alice's only upload of a content nobody else holds
    "delete-duplicate": DELETE_DUPLICATE,  # alice's DUPLICATE: she keeps her STORED one
    "delete-shared": DELETE_SHARED,  # alice's STORED upload of a content bob holds too
    "delete-rejected": DELETE_REJECTED,
    "delete-aborted": DELETE_ABORTED,  # a PENDING upload the client DELETEs twice
    "delete-arrived": DELETE_ABORTED,  # ... whose bytes arrived; the worker has not run yet
}
# POST /admin/owners/alice/erase over alice's STORED, DUPLICATE, REJECTED and PENDING (its bytes
# arrived, the worker has not run) uploads of one content bob holds too: one call does it all.
ERASE = (
    "Query",  # alice's uploads, newest first: one page
    "GetItem",  # the PENDING one, read again
    "TransactWriteItems",  # aborted
    "DeleteObject",  # its staging object, by the abort ...
    "DeleteObject",  # ... and by the deletion, as before any deletion
    "TransactWriteItems",  # deleted
    "DeleteObject",
    "TransactWriteItems",  # the REJECTED one
    "DeleteObject",
    "TransactWriteItems",  # the DUPLICATE: a tombstone
    "DeleteObject",
    "TransactWriteItems",  # the STORED one: guessed the content's last reference, cancelled ...
    "TransactWriteItems",  # ... bob's upload references it too: her holding goes, not the content
)
# One collector run over one content unreferenced past its grace. The collectable index is
# queried shard after shard, and each candidate handled as its shard lists it: DATA's hash
# starts with 7.
COLLECT = (
    *("Query",) * 8,  # shards 0 to 7
    "GetItem",  # the content
    "UpdateItem",  # COLLECTING
    "DeleteObject",  # its object
    "UpdateItem",  # GONE
    *("Query",) * 8,  # shards 8 to f
)
OPERATIONS = {**DELETES, "erase-owner": ERASE, "collect": COLLECT}

# A re-upload of a content unreferenced past its grace, by a worker that reads it LIVE: REVIVE.
REVIVE = MATCH_STREAMED
REVIVED = REVIVE.index("TransactWriteItems") + 1  # the worker's k that revives the content
# ... when a collection removed it after the worker read it: the revival is cancelled, the worker
# reads the content again (GONE) and stores it anew.
REVIVE_TOO_LATE = (
    *REVIVE[:REVIVED],
    "GetItem",  # GONE
    "UpdateItem",  # the claim
    "CopyObject",
    "TransactWriteItems",  # over the tombstone, which it requires unchanged
    "DeleteObject",
)
# A collector (C) overtaken at step k by a worker storing that content again for bob, and a
# worker (A) re-uploading it for alice overtaken at step k by a whole collector run.
GC_RACES = {"collect-overtaken-by-upload": COLLECT}
LISTED = COLLECT.index("GetItem")  # the collector's queries up to the content's shard
MARK = LISTED + 2  # the collector's k that marks the content COLLECTING
UPLOAD_RACES = {"reupload-overtaken-by-collect": REVIVE}

STEPS_ENUMERATED = sum(
    len(ops)
    for ops in (
        *SINGLE.values(),
        *RACES.values(),
        *OPERATIONS.values(),
        *GC_RACES.values(),
        *UPLOAD_RACES.values(),
    )
)
WHEN: tuple[When, ...] = ("before", "after")

# Crash points where src/ falls short of a clean run (strict xfails), with the reason. Empty: the
# one found (a deleted upload's staging bytes outliving it after a crash between its terminal
# write and its clean-up) is fixed by the deletion deleting the staging object first.
KNOWN_BUGS: dict[str, str] = {}


def _cases(scenarios: Mapping[str, tuple[str, ...]]) -> list[Any]:
    return [
        _param(name, k, when, id=f"{name}-{k:02d}-{op}-{when}")
        for name, ops in scenarios.items()
        for k, op in enumerate(ops, 1)
        for when in WHEN
    ]


def _param(*values: Any, id: str) -> Any:
    if id not in KNOWN_BUGS:
        return pytest.param(*values, id=id)
    return pytest.param(*values, id=id, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[id]))


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
def rig(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Rig:
    from handlers import worker

    # A worker waiting for a collection to end polls without sleeping.
    monkeypatch.setattr(clock, "sleep", lambda seconds: None)
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
    elif scenario == "race-delete":
        first = rig.uploaded(DATA, checksum=True)
        assert rig.deliver(*first.bodies) == []
        rig.expected.delivered(first.upload_id, DATA)
        target = rig.uploaded(DATA, owner="bob")
        target.settled.append(first.upload_id)
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
    groups = (SINGLE, RACES, OPERATIONS, GC_RACES, UPLOAD_RACES)
    cases = [case for scenarios in groups for case in _cases(scenarios)]
    worker = len(_cases(SINGLE) + _cases(RACES))

    with capsys.disabled():
        print(
            f"\ncrash enumeration: {STEPS_ENUMERATED} steps, {len(cases)} crash points "
            f"({worker} in ingestion, {len(cases) - worker} in deletion and collection)"
        )

    assert len(cases) == 2 * STEPS_ENUMERATED
    assert len({c.id for c in cases}) == len(cases)
    assert sha(DATA)[0] == "7"  # where COLLECT finds its content


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
    if scenario == "race-delete":
        first = target.settled[0]
        reply = Pipeline(rig.resources, owner="alice").call("DELETE", f"/uploads/{first}")
        assert reply.status == 204, reply.body
        rig.expected.deleted(first)
        return [first]
    if scenario == "race-abort":
        reply = Pipeline(rig.resources, owner="alice").call(
            "DELETE", f"/uploads/{target.upload_id}"
        )
        assert reply.status in (204, 409), reply.body
        if reply.status == 204 and rig.state().status(target.upload_id) is None:
            # A had completed it (step 8): since issue 12, DELETE deletes a STORED upload
            # (it used to answer 409).
            rig.expected.deleted(target.upload_id)
        elif reply.status == 204:
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

# All A's calls when B stored the content first (for bob, or for alice), overtaking A before it
# read the content (A matches it), or between that read and its store transaction (A's store is
# cancelled). Since issue 12 a cancelled store reads the content again and decides again (it used
# to fall through to a match without reading): the GetItem after the first transaction.
OVERTAKEN_STORE = {
    "race-two-uploads": (
        MATCH_STREAMED,  # k <= 4
        (*NEW_STREAMED[:-1], "GetItem", "TransactWriteItems", "DeleteObject"),  # k = 5 to 7
    ),
    "race-two-uploads-same-owner": (
        (*MATCH_STREAMED[:-1], "TransactWriteItems", "DeleteObject"),  # a match, then a duplicate
        (*NEW_STREAMED[:-1], "GetItem", "TransactWriteItems", "TransactWriteItems", "DeleteObject"),
    ),
}


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
    if scenario in OVERTAKEN_STORE:
        read_first, stored_first = OVERTAKEN_STORE[scenario]
        read = NEW_STREAMED.index("GetItem", 1) + 1  # A's k that reads the content
        want = read_first if k <= read else stored_first if k < len(NEW_STREAMED) else None
        assert a.calls == list(want or NEW_STREAMED)  # at the last k, A had stored it first
    redelivered(rig, target)


# --- deleting and collecting, crashed at every step (issue 12) ---------------------------------


@dataclass
class Scene:
    """The world one operation acts on: `target` is the upload deleted (for the erasure, the
    content's first upload; for the collector, the upload that referenced the content)."""

    target: str
    roles: dict[str, str] = field(default_factory=dict)  # upload id -> its part, for `shape`
    counters: dict[str, int] = field(default_factory=dict)  # before the operation
    queued: list[str] = field(default_factory=list)  # S3's events for the pending upload

    @property
    def settled(self) -> list[str]:
        """The uploads whose bytes arrived and were processed (all but the pending one)."""
        return [u for u, role in self.roles.items() if role != "pending"]


_TIMES = frozenset(
    {
        "created_at",
        "completed_at",
        "url_expires_at",
        "expires_at",
        "last_uploaded_at",
        "zero_since",
        "collected_at",
        "collecting_since",
        "collecting_until",
    }
)


def shape(state: State, roles: dict[str, str]) -> dict[str, Any]:
    """The state with upload ids named by their part and times by their presence, and the stats
    shards (chosen by upload id) summed: equal for two runs of one scenario that end alike."""

    def plain(item: dict[str, Any]) -> dict[str, Any]:
        return {
            k: "<time>" if k in _TIMES else roles.get(v, v) if isinstance(v, str) else v
            for k, v in item.items()
        }

    def key(k: str) -> str:
        prefix, _, rest = k.partition("/")
        return f"{prefix}/{roles[rest]}" if rest in roles else k

    return {
        "uploads": {roles.get(u, u): plain(i) for u, i in state.uploads.items()},
        "contents": {s: plain(c) for s, c in state.contents.items()},
        "holdings": {f"{o} {s}": plain(h) for (o, s), h in state.holdings.items()},
        "counters": state.counters,
        "objects": {key(k): etag for k, etag in state.objects.items()},
    }


def _completed(rig: Rig, scene: Scene, role: str, data: bytes, owner: str = "alice") -> str:
    """An upload through the worker; S3 verified its checksum, so HeadObject tells its hash."""
    target = rig.uploaded(data, owner=owner, checksum=True)
    assert rig.deliver(*target.bodies) == []
    scene.roles[target.upload_id] = role
    return target.upload_id


def _rejected(rig: Rig, scene: Scene) -> str:
    upload_id = rig.create(DATA)
    rig.put(upload_id, DATA + b"!")
    assert rig.deliver(*rig.notifications()) == []
    rig.expected.delivered(upload_id, DATA + b"!", size=len(DATA))
    scene.roles[upload_id] = "rejected"
    return upload_id


def given_operation(rig: Rig, scenario: str) -> Scene:
    """The world an operation of OPERATIONS acts on, every upload in it settled."""
    scene = Scene("")
    if scenario == "delete-rejected":
        scene.target = _rejected(rig, scene)
    elif scenario in ("delete-aborted", "delete-arrived"):
        scene.target = rig.create(DATA)
        scene.roles[scene.target] = "pending"
        if scenario == "delete-arrived":
            rig.put(scene.target, DATA)
            scene.queued = rig.notifications()
    elif scenario == "erase-owner":
        scene.target = _completed(rig, scene, "stored", DATA)
        rig.expected.delivered(scene.target, DATA)
        bobs = _completed(rig, scene, "bob's", DATA, owner="bob")
        rig.expected.delivered(bobs, DATA)
        held = Pipeline(rig.resources, owner="alice").create(DATA)  # declared: answered 409
        assert held.status == 409, held.body
        rig.expected.held_duplicate(held.body["upload_id"], DATA)
        scene.roles[held.body["upload_id"]] = "duplicate"
        _rejected(rig, scene)
        pending = rig.create(DATA)
        scene.roles[pending] = "pending"
        rig.put(pending, DATA)
        scene.queued = rig.notifications()
        created = [rig.state().uploads[u]["created_at"] for u in scene.roles if u != bobs]
        assert len(set(created)) == len(created)  # the index lists them in one order
    else:
        scene.target = _completed(rig, scene, "stored", DATA)
        rig.expected.delivered(scene.target, DATA)
        if scenario == "delete-duplicate":
            scene.target = _completed(rig, scene, "duplicate", DATA)
            rig.expected.delivered(scene.target, DATA)
        elif scenario == "delete-shared":
            bobs = _completed(rig, scene, "bob's", DATA, owner="bob")
            rig.expected.delivered(bobs, DATA)
        elif scenario == "collect":
            gone = Pipeline(rig.resources, owner="alice").call("DELETE", f"/uploads/{scene.target}")
            assert gone.status == 204, gone.body
            rig.expected.deleted(scene.target)
    rig.check(scene.settled)
    scene.counters = rig.state().counters
    return scene


# template.yaml: CollectorFunction's Timeout. Its schedule runs it hourly, so the run after one
# that crashed comes after the crashed run's lease.
COLLECTOR_TIMEOUT = timedelta(minutes=15)
NEXT_RUN = COLLECTOR_TIMEOUT + COLLECTION_LEASE_MARGIN + timedelta(seconds=1)


def _collect(*, later: timedelta = timedelta(0)) -> Collection:
    """A collector run, every content unreferenced past a grace of zero; `later` from now."""
    from handlers import wiring

    at = clock.utcnow() + later
    with mock.patch.object(clock, "utcnow", lambda: at):
        return collect(
            ledger=wiring.ledger(),
            store=wiring.store(),
            grace=timedelta(0),
            deadline=at + COLLECTOR_TIMEOUT,
        )


def _delete(rig: Rig, upload_id: str) -> int:
    return Pipeline(rig.resources, owner="alice").call("DELETE", f"/uploads/{upload_id}").status


def _erase(rig: Rig) -> dict[str, Any]:
    reply = Pipeline(rig.resources).as_admin().call("POST", "/admin/owners/alice/erase")
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.body
    return body


def perform(rig: Rig, scenario: str, scene: Scene) -> None:
    """The operation as it runs when nothing fails."""
    if scenario == "collect":
        assert _collect().collected == [sha(DATA)]
    elif scenario == "erase-owner":
        assert _erase(rig) == {
            "owner": "alice",
            "deleted": 4,
            "aborted": 1,
            "waiting": 0,
            "done": True,
        }
    else:
        for _ in range(2 if scenario in ("delete-aborted", "delete-arrived") else 1):
            assert _delete(rig, scene.target) == 204


def retry(rig: Rig, scenario: str, scene: Scene) -> None:
    """After a crash: the client DELETEs until 404, the admin erases until done, and the
    collector runs on its next schedule."""
    if scenario == "collect":
        assert _collect(later=NEXT_RUN).complete
        return
    for _ in range(3):
        if scenario == "erase-owner" and _erase(rig)["done"]:
            return
        if scenario != "erase-owner" and _delete(rig, scene.target) == 404:
            return
    raise AssertionError(f"{scenario} is still not done")


def outcome(rig: Rig, scenario: str, scene: Scene) -> dict[str, Any]:
    """Record the operation in the model, check everything, and check that doing it once more
    changes nothing; the state's shape, to compare with a clean run's."""
    if scenario == "collect":
        rig.expected.collected(sha(DATA))
    elif scenario == "erase-owner":
        for upload_id, role in scene.roles.items():
            if role == "pending":
                rig.expected.aborted(upload_id)
            if role != "bob's":
                rig.expected.deleted(upload_id)
    else:
        if scenario in ("delete-aborted", "delete-arrived"):
            rig.expected.aborted(scene.target)
        rig.expected.deleted(scene.target)
    if scene.queued:  # the pending upload's event, still queued, finds no upload
        assert rig.deliver(*scene.queued) == []
    state = rig.state()
    rig.check(scene.settled)
    rig.expected.check(state)
    assert state.keys("staging/") == set()
    if scenario == "collect":
        # The content is GONE with its object; the counters moved when its last reference went.
        assert state.contents[sha(DATA)]["state"] == "GONE"
        assert state.keys("cas/") == set()
        assert state.counters == scene.counters

    if scenario == "collect":
        assert _collect().collected == []
    elif scenario == "erase-owner":
        assert _erase(rig) == {
            "owner": "alice",
            "deleted": 0,
            "aborted": 0,
            "waiting": 0,
            "done": True,
        }
    else:
        assert _delete(rig, scene.target) == 404

    assert rig.state() == state
    return shape(state, scene.roles)


_CLEAN: dict[str, dict[str, Any]] = {}


def clean_run(rig: Rig, scenario: str) -> dict[str, Any]:
    """The shape a clean run of the operation leaves (run here, on a wiped world, if no
    test_each_operation_makes_exactly_the_listed_calls did already)."""
    if scenario not in _CLEAN:
        scene = given_operation(rig, scenario)
        perform(rig, scenario, scene)
        _CLEAN[scenario] = outcome(rig, scenario, scene)
        faults.wipe(rig.resources)
        rig.expected = faults.Reference()
    return _CLEAN[scenario]


@pytest.mark.parametrize("scenario", list(OPERATIONS))
def test_each_operation_makes_exactly_the_listed_calls(rig: Rig, scenario: str) -> None:
    scene = given_operation(rig, scenario)

    with CallLog(clients.s3(), clients.dynamodb()) as log:
        perform(rig, scenario, scene)

    assert log.operations == list(OPERATIONS[scenario])
    _CLEAN[scenario] = outcome(rig, scenario, scene)


@pytest.mark.parametrize(("scenario", "k", "when"), _cases(OPERATIONS))
def test_an_operation_crashed_at_any_step_is_finished_by_its_retry(
    rig: Rig, scenario: str, k: int, when: When
) -> None:
    want = clean_run(rig, scenario)
    scene = given_operation(rig, scenario)

    fault = Fault(k, when)
    with CallLog(clients.s3(), clients.dynamodb(), fault=fault) as log, pytest.raises(Crash):
        perform(rig, scenario, scene)

    assert log.fired is not None and log.fired.operation == OPERATIONS[scenario][k - 1]
    # An abort stopped before its DeleteObject leaves REJECTED bytes in staging: a retry is due.
    rig.check(scene.settled, due=[u for u, role in scene.roles.items() if role == "pending"])
    retry(rig, scenario, scene)
    assert outcome(rig, scenario, scene) == want


# --- a collection and a re-upload of its content, overtaking each other at every step ---------


def given_collectable(rig: Rig, owner: str) -> tuple[Scene, Target]:
    """DATA unreferenced past its grace, and a new upload of it whose bytes just arrived."""
    scene = given_operation(rig, "collect")
    again = rig.uploaded(DATA, owner=owner)  # not declared: its bytes are hashed (GetObject)
    scene.roles[again.upload_id] = "again"
    return scene, again


def stored_again(rig: Rig, scene: Scene, again: Target, *, collected: bool) -> None:
    """The re-upload ends STORED and downloads, whichever of the two went first: a revival (no
    collection), or a collection and then a new copy over its tombstone."""
    if collected:
        rig.expected.collected(sha(DATA))
    rig.expected.delivered(again.upload_id, DATA)
    state = rig.state()
    assert state.contents[sha(DATA)]["generation"] == (2 if collected else 1)

    rig.check(scene.settled)
    rig.expected.check(state)
    assert state.keys("staging/") == set()
    assert state.status(again.upload_id) == "STORED"
    owner = state.uploads[again.upload_id]["owner"]
    reply = Pipeline(rig.resources, owner=owner).call("GET", f"/download/{again.upload_id}")
    assert reply.status == 200, reply.body
    key = content_key(sha(DATA))
    assert rig.s3.get_object(Bucket=rig.resources.bucket, Key=key)["Body"].read() == DATA


def _gc_cases(scenarios: Mapping[str, tuple[str, ...]]) -> list[Any]:
    return [
        pytest.param(name, k, id=f"{name}-{k:02d}-{op}")
        for name, ops in scenarios.items()
        for k, op in enumerate(ops, 1)
    ]


def _overtaking_upload(rig: Rig, scheduler: Scheduler, again: Target) -> Task:
    """B stores DATA again while C is paused: done, or (C marked it COLLECTING) it waited for
    the collection to end and failed its message, which SQS delivers again later."""
    b = scheduler.spawn("B", rig.handle(again.bodies[0]))
    scheduler.finish(b)
    assert b.state == "done" or isinstance(b.error, ContentBeingCollected), b.error
    return b


@pytest.mark.parametrize(("scenario", "k"), _gc_cases(GC_RACES))
def test_a_collection_overtaken_at_any_step_by_a_reupload(rig: Rig, scenario: str, k: int) -> None:
    scene, again = given_collectable(rig, owner="bob")

    with Scheduler(clients.s3(), clients.dynamodb()) as scheduler:
        c = scheduler.spawn("C", _collect)
        for _ in range(k - 1):
            scheduler.step(c)
        assert c.next_call == GC_RACES[scenario][k - 1]
        b = _overtaking_upload(rig, scheduler, again)
        scheduler.finish(c)

    assert c.state == "done", c.error
    # Until C marks it COLLECTING (call k = MARK), B revives it and C leaves it, having read it
    # or not; while it is COLLECTING (C paused before DeleteObject or GONE), B waits in vain and
    # its message fails, to come back later; once it is GONE, B stores it anew.
    assert (b.state == "done") == (k <= MARK or k > MARK + 2)
    if k <= MARK:  # the queries, what C did of GetItem and mark before B, the other shards
        assert c.calls == [*COLLECT[: max(k, LISTED)], *COLLECT[MARK + 2 :]]
        assert c.result.collected == []
    else:
        assert c.calls == list(COLLECT)
        assert c.result.collected == [sha(DATA)]
    if b.state != "done":
        assert rig.deliver(again.bodies[0]) == []
    stored_again(rig, scene, again, collected=k > MARK)


@pytest.mark.parametrize(("scenario", "k", "when"), _cases(GC_RACES))
def test_a_collection_overtaken_by_a_reupload_and_crashed_at_any_step(
    rig: Rig, scenario: str, k: int, when: When
) -> None:
    scene, again = given_collectable(rig, owner="bob")

    with Scheduler(clients.s3(), clients.dynamodb()) as scheduler:
        c = scheduler.spawn("C", _collect)
        for _ in range(k - 1):
            scheduler.step(c)
        assert c.next_call == GC_RACES[scenario][k - 1]
        b = _overtaking_upload(rig, scheduler, again)
        scheduler.crash(c, after_call=when == "after")

    assert c.state == "crashed", c.error
    assert (b.state == "done") == (k <= MARK or k > MARK + 2)
    waiting = () if b.state == "done" else (again.upload_id,)
    rig.check([u for u in scene.settled if u not in waiting], due=waiting)
    assert _collect(later=NEXT_RUN).complete  # the next scheduled run
    if waiting:
        assert rig.deliver(again.bodies[0]) == []
    stored_again(rig, scene, again, collected=k > MARK)


def test_a_collection_stalled_before_its_delete_is_left_to_the_run_that_marked_it(rig: Rig) -> None:
    """Run C marks DATA COLLECTING and stalls before its DeleteObject. Run D (the schedule again,
    or an admin's invocation) leaves it to C: had D deleted and tombstoned it, a worker would
    store the bytes anew, and C, resuming, would delete the new copy of a LIVE content."""
    scene, again = given_collectable(rig, owner="bob")

    with Scheduler(clients.s3(), clients.dynamodb()) as scheduler:
        c = scheduler.spawn("C", _collect)
        while c.next_call != "DeleteObject":
            scheduler.step(c)
        d = _collect()  # this thread is no task: it runs straight through
        b = _overtaking_upload(rig, scheduler, again)
        scheduler.finish(c)

    assert (d.collected, d.examined, d.skipped) == ([], 1, 1)
    assert isinstance(b.error, ContentBeingCollected), b.state
    assert c.state == "done", c.error
    assert c.result.collected == [sha(DATA)]
    assert rig.deliver(again.bodies[0]) == []  # SQS delivers B's message again
    stored_again(rig, scene, again, collected=True)


@pytest.mark.parametrize(("scenario", "k"), _gc_cases(UPLOAD_RACES))
def test_a_reupload_overtaken_at_any_step_by_a_collection(rig: Rig, scenario: str, k: int) -> None:
    scene, again = given_collectable(rig, owner="alice")

    with Scheduler(clients.s3(), clients.dynamodb()) as scheduler:
        a = scheduler.spawn("A", rig.handle(again.bodies[0]))
        for _ in range(k - 1):
            scheduler.step(a)
        assert a.next_call == UPLOAD_RACES[scenario][k - 1]
        collected = _collect().collected  # this thread is no task: it runs straight through
        scheduler.finish(a)

    assert a.state == "done", a.error
    # Collected before A read the content (A stores it anew), between A's read and its revival
    # (cancelled: A reads again and stores), or not at all (A revived it first).
    calls = NEW_STREAMED if k < REVIVED else REVIVE_TOO_LATE if k == REVIVED else REVIVE
    assert a.calls == list(calls)
    assert collected == ([sha(DATA)] if k <= REVIVED else [])
    stored_again(rig, scene, again, collected=k <= REVIVED)


@pytest.mark.parametrize(("scenario", "k", "when"), _cases(UPLOAD_RACES))
def test_a_reupload_overtaken_by_a_collection_and_crashed_at_any_step(
    rig: Rig, scenario: str, k: int, when: When
) -> None:
    scene, again = given_collectable(rig, owner="alice")

    with Scheduler(clients.s3(), clients.dynamodb()) as scheduler:
        a = scheduler.spawn("A", rig.handle(again.bodies[0]))
        for _ in range(k - 1):
            scheduler.step(a)
        assert a.next_call == UPLOAD_RACES[scenario][k - 1]
        assert _collect().collected == ([sha(DATA)] if k <= REVIVED else [])
        scheduler.crash(a, after_call=when == "after")

    assert a.state == "crashed", a.error
    settled = [u for u in scene.settled if u != again.upload_id]
    rig.check(settled, allow_orphans=_orphan_possible(a.calls), due=(again.upload_id,))
    assert rig.deliver(again.bodies[0]) == []
    stored_again(rig, scene, again, collected=k <= REVIVED)
