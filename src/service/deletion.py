"""Deleting uploads: one at a time (DELETE /uploads/{id}) or every upload of one owner (erasure).

A deletion removes the upload and, in the same guarded write, the reference it held: the owner's
holding loses one upload (and goes with the last), the content loses one reference (and with the
last becomes collectable: the collector removes it after the grace period unless an upload
references it again first), and the counters move. The write does not read the counts first; it
assumes the common case and its conditions say when that was wrong (domain.lifecycle.Deletion).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from domain.access import owned
from domain.errors import Conflict, NotFound
from domain.lifecycle import Applied, Removal, plan_deletion, removal, was_deduplicated
from domain.model import Upload, UploadStatus, is_upload_id, staging_key
from domain.ports import LedgerPort, ObjectStorePort
from service import clock
from service.uploads import abort_pending

# Each retry follows a concurrent change to the same holding or content; a handful is plenty.
MAX_ATTEMPTS = 8


class Removed(StrEnum):
    ABORTED = "aborted"  # it was PENDING: it ends REJECTED (aborted) and stays listed
    DELETED = "deleted"  # it is gone, and its reference with it


def remove_upload(
    upload_id: str, *, owner: str, ledger: LedgerPort, store: ObjectStorePort
) -> Removed:
    """DELETE /uploads/{id}: abort the caller's pending upload, or delete a terminal one.

    Another owner's upload, an unknown one and one deleted already all answer NotFound.
    """
    for _ in range(2):
        found = ledger.get_multipart_upload(upload_id) if is_upload_id(upload_id) else None
        upload = owned(found[0] if found else None, owner, upload_id)
        if removal(upload) is Removal.ABORT:
            try:
                abort_pending(upload, found[1] if found else None, ledger=ledger, store=store)
            except Conflict:
                current = ledger.get_upload(upload_id)
                if current is not None and current.status.terminal:
                    continue  # it completed meanwhile: delete it, as asked
                raise
            return Removed.ABORTED
        if not delete_terminal(upload, ledger=ledger, store=store):
            raise NotFound(f"no upload {upload_id}")
        return Removed.DELETED
    raise Conflict(f"upload {upload_id} is changing; try again")


def delete_terminal(upload: Upload, *, ledger: LedgerPort, store: ObjectStorePort) -> bool:
    """Delete a STORED, DUPLICATE or REJECTED upload; False if it was deleted already.

    Its staging object goes first: a worker or an abort that died between the upload's terminal
    write and its own clean-up leaves one, and once the upload is gone nothing else would remove
    it before the bucket's lifecycle rule (the worker leaves the staging bytes of an unknown
    upload alone). Deleting it is idempotent, and harmless if the deletion then fails.
    """
    store.delete(staging_key(upload.upload_id))
    if upload.deduplicated is None and upload.status.held:
        # Completed before the flag was recorded: the content's first upload tells.
        assert upload.sha256 is not None
        content = ledger.get_content(upload.sha256)
        first = content.first_upload_id if content else None
        upload = replace(upload, deduplicated=was_deduplicated(upload, first))
    deletion = plan_deletion(upload)
    at = clock.utcnow()
    for _ in range(MAX_ATTEMPTS):
        changed = ledger.record_deleted(deletion, at)
        if not changed:
            return True
        if Applied.ALREADY_COMPLETE in changed:
            return False
        deletion = deletion.revise(changed)
    raise TooManyChanges(f"the references of upload {upload.upload_id} kept changing")


class TooManyChanges(Exception):
    """Every attempt met a concurrent change to the same holding or content."""


@dataclass(frozen=True, slots=True)
class Erasure:
    """What one erasure call did; call again until `done`."""

    owner: str
    deleted: int  # uploads deleted by this call (aborted ones included)
    aborted: int  # of those, uploads that were still PENDING
    waiting: int  # uploads whose bytes are being stored right now: a later call deletes them
    done: bool  # a whole pass found nothing left to delete and nothing waiting


ERASE_PAGE_SIZE = 100


def erase_owner(
    owner: str, *, ledger: LedgerPort, store: ObjectStorePort, has_time: Callable[[], bool]
) -> Erasure:
    """Delete every upload of one owner, as far as time allows; idempotent and resumable.

    The rule for uploads that arrive meanwhile: a pass deletes what the owner-created index lists
    when it reads each page. An upload created after its page was read is left to the next call,
    so `done` means one whole pass deleted the last upload it saw and found none waiting. To keep
    an owner from uploading again, disable their sign-in first (README: erasing an owner).
    """
    deleted = aborted = waiting = 0
    after: tuple[str, str] | None = None
    while True:
        page, after = ledger.list_uploads(owner, ERASE_PAGE_SIZE, after)
        for upload in page:
            if not has_time():
                return Erasure(owner, deleted, aborted, waiting, done=False)
            if upload.status is UploadStatus.PENDING:
                try:
                    found = ledger.get_multipart_upload(upload.upload_id)
                    if found is None:
                        continue
                    upload = abort_pending(found[0], found[1], ledger=ledger, store=store)
                    aborted += 1
                except Conflict:
                    # Claimed: its bytes are being stored now; it is deleted once it is terminal.
                    waiting += 1
                    continue
                except NotFound:
                    continue
            if delete_terminal(upload, ledger=ledger, store=store):
                deleted += 1
        if after is None:
            return Erasure(owner, deleted, aborted, waiting, done=waiting == 0)
