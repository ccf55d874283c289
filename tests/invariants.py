"""onecopy's system-wide invariants, checked against the real tables and bucket.

This is the oracle every integration, crash and state-machine test ends with. It reads only
boto3 and restates the rules from first principles (key layout, counter arithmetic) instead of
calling the code under test, so a bug in the domain cannot hide itself here.

- `check_invariants`: raise AssertionError listing every violated invariant.
- `read_state`: one consistent-read snapshot of tables + bucket, comparable with `==` (for "this
  request changed nothing" assertions).
- `Expected`: a reference model of what settled uploads must have produced, whatever the order
  and concurrency of their processing.

Statuses are per owner: STORED means the upload gave its owner a content they did not hold
(whether its bytes were copied or matched a content another owner stored), DUPLICATE that the
owner already held it. The counters are global: every held upload but each content's first one is
a deduplication.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeGuard

from boto3.dynamodb.types import TypeDeserializer

STAGING = "staging/"
CAS = "cas/sha256/"
COUNTERS = ("files", "uploads", "duplicates", "bytes_saved", "bytes_stored")
# What only a PENDING upload carries: the owner-pending index key, its URL's expiry and the TTL.
PENDING_ONLY = ("pending_owner", "url_expires_at", "expires_at")
# TTL may remove a PENDING upload only this long after its URL expired (the queue keeps an event
# for 4 days).
MIN_PENDING_RETENTION = 4 * 24 * 3600
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
    holdings: dict[tuple[str, str], dict[str, Any]]  # (owner, sha256) -> holding
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
        holdings={
            (i["owner"], i["sha256"]): i for i in _scan(ddb_client, resources.holdings_table)
        },
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
    problems += _check_holdings(state)
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
            extra = sorted({"sha256", "completed_at", "reason"} & u.keys())
            if extra:
                problems.append(f"[3] {where}: pending upload carries {extra}")
            problems += _check_pending(where, u)
            continue
        extra = sorted(set(PENDING_ONLY) & u.keys())
        if extra:
            problems.append(f"[7] {where}: completed upload still carries {extra}")
        if "completed_at" not in u:
            problems.append(f"[3] {where}: no completed_at")
        if f"{STAGING}{upload_id}" in state.objects:
            problems.append(f"[5] {where}: staging object still present")
        if status == "REJECTED":
            if u.get("reason") not in REASONS:
                problems.append(f"[3] {where}: reason {u.get('reason')!r}")
            continue
        sha = u.get("sha256")
        if "reason" in u:
            problems.append(f"[3] {where}: has a reason")
        if not _is_sha256(sha):
            problems.append(f"[6] {where}: sha256 {sha!r}")
            continue
        if u.get("declared_sha256") not in (None, sha):
            problems.append(f"[6] {where}: declared {u['declared_sha256']}, held {sha}")
        if (u.get("owner"), sha) not in state.holdings:
            problems.append(f"[8] {where}: its owner holds no {sha}")
        content = state.contents.get(sha)
        if content is None:
            problems.append(f"[6] {where}: no content record for {sha}")
        elif u.get("size") != content["size"]:
            problems.append(f"[6] {where}: size {u.get('size')}, content {content['size']}")
    return problems


def _check_pending(where: str, u: dict[str, Any]) -> list[str]:
    problems = []
    if u.get("pending_owner") != u.get("owner"):
        problems.append(f"[7] {where}: pending_owner {u.get('pending_owner')!r}")
    if "url_expires_at" not in u:
        if "expires_at" in u:
            problems.append(f"[7] {where}: a TTL without a URL expiry")
        return problems
    url_expiry = datetime.fromisoformat(u["url_expires_at"]).timestamp()
    if "claimed_sha256" in u:
        # A claimed upload must end holding its content: TTL may never remove it.
        if "expires_at" in u:
            problems.append(f"[7] {where}: claimed, but TTL may still remove it")
    elif not isinstance(u.get("expires_at"), int):
        problems.append(f"[7] {where}: no TTL (expires_at {u.get('expires_at')!r})")
    elif u["expires_at"] < url_expiry + MIN_PENDING_RETENTION:
        problems.append(f"[7] {where}: TTL {u['expires_at']} too soon after its URL expired")
    return problems


def _held_by(state: State) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Each owner's held uploads of each content."""
    held: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for u in state.uploads.values():
        if u.get("status") in HELD and u.get("sha256"):
            held[u.get("owner", ""), u["sha256"]].append(u)
    return held


def _check_contents(state: State) -> list[str]:
    problems = []
    held: dict[str, Counter[str]] = defaultdict(Counter)
    stored_by: dict[str, set[str]] = defaultdict(set)
    for (_, sha), uploads in _held_by(state).items():
        for u in uploads:
            held[sha][u["status"]] += 1
            if u["status"] == "STORED":
                stored_by[sha].add(u["upload_id"])
    for sha, c in sorted(state.contents.items()):
        counts = held.get(sha, Counter())
        if c.get("upload_count") != counts.total():
            problems.append(
                f"[6] content {sha}: upload_count {c.get('upload_count')}, "
                f"{counts.total()} STORED|DUPLICATE uploads"
            )
        if c.get("first_upload_id") not in stored_by[sha]:
            problems.append(
                f"[6] content {sha}: first_upload_id {c.get('first_upload_id')} is not one of "
                f"its STORED uploads {sorted(stored_by[sha])}"
            )
    return problems


def _check_holdings(state: State) -> list[str]:
    """[8] One holding per (owner, content) held, made by that owner's one STORED upload of it."""
    problems = []
    held = _held_by(state)
    for key in sorted(set(state.holdings) - set(held)):
        problems.append(f"[8] holding {key}: no STORED|DUPLICATE upload of that owner behind it")
    for key, uploads in sorted(held.items()):
        owner, sha = key
        where = f"holding ({owner}, {sha[:12]}…)"
        stored = [u for u in uploads if u["status"] == "STORED"]
        if len(stored) != 1:
            # Per owner, only the upload that first gave the owner the content says STORED.
            problems.append(f"[8] {where}: {len(stored)} STORED uploads of it, want 1")
        h = state.holdings.get(key)
        if h is None:
            continue  # reported per upload
        if h.get("upload_count") != len(uploads):
            problems.append(
                f"[8] {where}: upload_count {h.get('upload_count')}, {len(uploads)} uploads"
            )
        if sha not in state.contents:
            problems.append(f"[8] {where}: no content record")
        if len(stored) == 1:
            first = stored[0]
            want = {
                "upload_id": first["upload_id"],
                "size": first["size"],
                "filename": first["filename"],
                "content_type": first["content_type"],
                "created_at": first.get("completed_at"),
            }
            got = {k: h.get(k) for k in want}
            if got != want:
                problems.append(f"[8] {where}: {got}, its STORED upload says {want}")
    return problems


def _check_counters(state: State, shards: int) -> list[str]:
    problems = [f"[4] stats shard {s} outside 0..{shards - 1}" for s in state.stats if s >= shards]
    held = [u for u in state.uploads.values() if u.get("status") in HELD]
    stored_bytes = sum(int(c["size"]) for c in state.contents.values())
    # Every held upload but the one that stored each content is a deduplication, whoever's.
    facts = {
        "files": len(state.contents),
        "uploads": len(held),
        "duplicates": len(held) - len(state.contents),
        "bytes_saved": sum(int(u["size"]) for u in held) - stored_bytes,
        "bytes_stored": stored_bytes,
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
    kind: str  # "delivered" | "pending" | "held" | "aborted"
    sha256: str
    size: int
    reason: str | None = None
    owner: str | None = None  # None: the owner the upload was created for (read from the state)


@dataclass
class Expected:
    """What a set of uploads must have produced once every delivery settled.

    Record uploads in the order their processing finished (`delivered`), plus those whose bytes
    never arrived (`pending`) and those the API answered 409 (`held_duplicate`). `check` then
    compares statuses, contents, holdings and counters. Which upload of an owner's content ends
    up STORED is only known when processing was sequential: pass `sequential=False` after
    concurrent processing.
    """

    planned: dict[str, _Planned] = field(default_factory=dict)

    def delivered(
        self,
        upload_id: str,
        data: bytes,
        *,
        size: int | None = None,
        sha256: str | None = None,
        owner: str | None = None,
    ) -> None:
        """An upload declared (size, sha256) whose staging object held `data`."""
        actual = hashlib.sha256(data).hexdigest()
        reason = None
        if size is not None and size != len(data):
            reason = "size_mismatch"
        elif sha256 is not None and sha256 != actual:
            reason = "checksum_mismatch"
        self.planned[upload_id] = _Planned("delivered", actual, len(data), reason, owner)

    def pending(self, upload_id: str) -> None:
        self.planned[upload_id] = _Planned("pending", "", 0)

    def held_duplicate(self, upload_id: str, data: bytes, *, owner: str | None = None) -> None:
        sha256 = hashlib.sha256(data).hexdigest()
        self.planned[upload_id] = _Planned("held", sha256, len(data), owner=owner)

    def _held(self, state: State) -> dict[str, tuple[str, str]]:
        """upload id -> (owner, sha256), for each upload that must end holding content."""
        return {
            upload_id: (p.owner or state.uploads.get(upload_id, {}).get("owner", "?"), p.sha256)
            for upload_id, p in self.planned.items()
            if p.kind in ("delivered", "held") and p.reason is None
        }

    def statuses(self, state: State) -> dict[str, str]:
        """The status of each upload, sequential processing assumed: per owner."""
        held = self._held(state)
        seen: set[tuple[str, str]] = set()
        out: dict[str, str] = {}
        for upload_id, p in self.planned.items():
            if p.kind == "pending":
                out[upload_id] = "PENDING"
            elif upload_id not in held:
                out[upload_id] = "REJECTED"
            elif p.kind == "held" or held[upload_id] in seen:
                out[upload_id] = "DUPLICATE"
            else:
                out[upload_id] = "STORED"
                seen.add(held[upload_id])
        return out

    def contents(self) -> dict[str, int]:
        return {
            p.sha256: p.size
            for p in self.planned.values()
            if p.kind != "pending" and p.reason is None
        }

    def holdings(self, state: State) -> dict[tuple[str, str], int]:
        """(owner, sha256) -> upload_count."""
        return dict(Counter(self._held(state).values()))

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
        for upload_id, want in self.statuses(state).items():
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
            if p.owner is not None and got and got.get("owner") != p.owner:
                problems.append(f"upload {upload_id}: owner {got.get('owner')}, want {p.owner}")
        sizes = {sha: c["size"] for sha, c in state.contents.items()}
        if sizes != self.contents():
            problems.append(f"contents: {sizes}, want {self.contents()}")
        holdings = {key: h.get("upload_count") for key, h in state.holdings.items()}
        if holdings != self.holdings(state):
            problems.append(f"holdings: {holdings}, want {self.holdings(state)}")
        if state.counters != self.counters():
            problems.append(f"counters: {state.counters}, want {self.counters()}")
        if problems:
            raise AssertionError(
                "state differs from the reference model:\n  " + "\n  ".join(problems)
            )
