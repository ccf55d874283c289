"""A local API Gateway HTTP API: routes by template.yaml, and payload 2.0 events for the functions.

The routes are the template's own: every ``HttpApi`` event of every function (Path + Method, the
route key "METHOD /path"). A request goes to the route API Gateway would pick (``match_route``);
with none, the answer is 404 {"message": "Not Found"} and no function runs. What API Gateway
does before and after the Lambda call is done here too: headers lowercased and repeated ones
joined with commas, cookies split out, non-text bodies base64-encoded, the 10 MB payload limit, a
500 {"message": "Internal Server Error"} when the function fails, and the response's cookies and
base64 body turned back into HTTP. The upload page is no exception: template.yaml routes its
files to PageFunction, which serves them here as it does deployed.

The HttpApi's own settings apply as on AWS, in AWS's order: throttling (DefaultRouteSettings, one
token bucket for the whole API: 429 {"message": "Too Many Requests"}), CORS (CorsConfiguration:
preflights answered here, never by a function; the configured CORS headers replace a function's),
then the JWT authorizer (onecopy_local.authorizer) on every route but those whose event says
`Auth: {Authorizer: NONE}`. The function sees only claims the gateway verified.

Every request, answered by a function or by the gateway itself (401, 404, 413, 429, a preflight),
writes one access-log line rendered from the HttpApi's AccessLogSettings.Format (``AccessLog``):
its $context variables as API Gateway fills them, "-" for one without a value.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
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
from onecopy_local.authorizer import UNAUTHORIZED, JwtAuthorizer, Unauthorized
from onecopy_local.resources import ACCOUNT_ID

log = logging.getLogger(LOGGER)

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway HTTP API's request payload limit
API_ID = "local"
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")
_TEXT_SUFFIXES = ("+json", "+xml")

Invoke = Callable[[dict[str, Any]], Any]
DEFAULT_ROUTE = "$default"


@dataclass(frozen=True, slots=True)
class Route:
    method: str  # upper case, or "ANY"
    path: str  # "/uploads/{id}", "/{proxy+}", or "$default"
    function: str  # the logical id of the function it invokes
    authorizer: str | None = None  # the HttpApi authorizer that guards it; None: public

    @property
    def key(self) -> str:
        return DEFAULT_ROUTE if self.path == DEFAULT_ROUTE else f"{self.method} {self.path}"


@dataclass(frozen=True, slots=True)
class Match:
    route: Route
    path_parameters: dict[str, str]


def template_routes(template: Mapping[str, Any]) -> list[Route]:
    """Every HttpApi event of every function in the template; an event without a Path and
    Method is the $default route, as SAM makes it. A route is guarded by its API's
    DefaultAuthorizer unless the event names another authorizer, or NONE."""
    routes = []
    for logical_id, spec in template["Resources"].items():
        if spec.get("Type") != "AWS::Serverless::Function":
            continue
        for event in (spec.get("Properties", {}).get("Events") or {}).values():
            if event.get("Type") != "HttpApi":
                continue
            props = event.get("Properties") or {}
            path, method = props.get("Path"), props.get("Method")
            authorizer = _route_authorizer(template, props)
            if path is None and method is None:
                routes.append(Route("ANY", DEFAULT_ROUTE, logical_id, authorizer))
            else:
                routes.append(
                    Route(str(method or "ANY").upper(), str(path), logical_id, authorizer)
                )
    keys = [r.key for r in routes]
    if len(set(keys)) != len(keys):
        raise ValueError(f"template.yaml declares a route twice: {sorted(keys)}")
    return routes


def http_api(template: Mapping[str, Any], event_properties: Mapping[str, Any]) -> dict[str, Any]:
    """The properties of the AWS::Serverless::HttpApi an HttpApi event belongs to (its ApiId),
    or {} for SAM's implicit API."""
    api_id = event_properties.get("ApiId")
    if api_id is None:
        return {}
    logical_id = api_id["Ref"] if isinstance(api_id, dict) else api_id
    props: dict[str, Any] = template["Resources"][logical_id].get("Properties") or {}
    return props


def _route_authorizer(template: Mapping[str, Any], props: Mapping[str, Any]) -> str | None:
    declared = (props.get("Auth") or {}).get("Authorizer")
    if declared is None:
        declared = (http_api(template, props).get("Auth") or {}).get("DefaultAuthorizer")
    return None if declared in (None, "NONE") else str(declared)


def _segments(path: str) -> list[str]:
    return [] if path == "/" else path[1:].split("/")


def _path_match(route_path: str, path: str) -> tuple[tuple[int, int], dict[str, str]] | None:
    """How specifically ``route_path`` matches ``path`` (higher is more), and its variables."""
    pattern, actual = _segments(route_path), _segments(path)
    greedy = bool(pattern) and pattern[-1].startswith("{") and pattern[-1].endswith("+}")
    fixed = pattern[:-1] if greedy else pattern
    if len(actual) < len(fixed) + greedy or (not greedy and len(actual) != len(fixed)):
        return None
    variables: dict[str, str] = {}
    literals = 0
    for want, got in zip(fixed, actual, strict=False):
        if want.startswith("{") and want.endswith("}"):
            if not got:
                return None
            variables[want[1:-1]] = unquote(got)
        elif want == got:
            literals += 1
        else:
            return None
    if greedy:
        rest = "/".join(actual[len(fixed) :])
        if not rest:
            return None
        variables[pattern[-1][1:-2]] = unquote(rest)
    # An exact path beats one with variables, which beats a greedy one; then more literals win.
    kind = 0 if greedy else 1 if variables else 2
    return (kind, literals), variables


def match_route(routes: Iterable[Route], method: str, path: str) -> Match | None:
    """The route API Gateway picks: the most specific path, then a specific method over ANY;
    $default only when nothing else matches."""
    best: tuple[tuple[int, int, int], Match] | None = None
    default = None
    for route in routes:
        if route.path == DEFAULT_ROUTE:
            default = route
            continue
        if route.method not in (method, "ANY"):
            continue
        found = _path_match(route.path, path)
        if found is None:
            continue
        (kind, literals), variables = found
        rank = (kind, literals, int(route.method != "ANY"))
        if best is None or rank > best[0]:
            best = (rank, Match(route, variables))
    if best is not None:
        return best[1]
    return Match(default, {}) if default is not None else None


def http_api_event(
    *,
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    source_ip: str,
    match: Match,
    now: datetime | None = None,
    claims: Mapping[str, str] | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The event API Gateway (HTTP API, payload format 2.0) sends to Lambda for ``match``;
    ``claims`` are those of the token the route's JWT authorizer verified."""
    now = now or datetime.now(UTC)
    split = urlsplit(target)
    path = split.path or "/"
    route_key = match.route.key
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
    request_id = request_id or new_request_id()
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
            "time": request_time(now),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if claims is not None:
        event["requestContext"]["authorizer"] = {"jwt": {"claims": dict(claims), "scopes": None}}
    if cookies:
        event["cookies"] = cookies
    if match.path_parameters:
        event["pathParameters"] = dict(match.path_parameters)
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


def new_request_id() -> str:
    """An id in the shape of API Gateway's (also its apigw-requestid header)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes[:12]).decode().rstrip("=")


def request_time(now: datetime) -> str:
    """$context.requestTime: CLF-formatted, in UTC."""
    return now.astimezone(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


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


class TokenBucket:
    """API Gateway's throttling: ``rate`` requests a second on average, bursts of up to ``burst``
    (the bucket's size, full at start). Thread-safe; ``clock`` is injectable for tests."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("throttling needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Whether a request may pass now (it then uses a token)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


@dataclass(frozen=True, slots=True)
class Cors:
    """An HttpApi CorsConfiguration (resolved)."""

    allow_origins: tuple[str, ...]
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None

    @classmethod
    def from_template(cls, config: Mapping[str, Any]) -> Cors:
        def names(key: str) -> tuple[str, ...]:
            value = config.get(key) or ()
            return (value,) if isinstance(value, str) else tuple(str(v) for v in value)

        max_age = config.get("MaxAge")
        return cls(
            allow_origins=names("AllowOrigins"),
            allow_methods=names("AllowMethods"),
            allow_headers=names("AllowHeaders"),
            expose_headers=names("ExposeHeaders"),
            max_age=None if max_age is None else int(max_age),
        )

    def allowed(self, origin: str) -> str | None:
        """The access-control-allow-origin value for ``origin``, or None if it is not allowed.
        Entries may be "*", an exact origin, or a scheme wildcard like "https://*"."""
        for entry in self.allow_origins:
            if entry == "*":
                return "*"
            if entry == origin or (entry.endswith("*") and origin.startswith(entry[:-1])):
                return origin
        return None

    def preflight_headers(self, origin: str) -> list[tuple[str, str]]:
        allow = self.allowed(origin)
        if allow is None:
            return []
        headers = [("access-control-allow-origin", allow)]
        if self.allow_methods:
            headers.append(("access-control-allow-methods", ",".join(self.allow_methods)))
        if self.allow_headers:
            headers.append(("access-control-allow-headers", ",".join(self.allow_headers)))
        if self.max_age is not None:
            headers.append(("access-control-max-age", str(self.max_age)))
        return headers

    def response_headers(self, origin: str) -> list[tuple[str, str]]:
        allow = self.allowed(origin)
        if allow is None:
            return []
        headers = [("access-control-allow-origin", allow)]
        if self.expose_headers:
            headers.append(("access-control-expose-headers", ",".join(self.expose_headers)))
        return headers


_CONTEXT_VARIABLE = re.compile(r"\$context\.([A-Za-z0-9_]+(?:\.[A-Za-z0-9_:-]+)*)")


class AccessLog:
    """API Gateway's access logging: one line per request, ``format`` (the HttpApi's
    AccessLogSettings.Format) with each $context variable replaced by its value for the request,
    handed to ``write`` (a file's or the log's; called from the gateway's request threads).

    A variable without a value (unknown here, or not set for this request, such as the claims of
    a request no authorizer let through) renders as "-", as API Gateway renders it. Values are
    escaped for a JSON string, which is where a JSON format puts them.
    """

    def __init__(self, format: str, write: Callable[[str], None]) -> None:
        self.format = format
        self.write = write

    def render(self, context: Mapping[str, str]) -> str:
        def value(match: re.Match[str]) -> str:
            found = context.get(match[1])
            return "-" if found is None or found == "" else json.dumps(found)[1:-1]

        return _CONTEXT_VARIABLE.sub(value, self.format)

    def record(self, context: Mapping[str, str]) -> None:
        self.write(self.render(context))


class ApiServer(LoopbackServer):
    """Serves ``routes``, invoking ``functions[route.function]`` for each request, behind the
    API's throttle, CORS configuration and authorizers (each optional, as in a template)."""

    def __init__(
        self,
        port: int,
        routes: Sequence[Route],
        functions: Mapping[str, Invoke],
        *,
        authorizers: Mapping[str, JwtAuthorizer] | None = None,
        throttle: TokenBucket | None = None,
        cors: Cors | None = None,
        access_log: AccessLog | None = None,
    ) -> None:
        missing = {r.function for r in routes} - set(functions)
        if missing:
            raise ValueError(f"no function to invoke for the routes of {sorted(missing)}")
        self.authorizers = dict(authorizers or {})
        unknown = {r.authorizer for r in routes if r.authorizer} - set(self.authorizers)
        if unknown:
            raise ValueError(f"no authorizer named {sorted(unknown)} (routes need them)")
        self.routes = list(routes)
        self.functions = dict(functions)
        self.throttle = throttle
        self.cors = cors
        self.access_log = access_log
        super().__init__(port, ApiHandler, "api")


class _Access:
    """What one request's access-log line tells, filled in as the request is served."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.now = datetime.now(UTC)
        self.request_id = new_request_id()
        self.route_key: str | None = None
        self.status: int | None = None
        self.length: int | None = None
        self.error: str | None = None  # the message of an answer the gateway made itself
        self.integration_ms: int | None = None
        self.integration_status: int | None = None
        self.claims: Mapping[str, Any] = {}


class ApiHandler(LoopbackHandler):
    server: ApiServer
    _access: _Access

    def do_GET(self) -> None:
        self.begin()
        self._access = _Access()
        try:
            self._serve()
        finally:
            self._log_access()
            self.end()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = do_TRACE = do_GET

    def _serve(self) -> None:
        started = self._access.started
        if self.server.throttle is not None and not self.server.throttle.take():
            self._discard_body()
            self._json(429, {"message": "Too Many Requests"})
            log.info("api: %s %s -> 429 (throttled)", self.command, self.path)
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
        if self._is_preflight():
            # HTTP API answers preflights itself when CORS is configured, before any route or
            # authorizer: a browser never sends a token with a preflight.
            origin = self.headers.get("Origin", "")
            assert self.server.cors is not None
            self._access.status, self._access.length = 204, 0
            self.send_plain(204, self.server.cors.preflight_headers(origin), b"")
            log.info("api: %s %s -> 204 (CORS preflight)", self.command, self.path)
            return
        match = match_route(self.server.routes, self.command, urlsplit(self.path).path or "/")
        if match is None:
            # API Gateway answers itself, without invoking anything.
            self._json(404, {"message": "Not Found"})
            log.info("api: %s %s -> 404 (no route)", self.command, self.path)
            return
        self._access.route_key = match.route.key
        claims = None
        if match.route.authorizer is not None:
            authorizer = self.server.authorizers[match.route.authorizer]
            try:
                claims = authorizer.authorize(self.headers.get("Authorization"))
            except Unauthorized as exc:
                self._json(401, UNAUTHORIZED, [("www-authenticate", exc.challenge)])
                log.info("api: %s %s -> 401 (%s)", self.command, self.path, exc)
                return
            self._access.claims = claims
        event = http_api_event(
            method=self.command,
            target=self.path,
            headers=self.headers.items(),
            body=bytes(body),
            source_ip=self.client_address[0],
            match=match,
            claims=claims,
            now=self._access.now,
            request_id=self._access.request_id,
        )
        function = match.route.function
        invoked = time.monotonic()
        try:
            status, headers, payload = http_response(self.server.functions[function](event))
            self._access.integration_status = 200
        except Exception as exc:
            # The environment has logged the function's own traceback.
            log.error("api: %s failed on %s %s: %s", function, self.command, self.path, exc)
            status, headers = 500, [("content-type", "application/json")]
            payload = json.dumps({"message": "Internal Server Error"}).encode()
            self._access.error = "Internal Server Error"
        self._access.integration_ms = round((time.monotonic() - invoked) * 1000)
        if self.server.cors is not None:
            # With CORS configured, API Gateway ignores the integration's CORS headers.
            headers = [(n, v) for n, v in headers if not n.lower().startswith("access-control-")]
        self._send(status, headers, payload)
        elapsed = (time.monotonic() - started) * 1000
        log.info("api: %s %s -> %s (%.0f ms)", self.command, self.path, status, elapsed)

    def _is_preflight(self) -> bool:
        return (
            self.server.cors is not None
            and self.command == "OPTIONS"
            and "Origin" in self.headers
            and "Access-Control-Request-Method" in self.headers
        )

    def _discard_body(self) -> None:
        # A refused request's body is not read: the connection cannot carry another request.
        if int(self.headers.get("Content-Length") or 0) or self.headers.get("Transfer-Encoding"):
            self.close_connection = True

    def _send(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        if self.server.cors is not None and (origin := self.headers.get("Origin")):
            headers = [*headers, *self.server.cors.response_headers(origin)]
        headers = [*headers, ("apigw-requestid", self._access.request_id)]
        self._access.status, self._access.length = status, len(payload)
        self.send_plain(status, headers, payload, head=self.command == "HEAD")

    def _json(
        self, status: int, body: dict[str, Any], extra: Sequence[tuple[str, str]] = ()
    ) -> None:
        """An answer the gateway makes itself; its message is the access log's error."""
        self._access.error = str(body.get("message", "")) or None
        payload = json.dumps(body).encode()
        self._send(status, [("content-type", "application/json"), *extra], payload)

    def _log_access(self) -> None:
        access_log = self.server.access_log
        if access_log is None:
            return
        a = self._access
        context: dict[str, str] = {
            "requestId": a.request_id,
            "extendedRequestId": a.request_id,
            "apiId": API_ID,
            "stage": "$default",
            "accountId": ACCOUNT_ID,
            "domainName": self.headers.get("Host", ""),
            "routeKey": a.route_key or "-",
            "httpMethod": self.command,
            "path": urlsplit(self.path).path or "/",
            "protocol": self.request_version,
            "requestTime": request_time(a.now),
            "requestTimeEpoch": str(int(a.now.timestamp() * 1000)),
            "identity.sourceIp": self.client_address[0],
            "identity.userAgent": self.headers.get("User-Agent", ""),
            "responseLatency": str(round((time.monotonic() - a.started) * 1000)),
        }
        if a.status is not None:
            context["status"] = str(a.status)
            context["responseLength"] = str(a.length or 0)
        if a.error is not None:
            context["error.message"] = a.error
            context["error.messageString"] = json.dumps(a.error)
        if a.integration_ms is not None:
            context["integrationLatency"] = context["integration.latency"] = str(a.integration_ms)
        if a.integration_status is not None:
            context["integrationStatus"] = context["integration.status"] = str(a.integration_status)
        for name, value in a.claims.items():
            context[f"authorizer.claims.{name}"] = str(value)
        access_log.record(context)
