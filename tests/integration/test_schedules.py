"""Random schedules of uploads, deletions, collections, workers and crashes; dedup stays exact.

A Hypothesis state machine plays every party at once: clients create uploads from a small pool
of contents (duplicates are the rule; some declare a SHA-256, some do not, some owners already
hold the content and get the 409) and PUT bytes, right or wrong, until their URL expires; S3
announces each arrival, at least once; the queue (modelled here: a list of messages) hands them
out in any order, any number of times, lets visibility timeouts expire under a running worker,
dead-letters and redrives. Clients abort, and delete their uploads (DELETE /uploads/{id}: a
pending one is aborted, a terminal one deleted with its references); an admin erases an owner,
in several calls when time runs out; the garbage collector runs; the fake clock
(service.clock) moves on, past the grace period (GRACE) or not, and kills whatever has run past
its Lambda timeout. Workers, deletions, erasures and collector runs are tasks interleaved at
their AWS-call boundaries (tests.faults.Scheduler), and any of them may crash before or after
any call. A schedule may start from a history (one upload stored, then perhaps deleted, left
past the grace period, being collected or collected), which its own few steps would rarely
reach.

The machine reads the stored state after every AWS call that writes and feeds the reference
model (`Expected`) each effect in the order it took effect: an upload completed, aborted or
deleted, a content tombstoned (GONE). With the order exact, so is the model: every status
(STORED or DUPLICATE) and every counter, duplicates included. What each deletion, erasure and
collector run answers must be what it did. After every step the stored state satisfies every
invariant (tests.invariants), tolerating only what a still-due delivery will clean up.

At the end, without crashes: whatever runs finishes; a collector run after their leases finishes
any collection a crash cut short; every message is delivered until acknowledged; the clock moves
past the grace period and the collector runs once more. Then every upload whose bytes arrived is
terminal (or deleted); nothing is left in staging but bytes PUT to a deleted upload's URL (the
bucket's lifecycle rule removes those); no orphan remains; every content is LIVE and referenced
(its object there, hashing to its key) or a GONE tombstone without an object; and uploads,
contents, holdings and counters are exactly the reference model's.

Hypothesis shrinks a failure to a minimal schedule and prints it as a sequence of steps. The
default run tries ONECOPY_SOAK_EXAMPLES schedules (1,000) of up to STEPS steps; for a longer
soak:

    ONECOPY_SOAK_EXAMPLES=20000 .venv/bin/pytest tests/integration/test_schedules.py -s

(about 0.15 s a schedule on one idle core: 20,000 take some 50 minutes; the per-test timeout
grows with the count). ONECOPY_SHORT_GRACE=1 runs them with a grace period shorter than a
worker may run (see SHORT_GRACE).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from adapters import clients
from adapters import dynamodb as dynamodb_adapter
from adapters.s3 import ObjectChanged
from domain.errors import Conflict, NotFound
from domain.lifecycle import COLLECTION_LEASE_MARGIN
from domain.model import AlreadyHeld, sha256_hex_to_b64, staging_key
from handlers import wiring
from service import clock as service_clock
from service import uploads as uploads_service
from service.collector import Collection, collect
from service.deletion import Erasure, Removed, erase_owner, remove_upload
from service.ingest import ContentBeingCollected
from service.uploads import UploadPolicy, abort_upload, create_upload
from tests import faults
from tests.faults import READS, MotoView, Reference, Scheduler, Task
from tests.invariants import COLLECTING, GONE, LIVE, TERMINAL, check_invariants, read_state
from tests.lambda_events import s3_notification, sqs_event

pytestmark = [pytest.mark.integration, pytest.mark.long]

EXAMPLES = int(os.environ.get("ONECOPY_SOAK_EXAMPLES", "1000"))
# Ten steps after the history keep 1,000 schedules near the time twelve took before deletion
# and collection (every step and every history costs real moto calls).
STEPS = 10
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
    # Not the explain phase: it line-traces every run while shrinking, which slows the shrink
    # of a failure several times over, towards the test's timeout.
    phases=[p for p in Phase if p is not Phase.explain],
)
SETTINGS = settings.get_profile("onecopy-schedules")

# Two contents of one size, so wrong bytes can pass the size check and fail only the hash.
CONTENTS = (b"alpha", b"bravo", b"", b"charlie!")
OWNERS = ("alice", "bob")
# Enough for a content, its duplicate and a bystander (the history's upload included); fewer
# uploads leave more steps for the interleavings (and every arrival costs a full ingest when the
# schedule settles).
MAX_UPLOADS = 3
MAX_RECEIVES = 5  # template.yaml: the ingest queue's maxReceiveCount
POLICY = UploadPolicy(
    url_ttl_seconds=900, multipart_threshold=100 * 2**20, part_size=16 * 2**20, max_pending=1000
)
# A worker may fail (and be retried) only because the staging object changed under it, or
# because it gave up waiting for a collection of its content to finish.
RETRYABLE = (ObjectChanged, ContentBeingCollected)

# Lambda's timeouts (template.yaml): once the clock passes one, the runtime kills the task.
WORKER_TIMEOUT = timedelta(seconds=300)
API_TIMEOUT = timedelta(seconds=15)  # DELETE /uploads/{id}, and each erasure call
COLLECTOR_TIMEOUT = timedelta(seconds=900)
# Why no deployable grace is shorter than a worker may run (off by default): with one, a worker
# that claimed a content and stalled before its copy can land the copy after the upload was
# completed by another worker, deleted, and its content collected: an object under cas/ with a GONE
# tombstone, which nothing ever removes (the collector only looks at its index). It takes a
# second PUT of the same bytes to the upload's URL (same ETag, so the stale copy's
# CopySourceIfMatch passes). template.yaml refuses a CollectionGracePeriodSeconds under 900
# (tests/unit/test_template.py ties that to the worker's timeout); by default the schedules use
# 900, and the worker's timeout (300 s) makes the stall impossible. ONECOPY_SHORT_GRACE=1 runs
# them with 60 s, where it happens.
SHORT_GRACE = os.environ.get("ONECOPY_SHORT_GRACE") == "1"
# The collector's grace period, on the fake clock. The clock moves by these steps (Hypothesis
# shrinks towards the first): within and past the API's, the worker's and the grace's limits.
GRACE = timedelta(seconds=60 if SHORT_GRACE else 900)
_GRACE_S = int(GRACE.total_seconds())
CLOCK_STEPS = tuple(sorted({1, 60, _GRACE_S - 1, _GRACE_S, _GRACE_S + 1, 10 * _GRACE_S}))
EPOCH = datetime(2030, 1, 1, tzinfo=UTC)
HISTORIES = ("none", "held", "released", "expired", "collecting", "collected")
# Collector runs at once. The template reserves one; two meet each other's half-done work, which
# each must leave to the other until its lease ends.
MAX_COLLECTORS = 2
# A step's `calls` counts the calls that may write: the collector's index queries (one per GC
# shard) and an erasure's listing would otherwise use up a schedule's budget.
UNCOUNTED = frozenset({"Query"})


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# The collector queries its index one GC shard (a hash's first digit) at a time, sixteen in all.
# Only these can hold one of CONTENTS; a query of any other finds nothing, at the cost of a moto
# request, so the schedules leave them out.
GC_SHARDS = "".join(sorted({sha(c)[0] for c in CONTENTS}))


def time_for(uploads: int) -> Callable[[], bool]:
    """`has_time` for a call that has time for this many uploads."""
    left = iter(range(uploads))
    return lambda: next(left, None) is not None


@dataclass
class FakeClock:
    """service.clock.utcnow for the whole run: time moves only when a step moves it."""

    now: datetime = EPOCH

    def utcnow(self) -> datetime:
        return self.now


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


# What one AWS call (or one step with nothing running) did, as the stored state shows it:
# ("complete" | "abort" | "delete", upload id) or ("collect", sha256).
Effect = tuple[str, str]


@dataclass(eq=False)
class Job:
    """A deletion, an erasure or a collector run, and the effects of its calls."""

    kind: str  # delete | erase | collect
    subject: str  # the upload deleted, the owner erased ("" for the collector)
    task: Task
    effects: list[Effect] = field(default_factory=list)
    owned: frozenset[str] = frozenset()  # erase: the owner's uploads when it started


@dataclass
class UploadModel:
    owner: str
    content: bytes  # what the client declared: its size, and its SHA-256 when `declared`
    declared: bool
    has_url: bool  # False for an upload the 409 pre-check created DUPLICATE
    url_expires_at: datetime = EPOCH
    arrived: bool = False
    data: bytes | None = None  # the bytes that arrived first: those a worker decides on
    aborted: bool = False
    deleted: bool = False


# An upload as stored: (status, reason). A deleted one (gone, or a tombstone) is absent.
Seen = tuple[str, str | None]


def _stored_facts(resources: Any) -> tuple[dict[str, Seen], dict[str, str]]:
    """Each upload's status and reason, and each content's state, from moto's tables."""
    from moto.dynamodb.models import dynamodb_backends

    tables = dynamodb_backends[faults.ACCOUNT][faults.REGION].tables
    uploads: dict[str, Seen] = {}
    for item in tables[resources.uploads_table].all_items():
        attrs = item.attrs
        if attrs["status"].value != "DELETED":
            reason = attrs["reason"].value if "reason" in attrs else None
            uploads[attrs["upload_id"].value] = (attrs["status"].value, reason)
    contents = {
        item.attrs["sha256"].value: item.attrs["state"].value if "state" in item.attrs else LIVE
        for item in tables[resources.contents_table].all_items()
    }
    return uploads, contents


@dataclass
class World:
    """What outlives one schedule: the moto account, the clients and the clock."""

    resources: Any
    worker: Any
    api: Any
    s3: Any
    clock: FakeClock
    view: MotoView = field(default_factory=MotoView)
    schedules: int = 0
    ids: Iterator[int] = field(default_factory=itertools.count)

    def new_upload_id(self) -> str:
        """Upload ids as random-looking as uuid4's, but the same in every replay of a schedule:
        an erasure lists uploads by creation time, then id, and the fake clock makes ties."""
        return sha(f"upload {next(self.ids)}".encode())[:32]


class Schedules(RuleBasedStateMachine):
    uploads = Bundle("uploads")

    def __init__(self, world: World) -> None:
        super().__init__()
        faults.wipe(world.resources)
        world.schedules += 1
        world.clock.now, world.ids = EPOCH, itertools.count()
        self.world = world
        self.expected = Reference()
        self.models: dict[str, UploadModel] = {}
        self.messages: list[Message] = []
        self.deliveries: list[Delivery] = []
        self.jobs: dict[Task, Job] = {}
        self.deadlines: dict[Task, datetime] = {}  # when Lambda kills each task
        # The stored state as last observed, to tell what each AWS call changed.
        self.seen: dict[str, Seen] = {}
        self.states: dict[str, str] = {}
        self.scheduler = Scheduler(clients.s3(), clients.dynamodb())

    # --- before the schedule -------------------------------------------------------------------

    @initialize(
        target=uploads,
        history=st.sampled_from(HISTORIES),
        owner=st.sampled_from(OWNERS),
        content=st.sampled_from(CONTENTS),
    )
    def history(self, history: str, owner: str, content: bytes) -> Any:
        """What happened before the schedule, one thing at a time: nothing, or an upload of
        `content` stored, then maybe deleted, left past the grace period, and collected, or
        being collected by a run that marked it and stopped there (it may go on, or crash)."""
        if history == "none":
            return multiple()
        upload_id = self._create(owner, content, True)
        self.put(upload_id, content, verified=True)
        self._deliver_now(self.messages[-1])
        if history != "held":
            self._remover(upload_id)()
            self._observe()
        if history in ("expired", "collecting", "collected"):
            self.world.clock.now += GRACE
        if history == "collecting":
            task = self._spawn("collector", self._collector, COLLECTOR_TIMEOUT)
            self.jobs[task] = Job("collect", "", task)
            while task.alive and "UpdateItem" not in task.calls:
                self._step(task)
        if history == "collected":
            self._collect_now()
        return multiple(upload_id)

    # --- clients -------------------------------------------------------------------------------

    # Both ways a client starts an upload: by one owner, of one of the pool's contents.
    new_upload = precondition(lambda self: len(self.models) < MAX_UPLOADS)
    new_upload_of = rule(
        target=uploads,
        owner=st.sampled_from(OWNERS),
        content=st.sampled_from(CONTENTS),
        declare=st.booleans(),
    )

    @new_upload
    @new_upload_of
    def create(self, owner: str, content: bytes, declare: bool) -> str:
        return self._create(owner, content, declare)

    @new_upload
    @new_upload_of
    def upload(self, owner: str, content: bytes, declare: bool) -> str:
        """The usual client: create, then PUT exactly the declared bytes."""
        upload_id = self._create(owner, content, declare)
        self.put(upload_id, content, verified=True)
        return upload_id

    def _create(self, owner: str, content: bytes, declare: bool) -> str:
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
            self.expected.held_duplicate(held.upload_id, content, owner=owner)
            self.models[held.upload_id] = UploadModel(owner, content, True, has_url=False)
            self.seen[held.upload_id] = ("DUPLICATE", None)
            return held.upload_id
        upload_id = created.upload.upload_id
        self.expected.pending(upload_id)
        expires = self.world.clock.now + timedelta(seconds=POLICY.url_ttl_seconds)
        self.models[upload_id] = UploadModel(owner, content, declare, True, expires)
        self.seen[upload_id] = ("PENDING", None)
        return upload_id

    @rule(upload_id=uploads, data=st.sampled_from(CONTENTS), verified=st.booleans())
    def put(self, upload_id: str, data: bytes, verified: bool) -> None:
        """A PUT to the upload's URL. `verified`: S3 checks the signed size and checksum, as
        for a presigned single PUT; otherwise the bytes land as they are (as parts would).

        The URL outlives the upload's processing: bytes PUT after it completed (or was deleted)
        never count; the worker removes them (or, once it is deleted, the lifecycle rule).
        """
        model = self.models[upload_id]
        if not model.has_url or self.world.clock.now > model.url_expires_at:
            return  # no URL, or S3 refuses an expired one
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
            # Counted when a worker completes the upload with these bytes (see _observe).
            model.arrived, model.data = True, data
        body = s3_notification(
            staging_key(upload_id),
            size=len(data),
            etag=put["ETag"].strip('"'),
            bucket=self.world.resources.bucket,
        )
        self._enqueue(upload_id, sqs_event(body)["Records"][0])

    @rule(upload_id=uploads)
    def abort(self, upload_id: str) -> None:
        # Already terminal, being stored, or deleted: nothing changes.
        with contextlib.suppress(Conflict, NotFound):
            abort_upload(
                upload_id,
                owner=self.models[upload_id].owner,
                ledger=wiring.ledger(),
                store=wiring.store(),
            )
        self._observe()

    def _deletable(self) -> list[str]:
        """Uploads worth deleting: their bytes arrived (a worker may be storing them right now)
        or the 409 decided them; once all are deleted, a deleted one (NotFound). A pending
        upload without bytes would only be aborted, as `abort` does."""
        some = [u for u, m in self.models.items() if m.arrived or not m.has_url]
        return [u for u in some if not self.models[u].deleted] or some

    @precondition(lambda self: self._deletable())
    @rule(pick=st.integers(0, 15), calls=st.integers(0, 8))
    def delete(self, pick: int, calls: int) -> None:
        """DELETE /uploads/{id}, by its owner, whatever else runs: it makes its first `calls`
        AWS calls (`advance` and `crash` pick it up from there)."""
        deletable = self._deletable()
        upload_id = deletable[pick % len(deletable)]
        task = self._spawn(f"delete-{upload_id[:6]}", self._remover(upload_id), API_TIMEOUT)
        self.jobs[task] = Job("delete", upload_id, task)
        self._advance(task, calls)

    def _remover(self, upload_id: str) -> Callable[[], Removed]:
        owner = self.models[upload_id].owner
        return lambda: remove_upload(
            upload_id, owner=owner, ledger=wiring.ledger(), store=wiring.store()
        )

    @precondition(lambda self: self._deletable())
    @rule(
        pick=st.integers(0, 15),
        per_call=st.integers(1, 3),
        rounds=st.integers(1, 3),
        calls=st.integers(0, 8),
    )
    def erase(self, pick: int, per_call: int, rounds: int, calls: int) -> None:
        """An admin erases an owner who has something to delete: up to `rounds` calls until
        one says done, each with time for `per_call` uploads."""
        owners = sorted({self.models[u].owner for u in self._deletable()})
        owner = owners[pick % len(owners)]

        def erase_calls() -> list[Erasure]:
            done: list[Erasure] = []
            while len(done) < rounds and not (done and done[-1].done):
                done.append(
                    erase_owner(
                        owner,
                        ledger=wiring.ledger(),
                        store=wiring.store(),
                        has_time=time_for(per_call),
                    )
                )
            return done

        owned = frozenset(u for u, m in self.models.items() if m.owner == owner and not m.deleted)
        task = self._spawn(f"erase-{owner}", erase_calls, API_TIMEOUT * rounds)
        self.jobs[task] = Job("erase", owner, task, owned=owned)
        self._advance(task, calls)

    # --- the collector and the clock -----------------------------------------------------------

    def _released(self) -> bool:
        """Has an upload been deleted? Only a deletion leaves a content unreferenced: until
        then, the clock and the collector change nothing."""
        return any(m.deleted for m in self.models.values())

    @precondition(
        lambda self: (
            self._released()
            and sum(j.kind == "collect" for j in self.jobs.values()) < MAX_COLLECTORS
        )
    )
    @rule(calls=st.integers(0, 8))
    def collect(self, calls: int) -> None:
        """A collector run (its schedule fired), interleaved with everything else."""
        task = self._spawn("collector", self._collector, COLLECTOR_TIMEOUT)
        self.jobs[task] = Job("collect", "", task)
        self._advance(task, calls)

    @staticmethod
    def _collector() -> Collection:
        # Lambda kills the run at its timeout from its start (see advance_clock).
        deadline = service_clock.utcnow() + COLLECTOR_TIMEOUT
        return collect(ledger=wiring.ledger(), store=wiring.store(), grace=GRACE, deadline=deadline)

    @precondition(lambda self: self._released())
    @rule(seconds=st.sampled_from(CLOCK_STEPS))
    def advance_clock(self, seconds: int) -> None:
        """Time passes for everyone: a task past its Lambda timeout is killed."""
        self.world.clock.now += timedelta(seconds=seconds)
        for task in self._running():
            if self.deadlines[task] < self.world.clock.now:
                self._step(task, crash=True)
        self._reap()

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
        task = self._spawn(
            f"{message!r}.{message.receipt}",
            lambda: self.world.worker.record_handler(record),
            WORKER_TIMEOUT,
        )
        self.deliveries.append(Delivery(message, message.receipt, task))
        self._reap()

    def _deliver_now(self, message: Message) -> None:
        """A delivery while nothing else runs: the worker runs in this thread."""
        message.receives += 1
        message.where, message.receipt = "inflight", message.receipt + 1
        try:
            self.world.worker.record_handler(SQSRecord(message.record))
        except RETRYABLE:
            message.where = "queued"
        else:
            message.where = "acked"
        finally:
            self._observe()  # one worker completes one upload at most

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

    # --- tasks: workers, deletions, erasures, collector runs -----------------------------------

    def _running(self) -> list[Task]:
        return [t for t in self.scheduler.tasks if t.alive]

    @precondition(lambda self: self._running())
    @rule(pick=st.integers(0, 15), calls=st.integers(1, 8))
    def advance(self, pick: int, calls: int) -> None:
        """A task makes its next `calls` AWS calls (or finishes), the others wait."""
        running = self._running()
        self._advance(running[pick % len(running)], calls)

    @precondition(lambda self: self._running())
    @rule(pick=st.integers(0, 15), after_call=st.booleans())
    def crash(self, pick: int, after_call: bool) -> None:
        running = self._running()
        self._step(running[pick % len(running)], crash=True, after_call=after_call)
        self._reap()

    def _spawn(self, name: str, fn: Callable[[], Any], timeout: timedelta) -> Task:
        task = self.scheduler.spawn(name, fn)  # it runs up to its first AWS call: no effect yet
        self.deadlines[task] = self.world.clock.now + timeout
        return task

    def _advance(self, task: Task, calls: int) -> None:
        while calls and task.alive:
            if task.next_call not in UNCOUNTED:
                calls -= 1
            self._step(task)
        self._reap()

    def _finish(self, task: Task) -> None:
        while task.alive:
            self._step(task)

    def _step(self, task: Task, *, crash: bool = False, after_call: bool = False) -> None:
        """One call of one task (or a crash before or after it), and what it changed."""
        call = task.next_call
        if crash:
            self.scheduler.crash(task, after_call=after_call)
        else:
            self.scheduler.step(task)
        if call is not None and call not in READS and (after_call or not crash):
            effects = self._observe()
            if task in self.jobs:
                self.jobs[task].effects += effects

    def _observe(self) -> list[Effect]:
        """Tell the reference model what changed since the last look, in the order it happened:
        one AWS call changes one upload or one content (a collector run with nothing else
        running may collect several, in any order)."""
        uploads, states = _stored_facts(self.world.resources)
        effects: list[Effect] = []
        for upload_id, model in self.models.items():
            was, now = self.seen.get(upload_id), uploads.get(upload_id)
            if was != now:
                effects.append(self._upload_changed(upload_id, model, was, now))
        for sha256, state in states.items():
            if state == GONE and self.states.get(sha256, GONE) != GONE:
                self.expected.collected(sha256)
                effects.append(("collect", sha256))
        self.seen, self.states = uploads, states
        return effects

    def _upload_changed(
        self, upload_id: str, model: UploadModel, was: Seen | None, now: Seen | None
    ) -> Effect:
        if was is not None and was[0] == "PENDING" and now is not None and now[0] in TERMINAL:
            if now == ("REJECTED", "aborted"):
                model.aborted = True
                self.expected.aborted(upload_id)
                return ("abort", upload_id)
            assert model.data is not None, f"upload {upload_id} completed, no bytes arrived"
            self.expected.delivered(
                upload_id,
                model.data,
                size=len(model.content),
                sha256=sha(model.content) if model.declared else None,
                owner=model.owner,
            )
            return ("complete", upload_id)
        if was is not None and was[0] in TERMINAL and now is None:
            model.deleted = True
            self.expected.deleted(upload_id)
            return ("delete", upload_id)
        raise AssertionError(f"upload {upload_id} went from {was} to {now} in one step")

    def _reap(self) -> None:
        """Acknowledge what succeeded; what failed or crashed comes back after its timeout.
        A finished job's answer must be what it did."""
        for delivery in [d for d in self.deliveries if not d.task.alive]:
            self.deliveries.remove(delivery)
            task, message = delivery.task, delivery.message
            if task.state == "failed" and not isinstance(task.error, RETRYABLE):
                raise AssertionError(f"worker {task!r} failed") from task.error
            current = message.where == "inflight" and message.receipt == delivery.receipt
            if current:
                message.where = "acked" if task.state == "done" else "queued"
        for job in [j for j in self.jobs.values() if not j.task.alive]:
            del self.jobs[job.task]
            if job.task.state != "crashed":  # what a crashed job did is observed, nothing more
                self._check_answer(job)

    def _check_answer(self, job: Job) -> None:
        task, did = job.task, job.effects
        if job.kind == "delete":
            if task.state == "done":
                kind = "abort" if task.result is Removed.ABORTED else "delete"
                assert did == [(kind, job.subject)], f"{task!r}: {task.result}, but did {did}"
            elif isinstance(task.error, NotFound):
                assert did == [] and self.models[job.subject].deleted, f"{task!r}: {did}"
            elif isinstance(task.error, Conflict):  # claimed by a worker: being stored now
                assert did == [], f"{task!r}: Conflict, but did {did}"
            else:
                raise AssertionError(f"{task!r} failed") from task.error
            return
        if task.state != "done":
            raise AssertionError(f"{task!r} failed") from task.error
        if job.kind == "collect":
            report: Collection = task.result
            assert sorted(report.collected) == sorted(s for _, s in did), f"{report}, did {did}"
            assert {kind for kind, _ in did} <= {"collect"}, f"{task!r} did {did}"
            return
        erasures: list[Erasure] = task.result
        kinds = Counter(kind for kind, _ in did)
        assert set(kinds) <= {"abort", "delete"}, f"{task!r} did {did}"
        assert all(self.models[u].owner == job.subject for _, u in did), f"{task!r} did {did}"
        assert kinds["delete"] == sum(e.deleted for e in erasures), f"{erasures}, did {did}"
        assert kinds["abort"] == sum(e.aborted for e in erasures), f"{erasures}, did {did}"
        if erasures[-1].done:
            left = sorted(u for u in job.owned if not self.models[u].deleted)
            assert not left, f"{task!r} done, but {left} of {job.subject} remain"

    # --- the checks ----------------------------------------------------------------------------

    def _terminal(self) -> list[str]:
        """Uploads that must be terminal (or deleted) now: decided by the API, or bytes arrived
        and every message about them acknowledged."""
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

    def _collect_now(self) -> None:
        """A collector run while nothing else runs: its report says what it did."""
        report = self._collector()
        did = self._observe()
        assert report.complete
        assert sorted(report.collected) == sorted(s for _, s in did), f"{report}, did {did}"

    def settle(self) -> None:
        """No more crashes: what runs finishes, a collector run after its lease finishes what a
        crash cut short, every message is delivered until acked; then the grace period passes,
        one more collector run, and everything is checked exactly."""
        for task in reversed(self._running()):  # the newest first: it may wait for an older one
            self._finish(task)
        self._reap()
        if COLLECTING in self.states.values():  # workers would wait for it in vain
            # The next scheduled run, after the lease of the run that stopped half-way.
            self.world.clock.now += (
                COLLECTOR_TIMEOUT + COLLECTION_LEASE_MARGIN + timedelta(seconds=1)
            )
            self._collect_now()
        # Whatever waits in the DLQ is redriven; nothing is dead-lettered from here on.
        for message in self._where("queued", "inflight", "dlq"):
            message.where, message.receives = "queued", 0
        for _ in range(3):
            for message in self._where("queued"):
                self._deliver_now(message)
        assert self._where("queued", "inflight", "dlq") == []

        self.world.clock.now += GRACE
        view = self.world.view
        unreferenced = [
            c
            for c in read_state(self.world.resources, view.s3, view.ddb).contents.values()
            if c.get("state") != GONE and not c.get("upload_count")
        ]
        if unreferenced:  # else the collector's index is empty
            self._collect_now()

        arrived = [u for u, m in self.models.items() if m.arrived]
        check_invariants(self.world.resources, view.s3, view.ddb, settled=arrived)
        state = read_state(self.world.resources, view.s3, view.ddb)
        self.expected.check(state, sequential=True)
        late = {staging_key(u) for u, m in self.models.items() if m.deleted}
        assert state.keys("staging/") <= late, "staging objects outlived their uploads"
        kept = {
            sha256: (c.get("state", LIVE), c.get("upload_count"))
            for sha256, c in state.contents.items()
            if c.get("state", LIVE) != GONE and not c.get("upload_count")
        }
        assert not kept, f"unreferenced past the grace period, yet not collected: {kept}"

    def teardown(self) -> None:
        try:
            if sys.exception() is None:  # a failing step is reported as it is, not masked
                self.settle()
        finally:
            self.scheduler.close()
            self.world.worker.metrics.clear_metrics()


@pytest.fixture
def world(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    from handlers import api, worker

    s3 = boto3.client("s3")
    # The machine plays the queue itself; moto would also queue a message per PUT.
    s3.put_bucket_notification_configuration(Bucket=aws.bucket, NotificationConfiguration={})
    world = World(aws, worker, api, s3, FakeClock())
    monkeypatch.setattr(service_clock, "utcnow", world.clock.utcnow)
    # A worker waiting for a collection re-reads at once: the collector runs when it is told.
    monkeypatch.setattr(service_clock, "sleep", lambda seconds: None)
    monkeypatch.setattr(dynamodb_adapter, "GC_SHARDS", GC_SHARDS)
    monkeypatch.setattr(uploads_service, "new_upload_id", world.new_upload_id)
    with faults.strict_copy_source(clients.s3(), s3):
        yield world


# About 0.15 s a schedule on an idle core; the margin is for loaded CI machines, and the extra
# ten minutes for shrinking a failure (Hypothesis gives it up to five). A timeout during the
# shrink is raised in whatever schedule runs then, and Hypothesis reports it as a second,
# flaky failure of that schedule (CI once showed one, a KeyError inside werkzeug).
@pytest.mark.timeout(max(600, EXAMPLES * 3 // 5) + 600)
def test_random_schedules_keep_dedup_exact(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    started, cpu = time.perf_counter(), time.process_time()

    # Hypothesis takes any factory of machines; its annotation says a class.
    run_state_machine_as_test(lambda: Schedules(world), settings=SETTINGS)  # type: ignore[arg-type]

    with capsys.disabled():
        print(
            f"\nschedules: {world.schedules} run (max_examples={EXAMPLES}, "
            f"{STEPS} steps each) in {time.perf_counter() - started:.1f} s "
            f"({time.process_time() - cpu:.1f} s CPU)"
        )
    assert world.schedules >= EXAMPLES


# Schedules Hypothesis found failing, replayed as it printed them: each run of the random test
# draws fresh schedules, so a failure found once would otherwise not be looked for again.
def _stalled_collector_then_a_taken_over_collection(state: Schedules) -> None:
    """Run A marks the content COLLECTING and stalls; before leases, run B finished the
    collection, a worker stored the bytes anew, and A, resuming, deleted the new copy."""
    (uploads_0,) = state.history(history="collecting", owner="alice", content=b"charlie!")
    state.stored_state_is_consistent()
    state.upload(content=b"charlie!", declare=False, owner="alice")
    state.stored_state_is_consistent()
    state.abort(upload_id=uploads_0)
    state.stored_state_is_consistent()
    uploads_2 = state.upload(content=b"alpha", declare=False, owner="alice")
    state.stored_state_is_consistent()
    state.abort(upload_id=uploads_2)
    state.stored_state_is_consistent()
    state.collect(calls=6)
    state.stored_state_is_consistent()
    state.abort(upload_id=uploads_2)
    state.stored_state_is_consistent()
    state.deliver(calls=6, pick=12)
    state.stored_state_is_consistent()


def _two_collectors_and_a_crashed_worker(state: Schedules) -> None:
    """The same loss, with the first collector stalled by the schedule itself."""
    state.history(history="released", owner="alice", content=b"")
    state.stored_state_is_consistent()
    state.advance_clock(seconds=901)
    state.stored_state_is_consistent()
    state.upload(content=b"", declare=True, owner="alice")
    state.stored_state_is_consistent()
    state.collect(calls=2)
    state.stored_state_is_consistent()
    state.deliver(calls=0, pick=0)
    state.stored_state_is_consistent()
    state.create(content=b"bravo", declare=False, owner="bob")
    state.stored_state_is_consistent()
    state.collect(calls=7)
    state.stored_state_is_consistent()
    state.deliver(calls=1, pick=12)
    state.stored_state_is_consistent()
    state.s3_sends_again(pick=0)
    state.stored_state_is_consistent()
    state.crash(after_call=False, pick=10)
    state.stored_state_is_consistent()


@pytest.mark.parametrize(
    "schedule",
    [_stalled_collector_then_a_taken_over_collection, _two_collectors_and_a_crashed_worker],
)
def test_schedules_that_once_failed_keep_dedup_exact(
    world: World, schedule: Callable[[Schedules], None]
) -> None:
    state = Schedules(world)
    schedule(state)
    state.teardown()
