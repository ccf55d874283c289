"""Recount the dedup counters and reference counts from the tables; report or repair.

The counters only ever move inside the same transaction as the fact they count, so drift means a
bug or a manual edit. What the facts say (domain.lifecycle defines each counter):

- uploads: every live upload (STORED or DUPLICATE, not deleted);
- files, bytes_stored: every LIVE content that at least one live upload references, and its size;
- bytes_saved: the live uploads' bytes minus bytes_stored;
- duplicates: every upload, live or deleted (a deleted one leaves a tombstone for this), that
  ended held without a new copy.

Reference counts are checked too: a LIVE content's upload_count is its live uploads; every
(owner, content) with live uploads has one holding, whose upload_count is their number (a holding
with none is an orphan); an unreferenced LIVE content must be in the collectable index, or it
would never be collected. A live upload that references a content being collected or collected
is reported as dangling: that is data loss, which no counter can repair.

Scans are not snapshots, though: an upload completing mid-scan can show up as a transient
difference. A repair is therefore applied only when two consecutive recounts agree on the same
drift, and as an ADD, so increments made meanwhile are kept. A missing or orphan holding is only
reported: which upload gave an owner a content is a fact no counter can restore.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields

from adapters.dynamodb import Ledger
from domain.lifecycle import was_deduplicated
from domain.model import ContentState, StatsDelta, Upload, UploadStatus
from service import clock

# (owner, sha256) -> (the holding's recorded upload_count or None without a holding, uploads found)
HoldingCounts = dict[tuple[str, str], tuple[int | None, int]]


@dataclass(frozen=True, slots=True)
class Recount:
    facts: StatsDelta
    counters: StatsDelta
    # sha256 -> (recorded upload_count, uploads actually found); also an unreferenced LIVE
    # content missing from the collectable index (recorded == found == 0)
    upload_counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    holding_counts: HoldingCounts = field(default_factory=dict)
    # sha256 -> live uploads that reference a content being collected or collected
    dangling: dict[str, int] = field(default_factory=dict)

    @property
    def drift(self) -> StatsDelta:
        return StatsDelta(
            **{
                f.name: getattr(self.facts, f.name) - getattr(self.counters, f.name)
                for f in fields(StatsDelta)
            }
        )

    @property
    def clean(self) -> bool:
        return (
            self.drift == StatsDelta()
            and not self.upload_counts
            and not self.holding_counts
            and not self.dangling
        )


@dataclass(frozen=True, slots=True)
class Report:
    recount: Recount
    repaired: bool


def recount(ledger: Ledger) -> Recount:
    live_uploads = live_bytes = duplicates = 0
    per_content: Counter[str] = Counter()
    per_holder: Counter[tuple[str, str]] = Counter()
    # Completed before the deduplicated flag was recorded: decided against the content below.
    unflagged: list[Upload] = []
    for upload in ledger.scan_uploads():
        if upload.status.held and upload.sha256:
            live_uploads += 1
            live_bytes += upload.size
            per_content[upload.sha256] += 1
            per_holder[upload.owner, upload.sha256] += 1
        if upload.deduplicated is None and upload.status is UploadStatus.STORED:
            unflagged.append(upload)
        elif was_deduplicated(upload, None):
            duplicates += 1
    files = stored_bytes = 0
    first_uploads: dict[str, str] = {}
    wrong_counts: dict[str, tuple[int, int]] = {}
    dangling: dict[str, int] = {}
    for content in ledger.scan_contents():
        first_uploads[content.sha256] = content.first_upload_id
        found = per_content.get(content.sha256, 0)
        if content.state is not ContentState.LIVE:
            if found:
                dangling[content.sha256] = found
            continue
        if found:
            files += 1
            stored_bytes += content.size
        if content.upload_count != found or (found == 0 and content.zero_since is None):
            wrong_counts[content.sha256] = (content.upload_count, found)
    duplicates += sum(was_deduplicated(u, first_uploads.get(u.sha256 or "")) for u in unflagged)
    wrong_holdings: HoldingCounts = {}
    for holding in ledger.scan_holdings():
        key = (holding.owner, holding.sha256)
        found = per_holder.pop(key, 0)
        if holding.upload_count != found:
            wrong_holdings[key] = (holding.upload_count, found)
    wrong_holdings |= {key: (None, found) for key, found in per_holder.items()}
    facts = StatsDelta(
        files=files,
        uploads=live_uploads,
        duplicates=duplicates,
        bytes_saved=live_bytes - stored_bytes,
        bytes_stored=stored_bytes,
    )
    return Recount(
        facts=facts,
        counters=ledger.read_stats(),
        upload_counts=wrong_counts,
        holding_counts=wrong_holdings,
        dangling=dangling,
    )


def reconcile(ledger: Ledger, *, repair: bool) -> Report:
    first = recount(ledger)
    if not repair or first.clean:
        return Report(first, repaired=False)
    second = recount(ledger)
    if (second.drift, second.upload_counts, second.holding_counts) != (
        first.drift,
        first.upload_counts,
        first.holding_counts,
    ):
        # Still moving: uploads are completing. Report, change nothing; run again when quiet.
        return Report(second, repaired=False)
    if second.drift != StatsDelta():
        ledger.add_to_stats(second.drift)
    now = clock.utcnow()
    for sha256, (_, found) in second.upload_counts.items():
        ledger.set_upload_count(sha256, found, now)
    for (owner, sha256), (recorded, found) in second.holding_counts.items():
        if recorded is not None and found > 0:
            ledger.set_holding_count(owner, sha256, found)
    return Report(second, repaired=True)
