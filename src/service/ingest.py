"""What the worker does with one object that arrived in staging.

Every step is safe to repeat, and any worker may stop between two steps:

1. read the upload; a terminal one only needs its staging object removed;
2. learn the object's size and SHA-256 (HeadObject when S3 verified a checksum, else a stream);
3. decide (domain.model.decide): bytes that differ from the declaration are REJECTED, and no
   counter moves;
4. unknown content (verdict STORE): claim it on the upload (a guarded write: still PENDING, no
   other content claimed), copy it to its content key (idempotent: same bytes, same key), then
   one guarded transaction records content + holding + STORED + counters; if another upload
   recorded the content first, fall through to 5;
5. known content (verdict MATCH): one guarded transaction records the owner's new holding +
   STORED + upload_count + counters; if the owner already held the content (the holding's
   condition failed), fall through to 6;
6. held content (verdict DUPLICATE): one guarded transaction counts the upload on the owner's
   holding + DUPLICATE + upload_count + counters;
7. delete the staging object, only ever after the upload is terminal.

Whether the owner already holds the content is never read beforehand: the holding's condition
inside the completing transaction answers it atomically, so two uploads of one owner racing with
the same content end one STORED and one DUPLICATE, and uploads of different owners both STORED.
Each fall-through only ever moves from STORE to MATCH to DUPLICATE (a content or holding, once
written, is never removed), so a delivery makes at most three attempts.

The claim is what keeps a copy from ever being stranded without its content record: a claimed
upload can only leave PENDING holding the claimed content (the client can no longer abort it,
and DynamoDB's TTL no longer removes it), and a worker that finds its upload no longer PENDING at
the claim (completed or aborted while it was hashing, the staging key maybe refilled by a second
PUT) copies nothing.

A crash before 4's copy or between copy and transaction leaves the upload PENDING and the message
to be redelivered (until then, an object under cas/ may lack its record); a crash after a
transaction leaves only a staging object, removed on the next delivery or by the bucket's
lifecycle rule. An event for an upload that TTL removed (its URL expired unused days ago) finds
no upload: UNKNOWN_UPLOAD, counted nowhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from adapters.dynamodb import Applied, Ledger
from adapters.s3 import ObjectStore
from domain.model import (
    Upload,
    Verdict,
    check_bytes,
    complete,
    content_key,
    decide,
    new_content,
    upload_id_from_staging_key,
)
from service.clock import utcnow

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


def ingest_object(key: str, *, ledger: Ledger, store: ObjectStore) -> Result:
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
    now = utcnow()

    reason = check_bytes(upload, facts)
    known = reason is None and ledger.get_content(facts.sha256) is not None
    verdict = decide(upload, facts, content_known=known, held=False)
    if verdict is Verdict.REJECT:
        rejected = complete(upload, verdict.status, now, sha256=facts.sha256, reason=reason)
        return _finish(
            ledger.record_rejected(rejected),
            Outcome.REJECTED,
            rejected,
            key,
            store,
            ledger,
            staged.downloaded,
        )

    if verdict is Verdict.STORE:
        if not ledger.claim_content(upload.upload_id, facts.sha256):
            return _not_claimed(upload, key, store, ledger, staged.downloaded)
        if not store.copy(key, content_key(facts.sha256), etag=staged.etag, size=facts.size):
            return _after_vanished(upload, ledger)
        stored = complete(upload, verdict.status, now, sha256=facts.sha256)
        applied = ledger.record_stored(stored, new_content(upload, facts.sha256, now))
        if applied is not Applied.CONTENT_EXISTS:
            return _finish(applied, Outcome.STORED, stored, key, store, ledger, staged.downloaded)
        verdict = decide(upload, facts, content_known=True, held=False)

    if verdict is Verdict.MATCH:
        matched = complete(upload, verdict.status, now, sha256=facts.sha256)
        applied = ledger.record_match(matched)
        if applied is not Applied.ALREADY_HELD:
            return _finish(applied, Outcome.MATCHED, matched, key, store, ledger, staged.downloaded)
        verdict = decide(upload, facts, content_known=True, held=True)

    duplicate = complete(upload, verdict.status, now, sha256=facts.sha256)
    applied = ledger.record_duplicate(duplicate)
    if applied is Applied.NOT_HELD:
        raise HoldingVanished(f"{upload.owner}'s holding of {facts.sha256} disappeared")
    return _finish(applied, Outcome.DUPLICATE, duplicate, key, store, ledger, staged.downloaded)


def _finish(
    applied: Applied,
    outcome: Outcome,
    upload: Upload,
    key: str,
    store: ObjectStore,
    ledger: Ledger,
    downloaded: bool,
) -> Result:
    store.delete(key)
    if applied is Applied.APPLIED:
        return Result(outcome, upload, downloaded)
    return Result(Outcome.ALREADY_COMPLETE, ledger.get_upload(upload.upload_id), downloaded)


class HoldingVanished(Exception):
    """Holdings are never removed: one that vanished is a bug or a manual edit (DLQ)."""


class ClaimConflict(Exception):
    """A pending upload claimed for another content: its bytes changed while it was pending."""


def _not_claimed(
    upload: Upload, key: str, store: ObjectStore, ledger: Ledger, downloaded: bool
) -> Result:
    current = ledger.get_upload(upload.upload_id)
    if current is None or not current.status.terminal:
        # Staging cannot be refilled while the upload is pending: a human should look (DLQ).
        raise ClaimConflict(f"upload {upload.upload_id} is claimed for another content")
    # Completed or aborted since we read it: whatever staging holds now is not ours to store.
    store.delete(key)
    return Result(Outcome.ALREADY_COMPLETE, current, downloaded)


def _after_vanished(upload: Upload, ledger: Ledger) -> Result:
    """The staging object disappeared under us: normally another worker finished this upload."""
    current = ledger.get_upload(upload.upload_id)
    if current is not None and current.status.terminal:
        return Result(Outcome.ALREADY_COMPLETE, current)
    log.warning("staging object of pending upload %s is gone", upload.upload_id)
    return Result(Outcome.OBJECT_GONE, current)
