"""CloudWatch metrics the health view needs and no other API gives.

SQS does not tell the age of a queue's oldest message through its own API: it publishes it to
CloudWatch once a minute (ApproximateAgeOfOldestMessage), where the backlog alarm reads it too.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

# SQS publishes every minute; a window of several minutes tolerates a late datapoint.
_WINDOW = timedelta(minutes=5)


class QueueMetrics:
    def __init__(self, client: Any) -> None:
        self._cw = client

    def oldest_message_age(self, queue_name: str, now: datetime) -> float | None:
        """Seconds, from the latest datapoint of the last few minutes; None without one."""
        got = self._cw.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": "age",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": "AWS/SQS",
                            "MetricName": "ApproximateAgeOfOldestMessage",
                            "Dimensions": [{"Name": "QueueName", "Value": queue_name}],
                        },
                        "Period": 60,
                        "Stat": "Maximum",
                    },
                }
            ],
            StartTime=now - _WINDOW,
            EndTime=now + timedelta(minutes=1),
            ScanBy="TimestampDescending",
        )
        for result in got.get("MetricDataResults", []):
            values = result.get("Values") or []
            if values:
                return float(values[0])
        return None
