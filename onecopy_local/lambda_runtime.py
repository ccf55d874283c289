"""Lambda execution environments, locally: each one a child process of its own.

Lambda gives every function its own sandbox: its own environment variables, its own credentials
(its execution role's), its own interpreter importing the handler from the function's code root,
one invocation at a time. Powertools relies on that last part (the resolver keeps
``current_event``, the batch processor its records, on module-level objects), and the role is
what the emulator authorizes each call against. So the local stack starts each environment as

    python -m onecopy_local.lambda_runtime --events-fd N --results-fd M

in the function's code root (Lambda's /var/task), with exactly the environment ``lambda_environ``
builds, and talks to it the way Lambda's runtime API does: one JSON line per invocation (event,
request id, deadline, function ARN) on one pipe, one JSON line back (the result, or the error the
Python runtime reports) on another. The function's own output (its logs) goes to our stdout and
stderr, as CloudWatch Logs would collect it.

An environment whose process dies or overruns the function's timeout is gone, as in Lambda: the
invocation fails (Runtime.ExitError, Sandbox.Timedout) and the next one starts a fresh process.
This module imports only the standard library, so an environment's interpreter holds nothing
but what the handler imports.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from onecopy_local._http import LOGGER

log = logging.getLogger(LOGGER)

START_TIMEOUT_SECONDS = 60.0  # an import on a loaded machine; Lambda allows 10 s of init
_STOP_TIMEOUT_SECONDS = 10.0
# Lambda stops a function at its timeout; the local clock gets a little slack for the pipes.
_TIMEOUT_SLACK_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class FunctionConfig:
    """What Lambda knows of a function before it runs: template.yaml's properties, resolved."""

    logical_id: str
    handler: str  # "module.attribute", importable from code_root
    code_root: Path
    runtime: str
    timeout_seconds: int
    memory_mb: int
    variables: Mapping[str, str] = field(default_factory=dict)  # its Environment, resolved
    region: str = "us-east-1"
    account_id: str = "123456789012"

    @property
    def function_name(self) -> str:
        return f"onecopy-local-{self.logical_id}"

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"


def lambda_environ(
    config: FunctionConfig,
    *,
    access_key: str,
    secret_key: str,
    endpoint_url: str,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment a Lambda environment of ``config`` starts with, pointed at the emulator.

    Nothing is inherited from the stack's own environment (a developer's AWS_PROFILE or
    AWS_ENDPOINT_URL_S3 must not reach a function), except PATH and the interpreter's locale.
    """
    log_stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
    environ = {
        # What Lambda sets (docs: "Defined runtime environment variables").
        "_HANDLER": config.handler,
        "AWS_REGION": config.region,
        "AWS_DEFAULT_REGION": config.region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{config.runtime}",
        "AWS_LAMBDA_FUNCTION_NAME": config.function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{config.function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "LAMBDA_TASK_ROOT": str(config.code_root),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        # What `sam local` adds: Powertools then skips X-Ray, which has no daemon here.
        "AWS_SAM_LOCAL": "true",
        # Local only: the emulator instead of AWS, and no developer configuration files.
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        # Lambda ships logs line by line as they are written.
        "PYTHONUNBUFFERED": "1",
        **config.variables,
    }
    environ.update(overrides or {})
    return environ


class FunctionError(Exception):
    """The function failed; ``payload`` is what Lambda reports (errorType, errorMessage, ...)."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        self.payload = dict(payload)
        super().__init__(f"{payload.get('errorType')}: {payload.get('errorMessage')}")


def error_payload(exc: BaseException, kind: str, message: str, request_id: str) -> dict[str, Any]:
    """The body Lambda's Python runtime returns for an unhandled error."""
    return {
        "errorMessage": message,
        "errorType": kind,
        "requestId": request_id,
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


# --- the parent side -----------------------------------------------------------------------------


class ExecutionEnvironment:
    """One child process running one function; ``invoke`` one event at a time."""

    def __init__(self, config: FunctionConfig, environ: Mapping[str, str]) -> None:
        self.config = config
        self._environ = dict(environ)
        self._process: subprocess.Popen[bytes] | None = None
        self._events: IO[bytes] | None = None
        self._results: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def exited(self) -> bool:
        """Started, and gone since (one not yet started is neither alive nor exited)."""
        return self._process is not None and self._process.poll() is not None

    def start(self) -> ExecutionEnvironment:
        """Start the process and wait for its handler to import (Lambda's init phase)."""
        events_read, events_write = os.pipe()
        results_read, results_write = os.pipe()
        try:
            self._process = subprocess.Popen(  # noqa: S603 (our interpreter, our module)
                [
                    sys.executable,
                    "-m",
                    "onecopy_local.lambda_runtime",
                    *("--events-fd", str(events_read), "--results-fd", str(results_write)),
                ],
                cwd=self.config.code_root,
                env=self._environ,
                stdin=subprocess.DEVNULL,
                pass_fds=(events_read, results_write),
            )
        except BaseException:
            os.close(events_write)
            os.close(results_read)
            raise
        finally:
            os.close(events_read)  # the child's ends: EOF comes when the child's copies close
            os.close(results_write)
        self._events = os.fdopen(events_write, "wb")
        self._reader = threading.Thread(
            target=self._read,
            args=(os.fdopen(results_read, "rb"),),
            name=f"{self.config.logical_id}-{self._process.pid}-results",
            daemon=True,
        )
        self._reader.start()
        ready = self._next(START_TIMEOUT_SECONDS) or {}
        if not ready.get("ready"):
            self._kill()
            self.close()
            raise FunctionError(
                ready.get("init_error")
                or {
                    "errorType": "Runtime.ExitError",
                    "errorMessage": f"{self.config.logical_id} did not start",
                }
            )
        return self

    def _read(self, results: IO[bytes]) -> None:
        with results:
            for line in results:
                self._results.put(json.loads(line))
        self._results.put(None)  # the process is gone

    def _next(self, timeout: float) -> dict[str, Any] | None:
        try:
            return self._results.get(timeout=timeout)
        except queue.Empty:
            return {"timeout": True}

    def invoke(self, event: Any, request_id: str) -> Any:
        """The function's result for ``event``; FunctionError if it failed, crashed or timed out."""
        assert self._events is not None, "start() first"
        timeout = self.config.timeout_seconds
        message = {
            "event": event,
            "request_id": request_id,
            "deadline_ms": int((time.time() + timeout) * 1000),
            "invoked_function_arn": self.config.arn,
        }
        try:
            self._events.write(json.dumps(message).encode() + b"\n")
            self._events.flush()
        except (BrokenPipeError, ValueError):
            pass  # the process died; its reader says so below
        answer = self._next(timeout + _TIMEOUT_SLACK_SECONDS)
        if answer is not None and "timeout" not in answer:
            if "error" in answer:
                raise FunctionError(answer["error"])
            return answer.get("result")
        if answer is not None:
            self._kill()
            raise FunctionError(
                {
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": f"RequestId: {request_id} Error: Task timed out after "
                    f"{timeout:.2f} seconds",
                }
            )
        status = self._exit_status()
        log.error("lambda: %s's environment exited (%s)", self.config.logical_id, status)
        raise FunctionError(
            {
                "errorType": "Runtime.ExitError",
                "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: "
                f"{status}",
            }
        )

    def _exit_status(self) -> str:
        assert self._process is not None
        try:
            code = self._process.wait(_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._kill()
            code = self._process.returncode
        return f"signal: {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def close(self, timeout: float = _STOP_TIMEOUT_SECONDS) -> None:
        """End of input: the process finishes its invocation and exits (killed if it does not)."""
        if self._events is not None:
            with contextlib.suppress(OSError):
                self._events.close()
            self._events = None
        if self._process is not None:
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("lambda: %s did not stop in time; killing it", self.config.logical_id)
                self._kill()
        if self._reader is not None:
            self._reader.join(timeout)


class FunctionPool:
    """Up to ``size`` environments of one function, as Lambda's concurrency gives them: an
    invocation takes an idle warm one, or starts a new one (a cold start, in the invoking
    thread) while fewer than ``size`` exist, or else waits for one to be idle. ``warm`` of them
    start with the pool; an environment that died is replaced at the next invocation."""

    def __init__(
        self,
        config: FunctionConfig,
        environ: Mapping[str, str],
        size: int = 1,
        *,
        warm: int | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("a function needs at least one environment")
        warm = size if warm is None else warm
        if not 1 <= warm <= size:
            raise ValueError("warm environments must be between 1 and the pool's size")
        self.config = config
        self.size = size
        self.warm = warm
        self._environ = dict(environ)
        # An idle slot holds its warm environment, or None when it needs a fresh one.
        self._idle: queue.Queue[ExecutionEnvironment | None] = queue.Queue()
        self._slots = 0  # environments started or starting, up to size
        self._all: list[ExecutionEnvironment] = []
        self._lock = threading.Lock()
        self._closed = False

    @property
    def environ(self) -> dict[str, str]:
        return dict(self._environ)

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [e.pid for e in self._all if e.alive and e.pid is not None]

    def start(self) -> FunctionPool:
        """Start the warm environments now, so that an import error shows at once."""
        for _ in range(self.warm):
            self._idle.put(self._fresh())
        with self._lock:
            self._slots = self.warm
        return self

    def _fresh(self) -> ExecutionEnvironment:
        environment = ExecutionEnvironment(self.config, self._environ)
        with self._lock:
            if self._closed:
                raise FunctionError({"errorType": "Runtime.Stopped", "errorMessage": "stopping"})
            # Not `alive`: another invocation's environment may be starting right now.
            self._all = [e for e in self._all if not e.exited]
            self._all.append(environment)
        try:
            return environment.start()
        except BaseException:
            with self._lock:
                self._all = [e for e in self._all if e is not environment]
            raise

    def _take(self) -> ExecutionEnvironment | None:
        """An idle environment; None when this invocation is to start a new one."""
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._slots < self.size:
                self._slots += 1
                return None
        return self._idle.get()

    def invoke(self, event: Any, request_id: str | None = None) -> Any:
        request_id = request_id or str(uuid.uuid4())
        environment = self._take()
        try:
            if environment is None or not environment.alive:
                environment = self._fresh()
            return environment.invoke(event, request_id)
        finally:
            self._idle.put(environment if environment and environment.alive else None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            environments = list(self._all)
        for environment in environments:
            environment.close()


# --- the child side: one environment's process ---------------------------------------------------

Handler = Callable[[Any, Any], Any]


class LambdaContext:
    """The context object Lambda passes to a handler, with the invocation's real deadline."""

    def __init__(self, request_id: str, deadline_ms: int, invoked_function_arn: str) -> None:
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = invoked_function_arn
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.aws_request_id = request_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onecopy_local.lambda_runtime")
    parser.add_argument("--events-fd", type=int, required=True)
    parser.add_argument("--results-fd", type=int, required=True)
    args = parser.parse_args(argv)
    # Ctrl-C reaches the whole process group; the stack decides when environments stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with os.fdopen(args.events_fd, "rb") as events, os.fdopen(args.results_fd, "wb") as results:

        def send(message: dict[str, Any] | str) -> None:
            line = message if isinstance(message, str) else json.dumps(message)
            results.write(line.encode() + b"\n")
            results.flush()

        module_name, _, attribute = os.environ["_HANDLER"].rpartition(".")
        try:
            handler: Handler = getattr(importlib.import_module(module_name), attribute)
        except Exception as exc:
            traceback.print_exc()
            kind = "Runtime.ImportModuleError"
            send({"init_error": error_payload(exc, kind, f"Unable to import module: {exc}", "")})
            return 1
        send({"ready": True})
        for line in events:
            send(_run(handler, json.loads(line)))
    return 0


def _run(handler: Handler, message: dict[str, Any]) -> dict[str, Any] | str:
    """The answer to one invocation: an error, or the result already encoded as JSON."""
    request_id = message["request_id"]
    context = LambdaContext(request_id, message["deadline_ms"], message["invoked_function_arn"])
    try:
        result = handler(message["event"], context)
    except Exception as exc:
        traceback.print_exc()  # the runtime logs it, as Lambda's does
        return {"error": error_payload(exc, type(exc).__name__, str(exc), request_id)}
    try:
        return json.dumps({"result": result})
    except (TypeError, ValueError) as exc:
        message_text = f"Unable to marshal response: {exc}"
        return {"error": error_payload(exc, "Runtime.MarshalError", message_text, request_id)}


if __name__ == "__main__":
    sys.exit(main())
