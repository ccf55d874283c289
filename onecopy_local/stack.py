"""The whole local stack: emulator, resources, API, Lambda Invoke endpoint and worker pollers,
started and stopped as one.

    with LocalStack(port=0, emulator_port=0) as stack:
        requests.post(f"{stack.api_url}/uploads", json={...})

The API and reconcile functions run in this process, so starting a stack sets this process's
environment (the functions' settings, AWS_ENDPOINT_URL, fake credentials); ``close()`` restores
it. Do not run one inside moto's ``mock_aws``: both use moto's global state, and mock_aws would
intercept the stack's own clients.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from typing import Any

import boto3

from onecopy_local.apigateway import ApiServer
from onecopy_local.emulator import DEFAULT_CREDENTIALS, Emulator
from onecopy_local.lambda_api import LambdaInvokeServer
from onecopy_local.lambda_runtime import Function, FunctionConfig, ensure_code_root
from onecopy_local.resources import ROOT, Resources, create_resources, resource
from onecopy_local.worker import WorkerPool

DEFAULT_API_PORT = 3000
DEFAULT_EMULATOR_PORT = 4566
DEFAULT_LAMBDA_PORT = 3001  # where `sam local start-lambda` listens
# The functions clients invoke directly (`onecopy admin reconcile`), by their template names.
INVOKABLE_FUNCTIONS = ("ReconcileFunction",)
DEFAULT_WORKERS = 2
DEFAULT_VISIBILITY_TIMEOUT = 5  # seconds; short so that a failed message is retried quickly
REGION = "us-east-1"
ACCESS_KEY = "testing"


class LocalStack:
    """Emulator + template resources + API and Lambda Invoke endpoint (in this process) + worker
    pollers (child processes).

    The in-process functions are invoked one event at a time, all of them together (the API and
    ReconcileFunction share Powertools' logger), and each poller is its own process, for the
    reason Lambda gives each invocation its own environment: Powertools keeps per-invocation
    state in module globals.
    """

    def __init__(
        self,
        *,
        port: int = DEFAULT_API_PORT,
        emulator_port: int = DEFAULT_EMULATOR_PORT,
        workers: int = DEFAULT_WORKERS,
        visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT,
        prefix: str = "onecopy",
        lambda_port: int = DEFAULT_LAMBDA_PORT,
        duplicate_deliveries: bool = False,
    ) -> None:
        if workers < 0:
            raise ValueError("workers must not be negative")
        if visibility_timeout < 0:
            raise ValueError("visibility_timeout must not be negative")
        self.port = port
        self.emulator_port = emulator_port
        self.workers = workers
        self.visibility_timeout = visibility_timeout
        self.prefix = prefix
        self.lambda_port = lambda_port
        self.duplicate_deliveries = duplicate_deliveries
        self._lambda: LambdaInvokeServer | None = None
        self._invoke_lock = threading.Lock()
        self._emulator: Emulator | None = None
        self._api: ApiServer | None = None
        self._pool: WorkerPool | None = None
        self._saved_env: dict[str, str | None] = {}
        self._resources: Resources | None = None

    # --- what clients need ---------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        assert self._api is not None, "start() first"
        return f"http://127.0.0.1:{self._api.port}"

    @property
    def lambda_url(self) -> str:
        """The Lambda Invoke endpoint (boto3's lambda client ``endpoint_url``)."""
        assert self._lambda is not None, "start() first"
        return self._lambda.url

    @property
    def endpoint_url(self) -> str:
        assert self._emulator is not None, "start() first"
        return self._emulator.endpoint_url

    @property
    def resources(self) -> Resources:
        assert self._resources is not None, "start() first"
        return self._resources

    @property
    def worker_pids(self) -> list[int]:
        return self._pool.pids if self._pool else []

    @property
    def template_visibility_timeout(self) -> int:
        return int(resource("IngestQueue")["VisibilityTimeout"])

    def session(self) -> boto3.Session:
        """A boto3 session with the stack's credentials; pass ``endpoint_url`` to its clients."""
        return boto3.Session(
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=DEFAULT_CREDENTIALS[ACCESS_KEY],
            region_name=REGION,
        )

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> LocalStack:
        try:
            self._emulator = Emulator(self.emulator_port, region=REGION).start()
            self._resources = create_resources(
                self.session(),
                endpoint_url=self.endpoint_url,
                prefix=self.prefix,
                visibility_timeout=self.visibility_timeout,
            )
            self._set_environment()
            api = Function(FunctionConfig.from_template("ApiFunction", REGION))
            self._api = ApiServer(self.port, self._serialized(api.invoke))
            self._api.start()
            self._lambda = self._lambda_server()
            self._lambda.start()
            queue_arn = (
                self.session()
                .client("sqs", endpoint_url=self.endpoint_url)
                .get_queue_attributes(
                    QueueUrl=self.resources.queue_url, AttributeNames=["QueueArn"]
                )["Attributes"]["QueueArn"]
            )
            self._pool = WorkerPool(
                self.workers,
                queue_url=self.resources.queue_url,
                queue_arn=queue_arn,
                region=REGION,
                env=self._child_env(),
                duplicate_deliveries=self.duplicate_deliveries,
            ).start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop pollers (each finishes its batch), then the API, then the emulator."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._lambda is not None:
            self._lambda.stop()
            self._lambda = None
        if self._api is not None:
            self._api.close()
            self._api = None
        if self._emulator is not None:
            self._emulator.close()
            self._emulator = None
        self._restore_environment()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the in-process functions -------------------------------------------------------------

    def _serialized(self, function: Any) -> Any:
        def invoke(*args: Any) -> Any:
            with self._invoke_lock:
                return function(*args)

        return invoke

    def _lambda_server(self) -> LambdaInvokeServer:
        ensure_code_root()
        handlers = {}
        timeout = 0
        for logical_id in INVOKABLE_FUNCTIONS:
            config = FunctionConfig.from_template(logical_id, REGION)
            module_name, _, attribute = config.handler.rpartition(".")
            handler = getattr(importlib.import_module(module_name), attribute)
            handlers[logical_id] = self._serialized(handler)
            timeout = max(timeout, config.timeout_seconds)
        return LambdaInvokeServer(
            handlers, self.lambda_port, region=REGION, timeout_seconds=timeout
        )

    # --- the functions' environment ------------------------------------------------------------

    def _set_environment(self) -> None:
        """What Lambda's environment holds, pointed at the emulator; set before handlers import."""
        wanted: dict[str, str | None] = {
            **self.resources.function_env(),
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": DEFAULT_CREDENTIALS[ACCESS_KEY],
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            # The developer's own AWS configuration must not redirect or re-sign local calls.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_SESSION_TOKEN": None,
            "AWS_SECURITY_TOKEN": None,
            "AWS_PROFILE": None,
            "AWS_DEFAULT_PROFILE": None,
            "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": None,
            "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO"),
        }
        for name in os.environ:
            if name.startswith("AWS_ENDPOINT_URL_"):
                wanted[name] = None
        for name, value in wanted.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _fresh_handlers()

    def _restore_environment(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        paths = [str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        return env


def _fresh_handlers() -> None:
    """Make already-imported handler code (a second stack in one process) see the new settings."""
    ensure_code_root()
    if "adapters.clients" in sys.modules:
        sys.modules["adapters.clients"].reset()
    if "handlers.settings" in sys.modules:
        settings = sys.modules["handlers.settings"]
        settings.api_settings.cache_clear()
        settings.worker_settings.cache_clear()
    for name in ("handlers.api", "handlers.worker", "handlers.reconcile"):
        if name in sys.modules:
            importlib.reload(sys.modules[name])
