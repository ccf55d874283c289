"""What the health view reports, and what in it needs an operator's attention."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class QueueDepth:
    waiting: int  # visible: not yet received by a worker
    in_flight: int  # received, not yet deleted (being processed, or about to be retried)
    delayed: int = 0


@dataclass(frozen=True, slots=True)
class Operations:
    """The last reconciliation and collection, as their functions recorded them."""

    reconciled_at: datetime | None = None
    reconcile_clean: bool | None = None
    reconcile_drift: int | None = None  # the sum of every difference found
    reconcile_repaired: bool | None = None
    collected_at: datetime | None = None
    collected: int | None = None  # contents the last run removed
    collection_complete: bool | None = None  # False: it stopped for time; the next run goes on


@dataclass(frozen=True, slots=True)
class CollectorBacklog:
    unreferenced: int  # LIVE contents nobody references (and collections under way)
    due: int  # of those, unreferenced for longer than the grace period: the next run's work


@dataclass(frozen=True, slots=True)
class Health:
    ingest: QueueDepth
    dead_letters: QueueDepth
    oldest_message_age_seconds: float | None
    operations: Operations
    backlog: CollectorBacklog
    attention: list[str] = field(default_factory=list)


# A daily reconciliation older than this has stopped running.
RECONCILIATION_MAX_AGE = timedelta(days=2)


def attention(
    *,
    ingest: QueueDepth,
    dead_letters: QueueDepth,
    oldest_message_age_seconds: float | None,
    operations: Operations,
    now: datetime,
    oldest_message_alarm_seconds: int,
) -> list[str]:
    """What an operator should look at, in words (each matches an alarm of the template)."""
    found = []
    if dead_letters.waiting + dead_letters.in_flight > 0:
        found.append(
            f"{dead_letters.waiting + dead_letters.in_flight} message(s) in the dead-letter "
            "queue (DeadLetterQueueAlarm)"
        )
    age = oldest_message_age_seconds
    if age is not None and age > oldest_message_alarm_seconds:
        found.append(
            f"the oldest ingest message is {age:.0f} s old, above {oldest_message_alarm_seconds} "
            "s (IngestBacklogAlarm)"
        )
    if operations.reconcile_clean is False:
        found.append(
            f"the last reconciliation found drift {operations.reconcile_drift} (CounterDriftAlarm)"
        )
    last = operations.reconciled_at
    if last is not None and now - last > RECONCILIATION_MAX_AGE:
        found.append(f"the last reconciliation ran at {last.isoformat()} (ReconcileErrorsAlarm)")
    return found
