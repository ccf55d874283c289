"""The DLQ redrive moves dead-lettered events back, and the worker then finishes them."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from onecopy_cli.redrive import redrive
from tests.invariants import check_invariants
from tests.pipeline import Pipeline

pytestmark = pytest.mark.integration


def test_a_redriven_event_is_processed_once(aws: Any) -> None:
    # Given an upload whose S3 event ended in the dead-letter queue (the worker was broken)
    pipe = Pipeline(aws)
    created = pipe.create(b"dead-lettered bytes")
    upload_id = created.body["upload_id"]
    pipe.put(upload_id, b"dead-lettered bytes")
    sqs = boto3.client("sqs")
    queued = sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10)["Messages"]
    for message in queued:  # the S3 event, and S3's s3:TestEvent from setting up the bucket
        if "Records" in json.loads(message["Body"]):
            sqs.send_message(QueueUrl=aws.dlq_url, MessageBody=message["Body"])
        sqs.delete_message(QueueUrl=aws.queue_url, ReceiptHandle=message["ReceiptHandle"])

    # When it is redriven (twice: a repeated redrive must be harmless) and the worker runs
    assert redrive(sqs, aws.dlq_url, aws.queue_url) == 1
    assert redrive(sqs, aws.dlq_url, aws.queue_url) == 0
    pipe.drain()

    # Then the upload is stored, the DLQ is empty, and every invariant holds
    assert pipe.call("GET", f"/uploads/{upload_id}").body["status"] == "STORED"
    assert "Messages" not in sqs.receive_message(QueueUrl=aws.dlq_url)
    check_invariants(aws, boto3.client("s3"), boto3.client("dynamodb"), settled=[upload_id])


def test_redrive_respects_a_limit(aws: Any) -> None:
    sqs = boto3.client("sqs")
    for n in range(3):
        sqs.send_message(QueueUrl=aws.dlq_url, MessageBody=json.dumps({"n": n}))
    assert redrive(sqs, aws.dlq_url, aws.queue_url, limit=2) == 2
    assert redrive(sqs, aws.dlq_url, aws.queue_url) == 1
