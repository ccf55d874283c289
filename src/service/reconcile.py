"""Recount the dedup counters from the uploads and contents tables, and report or repair drift.

The counters only ever move inside the same transaction as the fact they count, so drift means a
bug or a manual edit. Scans are not snapshots, though: an upload completing mid-scan can show up
as a transient difference. A repair is therefore applied only when two consecutive recounts agree
on the same drift, and as an ADD, so increments made meanwhile are kept.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields

from adapters.dynamodb import Ledger
from domain.model import StatsDelta, UploadStatus, stats_delta


@dataclass(frozen=True, slots=True)
class Recount:
    facts: StatsDelta
    counters: StatsDelta
    # sha256 -> (recorded upload_count, uploads actually found)
    upload_counts: dict[str, tuple[int, int]] = field(default_factory=dict)

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
        return self.drift == StatsDelta() and not self.upload_counts


@dataclass(frozen=True, slots=True)
class Report:
    recount: Recount
    repaired: bool


def recount(ledger: Ledger) -> Recount:
    facts = StatsDelta()
    per_content: Counter[str] = Counter()
    for upload in ledger.scan_uploads():
        if upload.status in (UploadStatus.STORED, UploadStatus.DUPLICATE):
            # Duplicates and uploads are counted per upload; files and bytes stored per content.
            delta = stats_delta(upload.status, upload.size)
            facts += StatsDelta(
                uploads=delta.uploads, duplicates=delta.duplicates, bytes_saved=delta.bytes_saved
            )
            if upload.sha256:
                per_content[upload.sha256] += 1
    wrong_counts: dict[str, tuple[int, int]] = {}
    for content in ledger.scan_contents():
        facts += StatsDelta(files=1, bytes_stored=content.size)
        found = per_content.get(content.sha256, 0)
        if content.upload_count != found:
            wrong_counts[content.sha256] = (content.upload_count, found)
    return Recount(facts=facts, counters=ledger.read_stats(), upload_counts=wrong_counts)


def reconcile(ledger: Ledger, *, repair: bool) -> Report:
    first = recount(ledger)
    if not repair or first.clean:
        return Report(first, repaired=False)
    second = recount(ledger)
    if second.drift != first.drift or second.upload_counts != first.upload_counts:
        # Still moving: uploads are completing. Report, change nothing; run again when quiet.
        return Report(second, repaired=False)
    if second.drift != StatsDelta():
        ledger.add_to_stats(second.drift)
    for sha256, (_, found) in second.upload_counts.items():
        ledger.set_upload_count(sha256, found)
    return Report(second, repaired=True)
