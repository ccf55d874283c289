"""The collector: on its schedule, remove the objects of contents unreferenced past the grace
period (service.collector). Any invocation does the same; its input is ignored."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from handlers import wiring
from handlers.settings import collector_settings
from service.clock import utcnow
from service.collector import collect

# Validated at start, as every function's settings (a missing one fails the cold start).
collector_settings()
logger = Logger()
metrics = Metrics()

# Stop taking new contents with this much time left: a collection cut short is finished by the
# next run anyway, but a clean stop reports what was done.
_RESERVE_MS = 10_000


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    report = collect(
        ledger=wiring.ledger(),
        store=wiring.store(),
        grace=timedelta(seconds=collector_settings().grace_period_seconds),
        # Lambda stops this invocation by then: what it marks is its own until a little later.
        deadline=utcnow() + timedelta(milliseconds=context.get_remaining_time_in_millis()),
        has_time=lambda: context.get_remaining_time_in_millis() > _RESERVE_MS,
    )
    metrics.add_metric(name="ContentsCollected", unit=MetricUnit.Count, value=len(report.collected))
    result = {
        "examined": report.examined,
        "collected": len(report.collected),
        "skipped": report.skipped,
        "complete": report.complete,
    }
    wiring.ledger().record_collection(
        utcnow(), collected=len(report.collected), complete=report.complete
    )
    logger.info("collected", extra=result)
    return result
