"""The local gateway's access log: one line per request, template.yaml's AccessLogSettings.Format
rendered with the request's $context variables, as API Gateway writes it to the log group.

An in-process gateway with the template's routes and format, a stand-in authorizer (the JWT
checks themselves are test_local_auth's) and a recording function.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from onecopy_local.apigateway import (
    AccessLog,
    ApiServer,
    Route,
    TokenBucket,
    template_routes,
)
from onecopy_local.authorizer import Unauthorized
from onecopy_local.resources import template

pytestmark = pytest.mark.integration

SUB = "3f1c2d9e-0000-4000-8000-000000000001"
TOKEN = "Bearer good-token"


def template_format() -> str:
    (api,) = [
        spec["Properties"]
        for spec in template()["Resources"].values()
        if spec["Type"] == "AWS::Serverless::HttpApi"
    ]
    log_format: str = api["AccessLogSettings"]["Format"]
    return log_format


class StandInAuthorizer:
    """Lets TOKEN through with SUB's claims, and nothing else."""

    def authorize(self, header: str | None) -> dict[str, str]:
        if header != TOKEN:
            raise Unauthorized(None if header is None else "invalid token")
        return {"sub": SUB, "cognito:groups": "[admins]", "token_use": "id"}


@dataclass
class Gateway:
    url: str
    lines: list[str] = field(default_factory=list)

    def entries(self, count: int) -> list[dict[str, str]]:
        """The first ``count`` lines, parsed: the gateway writes a request's line just after
        answering it, so it may land a moment after the response."""
        return [json.loads(line) for line in _wait_for(self.lines, count)]


def _wait_for(lines: list[str], count: int) -> list[str]:
    deadline = time.monotonic() + 10
    while len(lines) < count:
        assert time.monotonic() < deadline, f"{len(lines)} access-log lines, not {count}"
        time.sleep(0.01)
    assert len(lines) == count, lines
    return lines


def _function(event: dict[str, Any]) -> dict[str, Any]:
    if event["rawPath"] == "/fails":
        raise RuntimeError("the function failed")
    return {"statusCode": 201 if event["requestContext"]["http"]["method"] == "POST" else 200}


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    lines: list[str] = []
    routes = template_routes(template())
    server = ApiServer(
        0,
        routes,
        dict.fromkeys({r.function for r in routes}, _function),
        authorizers={"SignedIn": StandInAuthorizer()},  # type: ignore[dict-item]
        access_log=AccessLog(template_format(), lines.append),
    )
    server.start()
    try:
        yield Gateway(f"http://127.0.0.1:{server.port}", lines)
    finally:
        server.close()


def test_the_template_declares_a_json_format_of_context_variables() -> None:
    assert "$context.requestId" in template_format()
    assert "$context.authorizer.claims.sub" in template_format()


def test_a_signed_in_requests_line_has_the_callers_sub_route_status_and_latencies(
    gateway: Gateway,
) -> None:
    # When a signed-in caller's request reaches the API's function
    response = requests.post(
        f"{gateway.url}/uploads?x=1", headers={"Authorization": TOKEN}, timeout=30
    )

    # Then its one line names the caller, the route, the status and both latencies
    assert response.status_code == 201
    (entry,) = gateway.entries(1)
    assert entry["sub"] == SUB
    assert entry["routeKey"] == "ANY /{proxy+}"
    assert (entry["method"], entry["path"], entry["status"]) == ("POST", "/uploads", "201")
    assert int(entry["latencyMs"]) >= int(entry["integrationLatencyMs"]) >= 0
    assert entry["requestId"] == response.headers["apigw-requestid"]
    assert entry["sourceIp"] == "127.0.0.1"
    assert entry["error"] == "-"
    assert entry["requestTime"].endswith(" +0000")


def test_a_401_has_no_sub_and_the_gateways_error(gateway: Gateway) -> None:
    missing = requests.get(f"{gateway.url}/uploads", timeout=30)
    forged = requests.get(f"{gateway.url}/uploads", headers={"Authorization": "x"}, timeout=30)

    assert (missing.status_code, forged.status_code) == (401, 401)
    for entry in gateway.entries(2):
        assert entry["status"] == "401"
        assert entry["sub"] == "-"
        assert entry["error"] == "Unauthorized"
        assert entry["integrationLatencyMs"] == "-"  # no function ran
        assert entry["routeKey"] == "ANY /{proxy+}"


def test_a_public_route_logs_no_sub_and_a_failing_function_the_500(gateway: Gateway) -> None:
    requests.get(f"{gateway.url}/auth/config", headers={"Authorization": TOKEN}, timeout=30)
    requests.get(f"{gateway.url}/fails", headers={"Authorization": TOKEN}, timeout=30)

    # Each line is written just after its answer, so two requests' lines may swap under load
    by_path = {entry["path"]: entry for entry in gateway.entries(2)}
    public, failed = by_path["/auth/config"], by_path["/fails"]
    assert (public["routeKey"], public["status"], public["sub"]) == ("GET /auth/config", "200", "-")
    assert (failed["status"], failed["error"], failed["sub"]) == (
        "500",
        "Internal Server Error",
        SUB,
    )


def test_answers_the_gateway_makes_alone_are_logged_too() -> None:
    # Given a gateway with one route and a throttle of one request
    lines: list[str] = []
    server = ApiServer(
        0,
        [Route("GET", "/only", "Fn")],
        {"Fn": _function},
        throttle=TokenBucket(rate=0.001, burst=2),
        access_log=AccessLog(template_format(), lines.append),
    )
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        # When a request has no route, one passes, and one is throttled
        codes = [requests.get(f"{url}{path}", timeout=30).status_code for path in ("/x", "/only")]
        codes.append(requests.get(f"{url}/only", timeout=30).status_code)
    finally:
        server.close()

    # Then each has its line: no route is "-", and the gateway's message is the error
    assert codes == [404, 200, 429]
    entries = [json.loads(line) for line in _wait_for(lines, 3)]
    assert [(e["routeKey"], e["status"], e["error"]) for e in entries] == [
        ("-", "404", "Not Found"),
        ("GET /only", "200", "-"),
        ("-", "429", "Too Many Requests"),
    ]


@pytest.mark.parametrize(
    ("log_format", "context", "line"),
    [
        ("$context.status $context.nope", {"status": "200"}, "200 -"),
        ('{"s":"$context.status"}', {}, '{"s":"-"}'),
        ('{"p":"$context.path"}', {"path": '/a"b\\c'}, '{"p":"/a\\"b\\\\c"}'),
        (
            "$context.authorizer.claims.cognito:groups!",
            {"authorizer.claims.cognito:groups": "[admins]"},
            "[admins]!",
        ),
        ("[$context.requestTime]", {"requestTime": "01/Jan/2026:00:00:00 +0000"}, None),
    ],
    ids=["unknown-is-dash", "unset-is-dash", "json-escaped", "claim-with-colon", "clf"],
)
def test_rendering(log_format: str, context: dict[str, str], line: str | None) -> None:
    rendered = AccessLog(log_format, lambda _: None).render(context)
    assert rendered == (line if line is not None else "[01/Jan/2026:00:00:00 +0000]")
