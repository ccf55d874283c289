"""What the health view asks an operator to look at (domain.health.attention)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.health import Operations, QueueDepth, attention

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
QUIET = QueueDepth(waiting=0, in_flight=0)


def _attention(
    *,
    ingest: QueueDepth = QUIET,
    dead: QueueDepth = QUIET,
    age: float | None = None,
    ops: Operations | None = None,
) -> list[str]:
    return attention(
        ingest=ingest,
        dead_letters=dead,
        oldest_message_age_seconds=age,
        operations=ops or Operations(),
        now=NOW,
        oldest_message_alarm_seconds=900,
    )


def test_a_quiet_stack_needs_nothing() -> None:
    recent = Operations(reconciled_at=NOW - timedelta(hours=3), reconcile_clean=True)
    assert _attention(ops=recent) == []
    # A stack that never reconciled yet (just deployed) is not flagged: its alarm is.
    assert _attention() == []


@pytest.mark.parametrize(
    ("dead", "wanted"),
    [(QueueDepth(1, 0), "1 message(s)"), (QueueDepth(0, 2), "2 message(s)")],
)
def test_a_dead_letter_needs_attention(dead: QueueDepth, wanted: str) -> None:
    (line,) = _attention(dead=dead)
    assert wanted in line and "DeadLetterQueueAlarm" in line


def test_a_backlog_needs_attention_only_above_the_alarm_threshold() -> None:
    busy = QueueDepth(waiting=5000, in_flight=10)
    assert _attention(ingest=busy, age=900) == []  # many waiting, but young: flowing
    (line,) = _attention(ingest=busy, age=901)
    assert "901 s" in line and "IngestBacklogAlarm" in line


def test_drift_and_a_stale_reconciliation_need_attention() -> None:
    drift = Operations(reconciled_at=NOW, reconcile_clean=False, reconcile_drift=3)
    (line,) = _attention(ops=drift)
    assert "drift 3" in line and "CounterDriftAlarm" in line
    stale = Operations(reconciled_at=NOW - timedelta(days=2, seconds=1), reconcile_clean=True)
    (line,) = _attention(ops=stale)
    assert "ReconcileErrorsAlarm" in line
