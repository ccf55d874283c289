"""Every decision about an upload's and a content's life, as pure functions over plain values.

The services read what they need, ask these functions what to do, and make the guarded write the
answer names; when the write's condition fails, the store says which fact changed (`Applied`) and
the service reads again and asks again. Nothing here does I/O, so the whole decision table is
unit-tested in milliseconds (tests/unit/test_lifecycle.py).

An upload's life:  PENDING -> STORED | DUPLICATE | REJECTED -> (deleted)
A content's life:  (absent) -> LIVE -> [unreferenced for the grace period] -> COLLECTING -> GONE
                   (a GONE tombstone becomes LIVE again when its bytes are stored again)

The counters (stats shards) and what each means, kept exact by moving them only inside the same
transaction as the fact they count:

- files: distinct contents held (LIVE with at least one live upload);
- uploads: live uploads (STORED or DUPLICATE, not deleted);
- bytes_stored: the bytes of those contents, each counted once;
- bytes_saved: what dedup saves now: the live uploads' bytes minus bytes_stored;
- duplicates: every upload that ever ended held without a new copy (cumulative: a deletion does
  not undo a duplicate that was avoided).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from domain.model import (
    Content,
    ContentState,
    ObjectFacts,
    StatsDelta,
    Upload,
    UploadStatus,
    check_bytes,
)


class Applied(StrEnum):
    """What a guarded write found: applied, or which fact had changed (nothing was written)."""

    APPLIED = "applied"
    ALREADY_COMPLETE = "already_complete"  # the upload had left PENDING (or was deleted)
    CONTENT_CHANGED = "content_changed"  # the content is not in the state the decision read
    ALREADY_HELD = "already_held"  # the owner held this content before this upload completed
    NOT_HELD = "not_held"  # the holding this write relied on does not exist (any more)
    HOLDING_CHANGED = "holding_changed"  # the holding's count is not the one assumed


# --- ingest ------------------------------------------------------------------------------------


class Verdict(StrEnum):
    """What the worker does with one upload whose bytes arrived."""

    REJECT = "reject"  # the bytes are not what the client declared: nothing is held or counted
    STORE = "store"  # no live copy: copy the bytes to the content key, the owner holds it
    REVIVE = "revive"  # a LIVE copy nobody references (awaiting collection): reference it again
    MATCH = "match"  # a referenced content, new to this owner: no copy, the owner holds it
    DUPLICATE = "duplicate"  # the owner already holds this content
    WAIT = "wait"  # the collector is removing the only copy: decide again once it is GONE

    @property
    def status(self) -> UploadStatus:
        return _VERDICT_STATUS[self]

    @property
    def deduplicated(self) -> bool:
        return self in (Verdict.REVIVE, Verdict.MATCH, Verdict.DUPLICATE)


_VERDICT_STATUS = {
    Verdict.REJECT: UploadStatus.REJECTED,
    Verdict.STORE: UploadStatus.STORED,
    Verdict.REVIVE: UploadStatus.STORED,
    Verdict.MATCH: UploadStatus.STORED,
    Verdict.DUPLICATE: UploadStatus.DUPLICATE,
    Verdict.WAIT: UploadStatus.PENDING,
}


def decide(upload: Upload, facts: ObjectFacts, *, content: Content | None, held: bool) -> Verdict:
    """The worker's decision from what it read of the content and learned of the holding.

    `held` is never read beforehand: the worker assumes False and the holding's condition in the
    completing transaction tells it otherwise (ALREADY_HELD), atomically.
    """
    if check_bytes(upload, facts) is not None:
        return Verdict.REJECT
    if content is None or content.state is ContentState.GONE:
        return Verdict.STORE
    if content.state is ContentState.COLLECTING:
        return Verdict.WAIT
    if held:
        return Verdict.DUPLICATE
    return Verdict.MATCH if content.referenced else Verdict.REVIVE


def stored_generation(content: Content | None) -> int:
    """The generation a new store of the bytes gets: one past the tombstone it replaces."""
    return 1 if content is None else content.generation + 1


def stats_delta(verdict: Verdict, size: int) -> StatsDelta:
    """How the counters move when an upload completes with this verdict.

    A match of another owner's content counts as a duplicate although its owner is told STORED:
    the counters are global savings, the status is what the owner holds.
    """
    if verdict is Verdict.STORE:
        return StatsDelta(files=1, uploads=1, bytes_stored=size)
    if verdict is Verdict.REVIVE:  # held again without a copy; saves nothing yet
        return StatsDelta(files=1, uploads=1, duplicates=1, bytes_stored=size)
    if verdict in (Verdict.MATCH, Verdict.DUPLICATE):
        return StatsDelta(uploads=1, duplicates=1, bytes_saved=size)
    return StatsDelta()


# --- deletion ----------------------------------------------------------------------------------


class Removal(StrEnum):
    """What DELETE /uploads/{id} does to an upload of the caller's."""

    ABORT = "abort"  # PENDING: it ends REJECTED (aborted) and stays visible; a claimed one refuses
    DELETE = "delete"  # terminal: the upload goes, and with it its reference to the content


def removal(upload: Upload) -> Removal:
    if upload.status is UploadStatus.DELETED:
        raise ValueError(f"upload {upload.upload_id} is already deleted")
    return Removal.ABORT if upload.status is UploadStatus.PENDING else Removal.DELETE


@dataclass(frozen=True, slots=True)
class Deletion:
    """One guarded write that removes a terminal upload and its references.

    The counts are not read first: the write assumes the likelier case (plan_deletion) and its
    conditions say when that was wrong (HOLDING_CHANGED, CONTENT_CHANGED); `revise` then flips
    the assumption that failed. Either guess is safe; a right one saves a second transaction.
    """

    upload: Upload
    last_of_owner: bool = False  # the holding goes (else its count drops by one)
    last_reference: bool = False  # the content becomes unreferenced (else its count drops)

    @property
    def references(self) -> bool:
        """A held upload references its content; a REJECTED one references nothing."""
        return self.upload.status.held

    @property
    def tombstone(self) -> bool:
        """Only a deduplicated upload leaves a tombstone: the duplicate it avoided stays counted.

        The flag must be known (was_deduplicated resolves an old upload's first)."""
        if self.upload.deduplicated is None and self.upload.status.held:
            raise ValueError(f"upload {self.upload.upload_id}: deduplicated not resolved")
        return bool(self.upload.deduplicated)

    @property
    def delta(self) -> StatsDelta:
        if not self.references:
            return StatsDelta()
        size = self.upload.size
        if self.last_reference:
            return StatsDelta(files=-1, uploads=-1, bytes_stored=-size)
        return StatsDelta(uploads=-1, bytes_saved=-size)

    def revise(self, changed: set[Applied]) -> Deletion:
        return Deletion(
            self.upload,
            last_of_owner=self.last_of_owner ^ (Applied.HOLDING_CHANGED in changed),
            last_reference=self.last_reference ^ (Applied.CONTENT_CHANGED in changed),
        )


def was_deduplicated(upload: Upload, first_upload_id: str | None) -> bool:
    """Did this upload avoid a copy? Recorded on every upload completed since deletion exists;
    for older ones, a DUPLICATE did, and a STORED one did unless it stored the content first."""
    if upload.deduplicated is not None:
        return upload.deduplicated
    if upload.status is UploadStatus.DUPLICATE:
        return True
    if upload.status is UploadStatus.STORED:
        return first_upload_id is not None and first_upload_id != upload.upload_id
    return False


def plan_deletion(upload: Upload) -> Deletion:
    """The first guess: a STORED upload is usually its owner's only upload of the content (a
    DUPLICATE never is the first), and an upload that stored the bytes itself usually their only
    reference, while one that deduplicated them shares them (the bench's cost model measured
    the difference: most deletions then need one transaction, not two)."""
    if removal(upload) is not Removal.DELETE:
        raise ValueError(f"upload {upload.upload_id} is {upload.status}: abort it instead")
    return Deletion(
        upload,
        last_of_owner=upload.status is UploadStatus.STORED,
        last_reference=upload.status.held and not upload.deduplicated,
    )


# --- collection --------------------------------------------------------------------------------


class Collect(StrEnum):
    """What the collector does with one content it found in the collectable index."""

    SKIP = "skip"  # referenced again, already gone, or still within its grace period
    MARK = "mark"  # unreferenced past the grace: mark COLLECTING, then remove the object
    FINISH = "finish"  # a collection whose run is certainly over: remove the object, tombstone
    HELD = "held"  # being collected by a run that may still be running: leave it to that run


def collect_decision(content: Content | None, now: datetime, grace: timedelta) -> Collect:
    """A COLLECTING content belongs to the run that marked it until that run's lease ends.

    Only that run may delete the object: a run that deleted it on its behalf and tombstoned it
    would let a worker store the bytes anew, and the first run, stalled before its own delete,
    would then remove the new copy of a LIVE content. Lambda kills the first run at its deadline,
    so a run that finds the lease over takes the collection over, and finishes it.
    """
    if content is None or content.state is ContentState.GONE:
        return Collect.SKIP
    if content.state is ContentState.COLLECTING:
        if content.collecting_until is not None and now <= content.collecting_until:
            return Collect.HELD
        return Collect.FINISH
    if content.referenced or content.zero_since is None:
        return Collect.SKIP
    return Collect.MARK if content.zero_since <= now - grace else Collect.SKIP


# Added to a collector run's deadline for its lease on what it marks: a request the run sent just
# before Lambda stopped it may still reach S3, and hosts' clocks differ by a little.
COLLECTION_LEASE_MARGIN = timedelta(seconds=60)


def collection_lease(deadline: datetime) -> datetime:
    """Until when a collector run that Lambda stops at `deadline` may still delete objects."""
    return deadline + COLLECTION_LEASE_MARGIN


# How long a GONE tombstone is kept (DynamoDB TTL) before the table forgets the content entirely.
# A worker's read-then-store of one delivery spans at most the worker's timeout (minutes): a
# tombstone that outlives that by days cannot vanish between the read and the store it fences.
TOMBSTONE_RETENTION = timedelta(days=7)
