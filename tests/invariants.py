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
owner already held it. References are counted: a LIVE content's upload_count is its live uploads;
one with none waits in the collectable index until the collector marks it COLLECTING, removes its
object and leaves a GONE tombstone. The counters (domain.lifecycle): files and bytes_stored over
the LIVE contents that live uploads reference, uploads = live uploads, bytes_saved = their bytes
minus bytes_stored, duplicates = every upload ever deduplicated (deleted ones leave a tombstone).
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
LIVE, COLLECTING, GONE = "LIVE", "COLLECTING", "GONE"
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
        if shard < 0:
            continue  # the operations record (when reconciliation and collection last ran)
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


def _state_of(content: dict[str, Any] | None) -> str | None:
    return None if content is None else str(content.get("state", LIVE))


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
        kind = _state_of(content)
        if kind in (None, GONE):
            # A worker's copy not yet recorded (a crash between copy and transaction).
            if not allow_orphans:
                problems.append(f"[1] {key}: orphan object, no live content record ({kind})")
        elif content is not None and len(data) != content["size"]:
            problems.append(f"[1] {key}: {len(data)} bytes, record says {content['size']}")
    for sha, content in sorted(state.contents.items()):
        if _state_of(content) == LIVE and f"{CAS}{sha}" not in state.objects:
            problems.append(f"[2] content {sha}: LIVE, but no object at {CAS}{sha}")
    return problems


def _check_uploads(state: State, settled: set[str]) -> list[str]:
    problems = []
    for upload_id in sorted(settled):
        status = state.status(upload_id)
        if status is not None and status not in TERMINAL | {"DELETED"}:
            problems.append(f"[3] upload {upload_id}: settled but {status}")
    for upload_id, u in sorted(state.uploads.items()):
        status = u.get("status")
        where = f"upload {upload_id} ({status})"
        if status == "DELETED":
            # A tombstone: only a deduplicated upload leaves one, and it names nobody.
            if u.get("deduplicated") is not True:
                problems.append(f"[9] {where}: a tombstone that avoided no duplicate")
            extra = sorted({"owner", "filename", "sha256", "pending_owner"} & u.keys())
            if extra:
                problems.append(f"[9] {where}: tombstone still carries {extra}")
            continue
        if status not in TERMINAL | {"PENDING"}:
            problems.append(f"[3] {where}: unknown status")
            continue
        if status == "PENDING":
            extra = sorted({"sha256", "completed_at", "reason", "deduplicated"} & u.keys())
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
            if u.get("deduplicated"):
                problems.append(f"[3] {where}: rejected, yet deduplicated")
            continue
        sha = u.get("sha256")
        if "reason" in u:
            problems.append(f"[3] {where}: has a reason")
        if status == "DUPLICATE" and u.get("deduplicated") is not True:
            problems.append(f"[3] {where}: a DUPLICATE is always deduplicated")
        if not _is_sha256(sha):
            problems.append(f"[6] {where}: sha256 {sha!r}")
            continue
        if u.get("declared_sha256") not in (None, sha):
            problems.append(f"[6] {where}: declared {u['declared_sha256']}, held {sha}")
        if (u.get("owner"), sha) not in state.holdings:
            problems.append(f"[8] {where}: its owner holds no {sha}")
        content = state.contents.get(sha)
        if _state_of(content) != LIVE:
            # The one that matters most: a live upload whose bytes are (being) collected.
            problems.append(f"[6] {where}: its content {sha} is {_state_of(content)}")
        elif content is not None and u.get("size") != content["size"]:
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
    """Each owner's live (held) uploads of each content."""
    held: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for u in state.uploads.values():
        if u.get("status") in HELD and u.get("sha256"):
            held[u.get("owner", ""), u["sha256"]].append(u)
    return held


def _references(state: State) -> Counter[str]:
    refs: Counter[str] = Counter()
    for (_, sha), uploads in _held_by(state).items():
        refs[sha] += len(uploads)
    return refs


def _check_contents(state: State) -> list[str]:
    problems = []
    refs = _references(state)
    for sha, c in sorted(state.contents.items()):
        kind = _state_of(c)
        found = refs.get(sha, 0)
        where = f"content {sha} ({kind})"
        if kind not in (LIVE, COLLECTING, GONE):
            problems.append(f"[10] {where}: unknown state")
            continue
        if kind != LIVE:
            if found:
                problems.append(f"[10] {where}: {found} live uploads reference it")
            if kind == GONE and {"gc_shard", "zero_since"} & c.keys():
                problems.append(f"[10] {where}: a tombstone still in the collectable index")
            if kind == COLLECTING and "gc_shard" not in c:
                problems.append(f"[10] {where}: collecting, but out of the index (never ends)")
            continue
        if c.get("upload_count") != found:
            problems.append(
                f"[6] {where}: upload_count {c.get('upload_count')}, {found} live uploads"
            )
        indexed = {"gc_shard", "zero_since"} <= c.keys()
        if found == 0 and not indexed:
            problems.append(f"[10] {where}: unreferenced, but not collectable (never collected)")
        if found and {"gc_shard", "zero_since"} & c.keys():
            problems.append(f"[10] {where}: referenced, yet in the collectable index")
        if indexed and c.get("gc_shard") != sha[0]:
            problems.append(f"[10] {where}: gc_shard {c.get('gc_shard')!r}, want {sha[0]!r}")
    return problems


def _check_holdings(state: State) -> list[str]:
    """[8] One holding per (owner, content) held, counting that owner's live uploads of it."""
    problems = []
    held = _held_by(state)
    for key in sorted(set(state.holdings) - set(held)):
        problems.append(f"[8] holding {key}: no STORED|DUPLICATE upload of that owner behind it")
    for key, uploads in sorted(held.items()):
        owner, sha = key
        where = f"holding ({owner}, {sha[:12]}…)"
        stored = [u for u in uploads if u["status"] == "STORED"]
        if len(stored) > 1:
            # Per owner, only the upload that gave the owner the content says STORED (it may
            # since have been deleted while their duplicates live on).
            problems.append(f"[8] {where}: {len(stored)} STORED uploads of it, want at most 1")
        h = state.holdings.get(key)
        if h is None:
            continue  # reported per upload
        if h.get("upload_count") != len(uploads):
            problems.append(
                f"[8] {where}: upload_count {h.get('upload_count')}, {len(uploads)} uploads"
            )
        if sha not in state.contents:
            problems.append(f"[8] {where}: no content record")
        first = state.uploads.get(str(h.get("upload_id")))
        if first is not None and first.get("status") in HELD:
            want = {
                "upload_id": first["upload_id"],
                "size": first["size"],
                "filename": first["filename"],
                "content_type": first["content_type"],
                "created_at": first.get("completed_at"),
            }
            got = {k: h.get(k) for k in want}
            if got != want or first["status"] != "STORED":
                problems.append(f"[8] {where}: {got}, its first upload says {want}")
    return problems


def facts_of(state: State) -> dict[str, int]:
    """The counters as the stored facts define them (domain.lifecycle)."""
    held = [u for u in state.uploads.values() if u.get("status") in HELD]
    refs = _references(state)
    referenced = [
        c for sha, c in state.contents.items() if _state_of(c) == LIVE and refs.get(sha, 0) > 0
    ]
    stored_bytes = sum(int(c["size"]) for c in referenced)
    return {
        "files": len(referenced),
        "uploads": len(held),
        "duplicates": sum(1 for u in state.uploads.values() if u.get("deduplicated") is True),
        "bytes_saved": sum(int(u["size"]) for u in held) - stored_bytes,
        "bytes_stored": stored_bytes,
    }


def _check_counters(state: State, shards: int) -> list[str]:
    problems = [f"[4] stats shard {s} outside 0..{shards - 1}" for s in state.stats if s >= shards]
    facts = facts_of(state)
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
    """What a sequence of uploads, deletions and collections must have produced.

    Record uploads in the order their processing finished (`delivered`), plus those whose bytes
    never arrived (`pending`) and those the API answered 409 (`held_duplicate`); record each
    deletion (`deleted`) and each content the collector removed (`collected`) where it happened
    in that order. `check` then compares statuses, referenced contents, holdings and counters.
    Which upload of an owner's content ends up STORED, and whether a re-upload of an unreferenced
    content revived it or stored it again, is only known when processing was sequential: pass
    `sequential=False` after concurrent processing.
    """

    planned: dict[str, _Planned] = field(default_factory=dict)
    # ("upload", id) | ("delete", id) | ("collect", sha256), in the order they took effect
    events: list[tuple[str, str]] = field(default_factory=list)

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
        self.events.append(("upload", upload_id))

    def pending(self, upload_id: str) -> None:
        self.planned[upload_id] = _Planned("pending", "", 0)

    def held_duplicate(self, upload_id: str, data: bytes, *, owner: str | None = None) -> None:
        sha256 = hashlib.sha256(data).hexdigest()
        self.planned[upload_id] = _Planned("held", sha256, len(data), owner=owner)
        self.events.append(("upload", upload_id))

    def deleted(self, upload_id: str) -> None:
        """The upload was deleted by its owner (after it completed; an aborted one too)."""
        self.events.append(("delete", upload_id))

    def collected(self, sha256: str) -> None:
        self.events.append(("collect", sha256))

    def _owner(self, upload_id: str, state: State) -> str:
        p = self.planned[upload_id]
        return p.owner or str(state.uploads.get(upload_id, {}).get("owner", "?"))

    def replay(self, state: State) -> _Replay:
        """Play the events in order, as one sequential worker would have."""
        r = _Replay()
        for kind, subject in self.events:
            if kind == "collect":
                r.gone.add(subject)
                continue
            p = self.planned[subject]
            if kind == "delete":
                r.deleted.add(subject)
                if r.status.get(subject) in HELD:
                    key = (r.owner[subject], p.sha256)
                    r.holdings[key] -= 1
                    r.refs[p.sha256] -= 1
                    if not r.holdings[key]:
                        del r.holdings[key]
                continue
            if p.kind == "pending" or p.reason is not None:
                r.status[subject] = "REJECTED" if p.kind != "pending" else "PENDING"
                continue
            owner = self._owner(subject, state)
            r.owner[subject] = owner
            key = (owner, p.sha256)
            stored_before = p.sha256 in r.sizes and p.sha256 not in r.gone
            if p.kind == "held" or r.holdings.get(key, 0) > 0:
                r.status[subject] = "DUPLICATE"
                r.deduplicated.add(subject)
            else:
                r.status[subject] = "STORED"
                if stored_before:
                    r.deduplicated.add(subject)  # a match, or a revival
            r.gone.discard(p.sha256)
            r.sizes[p.sha256] = p.size
            r.holdings[key] = r.holdings.get(key, 0) + 1
            r.refs[p.sha256] += 1
        for upload_id, p in self.planned.items():
            if upload_id not in r.status:  # never completed by a worker: pending, or aborted
                r.status[upload_id] = "PENDING" if p.kind == "pending" else "REJECTED"
        return r

    def check(self, state: State, *, sequential: bool = True) -> None:
        r = self.replay(state)
        problems = []
        live = {u for u, s in r.status.items() if u not in r.deleted}
        dead = r.deleted & set(r.status)
        present = {u for u, item in state.uploads.items() if item.get("status") != "DELETED"}
        if present != live:
            problems.append(
                f"uploads: unexpected {sorted(present - live)}, missing {sorted(live - present)}"
            )
        for upload_id in sorted(dead):
            item = state.uploads.get(upload_id)
            if item is not None and item.get("status") != "DELETED":
                problems.append(f"upload {upload_id}: deleted, but {item.get('status')}")
        for upload_id in sorted(live):
            want = r.status[upload_id]
            got = state.uploads.get(upload_id, {})
            p = self.planned[upload_id]
            status = got.get("status")
            if want in HELD and not sequential:
                if status not in HELD:
                    problems.append(f"upload {upload_id}: {status}, want STORED|DUPLICATE")
            elif status != want:
                problems.append(f"upload {upload_id}: {status}, want {want}")
            if want == "REJECTED" and p.kind != "pending" and got.get("reason") != p.reason:
                problems.append(f"upload {upload_id}: reason {got.get('reason')}, want {p.reason}")
            if want in HELD and got.get("sha256") != p.sha256:
                problems.append(f"upload {upload_id}: sha256 {got.get('sha256')}, want {p.sha256}")
            if p.owner is not None and got and got.get("owner") != p.owner:
                problems.append(f"upload {upload_id}: owner {got.get('owner')}, want {p.owner}")
        referenced = {
            sha: c["size"]
            for sha, c in state.contents.items()
            if _state_of(c) == LIVE and int(c.get("upload_count", 0)) > 0
        }
        if referenced != r.referenced():
            problems.append(f"referenced contents: {referenced}, want {r.referenced()}")
        holdings = {key: h.get("upload_count") for key, h in state.holdings.items()}
        if holdings != r.holdings:
            problems.append(f"holdings: {holdings}, want {r.holdings}")
        want_counters = r.counters(self.planned)
        got_counters = dict(state.counters)
        if not sequential:
            # Whether a re-upload revived a content or stored it again depends on timing.
            want_counters.pop("duplicates")
            got_counters.pop("duplicates")
        if got_counters != want_counters:
            problems.append(f"counters: {got_counters}, want {want_counters}")
        if problems:
            raise AssertionError(
                "state differs from the reference model:\n  " + "\n  ".join(problems)
            )


@dataclass
class _Replay:
    status: dict[str, str] = field(default_factory=dict)
    owner: dict[str, str] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    deduplicated: set[str] = field(default_factory=set)
    holdings: dict[tuple[str, str], int] = field(default_factory=dict)
    refs: Counter[str] = field(default_factory=Counter)
    sizes: dict[str, int] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)

    def referenced(self) -> dict[str, int]:
        return {sha: self.sizes[sha] for sha, n in self.refs.items() if n > 0}

    def counters(self, planned: dict[str, _Planned]) -> dict[str, int]:
        live = [u for u, s in self.status.items() if s in HELD and u not in self.deleted]
        stored = sum(self.referenced().values())
        return {
            "files": len(self.referenced()),
            "uploads": len(live),
            "duplicates": len(self.deduplicated),
            "bytes_saved": sum(planned[u].size for u in live) - stored,
            "bytes_stored": stored,
        }
