"""The decision table of domain.lifecycle, exhaustively: what the worker, a deletion and the
collector do in every state, and how each move keeps the counters equal to their definitions."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from domain.lifecycle import (
    TOMBSTONE_RETENTION,
    Applied,
    Collect,
    Deletion,
    Removal,
    Verdict,
    collect_decision,
    decide,
    plan_deletion,
    removal,
    stats_delta,
    stored_generation,
    was_deduplicated,
)
from domain.model import (
    Content,
    ContentState,
    ObjectFacts,
    RejectReason,
    StatsDelta,
    Upload,
    UploadStatus,
)

pytestmark = pytest.mark.unit

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DATA = b"the same bytes, twice\n"
SHA = hashlib.sha256(DATA).hexdigest()
SIZE = len(DATA)
UPLOAD_ID = "0" * 31 + "1"
OTHER_ID = "0" * 31 + "2"
MS = timedelta(milliseconds=1)
GRACE = timedelta(days=1)
LIVE, COLLECTING, GONE = ContentState.LIVE, ContentState.COLLECTING, ContentState.GONE
STORED, DUPLICATE, REJECTED = UploadStatus.STORED, UploadStatus.DUPLICATE, UploadStatus.REJECTED
PENDING, DELETED = UploadStatus.PENDING, UploadStatus.DELETED


def upload(
    status: UploadStatus = PENDING,
    *,
    deduplicated: bool | None = None,
    declared: str | None = SHA,
    upload_id: str = UPLOAD_ID,
) -> Upload:
    terminal = status is not PENDING
    return Upload(
        upload_id=upload_id,
        owner="alice",
        filename="notes.txt",
        size=SIZE,
        content_type="text/plain",
        created_at=AT,
        declared_sha256=declared,
        status=status,
        sha256=SHA if status.held else None,
        completed_at=AT if terminal else None,
        reason=RejectReason.SIZE_MISMATCH if status is REJECTED else None,
        deduplicated=deduplicated,
    )


def content(
    state: ContentState = LIVE,
    *,
    references: int = 1,
    zero_since: datetime | None = None,
    generation: int = 1,
) -> Content:
    return Content(
        sha256=SHA,
        size=SIZE,
        content_type="text/plain",
        created_at=AT,
        last_uploaded_at=AT,
        upload_count=references,
        first_upload_id=OTHER_ID,
        state=state,
        zero_since=zero_since,
        generation=generation,
    )


# --- decide: every (bytes, content, held) ------------------------------------------------------

GOOD = ObjectFacts(size=SIZE, sha256=SHA)
WRONG_SIZE = ObjectFacts(size=SIZE + 1, sha256=SHA)
WRONG_HASH = ObjectFacts(size=SIZE, sha256=hashlib.sha256(b"other").hexdigest())

CONTENTS = {
    "no record": None,
    "LIVE, referenced": content(LIVE, references=2),
    "LIVE, unreferenced": content(LIVE, references=0, zero_since=AT),
    "COLLECTING": content(COLLECTING, references=0, zero_since=AT),
    "GONE": content(GONE, references=0),
}

# (content, held) -> verdict, for bytes that are what the client declared.
DECISIONS = [
    ("no record", False, Verdict.STORE),
    ("no record", True, Verdict.STORE),
    ("LIVE, referenced", False, Verdict.MATCH),
    ("LIVE, referenced", True, Verdict.DUPLICATE),
    ("LIVE, unreferenced", False, Verdict.REVIVE),
    ("LIVE, unreferenced", True, Verdict.DUPLICATE),
    ("COLLECTING", False, Verdict.WAIT),
    ("COLLECTING", True, Verdict.WAIT),
    ("GONE", False, Verdict.STORE),
    ("GONE", True, Verdict.STORE),
]


@pytest.mark.parametrize(("state", "held", "verdict"), DECISIONS)
def test_bytes_as_declared_are_decided_by_the_content_and_the_holding(
    state: str, held: bool, verdict: Verdict
) -> None:
    assert decide(upload(), GOOD, content=CONTENTS[state], held=held) is verdict


@pytest.mark.parametrize("facts", [WRONG_SIZE, WRONG_HASH], ids=["size", "sha256"])
@pytest.mark.parametrize("held", [False, True])
@pytest.mark.parametrize("state", list(CONTENTS))
def test_bytes_unlike_the_declaration_are_rejected_whatever_is_stored(
    state: str, held: bool, facts: ObjectFacts
) -> None:
    assert decide(upload(), facts, content=CONTENTS[state], held=held) is Verdict.REJECT


def test_without_a_declared_hash_only_the_size_must_match() -> None:
    assert decide(upload(declared=None), WRONG_HASH, content=None, held=False) is Verdict.STORE
    assert decide(upload(declared=None), WRONG_SIZE, content=None, held=False) is Verdict.REJECT


def test_every_decision_table_row_is_listed_once() -> None:
    assert {(s, h) for s, h, _ in DECISIONS} == {(s, h) for s in CONTENTS for h in (False, True)}
    assert len(DECISIONS) == len(CONTENTS) * 2


@pytest.mark.parametrize(
    ("verdict", "status", "deduplicated"),
    [
        (Verdict.REJECT, REJECTED, False),
        (Verdict.STORE, STORED, False),
        (Verdict.REVIVE, STORED, True),
        (Verdict.MATCH, STORED, True),
        (Verdict.DUPLICATE, DUPLICATE, True),
        (Verdict.WAIT, PENDING, False),
    ],
)
def test_each_verdict_tells_the_owner_a_status_and_whether_a_copy_was_avoided(
    verdict: Verdict, status: UploadStatus, deduplicated: bool
) -> None:
    assert verdict.status is status
    assert verdict.deduplicated is deduplicated


# --- the counters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdict", "delta"),
    [
        (Verdict.STORE, StatsDelta(files=1, uploads=1, bytes_stored=SIZE)),
        (Verdict.REVIVE, StatsDelta(files=1, uploads=1, duplicates=1, bytes_stored=SIZE)),
        (Verdict.MATCH, StatsDelta(uploads=1, duplicates=1, bytes_saved=SIZE)),
        (Verdict.DUPLICATE, StatsDelta(uploads=1, duplicates=1, bytes_saved=SIZE)),
        (Verdict.REJECT, StatsDelta()),
        (Verdict.WAIT, StatsDelta()),
    ],
)
def test_each_verdict_moves_the_counters(verdict: Verdict, delta: StatsDelta) -> None:
    assert stats_delta(verdict, SIZE) == delta


def definitions(live: list[tuple[str, int]], deduplicated_ever: int) -> StatsDelta:
    """The counters from lifecycle's definitions, over the live uploads as (sha256, size)."""
    sizes = dict(live)
    stored = sum(sizes.values())
    return StatsDelta(
        files=len(sizes),
        uploads=len(live),
        duplicates=deduplicated_ever,
        bytes_stored=stored,
        bytes_saved=sum(size for _, size in live) - stored,
    )


def deletion(status: UploadStatus, dedup: bool, *, last_of_owner: bool, last: bool) -> Deletion:
    return Deletion(upload(status, deduplicated=dedup), last_of_owner, last_reference=last)


ONE = [(SHA, SIZE)]
TWO = [(SHA, SIZE), (SHA, SIZE)]


@pytest.mark.parametrize(
    ("moves", "live", "deduplicated_ever"),
    [
        # one upload stores the content, then is deleted: nothing is left but nothing negative
        ([stats_delta(Verdict.STORE, SIZE)], ONE, 0),
        (
            [
                stats_delta(Verdict.STORE, SIZE),
                deletion(STORED, False, last_of_owner=True, last=True).delta,
            ],
            [],
            0,
        ),
        # a second owner matches it; either upload is then deleted
        ([stats_delta(Verdict.STORE, SIZE), stats_delta(Verdict.MATCH, SIZE)], TWO, 1),
        (
            [
                stats_delta(Verdict.STORE, SIZE),
                stats_delta(Verdict.MATCH, SIZE),
                deletion(STORED, True, last_of_owner=True, last=False).delta,
            ],
            ONE,
            1,
        ),
        (
            [
                stats_delta(Verdict.STORE, SIZE),
                stats_delta(Verdict.MATCH, SIZE),
                deletion(STORED, False, last_of_owner=True, last=False).delta,
                deletion(STORED, True, last_of_owner=True, last=True).delta,
            ],
            [],
            1,
        ),
        # the owner uploads it again (DUPLICATE), then deletes that upload
        (
            [
                stats_delta(Verdict.STORE, SIZE),
                stats_delta(Verdict.DUPLICATE, SIZE),
                deletion(DUPLICATE, True, last_of_owner=False, last=False).delta,
            ],
            ONE,
            1,
        ),
        # the content loses its last reference and is revived by another upload
        (
            [
                stats_delta(Verdict.STORE, SIZE),
                deletion(STORED, False, last_of_owner=True, last=True).delta,
                stats_delta(Verdict.REVIVE, SIZE),
            ],
            ONE,
            1,
        ),
        # a rejected upload, and its deletion, count nothing
        (
            [
                stats_delta(Verdict.REJECT, SIZE),
                deletion(REJECTED, False, last_of_owner=False, last=False).delta,
            ],
            [],
            0,
        ),
    ],
)
def test_every_sequence_of_moves_sums_to_the_counters_definitions(
    moves: list[StatsDelta], live: list[tuple[str, int]], deduplicated_ever: int
) -> None:
    total = StatsDelta()
    for move in moves:
        total += move
    assert total == definitions(live, deduplicated_ever)


# --- deletion ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (PENDING, Removal.ABORT),
        (STORED, Removal.DELETE),
        (DUPLICATE, Removal.DELETE),
        (REJECTED, Removal.DELETE),
    ],
)
def test_a_pending_upload_is_aborted_and_a_terminal_one_deleted(
    status: UploadStatus, expected: Removal
) -> None:
    assert removal(upload(status, deduplicated=False)) is expected


def test_a_deleted_upload_cannot_be_removed_again() -> None:
    with pytest.raises(ValueError, match="already deleted"):
        removal(upload(DELETED, deduplicated=True))


@pytest.mark.parametrize(
    ("status", "deduplicated", "guess"),
    [
        # The upload that gave its owner the content, and stored the bytes: likely the last of
        # both.
        (STORED, False, (True, True)),
        # ... that matched another owner's bytes: the owner's last, but the bytes are shared.
        (STORED, True, (True, False)),
        # A DUPLICATE: the owner held the content before it, and it was deduplicated.
        (DUPLICATE, True, (False, False)),
        # A REJECTED upload references nothing.
        (REJECTED, False, (False, False)),
    ],
)
def test_a_deletion_first_guesses_the_likelier_case(
    status: UploadStatus, deduplicated: bool, guess: tuple[bool, bool]
) -> None:
    planned = plan_deletion(upload(status, deduplicated=deduplicated))
    assert (planned.last_of_owner, planned.last_reference) == guess


@pytest.mark.parametrize("status", [PENDING, DELETED])
def test_only_a_terminal_upload_has_a_deletion_plan(status: UploadStatus) -> None:
    with pytest.raises(ValueError):
        plan_deletion(upload(status, deduplicated=False))


@pytest.mark.parametrize(
    ("status", "last_of_owner", "last", "delta"),
    [
        (STORED, False, False, StatsDelta(uploads=-1, bytes_saved=-SIZE)),
        (STORED, True, False, StatsDelta(uploads=-1, bytes_saved=-SIZE)),
        (STORED, False, True, StatsDelta(files=-1, uploads=-1, bytes_stored=-SIZE)),
        (STORED, True, True, StatsDelta(files=-1, uploads=-1, bytes_stored=-SIZE)),
        (DUPLICATE, False, False, StatsDelta(uploads=-1, bytes_saved=-SIZE)),
        (DUPLICATE, True, True, StatsDelta(files=-1, uploads=-1, bytes_stored=-SIZE)),
        (REJECTED, False, False, StatsDelta()),
        (REJECTED, True, True, StatsDelta()),
    ],
)
def test_a_deletion_moves_the_counters_by_whose_last_reference_it_is(
    status: UploadStatus, last_of_owner: bool, last: bool, delta: StatsDelta
) -> None:
    planned = deletion(status, False, last_of_owner=last_of_owner, last=last)
    assert planned.delta == delta
    assert planned.references is status.held


def test_a_deletion_never_undoes_a_duplicate_avoided() -> None:
    for last in (False, True):
        assert deletion(DUPLICATE, True, last_of_owner=last, last=last).delta.duplicates == 0


BOTH = {Applied.HOLDING_CHANGED, Applied.CONTENT_CHANGED}


@pytest.mark.parametrize("start", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize(
    ("changed", "flips"),
    [
        (set(), (False, False)),
        ({Applied.HOLDING_CHANGED}, (True, False)),
        ({Applied.CONTENT_CHANGED}, (False, True)),
        (BOTH, (True, True)),
        ({Applied.ALREADY_COMPLETE}, (False, False)),
    ],
)
def test_revise_flips_exactly_the_assumptions_that_failed(
    start: tuple[bool, bool], changed: set[Applied], flips: tuple[bool, bool]
) -> None:
    planned = Deletion(upload(STORED, deduplicated=False), start[0], start[1])
    revised = planned.revise(changed)
    assert revised.upload == planned.upload
    assert revised.last_of_owner is (start[0] ^ flips[0])
    assert revised.last_reference is (start[1] ^ flips[1])


@pytest.mark.parametrize(
    ("status", "deduplicated", "tombstone"),
    [
        (STORED, True, True),
        (STORED, False, False),
        (DUPLICATE, True, True),
        (REJECTED, False, False),
        (REJECTED, None, False),  # an old rejected upload: never deduplicated
    ],
)
def test_only_a_deduplicated_upload_leaves_a_tombstone(
    status: UploadStatus, deduplicated: bool | None, tombstone: bool
) -> None:
    assert Deletion(upload(status, deduplicated=deduplicated)).tombstone is tombstone


@pytest.mark.parametrize("status", [STORED, DUPLICATE])
def test_a_held_upload_s_unresolved_flag_must_be_resolved_before_its_deletion(
    status: UploadStatus,
) -> None:
    with pytest.raises(ValueError, match="deduplicated not resolved"):
        _ = Deletion(upload(status, deduplicated=None)).tombstone


@pytest.mark.parametrize(
    ("status", "deduplicated", "first_upload_id", "expected"),
    [
        # recorded since deletion exists: the flag answers, whatever the content says
        (STORED, True, UPLOAD_ID, True),
        (STORED, False, OTHER_ID, False),
        (DUPLICATE, True, None, True),
        (REJECTED, False, None, False),
        # older uploads: a DUPLICATE avoided a copy; a STORED one unless it stored it first
        (DUPLICATE, None, UPLOAD_ID, True),
        (DUPLICATE, None, None, True),
        (STORED, None, UPLOAD_ID, False),
        (STORED, None, OTHER_ID, True),
        (STORED, None, None, False),
        (REJECTED, None, OTHER_ID, False),
        (PENDING, None, OTHER_ID, False),
    ],
)
def test_was_deduplicated(
    status: UploadStatus, deduplicated: bool | None, first_upload_id: str | None, expected: bool
) -> None:
    assert was_deduplicated(upload(status, deduplicated=deduplicated), first_upload_id) is expected


# --- collection --------------------------------------------------------------------------------

NOW = AT + timedelta(days=10)
CUTOFF = NOW - GRACE


def unreferenced(state: ContentState, since: datetime | None) -> Content:
    return content(state, references=0, zero_since=since)


def leased(until: datetime) -> Content:
    """Marked COLLECTING by a run that may run until `until`."""
    return replace(unreferenced(COLLECTING, CUTOFF - GRACE), collecting_until=until)


@pytest.mark.parametrize(
    ("record", "decision"),
    [
        pytest.param(None, Collect.SKIP, id="no record"),
        pytest.param(content(LIVE), Collect.SKIP, id="referenced"),
        pytest.param(
            content(LIVE, zero_since=CUTOFF - GRACE), Collect.SKIP, id="referenced, stale zero"
        ),
        pytest.param(unreferenced(LIVE, None), Collect.SKIP, id="unreferenced, no zero_since"),
        pytest.param(unreferenced(LIVE, CUTOFF - GRACE), Collect.MARK, id="long expired"),
        pytest.param(unreferenced(LIVE, CUTOFF - MS), Collect.MARK, id="just expired"),
        pytest.param(unreferenced(LIVE, CUTOFF), Collect.MARK, id="exactly at the cutoff"),
        pytest.param(unreferenced(LIVE, CUTOFF + MS), Collect.SKIP, id="just within grace"),
        pytest.param(unreferenced(LIVE, NOW), Collect.SKIP, id="unreferenced now"),
        pytest.param(
            unreferenced(COLLECTING, CUTOFF - GRACE), Collect.FINISH, id="half-done, no lease"
        ),
        pytest.param(
            unreferenced(COLLECTING, NOW), Collect.FINISH, id="half-done, no lease, in grace"
        ),
        pytest.param(
            unreferenced(COLLECTING, None), Collect.FINISH, id="half-done, no lease, no zero"
        ),
        pytest.param(leased(NOW + MS), Collect.HELD, id="another run's lease"),
        pytest.param(leased(NOW), Collect.HELD, id="a lease ending now"),
        pytest.param(leased(NOW - MS), Collect.FINISH, id="a lease just over"),
        pytest.param(unreferenced(GONE, None), Collect.SKIP, id="gone"),
        pytest.param(unreferenced(GONE, CUTOFF - GRACE), Collect.SKIP, id="gone, stale zero"),
    ],
)
def test_the_collector_marks_only_what_stayed_unreferenced_through_the_grace(
    record: Content | None, decision: Collect
) -> None:
    assert collect_decision(record, NOW, GRACE) is decision


def test_without_grace_a_content_unreferenced_now_is_collectable_now() -> None:
    unreferenced = content(LIVE, references=0, zero_since=NOW)
    assert collect_decision(unreferenced, NOW, timedelta(0)) is Collect.MARK


@pytest.mark.parametrize(
    ("record", "generation"),
    [
        (None, 1),
        (content(GONE, references=0, generation=1), 2),
        (content(GONE, references=0, generation=7), 8),
        (content(GONE, references=0, generation=0), 1),  # a record from before generations
    ],
)
def test_a_store_gets_one_generation_past_the_record_it_replaces(
    record: Content | None, generation: int
) -> None:
    assert stored_generation(record) == generation


def test_a_tombstone_outlives_any_worker_s_read_then_store_by_far() -> None:
    worker_timeout = timedelta(minutes=15)  # the longest a Lambda function runs
    assert worker_timeout * 100 < TOMBSTONE_RETENTION
