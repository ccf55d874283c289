"""AWS requests per upload, what they cost per million uploads, and a month of a stated workload.

The real handlers run in-process against moto (``tests.pipeline.Pipeline`` drives them the way
AWS would), with a counter on the functions' own boto3 clients (``adapters.clients``): every
request they send is counted by service and operation, with the bytes GetObject returns.
DynamoDB capacity is computed from each request (item sizes, transactions, the sparse index).
Each DynamoDB request is also translated into what the same service without deduplication would
send instead (``without_dedup``), so one run prices both.

The requests AWS makes for us (S3's notification into SQS, the event source mapping's
ReceiveMessage/DeleteMessage) and the client's own PUT are not on those clients: they are added
from the flow, and listed with the prices under the tables.

The monthly model (``monthly``) multiplies the measured flows (the uploads, their deletion at the
end of the retention period, the collector's work) by a stated workload (``Workload``), and adds
what is held: S3 bytes, DynamoDB items (their sizes read back from the tables the run wrote) and
the log bytes the functions wrote during the run (Powertools' JSON lines and EMF metrics,
captured from their stdout). Every assumption is printed under its table.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import math
import os
import re
import textwrap
import threading
import uuid
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field, replace
from typing import Any

from bench._common import FAKE_AWS, MIB, human_size, patched_env, table, use_code_root

NAME = "calls"

# --- public us-east-1 prices (USD) ---------------------------------------------------------------
S3_PUT_TIER = 0.005 / 1000  # PUT, COPY, POST, LIST
S3_GET_TIER = 0.0004 / 1000  # GET, HEAD and every other request but DELETE (free)
DDB_WRU = 0.625 / 1e6  # on-demand write request unit (2025)
DDB_RRU = 0.125 / 1e6  # on-demand read request unit (2025)
SQS_REQUEST = 0.40 / 1e6  # standard queue, per 64 KB chunk
LAMBDA_REQUEST = 0.20 / 1e6
LAMBDA_GB_S = 0.0000133334  # arm64
APIGW_REQUEST = 1.00 / 1e6  # HTTP API
# Storage and the rest of the monthly model. AWS bills storage per GB of 2^30 bytes.
GB = 2**30
S3_STORAGE_GB_MONTH = 0.023  # S3 Standard, first 50 TB
DDB_STORAGE_GB_MONTH = 0.25  # tables and their indexes (25 GB free: ignored)
DDB_PITR_GB_MONTH = 0.20  # continuous backups, on each base table's size
DDB_ITEM_OVERHEAD = 100  # bytes DynamoDB adds to every item it stores, in a table or an index
LOGS_INGEST_GB = 0.50  # CloudWatch Logs ingestion (Lambda's tiered logs start at this price)
LOGS_STORED_GB_MONTH = (
    0.03  # archived log storage (billed compressed: uncompressed is an upper bound)
)
CW_METRIC_MONTH = 0.30  # one custom metric (an EMF metric name with its dimension set)
CW_ALARM_MONTH = 0.10  # one standard-resolution alarm
CW_DASHBOARD_MONTH = 3.00
KMS_KEY_MONTH = 1.00  # one customer-managed key
KMS_REQUEST = 0.03 / 10_000

S3_PUT_OPS = {
    "PutObject",
    "CopyObject",
    "PostObject",
    "CreateMultipartUpload",
    "UploadPart",
    "UploadPartCopy",
    "CompleteMultipartUpload",
    "ListObjects",
    "ListObjectsV2",
    "ListParts",
    "ListMultipartUploads",
}
S3_FREE_OPS = {"DeleteObject", "DeleteObjects", "AbortMultipartUpload"}

# --- the model for what is not counted (stated with the output) ----------------------------------
POLLS_PER_UPLOAD = 1  # the client's GET /uploads/{id} until terminal: one, when the worker is done
WORKER_BATCH = 1  # messages per worker invocation: 1 at low traffic (up to 10 when busy)
INVOCATION_OVERHEAD_MS = 3.0
# Typical same-region latencies; the Lambda's billed duration is their sum over its calls.
LATENCY_MS = {
    ("dynamodb", "GetItem"): 5.0,
    ("dynamodb", "Query"): 6.0,
    ("dynamodb", "PutItem"): 8.0,
    ("dynamodb", "UpdateItem"): 8.0,
    ("dynamodb", "DeleteItem"): 8.0,
    ("dynamodb", "BatchGetItem"): 8.0,
    ("dynamodb", "TransactWriteItems"): 20.0,
    ("s3", "HeadObject"): 15.0,
    ("s3", "GetObject"): 20.0,  # to the first byte; the body streams at STREAM_MB_S
    ("s3", "CopyObject"): 40.0,
    ("s3", "DeleteObject"): 15.0,
}
DEFAULT_LATENCY_MS = 20.0
STREAM_MB_S = 75.0  # one GetObject into a 512 MB Lambda (~0.3 vCPU, which also hashes)


# --- the workload the monthly model prices (printed with its table; change freely) ---------------
@dataclass(frozen=True)
class Workload:
    uploads: int = 10_000_000  # a month
    average_bytes: int = MIB
    duplicate_share: float = 0.30  # uploads whose content is stored already
    # Of the duplicates: another owner's content (STORED for them, no copy); the rest are the
    # owner's own content again, answered 409 before any byte moves (they declare the hash).
    cross_owner_share: float = 0.5
    retention_days: int = 90  # every upload is deleted (DELETE /uploads/{id}) this long after
    days_per_month: int = 30

    @property
    def new(self) -> float:
        return self.uploads * (1 - self.duplicate_share)

    @property
    def cross_owner(self) -> float:
        return self.uploads * self.duplicate_share * self.cross_owner_share

    @property
    def own_duplicates(self) -> float:
        return self.uploads * self.duplicate_share * (1 - self.cross_owner_share)

    def months(self, days: float) -> float:
        return days / self.days_per_month


WORKLOAD = Workload()
# What the run's uploads are called, so that their items have a deployed size: a camera's name.
FILENAME = "IMG_20261207_142233.jpg"
# Lambda's own lines for every invocation (the functions log in Lambda's Text format): START,
# END and REPORT as Lambda writes them.
_PLATFORM_LINES = (
    "START RequestId: 3f1c9a52-8d4e-4b7a-9c21-5e8f0d6a7b13 Version: $LATEST\n",
    "END RequestId: 3f1c9a52-8d4e-4b7a-9c21-5e8f0d6a7b13\n",
    "REPORT RequestId: 3f1c9a52-8d4e-4b7a-9c21-5e8f0d6a7b13\tDuration: 41.27 ms\t"
    "Billed Duration: 42 ms\tMemory Size: 512 MB\tMax Memory Used: 97 MB\t\n",
)
PLATFORM_LOG_BYTES = sum(len(line) for line in _PLATFORM_LINES)
# The in-process Lambda context (tests.pipeline.FakeContext) has shorter names than AWS's; every
# Powertools record carries the function's name twice (name, ARN) and the request id once.
DEPLOYED_FUNCTION_NAME = "onecopy-WorkerFunction-Xy12Ab34Cd56"
DEPLOYED_REQUEST_ID = "3f1c9a52-8d4e-4b7a-9c21-5e8f0d6a7b13"
# Typical values for the API's access-log line ($context variables of the template's Format).
_ACCESS_LOG_VALUES = {
    "requestId": "UZ7BqhYdoAMEJWQ=",
    "routeKey": "ANY /{proxy+}",
    "httpMethod": "POST",
    "path": "/uploads/4f9d2c8e1b7a4e6f9c3d5a7b8e0f1a2b",
    "status": "201",
    "responseLatency": "48",
    "integrationLatency": "45",
    "authorizer.claims.sub": "8f3e2b1c-5a7d-4e9f-b0c1-2d3e4f5a6b7c",
    "identity.sourceIp": "203.0.113.10",
    "requestTime": "07/Dec/2026:14:22:33 +0000",
    "error.message": "-",
}
# KMS with a customer key (KmsKeyArn): nothing asks KMS per object or per item.
KMS_REFRESH_SECONDS = 300  # each caller below asks KMS again this often while it is active
KMS_S3_REQUESTERS = 2  # S3 Bucket Key: one per requester (the API's role, the worker's)
KMS_TABLE_CALLERS = 10  # DynamoDB: per table, per caller (warm API and worker environments)
KMS_SQS_CALLERS = 6  # SQS data key reuse: S3 sending, and the event source mapping's 5 pollers
# Reconciliation reads every table once a day; a 512 MB function scanning and counting in
# Python is assumed to get through this many bytes of items a second.
RECONCILE_SCAN_MB_S = 5.0


@dataclass
class CallCounter:
    """Requests the functions send, by (function, service, operation).

    Alongside, what the same service without deduplication would send (``plain_*``): the same
    S3 requests, and each DynamoDB request translated by ``without_dedup``.
    """

    calls: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    downloaded: Counter[str] = field(default_factory=Counter)
    rru: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    wru: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    plain_calls: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    plain_rru: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    plain_wru: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    logged: Counter[str] = field(default_factory=Counter)  # bytes written to stdout
    metric_names: set[str] = field(default_factory=set)  # EMF metrics published
    dedup_tables: frozenset[str] = frozenset()
    max_item_bytes: int = 0
    function: str = "client"
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pending: threading.local = field(default_factory=threading.local)

    @contextmanager
    def as_function(self, name: str) -> Iterator[None]:
        previous, self.function = self.function, name
        try:
            yield
        finally:
            self.function = previous

    def attach(self, client: Any, index_keys: dict[str, set[str]]) -> None:
        service = client.meta.service_model.service_name
        events = client.meta.events

        # before-send fires once per attempt, so a retried request counts (and bills) twice.
        def on_send(event_name: str, **_: Any) -> None:
            operation = event_name.rsplit(".", 1)[-1]
            plain = getattr(self._pending, "plain", None) if service == "dynamodb" else None
            with self._lock:
                self.calls[(self.function, service, operation)] += 1
                for plain_operation in [operation] if plain is None else plain:
                    self.plain_calls[(self.function, service, plain_operation)] += 1

        def on_get(parsed: dict[str, Any], **_: Any) -> None:
            with self._lock:
                self.downloaded[self.function] += int(parsed.get("ContentLength") or 0)

        def on_params(params: dict[str, Any], model: Any, **_: Any) -> None:
            rru, wru, biggest = capacity(model.name, params, index_keys)
            plain = without_dedup(model.name, params, index_keys, self.dedup_tables)
            # Read by on_send, which follows on this thread for this request (and its retries).
            self._pending.plain = [operation for operation, _, _ in plain]
            with self._lock:
                self.rru[self.function] += rru
                self.wru[self.function] += wru
                self.plain_rru[self.function] += sum(r for _, r, _ in plain)
                self.plain_wru[self.function] += sum(w for _, _, w in plain)
                self.max_item_bytes = max(self.max_item_bytes, biggest)

        events.register(f"before-send.{client.meta.service_model.service_id.hyphenize()}", on_send)
        if service == "s3":
            events.register("after-call.s3.GetObject", on_get)
        if service == "dynamodb":
            events.register("before-parameter-build.dynamodb", on_params)

    def log(self, size: int, metric_names: Sequence[str] = ()) -> None:
        with self._lock:
            self.logged[self.function] += size
            self.metric_names.update(metric_names)

    def reset(self) -> None:
        for tally in (
            self.calls,
            self.downloaded,
            self.rru,
            self.wru,
            self.plain_calls,
            self.plain_rru,
            self.plain_wru,
            self.logged,
            self.metric_names,
        ):
            tally.clear()


# --- DynamoDB capacity ---------------------------------------------------------------------------


def item_bytes(item: dict[str, Any]) -> int:
    """DynamoDB's size of an item: attribute names plus values (its documented rules)."""
    return sum(len(name.encode()) + _value_bytes(value) for name, value in item.items())


def _value_bytes(value: dict[str, Any]) -> int:
    (kind, v), *_ = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        digits = v.lstrip("-").replace(".", "").strip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + _value_bytes(x) for x in v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + _value_bytes(x) for k, x in v.items())
    if kind in ("SS", "NS", "BS"):
        return sum(_value_bytes({kind[0]: x}) for x in v)
    return 0


def _write_units(item: dict[str, Any] | None) -> int:
    # Updates do not carry the whole item; onecopy's items are all well under 1 KB (the bench
    # prints the largest Put it saw to back that up), so an update is one unit.
    return max(1, math.ceil(item_bytes(item) / 1024)) if item else 1


def capacity(
    operation: str, params: dict[str, Any], index_keys: dict[str, set[str]]
) -> tuple[float, float, int]:
    """(read units, write units, largest item written) one request consumes, on demand.

    Reads: 1 unit per 4 KB strongly consistent, half that eventually consistent (every index
    query), items assumed under 4 KB. Writes: 1 unit per KB, 2 in a transaction, plus 1 per
    write into a global secondary index (a Put whose item carries the index's key).
    """

    def index_writes(table: str, item: dict[str, Any] | None) -> int:
        return sum(1 for key in index_keys.get(table, ()) if item and key in item)

    if operation == "GetItem":
        return (1.0 if params.get("ConsistentRead") else 0.5), 0.0, 0
    if operation == "Query":
        return 0.5 if params.get("IndexName") or not params.get("ConsistentRead") else 1.0, 0, 0
    if operation == "BatchGetItem":
        units = sum(
            len(r["Keys"]) * (1.0 if r.get("ConsistentRead") else 0.5)
            for r in params["RequestItems"].values()
        )
        return units, 0.0, 0
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        item = params.get("Item")
        wru = _write_units(item) + index_writes(params["TableName"], item)
        return 0.0, float(wru), item_bytes(item) if item else 0
    if operation == "TransactWriteItems":
        wru, biggest = 0, 0
        for action in params["TransactItems"]:
            (kind, body), *_ = action.items()
            item = body.get("Item") if kind == "Put" else None
            wru += 2 * _write_units(item) + index_writes(body["TableName"], item)
            biggest = max(biggest, item_bytes(item) if item else 0)
        return 0.0, float(wru), biggest
    return 0.0, 0.0, 0


# Attributes of an upload that only deduplication writes: the claim on a content, made before
# its bytes are copied to the content's key (service.ingest, step 4).
DEDUP_ONLY_ATTRIBUTES = ("claimed_sha256",)
_SINGLE_WRITE = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}


def without_dedup(
    operation: str,
    params: dict[str, Any],
    index_keys: dict[str, set[str]],
    dedup_tables: frozenset[str],
) -> list[tuple[str, float, float]]:
    """What the same service without deduplication sends instead of one DynamoDB request:
    [(operation, read units, write units)].

    Without deduplication there are no contents, holdings or counters (``dedup_tables``): their
    reads and writes go, and so does the claim on a content. A transaction keeps its writes to
    the uploads table, each as a single write (one item needs no transaction).
    """
    if operation == "TransactWriteItems":
        kept = []
        for action in params["TransactItems"]:
            (kind, body), *_ = action.items()
            if kind in _SINGLE_WRITE and body["TableName"] not in dedup_tables:
                single = _SINGLE_WRITE[kind]
                rru, wru, _ = capacity(single, body, index_keys)
                kept.append((single, rru, wru))
        return kept
    tables = set(params.get("RequestItems") or ()) | {params.get("TableName")}
    expression = str(params.get("UpdateExpression", ""))
    if tables & dedup_tables or any(a in expression for a in DEDUP_ONLY_ATTRIBUTES):
        return []
    rru, wru, _ = capacity(operation, params, index_keys)
    return [(operation, rru, wru)]


# --- the flows -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    """What one kind of upload (or deletion, or collection) does: the AWS calls counted, and
    the requests around them."""

    name: str
    api_invocations: int  # POST /uploads, then the polls
    client_puts: int  # the presigned PUT into staging (billed to the bucket's owner)
    worker_messages: int  # S3 notifications the worker handles
    calls: dict[str, Counter[tuple[str, str]]]  # function -> (service, operation) -> per upload
    downloaded: dict[str, float]
    rru: dict[str, float]
    wru: dict[str, float]
    statuses: tuple[str, ...]
    # Invocations of other functions (the collector); 0: the work is part of a longer run.
    scheduled: dict[str, float] = field(default_factory=dict)
    logged: dict[str, float] = field(default_factory=dict)  # stdout bytes, by function
    metric_names: frozenset[str] = frozenset()
    without_dedup: Flow | None = None  # the same, as a service without deduplication does it

    def runs(self, function: str) -> float:
        if function == "api":
            return self.api_invocations
        if function == "worker":
            return self.worker_messages
        return self.scheduled.get(function, 0)

    @property
    def invocations(self) -> float:
        return (
            self.api_invocations
            + self.worker_messages / WORKER_BATCH
            + sum(self.scheduled.values())
        )

    @property
    def log_bytes(self) -> float:
        """What CloudWatch Logs ingests for it: the functions' lines (captured), Lambda's own
        three lines per invocation, and one access-log line per API request."""
        return (
            sum(self.logged.values())
            + self.invocations * PLATFORM_LOG_BYTES
            + self.api_invocations * access_log_bytes()
        )


@dataclass(frozen=True)
class Placeholder:
    name: str
    note: str


@dataclass(frozen=True)
class Measured:
    """Everything one run measured."""

    uploads: list[Flow | Placeholder]
    # Deleting each kind of upload of the workload: the owner's own duplicate (a 409), another
    # owner's match, the content's last reference (in that order, as the run deletes them).
    deletions: list[Flow]
    collection: Flow  # the collector's work for one content nobody references any more
    idle_run: Flow  # one scheduled collector run that finds nothing to collect
    item_bytes: dict[str, float]  # mean DynamoDB item size of each kind, read back
    max_item_bytes: int

    @property
    def flows(self) -> list[Flow | Placeholder]:
        return [*self.uploads, *self.deletions, self.collection, self.idle_run]


class _Driver:
    def __init__(self, counter: CallCounter, resources: Any) -> None:
        import boto3
        from botocore.config import Config

        self.counter = counter
        self.resources = resources
        # The client's PUT is not the functions' request: an uncounted client, and no SDK
        # checksum unless the flow declares one (as the presigned PUT would carry it).
        self.s3 = boto3.client("s3", config=Config(request_checksum_calculation="when_required"))
        self.upload_ids: list[str] = []  # every upload created, in order (409s included)

    def pipeline(self, owner: str) -> Any:
        from tests.pipeline import Pipeline

        return Pipeline(self.resources, owner=owner)

    def upload(self, owner: str, data: bytes, *, declare: bool) -> str:
        pipeline = self.pipeline(owner)
        with self.counter.as_function("api"):
            created = pipeline.create(data, FILENAME, declare=declare)
        if created.status == 409:
            self.upload_ids.append(created.body["upload_id"])
            return "409 " + str(created.body.get("status", "DUPLICATE"))
        assert created.status == 201, created
        upload_id = created.body["upload_id"]
        self.upload_ids.append(upload_id)
        extra: dict[str, Any] = {}
        if declare:
            digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
            extra = {"ChecksumSHA256": digest, "ChecksumAlgorithm": "SHA256"}
        self.s3.put_object(
            Bucket=self.resources.bucket, Key=f"staging/{upload_id}", Body=data, **extra
        )
        with self.counter.as_function("worker"):
            pipeline.drain()
        with self.counter.as_function("api"):
            for _ in range(POLLS_PER_UPLOAD):
                status = pipeline.call("GET", f"/uploads/{upload_id}").body["status"]
        return str(status)

    def upload_multipart(self, owner: str, data: bytes) -> tuple[str, int]:
        """Create in parts, PUT each part, complete, let the worker run; (status, parts sent)."""
        pipeline = self.pipeline(owner)
        with self.counter.as_function("api"):
            created = pipeline.call(
                "POST",
                "/uploads",
                {"filename": FILENAME, "size": len(data), "multipart": True},
            )
            assert created.status == 201, created
            upload_id = created.body["upload_id"]
            plan = created.body["multipart"]
            numbers = list(range(1, plan["part_count"] + 1))
            pipeline.call("POST", f"/uploads/{upload_id}/parts", {"part_numbers": numbers})
        key = f"staging/{upload_id}"
        s3_upload_id = next(
            u["UploadId"]
            for u in self.s3.list_multipart_uploads(Bucket=self.resources.bucket)["Uploads"]
            if u["Key"] == key
        )
        size = plan["part_size"]
        parts = []
        for n in numbers:
            etag = self.s3.upload_part(
                Bucket=self.resources.bucket,
                Key=key,
                UploadId=s3_upload_id,
                PartNumber=n,
                Body=data[(n - 1) * size : n * size],
            )["ETag"]
            parts.append({"part_number": n, "etag": etag})
        with self.counter.as_function("api"):
            done = pipeline.call("POST", f"/uploads/{upload_id}/complete", {"parts": parts})
            assert done.status == 202, done
        with self.counter.as_function("worker"):
            pipeline.drain()
        with self.counter.as_function("api"):
            for _ in range(POLLS_PER_UPLOAD):
                status = pipeline.call("GET", f"/uploads/{upload_id}").body["status"]
        return str(status), len(numbers)

    def delete(self, owner: str, upload_id: str) -> str:
        with self.counter.as_function("api"):
            return str(self.pipeline(owner).call("DELETE", f"/uploads/{upload_id}").status)

    def collect(self) -> str:
        """One scheduled collector run, with no grace period (what is due after it)."""
        from handlers import collector, settings
        from tests.lambda_events import sample
        from tests.pipeline import FakeContext

        with patched_env({"COLLECTION_GRACE_SECONDS": "0"}):
            settings.reset()
            try:
                with self.counter.as_function("collector"):
                    result = collector.lambda_handler(
                        sample("collector_scheduled.json"), FakeContext()
                    )
            finally:
                settings.reset()
        return f"collected {result['collected']}"

    def mean_item_bytes(self, table: str, keep: Callable[[dict[str, Any]], bool]) -> float:
        """The mean size of the items of ``table`` that ``keep`` selects (read uncounted)."""
        import boto3

        paginator = boto3.client("dynamodb").get_paginator("scan")
        sizes = [
            item_bytes(item)
            for page in paginator.paginate(TableName=table)
            for item in page.get("Items", [])
            if keep(item)
        ]
        return sum(sizes) / len(sizes) if sizes else 0.0


def _flow(
    counter: CallCounter,
    name: str,
    divisor: int,
    statuses: Sequence[str],
    *,
    api_invocations: int = 0,
    client_puts: int = 0,
    worker_messages: int = 0,
    scheduled: dict[str, float] | None = None,
) -> Flow:
    """The counter's tallies since its last reset, per one of ``divisor`` repeats."""

    def per_function(calls: Counter[tuple[str, str, str]]) -> dict[str, Counter[tuple[str, str]]]:
        per: dict[str, Counter[tuple[str, str]]] = {}
        for (function, service, operation), n in calls.items():
            per.setdefault(function, Counter())[(service, operation)] += n / divisor
        return per

    def each(tally: dict[str, float] | Counter[str]) -> dict[str, float]:
        return {f: n / divisor for f, n in tally.items()}

    shape = {
        "api_invocations": api_invocations,
        "client_puts": client_puts,
        "worker_messages": worker_messages,
        "downloaded": each(counter.downloaded),
        "statuses": tuple(sorted(set(statuses))),
        "scheduled": scheduled or {},
        "logged": each(counter.logged),
        "metric_names": frozenset(counter.metric_names),
    }
    plain = Flow(
        name=name,
        calls=per_function(counter.plain_calls),
        rru=each(counter.plain_rru),
        wru=each(counter.plain_wru),
        **shape,
    )
    return Flow(
        name=name,
        calls=per_function(counter.calls),
        rru=each(counter.rru),
        wru=each(counter.wru),
        without_dedup=plain,
        **shape,
    )


def _measure(
    counter: CallCounter,
    name: str,
    repeats: int,
    one: Callable[[int], str],
    **shape: Any,
) -> Flow:
    counter.reset()
    statuses = [one(n) for n in range(repeats)]
    return _flow(counter, name, repeats, statuses, **shape)


MULTIPART_PART = 16 * MIB  # the API's default MULTIPART_PART_SIZE_BYTES


def run(size: int = MIB, repeats: int = 3) -> Measured:
    """Count each kind of upload ``repeats`` times over ``size``-byte files (averaged), then
    their deletion and the collector's work."""
    use_code_root()
    from moto import mock_aws

    # Metrics on and logs at INFO, as deployed: what the handlers print is captured and
    # measured (see _capture_logs), never shown. It changes no AWS call.
    env: dict[str, str | None] = {
        **FAKE_AWS,
        "AWS_ENDPOINT_URL": None,
        "POWERTOOLS_METRICS_DISABLED": "false",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    with patched_env(env), mock_aws(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "No application metrics to publish")
        from adapters import clients
        from onecopy_local.resources import create_resources, resource

        resources = create_resources()
        with patched_env(dict(resources.function_env())):
            _fresh_handlers(clients)
            try:
                counter = CallCounter(
                    dedup_tables=frozenset(
                        (resources.contents_table, resources.holdings_table, resources.stats_table)
                    )
                )
                index_keys = {
                    resources.uploads_table: _index_keys(resource("UploadsTable")),
                    resources.contents_table: _index_keys(resource("ContentsTable")),
                    resources.stats_table: _index_keys(resource("StatsTable")),
                    resources.holdings_table: _index_keys(resource("HoldingsTable")),
                }
                counter.attach(clients.s3(), index_keys)
                counter.attach(clients.dynamodb(), index_keys)
                driver = _Driver(counter, resources)
                with _capture_logs(counter):
                    driver.pipeline("nobody").drain()  # the s3:TestEvent from creating the bucket
                    return _flows(counter, driver, size, repeats)
            finally:
                _fresh_handlers(clients)


def _flows(counter: CallCounter, driver: _Driver, size: int, repeats: int) -> Measured:
    def new_bytes() -> bytes:
        return os.urandom(size)

    # The owners are Cognito subs, as deployed (their ids are in the items and the log lines).
    alice, bob, carol, dave = (str(uuid.uuid4()) for _ in range(4))
    held: list[bytes] = [new_bytes() for _ in range(repeats)]
    api_with_poll = 1 + POLLS_PER_UPLOAD
    flows: list[Flow | Placeholder] = [
        _measure(
            counter,
            "new, sha256 declared (single PUT)",
            repeats,
            lambda n: driver.upload(alice, held[n], declare=True),
            api_invocations=api_with_poll,
            client_puts=1,
            worker_messages=1,
        ),
        _measure(
            counter,
            "another owner's content (STORED, no copy)",
            repeats,
            lambda n: driver.upload(bob, held[n], declare=True),
            api_invocations=api_with_poll,
            client_puts=1,
            worker_messages=1,
        ),
        _measure(
            counter,
            "duplicate, already held (409)",
            repeats,
            lambda n: driver.upload(alice, held[n], declare=True),
            api_invocations=1,
            client_puts=0,
            worker_messages=0,
        ),
    ]
    new_ids, match_ids, own_ids = (
        driver.upload_ids[k * repeats : (k + 1) * repeats] for k in range(3)
    )
    # The workload's items, as these three flows left them.
    resources = driver.resources
    sizes = {
        "upload": driver.mean_item_bytes(resources.uploads_table, lambda item: True),
        "content": driver.mean_item_bytes(resources.contents_table, lambda item: True),
        "holding": driver.mean_item_bytes(resources.holdings_table, lambda item: True),
    }
    flows.append(
        _measure(
            counter,
            "new, no sha256 (worker streams)",
            repeats,
            lambda n: driver.upload(carol, new_bytes(), declare=False),
            api_invocations=api_with_poll,
            client_puts=1,
            worker_messages=1,
        )
    )
    # Parts of MULTIPART_PART_SIZE (16 MiB): a file just over one part goes in two.
    big = [new_bytes() + os.urandom(MULTIPART_PART) for _ in range(repeats)]
    part_count = -(-len(big[0]) // MULTIPART_PART)
    flows.append(
        _measure(
            counter,
            f"new, multipart ({part_count} parts, worker streams)",
            repeats,
            lambda n: driver.upload_multipart(dave, big[n])[0],
            # create, part URLs, complete, then the polls
            api_invocations=3 + POLLS_PER_UPLOAD,
            client_puts=part_count,
            # S3 sends one ObjectCreated:CompleteMultipartUpload; moto sends a second (Put) too,
            # whose extra GetItem and DeleteObject are counted above: a slight overestimate.
            worker_messages=1,
        )
    )
    # Every upload of the first three flows deleted, the last reference last: its content
    # becomes collectable, and one collector run takes them all.
    deletions = [
        _measure(
            counter,
            f"delete: {what}",
            repeats,
            lambda n, owner=owner, ids=ids: driver.delete(owner, ids[n]),
            api_invocations=1,
        )
        for what, owner, ids in (
            ("the owner's own duplicate (409)", alice, own_ids),
            ("another owner's match", bob, match_ids),
            ("the content's last reference", alice, new_ids),
        )
    ]
    counter.reset()
    collected = driver.collect()
    busy = _flow(counter, "", 1, [collected], scheduled={"collector": 1})
    idle_run = _measure(
        counter,
        "collector: one scheduled run, nothing due",
        1,
        lambda n: driver.collect(),
        scheduled={"collector": 1},
    )
    collection = _difference(
        busy, idle_run, repeats, f"collector: one content collected ({collected} in a run)"
    )
    sizes["upload tombstone"] = driver.mean_item_bytes(
        resources.uploads_table, lambda item: item["status"]["S"] == "DELETED"
    )
    sizes["content tombstone"] = driver.mean_item_bytes(
        resources.contents_table, lambda item: item.get("state", {}).get("S") == "GONE"
    )
    return Measured(flows, deletions, collection, idle_run, sizes, counter.max_item_bytes)


def _difference(busy: Flow, idle: Flow, divisor: int, name: str) -> Flow:
    """What a run that collected ``divisor`` contents did beyond an idle run, per content: the
    work inside a longer run (no invocation of its own)."""

    def less(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for function, value in a.items():
            if isinstance(value, Counter):
                rest = value - b.get(function, Counter())
                out[function] = Counter({k: v / divisor for k, v in rest.items()})
            else:
                out[function] = max(0.0, value - b.get(function, 0.0)) / divisor
        return out

    return Flow(
        name=name,
        api_invocations=0,
        client_puts=0,
        worker_messages=0,
        calls=less(busy.calls, idle.calls),
        downloaded=less(busy.downloaded, idle.downloaded),
        rru=less(busy.rru, idle.rru),
        wru=less(busy.wru, idle.wru),
        statuses=busy.statuses,
        scheduled={"collector": 0},
        logged=less(busy.logged, idle.logged),
        metric_names=busy.metric_names,
    )


def _index_keys(props: dict[str, Any]) -> set[str]:
    return {
        key["AttributeName"]
        for index in props.get("GlobalSecondaryIndexes", [])
        for key in index["KeySchema"]
    }


def _fresh_handlers(clients: Any) -> None:
    """Handlers cache their clients: drop them so they bind to this mock (and not after it)."""
    from handlers import wiring

    clients.reset()
    wiring.reset()


# --- the functions' logs -------------------------------------------------------------------------


class _LogMeter(io.TextIOBase):
    """Stands in for the functions' stdout, which Lambda sends to CloudWatch Logs: counts the
    bytes each function writes (and the EMF metrics among them), and keeps none of it."""

    def __init__(self, counter: CallCounter, per_record: int) -> None:
        self.counter = counter
        self.per_record = per_record  # bytes a deployed context adds to each Powertools record

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        size = len(text.encode()) + text.count('"function_request_id"') * self.per_record
        names: list[str] = []
        if text.startswith('{"_aws"'):
            for directive in json.loads(text)["_aws"]["CloudWatchMetrics"]:
                names += [metric["Name"] for metric in directive["Metrics"]]
        self.counter.log(size, names)
        return len(text)


@contextmanager
def _capture_logs(counter: CallCounter) -> Iterator[None]:
    """Route the handlers' Powertools logger (at INFO, as deployed) and their EMF prints into a
    _LogMeter for the duration."""
    from handlers import api, collector, worker  # noqa: F401  (their loggers exist from here)
    from tests.pipeline import FakeContext

    per_record = 2 * (len(DEPLOYED_FUNCTION_NAME) - len(FakeContext.function_name)) + (
        len(DEPLOYED_REQUEST_ID) - len(FakeContext.aws_request_id)
    )
    meter = _LogMeter(counter, per_record)
    logger = logging.getLogger(os.environ["POWERTOOLS_SERVICE_NAME"])
    level = logger.level
    streams = [
        (handler, handler.stream)
        for handler in logger.handlers
        if isinstance(handler, logging.StreamHandler)
    ]
    for handler, _ in streams:
        handler.setStream(meter)
    logger.setLevel(logging.INFO)
    try:
        with redirect_stdout(meter):
            yield
    finally:
        logger.setLevel(level)
        for handler, stream in streams:
            handler.setStream(stream)


def access_log_bytes() -> int:
    """One access-log line of the HTTP API: the template's Format with typical values."""
    from onecopy_local.resources import resource

    line = str(resource("HttpApi")["AccessLogSettings"]["Format"])
    for name, value in sorted(_ACCESS_LOG_VALUES.items(), key=lambda kv: -len(kv[0])):
        line = line.replace(f"$context.{name}", value)
    return len(line.encode()) + 1


# --- cost ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cost:
    s3: float
    dynamodb: float
    sqs: float
    lambda_: float
    apigw: float

    @property
    def total(self) -> float:
        return self.s3 + self.dynamodb + self.sqs + self.lambda_ + self.apigw


def _lambda_ms(calls: Counter[tuple[str, str]], downloaded: float) -> float:
    ms = INVOCATION_OVERHEAD_MS + downloaded / (STREAM_MB_S * 1e6) * 1000
    for key, n in calls.items():
        ms += n * LATENCY_MS.get(key, DEFAULT_LATENCY_MS)
    return ms


def cost_per_upload(flow: Flow, memory_gb: dict[str, float]) -> Cost:
    s3 = flow.client_puts * S3_PUT_TIER
    for calls in flow.calls.values():
        for (service, operation), n in calls.items():
            if service == "s3" and operation not in S3_FREE_OPS:
                s3 += n * (S3_PUT_TIER if operation in S3_PUT_OPS else S3_GET_TIER)
    dynamodb = sum(flow.rru.values()) * DDB_RRU + sum(flow.wru.values()) * DDB_WRU
    # S3 -> SQS SendMessage, then the event source mapping's ReceiveMessage and DeleteMessage.
    sqs = flow.worker_messages * (1 + 2 / WORKER_BATCH) * SQS_REQUEST
    gb_s = 0.0
    for function, calls in flow.calls.items():
        runs = flow.runs(function)
        downloaded = flow.downloaded.get(function, 0)
        if runs:
            # Billed per invocation in 1 ms steps; spread the calls evenly over the invocations.
            per_run = _lambda_ms(
                Counter({k: v / runs for k, v in calls.items()}), downloaded / runs
            )
            gb_s += runs * math.ceil(per_run) / 1000 * memory_gb[function]
        else:  # part of a longer run: its requests' time only
            ms = _lambda_ms(calls, downloaded) - INVOCATION_OVERHEAD_MS
            gb_s += ms / 1000 * memory_gb[function]
    lam = flow.invocations * LAMBDA_REQUEST + gb_s * LAMBDA_GB_S
    return Cost(s3, dynamodb, sqs, lam, flow.api_invocations * APIGW_REQUEST)


def function_memory_gb() -> dict[str, float]:
    use_code_root()
    from onecopy_local.resources import template

    spec = template()
    default = spec.get("Globals", {}).get("Function", {}).get("MemorySize", 128)

    def memory(logical_id: str) -> float:
        props = spec["Resources"][logical_id].get("Properties", {})
        return int(props.get("MemorySize", default)) / 1024

    return {
        "api": memory("ApiFunction"),
        "worker": memory("WorkerFunction"),
        "collector": memory("CollectorFunction"),
        "reconcile": memory("ReconcileFunction"),
    }


# --- a month of the workload ---------------------------------------------------------------------

SERVICES = ("S3", "DynamoDB", "SQS", "Lambda", "API Gateway", "CloudWatch")


@dataclass(frozen=True)
class Stack:
    """What template.yaml sets that the monthly model needs (its defaults)."""

    grace_days: float  # CollectionGracePeriodSeconds
    collector_runs: float  # a month, from CollectorSchedule
    reconcile_runs: float  # a month, from the ReconcileFunction's schedule
    log_retention_days: float
    alarms: int
    dashboards: int
    memory_gb: dict[str, float]


def stack(workload: Workload = WORKLOAD) -> Stack:
    use_code_root()
    from onecopy_local.resources import parameters, template

    spec = template()
    values = parameters()
    resources = spec["Resources"]
    reconcile_schedule = next(
        event["Properties"]["ScheduleExpression"]
        for event in resources["ReconcileFunction"]["Properties"]["Events"].values()
        if "ScheduleExpression" in event.get("Properties", {})
    )
    kinds = Counter(r.get("Type") for r in resources.values())
    month = workload.days_per_month * 86400
    return Stack(
        grace_days=int(str(values["CollectionGracePeriodSeconds"])) / 86400,
        collector_runs=month / _rate_seconds(str(values["CollectorSchedule"])),
        reconcile_runs=month / _rate_seconds(str(reconcile_schedule)),
        log_retention_days=int(str(values["LogRetentionDays"])),
        alarms=kinds["AWS::CloudWatch::Alarm"],
        dashboards=kinds["AWS::CloudWatch::Dashboard"],
        memory_gb=function_memory_gb(),
    )


_RATE = re.compile(r"rate\((\d+) (minute|hour|day)s?\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def _rate_seconds(expression: str) -> float:
    match = _RATE.fullmatch(expression.strip())
    if match is None:
        raise ValueError(f"the monthly model reads rate(...) schedules only, not {expression!r}")
    return int(match[1]) * _UNIT_SECONDS[match[2]]


@dataclass
class Bill:
    """A month in USD, by (activity, service), requests (and other usage) apart from storage."""

    requests: defaultdict[tuple[str, str], float] = field(
        default_factory=lambda: defaultdict(float)
    )
    storage: defaultdict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    log_bytes: float = 0.0  # ingested a month
    held: dict[str, float] = field(default_factory=dict)  # bytes held, by what holds them
    metric_names: list[str] = field(default_factory=list)  # EMF metrics published
    notes: list[str] = field(default_factory=list)

    def add_flow(self, activity: str, flow: Flow, count: float, memory: dict[str, float]) -> None:
        cost = cost_per_upload(flow, memory)
        for service, usd in zip(
            SERVICES, (cost.s3, cost.dynamodb, cost.sqs, cost.lambda_, cost.apigw), strict=False
        ):
            self.requests[activity, service] += usd * count
        self.add_logs(activity, flow.log_bytes * count)

    def add_logs(self, activity: str, size: float) -> None:
        self.log_bytes += size
        self.requests[activity, "CloudWatch"] += size / GB * LOGS_INGEST_GB

    def service(self, name: str) -> tuple[float, float]:
        return (
            sum(v for (_, s), v in self.requests.items() if s == name),
            sum(v for (_, s), v in self.storage.items() if s == name),
        )

    def activity(self, name: str) -> float:
        return sum(v for (a, _), v in [*self.requests.items(), *self.storage.items()] if a == name)

    @property
    def activities(self) -> list[str]:
        return list(dict.fromkeys(a for a, _ in [*self.requests, *self.storage]))

    @property
    def total(self) -> float:
        return sum(self.requests.values()) + sum(self.storage.values())


@dataclass(frozen=True)
class Month:
    workload: Workload
    stack: Stack
    onecopy: Bill
    plain: Bill  # the same service without deduplication
    kms: tuple[float, float]  # (onecopy, without dedup): with a customer key, not in the totals
    item_bytes: dict[str, float]


UPLOADS_NEW = "uploads: new content"
UPLOADS_MATCH = "uploads: another owner's content"
UPLOADS_OWN = "uploads: the owner's own content (409)"
DELETIONS = "deletions at the end of retention"
COLLECTIONS = "collector: contents collected"
COLLECTOR_RUNS = "collector: scheduled runs"
RECONCILE = "reconciliation: daily scans"
MONITORING = "metrics, alarms, dashboard"
STORAGE = "storage held"


def monthly(measured: Measured, workload: Workload = WORKLOAD) -> Month:
    """The workload's month, with deduplication (as measured) and without it."""
    config = stack(workload)
    memory = config.memory_gb
    flows = {f.name: f for f in measured.uploads if isinstance(f, Flow)}
    new, match, own = (
        flows["new, sha256 declared (single PUT)"],
        flows["another owner's content (STORED, no copy)"],
        flows["duplicate, already held (409)"],
    )
    delete_own, delete_match, delete_last = measured.deletions
    sizes = measured.item_bytes
    retained = workload.months(workload.retention_days)
    # A content outlives its last reference by the grace period, and its tombstone by a week.
    content_life = workload.months(workload.retention_days + config.grace_days)
    from domain.lifecycle import TOMBSTONE_RETENTION

    tombstone_life = workload.months(TOMBSTONE_RETENTION.total_seconds() / 86400)

    onecopy = Bill()
    onecopy.add_flow(UPLOADS_NEW, new, workload.new, memory)
    onecopy.add_flow(UPLOADS_MATCH, match, workload.cross_owner, memory)
    onecopy.add_flow(UPLOADS_OWN, own, workload.own_duplicates, memory)
    onecopy.add_flow(DELETIONS, delete_own, workload.own_duplicates, memory)
    onecopy.add_flow(DELETIONS, delete_match, workload.cross_owner, memory)
    onecopy.add_flow(DELETIONS, delete_last, workload.new, memory)
    # Every content stored is collected once its last upload is deleted.
    onecopy.add_flow(COLLECTIONS, measured.collection, workload.new, memory)
    onecopy.add_flow(COLLECTOR_RUNS, measured.idle_run, config.collector_runs, memory)

    uploads_live = workload.uploads * retained  # 409s included: each is an upload record
    items = {  # table -> (items, mean bytes)
        "uploads": (uploads_live, sizes["upload"]),
        "contents": (workload.new * content_life, sizes["content"]),
        "content tombstones": (workload.new * tombstone_life, sizes["content tombstone"]),
        "holdings": ((workload.new + workload.cross_owner) * retained, sizes["holding"]),
    }
    _reconcile(onecopy, items, config)
    _hold(
        onecopy,
        s3_bytes=workload.new * content_life * workload.average_bytes,
        items=items,
        indexed={"uploads"},  # owner-created, projecting ALL; the sparse indexes are omitted
    )
    metrics = set().union(*(f.metric_names for f in (new, match, own, *measured.deletions)))
    metrics |= measured.collection.metric_names | measured.idle_run.metric_names
    _monitor(onecopy, config, metrics, workload)

    plain = Bill()
    # Every upload is a new one. A deletion is the one measured that took a single attempt (the
    # others retry after a holding or content condition, which this service does not have): the
    # upload's read, its one write, the staging DeleteObject; plus the object's (free) DELETE.
    plain_new, plain_delete = new.without_dedup, delete_own.without_dedup
    assert plain_new is not None and plain_delete is not None
    plain.add_flow(UPLOADS_NEW, plain_new, workload.uploads, memory)
    deleting = plain_delete.calls.get("api", Counter()) + Counter({("s3", "DeleteObject"): 1})
    plain.add_flow(
        DELETIONS, replace(plain_delete, calls={"api": deleting}), workload.uploads, memory
    )
    _hold(
        plain,
        s3_bytes=workload.uploads * retained * workload.average_bytes,
        items={"uploads": (uploads_live, sizes["upload"])},
        indexed={"uploads"},
    )
    plain_metrics = set().union(*(f.metric_names for f in (new, delete_last)))
    _monitor(plain, config, plain_metrics, workload)

    tombstones = workload.duplicate_share * workload.uploads
    growth = tombstones * (sizes["upload tombstone"] + DDB_ITEM_OVERHEAD)
    onecopy.notes.append(
        f"deleted duplicates leave an upload tombstone that is never removed: +{growth / GB:.2f}"
        f" GB (${growth / GB * (DDB_STORAGE_GB_MONTH + DDB_PITR_GB_MONTH):.2f}/month) more"
        " every month, not in the table"
    )
    kms = (_kms(4, workload), _kms(1, workload))  # the tables each service has
    return Month(workload, config, onecopy, plain, kms, sizes)


def _hold(
    bill: Bill,
    *,
    s3_bytes: float,
    items: dict[str, tuple[float, float]],
    indexed: set[str],
) -> None:
    """Storage a month: the S3 bytes, each table's items (+ an index projecting all of them)."""
    tables = {name: n * (size + DDB_ITEM_OVERHEAD) for name, (n, size) in items.items()}
    indexes = sum(tables[name] for name in indexed)
    bill.held = {"S3": s3_bytes, "DynamoDB tables": sum(tables.values()), "indexes": indexes}
    bill.storage[STORAGE, "S3"] += s3_bytes / GB * S3_STORAGE_GB_MONTH
    bill.storage[STORAGE, "DynamoDB"] += (
        sum(tables.values()) + indexes
    ) / GB * DDB_STORAGE_GB_MONTH + sum(tables.values()) / GB * DDB_PITR_GB_MONTH


def _reconcile(bill: Bill, items: dict[str, tuple[float, float]], config: Stack) -> None:
    """Each run scans the uploads, contents and holdings tables with consistent reads."""
    scanned = sum(n * size for n, size in items.values())
    seconds = scanned / (RECONCILE_SCAN_MB_S * 1e6)
    bill.requests[RECONCILE, "DynamoDB"] += config.reconcile_runs * scanned / 4096 * DDB_RRU
    bill.requests[RECONCILE, "Lambda"] += config.reconcile_runs * (
        LAMBDA_REQUEST + seconds * config.memory_gb["reconcile"] * LAMBDA_GB_S
    )
    if seconds > 900:
        bill.notes.append(
            f"a reconciliation run would scan {scanned / GB:.1f} GB of items in one invocation:"
            f" ~{seconds / 60:.0f} min at {RECONCILE_SCAN_MB_S:g} MB/s, where the 15-minute"
            f" timeout needs {scanned / 900 / 1e6:.0f} MB/s, and its in-memory counts of"
            f" {items['contents'][0] / 1e6:.0f}M contents and"
            f" {items['holdings'][0] / 1e6:.0f}M holdings would not fit in"
            f" {config.memory_gb['reconcile'] * 1024:g} MB: it does not finish at this scale"
            " (priced as if it did)"
        )


def _monitor(bill: Bill, config: Stack, metrics: set[str], workload: Workload) -> None:
    bill.metric_names = sorted(metrics)
    bill.requests[MONITORING, "CloudWatch"] += (
        len(metrics) * CW_METRIC_MONTH
        + config.alarms * CW_ALARM_MONTH
        + config.dashboards * CW_DASHBOARD_MONTH
    )
    # What the month's logs take while they are kept (LogRetentionDays), uncompressed.
    kept = bill.log_bytes * workload.months(config.log_retention_days)
    bill.storage[STORAGE, "CloudWatch"] += kept / GB * LOGS_STORED_GB_MONTH


def _kms(tables: int, workload: Workload) -> float:
    refreshes = workload.days_per_month * 86400 / KMS_REFRESH_SECONDS
    callers = KMS_S3_REQUESTERS + tables * KMS_TABLE_CALLERS + KMS_SQS_CALLERS
    return KMS_KEY_MONTH + callers * refreshes * KMS_REQUEST


# --- the report ----------------------------------------------------------------------------------


def _calls_text(calls: Counter[tuple[str, str]]) -> str:
    if not calls:
        return "-"
    # In the order the function first made them.
    return ", ".join(f"{op}" + (f" x{n:g}" if n != 1 else "") for (_, op), n in calls.items())


def report(measured: Measured, size: int, workload: Workload = WORKLOAD) -> str:
    memory = function_memory_gb()
    call_rows: list[Sequence[object]] = []
    cost_rows: list[Sequence[object]] = []
    for flow in measured.flows:
        if isinstance(flow, Placeholder):
            call_rows.append(
                (flow.name, "-", f"NOT YET AVAILABLE ({flow.note})", "-", "-", "-", "-")
            )
            cost_rows.append((f"{flow.name}: NOT YET AVAILABLE", "-", "-", "-", "-", "-", "-"))
            continue
        functions = ["api", "worker"] if flow in measured.uploads else list(flow.calls)
        for n, function in enumerate(functions):
            calls = flow.calls.get(function, Counter())
            call_rows.append(
                (
                    flow.name if n == 0 else "",
                    function,
                    _calls_text(calls),
                    f"{sum(calls.values()):g}",
                    human_size(flow.downloaded.get(function, 0)),
                    f"{flow.rru.get(function, 0):g}",
                    f"{flow.wru.get(function, 0):g}",
                )
            )
        cost = cost_per_upload(flow, memory)
        cost_rows.append(
            (
                flow.name,
                *(f"{v * 1e6:.2f}" for v in (cost.s3, cost.dynamodb, cost.sqs, cost.lambda_)),
                f"{cost.apigw * 1e6:.2f}",
                f"{cost.total * 1e6:.2f}",
            )
        )
    statuses = "; ".join(
        f"{f.name}: {'/'.join(f.statuses)}" for f in measured.flows if isinstance(f, Flow)
    )
    requests = table(
        f"AWS requests per upload, deletion and collection ({human_size(size)} files; counted on"
        " the functions' clients)",
        ["flow", "function", "requests", "n", "read", "RRU", "WRU"],
        call_rows,
    )
    costs = table(
        "Cost per million of each, USD (us-east-1 public prices; storage and transfer excluded)",
        ["flow", "S3", "DynamoDB", "SQS", "Lambda", "API GW", "total"],
        cost_rows,
    )
    api_mb, worker_mb = memory["api"] * 1024, memory["worker"] * 1024
    paragraphs = [
        f"Outcomes: {statuses}",
        "Prices: S3 PUT/COPY/POST/LIST $0.005/1k, GET/HEAD/other $0.0004/1k, DELETE free;"
        " DynamoDB on demand $0.625/M WRU, $0.125/M RRU; SQS $0.40/M requests; Lambda arm64"
        " $0.20/M requests + $0.0000133334/GB-s; API Gateway HTTP API $1.00/M requests.",
        "Assumptions:",
        f"- the client polls {POLLS_PER_UPLOAD}x: {1 + POLLS_PER_UPLOAD} API requests per upload"
        " (a 409 needs no poll); its presigned PUT is one S3 PUT, billed to the bucket owner;",
        f"- per S3 notification SQS bills SendMessage, and with {WORKER_BATCH} message(s) per"
        " worker invocation one ReceiveMessage + one DeleteMessage (empty polls are a fixed"
        " monthly cost, not per upload);",
        "- DynamoDB: strongly consistent reads 1 RRU (items < 4 KB), index queries 0.5; writes"
        f" 1 WRU per KB (largest item written: {measured.max_item_bytes} B), 2x in a"
        " transaction, +1 WRU per index key attribute a Put carries (updates that move an item"
        " into or out of an index are not counted);",
        f"- Lambda at {api_mb:g} MB (api) / {worker_mb:g} MB (worker), billed"
        f" {INVOCATION_OVERHEAD_MS:g} ms + a typical latency per request (DynamoDB 5-20 ms,"
        f" S3 15-40 ms) + bytes read at {STREAM_MB_S:g} MB/s, rounded up to 1 ms; the"
        " collector's work for one content is part of a longer run (no overhead, no rounding).",
    ]
    return (
        requests
        + "\n"
        + costs
        + "\n"
        + _notes(paragraphs)
        + "\n"
        + report_month(monthly(measured, workload))
    )


def _notes(paragraphs: Sequence[str]) -> str:
    return "\n" + "\n".join(textwrap.fill(p, width=100, subsequent_indent="  ") for p in paragraphs)


def _usd(value: float) -> str:
    return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"


def report_month(month: Month) -> str:
    w, config, onecopy, plain = month.workload, month.stack, month.onecopy, month.plain
    retained = w.months(w.retention_days)
    title = (
        f"Monthly cost, USD: {w.uploads:,} uploads/month of {human_size(w.average_bytes)},"
        f" {w.duplicate_share:.0%} duplicates, {w.retention_days}-day retention (model, not a bill)"
    )
    rows: list[Sequence[object]] = []
    for service in SERVICES:
        with_dedup, without = onecopy.service(service), plain.service(service)
        rows.append(
            (
                service,
                *(_usd(v) for v in (*with_dedup, sum(with_dedup), *without, sum(without))),
                _usd(sum(without) - sum(with_dedup)),
            )
        )
    totals = [
        [sum(bill.service(s)[k] for s in SERVICES) for k in (0, 1)] for bill in (onecopy, plain)
    ]
    rows.append(
        (
            "total",
            *(_usd(v) for v in (*totals[0], onecopy.total, *totals[1], plain.total)),
            _usd(plain.total - onecopy.total),
        )
    )
    kms_with, kms_without = month.kms
    rows.append(
        (
            "+ KMS (customer key, optional)",
            _usd(kms_with),
            "-",
            _usd(kms_with),
            _usd(kms_without),
            "-",
            _usd(kms_without),
            _usd(kms_without - kms_with),
        )
    )
    by_service = table(
        title,
        [
            "service",
            "onecopy requests",
            "storage",
            "total",
            "no dedup requests",
            "storage",
            "total",
            "saved",
        ],
        rows,
    )
    counts = {
        UPLOADS_NEW: w.new,
        UPLOADS_MATCH: w.cross_owner,
        UPLOADS_OWN: w.own_duplicates,
        DELETIONS: w.uploads,
        COLLECTIONS: w.new,
        COLLECTOR_RUNS: config.collector_runs,
        RECONCILE: config.reconcile_runs,
    }
    activity_rows: list[Sequence[object]] = []
    for activity in onecopy.activities:
        count = counts.get(activity)
        plain_count = w.uploads if activity == UPLOADS_NEW else count
        in_plain = activity in plain.activities
        activity_rows.append(
            (
                activity,
                f"{count:,.0f}" if count is not None else "",
                _usd(onecopy.activity(activity)),
                f"{plain_count:,.0f}" if in_plain and plain_count is not None else "",
                _usd(plain.activity(activity)) if in_plain else "-",
            )
        )
    activity_rows.append(("total", "", _usd(onecopy.total), "", _usd(plain.total)))
    by_activity = table(
        "The same month by activity, USD (each activity's requests, Lambda time and log lines)",
        ["activity", "onecopy: count", "USD", "no dedup: count", "USD"],
        activity_rows,
    )
    storage_rows: list[Sequence[object]] = []
    for what, key, price in (
        ("S3 Standard", "S3", S3_STORAGE_GB_MONTH),
        ("DynamoDB tables (+ PITR)", "DynamoDB tables", DDB_STORAGE_GB_MONTH + DDB_PITR_GB_MONTH),
        ("DynamoDB index owner-created", "indexes", DDB_STORAGE_GB_MONTH),
    ):
        a, b = onecopy.held[key] / GB, plain.held[key] / GB
        storage_rows.append(
            (what, f"{a:,.1f}", _usd(a * price), f"{b:,.1f}", _usd(b * price), f"{a / b:.2f}x")
        )
    storage = table(
        "Storage alone, held in the steady state (GB = 2^30 bytes)",
        ["held", "onecopy GB", "USD/month", "no dedup GB", "USD/month", "onecopy/no dedup"],
        storage_rows,
    )
    sizes = ", ".join(f"{k} {v:.0f} B" for k, v in month.item_bytes.items())
    # Only the S3 bytes held grow with the file size: the rest of the difference is fixed.
    s3_saved = plain.service("S3")[1] - onecopy.service("S3")[1]
    break_even = w.average_bytes * (s3_saved - (plain.total - onecopy.total)) / s3_saved
    per_upload = onecopy.log_bytes / w.uploads
    paragraphs = [
        f"Break-even: with these shares, deduplication costs less than storing every upload"
        f" once the average file is over {break_even / MIB:.2f} MiB (only the S3 bytes held grow"
        " with the file size).",
        f"Workload: {w.uploads:,} uploads a month, {human_size(w.average_bytes)} each on average,"
        f" every one declaring its SHA-256 and sent in one PUT; {w.duplicate_share:.0%} are"
        f" duplicates, {w.cross_owner_share:.0%} of them another owner's content (STORED for"
        " them, no copy) and the rest the owner's own (409, no PUT). Steady state: every upload"
        f" is deleted {w.retention_days} days after it was made (DELETE /uploads/{{id}}), so"
        f" {retained:g} months of uploads are held; a content is held for those"
        f" {w.retention_days} days plus the collector's grace of {config.grace_days:g} d; its"
        " duplicates are assumed to arrive within its retention window, so they do not extend"
        f" it. A month is {w.days_per_month} days.",
        "Without deduplication: the same service storing every upload's bytes, with the same"
        " S3 requests (PUT, HEAD, COPY, DELETE) and the requests on the uploads table only: no"
        " contents, holdings or counters, no claim, no 409 pre-check, a transaction's upload"
        " write as a single write, a deletion that removes the object itself; no collector, no"
        " reconciliation. 'saved' is no dedup minus onecopy: negative where deduplication"
        " costs more.",
        f"Storage: S3 Standard ${S3_STORAGE_GB_MONTH:.3f}/GB-month; DynamoDB"
        f" ${DDB_STORAGE_GB_MONTH:.2f}/GB-month for tables and the owner-created index (projects"
        f" all), plus point-in-time recovery ${DDB_PITR_GB_MONTH:.2f}/GB-month on the tables; each"
        f" item its measured size + {DDB_ITEM_OVERHEAD} B ({sizes}); the sparse indexes"
        " (owner-pending, collectable) hold under a day of items: omitted.",
        f"Logs: {per_upload:,.0f} B ingested per upload (the functions' Powertools lines at INFO"
        " and EMF metrics, captured from this run and corrected to deployed context names;"
        f" Lambda's START/END/REPORT, {PLATFORM_LOG_BYTES} B per invocation; the API's access"
        f" line, {access_log_bytes()} B per request), ${LOGS_INGEST_GB:.2f}/GB, kept"
        f" {config.log_retention_days:g} days at ${LOGS_STORED_GB_MONTH:.2f}/GB-month"
        " (uncompressed: an upper bound). Metrics, alarms, dashboard: the"
        f" {len(onecopy.metric_names)} EMF"
        f" metrics the run published ({', '.join(onecopy.metric_names)}; without deduplication"
        f" {len(plain.metric_names)}) at ${CW_METRIC_MONTH:.2f} each, {config.alarms} alarms at"
        f" ${CW_ALARM_MONTH:.2f}, {config.dashboards} dashboard at ${CW_DASHBOARD_MONTH:.2f}.",
        f"Collector: {config.collector_runs:,.0f} scheduled runs a month (CollectorSchedule), each"
        " priced as the idle run measured above; every stored content is collected once, priced"
        f" as the per-content work measured above. Reconciliation: {config.reconcile_runs:g} runs"
        " a month, each a consistent scan of the uploads, contents and holdings tables"
        f" (1 RRU per 4 KB of items) in a {config.memory_gb['reconcile'] * 1024:g} MB function"
        f" at an assumed {RECONCILE_SCAN_MB_S:g} MB/s.",
        f"KMS, only with a customer key (KmsKeyArn): ${KMS_KEY_MONTH:.2f}/month for the key and"
        f" ${KMS_REQUEST * 10_000:.2f}/10k requests; with S3 Bucket Keys, DynamoDB's table keys"
        " and SQS's data key reuse, requests do not grow with uploads: each caller asks again"
        f" every {KMS_REFRESH_SECONDS // 60} minutes while active ({KMS_S3_REQUESTERS} S3"
        f" requesters, {KMS_TABLE_CALLERS} callers per table, {KMS_SQS_CALLERS} on the queue)."
        " Not in the totals.",
        "Excluded: data transfer (uploads in are free; downloads are not in the workload),"
        " Cognito (priced per monthly active user, the same either way), Secrets Manager"
        " ($0.40 a month), SQS's empty receives (< $0.30), Lambda INIT time (cold starts are rare"
        " at this steady rate), free tiers.",
        *(f"Note: {note}." for note in (*onecopy.notes, *plain.notes)),
    ]
    return by_service + "\n" + by_activity + "\n" + storage + "\n" + _notes(paragraphs)


# --- what a status request costs: waiting (GET ?wait=20) against polling -----------------------

# How long after the PUT the upload is terminal, on AWS: S3's event, SQS, the worker (seconds).
STATUS_AFTER_S = (0.5, 1.0, 2.0, 5.0, 20.0)
# The clients' polling before ?wait: 0.2 s doubling to 2 s (the CLI's; the page's was slower).
OLD_POLL_FIRST_S, OLD_POLL_MAX_S = 0.2, 2.0


def wait_reads(seconds: float) -> int:
    """The ledger reads of a GET that waits ``seconds`` (service.uploads' schedule)."""
    use_code_root()
    from service import uploads

    reads, slept, delays = 1, 0.0, uploads.wait_read_delays()
    while slept < seconds - 1e-9:
        slept += min(next(delays), seconds - slept)
        reads += 1
    return reads


def old_polls(after_s: float) -> tuple[int, float]:
    """GETs a polling client sent to see an outcome ready ``after_s`` after the PUT, and how
    late it saw it."""
    polls, at, delay = 0, 0.0, OLD_POLL_FIRST_S
    while True:
        at += delay
        polls += 1
        if at >= after_s:
            return polls, at - after_s
        delay = min(delay * 2, OLD_POLL_MAX_S)


def _status_cost(requests: int, reads: int, billed_ms: float, api_gb: float) -> float:
    gb_s = math.ceil(billed_ms) / 1000 * api_gb
    return requests * (APIGW_REQUEST + LAMBDA_REQUEST) + gb_s * LAMBDA_GB_S + reads * DDB_RRU


def report_status_wait(memory_gb: dict[str, float]) -> str:
    """Per million uploads: one waiting GET against a polling client's GETs."""
    api_gb, read_ms = memory_gb["api"], LATENCY_MS[("dynamodb", "GetItem")]
    rows = []
    for after in STATUS_AFTER_S:
        reads = wait_reads(after)
        waited = _status_cost(1, reads, INVOCATION_OVERHEAD_MS + after * 1000, api_gb)
        polls, late = old_polls(after)
        per_poll_ms = INVOCATION_OVERHEAD_MS + read_ms
        polled = polls * _status_cost(1, 1, per_poll_ms, api_gb)
        rows.append(
            (
                f"{after:g} s",
                reads,
                f"{waited * 1e6:.2f}",
                polls,
                f"{polled * 1e6:.2f}",
                f"{late * 1000:,.0f}",
            )
        )
    return table(
        "Learning the outcome, per million uploads, USD: one GET /uploads/{id}?wait=20, billed for"
        f" the time it waits ({api_gb * 1024:g} MB), against polling 0.2 s doubling to 2 s",
        ["done after PUT", "wait: reads", "wait USD", "polling: GETs", "poll USD", "poll late ms"],
        rows,
    )


def main() -> None:
    measured = run()
    print(report(measured, MIB))
    print()
    print(report_status_wait(function_memory_gb()))
