"""The local stack as a separate process (`onecopy-local`), and helpers that drive it as a client.

`local_stack` is one stack for the whole session: its state is shared, so tests use random
content (new to the stack) and compare counters before and after rather than with zero.

Every route but the public ones needs a token, as on AWS: `stack.token(user)` signs in as one of
the seeded users (alice, bob, admin) with Cognito's own InitiateAuth at the emulator, and the
helpers here that call the API send alice's token unless given other ``headers`` ({} for none).
The stacks started here are throttled far above anything a test sends (TEST_THROTTLE), unless a
test passes its own --throttle-rate/--throttle-burst.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

READY = "Ready. Press Ctrl-C to stop."
START_TIMEOUT = 120.0  # generous: a loaded CI machine can be slow to import boto3 et al.
STOP_TIMEOUT = 90.0  # above the stack's own worst case: pollers 30 s, then API and Lambda 10 s each
TERMINAL = {"STORED", "DUPLICATE", "REJECTED"}
STATS_FIELDS = ("files", "uploads", "duplicates", "bytes_saved", "bytes_stored")
USERS = ("alice", "bob", "admin")
DEFAULT_USER = "alice"
# Far above what any test sends, so that only a test that asks for throttling meets a 429.
TEST_THROTTLE = ("--throttle-rate", "100000", "--throttle-burst", "100000")
_TOKEN_MARGIN_SECONDS = 300  # a cached token this close to its expiry is renewed
_BANNER_ROW = re.compile(r"^  (?P<label>[A-Z][A-Za-z -]+?)\s{2,}(?P<value>\S+)(?P<rest>.*)$")


def _executable() -> str:
    # The console script `pip install -e .` put next to this interpreter.
    script = Path(sys.executable).with_name("onecopy-local")
    assert script.exists(), "onecopy-local is not installed: run `make venv`"
    return str(script)


@dataclass
class RunningStack:
    """A started `onecopy-local` process and what its banner says it serves."""

    process: subprocess.Popen[bytes]
    log_path: Path
    api_url: str
    lambda_url: str
    endpoint_url: str
    bucket: str
    queue_url: str
    dlq_url: str
    uploads_table: str
    contents_table: str
    stats_table: str
    holdings_table: str = ""
    user_pool_id: str = ""
    client_id: str = ""
    password: str = ""
    worker_pids: list[int] = field(default_factory=list)
    banner: dict[str, str] = field(default_factory=dict)  # label -> the row's whole value
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _tokens: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def cognito_endpoint(self) -> str:
        """Where clients sign in: the emulator (GET /auth/config says the same)."""
        return f"{self.endpoint_url}/"

    def sign_in(self, user: str = DEFAULT_USER, password: str | None = None) -> dict[str, Any]:
        """Cognito's InitiateAuth (USER_PASSWORD_AUTH), unsigned, as the page and the CLI call
        it; returns the AuthenticationResult (AccessToken, IdToken, RefreshToken, ExpiresIn)."""
        return self.initiate_auth(
            "USER_PASSWORD_AUTH",
            {"USERNAME": user, "PASSWORD": self.password if password is None else password},
        )

    def initiate_auth(self, flow: str, parameters: Mapping[str, str]) -> dict[str, Any]:
        response = requests.post(
            self.cognito_endpoint,
            data=json.dumps(
                {"AuthFlow": flow, "ClientId": self.client_id, "AuthParameters": dict(parameters)}
            ),
            headers={
                "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth",
                "Content-Type": "application/x-amz-json-1.1",
            },
            timeout=30,
        )
        assert response.status_code == 200, f"InitiateAuth {flow}: {response.text}"
        result: dict[str, Any] = response.json()["AuthenticationResult"]
        return result

    def token(self, user: str = DEFAULT_USER) -> str:
        """An IdToken of ``user``, cached until shortly before it expires."""
        with self._lock:
            cached = self._tokens.get(user)
        if cached is None or cached["exp"] - time.time() < _TOKEN_MARGIN_SECONDS:
            id_token = self.sign_in(user)["IdToken"]
            cached = {"token": id_token, **jwt_claims(id_token)}
            with self._lock:
                self._tokens[user] = cached
        token: str = cached["token"]
        return token

    def auth(self, user: str = DEFAULT_USER) -> dict[str, str]:
        """The Authorization header of ``user``."""
        return {"Authorization": f"Bearer {self.token(user)}"}

    def sub(self, user: str = DEFAULT_USER) -> str:
        """``user``'s `sub`: the owner the API knows them as."""
        self.token(user)
        with self._lock:
            sub: str = self._tokens[user]["sub"]
        return sub

    def client(self, service: str) -> Any:
        """A boto3 client of the emulator, with the stack's credentials (one per service)."""
        with self._lock:
            if service not in self._clients:
                self._clients[service] = boto3.client(
                    service,  # type: ignore[call-overload]
                    endpoint_url=self.endpoint_url,
                    region_name="us-east-1",
                    aws_access_key_id="testing",
                    aws_secret_access_key="testing",
                    aws_session_token=None,
                    config=Config(max_pool_connections=32),
                )
            return self._clients[service]

    def invoke(self, function: str, payload: Any = None) -> Any:
        """Invoke a function at the stack's Lambda endpoint, as boto3 users do (RequestResponse),
        and return its result; a function error fails the calling test with the error."""
        with self._lock:
            # Not under "lambda": client("lambda") would be the emulator's.
            if "lambda endpoint" not in self._clients:
                self._clients["lambda endpoint"] = boto3.client(
                    "lambda",
                    endpoint_url=self.lambda_url,
                    region_name="us-east-1",
                    aws_access_key_id="testing",
                    aws_secret_access_key="testing",
                    aws_session_token=None,
                    # One attempt (an invocation is not idempotent in general), and as long to
                    # answer as the function may run.
                    config=Config(retries={"max_attempts": 1}, read_timeout=960),
                )
            client = self._clients["lambda endpoint"]
        response = client.invoke(
            FunctionName=function, Payload=json.dumps({} if payload is None else payload).encode()
        )
        body = response["Payload"].read()
        assert response["StatusCode"] == 200, body
        assert "FunctionError" not in response, f"{function} failed: {body.decode()}"
        return json.loads(body)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def function_pids(self, logical_id: str) -> list[int]:
        """The processes of a function's execution environments, as the banner names them."""
        match = re.search(r"\(role \w+; process ([\d, ]+);", self.banner[logical_id])
        assert match, f"no process in the banner row of {logical_id}: {self.banner[logical_id]}"
        return [int(p) for p in re.findall(r"\d+", match[1])]


def jwt_claims(token: str) -> dict[str, Any]:
    """A JWT's payload, unverified (for reading a token this test process obtained itself)."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


# The stacks started by start_stack, by API URL: the helpers below find a token through it.
_RUNNING: dict[str, RunningStack] = {}


def _auth_headers(api_url: str, headers: Mapping[str, str] | None) -> dict[str, str]:
    """``headers``, or else alice's Authorization for a stack started here (an API that is not
    one, such as an in-process gateway in a test, gets none)."""
    if headers is not None:
        return dict(headers)
    stack = _RUNNING.get(api_url.rstrip("/"))
    return stack.auth(DEFAULT_USER) if stack is not None else {}


def _parse_banner(text: str) -> dict[str, str]:
    """Each banner row's first word (a URL, a name, a key), by label."""
    return {label: value.split()[0] for label, value in _banner_rows(text).items()}


def _banner_rows(text: str) -> dict[str, str]:
    rows = {}
    for line in text.splitlines():
        if line == READY:
            break
        if match := _BANNER_ROW.match(line):
            rows[match["label"]] = match["value"] + match["rest"]
    return rows


@contextmanager
def start_stack(log_dir: Path, *options: str) -> Iterator[RunningStack]:
    """Run `onecopy-local --port 0 --emulator-port 0 --lambda-port 0 [options]` until the block
    ends (with TEST_THROTTLE unless ``options`` set a throttle).

    The process gets a pipe as stdin and --stop-on-eof, so it stops even if this test process is
    killed outright; normally the block's end sends SIGTERM and expects a clean exit (0).
    """
    log_path = log_dir / f"onecopy-local-{time.monotonic_ns()}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env["PYTHONUNBUFFERED"] = "1"
    if not any(option.startswith("--throttle") for option in options):
        options = (*TEST_THROTTLE, *options)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                _executable(),
                *("--port", "0", "--emulator-port", "0", "--lambda-port", "0"),
                "--stop-on-eof",
                *options,
            ],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C on pytest must not reach it before we stop it
        )
    try:
        rows = _wait_until_ready(process, log_path)
        stack = RunningStack(
            process=process,
            log_path=log_path,
            api_url=rows["API"],
            lambda_url=rows["Lambda endpoint"],
            endpoint_url=rows["Emulator endpoint"],
            bucket=rows["Bucket"],
            queue_url=rows["Queue"],
            dlq_url=rows["Dead-letter queue"],
            uploads_table=rows["Uploads table"],
            contents_table=rows["Contents table"],
            stats_table=rows["Stats table"],
            holdings_table=rows["Holdings table"],
            user_pool_id=rows["User pool"],
            client_id=rows["App client"],
            password=rows["Password"],
            worker_pids=[int(p) for p in re.findall(r"\d+", _pids(log_path))],
            banner=_banner_rows(log_path.read_text(errors="replace")),
        )
        _RUNNING[stack.api_url] = stack
        try:
            yield stack
        finally:
            _RUNNING.pop(stack.api_url, None)
    finally:
        code = stop_process(process, signal.SIGTERM)
    assert code == 0, f"onecopy-local exited with {code}:\n{log_path.read_text()[-4000:]}"


def _wait_until_ready(process: subprocess.Popen[bytes], log_path: Path) -> dict[str, str]:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if READY in text.splitlines():
            return _parse_banner(text)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"onecopy-local did not become ready:\n{log_path.read_text()[-4000:]}")


def _pids(log_path: Path) -> str:
    match = re.search(r"\(pids ([\d, ]+)\)", log_path.read_text())
    return match[1] if match else ""


def stop_process(process: subprocess.Popen[bytes], signum: int) -> int:
    """Signal the stack and wait for it; kill it (and its group) if it does not stop in time."""
    if process.poll() is None:
        with suppress(ProcessLookupError):
            process.send_signal(signum)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if process.stdin is not None:
        with suppress(OSError):
            process.stdin.close()
    return process.returncode


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """One `onecopy-local` process for the session, on free ports, with its default workers."""
    with start_stack(tmp_path_factory.mktemp("local-stack")) as stack:
        yield stack


# --- a client's moves -------------------------------------------------------------------------


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def create_upload(
    api_url: str,
    data: bytes,
    *,
    filename: str = "file.bin",
    declare_sha256: bool = True,
    content_type: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> requests.Response:
    """POST /uploads declaring the size (and, unless told not to, the SHA-256) of ``data``, as
    alice unless ``headers`` say otherwise."""
    body: dict[str, Any] = {"filename": filename, "size": len(data)}
    if declare_sha256:
        body["sha256"] = sha256_hex(data)
    if content_type is not None:
        body["content_type"] = content_type
    return requests.post(
        f"{api_url}/uploads", json=body, headers=_auth_headers(api_url, headers), timeout=30
    )


def put_bytes(instructions: dict[str, Any], data: bytes) -> requests.Response:
    """The PUT a client makes with the instructions POST /uploads returned: exactly its headers."""
    assert instructions["method"] == "PUT"
    return requests.put(instructions["url"], data=data, headers=instructions["headers"], timeout=60)


def get_upload(
    api_url: str, upload_id: str, *, headers: Mapping[str, str] | None = None, wait: int = 0
) -> dict[str, Any]:
    response = requests.get(
        f"{api_url}/uploads/{upload_id}",
        params={"wait": wait} if wait else None,
        headers=_auth_headers(api_url, headers),
        timeout=30 + wait,
    )
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


def wait_for_terminal(
    api_url: str,
    upload_id: str,
    timeout: float = 30.0,
    *,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """GET /uploads/{id}?wait= until the upload leaves PENDING, as the CLI and the page do."""
    deadline = time.monotonic() + timeout
    headers = _auth_headers(api_url, headers)
    while True:
        wait = max(0, min(20, int(deadline - time.monotonic())))
        view = get_upload(api_url, upload_id, headers=headers, wait=wait)
        if view["status"] in TERMINAL:
            return view
        assert time.monotonic() < deadline, f"upload {upload_id} still {view['status']}"
        if not wait:
            time.sleep(0.05)


def upload(
    api_url: str,
    data: bytes,
    *,
    filename: str = "file.bin",
    declare_sha256: bool = True,
    content_type: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The whole client flow: create, PUT, poll (as alice unless ``headers`` say otherwise).
    Returns the terminal upload view."""
    headers = _auth_headers(api_url, headers)
    created = create_upload(
        api_url,
        data,
        filename=filename,
        declare_sha256=declare_sha256,
        content_type=content_type,
        headers=headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    put = put_bytes(body["upload"], data)
    assert put.status_code == 200, put.text
    return wait_for_terminal(api_url, body["upload_id"], headers=headers)


def wait_until(predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# --- what the emulator holds ---------------------------------------------------------------------


def read_stats(stack: RunningStack) -> dict[str, int]:
    """The dedup counters: the sum of every shard of the stats table."""
    totals = dict.fromkeys(STATS_FIELDS, 0)
    pages = stack.client("dynamodb").get_paginator("scan").paginate(TableName=stack.stats_table)
    for page in pages:
        for item in page["Items"]:
            for name in STATS_FIELDS:
                if name in item:
                    totals[name] += int(item[name]["N"])
    return totals


def count_items(stack: RunningStack, table: str) -> int:
    pages = stack.client("dynamodb").get_paginator("scan").paginate(TableName=table, Select="COUNT")
    return sum(page["Count"] for page in pages)


def object_keys(stack: RunningStack, prefix: str) -> set[str]:
    pages = (
        stack.client("s3")
        .get_paginator("list_objects_v2")
        .paginate(Bucket=stack.bucket, Prefix=prefix)
    )
    return {obj["Key"] for page in pages for obj in page.get("Contents", [])}


def object_exists(stack: RunningStack, key: str) -> bool:
    try:
        stack.client("s3").head_object(Bucket=stack.bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey"):
            return False
        raise
    return True
