"""ReconcileFunction through the local stack's Lambda Invoke endpoint, as boto3 users call it."""

from __future__ import annotations

import json
import os

import boto3
import pytest
from botocore.config import Config

from tests.localstack import RunningStack, upload

pytestmark = pytest.mark.e2e


def test_reconcile_after_uploads_reports_clean_counters(local_stack: RunningStack) -> None:
    # Given a few uploads processed by the stack: alice's content, her duplicate of it, bob's
    # match of it (STORED for him, a deduplication in the counters), and another new content
    first = os.urandom(3000)
    alice, bob = local_stack.auth("alice"), local_stack.auth("bob")
    jobs = [(first, alice), (first, alice), (first, bob), (os.urandom(2000), alice)]
    views = [
        upload(local_stack.api_url, data, declare_sha256=False, headers=headers)
        for data, headers in jobs
    ]
    assert [view["status"] for view in views] == ["STORED", "DUPLICATE", "STORED", "STORED"]

    # When ReconcileFunction is invoked with boto3's Lambda client at the stack's endpoint
    lambda_client = boto3.client(
        "lambda",
        endpoint_url=local_stack.lambda_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        aws_session_token=None,
        config=Config(retries={"max_attempts": 1}),
    )
    response = lambda_client.invoke(
        FunctionName="ReconcileFunction", Payload=json.dumps({"repair": False}).encode()
    )

    # Then the function ran without error and found the counters agreeing with the tables
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    report = json.loads(response["Payload"].read())
    assert report["clean"] is True
    assert report["repaired"] is False
    assert report["counters"] == report["facts"]
    assert report["facts"]["uploads"] >= 4
