"""The upload page's files (web/), for the local API server to serve beside the API.

The page is flat: ``/`` (and ``/index.html``) is web/index.html, and ``/<name>`` is the file
``web/<name>`` (``/app.js``, ``/logic.js``, ``/upload.js``, ``/hash-worker.js``, ``/style.css``).
The page refers to its files by relative name, so any static server of web/ works the same way.
Only a plain file name with a known extension that exists directly in web/ is served; every other
path (API routes, sub-directories, ``..``, encoded names) gets None so the caller routes it to the
API.
"""

from __future__ import annotations

import re
from pathlib import Path

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)+")


def static_response(path: str, root: Path = WEB_ROOT) -> tuple[int, dict[str, str], bytes] | None:
    """(status, headers, body) for a page file, or None when ``path`` is not one.

    ``path`` is the request target's path; a query string or fragment is ignored.
    """
    name = re.split(r"[?#]", path, maxsplit=1)[0].removeprefix("/") or "index.html"
    if not _NAME.fullmatch(name):
        return None
    content_type = CONTENT_TYPES.get(Path(name).suffix)
    file = root / name
    if content_type is None or not file.is_file():
        return None
    headers = {
        "Content-Type": content_type,
        # The page changes with the code; revalidate rather than run a stale copy against the API.
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    if name.endswith(".html"):
        headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    return 200, headers, file.read_bytes()
