"""PageFunction: serves the upload page's files from the deployed stack (stdlib only).

``/`` and ``/index.html`` are index.html, ``/<name>`` is the file of that name beside this
module. template.yaml routes each page file explicitly to this function (the local stack routes by
the same template, so it runs this code too); anything else reaching it answers 404.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
_TEXT = (".html", ".js", ".css", ".svg")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)+")


def page_files(root: Path = ROOT) -> list[str]:
    """The names served: every file of a known type directly in the page's directory."""
    return sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix in CONTENT_TYPES)


def _error(status: int, message: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"message": message}),
        "isBase64Encoded": False,
    }


def respond(method: str, path: str, root: Path = ROOT) -> dict[str, Any]:
    if method not in ("GET", "HEAD"):
        return _error(405, f"method {method} not allowed here")
    name = path.removeprefix("/") or "index.html"
    suffix = Path(name).suffix
    # The name pattern keeps '..', '/' and encoded names out before the file system is asked.
    if not _NAME.fullmatch(name) or suffix not in CONTENT_TYPES or not (root / name).is_file():
        return _error(404, "no such page file")
    data = (root / name).read_bytes()
    headers = {
        "Content-Type": CONTENT_TYPES[suffix],
        # The page changes with the code; revalidate rather than run a stale copy against the API.
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    if suffix == ".html":
        headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    if method == "HEAD":
        return {"statusCode": 200, "headers": headers, "body": "", "isBase64Encoded": False}
    if suffix in _TEXT:
        return {
            "statusCode": 200,
            "headers": headers,
            "body": data.decode(),
            "isBase64Encoded": False,
        }
    body = base64.b64encode(data).decode()
    return {"statusCode": 200, "headers": headers, "body": body, "isBase64Encoded": True}


def handler(event: Any, context: Any) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) request; anything else is a 400, not a crash."""
    http = event.get("requestContext", {}).get("http") if isinstance(event, dict) else None
    path = event.get("rawPath") if isinstance(event, dict) else None
    if not isinstance(http, dict) or not isinstance(path, str):
        return _error(400, "not an API Gateway HTTP API (payload 2.0) request")
    return respond(str(http.get("method", "")), path)
