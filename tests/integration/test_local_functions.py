"""Each function runs as Lambda runs it: a process of its own, with the environment template.yaml
gives it and the credentials of its own identity; a crash costs one invocation, not the stack."""

from __future__ import annotations

import os
import signal
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from onecopy_local.iam import ADMIN_ACCESS_KEY, function_credentials
from onecopy_local.lambda_runtime import FunctionConfig, FunctionError, FunctionPool, lambda_environ
from onecopy_local.resources import ROOT, function_ids, function_property, resource, template
from tests.localstack import RunningStack, start_stack, wait_until

pytestmark = pytest.mark.integration

HANDLERS = """
import os, sys, time

def echo(event, context):
    return {
        "event": event,
        "environ": dict(os.environ),
        "cwd": os.getcwd(),
        "path0": sys.path[0],
        "pid": os.getpid(),
        "request_id": context.aws_request_id,
        "arn": context.invoked_function_arn,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }

def fail(event, context):
    raise RuntimeError("the handler failed")

def crash(event, context):
    os._exit(3)

def hang(event, context):
    time.sleep(600)

def unserializable(event, context):
    return {"when": object()}

def gate(event, context):
    while not os.path.exists(event["gate"]):
        time.sleep(0.01)
    return os.getpid()
"""


@pytest.fixture(scope="module")
def code_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("code")
    (root / "fn.py").write_text(textwrap.dedent(HANDLERS))
    return root


def _pool(
    code_root: Path, handler: str, timeout: int = 30, size: int = 1, warm: int | None = None
) -> FunctionPool:
    config = FunctionConfig(
        logical_id="Probe",
        handler=f"fn.{handler}",
        code_root=code_root,
        runtime="python3.13",
        timeout_seconds=timeout,
        memory_mb=256,
        variables={"SETTING": "from the template"},
    )
    environ = lambda_environ(
        config, access_key="ASIAPROBE", secret_key="secret", endpoint_url="http://127.0.0.1:9"
    )
    return FunctionPool(config, environ, size, warm=warm)


@pytest.fixture
def echo(code_root: Path) -> Iterator[FunctionPool]:
    pool = _pool(code_root, "echo").start()
    yield pool
    pool.close()


def test_a_function_gets_its_own_environment_and_nothing_of_ours(
    echo: FunctionPool, code_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a variable in this process's environment that Lambda would not give the function
    monkeypatch.setenv("AWS_PROFILE", "developer")
    # When the function is invoked
    result = echo.invoke({"n": 1}, "request-1")
    # Then it saw the event and its context, in its code root, with exactly its environment
    assert result["event"] == {"n": 1}
    assert result["request_id"] == "request-1"
    assert result["arn"].endswith(":function:onecopy-local-Probe")
    assert 0 < result["remaining_ms"] <= 30_000
    assert result["cwd"] == result["path0"] == str(code_root)
    environ = result["environ"]
    assert environ["AWS_ACCESS_KEY_ID"] == "ASIAPROBE"
    assert environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
    assert environ["SETTING"] == "from the template"
    assert environ["AWS_LAMBDA_FUNCTION_NAME"] == "onecopy-local-Probe"
    assert environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert "AWS_PROFILE" not in environ
    assert set(environ) - {"PWD", "LC_CTYPE"} <= set(echo.environ)


def test_overlapping_invocations_get_new_environments_up_to_the_size_then_reuse_them(
    code_root: Path, tmp_path: Path
) -> None:
    # Given a pool of up to 3 environments, one started warm
    pool = _pool(code_root, "gate", size=3, warm=1).start()
    gate = tmp_path / "open"
    try:
        assert len(pool.pids) == 1
        # When 4 invocations overlap (each waits for the gate to open)
        with ThreadPoolExecutor(max_workers=4) as clients:
            calls = [clients.submit(pool.invoke, {"gate": str(gate)}) for _ in range(4)]
            # Then 2 more environments start (cold), and no more than the size
            wait_until(lambda: len(pool.pids) == 3, what="two more environments")
            running = set(pool.pids)
            gate.touch()
            served = {call.result(timeout=60) for call in calls}
        # And the 4th waited for one of them: every invocation ran in one of the 3
        assert served <= running and len(served) == 3
        # And later invocations reuse the warm environments, starting none
        assert {pool.invoke({"gate": str(gate)}) for _ in range(5)} <= running
        assert set(pool.pids) == running
    finally:
        pool.close()


def test_a_pool_needs_between_one_and_size_warm_environments(code_root: Path) -> None:
    for size, warm in ((0, None), (2, 0), (2, 3)):
        with pytest.raises(ValueError):
            _pool(code_root, "echo", size=size, warm=warm)


def test_a_handler_error_is_reported_and_the_environment_stays_warm(code_root: Path) -> None:
    pool = _pool(code_root, "fail").start()
    try:
        pids = pool.pids
        with pytest.raises(FunctionError) as caught:
            pool.invoke({}, "request-2")
        assert caught.value.payload["errorType"] == "RuntimeError"
        assert caught.value.payload["errorMessage"] == "the handler failed"
        assert caught.value.payload["stackTrace"]
        assert pool.pids == pids
    finally:
        pool.close()


def test_a_crashed_environment_fails_its_invocation_and_a_fresh_one_takes_the_next(
    code_root: Path,
) -> None:
    pool = _pool(code_root, "crash").start()
    try:
        (first,) = pool.pids
        with pytest.raises(FunctionError) as caught:
            pool.invoke({}, "request-3")
        assert caught.value.payload["errorType"] == "Runtime.ExitError"
        assert "exit status 3" in caught.value.payload["errorMessage"]
        # The next invocation starts a new process (which crashes the same way)
        with pytest.raises(FunctionError):
            pool.invoke({}, "request-4")
        assert first not in pool.pids
    finally:
        pool.close()


def test_an_invocation_past_the_timeout_is_stopped(code_root: Path) -> None:
    pool = _pool(code_root, "hang", timeout=1).start()
    try:
        with pytest.raises(FunctionError) as caught:
            pool.invoke({}, "request-5")
        assert caught.value.payload["errorType"] == "Sandbox.Timedout"
        assert pool.pids == []
    finally:
        pool.close()


def test_a_result_that_is_not_json_is_a_marshal_error(code_root: Path) -> None:
    pool = _pool(code_root, "unserializable").start()
    try:
        with pytest.raises(FunctionError) as caught:
            pool.invoke({}, "request-6")
        assert caught.value.payload["errorType"] == "Runtime.MarshalError"
    finally:
        pool.close()


def test_a_handler_that_cannot_be_imported_fails_the_start(code_root: Path) -> None:
    with pytest.raises(FunctionError) as caught:
        _pool(code_root, "missing").start()
    assert caught.value.payload["errorType"] == "Runtime.ImportModuleError"


# --- the running stack ---------------------------------------------------------------------------


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def test_each_function_runs_with_its_own_identity(local_stack: RunningStack) -> None:
    # Given every function's execution environments, as the banner lists them
    seen: dict[str, str] = {}
    for logical_id in function_ids():
        for pid in local_stack.function_pids(logical_id):
            environ = _environ(pid)
            # Then each runs in its code root with its own credentials and the template's
            # variables, pointed at the emulator
            key, secret = function_credentials(logical_id)
            assert environ["AWS_ACCESS_KEY_ID"] == key, logical_id
            assert environ["AWS_SECRET_ACCESS_KEY"] == secret, logical_id
            assert environ["AWS_ENDPOINT_URL"] == local_stack.endpoint_url
            code_uri = str(function_property(logical_id, "CodeUri"))
            assert os.readlink(f"/proc/{pid}/cwd") == str((ROOT / code_uri).resolve())
            assert environ["_HANDLER"] == function_property(logical_id, "Handler")
            assert _declared_variables(logical_id) <= set(environ), logical_id
            seen[logical_id] = key
    # And no two functions share an identity, nor use the operator's
    assert set(seen) == set(function_ids())
    assert len(set(seen.values())) == len(seen)
    assert ADMIN_ACCESS_KEY not in seen.values()
    assert seen["WorkerFunction"] != seen["ApiFunction"]


def _declared_variables(logical_id: str) -> set[str]:
    return set(template()["Globals"]["Function"]["Environment"]["Variables"]) | set(
        resource(logical_id).get("Environment", {}).get("Variables", {})
    )


def test_the_banner_says_iam_is_enforced(local_stack: RunningStack) -> None:
    assert local_stack.banner["IAM"] == "enforced (policies from template.yaml)"
    assert "WARNING" not in local_stack.log().split("Ready.")[0]


def test_no_iam_is_an_escape_hatch_that_warns(tmp_path: Path) -> None:
    with start_stack(tmp_path, "--no-iam", "--workers", "0") as stack:
        assert stack.banner["IAM"].startswith("OFF (--no-iam)")
        assert "WARNING: IAM enforcement is OFF" in stack.log()


def test_the_emulator_holds_each_identity_to_its_own_role(local_stack: RunningStack) -> None:
    # Given the credentials ReconcileFunction and WorkerFunction run with
    def dynamodb(logical_id: str) -> Any:
        key, secret = function_credentials(logical_id)
        return boto3.client(
            "dynamodb",
            endpoint_url=local_stack.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )

    # When each scans the uploads table (ReconcileFunction's job, not the worker's)
    dynamodb("ReconcileFunction").scan(TableName=local_stack.uploads_table, Limit=1)
    with pytest.raises(ClientError) as caught:
        dynamodb("WorkerFunction").scan(TableName=local_stack.uploads_table, Limit=1)
    # Then only the role that is granted it may
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"


def _exited(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # a zombie has exited; only its parent's bookkeeping remains


def test_a_function_whose_process_died_gets_a_fresh_environment(tmp_path: Path) -> None:
    with start_stack(tmp_path, "--workers", "0") as stack:
        # Given the page function's environment, killed while idle
        (pid,) = stack.function_pids("PageFunction")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: _exited(pid), what=f"process {pid} to exit")
        # When the page is asked for
        response = requests.get(f"{stack.api_url}/", timeout=30)
        # Then a new environment serves it (a cold start), as Lambda would
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
