"""GET /admin/health: is ingest flowing, is anything stuck, did the background jobs run?"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from domain.health import CollectorBacklog, Health, Operations, QueueDepth, attention
from service import clock


class OperationsLedger(Protocol):
    def read_operations(self) -> Operations: ...

    def collector_backlog(self, cutoff: datetime) -> CollectorBacklog: ...


class QueuesPort(Protocol):
    ingest_url: str
    dead_letter_url: str

    def depth(self, queue_url: str) -> QueueDepth: ...


class QueueMetricsPort(Protocol):
    def oldest_message_age(self, queue_name: str, now: datetime) -> float | None: ...


def health(
    *,
    ledger: OperationsLedger,
    queues: QueuesPort,
    metrics: QueueMetricsPort,
    grace: timedelta,
    oldest_message_alarm_seconds: int,
) -> Health:
    now = clock.utcnow()
    ingest = queues.depth(queues.ingest_url)
    dead_letters = queues.depth(queues.dead_letter_url)
    age = metrics.oldest_message_age(queues.ingest_url.rsplit("/", 1)[-1], now)
    operations = ledger.read_operations()
    return Health(
        ingest=ingest,
        dead_letters=dead_letters,
        oldest_message_age_seconds=age,
        operations=operations,
        backlog=ledger.collector_backlog(now - grace),
        attention=attention(
            ingest=ingest,
            dead_letters=dead_letters,
            oldest_message_age_seconds=age,
            operations=operations,
            now=now,
            oldest_message_alarm_seconds=oldest_message_alarm_seconds,
        ),
    )
