"""GET /admin/health on the local stack, over HTTP, as an operator's browser or CLI calls it: a
message the worker cannot process ends in the dead-letter queue, and the health view says so and
names the alarm that would fire on AWS.

(The backlog while no worker runs is the stack test at the end of
tests/integration/test_local_metrics.py: the oldest message's age reaches CloudWatch and this view.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.localstack import RunningStack, start_stack

pytestmark = pytest.mark.e2e

# The template's maxReceiveCount: the fifth failed receive moves the message to the DLQ.
MAX_RECEIVES = 5


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    # A one-second visibility timeout, so that the five failed receives take seconds
    with start_stack(tmp_path_factory.mktemp("health"), "--visibility-timeout", "1") as running:
        yield running


def _health(stack: RunningStack, user: str = "admin") -> requests.Response:
    return requests.get(f"{stack.api_url}/admin/health", headers=stack.auth(user), timeout=30)


def test_a_message_the_worker_cannot_process_shows_in_the_health_view(stack: RunningStack) -> None:
    # Given a healthy stack with an empty dead-letter queue
    before = _health(stack)
    assert before.status_code == 200, before.text
    assert before.json()["dead_letter_queue"] == {"waiting": 0, "in_flight": 0}

    # When a message the worker cannot parse arrives on the ingest queue
    stack.client("sqs").send_message(QueueUrl=stack.queue_url, MessageBody="{not an S3 event")

    # Then after its five failed receives the health view counts it in the dead-letter queue,
    # and asks for attention naming the alarm that pages on AWS
    deadline = time.monotonic() + 60 * MAX_RECEIVES
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = _health(stack)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["dead_letter_queue"]["waiting"] >= 1:
            break
        time.sleep(0.5)
    assert body["dead_letter_queue"]["waiting"] == 1, body
    assert body["ok"] is False
    assert any("DeadLetterQueueAlarm" in line for line in body["attention"]), body["attention"]
    # And the message is no longer in the ingest queue
    assert body["ingest_queue"]["waiting"] == 0


def test_the_health_view_is_for_admins_only(stack: RunningStack) -> None:
    # Given a signed-in user who is no admin
    # When they ask for the health view
    response = _health(stack, "alice")

    # Then it is refused, with a JSON message
    assert response.status_code == 403, response.text
    assert response.json()["message"]
