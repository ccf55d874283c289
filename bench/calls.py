"""AWS requests per upload, and what they cost per million uploads.

The real handlers run in-process against moto (``tests.pipeline.Pipeline`` drives them the way
AWS would), with a counter on the functions' own boto3 clients (``adapters.clients``): every
request they send is counted by service and operation, with the bytes GetObject returns.
DynamoDB capacity is computed from each request (item sizes, transactions, the sparse index).

The requests AWS makes for us (S3's notification into SQS, the event source mapping's
ReceiveMessage/DeleteMessage) and the client's own PUT are not on those clients: they are added
from the flow, and listed with the prices under the tables.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import textwrap
import threading
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
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
    ("dynamodb", "BatchGetItem"): 8.0,
    ("dynamodb", "TransactWriteItems"): 20.0,
    ("s3", "HeadObject"): 15.0,
    ("s3", "GetObject"): 20.0,  # to the first byte; the body streams at STREAM_MB_S
    ("s3", "CopyObject"): 40.0,
    ("s3", "DeleteObject"): 15.0,
}
DEFAULT_LATENCY_MS = 20.0
STREAM_MB_S = 75.0  # one GetObject into a 512 MB Lambda (~0.3 vCPU, which also hashes)


@dataclass
class CallCounter:
    """Requests the functions send, by (function, service, operation)."""

    calls: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    downloaded: Counter[str] = field(default_factory=Counter)
    rru: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    wru: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    max_item_bytes: int = 0
    function: str = "client"
    _lock: threading.Lock = field(default_factory=threading.Lock)

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
            with self._lock:
                self.calls[(self.function, service, operation)] += 1

        def on_get(parsed: dict[str, Any], **_: Any) -> None:
            with self._lock:
                self.downloaded[self.function] += int(parsed.get("ContentLength") or 0)

        def on_params(params: dict[str, Any], model: Any, **_: Any) -> None:
            rru, wru, biggest = capacity(model.name, params, index_keys)
            with self._lock:
                self.rru[self.function] += rru
                self.wru[self.function] += wru
                self.max_item_bytes = max(self.max_item_bytes, biggest)

        events.register(f"before-send.{client.meta.service_model.service_id.hyphenize()}", on_send)
        if service == "s3":
            events.register("after-call.s3.GetObject", on_get)
        if service == "dynamodb":
            events.register("before-parameter-build.dynamodb", on_params)

    def reset(self) -> None:
        self.calls.clear()
        self.downloaded.clear()
        self.rru.clear()
        self.wru.clear()


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


# --- the flows -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    """What one kind of upload does: the AWS calls counted, and the requests around them."""

    name: str
    api_invocations: int  # POST /uploads, then the polls
    client_puts: int  # the presigned PUT into staging (billed to the bucket's owner)
    worker_messages: int  # S3 notifications the worker handles
    calls: dict[str, Counter[tuple[str, str]]]  # function -> (service, operation) -> per upload
    downloaded: dict[str, float]
    rru: dict[str, float]
    wru: dict[str, float]
    statuses: tuple[str, ...]


@dataclass(frozen=True)
class Placeholder:
    name: str
    note: str


class _Driver:
    def __init__(self, counter: CallCounter, resources: Any) -> None:
        import boto3
        from botocore.config import Config

        self.counter = counter
        self.resources = resources
        # The client's PUT is not the functions' request: an uncounted client, and no SDK
        # checksum unless the flow declares one (as the presigned PUT would carry it).
        self.s3 = boto3.client("s3", config=Config(request_checksum_calculation="when_required"))

    def pipeline(self, owner: str) -> Any:
        from tests.pipeline import Pipeline

        return Pipeline(self.resources, owner=owner)

    def upload(self, owner: str, data: bytes, *, declare: bool) -> str:
        pipeline = self.pipeline(owner)
        with self.counter.as_function("api"):
            created = pipeline.create(data, declare=declare)
        if created.status == 409:
            return "409 " + str(created.body.get("status", "DUPLICATE"))
        assert created.status == 201, created
        upload_id = created.body["upload_id"]
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
                {"filename": "big.bin", "size": len(data), "multipart": True},
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


def _measure(
    counter: CallCounter,
    name: str,
    repeats: int,
    one: Callable[[int], str],
    *,
    api_invocations: int,
    client_puts: int,
    worker_messages: int,
) -> Flow:
    counter.reset()
    statuses = tuple(one(n) for n in range(repeats))
    per: dict[str, Counter[tuple[str, str]]] = {}
    for (function, service, operation), n in counter.calls.items():
        per.setdefault(function, Counter())[(service, operation)] += n
    return Flow(
        name=name,
        api_invocations=api_invocations,
        client_puts=client_puts,
        worker_messages=worker_messages,
        calls={f: Counter({k: v / repeats for k, v in c.items()}) for f, c in per.items()},
        downloaded={f: n / repeats for f, n in counter.downloaded.items()},
        rru={f: n / repeats for f, n in counter.rru.items()},
        wru={f: n / repeats for f, n in counter.wru.items()},
        statuses=tuple(sorted(set(statuses))),
    )


MULTIPART_PART = 16 * MIB  # the API's default MULTIPART_PART_SIZE_BYTES


def run(size: int = MIB, repeats: int = 3) -> tuple[list[Flow | Placeholder], int]:
    """Count each kind of upload ``repeats`` times over ``size``-byte files (averaged)."""
    use_code_root()
    from moto import mock_aws

    # Metrics off: the handlers' EMF lines would only bury the tables (it changes no AWS call).
    env: dict[str, str | None] = {
        **FAKE_AWS,
        "AWS_ENDPOINT_URL": None,
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    with patched_env(env), mock_aws(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "No application metrics to publish")
        from adapters import clients
        from onecopy_local.resources import create_resources, resource

        resources = create_resources()
        with patched_env(dict(resources.function_env())):
            _fresh_handlers(clients)
            try:
                counter = CallCounter()
                index_keys = {
                    resources.uploads_table: _index_keys(resource("UploadsTable")),
                    resources.contents_table: _index_keys(resource("ContentsTable")),
                    resources.stats_table: _index_keys(resource("StatsTable")),
                    resources.holdings_table: _index_keys(resource("HoldingsTable")),
                }
                counter.attach(clients.s3(), index_keys)
                counter.attach(clients.dynamodb(), index_keys)
                driver = _Driver(counter, resources)
                driver.pipeline("nobody").drain()  # the s3:TestEvent from creating the bucket
                flows = _flows(counter, driver, size, repeats)
                return flows, counter.max_item_bytes
            finally:
                _fresh_handlers(clients)


def _flows(
    counter: CallCounter, driver: _Driver, size: int, repeats: int
) -> list[Flow | Placeholder]:
    def new_bytes() -> bytes:
        return os.urandom(size)

    held: list[bytes] = [new_bytes() for _ in range(repeats)]
    api_with_poll = 1 + POLLS_PER_UPLOAD
    flows: list[Flow | Placeholder] = [
        _measure(
            counter,
            "new, sha256 declared (single PUT)",
            repeats,
            lambda n: driver.upload("alice", held[n], declare=True),
            api_invocations=api_with_poll,
            client_puts=1,
            worker_messages=1,
        ),
        _measure(
            counter,
            "another owner's content (STORED, no copy)",
            repeats,
            lambda n: driver.upload("bob", held[n], declare=True),
            api_invocations=api_with_poll,
            client_puts=1,
            worker_messages=1,
        ),
        _measure(
            counter,
            "duplicate, already held (409)",
            repeats,
            lambda n: driver.upload("alice", held[n], declare=True),
            api_invocations=1,
            client_puts=0,
            worker_messages=0,
        ),
        _measure(
            counter,
            "new, no sha256 (worker streams)",
            repeats,
            lambda n: driver.upload("carol", new_bytes(), declare=False),
            api_invocations=api_with_poll,
            client_puts=1,
            worker_messages=1,
        ),
    ]
    # Parts of MULTIPART_PART_SIZE (16 MiB): a file just over one part goes in two.
    big = [new_bytes() + os.urandom(MULTIPART_PART) for _ in range(repeats)]
    part_count = -(-len(big[0]) // MULTIPART_PART)
    flows.append(
        _measure(
            counter,
            f"new, multipart ({part_count} parts, worker streams)",
            repeats,
            lambda n: driver.upload_multipart("dave", big[n])[0],
            # create, part URLs, complete, then the polls
            api_invocations=3 + POLLS_PER_UPLOAD,
            client_puts=part_count,
            # S3 sends one ObjectCreated:CompleteMultipartUpload; moto sends a second (Put) too,
            # whose extra GetItem and DeleteObject are counted above: a slight overestimate.
            worker_messages=1,
        )
    )
    return flows


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
    invocations = flow.api_invocations + flow.worker_messages / WORKER_BATCH
    gb_s = 0.0
    for function, calls in flow.calls.items():
        runs = flow.api_invocations if function == "api" else flow.worker_messages
        if runs:
            # Billed per invocation in 1 ms steps; spread the calls evenly over the invocations.
            per_run = _lambda_ms(
                Counter({k: v / runs for k, v in calls.items()}),
                flow.downloaded.get(function, 0) / runs,
            )
            gb_s += runs * math.ceil(per_run) / 1000 * memory_gb[function]
    lam = invocations * LAMBDA_REQUEST + gb_s * LAMBDA_GB_S
    return Cost(s3, dynamodb, sqs, lam, flow.api_invocations * APIGW_REQUEST)


def function_memory_gb() -> dict[str, float]:
    use_code_root()
    from onecopy_local.resources import resource, template

    default = template().get("Globals", {}).get("Function", {}).get("MemorySize", 128)
    return {
        "api": int(resource("ApiFunction").get("MemorySize", default)) / 1024,
        "worker": int(resource("WorkerFunction").get("MemorySize", default)) / 1024,
    }


def _calls_text(calls: Counter[tuple[str, str]]) -> str:
    if not calls:
        return "-"
    # In the order the function first made them.
    return ", ".join(f"{op}" + (f" x{n:g}" if n != 1 else "") for (_, op), n in calls.items())


def report(flows: Sequence[Flow | Placeholder], max_item_bytes: int, size: int) -> str:
    memory = function_memory_gb()
    call_rows: list[Sequence[object]] = []
    cost_rows: list[Sequence[object]] = []
    for flow in flows:
        if isinstance(flow, Placeholder):
            call_rows.append(
                (flow.name, "-", f"NOT YET AVAILABLE ({flow.note})", "-", "-", "-", "-")
            )
            cost_rows.append((f"{flow.name}: NOT YET AVAILABLE", "-", "-", "-", "-", "-", "-"))
            continue
        for function in ("api", "worker"):
            calls = flow.calls.get(function, Counter())
            call_rows.append(
                (
                    flow.name if function == "api" else "",
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
    statuses = "; ".join(f"{f.name}: {'/'.join(f.statuses)}" for f in flows if isinstance(f, Flow))
    requests = table(
        f"AWS requests per upload ({human_size(size)} files; counted on the functions' clients)",
        ["upload", "function", "requests", "n", "read", "RRU", "WRU"],
        call_rows,
    )
    costs = table(
        "Cost per million uploads, USD (us-east-1 public prices; storage and transfer excluded)",
        ["upload", "S3", "DynamoDB", "SQS", "Lambda", "API GW", "total"],
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
        f" 1 WRU per KB (largest item written: {max_item_bytes} B), 2x in a transaction,"
        " +1 WRU per write into the owner-pending index;",
        f"- Lambda at {api_mb:g} MB (api) / {worker_mb:g} MB (worker), billed"
        f" {INVOCATION_OVERHEAD_MS:g} ms + a typical latency per request (DynamoDB 5-20 ms,"
        f" S3 15-40 ms) + bytes read at {STREAM_MB_S:g} MB/s, rounded up to 1 ms.",
    ]
    notes = "\n" + "\n".join(
        textwrap.fill(p, width=100, subsequent_indent="  ") for p in paragraphs
    )
    return requests + "\n" + costs + "\n" + notes


def main() -> None:
    flows, biggest = run()
    print(report(flows, biggest, MIB))
