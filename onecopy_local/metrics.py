"""SQS's CloudWatch metrics, published locally as AWS publishes them.

On AWS, SQS publishes ApproximateAgeOfOldestMessage, ApproximateNumberOfMessagesVisible and
ApproximateNumberOfMessagesNotVisible (namespace AWS/SQS, dimension QueueName) once a minute; the
age of the oldest message is not available through SQS's own API at all. GET /admin/health and
the backlog alarm read it from CloudWatch. Locally, ``QueueMetricsPublisher`` computes the same
three numbers for each queue every ``interval`` seconds and sends them to the emulator's
CloudWatch with PutMetricData, as the operator (SQS's publishing is the service's, not a role's).

The numbers come from moto's SQS backend, which runs in this process (the emulator's): it keeps
each message's sent timestamp and visibility, which no public SQS call tells without receiving
(and so hiding) the messages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from moto.sqs.models import sqs_backends

from onecopy_local._http import LOGGER

log = logging.getLogger(LOGGER)

NAMESPACE = "AWS/SQS"
DEFAULT_INTERVAL = 10.0  # seconds; AWS publishes every 60


@dataclass(frozen=True, slots=True)
class QueueSample:
    """One queue's metrics at one moment."""

    age_of_oldest_message: int  # seconds, whole as AWS reports them; 0 for an empty queue
    visible: int
    not_visible: int


def sample_queue(
    account_id: str, region: str, name: str, now_ms: int | None = None
) -> QueueSample | None:
    """The queue's metrics from moto's backend; None when there is no such queue."""
    queue = sqs_backends[account_id][region].queues.get(name)
    if queue is None:
        return None
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    messages = list(queue._messages)  # every message not deleted yet, in flight or not
    oldest = min((int(m.sent_timestamp or now_ms) for m in messages), default=now_ms)
    return QueueSample(
        age_of_oldest_message=max(0, (now_ms - oldest) // 1000),
        # Delayed messages are in neither count, as in SQS's.
        visible=sum(1 for m in messages if m.visible and not m.delayed),
        not_visible=sum(1 for m in messages if not m.visible),
    )


def metric_data(name: str, sample: QueueSample, at: datetime) -> list[dict[str, Any]]:
    """PutMetricData's MetricData for one queue's sample."""
    dimensions = [{"Name": "QueueName", "Value": name}]
    return [
        {
            "MetricName": metric,
            "Dimensions": dimensions,
            "Timestamp": at,
            "Value": float(value),
            "Unit": unit,
        }
        for metric, value, unit in (
            ("ApproximateAgeOfOldestMessage", sample.age_of_oldest_message, "Seconds"),
            ("ApproximateNumberOfMessagesVisible", sample.visible, "Count"),
            ("ApproximateNumberOfMessagesNotVisible", sample.not_visible, "Count"),
        )
    ]


class QueueMetricsPublisher:
    """A thread that publishes ``queues``' metrics (by name) every ``interval`` seconds through
    ``cloudwatch`` (a boto3 client of the emulator), the first time at once."""

    def __init__(
        self,
        cloudwatch: Any,
        queues: Sequence[str],
        *,
        account_id: str,
        region: str,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if interval <= 0:
            raise ValueError("the metrics interval must be positive")
        self.cloudwatch = cloudwatch
        self.queues = list(queues)
        self.account_id = account_id
        self.region = region
        self.interval = interval
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self) -> None:
        """One round: each queue's metrics, in one PutMetricData call."""
        now = self._clock()
        data: list[dict[str, Any]] = []
        for name in self.queues:
            sample = sample_queue(self.account_id, self.region, name, int(now.timestamp() * 1000))
            if sample is not None:
                data += metric_data(name, sample, now)
        if data:
            self.cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=data)

    def start(self) -> QueueMetricsPublisher:
        self._thread = threading.Thread(target=self._run, name="queue-metrics", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            try:
                self.publish()
            except (ClientError, BotoCoreError) as exc:
                # The next round tries again, as SQS's own publishing would.
                log.warning("metrics: publishing the queues' metrics failed: %s", exc)
            if self._stop.wait(self.interval):
                return

    def close(self) -> None:
        """Stop after the round under way, if any."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
