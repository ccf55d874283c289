"""A local API Gateway HTTP API: each request becomes a payload 2.0 event for the API function.

What API Gateway does before and after the Lambda call is done here too: headers lowercased and
repeated ones joined with commas, cookies split out, non-text bodies base64-encoded, the 10 MB
payload limit, a 500 {"message": "Internal Server Error"} when the function fails, and the
response's cookies and base64 body turned back into HTTP. Beside the API it serves the upload
page's files (web/), so the page and the API share one origin locally.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from onecopy_local._http import (
    HOP_BY_HOP,
    LOGGER,
    LoopbackHandler,
    LoopbackServer,
    RequestBodyError,
)
from onecopy_local.lambda_runtime import ACCOUNT_ID
from onecopy_local.web import static_response

log = logging.getLogger(LOGGER)

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway HTTP API's request payload limit
API_ID = "local"
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")
_TEXT_SUFFIXES = ("+json", "+xml")

Invoke = Callable[[dict[str, Any]], Any]
# template.yaml's HttpApi routes; `/{proxy+}` needs at least one path segment, so `/` is not one.
ROOT_ROUTE = "GET /"
PROXY_ROUTE = "ANY /{proxy+}"


def http_api_event(
    *,
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    source_ip: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The event API Gateway (HTTP API, payload format 2.0) sends to Lambda for template.yaml's
    routes: `GET /`, and `ANY /{proxy+}` with the path after the first slash as `proxy`."""
    now = now or datetime.now(UTC)
    split = urlsplit(target)
    path = split.path or "/"
    route_key = ROOT_ROUTE if path == "/" else PROXY_ROUTE
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key in HOP_BY_HOP:
            continue
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    joined.setdefault("x-forwarded-for", source_ip)
    joined.setdefault("x-forwarded-proto", "http")
    host = joined.get("host", "127.0.0.1")
    joined.setdefault("x-forwarded-port", host.rpartition(":")[2] if ":" in host else "80")
    request_id = base64.urlsafe_b64encode(uuid.uuid4().bytes[:12]).decode().rstrip("=")
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": split.query,
        "headers": joined,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": host,
            "domainPrefix": host.split(".", 1)[0],
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": joined.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if route_key == PROXY_ROUTE:
        event["pathParameters"] = {"proxy": unquote(path[1:])}
    if split.query:
        params: dict[str, str] = {}
        for name, value in parse_qsl(split.query, keep_blank_values=True):
            params[name] = f"{params[name]},{value}" if name in params else value
        event["queryStringParameters"] = params
    if body:
        if _is_text(joined.get("content-type", "")):
            with contextlib.suppress(UnicodeDecodeError):
                event["body"] = body.decode("utf-8")
        if "body" not in event:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    return event


def _is_text(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith(_TEXT_TYPES) or media.endswith(_TEXT_SUFFIXES)


def http_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body API Gateway makes of a function's payload 2.0 response."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # API Gateway's format inference: anything else is a 200 JSON body.
        body = result if isinstance(result, str) else json.dumps(result)
        return 200, [("content-type", "application/json")], body.encode()
    headers: list[tuple[str, str]] = [
        (name, str(value)) for name, value in (result.get("headers") or {}).items()
    ]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((name, str(value)) for value in values)
    headers.extend(("set-cookie", cookie) for cookie in result.get("cookies") or [])
    raw = result.get("body") or ""
    payload = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("content-type", "application/json"))
    headers = [(n, v) for n, v in headers if n.lower() not in HOP_BY_HOP | {"content-length"}]
    return int(result["statusCode"]), headers, payload


class ApiServer(LoopbackServer):
    def __init__(self, port: int, invoke: Invoke) -> None:
        self.invoke = invoke
        super().__init__(port, ApiHandler, "api")


class ApiHandler(LoopbackHandler):
    server: ApiServer

    def do_GET(self) -> None:
        self.begin()
        try:
            self._serve()
        finally:
            self.end()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = do_TRACE = do_GET

    def _serve(self) -> None:
        started = time.monotonic()
        if self.command in ("GET", "HEAD") and (page := static_response(self.path)) is not None:
            status, page_headers, content = page
            self.send_plain(
                status, list(page_headers.items()), content, head=self.command == "HEAD"
            )
            return
        try:
            if int(self.headers.get("Content-Length") or 0) > MAX_PAYLOAD_BYTES:
                self.close_connection = True
                self._json(413, {"message": "Request Entity Too Large"})
                return
            body = bytearray()
            for chunk in self.body_chunks():
                body += chunk
                if len(body) > MAX_PAYLOAD_BYTES:
                    self.close_connection = True
                    self._json(413, {"message": "Request Entity Too Large"})
                    return
        except (RequestBodyError, ValueError):
            self.close_connection = True
            self._json(400, {"message": "Bad Request"})
            return
        if urlsplit(self.path).path in ("", "/") and self.command != "GET":
            # No route matches: API Gateway answers itself, without invoking the function.
            self._json(404, {"message": "Not Found"})
            return
        event = http_api_event(
            method=self.command,
            target=self.path,
            headers=self.headers.items(),
            body=bytes(body),
            source_ip=self.client_address[0],
        )
        try:
            status, headers, payload = http_response(self.server.invoke(event))
        except Exception:
            log.exception("api: the function failed on %s %s", self.command, self.path)
            status, headers = 500, [("content-type", "application/json")]
            payload = json.dumps({"message": "Internal Server Error"}).encode()
        headers.append(("apigw-requestid", event["requestContext"]["requestId"]))
        self.send_plain(status, headers, payload, head=self.command == "HEAD")
        elapsed = (time.monotonic() - started) * 1000
        log.info("api: %s %s -> %s (%.0f ms)", self.command, self.path, status, elapsed)

    def _json(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        headers = [("content-type", "application/json")]
        self.send_plain(status, headers, payload, head=self.command == "HEAD")
