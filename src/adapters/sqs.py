"""The ingest queue and its dead-letter queue, as the health view reads them."""

from __future__ import annotations

from typing import Any

from domain.health import QueueDepth

_ATTRIBUTES = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


class Queues:
    def __init__(self, client: Any, *, ingest_url: str, dead_letter_url: str) -> None:
        self._sqs = client
        self.ingest_url = ingest_url
        self.dead_letter_url = dead_letter_url

    def depth(self, queue_url: str) -> QueueDepth:
        """SQS's approximate counts (eventually consistent, within about a minute)."""
        got = self._sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=_ATTRIBUTES)
        values = {k: int(v) for k, v in got.get("Attributes", {}).items()}
        return QueueDepth(
            waiting=values.get("ApproximateNumberOfMessages", 0),
            in_flight=values.get("ApproximateNumberOfMessagesNotVisible", 0),
            delayed=values.get("ApproximateNumberOfMessagesDelayed", 0),
        )
