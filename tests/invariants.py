"""onecopy's system-wide invariants, checked against the real tables and bucket.

This is the oracle every integration, crash and state-machine test ends with. It reads only
boto3 and restates the rules from first principles (key layout, counter arithmetic) instead of
calling the code under test, so a bug in the domain cannot hide itself here.

- `check_invariants`: raise AssertionError listing every violated invariant.
- `read_state`: one consistent-read snapshot of tables + bucket, comparable with `==` (for "this
  request changed nothing" assertions).
- `Expected`: a reference model of what settled uploads must have produced, whatever the order
  and concurrency of their processing.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeGuard

from boto3.dynamodb.types import TypeDeserializer

STAGING = "staging/"
CAS = "cas/sha256/"
COUNTERS = ("files", "uploads", "duplicates", "bytes_saved", "bytes_stored")
HELD = frozenset({"STORED", "DUPLICATE"})
TERMINAL = frozenset({"STORED", "DUPLICATE", "REJECTED"})
REASONS = frozenset({"size_mismatch", "checksum_mismatch", "aborted"})
_HEX = frozenset("0123456789abcdef")
_de = TypeDeserializer()


def _is_sha256(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    values = {k: _de.deserialize(v) for k, v in item.items()}
    # Every number onecopy stores is an integer: ints compare and print plainly.
    return {k: int(v) if isinstance(v, Decimal) else v for k, v in values.items()}


def _scan(ddb: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        items.extend(_plain(i) for i in page.get("Items", []))
    return items


@dataclass(frozen=True)
class State:
    """Everything onecopy persists, read in one go."""

    uploads: dict[str, dict[str, Any]]
    contents: dict[str, dict[str, Any]]
    stats: dict[int, dict[str, int]]  # shard -> counters
    objects: dict[str, str]  # key -> ETag

    @property
    def counters(self) -> dict[str, int]:
        return {c: sum(int(s.get(c, 0)) for s in self.stats.values()) for c in COUNTERS}

    def status(self, upload_id: str) -> str | None:
        item = self.uploads.get(upload_id)
        return item["status"] if item else None

    def keys(self, prefix: str) -> set[str]:
        return {k for k in self.objects if k.startswith(prefix)}


def read_state(resources: Any, s3_client: Any, ddb_client: Any) -> State:
    objects: dict[str, str] = {}
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=resources.bucket):
        objects.update({o["Key"]: o["ETag"] for o in page.get("Contents", [])})
    stats: dict[int, dict[str, int]] = {}
    for item in _scan(ddb_client, resources.stats_table):
        shard = int(item.pop("shard"))
        stats[shard] = {k: int(v) for k, v in item.items()}
    return State(
        uploads={i["upload_id"]: i for i in _scan(ddb_client, resources.uploads_table)},
        contents={i["sha256"]: i for i in _scan(ddb_client, resources.contents_table)},
        stats=stats,
        objects=objects,
    )


def check_invariants(
    resources: Any,
    s3_client: Any,
    ddb_client: Any,
    *,
    settled: Iterable[str] = (),
    allow_orphans: bool = False,
) -> None:
    """Assert every invariant of the stored state; the message lists all violations found.

    settled: upload ids whose bytes reached staging and whose processing has finished (every
        delivery acknowledged); each must be in a terminal state.
    allow_orphans: accept objects under cas/ without a content record, which a crash between the
        copy and the transaction legitimately leaves until the message is redelivered.
    """
    state = read_state(resources, s3_client, ddb_client)
    problems: list[str] = []
    problems += _check_objects(state, s3_client, resources.bucket, allow_orphans)
    problems += _check_uploads(state, set(settled))
    problems += _check_contents(state)
    problems += _check_counters(state, resources.stats_shards)
    if problems:
        raise AssertionError(
            f"{len(problems)} invariant(s) violated:\n  " + "\n  ".join(sorted(problems))
        )


def _check_objects(state: State, s3: Any, bucket: str, allow_orphans: bool) -> list[str]:
    problems = []
    for key in sorted(state.keys("cas/")):
        sha = key[len(CAS) :] if key.startswith(CAS) else ""
        if not _is_sha256(sha):
            problems.append(f"[1] {key}: not a content key (cas/sha256/<64 lowercase hex>)")
            continue
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        if hashlib.sha256(data).hexdigest() != sha:
            problems.append(f"[1] {key}: bytes hash to {hashlib.sha256(data).hexdigest()}")
        content = state.contents.get(sha)
        if content is None:
            if not allow_orphans:
                problems.append(f"[1] {key}: orphan object, no content record")
        elif len(data) != content["size"]:
            problems.append(f"[1] {key}: {len(data)} bytes, record says {content['size']}")
    for sha in sorted(state.contents):
        if f"{CAS}{sha}" not in state.objects:
            problems.append(f"[2] content {sha}: no object at {CAS}{sha}")
    return problems


def _check_uploads(state: State, settled: set[str]) -> list[str]:
    problems = []
    for upload_id in sorted(settled):
        status = state.status(upload_id)
        if status not in TERMINAL:
            problems.append(f"[3] upload {upload_id}: settled but {status or 'missing'}")
    for upload_id, u in sorted(state.uploads.items()):
        status = u.get("status")
        where = f"upload {upload_id} ({status})"
        if status not in TERMINAL | {"PENDING"}:
            problems.append(f"[3] {where}: unknown status")
            continue
        if status == "PENDING":
            extra = sorted({"sha256", "completed_at", "reason", "owner_sha256"} & u.keys())
            if extra:
                problems.append(f"[3] {where}: pending upload carries {extra}")
            continue
        if "completed_at" not in u:
            problems.append(f"[3] {where}: no completed_at")
        if f"{STAGING}{upload_id}" in state.objects:
            problems.append(f"[5] {where}: staging object still present")
        if status == "REJECTED":
            if u.get("reason") not in REASONS:
                problems.append(f"[3] {where}: reason {u.get('reason')!r}")
            if "owner_sha256" in u:
                problems.append(f"[3] {where}: in the owner index")
            continue
        sha = u.get("sha256")
        if "reason" in u:
            problems.append(f"[3] {where}: has a reason")
        if not _is_sha256(sha):
            problems.append(f"[6] {where}: sha256 {sha!r}")
            continue
        if u.get("declared_sha256") not in (None, sha):
            problems.append(f"[6] {where}: declared {u['declared_sha256']}, held {sha}")
        if u.get("owner_sha256") != f"{u.get('owner')}#{sha}":
            problems.append(f"[6] {where}: owner index key {u.get('owner_sha256')!r}")
        content = state.contents.get(sha)
        if content is None:
            problems.append(f"[6] {where}: no content record for {sha}")
        elif u.get("size") != content["size"]:
            problems.append(f"[6] {where}: size {u.get('size')}, content {content['size']}")
    return problems


def _check_contents(state: State) -> list[str]:
    problems = []
    held: dict[str, Counter[str]] = defaultdict(Counter)
    stored_by: dict[str, list[str]] = defaultdict(list)
    for upload_id, u in state.uploads.items():
        if u.get("status") in HELD and u.get("sha256"):
            held[u["sha256"]][u["status"]] += 1
            if u["status"] == "STORED":
                stored_by[u["sha256"]].append(upload_id)
    for sha, c in sorted(state.contents.items()):
        counts = held.get(sha, Counter())
        if c.get("upload_count") != counts.total():
            problems.append(
                f"[6] content {sha}: upload_count {c.get('upload_count')}, "
                f"{counts.total()} STORED|DUPLICATE uploads"
            )
        if counts["STORED"] != 1:
            problems.append(f"[6] content {sha}: {counts['STORED']} STORED uploads, want 1")
        elif stored_by[sha] != [c.get("first_upload_id")]:
            problems.append(
                f"[6] content {sha}: first_upload_id {c.get('first_upload_id')}, "
                f"stored by {stored_by[sha][0]}"
            )
    return problems


def _check_counters(state: State, shards: int) -> list[str]:
    problems = [f"[4] stats shard {s} outside 0..{shards - 1}" for s in state.stats if s >= shards]
    held = [u for u in state.uploads.values() if u.get("status") in HELD]
    duplicates = [u for u in held if u["status"] == "DUPLICATE"]
    facts = {
        "files": len(state.contents),
        "uploads": len(held),
        "duplicates": len(duplicates),
        "bytes_saved": sum(int(u["size"]) for u in duplicates),
        "bytes_stored": sum(int(c["size"]) for c in state.contents.values()),
    }
    counters = state.counters
    problems += [
        f"[4] counter {name}: {counters[name]}, facts say {facts[name]}"
        for name in COUNTERS
        if counters[name] != facts[name]
    ]
    return problems


# --- reference model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Planned:
    kind: str  # "delivered" | "pending" | "held"
    sha256: str
    size: int
    reason: str | None = None


@dataclass
class Expected:
    """What a set of uploads must have produced once every delivery settled.

    Record uploads in the order their processing finished (`delivered`), plus those whose bytes
    never arrived (`pending`) and those the API answered 409 (`held_duplicate`). `check` then
    compares statuses, contents and counters. Which upload of a content ends up STORED is only
    known when processing was sequential: pass `sequential=False` after concurrent processing.
    """

    planned: dict[str, _Planned] = field(default_factory=dict)

    def delivered(
        self, upload_id: str, data: bytes, *, size: int | None = None, sha256: str | None = None
    ) -> None:
        """An upload declared (size, sha256) whose staging object held `data`."""
        actual = hashlib.sha256(data).hexdigest()
        reason = None
        if size is not None and size != len(data):
            reason = "size_mismatch"
        elif sha256 is not None and sha256 != actual:
            reason = "checksum_mismatch"
        self.planned[upload_id] = _Planned("delivered", actual, len(data), reason)

    def pending(self, upload_id: str) -> None:
        self.planned[upload_id] = _Planned("pending", "", 0)

    def held_duplicate(self, upload_id: str, data: bytes) -> None:
        self.planned[upload_id] = _Planned("held", hashlib.sha256(data).hexdigest(), len(data))

    def statuses(self) -> dict[str, str]:
        """The status of each upload, sequential processing assumed."""
        seen: set[str] = set()
        out: dict[str, str] = {}
        for upload_id, p in self.planned.items():
            if p.kind == "pending":
                out[upload_id] = "PENDING"
            elif p.reason is not None:
                out[upload_id] = "REJECTED"
            elif p.kind == "held" or p.sha256 in seen:
                out[upload_id] = "DUPLICATE"
            else:
                out[upload_id] = "STORED"
                seen.add(p.sha256)
        return out

    def contents(self) -> dict[str, int]:
        return {
            p.sha256: p.size
            for p in self.planned.values()
            if p.kind != "pending" and p.reason is None
        }

    def counters(self) -> dict[str, int]:
        held = [p for p in self.planned.values() if p.kind != "pending" and p.reason is None]
        contents = self.contents()
        return {
            "files": len(contents),
            "uploads": len(held),
            "duplicates": len(held) - len(contents),
            "bytes_saved": sum(p.size for p in held) - sum(contents.values()),
            "bytes_stored": sum(contents.values()),
        }

    def check(self, state: State, *, sequential: bool = True) -> None:
        problems = []
        if set(state.uploads) != set(self.planned):
            problems.append(
                f"uploads: unexpected {sorted(set(state.uploads) - set(self.planned))}, "
                f"missing {sorted(set(self.planned) - set(state.uploads))}"
            )
        for upload_id, want in self.statuses().items():
            got = state.uploads.get(upload_id, {})
            p = self.planned[upload_id]
            status = got.get("status")
            if want in HELD and not sequential:
                if status not in HELD:
                    problems.append(f"upload {upload_id}: {status}, want STORED|DUPLICATE")
            elif status != want:
                problems.append(f"upload {upload_id}: {status}, want {want}")
            if want == "REJECTED" and got.get("reason") != p.reason:
                problems.append(f"upload {upload_id}: reason {got.get('reason')}, want {p.reason}")
            if want in HELD and got.get("sha256") != p.sha256:
                problems.append(f"upload {upload_id}: sha256 {got.get('sha256')}, want {p.sha256}")
        sizes = {sha: c["size"] for sha, c in state.contents.items()}
        if sizes != self.contents():
            problems.append(f"contents: {sizes}, want {self.contents()}")
        if state.counters != self.counters():
            problems.append(f"counters: {state.counters}, want {self.counters()}")
        if problems:
            raise AssertionError(
                "state differs from the reference model:\n  " + "\n  ".join(problems)
            )
