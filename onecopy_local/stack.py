"""The whole local stack: emulator, resources, API gateway, Lambda Invoke endpoint, SQS pollers,
and one execution environment per function, started and stopped as one.

    with LocalStack(port=0, emulator_port=0) as stack:
        requests.post(f"{stack.api_url}/uploads", json={...})

Every function of template.yaml runs as Lambda runs it: in a process of its own
(onecopy_local.lambda_runtime), with the environment the template gives it and the credentials
of its own principal, standing for its execution role. The emulator authorizes each call against
that role's policy, built from the template (onecopy_local.iam), unless ``enforce_iam`` is off.
The stack itself uses the operator's identity (admin) only to create the resources, as
`sam deploy` would, to seed the local users (alice, bob, and admin in the admins group), and for
the --duplicate-deliveries test device. It changes nothing in this process's environment.

The API gateway applies the HttpApi's settings from the template: its JWT authorizer, checking
tokens of the local user pool (moto's Cognito, which signs them as Cognito does), its CORS
configuration, its throttling (DefaultRouteSettings; `throttle_rate`/`throttle_burst` override
the parameters as `--parameter-overrides` would) and its access log (AccessLogSettings.Format),
one line per request to `access_log` (a file) or else this stack's log.

As on AWS, SQS's metrics (age of the oldest message, messages visible and in flight) reach
CloudWatch on their own: a publisher thread (onecopy_local.metrics) puts them into the emulator
every `metrics_interval` seconds. With `kms`, the stack creates a customer-managed KMS key and
passes it as the template's KmsKeyArn: the bucket, tables and queues are encrypted with it, the
functions' policies get their EncryptionKey statements, and the emulator asks each caller for the
key permissions AWS asks.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from onecopy_local._http import LOGGER
from onecopy_local.apigateway import (
    AccessLog,
    ApiServer,
    Cors,
    Route,
    TokenBucket,
    template_routes,
)
from onecopy_local.authorizer import (
    JwtAuthorizer,
    JwtConfiguration,
    audience_list,
    cognito_jwks_url,
)
from onecopy_local.emulator import Emulator
from onecopy_local.iam import Principal, admin_principal, function_principals
from onecopy_local.kms import create_key
from onecopy_local.lambda_api import InvokeContext, LambdaInvokeServer
from onecopy_local.lambda_runtime import FunctionConfig, FunctionPool, lambda_environ
from onecopy_local.metrics import DEFAULT_INTERVAL, QueueMetricsPublisher
from onecopy_local.resources import (
    ROOT,
    Resources,
    create_resources,
    function_property,
    function_variables,
    resolve,
    resource,
    template,
)
from onecopy_local.scheduler import Scheduler, template_schedules
from onecopy_local.worker import EventSourceMapping

DEFAULT_API_PORT = 3000
DEFAULT_EMULATOR_PORT = 4566
DEFAULT_LAMBDA_PORT = 3001  # where `sam local start-lambda` listens
# The functions clients invoke directly (`onecopy admin reconcile`), by their template names.
INVOKABLE_FUNCTIONS = ("ReconcileFunction", "CollectorFunction")
WORKER_FUNCTION = "WorkerFunction"
DEFAULT_WORKERS = 2
# The API's execution environments at most (one starts with the stack; with more allowed, more
# start, cold, when requests overlap, as Lambda scales a function; each is a process of ~90 MB).
# A GET /uploads/{id}?wait=N holds its environment while it waits, as on Lambda, so one would
# make every other request queue behind a wait; more than a few only compete for the CPU with
# the emulator's one process, the local bottleneck (`make bench` e2e; bench/README.md).
DEFAULT_API_CONCURRENCY = 4
DEFAULT_VISIBILITY_TIMEOUT = 5  # seconds; short so that a failed message is retried quickly
REGION = "us-east-1"
# Local only, and printed in the banner; it satisfies the template's password policy.
DEFAULT_PASSWORD = "Onecopy-local-1"  # noqa: S105
# The users `make run` creates, and the groups each belongs to.
LOCAL_USERS: dict[str, tuple[str, ...]] = {"alice": (), "bob": (), "admin": ("admins",)}
DEFAULT_METRICS_INTERVAL = DEFAULT_INTERVAL
# Where the access log goes without a file: the stack's log, a logger of its own.
ACCESS_LOGGER = f"{LOGGER}.access"


def function_config(
    logical_id: str, resources: Resources, parameters: Mapping[str, str] | None = None
) -> FunctionConfig:
    """A function as template.yaml defines it, its variables resolved to the local resources and
    ``parameters`` (overrides of the template's parameters, as `--parameter-overrides`).

    The log level is the runner's: POWERTOOLS_LOG_LEVEL in the stack's environment overrides the
    LogLevel parameter, as `--parameter-overrides` would.
    """
    overrides = dict(parameters or {})
    if level := os.environ.get("POWERTOOLS_LOG_LEVEL"):
        overrides["LogLevel"] = level
    return FunctionConfig(
        logical_id=logical_id,
        handler=str(function_property(logical_id, "Handler")),
        code_root=(ROOT / str(function_property(logical_id, "CodeUri"))).resolve(),
        runtime=str(function_property(logical_id, "Runtime")),
        timeout_seconds=int(function_property(logical_id, "Timeout", 3)),
        memory_mb=int(function_property(logical_id, "MemorySize", 128)),
        variables=function_variables(logical_id, resources, overrides),
        region=resources.region,
        account_id=resources.account_id,
    )


class LocalStack:
    """Emulator + template resources + the functions' environments (child processes) behind the
    API gateway, the Lambda Invoke endpoint and the SQS pollers (threads of this process)."""

    def __init__(
        self,
        *,
        port: int = DEFAULT_API_PORT,
        emulator_port: int = DEFAULT_EMULATOR_PORT,
        workers: int = DEFAULT_WORKERS,
        api_concurrency: int = DEFAULT_API_CONCURRENCY,
        visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT,
        prefix: str = "onecopy",
        lambda_port: int = DEFAULT_LAMBDA_PORT,
        duplicate_deliveries: bool = False,
        enforce_iam: bool = True,
        password: str = DEFAULT_PASSWORD,
        throttle_rate: float | None = None,
        throttle_burst: int | None = None,
        max_pending_uploads: int | None = None,
        collection_grace_seconds: int | None = None,
        collector_schedule: str | None = None,
        kms: bool = False,
        metrics_interval: float = DEFAULT_METRICS_INTERVAL,
        access_log: Path | None = None,
    ) -> None:
        if workers < 0:
            raise ValueError("workers must not be negative")
        if api_concurrency < 1:
            raise ValueError("api_concurrency must be at least 1")
        if visibility_timeout < 0:
            raise ValueError("visibility_timeout must not be negative")
        if metrics_interval < 0:
            raise ValueError("metrics_interval must not be negative (0: no metrics)")
        self.port = port
        self.emulator_port = emulator_port
        self.workers = workers
        self.api_concurrency = api_concurrency
        self.visibility_timeout = visibility_timeout
        self.prefix = prefix
        self.lambda_port = lambda_port
        self.duplicate_deliveries = duplicate_deliveries
        self.enforce_iam = enforce_iam
        self.password = password
        self.kms = kms
        self.metrics_interval = metrics_interval
        self.access_log_path = access_log
        self.parameter_overrides = {
            name: str(value)
            for name, value in (
                ("ThrottlingRateLimit", throttle_rate),
                ("ThrottlingBurstLimit", throttle_burst),
                ("MaxPendingUploads", max_pending_uploads),
                ("CollectionGracePeriodSeconds", collection_grace_seconds),
                ("CollectorSchedule", collector_schedule),
            )
            if value is not None
        }
        self.routes: list[Route] = template_routes(template())
        self._emulator: Emulator | None = None
        self._resources: Resources | None = None
        self._principals: dict[str, Principal] = {}
        self._pools: dict[str, FunctionPool] = {}
        self._api: ApiServer | None = None
        self._lambda: LambdaInvokeServer | None = None
        self._pollers: EventSourceMapping | None = None
        self._scheduler: Scheduler | None = None
        self._metrics: QueueMetricsPublisher | None = None
        self._access_file: IO[str] | None = None

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
    def cognito_endpoint(self) -> str:
        """Where clients sign in (Cognito's InitiateAuth): the emulator, as AUTH_COGNITO_ENDPOINT
        tells the functions."""
        return f"{self.endpoint_url}/"

    @property
    def throttle(self) -> TokenBucket:
        assert self._api is not None and self._api.throttle is not None, "start() first"
        return self._api.throttle

    @property
    def resources(self) -> Resources:
        assert self._resources is not None, "start() first"
        return self._resources

    @property
    def principals(self) -> dict[str, Principal]:
        """Each function's identity, by logical id."""
        return dict(self._principals)

    @property
    def functions(self) -> dict[str, FunctionPool]:
        """The functions running locally (their environments), by logical id."""
        return dict(self._pools)

    @property
    def worker_pids(self) -> list[int]:
        pool = self._pools.get(WORKER_FUNCTION)
        return pool.pids if pool else []

    @property
    def template_visibility_timeout(self) -> int:
        return int(resource("IngestQueue")["VisibilityTimeout"])

    def session(self, principal: Principal | None = None) -> boto3.Session:
        """A boto3 session of ``principal`` (default: the operator, admin); pass
        ``endpoint_url`` to its clients."""
        principal = principal or admin_principal()
        return boto3.Session(
            aws_access_key_id=principal.access_key,
            aws_secret_access_key=principal.secret_key,
            region_name=REGION,
        )

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> LocalStack:
        try:
            self._emulator = Emulator(
                self.emulator_port, region=REGION, enforce_iam=self.enforce_iam
            ).start()
            # The template's KmsKeyArn parameter: a key the operator made, or "" (AWS's keys).
            kms_key_arn = (
                create_key(self.session().client("kms", endpoint_url=self.endpoint_url))
                if self.kms
                else ""
            )
            self._resources = create_resources(
                self.session(),
                endpoint_url=self.endpoint_url,
                prefix=self.prefix,
                visibility_timeout=self.visibility_timeout,
                kms_key_arn=kms_key_arn,
            )
            if self.metrics_interval:
                self._metrics = self._queue_metrics().start()
            self._seed_users()
            self._principals = function_principals(template(), self.resources)
            # Registered even without enforcement: presigned URLs are verified with the key.
            self._emulator.set_principals([admin_principal(), *self._principals.values()])
            self._start_functions()
            self._api = self._api_server()
            self._api.start()
            self._lambda = LambdaInvokeServer(
                {name: _handler(self._pools[name]) for name in INVOKABLE_FUNCTIONS},
                self.lambda_port,
                region=REGION,
            )
            self._lambda.start()
            self._scheduler = Scheduler(
                template_schedules(self.resources, self.parameter_overrides),
                lambda name, event, request_id: self._pools[name].invoke(event, request_id),
            ).start()
            if self.workers:
                self._pollers = self._event_source_mapping().start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop the pollers (each finishes its batch), the API and the Lambda endpoint (each
        finishes its requests), then the functions' environments, the metrics publisher, and
        the emulator."""
        if self._scheduler is not None:
            self._scheduler.close()
            self._scheduler = None
        if self._pollers is not None:
            self._pollers.close()
            self._pollers = None
        if self._lambda is not None:
            self._lambda.stop()
            self._lambda = None
        if self._api is not None:
            self._api.close()
            self._api = None
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        if self._access_file is not None:
            self._access_file.close()
            self._access_file = None
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        if self._emulator is not None:
            self._emulator.close()
            self._emulator = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the HTTP API and its users ------------------------------------------------------------

    def _api_server(self) -> ApiServer:
        """The gateway with the template's HttpApi settings, resolved to the local resources."""
        (api,) = [
            spec.get("Properties") or {}
            for spec in template()["Resources"].values()
            if spec.get("Type") == "AWS::Serverless::HttpApi"
        ]
        settings = resolve(
            {k: api[k] for k in ("Auth", "DefaultRouteSettings", "CorsConfiguration") if k in api},
            self.resources,
            self.parameter_overrides,
        )
        # Only the Format: the destination is a log group, here a file or the stack's log.
        log_format = (api.get("AccessLogSettings") or {}).get("Format")
        authorizers = {}
        for name, spec in (settings.get("Auth") or {}).get("Authorizers", {}).items():
            if spec.get("IdentitySource", "$request.header.Authorization") != (
                "$request.header.Authorization"
            ):
                raise ValueError(f"authorizer {name}: only the Authorization header is supported")
            jwt = spec["JwtConfiguration"]
            authorizers[name] = JwtAuthorizer(
                JwtConfiguration(
                    issuer=jwt["issuer"],
                    audience=audience_list(jwt["audience"]),
                    jwks_url=cognito_jwks_url(jwt["issuer"], self.endpoint_url, REGION),
                )
            )
        throttling = settings.get("DefaultRouteSettings") or {}
        cors = settings.get("CorsConfiguration")
        return ApiServer(
            self.port,
            self.routes,
            {r.function: self._pools[r.function].invoke for r in self.routes},
            authorizers=authorizers,
            throttle=TokenBucket(
                float(throttling["ThrottlingRateLimit"]), int(throttling["ThrottlingBurstLimit"])
            )
            if throttling
            else None,
            cors=Cors.from_template(cors) if cors else None,
            access_log=AccessLog(
                str(resolve(log_format, self.resources, self.parameter_overrides)),
                self._access_log_writer(),
            )
            if log_format
            else None,
        )

    def _access_log_writer(self) -> Callable[[str], None]:
        """Where access-log lines go: appended to ``access_log_path``, or the stack's log."""
        if self.access_log_path is None:
            logger = logging.getLogger(ACCESS_LOGGER)
            return lambda line: logger.info("%s", line)
        # Line-buffered: each request's line is in the file once the request is answered.
        file = self._access_file = self.access_log_path.open("a", buffering=1, encoding="utf-8")
        lock = threading.Lock()

        def write(line: str) -> None:
            with lock:
                file.write(line + "\n")

        return write

    def _queue_metrics(self) -> QueueMetricsPublisher:
        """SQS's own metrics publishing, for the ingest queue and its dead-letter queue."""
        cloudwatch = self.session().client("cloudwatch", endpoint_url=self.endpoint_url)
        return QueueMetricsPublisher(
            cloudwatch,
            [url.rsplit("/", 1)[-1] for url in (self.resources.queue_url, self.resources.dlq_url)],
            account_id=self.resources.account_id,
            region=REGION,
            interval=self.metrics_interval,
        )

    def _seed_users(self) -> None:
        """alice, bob and admin (in admins), signed-in-able with ``self.password`` at once."""
        cognito = self.session().client("cognito-idp", endpoint_url=self.endpoint_url)
        pool = self.resources.user_pool_id
        for username, groups in LOCAL_USERS.items():
            cognito.admin_create_user(UserPoolId=pool, Username=username, MessageAction="SUPPRESS")
            try:
                cognito.admin_set_user_password(
                    UserPoolId=pool, Username=username, Password=self.password, Permanent=True
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "InvalidPasswordException":
                    raise ValueError(
                        "the local password (ONECOPY_LOCAL_PASSWORD) does not satisfy the user "
                        f"pool's password policy in template.yaml: "
                        f"{resource('UserPool')['Policies']['PasswordPolicy']}"
                    ) from exc
                raise
            for group in groups:
                cognito.admin_add_user_to_group(UserPoolId=pool, Username=username, GroupName=group)

    # --- the functions -------------------------------------------------------------------------

    def _start_functions(self) -> None:
        """The environments of each function that something here invokes: a route's function up
        to ``api_concurrency`` of them (one warm at start), one for each function the Lambda
        endpoint invokes, and one per poller for the worker; the warm ones start together
        (imports are slow)."""
        wanted = {r.function: (self.api_concurrency, 1) for r in self.routes}
        wanted |= dict.fromkeys(INVOKABLE_FUNCTIONS, (1, 1))
        if self.workers:
            wanted[WORKER_FUNCTION] = (self.workers, self.workers)
        for logical_id, (size, warm) in wanted.items():
            principal = self._principals[logical_id]
            config = function_config(logical_id, self.resources, self.parameter_overrides)
            # On AWS this is Cognito's public endpoint; locally clients must sign in at the
            # emulator, as the functions' AWS calls go to it (AWS_ENDPOINT_URL).
            local = {"AUTH_COGNITO_ENDPOINT": self.cognito_endpoint}
            environ = lambda_environ(
                config,
                access_key=principal.access_key,
                secret_key=principal.secret_key,
                endpoint_url=self.endpoint_url,
                overrides={k: v for k, v in local.items() if k in config.variables},
            )
            self._pools[logical_id] = FunctionPool(config, environ, size, warm=warm)
        with ThreadPoolExecutor(max_workers=len(self._pools)) as starting:
            for started in [starting.submit(pool.start) for pool in self._pools.values()]:
                started.result()

    def _event_source_mapping(self) -> EventSourceMapping:
        worker = self._principals[WORKER_FUNCTION]
        pollers = Config(max_pool_connections=max(10, self.workers))

        def sqs(principal: Principal) -> Any:
            return self.session(principal).client(
                "sqs", endpoint_url=self.endpoint_url, config=pollers
            )

        return EventSourceMapping(
            self._pools[WORKER_FUNCTION].invoke,
            sqs=sqs(worker),
            queue_url=self.resources.queue_url,
            queue_arn=self.resources.queue_arn,
            region=REGION,
            pollers=self.workers,
            duplicates_via=sqs(admin_principal()) if self.duplicate_deliveries else None,
        )


def _handler(pool: FunctionPool) -> Callable[[Any, InvokeContext], Any]:
    """A Lambda Invoke endpoint handler running the event in one of ``pool``'s environments."""

    def handler(event: Any, context: InvokeContext) -> Any:
        return pool.invoke(event, context.aws_request_id)

    return handler
