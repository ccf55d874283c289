"""Random schedules of uploads, S3 events, workers and crashes; dedup must stay exact in all.

A Hypothesis state machine plays every party at once: clients create uploads from a small pool
of contents (duplicates are the rule; some declare a SHA-256, some do not, some owners already
hold the content and get the 409) and PUT bytes, right or wrong; S3 announces each arrival, at
least once; the queue (modelled here: a list of messages) hands them out in any order, any
number of times, lets visibility timeouts expire under a running worker, dead-letters and
redrives; several workers run interleaved at their AWS-call boundaries (tests.faults.Scheduler)
and any of them may crash before or after any call. Clients may also abort.

After every step the stored state satisfies every invariant (tests.invariants), tolerating only
what a still-due delivery will clean up. At the end everything pending is delivered without
crashes, and then every upload whose bytes arrived is terminal, nothing is left in staging, no
orphan remains, and contents and counters are exactly the reference model's (`Expected`).

Hypothesis shrinks a failure to a minimal schedule and prints it as a sequence of steps. The
default run tries ONECOPY_SOAK_EXAMPLES schedules (1,000); for a longer soak:

    ONECOPY_SOAK_EXAMPLES=20000 .venv/bin/pytest tests/integration/test_schedules.py -s

(about 60 ms a schedule on one idle core: 20,000 take some 20 minutes; the per-test timeout grows
with the count).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from adapters import clients
from adapters.s3 import ObjectChanged
from domain.errors import Conflict
from domain.model import AlreadyHeld, sha256_hex_to_b64, staging_key
from handlers import wiring
from service.uploads import UploadPolicy, abort_upload, create_upload
from tests import faults
from tests.faults import MotoView, Reference, Scheduler, Task
from tests.invariants import check_invariants, read_state
from tests.lambda_events import s3_notification, sqs_event

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("ONECOPY_SOAK_EXAMPLES", "1000"))
STEPS = 12
# A profile of its own, so no globally loaded profile changes what the default run explores; no
# example database: every run draws fresh schedules (a failure prints its @reproduce_failure).
settings.register_profile(
    "onecopy-schedules",
    parent=settings.get_profile("default"),
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    database=None,
    derandomize=False,
    # Every step does real (moto) AWS calls, and preconditions filter rules out; neither is a
    # sign of a badly written strategy here.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True,
)
SETTINGS = settings.get_profile("onecopy-schedules")

# Two contents of one size, so wrong bytes can pass the size check and fail only the hash.
CONTENTS = (b"alpha", b"bravo", b"", b"charlie!")
OWNERS = ("alice", "bob")
# Enough for a content, its duplicate and a bystander; fewer uploads leave more steps for the
# interleavings (and every arrival costs a full ingest when the schedule settles).
MAX_UPLOADS = 3
MAX_RECEIVES = 5  # template.yaml: the ingest queue's maxReceiveCount
POLICY = UploadPolicy(
    url_ttl_seconds=900, multipart_threshold=100 * 2**20, part_size=16 * 2**20, max_pending=1000
)
# A worker may fail (and be retried) only because the staging object changed under it.
RETRYABLE = (ObjectChanged,)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(eq=False)
class Message:
    """One SQS message: where it is, and which receive currently owns it."""

    number: int
    upload_id: str
    record: dict[str, Any]
    where: str = "queued"  # queued | inflight | dlq | acked
    receives: int = 0  # since it entered the queue (a redrive starts again at 0)
    receipt: int = 0  # bumped on every receive; an older receipt can no longer delete it

    def __repr__(self) -> str:
        return f"m{self.number}"


@dataclass(eq=False)
class Delivery:
    message: Message
    receipt: int
    task: Task


@dataclass
class UploadModel:
    owner: str
    content: bytes  # what the client declared: its size, and its SHA-256 when `declared`
    declared: bool
    has_url: bool  # False for an upload the 409 pre-check created DUPLICATE
    arrived: bool = False
    aborted: bool = False


@dataclass
class World:
    """What outlives one schedule: the moto account and the clients."""

    resources: Any
    worker: Any
    api: Any
    s3: Any
    view: MotoView = field(default_factory=MotoView)
    schedules: int = 0


class Schedules(RuleBasedStateMachine):
    uploads = Bundle("uploads")

    def __init__(self, world: World) -> None:
        super().__init__()
        faults.wipe(world.resources)
        world.schedules += 1
        self.world = world
        self.expected = Reference()
        self.models: dict[str, UploadModel] = {}
        self.messages: list[Message] = []
        self.deliveries: list[Delivery] = []
        self.scheduler = Scheduler(clients.s3(), clients.dynamodb())

    # --- clients -------------------------------------------------------------------------------

    @precondition(lambda self: len(self.models) < MAX_UPLOADS)
    @rule(
        target=uploads,
        owner=st.sampled_from(OWNERS),
        content=st.sampled_from(CONTENTS),
        declare=st.booleans(),
    )
    def create(self, owner: str, content: bytes, declare: bool) -> str:
        try:
            created = create_upload(
                owner=owner,
                filename="f.bin",
                size=len(content),
                content_type=None,
                sha256=sha(content) if declare else None,
                multipart=False,
                policy=POLICY,
                ledger=wiring.ledger(),
                store=wiring.store(),
            )
        except AlreadyHeld as held:  # the 409: the owner holds it, nothing to upload
            self.expected.held_duplicate(held.upload_id, content)
            self.models[held.upload_id] = UploadModel(owner, content, True, has_url=False)
            return held.upload_id
        upload_id = created.upload.upload_id
        self.expected.pending(upload_id)
        self.models[upload_id] = UploadModel(owner, content, declare, has_url=True)
        return upload_id

    @precondition(lambda self: len(self.models) < MAX_UPLOADS)
    @rule(
        target=uploads,
        owner=st.sampled_from(OWNERS),
        content=st.sampled_from(CONTENTS),
        declare=st.booleans(),
    )
    def upload(self, owner: str, content: bytes, declare: bool) -> str:
        """The usual client: create, then PUT exactly the declared bytes."""
        upload_id = self.create(owner, content, declare)
        self.put(upload_id, content, verified=True)
        return upload_id

    @rule(upload_id=uploads, data=st.sampled_from(CONTENTS), verified=st.booleans())
    def put(self, upload_id: str, data: bytes, verified: bool) -> None:
        """A PUT to the upload's URL. `verified`: S3 checks the signed size and checksum, as
        for a presigned single PUT; otherwise the bytes land as they are (as parts would)."""
        model = self.models[upload_id]
        if not model.has_url:
            return
        declared = sha(model.content) if model.declared else None
        if verified and (len(data) != len(model.content) or declared not in (None, sha(data))):
            return  # S3 refuses the PUT (signature or BadDigest): nothing lands
        extra: dict[str, Any] = {}
        if verified and declared is not None:
            extra = {"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": sha256_hex_to_b64(declared)}
        try:
            put = self.world.s3.put_object(
                Bucket=self.world.resources.bucket,
                Key=staging_key(upload_id),
                Body=data,
                IfNoneMatch="*",  # a signed header of every presigned PUT
                **extra,
            )
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "PreconditionFailed"
            return  # the object is still there: the URL cannot overwrite it
        if not model.arrived and not model.aborted:
            model.arrived = True
            self.expected.delivered(upload_id, data, size=len(model.content), sha256=declared)
        # else a second PUT to a used URL: its bytes must be removed and nothing counted.
        body = s3_notification(
            staging_key(upload_id),
            size=len(data),
            etag=put["ETag"].strip('"'),
            bucket=self.world.resources.bucket,
        )
        self._enqueue(upload_id, sqs_event(body)["Records"][0])

    @rule(upload_id=uploads)
    def abort(self, upload_id: str) -> None:
        try:
            abort_upload(
                upload_id,
                owner=self.models[upload_id].owner,
                ledger=wiring.ledger(),
                store=wiring.store(),
            )
        except Conflict:
            return  # already terminal (or being completed): nothing changes
        self.models[upload_id].aborted = True
        self.expected.aborted(upload_id)

    # --- S3 and the queue ----------------------------------------------------------------------

    def _enqueue(self, upload_id: str, record: dict[str, Any]) -> None:
        self.messages.append(Message(len(self.messages), upload_id, record))

    def _where(self, *where: str) -> list[Message]:
        return [m for m in self.messages if m.where in where]

    @precondition(lambda self: self.messages)
    @rule(pick=st.integers(0, 15))
    def s3_sends_again(self, pick: int) -> None:
        """S3 delivers notifications at least once: the same event as a new message."""
        original = self.messages[pick % len(self.messages)]
        self._enqueue(original.upload_id, original.record)

    @precondition(lambda self: self._where("queued", "inflight"))
    @rule(pick=st.integers(0, 15), calls=st.integers(0, 8))
    def deliver(self, pick: int, calls: int) -> None:
        """A worker receives a message and makes its first `calls` AWS calls.

        The message may be in flight already: its visibility timeout expired while its first
        worker still runs, so two workers now hold it (and only the newer receipt can delete it).
        """
        visible = self._where("queued", "inflight")
        message = visible[pick % len(visible)]
        self._receive(message)
        if calls and self.deliveries and self.deliveries[-1].message is message:
            self._advance(self.deliveries[-1].task, calls)

    def _receive(self, message: Message) -> None:
        message.receives += 1
        if message.receives > MAX_RECEIVES:
            message.where = "dlq"  # SQS moves it on the receive past maxReceiveCount
            return
        message.where, message.receipt = "inflight", message.receipt + 1
        record = SQSRecord(message.record)
        task = self.scheduler.spawn(
            f"{message!r}.{message.receipt}", lambda: self.world.worker.record_handler(record)
        )
        self.deliveries.append(Delivery(message, message.receipt, task))
        self._reap()

    @precondition(lambda self: self._where("queued"))
    @rule(pick=st.integers(0, 15))
    def dead_letter(self, pick: int) -> None:
        """Five receives without success (crashes, timeouts): the message moves to the DLQ."""
        queued = self._where("queued")
        queued[pick % len(queued)].where = "dlq"

    @precondition(lambda self: self._where("dlq"))
    @rule(pick=st.integers(0, 15))
    def redrive(self, pick: int) -> None:
        dead = self._where("dlq")
        message = dead[pick % len(dead)]
        message.where, message.receives = "queued", 0

    # --- workers -------------------------------------------------------------------------------

    @precondition(lambda self: self.deliveries)
    @rule(pick=st.integers(0, 15), calls=st.integers(1, 8))
    def advance(self, pick: int, calls: int) -> None:
        """A worker makes its next `calls` AWS calls (or finishes), the others wait."""
        self._advance(self.deliveries[pick % len(self.deliveries)].task, calls)

    def _advance(self, task: Task, calls: int) -> None:
        for _ in range(calls):
            if not task.alive:
                break
            self.scheduler.step(task)
        self._reap()

    @precondition(lambda self: self.deliveries)
    @rule(pick=st.integers(0, 15), after_call=st.booleans())
    def crash(self, pick: int, after_call: bool) -> None:
        self.scheduler.crash(
            self.deliveries[pick % len(self.deliveries)].task, after_call=after_call
        )
        self._reap()

    def _reap(self) -> None:
        """Acknowledge what succeeded; what failed or crashed comes back after its timeout."""
        for delivery in [d for d in self.deliveries if not d.task.alive]:
            self.deliveries.remove(delivery)
            task, message = delivery.task, delivery.message
            if task.state == "failed" and not isinstance(task.error, RETRYABLE):
                raise AssertionError(f"worker {task!r} failed") from task.error
            current = message.where == "inflight" and message.receipt == delivery.receipt
            if current:
                message.where = "acked" if task.state == "done" else "queued"

    # --- the checks ----------------------------------------------------------------------------

    def _terminal(self) -> list[str]:
        """Uploads that must be terminal now: decided by the API, or bytes arrived and every
        message about them acknowledged."""
        live = {m.upload_id for m in self._where("queued", "inflight", "dlq")}
        return [
            upload_id
            for upload_id, model in self.models.items()
            if not model.has_url or model.aborted or (model.arrived and upload_id not in live)
        ]

    @invariant()
    def stored_state_is_consistent(self) -> None:
        live = self._where("queued", "inflight", "dlq")
        # A staging object a due delivery will remove, and bytes copied by a worker that may
        # still record them, are the only deviations allowed between two steps.
        view = self.world.view.hiding(staging_key(m.upload_id) for m in live)
        check_invariants(
            self.world.resources,
            view.s3,
            view.ddb,
            settled=self._terminal(),
            allow_orphans=bool(live or self.deliveries),
        )

    def settle(self) -> None:
        """No more crashes: running workers finish, every message is delivered until acked."""
        for delivery in list(self.deliveries):
            self.scheduler.finish(delivery.task)
        self._reap()
        # Whatever waits in the DLQ is redriven; nothing is dead-lettered from here on.
        for message in self._where("queued", "inflight", "dlq"):
            message.where, message.receives = "queued", 0
        for _ in range(3):
            for message in self._where("queued"):
                self._receive(message)
                for delivery in list(self.deliveries):
                    self.scheduler.finish(delivery.task)
                self._reap()
        assert self._where("queued", "inflight", "dlq") == []

        view = self.world.view
        arrived = [u for u, m in self.models.items() if m.arrived]
        check_invariants(self.world.resources, view.s3, view.ddb, settled=arrived)
        state = read_state(self.world.resources, view.s3, view.ddb)
        self.expected.check(state, sequential=False)
        assert state.keys("staging/") == set(), "staging objects outlived their uploads"

    def teardown(self) -> None:
        try:
            if sys.exception() is None:  # a failing step is reported as it is, not masked
                self.settle()
        finally:
            self.scheduler.close()
            self.world.worker.metrics.clear_metrics()


@pytest.fixture
def world(aws: Any) -> Iterator[World]:
    from handlers import api, worker

    s3 = boto3.client("s3")
    # The machine plays the queue itself; moto would also queue a message per PUT.
    s3.put_bucket_notification_configuration(Bucket=aws.bucket, NotificationConfiguration={})
    with faults.strict_copy_source(clients.s3(), s3):
        yield World(aws, worker, api, s3)


# About 60 ms a schedule on an idle core; the margin is for loaded CI machines.
@pytest.mark.timeout(max(300, EXAMPLES // 2))
def test_random_schedules_keep_dedup_exact(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    started, cpu = time.perf_counter(), time.process_time()

    run_state_machine_as_test(lambda: Schedules(world), settings=SETTINGS)

    with capsys.disabled():
        print(
            f"\nschedules: {world.schedules} run (max_examples={EXAMPLES}, "
            f"{STEPS} steps each) in {time.perf_counter() - started:.1f} s "
            f"({time.process_time() - cpu:.1f} s CPU)"
        )
    assert world.schedules >= EXAMPLES
