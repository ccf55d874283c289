"""The API's access log from `onecopy-local`: one line per request, rendered from template.yaml's
AccessLogSettings.Format, in the file --access-log names or else in the stack's own log."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from tests.localstack import RunningStack, start_stack

pytestmark = pytest.mark.e2e


def _lines(path: Path, count: int) -> list[dict[str, str]]:
    """The file's first ``count`` lines, parsed; each lands just after its request's answer."""
    deadline = time.monotonic() + 10
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(lines) == count, lines
    return [json.loads(line) for line in lines]


def test_a_signed_in_caller_and_a_401_each_get_their_line_in_the_file(tmp_path: Path) -> None:
    access_log = tmp_path / "access.log"
    with start_stack(tmp_path, "--access-log", str(access_log)) as stack:
        assert stack.banner["Access log"].startswith(str(access_log))

        # When alice lists her uploads, and someone without a token tries the same
        listed = requests.get(f"{stack.api_url}/uploads", headers=stack.auth(), timeout=30)
        refused = requests.get(f"{stack.api_url}/uploads", timeout=30)
        # Each line is written just after its answer, so the two may land in either order
        by_id = {line["requestId"]: line for line in _lines(access_log, 2)}
        signed_in = by_id[listed.headers["apigw-requestid"]]
        anonymous = by_id[refused.headers["apigw-requestid"]]

    # Then alice's line has her sub, the route, the status and the latencies
    assert (listed.status_code, refused.status_code) == (200, 401)
    assert signed_in["sub"] == stack.sub()
    assert (signed_in["routeKey"], signed_in["method"], signed_in["path"]) == (
        "ANY /{proxy+}",
        "GET",
        "/uploads",
    )
    assert signed_in["status"] == "200"
    assert int(signed_in["latencyMs"]) >= int(signed_in["integrationLatencyMs"]) >= 0
    assert signed_in["requestId"] == listed.headers["apigw-requestid"]
    # And the 401's has no sub, no function's latency, and the gateway's message
    assert (anonymous["status"], anonymous["sub"], anonymous["error"]) == (
        "401",
        "-",
        "Unauthorized",
    )
    assert anonymous["integrationLatencyMs"] == "-"


def test_without_a_file_the_lines_go_to_the_stacks_log(local_stack: RunningStack) -> None:
    response = requests.get(f"{local_stack.api_url}/auth/config", timeout=30)
    request_id = response.headers["apigw-requestid"]

    deadline = time.monotonic() + 10
    while f'"requestId":"{request_id}"' not in local_stack.log():
        assert time.monotonic() < deadline, "no access-log line in the stack's log"
        time.sleep(0.05)
    (line,) = [x for x in local_stack.log().splitlines() if request_id in x and x[:1] == "{"]
    assert json.loads(line)["routeKey"] == "GET /auth/config"
