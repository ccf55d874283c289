"""Recount the dedup counters from the uploads, contents and holdings tables; report or repair.

The counters only ever move inside the same transaction as the fact they count, so drift means a
bug or a manual edit. What the facts say:

- files, bytes_stored: one per content record (each content is stored once, whoever holds it);
- uploads: every upload that ended holding content (STORED or DUPLICATE);
- duplicates, bytes_saved: every such upload except the one that stored each content, that is
  every deduplication, within one owner (DUPLICATE) or across owners (STORED by a match).

Holdings are checked against the uploads too: every (owner, content) with held uploads has one
holding, whose upload_count is the number of those uploads; a holding with none is an orphan.

Scans are not snapshots, though: an upload completing mid-scan can show up as a transient
difference. A repair is therefore applied only when two consecutive recounts agree on the same
drift, and as an ADD, so increments made meanwhile are kept. A missing or orphan holding is only
reported: which upload gave an owner a content is a fact no counter can restore.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields

from adapters.dynamodb import Ledger
from domain.model import StatsDelta

# (owner, sha256) -> (the holding's recorded upload_count or None without a holding, uploads found)
HoldingCounts = dict[tuple[str, str], tuple[int | None, int]]


@dataclass(frozen=True, slots=True)
class Recount:
    facts: StatsDelta
    counters: StatsDelta
    # sha256 -> (recorded upload_count, uploads actually found)
    upload_counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    holding_counts: HoldingCounts = field(default_factory=dict)

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
        return self.drift == StatsDelta() and not self.upload_counts and not self.holding_counts


@dataclass(frozen=True, slots=True)
class Report:
    recount: Recount
    repaired: bool


def recount(ledger: Ledger) -> Recount:
    held_uploads = held_bytes = 0
    per_content: Counter[str] = Counter()
    per_holder: Counter[tuple[str, str]] = Counter()
    for upload in ledger.scan_uploads():
        if upload.status.held and upload.sha256:
            held_uploads += 1
            held_bytes += upload.size
            per_content[upload.sha256] += 1
            per_holder[upload.owner, upload.sha256] += 1
    files = stored_bytes = 0
    wrong_counts: dict[str, tuple[int, int]] = {}
    for content in ledger.scan_contents():
        files += 1
        stored_bytes += content.size
        found = per_content.get(content.sha256, 0)
        if content.upload_count != found:
            wrong_counts[content.sha256] = (content.upload_count, found)
    wrong_holdings: HoldingCounts = {}
    for holding in ledger.scan_holdings():
        key = (holding.owner, holding.sha256)
        found = per_holder.pop(key, 0)
        if holding.upload_count != found:
            wrong_holdings[key] = (holding.upload_count, found)
    wrong_holdings |= {key: (None, found) for key, found in per_holder.items()}
    facts = StatsDelta(
        files=files,
        uploads=held_uploads,
        duplicates=held_uploads - files,
        bytes_saved=held_bytes - stored_bytes,
        bytes_stored=stored_bytes,
    )
    return Recount(
        facts=facts,
        counters=ledger.read_stats(),
        upload_counts=wrong_counts,
        holding_counts=wrong_holdings,
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
    for sha256, (_, found) in second.upload_counts.items():
        ledger.set_upload_count(sha256, found)
    for (owner, sha256), (recorded, found) in second.holding_counts.items():
        if recorded is not None and found > 0:
            ledger.set_holding_count(owner, sha256, found)
    return Report(second, repaired=True)
