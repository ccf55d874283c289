"""What the worker does with one object that arrived in staging.

Every step is safe to repeat, and any worker may stop between two steps:

1. read the upload; a terminal one only needs its staging object removed;
2. learn the object's size and SHA-256 (HeadObject when S3 verified a checksum, else a stream);
3. read the content record and decide (domain.lifecycle.decide): bytes that differ from the
   declaration are REJECTED, and no counter moves;
4. no live copy (verdict STORE: no record, or a GONE tombstone): claim the content on the upload
   (a guarded write: still PENDING, no other content claimed), copy the bytes to the content key
   (same bytes, same key), then one guarded transaction records content + holding + STORED +
   counters, requiring the content record to be exactly what step 3 read;
5. a LIVE copy (MATCH, or REVIVE when nobody references it any more): one guarded transaction
   records the owner's new holding + STORED + the content's reference + counters;
6. the owner's own content (DUPLICATE, learnt when 5's holding condition fails): one guarded
   transaction counts the upload on the holding + DUPLICATE + reference + counters;
7. a copy being collected (WAIT): pause briefly and read again; the collector's three steps take
   milliseconds, and one stopped half-way is finished by the first run after its lease (the
   message is retried until then);
8. delete the staging object, only ever after the upload is terminal.

Whenever a transaction's condition says the content or the holding changed since it was read
(another upload stored it, its owner deleted it, the collector took it), the worker reads the
content again and decides again; nothing was written, so trying again is safe.

Whether the owner already holds the content is never read beforehand: the holding's condition
inside the completing transaction answers it atomically, so two uploads of one owner racing with
the same content end one STORED and one DUPLICATE, and uploads of different owners both STORED.

Why a copy can never be lost to the collector: the collector removes an object only after marking
its record COLLECTING, which every referencing write refuses, and it tombstones the record (GONE,
same generation) only after the removal; only the run that marked it removes the object, while
its lease lasts, so no delete comes after the tombstone (service.collector). A store requires the
record it read before copying (absent, or the same GONE generation), so a store whose copy a
collection could have removed fails its condition, and the worker copies again.

The claim is what keeps a copy from ever being stranded without its content record: a claimed
upload can only leave PENDING holding the claimed content (the client can no longer abort it,
and DynamoDB's TTL no longer removes it), and a worker that finds its upload no longer PENDING at
the claim (completed or aborted while it was hashing, the staging key maybe refilled by a second
PUT) copies nothing.

A crash before 4's copy or between copy and transaction leaves the upload PENDING and the message
to be redelivered (until then, an object under cas/ may lack its record); a crash after a
transaction leaves only a staging object, removed on the next delivery or by the bucket's
lifecycle rule. An event for an upload that TTL removed (its URL expired unused days ago) or that
its owner deleted finds no upload: UNKNOWN_UPLOAD, counted nowhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from domain.lifecycle import Applied, Verdict, decide, stored_generation
from domain.model import (
    Upload,
    check_bytes,
    complete,
    content_key,
    new_content,
    upload_id_from_staging_key,
)
from domain.ports import LedgerPort, ObjectStorePort
from service import clock

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    STORED = "stored"  # new content, copied to its content key
    MATCHED = "matched"  # STORED for its owner, by matching a content someone else stored
    DUPLICATE = "duplicate"  # the owner already held the content
    REJECTED = "rejected"
    ALREADY_COMPLETE = "already_complete"  # redelivery, or another worker got there first
    NOT_AN_UPLOAD = "not_an_upload"  # a key the API never handed out
    UNKNOWN_UPLOAD = "unknown_upload"  # a well-formed key with no upload behind it
    OBJECT_GONE = "object_gone"  # deleted before it could be read; nothing left to decide


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    upload: Upload | None = None
    downloaded: bool = False

    @property
    def upload_id(self) -> str | None:
        return self.upload.upload_id if self.upload else None


# Decisions one delivery may make before it gives up and lets SQS retry: each retry follows a
# concurrent change (another store, a deletion, a collection), which is rare for one content.
MAX_DECISIONS = 8
# How long a worker waits, in total, for a collection of its content to finish.
COLLECTION_WAIT_SECONDS = 2.0
_WAIT_STEP_SECONDS = 0.1


def ingest_object(key: str, *, ledger: LedgerPort, store: ObjectStorePort) -> Result:
    upload_id = upload_id_from_staging_key(key)
    if upload_id is None:
        return Result(Outcome.NOT_AN_UPLOAD)
    upload = ledger.get_upload(upload_id)
    if upload is None:
        # Left for the lifecycle rule: deleting bytes nobody can account for is not ours to do.
        return Result(Outcome.UNKNOWN_UPLOAD)
    if upload.status.terminal:
        store.delete(key)
        return Result(Outcome.ALREADY_COMPLETE, upload)

    staged = store.inspect(key)
    if staged is None:
        return _after_vanished(upload, ledger)
    facts = staged.facts
    now = clock.utcnow()

    reason = check_bytes(upload, facts)
    if reason is not None:
        rejected = complete(upload, Verdict.REJECT.status, now, sha256=facts.sha256, reason=reason)
        applied = ledger.record_rejected(rejected)
        return _finish(applied, Outcome.REJECTED, rejected, key, store, ledger, staged.downloaded)

    held = False
    waited = 0.0
    content = ledger.get_content(facts.sha256)
    decisions = 0
    while decisions < MAX_DECISIONS:
        verdict = decide(upload, facts, content=content, held=held)
        if verdict is Verdict.WAIT:  # bounded by time, not by MAX_DECISIONS
            if waited >= COLLECTION_WAIT_SECONDS:
                raise ContentBeingCollected(f"{facts.sha256} is being collected; retry later")
            clock.sleep(_WAIT_STEP_SECONDS)
            waited += _WAIT_STEP_SECONDS
            content = ledger.get_content(facts.sha256)
            continue
        decisions += 1
        done = complete(
            upload, verdict.status, now, sha256=facts.sha256, deduplicated=verdict.deduplicated
        )
        if verdict is Verdict.STORE:
            if not ledger.claim_content(upload.upload_id, facts.sha256):
                return _not_claimed(upload, key, store, ledger, staged.downloaded)
            if not store.copy(key, content_key(facts.sha256), etag=staged.etag, size=facts.size):
                return _after_vanished(upload, ledger)
            stored = new_content(upload, facts.sha256, now, generation=stored_generation(content))
            applied = ledger.record_stored(done, stored, replaces=content)
        elif verdict is Verdict.DUPLICATE:
            applied = ledger.record_duplicate(done)
        else:
            applied = ledger.record_match(done, verdict)
        if applied is Applied.ALREADY_HELD and verdict is not Verdict.STORE:
            # The owner holds it, so it is LIVE and referenced: nothing new to read.
            held = True
            continue
        if applied in (Applied.ALREADY_HELD, Applied.NOT_HELD, Applied.CONTENT_CHANGED):
            # Stored by another upload, released by its owner, or collected: read, decide again.
            held = applied is Applied.ALREADY_HELD
            content = ledger.get_content(facts.sha256)
            continue
        return _finish(applied, _OUTCOMES[verdict], done, key, store, ledger, staged.downloaded)
    raise TooManyChanges(f"{facts.sha256} kept changing under upload {upload.upload_id}")


_OUTCOMES = {
    Verdict.STORE: Outcome.STORED,
    Verdict.REVIVE: Outcome.MATCHED,
    Verdict.MATCH: Outcome.MATCHED,
    Verdict.DUPLICATE: Outcome.DUPLICATE,
}


def _finish(
    applied: Applied,
    outcome: Outcome,
    upload: Upload,
    key: str,
    store: ObjectStorePort,
    ledger: LedgerPort,
    downloaded: bool,
) -> Result:
    store.delete(key)
    if applied is Applied.APPLIED:
        return Result(outcome, upload, downloaded)
    return Result(Outcome.ALREADY_COMPLETE, ledger.get_upload(upload.upload_id), downloaded)


class ContentBeingCollected(Exception):
    """The only copy is being removed by a collection that has not finished: SQS retries."""


class TooManyChanges(Exception):
    """The content changed under every decision: extraordinary contention; SQS retries."""


class ClaimConflict(Exception):
    """A pending upload claimed for another content: its bytes changed while it was pending."""


def _not_claimed(
    upload: Upload, key: str, store: ObjectStorePort, ledger: LedgerPort, downloaded: bool
) -> Result:
    current = ledger.get_upload(upload.upload_id)
    if current is None:
        # Completed and then deleted by its owner while we hashed: nothing of it is ours.
        return Result(Outcome.UNKNOWN_UPLOAD, None, downloaded)
    if not current.status.terminal:
        # Staging cannot be refilled while the upload is pending: a human should look (DLQ).
        raise ClaimConflict(f"upload {upload.upload_id} is claimed for another content")
    # Completed or aborted since we read it: whatever staging holds now is not ours to store.
    store.delete(key)
    return Result(Outcome.ALREADY_COMPLETE, current, downloaded)


def _after_vanished(upload: Upload, ledger: LedgerPort) -> Result:
    """The staging object disappeared under us: normally another worker finished this upload."""
    current = ledger.get_upload(upload.upload_id)
    if current is not None and current.status.terminal:
        return Result(Outcome.ALREADY_COMPLETE, current)
    log.warning("staging object of pending upload %s is gone", upload.upload_id)
    return Result(Outcome.OBJECT_GONE, current)
