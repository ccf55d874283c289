"""Shared fixtures: an in-process moto account with the resources template.yaml defines."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

EVENTS = Path(__file__).resolve().parent.parent / "events"

# Credentials and region for every test: moto accepts any, and nothing may reach real AWS.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SECURITY_TOKEN="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
    POWERTOOLS_METRICS_NAMESPACE="onecopy",
    POWERTOOLS_SERVICE_NAME="onecopy",
    POWERTOOLS_DEV="false",
    POWERTOOLS_LOG_LEVEL="WARNING",
)
os.environ.pop("AWS_ENDPOINT_URL", None)


def load_event(name: str) -> dict[str, Any]:
    """A sample event from events/, the same file `sam local invoke -e` uses."""
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


@pytest.fixture
def aws() -> Iterator[Any]:
    """A fresh moto account holding the template's bucket, queues and tables."""
    import boto3
    from moto import mock_aws

    from onecopy_local import moto_speed
    from onecopy_local.resources import create_resources

    moto_speed.share_user_pool_key()  # one user pool per test: parse moto's key once
    with mock_aws():
        # moto resets boto3's default session per mock; reusing one keeps botocore's parsed
        # service models (a fresh session re-reads them: ~0.2 s per test).
        boto3.DEFAULT_SESSION = _session()
        resources = create_resources(boto3.DEFAULT_SESSION)
        os.environ.update(resources.function_env())
        _reset_handler_caches()
        yield resources
        _reset_handler_caches()


@functools.cache
def _session() -> Any:
    import boto3

    return boto3.Session()


def _reset_handler_caches() -> None:
    from handlers import wiring

    wiring.reset()


# The session's one `onecopy-local` process, shared by the e2e and browser tests.
from tests.localstack import local_stack  # noqa: E402, F401


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The files marked `long` run for minutes: `make test` hands files to its parallel workers in
    # this order, so these start first and the workers finish together.
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
