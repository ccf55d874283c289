"""Bad requests over HTTP, signed in as alice: each is a 4xx with a JSON message, and changes
nothing. (Requests without a valid token are tests/e2e/test_isolation.py's.)"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests

from domain.multipart import MAX_OBJECT_SIZE
from tests.localstack import RunningStack, count_items, read_stats

pytestmark = pytest.mark.e2e

VALID_SHA = "0" * 64


def _post(body: Any) -> dict[str, Any]:
    return {"method": "POST", "path": "/uploads", "json": body}


def _raw_json(data: bytes) -> dict[str, Any]:
    return {
        "method": "POST",
        "path": "/uploads",
        "data": data,
        "headers": {"Content-Type": "application/json"},
    }


CASES: dict[str, dict[str, Any]] = {
    "malformed-json": {"method": "POST", "path": "/uploads", "data": b'{"filename": "a.bin",'},
    "json-but-not-an-object": _post(["a.bin", 10]),
    "empty-body": {"method": "POST", "path": "/uploads", "data": b""},
    "missing-filename": _post({"size": 10}),
    "missing-size": _post({"filename": "a.bin"}),
    "size-as-string": _post({"filename": "a.bin", "size": "10"}),
    "size-as-float": _post({"filename": "a.bin", "size": 10.5}),
    "filename-as-number": _post({"filename": 7, "size": 10}),
    "negative-size": _post({"filename": "a.bin", "size": -1}),
    "over-the-object-limit": _post({"filename": "big.iso", "size": MAX_OBJECT_SIZE + 1}),
    "sha256-not-hex": _post({"filename": "a.bin", "size": 10, "sha256": "z" * 64}),
    "sha256-too-short": _post({"filename": "a.bin", "size": 10, "sha256": "a" * 63}),
    "sha256-as-number": _post({"filename": "a.bin", "size": 10, "sha256": 12345}),
    "filename-with-nul": _post({"filename": "a\x00b.bin", "size": 10, "sha256": VALID_SHA}),
    "filename-with-newline": _post({"filename": "a\nb.bin", "size": 10}),
    "filename-empty": _post({"filename": "", "size": 10}),
    "filename-256-chars": _post({"filename": "a" * 256, "size": 10}),
    "content-type-not-mime": _post({"filename": "a.bin", "size": 10, "content_type": "not a type"}),
    "unknown-field": _post({"filename": "a.bin", "size": 10, "owner": "someone-else"}),
    "malformed-upload-id": {"method": "GET", "path": "/uploads/not-an-upload-id"},
    "upload-id-uppercase": {"method": "GET", "path": "/uploads/" + "A" * 32},
    "unknown-upload-id": {"method": "GET", "path": f"/uploads/{uuid.uuid4().hex}"},
    "unknown-route": {"method": "GET", "path": "/no/such/route"},
    "unknown-route-post": {"method": "POST", "path": "/files", "json": {"filename": "a"}},
    # Past Python's 4,300-digit int limit, and past its stack: each was a 500.
    "size-of-5001-digits": _raw_json(b'{"filename": "a.bin", "size": ' + b"9" * 5001 + b"}"),
    "array-100000-deep": _raw_json(b"[" * 100_000 + b"]" * 100_000),
    # JSON, but not said to be: the API documents 415 for any body that is not application/json.
    "no-content-type": {
        "method": "POST",
        "path": "/uploads",
        "data": b'{"filename": "a.bin", "size": 10}',
    },
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_bad_request_is_a_4xx_with_a_message_and_changes_nothing(
    local_stack: RunningStack, case: dict[str, Any]
) -> None:
    # Given the stack's current uploads and counters
    uploads_before = count_items(local_stack, local_stack.uploads_table)
    stats_before = read_stats(local_stack)

    # When a signed-in client sends the bad request
    request = dict(case)
    headers = {**local_stack.auth("alice"), **request.pop("headers", {})}
    response = requests.request(
        request.pop("method"),
        local_stack.api_url + request.pop("path"),
        headers=headers,
        timeout=30,
        **request,
    )

    # Then it is refused with a JSON message, and no upload or counter changed
    assert 400 <= response.status_code < 500, response.text
    assert response.status_code != 401, "the token was refused: the case tested nothing"
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["message"]
    assert isinstance(message, str) and message.strip()
    assert count_items(local_stack, local_stack.uploads_table) == uploads_before
    assert read_stats(local_stack) == stats_before


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/uploads/{uuid.uuid4().hex}", 404),
        ("/no/such/route", 404),
    ],
    ids=["unknown-upload", "unknown-route"],
)
def test_what_does_not_exist_is_a_404(local_stack: RunningStack, path: str, status: int) -> None:
    # When a signed-in client asks for something that is not there
    response = requests.get(
        local_stack.api_url + path, headers=local_stack.auth("alice"), timeout=30
    )

    # Then the answer says so
    assert response.status_code == status
    assert response.json()["message"]


def test_a_size_over_the_limit_is_refused_with_a_message_naming_the_limit(
    local_stack: RunningStack,
) -> None:
    # When a client declares one byte more than S3 can hold in one object (5 TiB; above 5 GiB,
    # S3's single-PUT limit, the API answers with a multipart upload instead)
    response = requests.post(
        f"{local_stack.api_url}/uploads",
        json={"filename": "big.iso", "size": MAX_OBJECT_SIZE + 1},
        headers=local_stack.auth("alice"),
        timeout=30,
    )

    # Then the message says what the limit is
    assert 400 <= response.status_code < 500
    message = response.json()["message"]
    assert str(MAX_OBJECT_SIZE) in message or "5 TiB" in message, message
