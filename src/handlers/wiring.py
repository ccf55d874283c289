"""The composition root: the one place that builds the adapters every handler uses.

Each object is made on first use and kept for the execution environment's life, so warm
invocations reuse connections. Tests (and a second local stack in one process) call ``reset()``
after pointing the environment somewhere else.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from adapters import clients
from adapters.dynamodb import Ledger
from adapters.s3 import ObjectStore
from handlers import settings

if TYPE_CHECKING:
    from adapters.cloudwatch import QueueMetrics
    from adapters.sqs import Queues

# The queues, their metrics and Powertools' parameters (the page-token secret) serve only some API
# routes: each is imported by its factory, so no other function's cold start, nor an API cold
# start serving another route, pays for it.

# Longer than an execution environment lives: one Secrets Manager call per environment. The secret
# is not rotated; a new value would only invalidate page tokens already handed out.
SECRET_MAX_AGE_SECONDS = 24 * 3600


@cache
def ledger() -> Ledger:
    config = settings.table_settings()
    return Ledger(
        clients.dynamodb(),
        uploads_table=config.uploads_table,
        contents_table=config.contents_table,
        stats_table=config.stats_table,
        holdings_table=config.holdings_table,
        stats_shards=config.stats_shards,
    )


@cache
def store() -> ObjectStore:
    return ObjectStore(clients.s3(), clients.s3_presigner(), settings.table_settings().bucket_name)


@cache
def queues() -> Queues:
    from adapters.sqs import Queues

    config = settings.api_settings()
    return Queues(
        clients.sqs(),
        ingest_url=config.ingest_queue_url,
        dead_letter_url=config.dead_letter_queue_url,
    )


@cache
def queue_metrics() -> QueueMetrics:
    from adapters.cloudwatch import QueueMetrics

    return QueueMetrics(clients.cloudwatch())


def page_token_secret() -> bytes:
    """The key that signs hash-list page tokens, fetched on first need (Powertools caches it)."""
    from aws_lambda_powertools.utilities import parameters

    value = parameters.get_secret(
        settings.api_settings().page_token_secret_arn, max_age=SECRET_MAX_AGE_SECONDS
    )
    return value if isinstance(value, bytes) else value.encode()


def reset() -> None:
    from aws_lambda_powertools.utilities import parameters

    clients.reset()
    settings.reset()
    ledger.cache_clear()
    store.cache_clear()
    queues.cache_clear()
    queue_metrics.cache_clear()
    parameters.clear_caches()
