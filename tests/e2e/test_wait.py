"""GET /uploads/{id}?wait=N over real HTTP: the client learns the outcome with one request, a
wait that runs out answers the upload as it is, and a waiting request holds only its own
execution environment, as on Lambda."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.localstack import RunningStack, create_upload, put_bytes, sha256_hex

pytestmark = pytest.mark.e2e


def _get(stack: RunningStack, upload_id: str, query: str = "") -> requests.Response:
    return requests.get(
        f"{stack.api_url}/uploads/{upload_id}{query}", headers=stack.auth(), timeout=60
    )


def test_one_waiting_get_after_the_put_answers_the_outcome(local_stack: RunningStack) -> None:
    # Given an upload whose bytes were just PUT
    data = os.urandom(3000)
    created = create_upload(local_stack.api_url, data).json()
    assert put_bytes(created["upload"], data).status_code == 200

    # When the client asks once, willing to wait up to 20 s
    answer = _get(local_stack, created["upload_id"], "?wait=20")

    # Then that one answer is the outcome
    assert answer.status_code == 200, answer.text
    assert (answer.json()["status"], answer.json()["sha256"]) == ("STORED", sha256_hex(data))


def test_a_wait_that_runs_out_answers_pending_while_other_requests_are_served(
    local_stack: RunningStack,
) -> None:
    # Given an upload whose bytes never come
    pending = create_upload(local_stack.api_url, os.urandom(100)).json()["upload_id"]
    waiting = threading.Event()

    # When the client waits 8 s for it, and meanwhile other requests go to the API
    def wait() -> requests.Response:
        waiting.set()
        return _get(local_stack, pending, "?wait=8")

    with ThreadPoolExecutor(1) as pool:
        waited = pool.submit(wait)
        waiting.wait()
        others = [_get(local_stack, pending) for _ in range(2)]
        # Then the others were answered while the wait still held its environment
        assert not waited.done()
        answer = waited.result()

    assert [o.json()["status"] for o in others] == ["PENDING"] * 2
    # And the wait answered the upload as it is once its time ran out
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "PENDING"


@pytest.mark.parametrize("wait", ["21", "-1", "1.5", "soon", ""])
def test_a_wait_outside_0_to_20_whole_seconds_is_a_4xx_naming_it(
    local_stack: RunningStack, wait: str
) -> None:
    pending = create_upload(local_stack.api_url, os.urandom(100)).json()["upload_id"]

    answer = _get(local_stack, pending, f"?wait={wait}")

    assert 400 <= answer.status_code < 500, answer.text
    assert "wait" in answer.json()["message"]
