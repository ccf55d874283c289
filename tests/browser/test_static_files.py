"""onecopy_local.web.static_response: the page's files, and nothing else, by path."""

from __future__ import annotations

import re

import pytest

from onecopy_local.web import WEB_ROOT, static_response

pytestmark = pytest.mark.unit


def test_the_root_is_the_page() -> None:
    found = static_response("/")
    assert found is not None
    status, headers, body = found
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert body == (WEB_ROOT / "index.html").read_bytes()


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/index.html", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/hash-worker.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/?api=http%3A%2F%2F127.0.0.1%3A3000", "text/html; charset=utf-8"),
        ("/logic.js?v=2", "text/javascript; charset=utf-8"),
    ],
)
def test_page_files_are_served_with_their_type(path: str, content_type: str) -> None:
    found = static_response(path)
    assert found is not None
    assert found[1]["Content-Type"] == content_type


def test_every_file_the_page_refers_to_is_served() -> None:
    # Given every relative reference in the page and its modules
    html = (WEB_ROOT / "index.html").read_text()
    names = set(re.findall(r'(?:href|src)="([\w.-]+)"', html))
    for module in WEB_ROOT.glob("*.js"):
        names |= set(re.findall(r'(?:from |URL\()"\./([\w.-]+)"', module.read_text()))
    assert {"style.css", "app.js", "logic.js", "upload.js", "hash-worker.js"} <= names
    # Then each is served
    assert all(static_response(f"/{name}") is not None for name in names)


@pytest.mark.parametrize(
    "path",
    [
        "/uploads",
        "/admin/stats",
        "/docs",
        "/openapi.json",  # an API route, not a file of web/
        "/download/0123456789abcdef0123456789abcdef",
        "/../pyproject.toml",
        "/%2e%2e/pyproject.toml",
        "/..%2fpyproject.toml",
        "//etc/passwd",
        "/web/../../pyproject.toml",
        "/.hidden.js",
        "/missing.js",
        "/app.js/",
        "/index.htm",
    ],
)
def test_anything_else_falls_through_to_the_api(path: str) -> None:
    assert static_response(path) is None
