"""A local Lambda Invoke endpoint: what `sam local start-lambda` serves, without containers.

    server = LambdaInvokeServer({"ReconcileFunction": handler}, port=3001).start()
    boto3.client("lambda", endpoint_url=server.url).invoke(FunctionName="ReconcileFunction")

A handler is called as Lambda calls one, ``handler(event, context)``: the local stack passes one
that forwards the event to the function's execution environment (onecopy_local.lambda_runtime),
which raises FunctionError with the runtime's error payload when the function fails.

It implements the one REST call clients make, `POST /2015-03-31/functions/{name}/invocations`,
for synchronous (RequestResponse) invocations: the JSON payload is the event, the handler's JSON
result is the answer (200). As in AWS, a handler that raises still answers 200, with
`X-Amz-Function-Error: Unhandled` and the error as JSON; an unknown function is a 404
ResourceNotFoundException. Running one invocation at a time per execution environment is the
handler's business (the stack's environments do).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from onecopy_local._http import LOGGER, LoopbackHandler, LoopbackServer, RequestBodyError
from onecopy_local.lambda_runtime import FunctionError, error_payload
from onecopy_local.resources import ACCOUNT_ID

log = logging.getLogger(LOGGER)

Handler = Callable[[Any, Any], Any]

DEFAULT_TIMEOUT_SECONDS = 900
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # Lambda's limit for a synchronous request payload
_PREFIX = "/2015-03-31/functions/"
_SUFFIX = "/invocations"


class InvokeContext:
    """The context object a handler gets: names, request id, and a real deadline."""

    def __init__(self, function_name: str, region: str, timeout_seconds: float) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{function_name}"
        self.memory_limit_in_mb = 128
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.monotonic()) * 1000), 0)


def function_name_of(identifier: str) -> str:
    """The bare name from any form Invoke accepts: `name`, `name:qualifier`, a partial ARN
    (`123456789012:function:name`) or a full ARN, any of them with a qualifier."""
    if ":function:" in identifier:
        identifier = identifier.split(":function:", 1)[1]
    return identifier.split(":", 1)[0]


class _InvokeHTTPServer(LoopbackServer):
    def __init__(
        self, port: int, functions: Mapping[str, Handler], region: str, timeout_seconds: float
    ) -> None:
        self.functions = dict(functions)
        self.region = region
        self.timeout_seconds = timeout_seconds
        super().__init__(port, _InvokeHandler, "lambda")


class _InvokeHandler(LoopbackHandler):
    server: _InvokeHTTPServer

    def do_POST(self) -> None:
        self.begin()
        try:
            self._invoke()
        finally:
            self.end()

    def do_GET(self) -> None:
        self.begin()
        try:
            self._error(404, "UnknownOperationException", f"no operation {self.command} here")
        finally:
            self.end()

    do_PUT = do_DELETE = do_HEAD = do_PATCH = do_GET

    def _invoke(self) -> None:
        path = urlsplit(self.path).path
        if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
            self._error(404, "UnknownOperationException", f"no operation at {path}")
            return
        identifier = unquote(path[len(_PREFIX) : -len(_SUFFIX)])
        name = function_name_of(identifier)
        handler = self.server.functions.get(name)
        if handler is None:
            arn = f"arn:aws:lambda:{self.server.region}:{ACCOUNT_ID}:function:{name}"
            self._error(404, "ResourceNotFoundException", f"Function not found: {arn}")
            return
        invocation_type = self.headers.get("X-Amz-Invocation-Type") or "RequestResponse"
        if invocation_type != "RequestResponse":
            self._error(
                400,
                "InvalidParameterValueException",
                f"only RequestResponse invocations are served locally, not {invocation_type}",
            )
            return
        try:
            body = b"".join(self.body_chunks())
        except RequestBodyError:
            self.close_connection = True
            self._error(400, "InvalidRequestContentException", "could not read the request body")
            return
        if len(body) > MAX_PAYLOAD_BYTES:
            self._error(
                413,
                "RequestTooLargeException",
                f"request payload of {len(body)} bytes exceeds {MAX_PAYLOAD_BYTES} bytes",
            )
            return
        try:
            event = json.loads(body) if body.strip() else {}
        except ValueError:
            self._error(
                400, "InvalidRequestContentException", "Could not parse request body into json"
            )
            return
        self._run(name, handler, event)

    def _run(self, name: str, handler: Handler, event: Any) -> None:
        context = InvokeContext(name, self.server.region, self.server.timeout_seconds)
        started = time.monotonic()
        headers = [("X-Amz-Executed-Version", "$LATEST")]
        error: dict[str, Any] | None = None
        try:
            result = handler(event, context)
        except FunctionError as exc:
            log.error("lambda: %s failed: %s", name, exc)
            error = exc.payload
        except Exception as exc:
            log.exception("lambda: %s failed", name)
            error = error_payload(exc, type(exc).__name__, str(exc), context.aws_request_id)
        else:
            try:
                payload = json.dumps(result).encode()
            except (TypeError, ValueError) as exc:
                message = f"Unable to marshal response: {exc}"
                error = error_payload(exc, "Runtime.MarshalError", message, context.aws_request_id)
        if error is not None:
            payload = json.dumps(error).encode()
            headers.append(("X-Amz-Function-Error", "Unhandled"))
        elapsed = (time.monotonic() - started) * 1000
        log.info("lambda: %s invoked (%.0f ms)", name, elapsed)
        self._reply(200, headers, payload, context.aws_request_id)

    def _error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"Type": "User", "message": message}).encode()
        self._reply(status, [("x-amzn-ErrorType", code)], body, str(uuid.uuid4()))

    def _reply(
        self, status: int, headers: list[tuple[str, str]], body: bytes, request_id: str
    ) -> None:
        headers = [
            ("Content-Type", "application/json"),
            ("x-amzn-RequestId", request_id),
            *headers,
        ]
        self.send_plain(status, headers, body, head=self.command == "HEAD")


class LambdaInvokeServer:
    """Serves `functions` ({name: handler(event, context)}) on 127.0.0.1:`port` (0 = a free
    port) until stop(). Usable as a context manager."""

    def __init__(
        self,
        functions: Mapping[str, Handler],
        port: int = 0,
        *,
        region: str = "us-east-1",
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._server = _InvokeHTTPServer(port, functions, region, timeout_seconds)
        self._started = False

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LambdaInvokeServer:
        self._server.start()
        self._started = True
        return self

    def stop(self) -> None:
        """Stop accepting, let invocations in progress finish, release the port."""
        if self._started:
            self._started = False
            self._server.close()
        else:
            self._server.server_close()

    def __enter__(self) -> LambdaInvokeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
