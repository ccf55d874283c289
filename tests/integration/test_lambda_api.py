"""The local Lambda Invoke endpoint, driven by boto3's Lambda client as `sam local` users do,
and `onecopy admin reconcile` invoking functions through it."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from onecopy_cli.main import main
from onecopy_local.lambda_api import LambdaInvokeServer, function_name_of
from onecopy_local.lambda_runtime import FunctionError

pytestmark = pytest.mark.integration


class Recorder:
    """A trivial handler that remembers what it was given and echoes the event."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any]] = []

    def __call__(self, event: Any, context: Any) -> dict[str, Any]:
        self.calls.append((event, context))
        return {"echo": event, "function": context.function_name}


def _fail(event: Any, context: Any) -> Any:
    raise RuntimeError("the recount went wrong")


def _unserializable(event: Any, context: Any) -> Any:
    return {"when": object()}


def _crashed(event: Any, context: Any) -> Any:
    # What the stack's handlers raise when the function's environment died under the event.
    raise FunctionError(
        {
            "errorType": "Runtime.ExitError",
            "errorMessage": "Runtime exited with error: exit status 3",
        }
    )


@pytest.fixture
def echo() -> Recorder:
    return Recorder()


@pytest.fixture
def server(echo: Recorder) -> Iterator[LambdaInvokeServer]:
    functions: dict[str, Any] = {
        "Echo": echo,
        "Failing": _fail,
        "Unserializable": _unserializable,
        "Crashed": _crashed,
    }
    with LambdaInvokeServer(functions, port=0) as running:
        yield running


@pytest.fixture
def lambda_client(server: LambdaInvokeServer) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=server.url,
        region_name="us-east-1",
        config=Config(retries={"total_max_attempts": 1}),
    )


def _payload(response: dict[str, Any]) -> Any:
    return json.loads(response["Payload"].read())


def test_an_invocation_passes_the_payload_as_the_event_and_returns_the_result(
    lambda_client: Any, echo: Recorder
) -> None:
    # When
    response = lambda_client.invoke(FunctionName="Echo", Payload=json.dumps({"repair": True}))
    # Then
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert response["ExecutedVersion"] == "$LATEST"
    assert _payload(response) == {"echo": {"repair": True}, "function": "Echo"}
    # And the handler got a context with Lambda's attributes and a real deadline
    (_, context), *_ = echo.calls
    assert context.invoked_function_arn.endswith(":function:Echo")
    assert 0 < context.get_remaining_time_in_millis() <= 900_000
    assert context.aws_request_id == response["ResponseMetadata"]["RequestId"]


@pytest.mark.parametrize(
    "name",
    [
        "Echo:$LATEST",
        "arn:aws:lambda:us-east-1:123456789012:function:Echo",
        "123456789012:function:Echo:live",
    ],
)
def test_a_function_can_be_named_by_arn_or_with_a_qualifier(lambda_client: Any, name: str) -> None:
    response = lambda_client.invoke(FunctionName=name, Payload=b"{}")
    assert _payload(response)["function"] == "Echo"


def test_an_empty_payload_is_an_empty_event(lambda_client: Any, echo: Recorder) -> None:
    lambda_client.invoke(FunctionName="Echo")
    assert echo.calls[0][0] == {}


def test_an_unknown_function_is_resource_not_found(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as caught:
        lambda_client.invoke(FunctionName="Nope", Payload=b"{}")
    error = caught.value.response
    assert error["Error"]["Code"] == "ResourceNotFoundException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert "function:Nope" in error["Error"]["Message"]


def test_a_handler_that_raises_answers_200_with_an_unhandled_function_error(
    lambda_client: Any,
) -> None:
    response = lambda_client.invoke(FunctionName="Failing", Payload=b"{}")
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    error = _payload(response)
    assert (error["errorType"], error["errorMessage"]) == ("RuntimeError", "the recount went wrong")
    assert error["stackTrace"]


def test_a_function_error_from_an_environment_is_answered_with_its_payload(
    lambda_client: Any,
) -> None:
    response = lambda_client.invoke(FunctionName="Crashed", Payload=b"{}")
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert _payload(response) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": "Runtime exited with error: exit status 3",
    }


def test_a_result_that_is_not_json_is_a_marshal_error(lambda_client: Any) -> None:
    response = lambda_client.invoke(FunctionName="Unserializable", Payload=b"{}")
    assert response["FunctionError"] == "Unhandled"
    assert _payload(response)["errorType"] == "Runtime.MarshalError"


def test_a_payload_that_is_not_json_is_refused(lambda_client: Any, echo: Recorder) -> None:
    with pytest.raises(ClientError) as caught:
        lambda_client.invoke(FunctionName="Echo", Payload=b"{not json")
    assert caught.value.response["Error"]["Code"] == "InvalidRequestContentException"
    assert echo.calls == []


def test_only_synchronous_invocations_are_served(lambda_client: Any, echo: Recorder) -> None:
    with pytest.raises(ClientError) as caught:
        lambda_client.invoke(FunctionName="Echo", InvocationType="Event", Payload=b"{}")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert echo.calls == []


def test_stop_releases_the_port() -> None:
    # Given a server that was started and stopped
    server = LambdaInvokeServer({}, port=0).start()
    port = server.port
    server.stop()
    # Then the port can be bound again at once
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))


@pytest.mark.parametrize(
    ("identifier", "name"),
    [
        ("ReconcileFunction", "ReconcileFunction"),
        ("ReconcileFunction:prod", "ReconcileFunction"),
        ("arn:aws:lambda:eu-west-1:111122223333:function:ReconcileFunction:7", "ReconcileFunction"),
    ],
)
def test_function_name_of(identifier: str, name: str) -> None:
    assert function_name_of(identifier) == name


# --- onecopy admin reconcile, through the endpoint ------------------------------------------------

COUNTS = {"files": 2, "uploads": 4, "duplicates": 2, "bytes_saved": 30, "bytes_stored": 30}
NO_DRIFT = dict.fromkeys(COUNTS, 0)
CLEAN = {
    "clean": True,
    "repaired": False,
    "facts": COUNTS,
    "counters": COUNTS,
    "drift": NO_DRIFT,
    "upload_count_mismatches": {},
}


class FakeReconcile:
    """Answers like ReconcileFunction: drift until asked to repair, clean afterwards."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.repaired = False

    def __call__(self, event: Any, context: Any) -> dict[str, Any]:
        self.events.append(event)
        if self.repaired:
            return CLEAN
        report: dict[str, Any] = {
            **CLEAN,
            "clean": False,
            "counters": {**COUNTS, "files": 7},
            "drift": {**NO_DRIFT, "files": -5},
            "upload_count_mismatches": {"ab" * 32: {"recorded": 99, "found": 3}},
        }
        if event.get("repair"):
            self.repaired = True
            report["repaired"] = True
        return report


def _onecopy(*args: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), stdout=out, stderr=err, environ=environ or {})
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def reconcile() -> Iterator[tuple[LambdaInvokeServer, FakeReconcile]]:
    handler = FakeReconcile()
    with LambdaInvokeServer({"ReconcileFunction": handler, "Failing": _fail}) as running:
        yield running, handler


def test_reconcile_reports_drift_then_repairs_it(
    reconcile: tuple[LambdaInvokeServer, FakeReconcile],
) -> None:
    server, handler = reconcile
    # When the counters are checked
    code, out, err = _onecopy("admin", "reconcile", "--lambda-endpoint", server.url)
    # Then the drift is shown, counter by counter, and the exit status says so
    assert code == 1
    assert out.startswith("drift: the counters do not match the tables")
    assert [line.split() for line in out.splitlines() if line.startswith("files")] == [
        ["files", "2", "7", "-5"]
    ]
    assert f"{'ab' * 32}  recorded 99, found 3" in out
    assert "`onecopy admin reconcile --repair` corrects it" in err
    # When asked to repair (the endpoint coming from the environment this time)
    code, out, err = _onecopy(
        "admin", "reconcile", "--repair", environ={"ONECOPY_LAMBDA_ENDPOINT": server.url}
    )
    # Then the function was asked to repair, and says it did
    assert (code, err) == (0, "")
    assert out.startswith("repaired:")
    assert handler.events == [{"repair": False}, {"repair": True}]


def test_reconcile_json_is_the_functions_report(
    reconcile: tuple[LambdaInvokeServer, FakeReconcile],
) -> None:
    server, handler = reconcile
    handler.repaired = True
    code, out, _ = _onecopy("admin", "reconcile", "--json", "--lambda-endpoint", server.url)
    assert code == 0
    assert json.loads(out) == CLEAN


def test_reconcile_says_when_the_function_failed(
    reconcile: tuple[LambdaInvokeServer, FakeReconcile],
) -> None:
    server, _ = reconcile
    code, out, err = _onecopy(
        "admin", "reconcile", "--lambda-endpoint", server.url, "--function-name", "Failing"
    )
    assert (code, out) == (1, "")
    assert err == "onecopy: Failing failed: RuntimeError: the recount went wrong\n"


def test_reconcile_names_a_missing_function(
    reconcile: tuple[LambdaInvokeServer, FakeReconcile],
) -> None:
    server, _ = reconcile
    code, _, err = _onecopy(
        "admin", "reconcile", "--lambda-endpoint", server.url, "--function-name", "Absent"
    )
    assert code == 1
    assert err == f"onecopy: no Lambda function 'Absent' at {server.url}\n"


def test_reconcile_without_an_endpoint_listening_says_so() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    code, _, err = _onecopy("admin", "reconcile", "--lambda-endpoint", url)
    assert code == 1
    assert err.startswith(f"onecopy: cannot reach the Lambda endpoint at {url}. Is it running?")


@pytest.fixture
def moto_with_lambda_passthrough() -> Iterator[Any]:
    """Like the `aws` fixture, but boto3's Lambda calls reach the real endpoint: the CLI's
    invocation must get to LambdaInvokeServer, while the handler it runs uses moto."""
    import os

    from moto import mock_aws

    from handlers import wiring
    from onecopy_local.resources import create_resources

    with mock_aws(config={"core": {"passthrough": {"services": ["lambda"]}}}):
        resources = create_resources()
        os.environ.update(resources.function_env())
        wiring.reset()
        yield resources
        wiring.reset()


def test_reconcile_runs_the_real_function_and_finds_a_mixed_run_clean(
    moto_with_lambda_passthrough: Any,
) -> None:
    from handlers import reconcile
    from tests.pipeline import Pipeline

    # Given stored, duplicate and pre-checked uploads
    pipe = Pipeline(moto_with_lambda_passthrough)
    pipe.upload(b"x" * 10)
    pipe.upload(b"x" * 10, declare=False)
    assert pipe.create(b"x" * 10).status == 409
    # When ReconcileFunction is invoked through the local endpoint
    with LambdaInvokeServer({"ReconcileFunction": reconcile.lambda_handler}) as server:
        code, out, err = _onecopy("admin", "reconcile", "--lambda-endpoint", server.url)
    # Then it reports every counter equal to its recount
    assert (code, err) == (0, ""), err
    assert out.startswith("clean: every counter matches the tables")
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[3:]}
    assert rows["uploads"] == ["3", "3", "0"]
    assert rows["duplicates"] == ["2", "2", "0"]
    assert rows["bytes_stored"] == ["10", "10", "0"]
