"""SQS's CloudWatch metrics in the local stack: computed from the emulator's queues as SQS
computes them, and put into its CloudWatch every --metrics-interval seconds, where
GET /admin/health (the API's role, cloudwatch:GetMetricData) reads the oldest message's age."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from onecopy_local.metrics import QueueMetricsPublisher, metric_data, sample_queue
from onecopy_local.resources import ACCOUNT_ID, Resources
from tests.localstack import create_upload, put_bytes, start_stack

pytestmark = pytest.mark.integration

REGION = "us-east-1"
AGE = "ApproximateAgeOfOldestMessage"


def _latest(cloudwatch: Any, queue: str, metric: str = AGE) -> float | None:
    """The latest datapoint of one of SQS's metrics for ``queue``: one-second periods, so that
    it is the last one published, not the maximum of the last minute (what the health view's
    60-second periods give)."""
    now = datetime.now(UTC)
    got = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/SQS",
                        "MetricName": metric,
                        "Dimensions": [{"Name": "QueueName", "Value": queue}],
                    },
                    "Period": 1,
                    "Stat": "Maximum",
                },
            }
        ],
        StartTime=now - timedelta(minutes=5),
        EndTime=now + timedelta(minutes=1),
        ScanBy="TimestampDescending",
    )
    values = got["MetricDataResults"][0]["Values"]
    return float(values[0]) if values else None


def _name(url: str) -> str:
    return url.rsplit("/", 1)[-1]


# --- the numbers ---------------------------------------------------------------------------------


def test_an_empty_queue_has_no_age_and_no_messages(aws: Resources) -> None:
    sample = sample_queue(ACCOUNT_ID, REGION, _name(aws.dlq_url))
    assert sample is not None
    assert (sample.age_of_oldest_message, sample.visible, sample.not_visible) == (0, 0, 0)
    assert sample_queue(ACCOUNT_ID, REGION, "no-such-queue") is None


def test_the_age_is_the_oldest_messages_and_in_flight_messages_count_apart(
    aws: Resources,
) -> None:
    # Given two messages, the first received (in flight) and so invisible
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=aws.dlq_url, MessageBody="first")
    sent_ms = int(time.time() * 1000)
    sqs.send_message(QueueUrl=aws.dlq_url, MessageBody="second")
    sqs.receive_message(QueueUrl=aws.dlq_url, MaxNumberOfMessages=1, VisibilityTimeout=60)

    # When the metrics are sampled 7.5 s later
    sample = sample_queue(ACCOUNT_ID, REGION, _name(aws.dlq_url), now_ms=sent_ms + 7_500)

    # Then the age is the first message's, in whole seconds, and it counts as not visible
    assert sample is not None
    assert sample.age_of_oldest_message in (7, 8)  # the first was sent just before sent_ms
    assert (sample.visible, sample.not_visible) == (1, 1)


def test_the_metric_data_is_sqss_names_units_and_dimension(aws: Resources) -> None:
    sample = sample_queue(ACCOUNT_ID, REGION, "onecopy-ingest")
    assert sample is not None
    at = datetime.now(UTC)
    data = metric_data("onecopy-ingest", sample, at)
    assert {(d["MetricName"], d["Unit"]) for d in data} == {
        (AGE, "Seconds"),
        ("ApproximateNumberOfMessagesVisible", "Count"),
        ("ApproximateNumberOfMessagesNotVisible", "Count"),
    }
    assert all(d["Dimensions"] == [{"Name": "QueueName", "Value": "onecopy-ingest"}] for d in data)


def test_a_round_puts_every_queues_metrics_and_close_stops_at_once(aws: Resources) -> None:
    # Given a message waiting in the ingest queue, and a publisher with a long interval
    boto3.client("sqs").send_message(QueueUrl=aws.queue_url, MessageBody="m")
    cloudwatch = boto3.client("cloudwatch")
    publisher = QueueMetricsPublisher(
        cloudwatch,
        [_name(aws.queue_url), _name(aws.dlq_url)],
        account_id=ACCOUNT_ID,
        region=REGION,
        interval=3600,
    )

    # When it starts (a first round at once) and is closed
    started = time.monotonic()
    publisher.start()
    deadline = time.monotonic() + 10
    while _latest(cloudwatch, _name(aws.queue_url), "ApproximateNumberOfMessagesVisible") is None:
        assert time.monotonic() < deadline, "no datapoint was published"
        time.sleep(0.05)
    publisher.close()

    # Then both queues have their datapoints, and closing did not wait for the next round
    assert time.monotonic() - started < 10
    assert (
        _latest(cloudwatch, _name(aws.queue_url), "ApproximateNumberOfMessagesVisible") or 0
    ) >= 1
    assert _latest(cloudwatch, _name(aws.dlq_url), "ApproximateNumberOfMessagesVisible") == 0


def test_a_non_positive_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        QueueMetricsPublisher(None, [], account_id=ACCOUNT_ID, region=REGION, interval=0)


# --- the stack -----------------------------------------------------------------------------------


def test_with_no_worker_the_waiting_uploads_age_reaches_cloudwatch_and_the_health_view(
    tmp_path: Path,
) -> None:
    # Given a stack with no worker (nothing takes the S3 events off the queue), publishing the
    # queues' metrics every second
    with start_stack(tmp_path, "--workers", "0", "--metrics-interval", "1") as stack:
        assert stack.banner["Queue metrics"].startswith("AWS/SQS every 1 s")
        queue = _name(stack.queue_url)
        cloudwatch = stack.client("cloudwatch")
        # S3's s3:TestEvent waits in the queue since the start: clear it, and see it gone
        stack.client("sqs").purge_queue(QueueUrl=stack.queue_url)
        deadline = time.monotonic() + 15
        while _latest(cloudwatch, queue) != 0:
            assert time.monotonic() < deadline, "the emptied queue's age never reached 0"
            time.sleep(0.2)

        # When an upload's bytes are PUT
        data = os.urandom(1000)
        created = create_upload(stack.api_url, data)
        assert created.status_code == 201, created.text
        assert put_bytes(created.json()["upload"], data).status_code == 200

        # Then within a few intervals the oldest message's age is above 0 in CloudWatch
        deadline = time.monotonic() + 15
        while not (_latest(cloudwatch, queue) or 0) > 0:
            assert time.monotonic() < deadline, "the queue's age never reached CloudWatch"
            time.sleep(0.2)
        assert (_latest(cloudwatch, queue, "ApproximateNumberOfMessagesVisible") or 0) >= 1

        # And the API, with its own role, reads it for GET /admin/health
        health = requests.get(
            f"{stack.api_url}/admin/health", headers=stack.auth("admin"), timeout=30
        )
        assert health.status_code == 200, health.text
        assert health.json()["ingest_queue"]["oldest_message_age_seconds"] > 0
