"""PageFunction (web/page.py): the upload page as the deployed stack serves it, at `GET /`."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.lambda_events import sample
from web import page

pytestmark = pytest.mark.integration

WEB = page.ROOT


def _get(path: str, method: str = "GET") -> dict[str, Any]:
    """The sample `GET /` event, with another path (API Gateway routes each page file here)."""
    event = copy.deepcopy(sample("page_get_root.json"))
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {path}"
    result: dict[str, Any] = page.handler(event, None)
    return result


def test_the_root_is_the_upload_page() -> None:
    # Given the sample event API Gateway sends for `GET /`
    event = sample("page_get_root.json")

    # When the page function handles it
    response = page.handler(event, None)

    # Then it answers web/index.html, as HTML that browsers must not sniff or frame
    assert response["statusCode"] == 200
    assert response["isBase64Encoded"] is False
    assert response["body"] == (WEB / "index.html").read_text()
    headers = response["headers"]
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("index.html", "text/html; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("logic.js", "text/javascript; charset=utf-8"),
        ("upload.js", "text/javascript; charset=utf-8"),
        ("hash-worker.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
def test_each_page_file_is_served_under_its_own_name(name: str, content_type: str) -> None:
    response = _get(f"/{name}")

    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == content_type
    assert response["body"] == (WEB / name).read_text()


@pytest.mark.parametrize(
    "path",
    ["/no-such.js", "/page.py", "/README.md", "/../template.yaml", "/a/app.js", "/%2e%2e/x.js"],
)
def test_anything_else_is_a_404_json_message(path: str) -> None:
    response = _get(path)

    assert response["statusCode"] == 404
    assert response["headers"]["Content-Type"] == "application/json"
    assert json.loads(response["body"])["message"]


def test_a_method_other_than_get_is_refused() -> None:
    response = _get("/", method="POST")

    assert response["statusCode"] == 405
    assert json.loads(response["body"])["message"]


@pytest.mark.parametrize("event", [{}, sample("api_rest_v1_payload.json"), []])
def test_an_event_that_is_not_an_http_api_request_is_a_400(event: Any) -> None:
    response = page.handler(event, None)

    assert response["statusCode"] == 400
    assert json.loads(response["body"])["message"]
