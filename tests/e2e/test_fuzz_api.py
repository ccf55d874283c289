"""Fuzz the whole HTTP API from its OpenAPI document, against the local stack over real HTTP.

Every operation gets schema-valid and schema-invalid requests (examples, coverage and random
phases); every answer must be a documented status with a body, content type and headers that
match the document, and never a 5xx. A stateful run follows the document's links, so the
operations on an upload id also meet ids that exist.

Requests are signed in as admin, the one user every operation (the admin routes included) answers
with success; the uploads the fuzzing leaves PENDING count against admin's pending cap, not
against the users the other tests upload as. Schemathesis' `ignored_auth` check also re-sends
successful requests without the token and with a forged one, and requires them refused.

The operations are collected from the committed openapi.json, because pytest collects them before
the session's stack runs (schemathesis' fixture-based lazy loading does not work with pytest 9);
`test_the_served_document_is_the_committed_one` pins that file to what the stack serves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import settings
from schemathesis.config import SchemathesisConfig

from tests.localstack import RunningStack

pytestmark = pytest.mark.e2e

COMMITTED_SPEC = Path(__file__).resolve().parents[2] / "openapi.json"
FUZZ_USER = "admin"

CONFIG = SchemathesisConfig.from_dict(
    {
        "phases": {
            "examples": {"enabled": True},
            "coverage": {
                "enabled": True,
                # TRACE and QUERY stop at the local stack's HTTP server (501) before reaching the
                # function; API Gateway answers them itself. The rest must be 405s.
                "unexpected-methods": ["get", "put", "post", "delete", "patch"],
            },
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": True},
        },
        "generation": {"max-examples": 30, "mode": "all"},
        "checks": {
            "enabled": True,
            # DELETE /uploads/{id} on a PENDING upload aborts it: the upload stays readable as
            # REJECTED (reason aborted), as documented, so "deleted resource still available" does
            # not apply (a terminal upload's delete is checked by tests/e2e/test_deletion.py).
            "use_after_free": {"enabled": False},
            # A schema-valid request can still break a domain rule the schema cannot state (a
            # forged page token, a part number beyond the plan): that is the documented 400.
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "3xx", "400", "401", "403", "404", "409", "429"]
            },
        },
    }
)

schema = schemathesis.openapi.from_path(COMMITTED_SPEC, config=CONFIG)


def test_the_served_document_is_the_committed_one(local_stack: RunningStack) -> None:
    # Given the stack's API
    # When a client fetches its OpenAPI document
    response = requests.get(f"{local_stack.api_url}/openapi.json", timeout=10)

    # Then it is the document committed next to the code (the one the fuzzing below reads)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == json.loads(COMMITTED_SPEC.read_text())


@schema.parametrize()
@settings(deadline=None)
def test_every_operation_answers_as_its_document_says(case: Any, local_stack: RunningStack) -> None:
    # Given a generated request (valid or not) for one operation
    # When it is sent to the stack
    # Then the answer is no 5xx, and its status, body, content type and headers are documented
    case.call_and_validate(
        base_url=local_stack.api_url, headers=local_stack.auth(FUZZ_USER), timeout=30
    )


def test_workflows_along_the_documents_links_answer_as_documented(
    local_stack: RunningStack,
) -> None:
    # Given a state machine that creates uploads and then feeds their ids to the linked operations
    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {
                "base_url": local_stack.api_url,
                "headers": local_stack.auth(FUZZ_USER),
                "timeout": 30,
            }

    # When it runs short random workflows
    # Then every step passes the same checks as the single operations
    Workflow.run(settings=settings(max_examples=25, stateful_step_count=6, deadline=None))


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/nothing-here"),
        ("POST", "/uploads/0123456789abcdef0123456789abcdef/extra"),
        ("GET", "/admin"),
        ("DELETE", "/metadata"),
    ],
)
def test_a_path_no_route_serves_is_404_json(
    local_stack: RunningStack, method: str, path: str
) -> None:
    # Given a path outside the document
    # When a signed-in client calls it (without a token, the gateway's answer is a 401)
    response = requests.request(
        method, f"{local_stack.api_url}{path}", headers=local_stack.auth(FUZZ_USER), timeout=10
    )

    # Then it gets 404 JSON with a message
    assert response.status_code == 404, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert isinstance(response.json()["message"], str)


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("PUT", "/uploads", {"GET", "POST"}),
        ("PATCH", "/uploads/0123456789abcdef0123456789abcdef", {"GET", "DELETE"}),
        ("DELETE", "/uploads/0123456789abcdef0123456789abcdef/parts", {"GET", "POST"}),
        ("POST", "/admin/hashes", {"GET"}),
    ],
)
def test_a_method_the_path_does_not_serve_is_405_json_with_allow(
    local_stack: RunningStack, method: str, path: str, allowed: set[str]
) -> None:
    # Given a path the API serves, and a method it does not serve there
    # When a signed-in client calls it
    response = requests.request(
        method, f"{local_stack.api_url}{path}", headers=local_stack.auth(FUZZ_USER), timeout=10
    )

    # Then it gets 405 JSON with a message, and Allow lists the methods that path serves
    assert response.status_code == 405, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert "not allowed" in response.json()["message"]
    assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed


# Defects the fuzzing found, pinned so a regression fails on every run, not only on a lucky one.


@pytest.mark.parametrize(
    "content_type", ["text/plain", "multipart/form-data", "application/xml; charset=utf-8"]
)
def test_a_body_that_is_not_json_is_415_json(local_stack: RunningStack, content_type: str) -> None:
    # Given a create request whose body is labelled as something other than JSON
    body = json.dumps({"filename": "a.bin", "size": 1})

    # When it is sent
    response = requests.post(
        f"{local_stack.api_url}/uploads",
        data=body,
        headers={**local_stack.auth(FUZZ_USER), "Content-Type": content_type},
        timeout=10,
    )

    # Then it is refused as 415 with a message (a multipart label without a boundary was a 500)
    assert response.status_code == 415, response.text
    assert response.json() == {"message": "the body must be application/json"}


def test_a_body_that_is_not_utf8_is_422_json(local_stack: RunningStack) -> None:
    # Given a body labelled JSON whose bytes are not UTF-8
    body = b'{"filename": "\xff\xfe", "size": 1}'

    # When it is sent
    response = requests.post(
        f"{local_stack.api_url}/uploads",
        data=body,
        headers={**local_stack.auth(FUZZ_USER), "Content-Type": "application/json"},
        timeout=10,
    )

    # Then it is the invalid-JSON 422, not a 500
    assert response.status_code == 422, response.text
    assert response.json()["message"] == "request body is not valid JSON"
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_an_integral_json_number_is_an_integer(local_stack: RunningStack) -> None:
    # Given a size written as 2048.0, which JSON Schema's "integer" accepts
    # When a client creates an upload with it
    response = requests.post(
        f"{local_stack.api_url}/uploads",
        data='{"filename": "a.bin", "size": 2048.0}',
        headers={**local_stack.auth(FUZZ_USER), "Content-Type": "application/json"},
        timeout=10,
    )

    # Then it is the size 2048 (while 2048.5 stays a 422)
    assert response.status_code == 201, response.text
    assert response.json()["upload"]["headers"]["Content-Length"] == "2048"
    fractional = requests.post(
        f"{local_stack.api_url}/uploads",
        json={"filename": "a.bin", "size": 2048.5},
        headers=local_stack.auth(FUZZ_USER),
        timeout=10,
    )
    assert fractional.status_code == 422, fractional.text
