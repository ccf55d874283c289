"""The page's files reach the browser through template.yaml's routes to PageFunction, the same
way locally (onecopy_local's gateway) and deployed; every other path goes to the API."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from onecopy_local.apigateway import http_api_event, http_response, match_route, template_routes
from onecopy_local.resources import template

pytestmark = pytest.mark.unit

WEB = Path(__file__).resolve().parents[2] / "web"
ROUTES = template_routes(template())


def _page_module() -> ModuleType:
    # Imported from web/ by path, as Lambda imports it from PageFunction's code root.
    spec = importlib.util.spec_from_file_location("page", WEB / "page.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PAGE = _page_module()


def _get(target: str) -> tuple[str, int, dict[str, str], bytes]:
    """GET ``target`` as the local gateway handles it: the function its route names, and what
    PageFunction answers (an API route is not invoked here)."""
    path = target.split("?", 1)[0]
    match = match_route(ROUTES, "GET", path)
    assert match is not None, f"no route for GET {path}"
    if match.route.function != "PageFunction":
        return match.route.function, 0, {}, b""
    event = http_api_event(
        method="GET", target=target, headers=[], body=b"", source_ip="127.0.0.1", match=match
    )
    result: Any = PAGE.handler(event, None)
    status, headers, body = http_response(result)
    return "PageFunction", status, {k.lower(): v for k, v in headers}, body


def test_the_root_is_the_page() -> None:
    function, status, headers, body = _get("/")
    assert (function, status) == ("PageFunction", 200)
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["x-content-type-options"] == "nosniff"
    assert body == (WEB / "index.html").read_bytes()


@pytest.mark.parametrize(
    ("target", "content_type"),
    [
        ("/index.html", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/hash-worker.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
        ("/?api=http%3A%2F%2F127.0.0.1%3A3000", "text/html; charset=utf-8"),
        ("/logic.js?v=2", "text/javascript; charset=utf-8"),
    ],
)
def test_page_files_are_served_by_page_function_with_their_type(
    target: str, content_type: str
) -> None:
    function, status, headers, body = _get(target)
    assert (function, status) == ("PageFunction", 200)
    assert headers["content-type"] == content_type
    name = target.split("?", 1)[0].removeprefix("/") or "index.html"
    assert body == (WEB / name).read_bytes()


def test_every_file_the_page_refers_to_is_routed_to_page_function() -> None:
    # Given every relative reference in the page and its modules
    html = (WEB / "index.html").read_text()
    names = set(re.findall(r'(?:href|src)="([\w.-]+)"', html))
    for module in WEB.glob("*.js"):
        names |= set(re.findall(r'(?:from |URL\()"\./([\w.-]+)"', module.read_text()))
    assert {"style.css", "app.js", "logic.js", "upload.js", "hash-worker.js"} <= names
    # Then each is served, by PageFunction
    for name in names:
        assert _get(f"/{name}")[:2] == ("PageFunction", 200), name


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
        "/page.py",  # PageFunction's own code is not a page file
        "/app.js/",
        "/index.htm",
    ],
)
def test_anything_else_goes_to_the_api(path: str) -> None:
    assert _get(path)[0] == "ApiFunction"
