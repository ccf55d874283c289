"""Reconciliation: recount the counters from the tables. Runs daily (report only) or on demand.

Invoke with {"repair": true} to correct drift (`onecopy admin reconcile --repair`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic_core import ValidationError

from handlers import wiring
from handlers.events import ReconcileRequest
from handlers.settings import worker_settings
from service.clock import utcnow
from service.reconcile import reconcile

settings = worker_settings()
logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    try:
        request = ReconcileRequest.model_validate({} if event is None else event)
    except ValidationError as error:
        # Nothing is recounted on a request we cannot read; the caller gets the reason, not a
        # stack trace (and an asynchronous invoke is not retried for a bad input).
        logger.error(
            "invalid reconcile request", extra={"errors": error.errors(include_input=False)}
        )
        first = error.errors(include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        return {"message": f"invalid request: {where + ': ' if where else ''}{first['msg']}"}
    report = reconcile(wiring.ledger(), repair=request.repair)
    drift = asdict(report.recount.drift)
    result: dict[str, Any] = {
        "clean": report.recount.clean,
        "repaired": report.repaired,
        "facts": asdict(report.recount.facts),
        "counters": asdict(report.recount.counters),
        "drift": drift,
        "upload_count_mismatches": {
            sha: {"recorded": recorded, "found": found}
            for sha, (recorded, found) in report.recount.upload_counts.items()
        },
        # recorded is None for a holding that is missing altogether.
        "holding_count_mismatches": [
            {"owner": owner, "sha256": sha, "recorded": recorded, "found": found}
            for (owner, sha), (recorded, found) in report.recount.holding_counts.items()
        ],
        # Live uploads whose content is being (or was) collected: data loss; investigate.
        "dangling_references": report.recount.dangling,
    }
    drifting = (
        sum(abs(v) for v in drift.values())
        + len(report.recount.upload_counts)
        + len(report.recount.holding_counts)
        + len(report.recount.dangling)
    )
    metrics.add_metric(name="CounterDrift", unit=MetricUnit.Count, value=drifting)
    wiring.ledger().record_reconciliation(
        utcnow(), clean=report.recount.clean, drift=drifting, repaired=report.repaired
    )
    (logger.info if report.recount.clean else logger.warning)("reconciled", extra=result)
    return result
