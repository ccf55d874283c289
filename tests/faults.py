"""Fault injection at the worker's AWS-call boundaries: numbering, crashing, interleaving.

Everything here hooks the cached boto3 clients through botocore's event system (`before-call` /
`after-call`), so the code under test runs unchanged and every fault lands exactly between two
AWS requests, which is where a real worker can die or be overtaken.

- `Crash`: the worker process died (timeout, out of memory, instance reclaimed). It derives from
  BaseException, so no `except Exception` (ours, or Powertools' BatchProcessor) can swallow it.
- `CallLog`: numbers every AWS call made through some clients; optionally fails call k, before
  it is sent or after its response arrived.
- `outage`: every call of one operation fails until the block ends.
- `Scheduler`: workers in threads, exactly one of them running between two AWS calls; the test
  chooses which one proceeds, and may crash any of them at its next call.
- `strict_copy_source`: S3's CopySourceIfMatch, which moto ignores.
- `moto_stack` / `wipe`: one in-process moto account reused by many tests, emptied in between.
- `MotoView`: read-only stand-ins for `check_invariants`' clients, answered straight from moto's
  in-memory backends (no HTTP, no XML): cheap enough to check every step of a schedule.
- `Reference`: tests.invariants.Expected, plus uploads the client aborted.
- `Rig`: the client, S3's notifications and the worker Lambda, driven in-process, with checks.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import itertools
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

import boto3
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.exceptions import ClientError

from domain.model import sha256_hex_to_b64, staging_key
from tests.invariants import Expected, State, _Planned, check_invariants, read_state
from tests.lambda_events import sqs_event
from tests.pipeline import FakeContext, Pipeline

ACCOUNT = "123456789012"
REGION = "us-east-1"

# Calls that leave the stored state as it was: a step made only of these needs no new check.
READS = frozenset(
    {
        "GetItem",
        "BatchGetItem",
        "Query",
        "Scan",
        "HeadObject",
        "GetObject",
        "ListObjectsV2",
        "ListParts",
    }
)


class Crash(BaseException):
    """The worker process died between two AWS calls."""


When = Literal["before", "after"]


@dataclass(frozen=True)
class Call:
    number: int  # 1-based, in the order the calls were made
    service: str
    operation: str

    def __str__(self) -> str:
        return f"{self.number:02d}-{self.operation}"


def _operation(event_name: str) -> tuple[str, str]:
    _, service, operation = event_name.split(".", 2)
    return service, operation


class _Hooks:
    """before-call / after-call handlers on some clients, removed again on close()."""

    _ids = itertools.count()

    def __init__(
        self,
        clients: Iterable[Any],
        *,
        before: Callable[..., Any] | None = None,
        after: Callable[..., Any] | None = None,
        last: bool = False,
    ) -> None:
        self._registered: list[tuple[Any, str, Callable[..., Any], str]] = []
        for client in clients:
            for event, handler in (("before-call.*.*", before), ("after-call.*.*", after)):
                if handler is None:
                    continue
                unique_id = f"onecopy-faults-{next(self._ids)}"
                register = client.meta.events.register_last if last else client.meta.events.register
                register(event, handler, unique_id=unique_id)
                self._registered.append((client, event, handler, unique_id))

    def close(self) -> None:
        for client, event, handler, unique_id in self._registered:
            client.meta.events.unregister(event, handler, unique_id=unique_id)
        self._registered.clear()


@dataclass(frozen=True)
class Fault:
    """Fail call `at` (1-based), right before it is sent or right after its response arrived."""

    at: int
    when: When
    error: Callable[[Call], BaseException] = lambda call: Crash(str(call))


class CallLog:
    """Numbers the AWS calls made through `clients` while installed (a context manager).

    With a fault, call k fails: `before` it is sent (it never reaches AWS) or `after` AWS applied
    it (its response is lost), by raising the fault's error from botocore's hook.
    """

    def __init__(self, *clients: Any, fault: Fault | None = None) -> None:
        self.calls: list[Call] = []
        self.fault = fault
        self.fired: Call | None = None
        self._clients = clients
        self._hooks: _Hooks | None = None

    def __enter__(self) -> CallLog:
        self._hooks = _Hooks(self._clients, before=self._before, after=self._after)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._hooks is not None
        self._hooks.close()

    @property
    def operations(self) -> list[str]:
        return [c.operation for c in self.calls]

    def _before(self, event_name: str, **_: Any) -> None:
        service, operation = _operation(event_name)
        call = Call(len(self.calls) + 1, service, operation)
        self.calls.append(call)
        self._maybe_fail(call, "before")

    def _after(self, event_name: str, **_: Any) -> None:
        self._maybe_fail(self.calls[-1], "after")

    def _maybe_fail(self, call: Call, when: When) -> None:
        fault = self.fault
        if fault is None or self.fired is not None:
            return
        if (call.number, when) == (fault.at, fault.when):
            self.fired = call
            raise fault.error(call)


@contextlib.contextmanager
def outage(*clients: Any, operation: str, error: Callable[[Call], BaseException]) -> Iterator[None]:
    """Every `operation` call through `clients` fails, the same way, until the block ends."""

    def before(event_name: str, **_: Any) -> None:
        service, name = _operation(event_name)
        if name == operation:
            raise error(Call(0, service, name))

    hooks = _Hooks(clients, before=before)
    try:
        yield
    finally:
        hooks.close()


# --- the cooperative scheduler -----------------------------------------------------------------

_Grant = Literal["go", "crash", "crash-after"]


@dataclass(eq=False)
class Task:
    """A worker run by the Scheduler: paused (before `next_call`), done, failed or crashed."""

    name: str
    state: str = "new"
    next_call: str | None = None
    calls: list[str] = field(default_factory=list)
    result: Any = None
    error: BaseException | None = None
    _grant: _Grant | None = None
    _crash_after: bool = False
    _thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        return self.state in ("new", "paused", "running")

    def __repr__(self) -> str:
        where = f" before {self.next_call}" if self.state == "paused" else ""
        return f"<{self.name} {self.state}{where} after {len(self.calls)} calls>"


class Scheduler:
    """Runs workers in threads, one at a time between two AWS calls; the test picks who goes.

    A task runs from the moment it is granted a turn until it is about to make its next AWS call
    (botocore's before-call hook), where it pauses until granted again. Every AWS request thus
    executes alone, as each request is atomic in AWS, while the workers interleave at every call
    boundary. `crash` kills a paused task right before its pending call, or right after it.
    Calls from threads that are no task (the test's own setup and checks) pass straight through.
    """

    def __init__(self, *clients: Any, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.tasks: list[Task] = []
        self._cond = threading.Condition()
        self._local = threading.local()
        self._hooks = _Hooks(clients, before=self._before, after=self._after)

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- what the test does

    def spawn(self, name: str, fn: Callable[[], Any]) -> Task:
        """Start `fn` in a new task and run it up to its first AWS call."""
        task = Task(name)
        task._thread = threading.Thread(
            target=self._run, args=(task, fn), name=f"task-{name}", daemon=True
        )
        self.tasks.append(task)
        task._thread.start()
        self._resume(task, "go")
        return task

    def step(self, task: Task) -> None:
        """Let a paused task make its pending call and run on to its next one (or finish)."""
        self._resume(task, "go")

    def crash(self, task: Task, *, after_call: bool = False) -> None:
        """Kill a paused task before its pending call is sent, or just after it was answered."""
        self._resume(task, "crash-after" if after_call else "crash")

    def finish(self, task: Task) -> None:
        while task.alive:
            self.step(task)

    def close(self) -> None:
        """Kill whatever still runs (a test that failed half-way) and remove the hooks."""
        for task in self.tasks:
            if task.alive:
                with contextlib.suppress(AssertionError):
                    self._resume(task, "crash")
        for task in self.tasks:
            if task._thread is not None:
                task._thread.join(timeout=self.timeout)
        self._hooks.close()

    # --- inside the tasks' threads

    def _run(self, task: Task, fn: Callable[[], Any]) -> None:
        self._local.task = task
        state = "failed"
        try:
            if self._wait_for_turn(task) == "crash":
                raise Crash(f"{task.name} before its first step")
            task.result = fn()
            state = "done"
        except Crash as exc:
            task.error, state = exc, "crashed"
        except BaseException as exc:  # reported to the test through task.error
            task.error = exc
        finally:
            with self._cond:
                task.state, task.next_call = state, None
                self._cond.notify_all()

    def _wait_for_turn(self, task: Task) -> _Grant:
        with self._cond:
            if not self._cond.wait_for(lambda: task._grant is not None, timeout=self.timeout):
                # Nobody resumed us (the test died): leave quietly, as a crashed worker would.
                return "crash"
            grant, task._grant = task._grant, None
            task.state = "running"
        assert grant is not None
        return grant

    def _before(self, event_name: str, **_: Any) -> None:
        task: Task | None = getattr(self._local, "task", None)
        if task is None:
            return
        _, operation = _operation(event_name)
        with self._cond:
            task.state, task.next_call = "paused", operation
            self._cond.notify_all()
        grant = self._wait_for_turn(task)
        if grant == "crash":
            raise Crash(f"{task.name} before {operation}")
        task.calls.append(operation)
        task._crash_after = grant == "crash-after"

    def _after(self, event_name: str, **_: Any) -> None:
        task: Task | None = getattr(self._local, "task", None)
        if task is not None and task._crash_after:
            task._crash_after = False
            raise Crash(f"{task.name} after {_operation(event_name)[1]}")

    def _resume(self, task: Task, grant: _Grant) -> None:
        with self._cond:
            if task.state not in ("new", "paused"):
                raise AssertionError(f"{task!r} cannot be resumed")
            task._grant, task.state = grant, "running"
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: task.state != "running", timeout=self.timeout):
                raise AssertionError(f"{task!r} did not reach its next AWS call")


# --- S3 strictness moto lacks ------------------------------------------------------------------


def _error_response(status: int, code: str, message: str) -> tuple[AWSResponse, dict[str, Any]]:
    parsed = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
    }
    return AWSResponse("", status, HTTPHeaders(), None), parsed


def strict_copy_source(client: Any, checker: Any) -> contextlib.AbstractContextManager[None]:
    """Make `client`'s CopyObject honour CopySourceIfMatch (412), as S3 does and moto does not.

    `checker` is an unhooked S3 client used to read the source's current ETag. The check is
    registered last, after any scheduler hook, so it runs at the moment the request is sent.
    """

    def before(event_name: str, params: dict[str, Any], **_: Any) -> Any:
        if not event_name.endswith(".CopyObject"):
            return None
        headers = params.get("headers", {})
        if_match = headers.get("x-amz-copy-source-if-match")
        if not if_match:
            return None
        bucket, _, key = unquote(headers["x-amz-copy-source"]).lstrip("/").partition("/")
        try:
            etag = checker.head_object(Bucket=bucket, Key=key)["ETag"]
        except ClientError:
            return None  # S3 answers NoSuchKey for a missing source; moto does too
        if etag.strip('"') == if_match.strip('"'):
            return None
        return _error_response(412, "PreconditionFailed", "At least one precondition failed")

    @contextlib.contextmanager
    def installed() -> Iterator[None]:
        hooks = _Hooks([client], before=before, last=True)
        try:
            yield
        finally:
            hooks.close()

    return installed()


# --- one moto account for many tests -----------------------------------------------------------


@functools.cache
def _session() -> boto3.Session:
    # A session per mock would re-read botocore's service models (~0.2 s each time).
    return boto3.Session()


def _reset_handler_caches() -> None:
    from handlers import wiring

    wiring.reset()


@contextlib.contextmanager
def moto_stack() -> Iterator[Any]:
    """What the `aws` fixture gives, for a whole module: pair it with `wipe` between tests."""
    from moto import mock_aws

    from onecopy_local import moto_speed
    from onecopy_local.resources import create_resources

    moto_speed.share_user_pool_key()
    with mock_aws():
        boto3.DEFAULT_SESSION = _session()
        resources = create_resources(boto3.DEFAULT_SESSION)
        os.environ.update(resources.function_env())
        _reset_handler_caches()
        try:
            yield resources
        finally:
            _reset_handler_caches()


def wipe(resources: Any) -> None:
    """Empty the bucket, tables and queues (moto's backends directly: a few microseconds)."""
    from moto.dynamodb.models import dynamodb_backends
    from moto.s3.models import s3_backends
    from moto.sqs.models import sqs_backends

    bucket = s3_backends[ACCOUNT]["aws"].buckets[resources.bucket]
    for key in list(bucket.keys.keys()):
        bucket.keys.pop(key)
    bucket.multiparts.clear()
    tables = dynamodb_backends[ACCOUNT][REGION].tables
    for name in (
        resources.uploads_table,
        resources.contents_table,
        resources.holdings_table,
        resources.stats_table,
    ):
        tables[name].items.clear()
    for queue in sqs_backends[ACCOUNT][REGION].queues.values():
        queue._messages.clear()


# --- reading state without botocore ------------------------------------------------------------


class _Pages:
    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self._pages = pages

    def paginate(self, **_: Any) -> list[dict[str, Any]]:
        return self._pages


class _S3View:
    def __init__(self, hidden: frozenset[str] = frozenset()) -> None:
        self.hidden = hidden

    def _bucket(self, name: str) -> Any:
        from moto.s3.models import s3_backends

        return s3_backends[ACCOUNT]["aws"].buckets[name]

    def get_paginator(self, name: str) -> Any:
        assert name == "list_objects_v2"
        view = self

        class _Listing:
            def paginate(self, *, Bucket: str, **_: Any) -> list[dict[str, Any]]:
                keys = view._bucket(Bucket).keys
                contents = [
                    {"Key": k, "ETag": keys[k].etag}
                    for k in sorted(keys.keys())
                    if k not in view.hidden
                ]
                return [{"Contents": contents}]

        return _Listing()

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        return {"Body": io.BytesIO(self._bucket(Bucket).keys[Key].value)}


class _DynamoDBView:
    def get_paginator(self, name: str) -> _Pages:
        assert name == "scan"

        class _Scan:
            def paginate(self, *, TableName: str, **_: Any) -> list[dict[str, Any]]:
                from moto.dynamodb.models import dynamodb_backends

                table = dynamodb_backends[ACCOUNT][REGION].tables[TableName]
                return [{"Items": [item.to_json()["Attributes"] for item in table.all_items()]}]

        return _Scan()  # type: ignore[return-value]


@dataclass(frozen=True)
class MotoView:
    """`check_invariants(resources, view.s3, view.ddb)` without a single HTTP request."""

    s3: Any = field(default_factory=_S3View)
    ddb: Any = field(default_factory=_DynamoDBView)

    def hiding(self, keys: Iterable[str]) -> MotoView:
        return MotoView(_S3View(frozenset(keys)), self.ddb)


class Reference(Expected):
    """The reference model, plus uploads the client aborted (REJECTED, reason aborted)."""

    def aborted(self, upload_id: str) -> None:
        self.planned[upload_id] = _Planned("aborted", "", 0, "aborted")


# --- driving the worker Lambda ------------------------------------------------------------------


@dataclass
class Target:
    """The upload whose delivery gets crashed, and the S3 notifications its bytes produced."""

    upload_id: str
    bodies: list[str]
    settled: list[str] = field(default_factory=list)  # other uploads, already processed


@dataclass
class Rig:
    """Drives one moto account as AWS would: the client's API calls and PUTs, S3's notifications
    (moto's own, taken off the ingest queue), and the worker Lambda; then checks the state."""

    resources: Any
    worker: Any
    s3: Any = field(default_factory=lambda: boto3.client("s3"))  # unhooked: the client's own
    sqs: Any = field(default_factory=lambda: boto3.client("sqs"))
    view: MotoView = field(default_factory=MotoView)  # what the checks read
    expected: Reference = field(default_factory=Reference)

    # --- the client's side

    def create(self, data: bytes, *, owner: str = "alice", **body: Any) -> str:
        request = {"filename": "f.bin", "size": len(data), **body}
        reply = Pipeline(self.resources, owner=owner).call("POST", "/uploads", request)
        assert reply.status == 201, reply.body
        return str(reply.body["upload_id"])

    def put(self, upload_id: str, data: bytes, *, checksum: bool = False) -> None:
        """The presigned PUT (If-None-Match: *); with checksum, S3 keeps a verified SHA-256."""
        extra: dict[str, Any] = {}
        if checksum:
            digest = hashlib.sha256(data).hexdigest()
            extra = {"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": sha256_hex_to_b64(digest)}
        self.s3.put_object(
            Bucket=self.resources.bucket,
            Key=staging_key(upload_id),
            Body=data,
            IfNoneMatch="*",
            **extra,
        )

    def notifications(self) -> list[str]:
        """What the bucket sent to the ingest queue so far (taken off the queue)."""
        bodies: list[str] = []
        while messages := self.sqs.receive_message(
            QueueUrl=self.resources.queue_url, MaxNumberOfMessages=10
        ).get("Messages", []):
            for m in messages:
                bodies.append(m["Body"])
                self.sqs.delete_message(
                    QueueUrl=self.resources.queue_url, ReceiptHandle=m["ReceiptHandle"]
                )
        return bodies

    def uploaded(self, data: bytes, *, checksum: bool = False, **create: Any) -> Target:
        upload_id = self.create(data, **create)
        self.put(upload_id, data, checksum=checksum)
        return Target(upload_id, self.notifications())

    # --- Lambda's side

    def deliver(self, *bodies: str) -> list[str]:
        """One SQS batch through the worker Lambda; the ids it reports as failed."""
        event = sqs_event(*bodies)
        response = self.worker.lambda_handler(event, FakeContext())
        return [f["itemIdentifier"] for f in response["batchItemFailures"]]

    def poll(self) -> list[str]:
        """One round of Lambda's SQS event source mapping over the real ingest queue.

        Up to 10 messages go to the worker in one batch; those it acknowledges are deleted, the
        others become visible again at once (a tiny visibility timeout instead of the queue's
        30 minutes), so each receive counts toward the redrive policy's maxReceiveCount.
        Returns the bodies that failed.
        """
        from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

        queue = self.resources.queue_url
        messages = self.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        if not messages:
            return []
        event = sqs_event(*[m["Body"] for m in messages])
        for record, m in zip(event["Records"], messages, strict=True):
            record.update(messageId=m["MessageId"], receiptHandle=m["ReceiptHandle"])
        try:
            response = self.worker.lambda_handler(event, FakeContext())
            failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        except BatchProcessingError:  # every record failed: the invocation itself fails
            failed = {m["MessageId"] for m in messages}
        for m in messages:
            if m["MessageId"] in failed:
                self.sqs.change_message_visibility(
                    QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                self.sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
        return [m["Body"] for m in messages if m["MessageId"] in failed]

    def handle(self, body: str) -> Callable[[], None]:
        """One record, as a concurrent worker (its own Lambda instance) would process it."""
        record = SQSRecord(sqs_event(body)["Records"][0])
        return lambda: self.worker.record_handler(record)

    # --- observing

    def state(self) -> State:
        return read_state(self.resources, self.view.s3, self.view.ddb)

    def check(
        self, settled: Iterable[str], *, allow_orphans: bool = False, due: Iterable[str] = ()
    ) -> None:
        """The invariants, but for the staging objects of `due` uploads (a delivery is due)."""
        view = self.view.hiding(staging_key(u) for u in due)
        check_invariants(
            self.resources, view.s3, view.ddb, settled=settled, allow_orphans=allow_orphans
        )

    def check_settled(self, settled: Iterable[str]) -> None:
        """Every invariant, nothing left in staging, and exactly the reference model's outcome."""
        check_invariants(self.resources, self.view.s3, self.view.ddb, settled=settled)
        state = self.state()
        self.expected.check(state, sequential=False)
        assert state.keys("staging/") == set()
