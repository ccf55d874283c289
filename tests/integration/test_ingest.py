"""ingest_object against moto: what the worker does with one staged object, step by step.

Uploads are created through the same service the API calls; bytes are PUT straight into staging
with boto3, the way a client's presigned PUT lands them. Every test ends with check_invariants.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from adapters import clients
from adapters import s3 as s3_adapter
from adapters.dynamodb import Ledger
from adapters.s3 import ObjectStore
from domain.lifecycle import Applied, Verdict
from domain.model import (
    StatsDelta,
    Upload,
    UploadStatus,
    complete,
    content_key,
    new_content,
    new_upload_id,
    pending_expiry,
    sha256_hex_to_b64,
    staging_key,
)
from service.clock import utcnow
from service.ingest import Outcome, Result, ingest_object
from service.uploads import UploadPolicy, create_upload
from tests.invariants import Expected, State, check_invariants, read_state

pytestmark = pytest.mark.integration

DATA = b"hello from onecopy\n"
SHA = hashlib.sha256(DATA).hexdigest()
EMPTY_SHA = hashlib.sha256(b"").hexdigest()

POLICY = UploadPolicy(
    url_ttl_seconds=900, multipart_threshold=100 * 1024**2, part_size=16 * 1024**2, max_pending=100
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class World:
    """The service's collaborators against moto, plus what a test needs to drive and observe it."""

    resources: Any
    ledger: Ledger
    store: ObjectStore
    s3: Any
    ddb: Any
    expected: Expected = field(default_factory=Expected)

    def create(
        self,
        data: bytes = DATA,
        *,
        owner: str = "alice",
        size: int | None = None,
        declare: bool = True,
        sha256: str | None = None,
    ) -> str:
        """A PENDING upload declaring `data` (or the given size / hash)."""
        created = create_upload(
            owner=owner,
            filename="file.bin",
            size=len(data) if size is None else size,
            content_type="application/octet-stream",
            sha256=(sha256 or sha(data)) if declare else None,
            ledger=self.ledger,
            store=self.store,
            multipart=False,
            policy=POLICY,
        )
        return created.upload.upload_id

    def put(self, upload_id: str, data: bytes = DATA, *, s3_checksum: bool = False) -> None:
        """The client's PUT. With s3_checksum, S3 keeps a verified SHA-256 (the HeadObject path)."""
        extra: dict[str, Any] = {}
        if s3_checksum:
            extra = {"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": sha256_hex_to_b64(sha(data))}
        self.s3.put_object(Bucket=self.bucket, Key=staging_key(upload_id), Body=data, **extra)

    def upload(self, data: bytes = DATA, **kwargs: Any) -> str:
        upload_id = self.create(data, **kwargs)
        self.put(upload_id, data)
        return upload_id

    def ingest(self, upload_id: str) -> Result:
        return self.ingest_key(staging_key(upload_id))

    def ingest_key(self, key: str) -> Result:
        return ingest_object(key, ledger=self.ledger, store=self.store)

    def get(self, upload_id: str) -> Upload:
        upload = self.ledger.get_upload(upload_id)
        assert upload is not None
        return upload

    def state(self) -> State:
        return read_state(self.resources, self.s3, self.ddb)

    def check(self, *settled: str, allow_orphans: bool = False, sequential: bool = True) -> None:
        check_invariants(
            self.resources, self.s3, self.ddb, settled=settled, allow_orphans=allow_orphans
        )
        self.expected.check(self.state(), sequential=sequential)

    def read(self, key: str) -> bytes:
        body: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    @property
    def bucket(self) -> str:
        return str(self.resources.bucket)


@pytest.fixture
def world(aws: Any) -> Iterator[World]:
    ledger = Ledger(
        clients.dynamodb(),
        uploads_table=aws.uploads_table,
        contents_table=aws.contents_table,
        holdings_table=aws.holdings_table,
        stats_table=aws.stats_table,
        stats_shards=aws.stats_shards,
    )
    store = ObjectStore(clients.s3(), clients.s3_presigner(), aws.bucket)
    yield World(aws, ledger, store, clients.s3(), clients.dynamodb())


# --- the three outcomes ------------------------------------------------------------------------


@pytest.mark.parametrize("s3_checksum", [True, False], ids=["head-checksum", "streamed"])
def test_new_content_is_stored_under_its_hash(world: World, s3_checksum: bool) -> None:
    upload_id = world.create()
    world.put(upload_id, s3_checksum=s3_checksum)

    result = world.ingest(upload_id)

    assert result.outcome is Outcome.STORED
    assert result.downloaded is not s3_checksum  # a verified checksum spares the download
    stored = world.get(upload_id)
    assert (stored.status, stored.sha256, stored.reason) == (UploadStatus.STORED, SHA, None)
    assert stored.completed_at is not None and stored.completed_at >= stored.created_at
    assert world.read(content_key(SHA)) == DATA
    assert world.state().keys("staging/") == set()
    assert world.ledger.read_stats().files == 1
    world.expected.delivered(upload_id, DATA)
    world.check(upload_id)


def test_the_same_bytes_again_from_the_same_owner_are_a_duplicate(world: World) -> None:
    first = world.upload(owner="alice")
    world.ingest(first)
    second = world.upload(owner="alice", declare=False)  # declared, it would be a 409

    result = world.ingest(second)

    assert result.outcome is Outcome.DUPLICATE
    assert (world.get(second).status, world.get(second).sha256) == (UploadStatus.DUPLICATE, SHA)
    content = world.ledger.get_content(SHA)
    assert content is not None
    assert (content.upload_count, content.first_upload_id) == (2, first)
    holding = world.ledger.get_holding("alice", SHA)
    assert holding is not None
    assert (holding.upload_id, holding.upload_count) == (first, 2)
    assert world.state().keys("cas/") == {content_key(SHA)}
    assert world.state().keys("staging/") == set()
    world.expected.delivered(first, DATA)
    world.expected.delivered(second, DATA)
    world.check(first, second)


def test_another_owners_content_is_stored_for_the_uploader_without_a_copy(world: World) -> None:
    first = world.upload(owner="alice")
    world.ingest(first)
    copied = world.state().objects[content_key(SHA)]
    second = world.upload(owner="bob")

    result = world.ingest(second)

    # bob is told what he would be told of new content: STORED (he now holds it) ...
    assert result.outcome is Outcome.MATCHED
    assert world.get(second).status is UploadStatus.STORED
    # ... while the bytes were not copied again, and the admin counters count the saving.
    assert world.state().objects == {content_key(SHA): copied}
    stats = world.ledger.read_stats()
    assert (stats.files, stats.uploads, stats.duplicates, stats.bytes_saved) == (1, 2, 1, len(DATA))
    content = world.ledger.get_content(SHA)
    assert content is not None and (content.upload_count, content.first_upload_id) == (2, first)
    bobs = world.ledger.get_holding("bob", SHA)
    assert bobs is not None and (bobs.upload_id, bobs.upload_count) == (second, 1)
    alices = world.ledger.get_holding("alice", SHA)
    assert alices is not None and (alices.upload_id, alices.upload_count) == (first, 1)
    world.expected.delivered(first, DATA)
    world.expected.delivered(second, DATA)
    world.check(first, second)


def test_the_owner_who_matched_a_content_then_holds_it_like_any_other(world: World) -> None:
    uploads = [
        world.upload(owner="alice"),
        world.upload(owner="bob"),
        world.upload(owner="bob", declare=False),
        world.upload(owner="alice", declare=False),
    ]

    outcomes = [world.ingest(upload_id).outcome for upload_id in uploads]

    assert outcomes == [Outcome.STORED, Outcome.MATCHED, Outcome.DUPLICATE, Outcome.DUPLICATE]
    state = world.state()
    assert {key: h["upload_count"] for key, h in state.holdings.items()} == {
        ("alice", SHA): 2,
        ("bob", SHA): 2,
    }
    for upload_id in uploads:
        world.expected.delivered(upload_id, DATA)
    world.check(*uploads)


def test_a_duplicate_without_a_declared_hash_is_found_by_streaming(world: World) -> None:
    first = world.upload()
    world.ingest(first)
    second = world.upload(declare=False)

    result = world.ingest(second)

    assert (result.outcome, result.downloaded) == (Outcome.DUPLICATE, True)
    world.expected.delivered(first, DATA)
    world.expected.delivered(second, DATA)
    world.check(first, second)


def test_bytes_that_differ_from_the_declared_hash_are_rejected(world: World) -> None:
    upload_id = world.create(DATA)
    tampered = b"HELLO from onecopy\n"  # same size, other bytes
    world.put(upload_id, tampered)

    result = world.ingest(upload_id)

    assert result.outcome is Outcome.REJECTED
    rejected = world.get(upload_id)
    assert (rejected.status, rejected.reason) == (UploadStatus.REJECTED, "checksum_mismatch")
    assert rejected.sha256 == sha(tampered)
    after = world.state()
    assert after.objects == {}  # staging deleted, nothing promoted
    assert after.contents == {}
    assert after.counters == dict.fromkeys(after.counters, 0)
    world.expected.delivered(upload_id, tampered, sha256=SHA)
    world.check(upload_id)


@pytest.mark.parametrize("arrived", [DATA[:-1], DATA + b"!"], ids=["shorter", "longer"])
def test_bytes_of_another_size_are_rejected(world: World, arrived: bytes) -> None:
    upload_id = world.create(DATA, declare=False)
    world.put(upload_id, arrived)

    result = world.ingest(upload_id)

    assert result.outcome is Outcome.REJECTED
    assert world.get(upload_id).reason == "size_mismatch"
    after = world.state()
    assert (after.objects, after.contents) == ({}, {})
    assert after.counters == dict.fromkeys(after.counters, 0)
    world.expected.delivered(upload_id, arrived, size=len(DATA))
    world.check(upload_id)


def test_a_rejected_upload_does_not_count_as_holding_the_content(world: World) -> None:
    rejected = world.create(DATA)
    world.put(rejected, b"x" * len(DATA))
    world.ingest(rejected)
    good = world.upload(DATA)

    assert world.ingest(good).outcome is Outcome.STORED
    world.expected.delivered(rejected, b"x" * len(DATA), sha256=SHA)
    world.expected.delivered(good, DATA)
    world.check(rejected, good)


def test_a_zero_byte_file_is_stored_once(world: World) -> None:
    first = world.upload(b"")
    second = world.upload(b"")

    outcomes = [world.ingest(first).outcome, world.ingest(second).outcome]

    assert outcomes == [Outcome.STORED, Outcome.DUPLICATE]
    assert world.read(content_key(EMPTY_SHA)) == b""
    assert world.ledger.read_stats().bytes_stored == 0
    world.expected.delivered(first, b"")
    world.expected.delivered(second, b"")
    world.check(first, second)


# --- at-least-once and out of order ------------------------------------------------------------


@pytest.mark.parametrize("rejected", [False, True], ids=["held", "rejected"])
def test_redelivery_changes_nothing(world: World, rejected: bool) -> None:
    arrived = b"?" * len(DATA) if rejected else DATA
    upload_id = world.create(DATA)
    world.put(upload_id, arrived)
    world.ingest(upload_id)
    before = world.state()

    results = [world.ingest(upload_id) for _ in range(3)]

    assert {r.outcome for r in results} == {Outcome.ALREADY_COMPLETE}
    assert {r.upload for r in results} == {world.get(upload_id)}
    assert world.state() == before
    world.expected.delivered(upload_id, arrived, sha256=SHA)
    world.check(upload_id)


def test_a_late_redelivery_after_the_content_was_duplicated_changes_nothing(world: World) -> None:
    first = world.upload()
    second = world.upload()
    world.ingest(first)
    world.ingest(second)
    before = world.state()

    for upload_id in (second, first, second):
        assert world.ingest(upload_id).outcome is Outcome.ALREADY_COMPLETE

    assert world.state() == before
    world.expected.delivered(first, DATA)
    world.expected.delivered(second, DATA)
    world.check(first, second)


def test_events_in_any_order_give_the_same_contents_and_counters(world: World) -> None:
    a, b = b"content a", b"content b"
    upload_a = world.upload(a)
    upload_b = world.upload(b)
    original = world.upload(a)
    duplicate = world.upload(a)

    # B before A, and the later upload of A before the earlier ones.
    for upload_id in (upload_b, duplicate, original, upload_a):
        world.ingest(upload_id)

    # The one alice's first processed upload of A is STORED, whichever she created first.
    assert world.get(duplicate).status is UploadStatus.STORED
    assert {world.get(original).status, world.get(upload_a).status} == {UploadStatus.DUPLICATE}
    for upload_id, data in ((upload_b, b), (duplicate, a), (original, a), (upload_a, a)):
        world.expected.delivered(upload_id, data)
    world.check(upload_a, upload_b, original, duplicate)


def test_a_settled_upload_with_its_staging_object_gone_is_a_no_op(world: World) -> None:
    upload_id = world.upload()
    world.ingest(upload_id)
    assert world.state().keys("staging/") == set()
    before = world.state()

    result = world.ingest(upload_id)

    assert result.outcome is Outcome.ALREADY_COMPLETE
    assert world.state() == before
    world.expected.delivered(upload_id, DATA)
    world.check(upload_id)


def test_a_pending_upload_whose_bytes_were_deleted_stays_pending(world: World) -> None:
    upload_id = world.upload()
    world.s3.delete_object(Bucket=world.bucket, Key=staging_key(upload_id))
    before = world.state()

    result = world.ingest(upload_id)

    # Nothing is known about bytes that are gone; a new PUT with the same URL still completes it.
    assert result.outcome is Outcome.OBJECT_GONE
    assert world.get(upload_id).status is UploadStatus.PENDING
    assert world.state() == before
    world.put(upload_id)
    assert world.ingest(upload_id).outcome is Outcome.STORED
    world.expected.delivered(upload_id, DATA)
    world.check(upload_id)


def test_a_pending_upload_never_delivered_is_left_alone(world: World) -> None:
    delivered = world.upload()
    waiting = world.create(b"not yet")

    world.ingest(delivered)

    assert world.get(waiting).status is UploadStatus.PENDING
    world.expected.delivered(delivered, DATA)
    world.expected.pending(waiting)
    world.check(delivered)


# --- keys that are not uploads -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "outcome"),
    [
        (f"staging/{'0' * 32}", Outcome.UNKNOWN_UPLOAD),
        (f"cas/sha256/{SHA}", Outcome.NOT_AN_UPLOAD),
        ("elsewhere/file", Outcome.NOT_AN_UPLOAD),
        (f"staging/{'A' * 32}", Outcome.NOT_AN_UPLOAD),
        (f"staging/{'0' * 31}", Outcome.NOT_AN_UPLOAD),
        (f"staging/{'0' * 32}/x", Outcome.NOT_AN_UPLOAD),
        ("staging/my file+1%.txt", Outcome.NOT_AN_UPLOAD),
        ("staging/100%25", Outcome.NOT_AN_UPLOAD),
        ("staging/café 日本", Outcome.NOT_AN_UPLOAD),
        ("staging/", Outcome.NOT_AN_UPLOAD),
    ],
)
def test_objects_that_are_no_upload_are_left_untouched(
    world: World, key: str, outcome: Outcome
) -> None:
    world.s3.put_object(Bucket=world.bucket, Key=key, Body=b"stray")
    before = world.state()

    result = world.ingest_key(key)

    assert (result.outcome, result.upload) == (outcome, None)
    assert world.state() == before  # not ours to delete: the lifecycle rule expires staging


# --- crashes between steps ---------------------------------------------------------------------


class Crash(Exception):
    """A worker dying between two steps (timeout, out of memory, instance reclaimed)."""


def crash_once(obj: Any, name: str, monkeypatch: pytest.MonkeyPatch, *, before: bool) -> None:
    """Make obj.name raise once, before or after doing its work; later calls behave normally."""
    original = getattr(obj, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(obj, name, original)
        if before:
            raise Crash(name)
        original(*args, **kwargs)
        raise Crash(name)

    monkeypatch.setattr(obj, name, wrapper)


def test_a_crash_between_copy_and_record_is_completed_by_redelivery(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload_id = world.upload()
    crash_once(world.ledger, "record_stored", monkeypatch, before=True)

    with pytest.raises(Crash):
        world.ingest(upload_id)

    # The copy happened, the record did not: an orphan that only redelivery may clear.
    assert world.get(upload_id).status is UploadStatus.PENDING
    assert world.state().keys("cas/") == {content_key(SHA)}
    check_invariants(world.resources, world.s3, world.ddb, allow_orphans=True)
    with pytest.raises(AssertionError, match="orphan"):
        check_invariants(world.resources, world.s3, world.ddb)

    assert world.ingest(upload_id).outcome is Outcome.STORED
    world.expected.delivered(upload_id, DATA)
    world.check(upload_id)


def test_a_crash_after_the_record_only_leaves_staging_to_clear(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload_id = world.upload()
    crash_once(world.store, "delete", monkeypatch, before=True)

    with pytest.raises(Crash):
        world.ingest(upload_id)

    assert world.get(upload_id).status is UploadStatus.STORED
    with pytest.raises(AssertionError, match=r"\[5\].*staging object still present"):
        check_invariants(world.resources, world.s3, world.ddb)
    counters = world.state().counters

    assert world.ingest(upload_id).outcome is Outcome.ALREADY_COMPLETE
    assert world.state().counters == counters
    world.expected.delivered(upload_id, DATA)
    world.check(upload_id)


def test_a_crash_after_a_duplicate_is_recorded_does_not_count_it_twice(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = world.upload(owner="alice")
    world.ingest(first)
    second = world.upload(owner="alice", declare=False)
    crash_once(world.ledger, "record_duplicate", monkeypatch, before=False)

    with pytest.raises(Crash):
        world.ingest(second)
    assert world.ingest(second).outcome is Outcome.ALREADY_COMPLETE

    world.expected.delivered(first, DATA)
    world.expected.delivered(second, DATA)
    world.check(first, second)


# --- racing workers ----------------------------------------------------------------------------


def run_before(
    obj: Any, name: str, monkeypatch: pytest.MonkeyPatch, action: Callable[[], Any]
) -> None:
    """Run `action` once, just before the next call of obj.name: a crafted interleaving."""
    original = getattr(obj, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(obj, name, original)
        action()
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, name, wrapper)


@pytest.mark.parametrize(
    ("other_owner", "loser"),
    [("alice", Outcome.DUPLICATE), ("bob", Outcome.MATCHED)],
    ids=["same-owner", "two-owners"],
)
def test_two_uploads_of_new_content_racing_store_it_once(
    world: World, monkeypatch: pytest.MonkeyPatch, other_owner: str, loser: Outcome
) -> None:
    first = world.upload(owner="alice")
    second = world.upload(owner=other_owner)
    results: list[Result] = []
    # Both workers find no content and copy; the second one records first.
    run_before(
        world.ledger, "record_stored", monkeypatch, lambda: results.append(world.ingest(second))
    )

    results.append(world.ingest(first))

    # The loser matches the content: STORED for an owner who did not hold it yet.
    assert [r.outcome for r in results] == [Outcome.STORED, loser]
    assert world.get(second).status is UploadStatus.STORED
    want = UploadStatus.DUPLICATE if loser is Outcome.DUPLICATE else UploadStatus.STORED
    assert world.get(first).status is want
    world.expected.delivered(second, DATA)
    world.expected.delivered(first, DATA)
    world.check(first, second)


def test_a_content_recorded_between_lookup_and_copy_makes_a_duplicate(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = world.upload()
    second = world.upload()
    run_before(world.store, "copy", monkeypatch, lambda: world.ingest(second))

    result = world.ingest(first)

    assert result.outcome is Outcome.DUPLICATE
    world.expected.delivered(second, DATA)
    world.expected.delivered(first, DATA)
    world.check(first, second)


@pytest.mark.parametrize("step", ["copy", "record_stored", "delete"])
def test_two_deliveries_of_one_upload_racing_complete_it_once(
    world: World, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    upload_id = world.upload()
    other: list[Result] = []
    target = world.store if step in ("copy", "delete") else world.ledger
    # The duplicate delivery runs to the end while the first one is about to do `step`.
    run_before(target, step, monkeypatch, lambda: other.append(world.ingest(upload_id)))

    result = world.ingest(upload_id)

    assert sorted([result.outcome, other[0].outcome]) == sorted(
        [Outcome.STORED, Outcome.ALREADY_COMPLETE]
    )
    world.expected.delivered(upload_id, DATA)
    world.check(upload_id)


def test_a_duplicate_racing_a_redelivery_of_itself_counts_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = world.upload(owner="alice")
    world.ingest(first)
    second = world.upload(owner="alice", declare=False)
    run_before(world.ledger, "record_duplicate", monkeypatch, lambda: world.ingest(second))

    result = world.ingest(second)

    assert result.outcome is Outcome.ALREADY_COMPLETE
    assert result.upload is not None and result.upload.status is UploadStatus.DUPLICATE
    world.expected.delivered(first, DATA)
    world.expected.delivered(second, DATA)
    world.check(first, second)


class _Serialized:
    """A client whose requests run one at a time, as each request is atomic in AWS.

    moto does not make a conditional write atomic against a concurrent request; serializing
    whole requests restores AWS's semantics while the workers still interleave between them.
    """

    _lock = threading.Lock()

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call


def test_many_workers_on_the_same_new_content_store_it_once(world: World) -> None:
    # Two owners, three uploads each: each owner ends with one STORED and two DUPLICATE.
    uploads = [world.upload(owner=("alice", "bob")[n % 2]) for n in range(6)]
    ledger = Ledger(
        _Serialized(world.ddb),  # type: ignore[arg-type]
        uploads_table=world.ledger.uploads_table,
        contents_table=world.ledger.contents_table,
        holdings_table=world.ledger.holdings_table,
        stats_table=world.ledger.stats_table,
        stats_shards=world.ledger.stats_shards,
    )
    store = ObjectStore(_Serialized(world.s3), world.s3, world.bucket)  # type: ignore[arg-type]
    start = threading.Barrier(len(uploads) * 2)
    outcomes: list[Outcome] = []
    errors: list[BaseException] = []

    def work(upload_id: str) -> None:
        start.wait()
        try:
            outcomes.append(
                ingest_object(staging_key(upload_id), ledger=ledger, store=store).outcome
            )
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    # Every upload is delivered twice, to two workers at once.
    threads = [threading.Thread(target=work, args=(u,)) for u in uploads * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    # One upload stores the content, one of the other owner's matches it, the rest duplicate.
    assert (outcomes.count(Outcome.STORED), outcomes.count(Outcome.MATCHED)) == (1, 1)
    assert outcomes.count(Outcome.DUPLICATE) == len(uploads) - 2
    assert len(world.state().keys("cas/")) == 1
    assert outcomes.count(Outcome.ALREADY_COMPLETE) == len(uploads)
    for upload_id in uploads:
        world.expected.delivered(upload_id, DATA)
    world.check(*uploads, sequential=False)


def test_the_ledger_reports_a_lost_race_for_the_content_as_a_change(world: World) -> None:
    first = world.upload(owner="alice")
    world.ingest(first)
    second = world.create(owner="bob")
    pending = world.get(second)
    content = world.ledger.get_content(SHA)
    assert content is not None

    now = utcnow()
    applied = world.ledger.record_stored(
        complete(pending, UploadStatus.STORED, now, sha256=SHA),
        new_content(pending, SHA, now),
        replaces=None,
    )

    assert applied is Applied.CONTENT_CHANGED
    assert world.get(second).status is UploadStatus.PENDING


def test_the_ledger_reports_a_content_the_owner_held_already(world: World) -> None:
    world.ingest(world.upload(owner="alice"))
    pending = world.get(world.create(owner="alice", declare=False))
    before = world.state()

    applied = world.ledger.record_match(
        complete(pending, UploadStatus.STORED, utcnow(), sha256=SHA, deduplicated=True),
        Verdict.MATCH,
    )

    assert applied is Applied.ALREADY_HELD
    assert world.state() == before


def test_a_held_duplicate_without_the_holding_writes_nothing(world: World) -> None:
    world.ingest(world.upload(owner="alice"))
    request = world.get(world.create(owner="bob", declare=False))
    before = world.state()

    duplicate = complete(request, UploadStatus.DUPLICATE, utcnow(), sha256=SHA)
    applied = world.ledger.record_held_duplicate(replace(duplicate, upload_id="e" * 32))

    assert applied is Applied.NOT_HELD
    assert world.state() == before


def test_a_pending_upload_counts_against_its_owner_until_its_url_expires(world: World) -> None:
    now = utcnow()
    for owner, expires_in in [("alice", 60), ("alice", 60), ("alice", -1), ("bob", 60)]:
        world.ledger.create_upload(
            Upload(
                upload_id=new_upload_id(),
                owner=owner,
                filename="f.bin",
                size=1,
                content_type="application/octet-stream",
                created_at=now - timedelta(seconds=120),
                url_expires_at=now + timedelta(seconds=expires_in),
            )
        )

    assert world.ledger.count_pending("alice", now) == 2
    assert world.ledger.count_pending("bob", now) == 1
    assert world.ledger.count_pending("carol", now) == 0


def test_completion_drops_the_pending_attributes_and_a_claim_drops_the_ttl(world: World) -> None:
    upload_id = world.upload(owner="alice")
    item = world.state().uploads[upload_id]
    assert item["pending_owner"] == "alice"
    assert item["url_expires_at"] == world.get(upload_id).url_expires_at.isoformat()  # type: ignore[union-attr]
    assert item["expires_at"] == pending_expiry(
        world.get(upload_id).created_at, POLICY.url_ttl_seconds
    )

    assert world.ledger.claim_content(upload_id, SHA)
    claimed = world.state().uploads[upload_id]
    assert "expires_at" not in claimed and claimed["pending_owner"] == "alice"

    world.ingest(upload_id)
    done = world.state().uploads[upload_id]
    assert not {"pending_owner", "url_expires_at", "expires_at", "claimed_sha256"} & done.keys()
    assert world.ledger.count_pending("alice", utcnow()) == 0


def test_an_event_for_an_upload_removed_by_ttl_is_counted_nowhere(world: World) -> None:
    upload_id = world.upload(owner="alice")
    # DynamoDB's TTL removed the PENDING upload (its URL expired unused, days ago).
    world.ddb.delete_item(
        TableName=world.resources.uploads_table, Key={"upload_id": {"S": upload_id}}
    )
    before = world.state()

    assert world.ingest(upload_id).outcome is Outcome.UNKNOWN_UPLOAD
    assert world.state() == before  # the staging object is left to the bucket's lifecycle rule


# --- the oracle itself -------------------------------------------------------------------------


def _corrupt(world: World, what: str, upload_id: str) -> None:
    table = {"uploads": world.resources.uploads_table, "holdings": world.resources.holdings_table}
    cas = content_key(SHA)
    if what == "object-missing":
        world.s3.delete_object(Bucket=world.bucket, Key=cas)
    elif what == "object-bytes":
        world.s3.put_object(Bucket=world.bucket, Key=cas, Body=b"not the content")
    elif what == "stray-cas-key":
        world.s3.put_object(Bucket=world.bucket, Key="cas/sha256/nothex", Body=b"")
    elif what == "counter":
        world.ledger.add_to_stats(StatsDelta(bytes_saved=1), shard=3)
    elif what == "upload-count":
        world.ledger.set_upload_count(SHA, 5, utcnow())
    elif what in ("second-stored", "pending-with-hash"):
        status = "STORED" if what == "second-stored" else "PENDING"
        world.ddb.update_item(
            TableName=table["uploads"],
            Key={"upload_id": {"S": upload_id}},
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": status}},
        )
    elif what == "staging-left":
        world.put(upload_id)
    elif what == "holding-missing":
        key = {"owner": {"S": "alice"}, "sha256": {"S": SHA}}
        world.ddb.delete_item(TableName=table["holdings"], Key=key)
    elif what == "holding-count":
        world.ledger.set_holding_count("alice", SHA, 1)
    elif what == "pending-forever":
        pending = world.create(DATA, declare=False)
        world.ddb.update_item(
            TableName=table["uploads"],
            Key={"upload_id": {"S": pending}},
            UpdateExpression="REMOVE expires_at",
        )


@pytest.mark.parametrize(
    ("what", "tag"),
    [
        ("object-missing", "[2]"),
        ("object-bytes", "[1]"),
        ("stray-cas-key", "[1]"),
        ("counter", "[4] counter bytes_saved"),
        ("upload-count", "[6]"),
        ("second-stored", "2 STORED uploads"),
        ("pending-with-hash", "[3]"),
        ("staging-left", "[5]"),
        ("holding-missing", "[8]"),
        ("holding-count", "[8]"),
        ("pending-forever", "[7]"),
    ],
)
def test_the_invariants_catch_each_kind_of_corruption(world: World, what: str, tag: str) -> None:
    first = world.upload(owner="alice")
    second = world.upload(owner="alice", declare=False)
    world.ingest(first)
    world.ingest(second)
    check_invariants(world.resources, world.s3, world.ddb, settled=[first, second])

    _corrupt(world, what, second)

    with pytest.raises(AssertionError) as caught:
        check_invariants(world.resources, world.s3, world.ddb, settled=[first, second])
    assert tag in str(caught.value)


def test_the_reference_model_catches_a_wrong_outcome(world: World) -> None:
    upload_id = world.upload()
    world.ingest(upload_id)
    world.expected.delivered(upload_id, DATA, sha256=hashlib.sha256(b"other").hexdigest())

    with pytest.raises(AssertionError, match="want REJECTED"):
        world.expected.check(world.state())


# --- objects above CopyObject's 5 GiB limit ----------------------------------------------------

MiB = 1024**2


class _CopyLimited:
    """An S3 client whose CopyObject refuses sources above `limit`, as S3 does above 5 GiB."""

    def __init__(self, client: Any, limit: int) -> None:
        self._client = client
        self._limit = limit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def copy_object(self, **kwargs: Any) -> Any:
        source = kwargs["CopySource"]
        head = self._client.head_object(Bucket=source["Bucket"], Key=source["Key"])
        if head["ContentLength"] > self._limit:
            error = {"Code": "InvalidRequest", "Message": "copy source is larger than the maximum"}
            raise ClientError({"Error": error}, "CopyObject")
        return self._client.copy_object(**kwargs)


def test_content_above_the_single_copy_limit_is_copied_in_parts(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 5 GiB scaled down to 5 MiB: a multipart upload's object above it cannot be CopyObject'ed.
    monkeypatch.setattr(s3_adapter, "MAX_SINGLE_PUT_SIZE", 5 * MiB)
    monkeypatch.setattr(
        s3_adapter,
        "_LARGE_COPY",
        TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB),
    )
    monkeypatch.setattr(world.store, "_s3", _CopyLimited(world.s3, 5 * MiB))
    data = bytes(range(256)) * (6 * MiB // 256)
    upload_id = world.upload(data)

    result = world.ingest(upload_id)

    assert result.outcome is Outcome.STORED
    assert world.read(content_key(sha(data))) == data
    world.expected.delivered(upload_id, data)
    world.check(upload_id)


class _ConflictOnce:
    """A client whose next transaction is cancelled by a concurrent write to its last item."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.conflicts = 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def transact_write_items(self, **kwargs: Any) -> Any:
        if self.conflicts:
            self.conflicts -= 1
            reasons = [{"Code": "None"}] * (len(kwargs["TransactItems"]) - 1)
            reasons.append({"Code": "TransactionConflict", "Message": "Transaction is ongoing"})
            error = {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"}
            raise ClientError(
                {"Error": error, "CancellationReasons": reasons},  # type: ignore[typeddict-unknown-key]
                "TransactWriteItems",
            )
        return self._client.transact_write_items(**kwargs)


def test_a_transaction_conflict_on_a_hot_counter_is_retried_in_place(world: World) -> None:
    upload_id = world.upload()
    ledger = Ledger(
        _ConflictOnce(world.ddb),  # type: ignore[arg-type]
        uploads_table=world.ledger.uploads_table,
        contents_table=world.ledger.contents_table,
        holdings_table=world.ledger.holdings_table,
        stats_table=world.ledger.stats_table,
        stats_shards=world.ledger.stats_shards,
    )

    result = ingest_object(staging_key(upload_id), ledger=ledger, store=world.store)

    assert result.outcome is Outcome.STORED
    world.expected.delivered(upload_id, DATA)
    world.check(upload_id)
