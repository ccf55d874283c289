"""GET /admin/health in-process against moto: what each part reports, and when it asks for
attention. (Over HTTP on the local stack, with workers stopped and a real dead letter:
tests/e2e/test_health_e2e.py.)"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from tests.conftest import load_event
from tests.pipeline import FakeContext, Pipeline

pytestmark = pytest.mark.integration


@pytest.fixture
def pipe(aws: Any) -> Pipeline:
    # The s3:TestEvent S3 sent when the notification was configured: not part of these tests.
    boto3.client("sqs").purge_queue(QueueUrl=aws.queue_url)
    return Pipeline(aws)


def _health(pipe: Pipeline) -> dict[str, Any]:
    reply = pipe.as_admin().call("GET", "/admin/health")
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.body
    return body


def test_a_quiet_stack_is_ok_and_nothing_has_run_yet(pipe: Pipeline) -> None:
    body = _health(pipe)
    assert body == {
        "ok": True,
        "attention": [],
        "ingest_queue": {"waiting": 0, "in_flight": 0, "oldest_message_age_seconds": None},
        "dead_letter_queue": {"waiting": 0, "in_flight": 0},
        "reconciliation": {"at": None, "clean": None, "drift": None, "repaired": None},
        "collection": {
            "unreferenced": 0,
            "due": 0,
            "grace_seconds": int(os.environ["COLLECTION_GRACE_SECONDS"]),
            "last_run_at": None,
            "last_collected": None,
            "last_run_complete": None,
        },
    }


def test_only_admins_see_it(pipe: Pipeline) -> None:
    reply = pipe.call("GET", "/admin/health")
    assert reply.status == 403 and reply.body["message"]


def test_waiting_events_dead_letters_and_the_oldest_age_are_reported(
    pipe: Pipeline, aws: Any
) -> None:
    # Given an upload whose bytes arrived (its event waits: no worker ran) ...
    created = pipe.create(b"waiting for a worker")
    pipe.put(created.body["upload_id"], b"waiting for a worker")
    # ... a message in the dead-letter queue, and SQS's published age of the oldest message
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=aws.dlq_url, MessageBody='{"Records": "poison"}')
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/SQS",
        MetricData=[
            {
                "MetricName": "ApproximateAgeOfOldestMessage",
                "Dimensions": [{"Name": "QueueName", "Value": aws.queue_url.rsplit("/", 1)[-1]}],
                "Value": 1234.0,
                "Timestamp": datetime.now(UTC),
            }
        ],
    )

    body = _health(pipe)

    assert body["ingest_queue"] == {
        "waiting": 1,
        "in_flight": 0,
        "oldest_message_age_seconds": 1234.0,
    }
    assert body["dead_letter_queue"] == {"waiting": 1, "in_flight": 0}
    assert body["ok"] is False
    assert [line.split("(")[-1] for line in body["attention"]] == [
        "DeadLetterQueueAlarm)",
        "IngestBacklogAlarm)",
    ]


def test_the_last_reconciliation_and_collection_and_the_backlog(pipe: Pipeline) -> None:
    from handlers import collector, reconcile

    # Given a stored upload, deleted: its content is unreferenced (within its grace)
    stored = pipe.upload(b"soon unreferenced")
    assert pipe.call("DELETE", f"/uploads/{stored.body['upload_id']}").status == 204

    # When reconciliation and the collector have run
    assert reconcile.lambda_handler(load_event("reconcile_scheduled.json"), FakeContext())["clean"]
    assert (
        collector.lambda_handler(load_event("collector_scheduled.json"), FakeContext())["collected"]
        == 0
    )

    # Then the view says when, and what they found
    body = _health(pipe)
    reconciliation, collection = body["reconciliation"], body["collection"]
    assert reconciliation["clean"] is True and reconciliation["drift"] == 0
    assert reconciliation["repaired"] is False
    assert datetime.fromisoformat(reconciliation["at"]) <= datetime.now(UTC)
    assert (collection["unreferenced"], collection["due"]) == (1, 0)
    assert collection["last_collected"] == 0 and collection["last_run_complete"] is True
    assert collection["last_run_at"] is not None
    assert body["ok"] is True
