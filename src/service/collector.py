"""The garbage collector: removes the objects of contents nobody has referenced for a while.

Only the collector deletes under the content prefix (IAM enforces it). For each candidate that
the collectable index lists (a content unreferenced since before the cutoff, or a collection that
stopped half-way):

1. read the record and decide (domain.lifecycle.collect_decision);
2. mark it COLLECTING with this run's lease (its Lambda deadline plus a margin), guarded by
   "LIVE, unreferenced since before the cutoff" or "COLLECTING under a lease that is over": from
   here on no upload can reference it, so a worker that meets it waits, and no other run
   touches it until the lease ends;
3. delete the object (idempotent);
4. mark it GONE, guarded by the lease being still this run's: a tombstone that keeps its
   generation, so a store whose copy step 3 may have removed no longer finds the record it read,
   and copies again.

The lease is what makes step 3 safe: once the content is GONE a worker may store the bytes
again, so a delete must never come from a run other than the one that tombstones. A run stopped
anywhere (a crash, or Lambda's timeout) leaves the content COLLECTING, still in the index; the
first run after its lease finishes it. Workers that meet it meanwhile fail their message and SQS
delivers it again later. Counters do not move here: they moved when the last reference went.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from domain.lifecycle import Collect, collect_decision, collection_lease
from domain.model import content_key
from domain.ports import LedgerPort, ObjectStorePort
from service import clock


@dataclass(slots=True)
class Collection:
    examined: int = 0
    collected: list[str] = field(default_factory=list)
    # referenced again, already gone, still within the grace period, or held by another run
    skipped: int = 0
    complete: bool = True  # False when the run stopped for time; the next run goes on


def collect(
    *,
    ledger: LedgerPort,
    store: ObjectStorePort,
    grace: timedelta,
    deadline: datetime,
    has_time: Callable[[], bool] = lambda: True,
) -> Collection:
    """`deadline`: when Lambda stops this run at the latest (its timeout from its start)."""
    now = clock.utcnow()
    lease = collection_lease(deadline)
    cutoff = now - grace
    report = Collection()
    for sha256 in ledger.collectable(cutoff):
        if not has_time():
            report.complete = False
            break
        report.examined += 1
        decision = collect_decision(ledger.get_content(sha256), now, grace)
        if decision not in (Collect.MARK, Collect.FINISH) or not ledger.mark_collecting(
            sha256, cutoff, now, lease
        ):
            report.skipped += 1
            continue
        store.delete(content_key(sha256))
        if ledger.mark_gone(sha256, now, lease):
            report.collected.append(sha256)
        else:
            report.skipped += 1  # our lease ended, and another run took the collection over
    return report
