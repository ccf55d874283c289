"""In-memory stand-ins for the ledger (domain.ports.LedgerPort) and the bucket (ObjectStorePort).

FakeLedger mirrors src/adapters/dynamodb.py and must be kept in step with it: every guarded write
evaluates all of its actions' conditions against the current state first, then applies all of its
effects or none (a TransactWriteItems), and answers with the same `Applied` values the adapter
derives from the failed actions (`_first`'s priority rules; record_deleted's set). What the
adapter keeps in DynamoDB attributes the fake keeps as the domain's dataclasses: an upload's claim
and multipart state beside it, the collectable index derived from `zero_since`, the stats shards
as one StatsDelta total. FakeStore mirrors src/adapters/s3.py's ObjectStore.

Races are injected with `before`: `ledger.before("record_match", fn)` runs `fn()` once, right
before the next call of `record_match` (fn may call the services, which use the fakes too).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from functools import wraps
from typing import Concatenate

from adapters.dynamodb import UnexpectedCondition
from adapters.s3 import ObjectChanged, StagedObject
from domain.lifecycle import Applied, Deletion, Verdict, stats_delta
from domain.model import (
    Content,
    ContentState,
    Holding,
    ObjectFacts,
    StatsDelta,
    Upload,
    UploadStatus,
    new_holding,
)
from domain.multipart import MultipartState


class _Hooks:
    def __init__(self) -> None:
        self._before: dict[str, list[Callable[[], object]]] = defaultdict(list)

    def before(self, method: str, action: Callable[[], object]) -> None:
        """Run `action()` once, right before the next call of `method`."""
        if not callable(getattr(self, method, None)):
            raise AttributeError(f"{type(self).__name__} has no method {method}")
        self._before[method].append(action)

    def _run_hooks(self, method: str) -> None:
        for action in self._before.pop(method, []):
            action()


def _hooked[S: _Hooks, **P, R](
    method: Callable[Concatenate[S, P], R],
) -> Callable[Concatenate[S, P], R]:
    @wraps(method)
    def call(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
        self._run_hooks(method.__name__)
        return method(self, *args, **kwargs)

    return call


# One action of a transaction: its condition (evaluated when the action is built, before any
# effect) and its effect.
_Action = tuple[bool, Callable[[], None]]


def _first(failed: list[int], meaning: dict[int, Applied]) -> Applied:
    """As the adapter's: action 0's failure wins, then the first failure that has a meaning."""
    if not failed:
        return Applied.APPLIED
    if failed[0] == 0:
        return Applied.ALREADY_COMPLETE
    for index in failed:
        if index in meaning:
            return meaning[index]
    raise UnexpectedCondition(f"transaction action(s) {failed} failed their conditions")


class FakeLedger(_Hooks):
    def __init__(self) -> None:
        super().__init__()
        self.uploads: dict[str, Upload] = {}  # deleted deduplicated uploads as DELETED tombstones
        self.claims: dict[str, str] = {}  # upload_id -> claimed sha256 (only while PENDING)
        self.multipart: dict[str, MultipartState] = {}  # only while PENDING
        self.contents: dict[str, Content] = {}
        self.holdings: dict[tuple[str, str], Holding] = {}
        self.stats = StatsDelta()

    # --- reads ---------------------------------------------------------------------------------

    @_hooked
    def get_upload(self, upload_id: str) -> Upload | None:
        upload = self.uploads.get(upload_id)
        return None if upload is None or upload.status is UploadStatus.DELETED else upload

    @_hooked
    def get_multipart_upload(self, upload_id: str) -> tuple[Upload, MultipartState | None] | None:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.status is UploadStatus.DELETED:
            return None
        return upload, self.multipart.get(upload_id)

    @_hooked
    def get_content(self, sha256: str) -> Content | None:
        return self.contents.get(sha256)

    @_hooked
    def get_holding(self, owner: str, sha256: str) -> Holding | None:
        return self.holdings.get((owner, sha256))

    @_hooked
    def list_uploads(
        self,
        owner: str,
        limit: int,
        after: tuple[str, str] | None,
        *,
        status: UploadStatus | None = None,
        prefix: str | None = None,
    ) -> tuple[list[Upload], tuple[str, str] | None]:
        """The owner-created index, newest first: `limit` items are read from `after` on, then
        filtered. Like DynamoDB, a page that reached `limit` returns its last item's position
        even when nothing follows (the next page is then empty)."""
        index = sorted(
            (
                (u.created_at.isoformat(), u.upload_id)
                for u in self.uploads.values()
                if u.owner == owner
            ),
            reverse=True,
        )
        if after is not None:
            index = [position for position in index if position < after]
        read = index[:limit]
        page = [
            u
            for u in (self.uploads[upload_id] for _, upload_id in read)
            if (status is None or u.status is status)
            and (not prefix or u.filename.startswith(prefix))
        ]
        return page, (read[-1] if len(read) == limit else None)

    @_hooked
    def collectable(self, cutoff: datetime) -> Iterator[str]:
        """The collectable index, by shard then zero_since. Its keys come with zero_since (the
        last reference released) and go with a revival, a new store and mark_gone, never with
        mark_collecting: a half-done collection stays listed."""
        listed = sorted(
            (c.sha256[0], c.zero_since, c.sha256)
            for c in self.contents.values()
            if c.state is not ContentState.GONE and c.zero_since is not None
            if c.zero_since <= cutoff
        )
        return iter([sha256 for _, _, sha256 in listed])

    @_hooked
    def read_stats(self) -> StatsDelta:
        return self.stats

    # --- writes --------------------------------------------------------------------------------

    @_hooked
    def create_upload(self, upload: Upload, multipart: MultipartState | None = None) -> None:
        if upload.status is not UploadStatus.PENDING:
            raise ValueError("a new upload is PENDING (record_held_duplicate records the others)")
        if upload.upload_id in self.uploads:
            raise ValueError(f"upload {upload.upload_id} exists")
        self.uploads[upload.upload_id] = upload
        if multipart is not None:
            self.multipart[upload.upload_id] = multipart

    @_hooked
    def claim_content(self, upload_id: str, sha256: str) -> bool:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.status is not UploadStatus.PENDING:
            return False
        if self.claims.get(upload_id, sha256) != sha256:
            return False
        self.claims[upload_id] = sha256
        return True

    @_hooked
    def record_stored(self, upload: Upload, content: Content, replaces: Content | None) -> Applied:
        current = self.contents.get(content.sha256)
        if replaces is None:
            unchanged = current is None
        else:
            unchanged = (
                current is not None
                and current.state is ContentState.GONE
                and current.generation == replaces.generation
            )
        put_content = (unchanged, lambda: self.contents.__setitem__(content.sha256, content))
        failed = self._transact(
            [
                self._complete_upload(upload),
                put_content,
                self._put_holding(upload),
                self._bump_stats(upload, Verdict.STORE),
            ]
        )
        return _first(failed, {1: Applied.CONTENT_CHANGED, 2: Applied.ALREADY_HELD})

    @_hooked
    def record_match(self, upload: Upload, verdict: Verdict) -> Applied:
        if verdict not in (Verdict.MATCH, Verdict.REVIVE):
            raise ValueError(f"not a match: {verdict}")
        failed = self._transact(
            [
                self._complete_upload(upload),
                self._put_holding(upload),
                self._reference(upload, revive=verdict is Verdict.REVIVE),
                self._bump_stats(upload, verdict),
            ]
        )
        return _first(failed, {1: Applied.ALREADY_HELD, 2: Applied.CONTENT_CHANGED})

    @_hooked
    def record_duplicate(self, upload: Upload) -> Applied:
        failed = self._transact(
            [
                self._complete_upload(upload),
                self._count_holding(upload),
                self._reference(upload, revive=False),
                self._bump_stats(upload, Verdict.DUPLICATE),
            ]
        )
        return _first(failed, {1: Applied.NOT_HELD, 2: Applied.CONTENT_CHANGED})

    @_hooked
    def record_held_duplicate(self, upload: Upload) -> Applied:
        if upload.status is not UploadStatus.DUPLICATE:
            raise ValueError("a held duplicate is born DUPLICATE")
        put = (upload.upload_id not in self.uploads, lambda: self._put_upload(upload))
        failed = self._transact(
            [
                put,
                self._count_holding(upload),
                self._reference(upload, revive=False),
                self._bump_stats(upload, Verdict.DUPLICATE),
            ]
        )
        return _first(failed, {1: Applied.NOT_HELD, 2: Applied.NOT_HELD})

    @_hooked
    def record_rejected(self, upload: Upload) -> Applied:
        return _first(self._transact([self._complete_upload(upload, unclaimed=True)]), {})

    @_hooked
    def record_deleted(self, deletion: Deletion, at: datetime) -> set[Applied]:
        upload = deletion.upload
        current = self.uploads.get(upload.upload_id)
        # A tombstone has no owner: it never matches.
        guard = (
            current is not None
            and current.status is upload.status
            and current.owner == upload.owner
        )
        if deletion.tombstone:
            tombstone = _tombstone(upload, at)
            first = (guard, lambda: self._put_upload(tombstone))
        else:
            first = (guard, lambda: self._drop_upload(upload.upload_id))
        actions = [first]
        if deletion.references:
            actions += [
                self._release_holding(upload, last=deletion.last_of_owner),
                self._release_content(upload, last=deletion.last_reference, at=at),
                self._add_stats(deletion.delta),
            ]
        failed = self._transact(actions)
        if 0 in failed:
            return {Applied.ALREADY_COMPLETE}
        meaning = {1: Applied.HOLDING_CHANGED, 2: Applied.CONTENT_CHANGED}
        return {meaning[i] for i in failed}

    @_hooked
    def mark_collecting(self, sha256: str, cutoff: datetime, at: datetime, lease: datetime) -> bool:
        content = self.contents.get(sha256)
        if content is None:
            return False
        expired = (
            content.state is ContentState.LIVE
            and content.upload_count == 0
            and content.zero_since is not None
            and content.zero_since <= cutoff
        )
        lease_over = content.state is ContentState.COLLECTING and (
            content.collecting_until is None or content.collecting_until < at
        )
        if not (expired or lease_over):
            return False
        self.contents[sha256] = replace(
            content, state=ContentState.COLLECTING, collecting_until=lease
        )
        return True

    @_hooked
    def mark_gone(self, sha256: str, at: datetime, lease: datetime) -> bool:
        content = self.contents.get(sha256)
        if (
            content is None
            or content.state is not ContentState.COLLECTING
            or content.collecting_until != lease
        ):
            return False
        self.contents[sha256] = replace(
            content, state=ContentState.GONE, zero_since=None, collecting_until=None
        )
        return True

    # --- transaction parts (each: its condition, its effect) -----------------------------------

    def _transact(self, actions: list[_Action]) -> list[int]:
        failed = [i for i, (ok, _) in enumerate(actions) if not ok]
        if not failed:
            for _, effect in actions:
                effect()
        return failed

    def _put_upload(self, upload: Upload) -> None:
        """A Put replaces the whole item: a claim and multipart state end with PENDING."""
        self.uploads[upload.upload_id] = upload
        self.claims.pop(upload.upload_id, None)
        self.multipart.pop(upload.upload_id, None)

    def _drop_upload(self, upload_id: str) -> None:
        del self.uploads[upload_id]
        self.claims.pop(upload_id, None)
        self.multipart.pop(upload_id, None)

    def _complete_upload(self, upload: Upload, *, unclaimed: bool = False) -> _Action:
        current = self.uploads.get(upload.upload_id)
        ok = current is not None and current.status is UploadStatus.PENDING
        if unclaimed:
            ok = ok and upload.upload_id not in self.claims
        return ok, lambda: self._put_upload(upload)

    def _put_holding(self, upload: Upload) -> _Action:
        key = (upload.owner, _sha(upload))
        return key not in self.holdings, lambda: self.holdings.__setitem__(key, new_holding(upload))

    def _count_holding(self, upload: Upload) -> _Action:
        key = (upload.owner, _sha(upload))

        def count() -> None:
            holding = self.holdings[key]
            self.holdings[key] = replace(holding, upload_count=holding.upload_count + 1)

        return key in self.holdings, count

    def _reference(self, upload: Upload, *, revive: bool) -> _Action:
        sha256 = _sha(upload)
        content = self.contents.get(sha256)
        ok = (
            content is not None
            and content.state is ContentState.LIVE
            and (content.upload_count == 0 if revive else content.upload_count > 0)
        )
        at = upload.completed_at
        assert at is not None

        def reference() -> None:
            c = self.contents[sha256]
            if revive:
                self.contents[sha256] = replace(
                    c, upload_count=1, last_uploaded_at=at, zero_since=None
                )
            else:
                self.contents[sha256] = replace(
                    c, upload_count=c.upload_count + 1, last_uploaded_at=at
                )

        return ok, reference

    def _release_holding(self, upload: Upload, *, last: bool) -> _Action:
        key = (upload.owner, _sha(upload))
        holding = self.holdings.get(key)
        ok = holding is not None and (
            holding.upload_count == 1 if last else holding.upload_count > 1
        )

        def release() -> None:
            if last:
                del self.holdings[key]
            else:
                held = self.holdings[key]
                self.holdings[key] = replace(held, upload_count=held.upload_count - 1)

        return ok, release

    def _release_content(self, upload: Upload, *, last: bool, at: datetime) -> _Action:
        sha256 = _sha(upload)
        content = self.contents.get(sha256)
        ok = (
            content is not None
            and content.state is ContentState.LIVE
            and (content.upload_count == 1 if last else content.upload_count > 1)
        )

        def release() -> None:
            c = self.contents[sha256]
            if last:  # unreferenced from now: into the collectable index, its grace starting
                self.contents[sha256] = replace(c, upload_count=0, zero_since=at)
            else:
                self.contents[sha256] = replace(c, upload_count=c.upload_count - 1)

        return ok, release

    def _bump_stats(self, upload: Upload, verdict: Verdict) -> _Action:
        return self._add_stats(stats_delta(verdict, upload.size))

    def _add_stats(self, delta: StatsDelta) -> _Action:
        def add() -> None:
            self.stats += delta

        return True, add


def _sha(upload: Upload) -> str:
    assert upload.sha256 is not None
    return upload.sha256


def _tombstone(upload: Upload, at: datetime) -> Upload:
    """What the adapter reads back from tombstone_item: no owner, no name, the avoided duplicate."""
    return Upload(
        upload_id=upload.upload_id,
        owner="",
        filename="",
        size=0,
        content_type="",
        created_at=upload.created_at,
        status=UploadStatus.DELETED,
        completed_at=at,
        deduplicated=True,
    )


@dataclass(frozen=True, slots=True)
class _Object:
    data: bytes
    etag: str
    checksummed: bool  # S3 verified a full-object SHA-256 on arrival: no download to hash it


class FakeStore(_Hooks):
    """The bucket as a dict of keys; ETags are the bytes' MD5, as S3's for a single PUT."""

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[str, _Object] = {}
        self.copies: list[tuple[str, str]] = []  # (source, target) of every copy made
        self.multipart_uploads: set[str] = set()  # S3 upload ids not yet completed or aborted

    def put(self, key: str, data: bytes, *, checksummed: bool = True) -> None:
        etag = f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'
        self.objects[key] = _Object(data, etag, checksummed)

    def start_multipart(self, key: str, *, content_type: str) -> str:
        s3_upload_id = f"mpu-{len(self.multipart_uploads)}-{key}"
        self.multipart_uploads.add(s3_upload_id)
        return s3_upload_id

    def data(self, key: str) -> bytes | None:
        found = self.objects.get(key)
        return found.data if found else None

    @_hooked
    def inspect(self, key: str) -> StagedObject | None:
        found = self.objects.get(key)
        if found is None:
            return None
        facts = ObjectFacts(size=len(found.data), sha256=hashlib.sha256(found.data).hexdigest())
        return StagedObject(facts=facts, etag=found.etag, downloaded=not found.checksummed)

    @_hooked
    def copy(self, source_key: str, target_key: str, *, etag: str, size: int | None = None) -> bool:
        found = self.objects.get(source_key)
        if found is None:
            return False
        if found.etag != etag:
            raise ObjectChanged(source_key)
        self.objects[target_key] = found
        self.copies.append((source_key, target_key))
        return True

    @_hooked
    def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    @_hooked
    def abort_multipart(self, key: str, s3_upload_id: str) -> None:
        self.multipart_uploads.discard(s3_upload_id)
