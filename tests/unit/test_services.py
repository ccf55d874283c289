"""The services over the in-memory fakes (tests/fakes.py): ingest, deletion, erasure, collection,
and the races between them, injected right before the guarded write they race with.

Every test ends with `assert_consistent`, which recounts the counters and the reference counts
from the uploads themselves (domain.lifecycle's definitions), so a step that moves a counter or a
count wrongly fails wherever it happens.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import Conflict, NotFound
from domain.lifecycle import COLLECTION_LEASE_MARGIN
from domain.model import (
    Content,
    ContentState,
    RejectReason,
    StatsDelta,
    Upload,
    UploadStatus,
    content_key,
    new_upload_id,
    staging_key,
)
from domain.multipart import MultipartState, plan_parts
from domain.ports import LedgerPort, ObjectStorePort
from service import clock, deletion
from service import uploads as upload_service
from service.collector import Collection, collect
from service.deletion import Erasure, Removed, erase_owner, remove_upload
from service.ingest import (
    ContentBeingCollected,
    Outcome,
    Result,
    TooManyChanges,
    ingest_object,
)
from tests.fakes import FakeLedger, FakeStore

pytestmark = pytest.mark.unit

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GRACE = timedelta(days=1)
COLLECTOR_TIMEOUT = timedelta(minutes=15)  # template.yaml: CollectorFunction's Timeout
# From a collector run's start until another run may take over what it marked.
LEASE = COLLECTOR_TIMEOUT + COLLECTION_LEASE_MARGIN
X = b"the quick brown fox\n"  # 20 bytes
Y = b"another file entirely, longer\n"  # 30 bytes
SHA_X = hashlib.sha256(X).hexdigest()
SHA_Y = hashlib.sha256(Y).hexdigest()

# The fakes implement the ports (mypy checks this line).
_PORTS: tuple[LedgerPort, ObjectStorePort] = (FakeLedger(), FakeStore())


@dataclass
class World:
    """The ledger, the bucket and the clock, with the steps a test composes."""

    ledger: FakeLedger = field(default_factory=FakeLedger)
    store: FakeStore = field(default_factory=FakeStore)
    now: datetime = START
    slept: float = 0.0
    on_sleep: Callable[[], object] | None = None

    # The clock the services read (service.clock, patched by the `world` fixture).
    def utcnow(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += timedelta(seconds=seconds)
        if self.on_sleep is not None:
            self.on_sleep()

    def monotonic(self) -> float:
        return (self.now - START).total_seconds()

    def advance(self, by: timedelta) -> None:
        self.now += by

    # --- steps ---------------------------------------------------------------------------------

    def new(
        self,
        owner: str,
        data: bytes | None,
        *,
        size: int | None = None,
        declared: str | None = None,
        name: str = "file.txt",
        multipart: bool = False,
    ) -> Upload:
        """A PENDING upload (created 1 ms after the previous one) and its bytes, if any."""
        self.advance(timedelta(milliseconds=1))
        size = size if size is not None else len(data or b"")
        upload = Upload(
            upload_id=new_upload_id(),
            owner=owner,
            filename=name,
            size=size,
            content_type="text/plain",
            created_at=self.now,
            declared_sha256=declared,
            url_expires_at=self.now + timedelta(hours=1),
        )
        state = None
        if multipart:
            s3_id = self.store.start_multipart(staging_key(upload.upload_id), content_type="x/y")
            state = MultipartState(s3_id, plan_parts(max(size, 1)))
        self.ledger.create_upload(upload, state)
        if data is not None:
            self.store.put(staging_key(upload.upload_id), data)
        return upload

    def ingest(self, upload: Upload) -> Result:
        return ingest_object(staging_key(upload.upload_id), ledger=self.ledger, store=self.store)

    def upload(
        self, owner: str, data: bytes, *, size: int | None = None, name: str = "file.txt"
    ) -> Upload:
        """Create an upload and let the worker complete it; the upload as completed."""
        result = self.ingest(self.new(owner, data, size=size, name=name))
        assert result.upload is not None
        return result.upload

    def delete(self, upload: Upload) -> Removed:
        return remove_upload(
            upload.upload_id, owner=upload.owner, ledger=self.ledger, store=self.store
        )

    def collect(self) -> Collection:
        """A collector run, which Lambda stops after COLLECTOR_TIMEOUT."""
        return collect(
            ledger=self.ledger, store=self.store, grace=GRACE, deadline=self.now + COLLECTOR_TIMEOUT
        )

    def collect_after_lease(self) -> Collection:
        """The first collector run after the lease of a run that stopped half-way."""
        self.advance(LEASE + timedelta(milliseconds=1))
        return self.collect()

    def erase(self, owner: str, has_time: Callable[[], bool] = lambda: True) -> Erasure:
        return erase_owner(owner, ledger=self.ledger, store=self.store, has_time=has_time)

    # --- what is there -------------------------------------------------------------------------

    def status(self, upload: Upload) -> UploadStatus | None:
        found = self.ledger.uploads.get(upload.upload_id)
        return found.status if found else None

    def content(self, sha256: str) -> Content:
        return self.ledger.contents[sha256]

    def holding_count(self, owner: str, sha256: str) -> int | None:
        holding = self.ledger.holdings.get((owner, sha256))
        return holding.upload_count if holding else None

    def stored(self, sha256: str) -> bytes | None:
        return self.store.data(content_key(sha256))

    def copies_to(self, sha256: str) -> int:
        return sum(1 for _, target in self.store.copies if target == content_key(sha256))


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    w = World()
    monkeypatch.setattr(clock, "utcnow", w.utcnow)
    monkeypatch.setattr(clock, "sleep", w.sleep)
    monkeypatch.setattr(clock, "monotonic", w.monotonic)
    yield w
    assert_consistent(w)


def definitions(ledger: FakeLedger) -> StatsDelta:
    """The counters as domain.lifecycle defines them, recounted from the uploads alone."""
    live = [u for u in ledger.uploads.values() if u.status.held]
    sizes = {u.sha256: u.size for u in live}
    return StatsDelta(
        files=len(sizes),
        uploads=len(live),
        duplicates=sum(1 for u in ledger.uploads.values() if u.deduplicated),
        bytes_stored=sum(sizes.values()),
        bytes_saved=sum(u.size for u in live) - sum(sizes.values()),
    )


def assert_consistent(w: World) -> None:
    ledger = w.ledger
    assert ledger.read_stats() == definitions(ledger)
    live = [u for u in ledger.uploads.values() if u.status.held]
    references = Counter(u.sha256 for u in live)
    held = Counter((u.owner, u.sha256) for u in live)
    for sha256, c in ledger.contents.items():
        assert c.upload_count == references[sha256], sha256
        # zero_since: from the last reference's release until the tombstone (a half-done
        # collection keeps it); the object: while LIVE, maybe still while COLLECTING.
        assert (c.zero_since is None) == (c.referenced or c.state is ContentState.GONE)
        if c.state is not ContentState.COLLECTING:
            assert (w.stored(sha256) is not None) == (c.state is ContentState.LIVE), c.state
    assert set(references) <= {s for s, c in ledger.contents.items() if c.referenced}
    assert {k: h.upload_count for k, h in ledger.holdings.items()} == dict(held)
    for upload in ledger.uploads.values():
        if upload.status.terminal:
            assert w.store.data(staging_key(upload.upload_id)) is None
    assert set(ledger.claims) <= {
        i for i, u in ledger.uploads.items() if u.status is UploadStatus.PENDING
    }


# --- ingest ------------------------------------------------------------------------------------


def test_new_bytes_are_copied_to_their_content_key_and_stored(world: World) -> None:
    pending = world.new("alice", X, declared=SHA_X)

    result = world.ingest(pending)

    assert result.outcome is Outcome.STORED
    assert world.ledger.get_upload(pending.upload_id) == result.upload
    assert result.upload is not None and result.upload.status is UploadStatus.STORED
    assert result.upload.deduplicated is False
    assert world.stored(SHA_X) == X
    assert world.store.data(staging_key(pending.upload_id)) is None
    stored = world.content(SHA_X)
    assert (stored.state, stored.generation, stored.upload_count) == (ContentState.LIVE, 1, 1)
    assert stored.first_upload_id == pending.upload_id
    assert world.holding_count("alice", SHA_X) == 1
    assert world.ledger.read_stats() == StatsDelta(files=1, uploads=1, bytes_stored=len(X))


def test_another_owner_s_bytes_are_matched_without_a_copy(world: World) -> None:
    world.upload("bob", X)
    pending = world.new("alice", X)

    result = world.ingest(pending)

    assert result.outcome is Outcome.MATCHED
    assert result.upload is not None and result.upload.status is UploadStatus.STORED
    assert result.upload.deduplicated is True
    assert world.copies_to(SHA_X) == 1
    assert world.content(SHA_X).upload_count == 2
    assert world.holding_count("alice", SHA_X) == 1
    assert world.ledger.read_stats() == StatsDelta(
        files=1, uploads=2, duplicates=1, bytes_stored=len(X), bytes_saved=len(X)
    )


def test_an_unreferenced_content_within_its_grace_is_revived_without_a_copy(
    world: World,
) -> None:
    world.delete(world.upload("bob", X))
    assert world.content(SHA_X).zero_since is not None

    result = world.ingest(world.new("alice", X))

    assert result.outcome is Outcome.MATCHED
    assert result.upload is not None and result.upload.deduplicated is True
    revived = world.content(SHA_X)
    assert (revived.state, revived.upload_count, revived.zero_since) == (ContentState.LIVE, 1, None)
    assert world.copies_to(SHA_X) == 1
    assert world.ledger.read_stats() == StatsDelta(
        files=1, uploads=1, duplicates=1, bytes_stored=len(X)
    )
    assert world.collect().collected == []  # no longer collectable, even past the grace
    world.advance(GRACE * 2)
    assert world.collect().collected == []


def test_the_owner_s_own_bytes_again_are_a_duplicate(world: World) -> None:
    first = world.upload("alice", X)

    result = world.ingest(world.new("alice", X))

    assert result.outcome is Outcome.DUPLICATE
    assert result.upload is not None and result.upload.status is UploadStatus.DUPLICATE
    assert world.holding_count("alice", SHA_X) == 2
    assert world.ledger.holdings["alice", SHA_X].upload_id == first.upload_id
    assert world.content(SHA_X).upload_count == 2
    assert world.copies_to(SHA_X) == 1
    assert world.ledger.read_stats() == StatsDelta(
        files=1, uploads=2, duplicates=1, bytes_stored=len(X), bytes_saved=len(X)
    )


@pytest.mark.parametrize(
    ("size", "declared", "reason"),
    [
        (len(X) + 1, None, RejectReason.SIZE_MISMATCH),
        (len(X), SHA_Y, RejectReason.CHECKSUM_MISMATCH),
    ],
)
def test_bytes_unlike_the_declaration_are_rejected_and_count_nothing(
    world: World, size: int, declared: str | None, reason: RejectReason
) -> None:
    world.upload("bob", X)
    before = world.ledger.read_stats()
    pending = world.new("alice", X, size=size, declared=declared)

    result = world.ingest(pending)

    assert result.outcome is Outcome.REJECTED
    assert result.upload is not None and result.upload.reason is reason
    assert world.status(pending) is UploadStatus.REJECTED
    assert world.ledger.read_stats() == before
    assert world.holding_count("alice", SHA_X) is None
    assert world.store.data(staging_key(pending.upload_id)) is None


def test_a_redelivery_of_a_completed_upload_only_removes_its_staging_object(
    world: World,
) -> None:
    pending = world.new("alice", X)
    world.ingest(pending)
    world.store.put(staging_key(pending.upload_id), X)  # an event delivered twice

    result = world.ingest(pending)

    assert result.outcome is Outcome.ALREADY_COMPLETE
    assert world.store.data(staging_key(pending.upload_id)) is None
    assert world.copies_to(SHA_X) == 1


def collected_after_store(world: World, data: bytes) -> None:
    """Bob stores `data`, deletes it, and the collector removes it after the grace period."""
    world.delete(world.upload("bob", data))
    world.advance(GRACE)
    assert world.collect().collected == [hashlib.sha256(data).hexdigest()]


def test_a_store_over_a_gone_tombstone_gets_the_next_generation(world: World) -> None:
    collected_after_store(world, X)
    tombstone = world.content(SHA_X)
    assert (tombstone.state, tombstone.generation) == (ContentState.GONE, 1)
    assert world.stored(SHA_X) is None

    result = world.ingest(world.new("alice", X))

    assert result.outcome is Outcome.STORED
    assert result.upload is not None and result.upload.deduplicated is False
    stored = world.content(SHA_X)
    assert (stored.state, stored.generation, stored.upload_count) == (ContentState.LIVE, 2, 1)
    assert world.stored(SHA_X) == X
    assert world.copies_to(SHA_X) == 2


def half_collected(world: World, data: bytes) -> None:
    """Bob stores `data` and deletes it; a collector past the grace marks it and then stops (its
    Lambda timed out) before removing the object."""
    world.delete(world.upload("bob", data))
    world.advance(GRACE)

    def time_out() -> None:
        raise TimeoutError("the collector ran out of time")

    world.store.before("delete", time_out)
    with pytest.raises(TimeoutError):
        world.collect()
    assert world.content(hashlib.sha256(data).hexdigest()).state is ContentState.COLLECTING


def test_a_worker_waits_for_a_collection_and_stores_the_bytes_again_once_it_is_gone(
    world: World,
) -> None:
    half_collected(world, X)
    pending = world.new("alice", X)
    sleeps = 0

    def collector_runs_on_the_third_sleep() -> None:
        nonlocal sleeps
        sleeps += 1
        if sleeps == 3:
            assert world.collect_after_lease().collected == [SHA_X]

    world.on_sleep = collector_runs_on_the_third_sleep

    result = world.ingest(pending)

    assert result.outcome is Outcome.STORED
    assert sleeps == 3
    stored = world.content(SHA_X)
    assert (stored.state, stored.generation) == (ContentState.LIVE, 2)
    assert world.stored(SHA_X) == X


def test_a_collection_that_never_finishes_leaves_the_upload_pending_for_a_retry(
    world: World,
) -> None:
    half_collected(world, X)
    pending = world.new("alice", X)
    before = world.ledger.read_stats()

    with pytest.raises((ContentBeingCollected, TooManyChanges)):
        world.ingest(pending)

    assert world.status(pending) is UploadStatus.PENDING
    assert world.store.data(staging_key(pending.upload_id)) == X  # for the retry
    assert world.ledger.read_stats() == before
    world.on_sleep = None
    assert world.collect().collected == []  # the stopped run's lease holds it
    assert world.collect_after_lease().collected == [SHA_X]  # the retry then stores
    assert world.ingest(pending).outcome is Outcome.STORED


def test_a_collection_that_never_finishes_raises_content_being_collected(world: World) -> None:
    half_collected(world, X)
    pending = world.new("alice", X)

    with pytest.raises(ContentBeingCollected):
        world.ingest(pending)


def test_a_worker_waits_up_to_collection_wait_seconds_for_a_collection(world: World) -> None:
    half_collected(world, X)
    pending = world.new("alice", X)
    sleeps = 0

    def collector_finishes_after_a_second_and_a_half() -> None:
        nonlocal sleeps
        sleeps += 1
        if sleeps == 15:
            world.collect_after_lease()

    world.on_sleep = collector_finishes_after_a_second_and_a_half

    assert world.ingest(pending).outcome is Outcome.STORED


# --- races, injected right before the guarded write --------------------------------------------


def test_a_store_that_lost_the_race_to_another_owner_s_store_matches_it(world: World) -> None:
    pending = world.new("alice", X)
    world.ledger.before("record_stored", lambda: world.upload("bob", X))

    result = world.ingest(pending)

    assert result.outcome is Outcome.MATCHED
    assert result.upload is not None and result.upload.status is UploadStatus.STORED
    assert world.copies_to(SHA_X) == 2  # both copied: same bytes, same key
    assert world.content(SHA_X).upload_count == 2
    assert world.ledger.read_stats().duplicates == 1


def test_a_store_that_lost_the_race_to_the_owner_s_own_store_is_a_duplicate(
    world: World,
) -> None:
    pending = world.new("alice", X)
    world.ledger.before("record_stored", lambda: world.upload("alice", X))

    result = world.ingest(pending)

    assert result.outcome is Outcome.DUPLICATE
    assert world.holding_count("alice", SHA_X) == 2


def test_a_copy_the_collector_may_have_removed_is_never_trusted(world: World) -> None:
    """Alice read no record and copied; meanwhile bob stored the bytes, deleted them and the
    collector removed the object (alice's copy with it). Her store must not record a content
    whose object is gone: its condition fails, and she copies again."""
    pending = world.new("alice", X)
    world.ledger.before("record_stored", lambda: collected_after_store(world, X))

    result = world.ingest(pending)

    assert result.outcome is Outcome.STORED
    assert world.stored(SHA_X) == X
    stored = world.content(SHA_X)
    assert (stored.state, stored.generation) == (ContentState.LIVE, 2)
    assert world.copies_to(SHA_X) == 3  # alice, bob, alice again


def test_a_store_over_a_tombstone_is_fenced_by_its_generation(world: World) -> None:
    collected_after_store(world, X)  # GONE, generation 1
    pending = world.new("alice", X)
    # Bob stores it again over the same tombstone (generation 2), deletes it, and it is
    # collected again (GONE, generation 2): alice's copy may be the one that was removed.
    world.ledger.before("record_stored", lambda: collected_after_store(world, X))

    result = world.ingest(pending)

    assert result.outcome is Outcome.STORED
    assert world.stored(SHA_X) == X
    assert world.content(SHA_X).generation == 3


@pytest.mark.parametrize("first_owner", ["bob", "alice"])
def test_a_match_whose_content_lost_its_last_reference_revives_it(
    world: World, first_owner: str
) -> None:
    first = world.upload(first_owner, X)
    pending = world.new("alice", X)  # decides MATCH: referenced, and the holding is not read
    world.ledger.before("record_match", lambda: world.delete(first))

    result = world.ingest(pending)

    assert result.outcome is Outcome.MATCHED
    assert result.upload is not None and result.upload.status is UploadStatus.STORED
    revived = world.content(SHA_X)
    assert (revived.upload_count, revived.zero_since) == (1, None)
    assert world.ledger.holdings["alice", SHA_X].upload_id == pending.upload_id
    assert world.ledger.read_stats() == StatsDelta(
        files=1, uploads=1, duplicates=1, bytes_stored=len(X)
    )


def test_a_duplicate_whose_holding_went_meanwhile_is_stored_for_its_owner_again(
    world: World,
) -> None:
    first = world.upload("alice", X)
    pending = world.new("alice", X)
    # MATCH finds alice's holding (ALREADY_HELD), then her first upload goes: NOT_HELD.
    world.ledger.before("record_duplicate", lambda: world.delete(first))

    result = world.ingest(pending)

    assert result.outcome is Outcome.MATCHED  # revived: its only reference had gone
    assert result.upload is not None and result.upload.status is UploadStatus.STORED
    assert world.ledger.holdings["alice", SHA_X].upload_id == pending.upload_id
    assert world.holding_count("alice", SHA_X) == 1


def test_a_revival_whose_content_was_collected_meanwhile_stores_a_fresh_copy(
    world: World,
) -> None:
    world.delete(world.upload("bob", X))
    world.advance(GRACE)
    pending = world.new("alice", X)  # decides REVIVE: LIVE, unreferenced
    world.ledger.before("record_match", lambda: world.collect())

    result = world.ingest(pending)

    assert result.outcome is Outcome.STORED
    assert world.copies_to(SHA_X) == 2  # bob's, then alice's fresh copy
    assert world.stored(SHA_X) == X
    assert world.content(SHA_X).generation == 2


def test_an_upload_aborted_while_it_was_hashed_copies_nothing(world: World) -> None:
    pending = world.new("alice", X)
    world.ledger.before("claim_content", lambda: world.delete(pending))

    result = world.ingest(pending)

    assert result.outcome is Outcome.ALREADY_COMPLETE
    assert world.status(pending) is UploadStatus.REJECTED
    assert world.store.copies == []
    assert SHA_X not in world.ledger.contents


def test_an_upload_whose_bytes_are_being_copied_cannot_be_aborted(world: World) -> None:
    pending = world.new("alice", X)
    refused: list[Exception] = []

    def owner_deletes_it() -> None:
        with pytest.raises(Conflict) as caught:
            world.delete(pending)
        refused.append(caught.value)

    world.store.before("copy", owner_deletes_it)

    assert world.ingest(pending).outcome is Outcome.STORED
    assert refused
    assert world.delete(pending) is Removed.DELETED  # once stored, it can be deleted


# --- deletion ----------------------------------------------------------------------------------


@dataclass
class Uploads:
    alice_x: Upload  # stored X first
    alice_x_again: Upload  # DUPLICATE of it
    bob_x: Upload  # STORED for bob, by matching alice's
    bob_y: Upload  # the only upload of Y
    alice_rejected: Upload


@pytest.fixture
def uploads(world: World) -> Uploads:
    return Uploads(
        alice_x=world.upload("alice", X),
        alice_x_again=world.upload("alice", X),
        bob_x=world.upload("bob", X),
        bob_y=world.upload("bob", Y),
        alice_rejected=world.upload("alice", X, size=3),
    )


@pytest.mark.parametrize(
    ("which", "tombstone", "owner_left", "references_left"),
    [
        ("alice_x_again", True, 1, 2),  # DUPLICATE: neither the owner's nor the content's last
        ("alice_x", False, 1, 2),  # the first store: not the owner's last (the duplicate)
        ("bob_x", True, None, 2),  # a match: the owner's last, not the content's
        ("bob_y", False, None, 0),  # the owner's and the content's last
        ("alice_rejected", False, 2, 3),  # references nothing
    ],
)
def test_a_deletion_removes_the_upload_and_exactly_its_reference(
    world: World,
    uploads: Uploads,
    which: str,
    tombstone: bool,
    owner_left: int | None,
    references_left: int,
) -> None:
    upload: Upload = getattr(uploads, which)
    sha256 = SHA_Y if upload is uploads.bob_y else SHA_X
    before = world.ledger.read_stats()

    assert world.delete(upload) is Removed.DELETED

    assert world.ledger.get_upload(upload.upload_id) is None
    assert world.status(upload) is (UploadStatus.DELETED if tombstone else None)
    assert world.holding_count(upload.owner, sha256) == owner_left
    assert world.content(sha256).upload_count == references_left
    assert (world.content(sha256).zero_since == world.now) is (references_left == 0)
    assert world.stored(sha256) is not None  # removing objects is the collector's job
    assert world.ledger.read_stats().duplicates == before.duplicates  # cumulative
    assert world.ledger.read_stats() == definitions(world.ledger)


def test_deleting_every_upload_one_by_one_keeps_the_counters_exact(
    world: World, uploads: Uploads
) -> None:
    for upload in (uploads.alice_x, uploads.bob_y, uploads.alice_rejected, uploads.bob_x):
        world.delete(upload)
        assert world.ledger.read_stats() == definitions(world.ledger)
    world.delete(uploads.alice_x_again)

    assert world.ledger.read_stats() == StatsDelta(duplicates=2)
    assert world.ledger.holdings == {}
    assert all(c.upload_count == 0 for c in world.ledger.contents.values())


@pytest.mark.parametrize("which", ["alice_x", "alice_x_again", "alice_rejected"])
def test_deleting_twice_answers_not_found(world: World, uploads: Uploads, which: str) -> None:
    upload: Upload = getattr(uploads, which)
    world.delete(upload)
    after_first = world.ledger.read_stats()

    with pytest.raises(NotFound):
        world.delete(upload)
    assert deletion.delete_terminal(upload, ledger=world.ledger, store=world.store) is False
    assert world.ledger.read_stats() == after_first


@pytest.mark.parametrize("upload_id", ["alice's", "0" * 32, "not an id"])
def test_another_owner_s_upload_answers_as_an_unknown_one(
    world: World, uploads: Uploads, upload_id: str
) -> None:
    upload_id = uploads.alice_x.upload_id if upload_id == "alice's" else upload_id
    with pytest.raises(NotFound):
        remove_upload(upload_id, owner="bob", ledger=world.ledger, store=world.store)
    assert world.status(uploads.alice_x) is UploadStatus.STORED


def test_a_pending_upload_completed_while_it_is_aborted_is_deleted_as_asked(
    world: World,
) -> None:
    pending = world.new("alice", X)
    world.ledger.before("record_rejected", lambda: world.ingest(pending))

    assert world.delete(pending) is Removed.DELETED

    assert world.ledger.get_upload(pending.upload_id) is None
    assert world.content(SHA_X).upload_count == 0
    assert world.ledger.read_stats() == StatsDelta()


def test_an_old_upload_s_deduplication_is_resolved_from_the_content(world: World) -> None:
    """Uploads completed before the flag existed: the content's first upload tells."""
    alices, bobs = world.upload("alice", X), world.upload("bob", X)
    for old in (alices, bobs):
        world.ledger.uploads[old.upload_id] = replace(old, deduplicated=None)

    world.delete(bobs)
    world.delete(alices)

    assert world.status(bobs) is UploadStatus.DELETED  # matched: its tombstone stays counted
    assert world.status(alices) is None  # it stored the content first


def test_deleting_a_pending_upload_aborts_it(world: World) -> None:
    pending = world.new("alice", None, size=len(X), multipart=True)
    (s3_upload_id,) = world.store.multipart_uploads

    assert world.delete(pending) is Removed.ABORTED

    aborted = world.ledger.get_upload(pending.upload_id)
    assert aborted is not None and aborted.reason is RejectReason.ABORTED
    assert s3_upload_id not in world.store.multipart_uploads
    assert world.store.data(staging_key(pending.upload_id)) is None
    assert world.ledger.read_stats() == StatsDelta()
    # Bytes arriving late change nothing; a second DELETE removes it.
    world.store.put(staging_key(pending.upload_id), X)
    assert world.ingest(pending).outcome is Outcome.ALREADY_COMPLETE
    assert world.delete(pending) is Removed.DELETED


def test_deleting_a_claimed_upload_is_refused_while_its_bytes_are_stored(world: World) -> None:
    pending = world.new("alice", X)
    assert world.ledger.claim_content(pending.upload_id, SHA_X)  # a worker is copying

    with pytest.raises(Conflict):
        world.delete(pending)

    assert world.status(pending) is UploadStatus.PENDING
    assert world.ingest(pending).outcome is Outcome.STORED  # the worker finishes


# --- erasure -----------------------------------------------------------------------------------


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deletion, "ERASE_PAGE_SIZE", 2)


def alice_everything(world: World) -> list[Upload]:
    """Seven uploads of alice's, of every kind, and two of bob's that share her content."""
    world.upload("bob", X)
    made = [
        world.upload("alice", X),
        world.upload("alice", X),
        world.upload("alice", Y),
        world.upload("alice", Y, size=1),
        world.new("alice", X),
        world.new("alice", None, size=10_000_000, multipart=True),
        world.upload("alice", X, name="third.txt"),
    ]
    world.upload("bob", Y)
    return made


@pytest.mark.usefixtures("small_pages")
def test_erasure_deletes_every_upload_of_the_owner_across_pages(world: World) -> None:
    alice_everything(world)

    erased = world.erase("alice")

    assert erased == Erasure("alice", deleted=7, aborted=2, waiting=0, done=True)
    assert world.ledger.list_uploads("alice", 100, None) == ([], None)
    assert world.ledger.holdings.keys() == {("bob", SHA_X), ("bob", SHA_Y)}
    assert world.store.multipart_uploads == set()
    assert world.ledger.read_stats() == StatsDelta(
        files=2, uploads=2, duplicates=4, bytes_stored=len(X) + len(Y)
    )
    assert world.erase("alice") == Erasure("alice", 0, 0, 0, done=True)


@pytest.mark.usefixtures("small_pages")
def test_erasure_waits_for_an_upload_whose_bytes_are_being_stored(world: World) -> None:
    world.upload("alice", Y)
    claimed = world.new("alice", X)
    world.upload("alice", Y)
    assert world.ledger.claim_content(claimed.upload_id, SHA_X)  # a worker is copying

    first = world.erase("alice")

    assert first == Erasure("alice", deleted=2, aborted=0, waiting=1, done=False)
    assert world.status(claimed) is UploadStatus.PENDING
    assert world.ingest(claimed).outcome is Outcome.STORED  # the worker finishes
    assert world.erase("alice") == Erasure("alice", deleted=1, aborted=0, waiting=0, done=True)
    assert world.ledger.list_uploads("alice", 100, None) == ([], None)


@pytest.mark.usefixtures("small_pages")
def test_erasure_that_runs_out_of_time_resumes_where_nothing_is_left(world: World) -> None:
    alice_everything(world)
    budget = iter([True] * 4)

    first = world.erase("alice", has_time=lambda: next(budget, False))
    second = world.erase("alice")

    assert (first.deleted, first.done) == (4, False)
    assert (second.deleted, second.done) == (3, True)
    assert first.aborted + second.aborted == 2
    assert world.ledger.list_uploads("alice", 100, None) == ([], None)


def test_uploads_are_listed_newest_first_page_by_page_with_filters(world: World) -> None:
    made = [world.upload("alice", X, name=f"n{i}.txt") for i in range(5)]
    world.upload("alice", Y, name="other.txt")
    world.upload("bob", X, name="n.txt")
    newest_first = [u.upload_id for u in reversed(made)]

    seen: list[str] = []
    after: tuple[str, str] | None = None
    while True:
        page, after = world.ledger.list_uploads("alice", 2, after, prefix="n")
        seen += [u.upload_id for u in page]
        if after is None:
            break
    duplicates, _ = world.ledger.list_uploads("alice", 10, None, status=UploadStatus.DUPLICATE)

    assert seen == newest_first
    assert [u.upload_id for u in duplicates] == newest_first[:4]


# --- collection --------------------------------------------------------------------------------


def test_the_collector_leaves_a_content_within_its_grace_period(world: World) -> None:
    world.delete(world.upload("bob", X))
    world.advance(GRACE - timedelta(milliseconds=1))

    report = world.collect()

    assert (report.collected, report.examined) == ([], 0)
    assert world.content(SHA_X).state is ContentState.LIVE
    assert world.stored(SHA_X) == X


def test_the_collector_removes_a_content_unreferenced_past_its_grace(world: World) -> None:
    world.upload("alice", Y)
    world.delete(world.upload("bob", X))
    counters = world.ledger.read_stats()
    world.advance(GRACE)  # exactly at the cutoff: expired

    report = world.collect()

    assert report.collected == [SHA_X]
    assert report.complete
    gone = world.content(SHA_X)
    assert (gone.state, gone.generation, gone.zero_since) == (ContentState.GONE, 1, None)
    assert world.stored(SHA_X) is None
    assert world.stored(SHA_Y) == Y
    assert world.ledger.read_stats() == counters  # counters moved with the last reference
    assert world.collect().collected == []


def test_the_collector_finishes_a_collection_that_stopped_half_way_once_its_lease_is_over(
    world: World,
) -> None:
    half_collected(world, X)
    assert world.stored(SHA_X) == X
    counters = world.ledger.read_stats()
    world.advance(LEASE)  # the stopped run's lease ends only after this instant

    held = world.collect()

    assert (held.collected, held.examined, held.skipped) == ([], 1, 1)
    assert world.content(SHA_X).state is ContentState.COLLECTING
    assert world.stored(SHA_X) == X

    world.advance(timedelta(milliseconds=1))
    report = world.collect()

    assert report.collected == [SHA_X]
    assert world.content(SHA_X).state is ContentState.GONE
    assert world.stored(SHA_X) is None
    assert world.ledger.read_stats() == counters


def test_a_second_run_leaves_a_stalled_run_its_collection_so_no_new_copy_is_deleted(
    world: World,
) -> None:
    """Run A marks X COLLECTING and stalls before its delete. Were run B to finish A's work, a
    worker would store X anew, and A, resuming, would delete the new copy of a LIVE content."""
    world.delete(world.upload("bob", X))
    world.advance(GRACE)
    pending = world.new("alice", X)
    second: list[Collection] = []

    def while_a_stalls() -> None:
        second.append(world.collect())  # B
        with pytest.raises(ContentBeingCollected):
            world.ingest(pending)  # the worker waits for A, and its message is retried

    world.store.before("delete", while_a_stalls)
    first = world.collect()  # A

    assert (second[0].collected, second[0].skipped) == ([], 1)
    assert first.collected == [SHA_X]
    assert world.ingest(pending).outcome is Outcome.STORED  # the retry stores X anew
    assert world.stored(SHA_X) == X
    assert world.content(SHA_X).state is ContentState.LIVE


def test_a_run_whose_lease_was_taken_over_does_not_tombstone(world: World) -> None:
    """Lambda stops a run at its deadline, so this cannot happen on AWS; if a run did outlive
    its lease, its tombstone must not land on the collection another run now holds."""
    world.delete(world.upload("bob", X))
    world.advance(GRACE)

    def taken_over() -> None:
        world.advance(LEASE + timedelta(milliseconds=1))
        assert world.collect().collected == [SHA_X]

    world.store.before("delete", taken_over)
    late = world.collect()

    assert (late.collected, late.skipped) == ([], 1)
    assert world.content(SHA_X).state is ContentState.GONE


@pytest.mark.parametrize("moment", ["get_content", "mark_collecting"])
def test_the_collector_skips_a_content_revived_after_it_was_listed(
    world: World, moment: str
) -> None:
    world.delete(world.upload("bob", X))
    world.advance(GRACE)
    world.ledger.before(moment, lambda: world.upload("alice", X))

    report = world.collect()

    assert (report.collected, report.examined, report.skipped) == ([], 1, 1)
    revived = world.content(SHA_X)
    assert (revived.state, revived.upload_count) == (ContentState.LIVE, 1)
    assert world.stored(SHA_X) == X


def test_the_collector_stops_when_out_of_time_and_the_next_run_goes_on(world: World) -> None:
    world.delete(world.upload("bob", X))
    world.delete(world.upload("bob", Y))
    world.advance(GRACE)
    budget = iter([True])

    first = collect(
        ledger=world.ledger,
        store=world.store,
        grace=GRACE,
        deadline=world.now + COLLECTOR_TIMEOUT,
        has_time=lambda: next(budget, False),
    )
    second = world.collect()

    assert (len(first.collected), first.complete) == (1, False)
    assert sorted(first.collected + second.collected) == sorted([SHA_X, SHA_Y])


# --- GET /uploads/{id}?wait=N (service.uploads.await_upload) ----------------------------------


def _await(world: World, upload: Upload, seconds: float, *, owner: str = "alice") -> Upload:
    return upload_service.await_upload(
        upload.upload_id, owner=owner, ledger=world.ledger, seconds=seconds
    )


def _count_reads(world: World) -> list[str]:
    reads: list[str] = []
    get_upload = world.ledger.get_upload

    def counted(upload_id: str) -> Upload | None:
        reads.append(upload_id)
        return get_upload(upload_id)

    world.ledger.get_upload = counted  # type: ignore[method-assign]
    return reads


def test_waiting_on_a_terminal_upload_answers_at_once(world: World) -> None:
    stored = world.upload("alice", X)
    reads = _count_reads(world)

    assert _await(world, stored, 20).status is UploadStatus.STORED
    assert (len(reads), world.slept) == (1, 0.0)


def test_waiting_answers_as_soon_as_the_worker_completes_the_upload(world: World) -> None:
    pending = world.new("alice", X)
    world.on_sleep = lambda: world.ingest(pending) if world.slept >= 0.25 else None

    done = _await(world, pending, 20)

    # Reads at 0, 0.1 and 0.25 s: the first read after the worker's transaction answers.
    assert done.status is UploadStatus.STORED
    assert world.slept == pytest.approx(0.25)


def test_a_wait_that_runs_out_answers_pending_after_a_bounded_number_of_reads(
    world: World,
) -> None:
    pending = world.new("alice", None)
    reads = _count_reads(world)

    answer = _await(world, pending, upload_service.MAX_WAIT_SECONDS)

    assert answer.status is UploadStatus.PENDING
    assert world.slept == pytest.approx(upload_service.MAX_WAIT_SECONDS)
    # 0.1 s apart growing 1.5x to one a second: 25 reads in 20 s, not a busy client's hundreds.
    assert len(reads) == 25


def test_wait_zero_reads_once(world: World) -> None:
    pending = world.new("alice", None)
    reads = _count_reads(world)

    assert _await(world, pending, 0).status is UploadStatus.PENDING
    assert (len(reads), world.slept) == (1, 0.0)


def test_waiting_on_another_owners_upload_answers_not_found_without_waiting(
    world: World,
) -> None:
    pending = world.new("alice", None)

    with pytest.raises(NotFound):
        _await(world, pending, 20, owner="bob")
    assert world.slept == 0.0


def test_an_upload_aborted_while_waited_on_answers_rejected(world: World) -> None:
    pending = world.new("alice", None)
    world.on_sleep = lambda: upload_service.abort_upload(
        pending.upload_id, owner="alice", ledger=world.ledger, store=world.store
    )

    answer = _await(world, pending, 20)

    assert (answer.status, answer.reason) == (
        UploadStatus.REJECTED,
        RejectReason.ABORTED,
    )
