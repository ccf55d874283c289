"""The garbage collector: removes the objects of contents nobody has referenced for a while.

Only the collector deletes under the content prefix (IAM enforces it). For each candidate that
the collectable index lists (a content unreferenced since before the cutoff, or a collection that
stopped half-way):

1. read the record and decide (domain.lifecycle.collect_decision);
2. mark it COLLECTING, guarded by "LIVE, unreferenced since before the cutoff" (or already
   COLLECTING): from here on no upload can reference it, so a worker that meets it waits;
3. delete the object (idempotent);
4. mark it GONE, a tombstone that keeps its generation: a store whose copy step 3 may have
   removed no longer finds the record it read, and copies again.

A collector stopped anywhere leaves the content COLLECTING (still in the index): the next run
finishes it. Counters do not move here: they moved when the last reference went.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from domain.lifecycle import Collect, collect_decision
from domain.model import content_key
from domain.ports import LedgerPort, ObjectStorePort
from service import clock


@dataclass(slots=True)
class Collection:
    examined: int = 0
    collected: list[str] = field(default_factory=list)
    skipped: int = 0  # referenced again, already gone, or still within the grace period
    complete: bool = True  # False when the run stopped for time; the next run goes on


def collect(
    *,
    ledger: LedgerPort,
    store: ObjectStorePort,
    grace: timedelta,
    has_time: Callable[[], bool] = lambda: True,
) -> Collection:
    now = clock.utcnow()
    cutoff = now - grace
    report = Collection()
    for sha256 in ledger.collectable(cutoff):
        if not has_time():
            report.complete = False
            break
        report.examined += 1
        decision = collect_decision(ledger.get_content(sha256), now, grace)
        if decision is Collect.SKIP or not ledger.mark_collecting(sha256, cutoff, now):
            report.skipped += 1
            continue
        store.delete(content_key(sha256))
        if ledger.mark_gone(sha256, now):
            report.collected.append(sha256)
        else:
            report.skipped += 1  # another run finished it
    return report
