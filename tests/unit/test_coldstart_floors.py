"""The cold-start floors (bench/floor/) are real handlers: a floor that skipped validation or
batch failure reporting would import less than any honest handler and make the floor a lie."""

from __future__ import annotations

import importlib.util
import json
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from bench.coldstart import FLOOR_DIR, FLOORS

pytestmark = pytest.mark.unit

API_FLOORS = [f for f in FLOORS if f.startswith("floor_api")]
WORKER_FLOORS = [f for f in FLOORS if f.startswith("floor_worker")]
CONTEXT = SimpleNamespace(
    function_name="floor",
    memory_limit_in_mb=128,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:floor",
    aws_request_id="00000000-0000-0000-0000-000000000000",
)


@pytest.fixture(autouse=True)
def _powertools_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "floor")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "floor")


def _load(name: str) -> ModuleType:
    # Loaded from its file under a private name: the floors are not a package, and nothing else
    # in the suite should find them on sys.path.
    spec = importlib.util.spec_from_file_location(f"_test_{name}", FLOOR_DIR / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _post(body: str) -> dict[str, Any]:
    http = {"method": "POST", "path": "/uploads", "sourceIp": "192.0.2.1", "protocol": "HTTP/1.1"}
    return {
        "version": "2.0",
        "routeKey": "POST /uploads",
        "rawPath": "/uploads",
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "http": {**http, "userAgent": "t"},
            "requestId": "r",
            "stage": "$default",
        },
        "body": body,
        "isBase64Encoded": False,
    }


def _record(message_id: str, body: str) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": "handle",
        "body": body,
        "attributes": {},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:floor",
        "awsRegion": "us-east-1",
    }


@pytest.mark.parametrize("name", API_FLOORS)
def test_an_api_floor_validates_its_request_body(name: str) -> None:
    handler = _load(name).lambda_handler

    accepted = handler(_post(json.dumps({"filename": "a.pdf", "size": 3})), CONTEXT)
    rejected = handler(_post(json.dumps({"filename": "", "size": -1})), CONTEXT)

    assert accepted["statusCode"] == 200
    assert json.loads(accepted["body"]) == {"size": 3}
    assert rejected["statusCode"] == 422


@pytest.mark.parametrize("name", WORKER_FLOORS)
def test_a_worker_floor_validates_each_record_and_reports_partial_failures(name: str) -> None:
    handler = _load(name).lambda_handler
    event = {
        "Records": [
            _record("good", json.dumps({"key": "staging/a", "size": 1})),
            _record("bad", json.dumps({"key": "", "size": 1})),
        ]
    }

    assert handler(event, CONTEXT) == {"batchItemFailures": [{"itemIdentifier": "bad"}]}
