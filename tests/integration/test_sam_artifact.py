"""What `sam local invoke -e events/X.json <Function>` would run, reproduced without Docker.

`sam local invoke` needs a container runtime, which these machines lack. These tests do what it
would do: build the functions with `sam build`, import each handler from its built directory in a
clean interpreter, and call it with the sample event files, against the resources
`create_resources()` makes in a moto server.

Architecture. template.yaml deploys arm64, so `sam build` installs the aarch64 wheel of
pydantic-core, whose compiled extension cannot be loaded on this x86_64 machine. The fixture
therefore runs two builds of the same sources at once, into a temporary directory:
- template.yaml as it is (arm64): the tests assert that it builds, that the artifact is lean and
  carries its own requirements, and that its pydantic-core extension is an aarch64 ELF file;
- a copy of the template that differs only in `Architectures` (x86_64), built from the project
  root (`--base-dir`): its artifact is the one whose handlers are imported and invoked.
Neither build uses SAM's cache, nor touches the project's `.aws-sam/`. Both need PyPI, as
`make test`'s own `sam build` does.

What the handler's interpreter can import (`python -I -S`: no site-packages, PYTHON* variables
ignored), in this order, as Lambda orders its path (the code directory first):
1. the built function directory: the code and the requirements SAM installed into it, boto3
   and its closure included (src/requirements.txt locks them: the runtime's copy lags);
2. a directory of links to boto3 and its dependency closure (botocore, s3transfer, jmespath,
   python-dateutil, six, urllib3), taken from this venv: what the Lambda Python runtime provides,
   shadowed by the artifact's own copy;
3. the standard library.
The emulator runs in the test process (moto server, reached through AWS_ENDPOINT_URL), so the
handler's interpreter needs no moto. It reports every module it loaded, and any that came from
elsewhere fails the test; the packaged dependencies must come from the artifact.

Each build is then precompiled as `make build` does it (scripts/precompile.py). The artifact's
full file list is checked against an allow-list: the function's own code, exactly the files each
locked distribution's RECORD lists, and one unchecked-hash .pyc per module, matching its source;
nothing else (no stray files, tests or tools). Invoking a handler compiles nothing of the
artifact: every module it imports loads from its shipped .pyc.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from copy import deepcopy
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
import yaml
from moto.server import ThreadedMotoServer
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from adapters.dynamodb import Ledger
from domain.model import Upload
from onecopy_local.resources import Resources, create_resources, template
from scripts.precompile import precompile_build
from tests.lambda_events import (
    EVENTS,
    SAMPLE_CONTENT,
    SAMPLE_SUB,
    SAMPLE_UPLOAD_ID,
    s3_keys,
    sample,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.prefix) / "bin"

# Every function of template.yaml, and the sample events `sam local invoke` can feed it.
SAMPLE_EVENTS = {
    "ApiFunction": [
        "api_create_upload.json",
        "api_create_upload_invalid.json",
        "api_get_upload.json",
        "api_unknown_route.json",
        "api_rest_v1_payload.json",
        "api_empty.json",
        "api_list_uploads.json",
        "api_delete_upload.json",
    ],
    "WorkerFunction": ["sqs_s3_object_created.json", "sqs_s3_test_event.json"],
    "ReconcileFunction": ["reconcile_scheduled.json", "reconcile_repair.json"],
    "PageFunction": ["page_get_root.json"],
    "CollectorFunction": ["collector_scheduled.json"],
}

LOCK = ROOT / "src" / "requirements.txt"
# The packages of src/ (the Python functions' CodeUri) that ship as code; nothing else of it but
# requirements.txt, which SAM copies along.
CODE_PACKAGES = ("adapters", "domain", "handlers", "service")
# Modules every Python function must load from its artifact, not from the runtime's copy
# (pydantic itself only the API loads: the others validate with pydantic_core alone).
PACKAGED_MODULES = ("aws_lambda_powertools", "pydantic_core", "boto3", "botocore")
# SAM copies the whole CodeUri directory: web/ holds the page files and page.py, nothing else
# (the page's documentation lives in docs/upload-page.md for that reason).
PAGE_EXTRAS: tuple[str, ...] = ()

EM_AARCH64 = 183  # ELF e_machine values (elf.h)
EM_X86_64 = 62

# Runs in the handler's interpreter: argv = code dir, runtime dir, handler, result file, events.
_INVOKE = r"""
import importlib, importlib.machinery, json, sys, sysconfig

code_dir, runtime_dir, handler, result_file, *event_files = sys.argv[1:]
sys.path[:0] = [code_dir, runtime_dir]


class Context:
    function_name = "onecopy-sam-artifact-test"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + function_name
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    log_group_name = "/aws/lambda/" + function_name
    log_stream_name = "2025/11/27/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self):
        return 60_000


# Lambda's /var/task is read-only: a module without a valid .pyc is compiled at every start.
compiled_at_start = []
_source_to_code = importlib.machinery.SourceFileLoader.source_to_code


def _recording_source_to_code(self, data, path, *args, **kwargs):
    compiled_at_start.append(str(path))
    return _source_to_code(self, data, path, *args, **kwargs)


importlib.machinery.SourceFileLoader.source_to_code = _recording_source_to_code

module_name, _, attribute = handler.rpartition(".")
function = getattr(importlib.import_module(module_name), attribute)
results = []
for path in event_files:
    with open(path) as f:
        results.append(function(json.load(f), Context()))

allowed = (code_dir + "/", runtime_dir + "/", sysconfig.get_paths()["stdlib"] + "/")
files = {name: getattr(m, "__file__", None) for name, m in list(sys.modules.items())}
with open(result_file, "w") as f:
    json.dump(
        {
            "results": results,
            "files": {n: p for n, p in files.items() if p and "." not in n},
            "foreign": {n: p for n, p in files.items() if p and not p.startswith(allowed)},
            "compiled": [p for p in compiled_at_start if p.startswith(code_dir + "/")],
        },
        f,
    )
"""


# --- builds --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Build:
    root: Path

    def _function(self, name: str) -> dict[str, Any]:
        built = yaml.safe_load((self.root / "template.yaml").read_text())
        props: dict[str, Any] = built["Resources"][name]["Properties"]
        return props

    def code_dir(self, function: str) -> Path:
        return self.root / self._function(function)["CodeUri"]

    def handler(self, function: str) -> str:
        return str(self._function(function)["Handler"])


def _functions() -> list[str]:
    resources = template()["Resources"]
    return [n for n, r in resources.items() if r["Type"] == "AWS::Serverless::Function"]


def _with_architecture(definition: dict[str, Any], arch: str) -> dict[str, Any]:
    changed = deepcopy(definition)
    changed["Globals"]["Function"]["Architectures"] = [arch]
    for name in _functions():
        props = changed["Resources"][name]["Properties"]
        if "Architectures" in props:
            props["Architectures"] = [arch]
    return changed


def _sam_build(template_file: Path, build_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(VENV_BIN / "sam"),
            "build",
            "--template-file",
            str(template_file),
            "--base-dir",
            str(ROOT),
            "--build-dir",
            str(build_dir),
            "--no-cached",
            "--cache-dir",
            str(build_dir.with_name(build_dir.name + "-cache")),
        ],
        cwd=ROOT,
        # sam checks for a `python3.13` binary on PATH, which the venv provides.
        env={**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "SAM_CLI_TELEMETRY": "0"},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Build]:
    tmp = tmp_path_factory.mktemp("sam")
    x86_template = tmp / "template-x86_64.json"
    x86_template.write_text(json.dumps(_with_architecture(template(), "x86_64")))
    jobs = {"arm64": ROOT / "template.yaml", "x86_64": x86_template}
    with ThreadPoolExecutor(len(jobs)) as pool:
        done = dict(
            zip(jobs, pool.map(_sam_build, jobs.values(), [tmp / a for a in jobs]), strict=True)
        )
    for arch, proc in done.items():
        assert proc.returncode == 0, f"sam build ({arch}) failed:\n{proc.stdout}\n{proc.stderr}"
        precompile_build(tmp / arch)  # what `make build` adds to `sam build`
    return {arch: Build(tmp / arch) for arch in jobs}


@pytest.fixture(scope="module")
def lambda_runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Links to boto3 and its dependency closure: what Lambda's Python runtime holds."""
    runtime = tmp_path_factory.mktemp("lambda-runtime")
    todo, seen = ["boto3"], set[str]()
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        dist = importlib.metadata.distribution(name)
        for requirement in map(Requirement, dist.requires or []):
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
        for top in {f.parts[0] for f in dist.files or [] if len(f.parts) > 0}:
            if top in ("..", "__pycache__") or (runtime / top).exists():
                continue
            (runtime / top).symlink_to(Path(str(dist.locate_file(top))))
    assert {"boto3", "botocore", "s3transfer"} <= seen
    return runtime


# --- the emulator --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    endpoint: str
    resources: Resources
    session: boto3.Session


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def stack(moto_server: str) -> Stack:
    requests.post(f"{moto_server}/moto-api/reset", timeout=10).raise_for_status()
    session = boto3.Session(region_name="us-east-1")
    return Stack(moto_server, create_resources(session, endpoint_url=moto_server), session)


Invoke = Callable[..., list[Any]]


@pytest.fixture
def invoke(builds: dict[str, Build], lambda_runtime: Path, stack: Stack, tmp_path: Path) -> Invoke:
    """Call a function's built handler with sample events, in a clean interpreter."""
    build = builds["x86_64"]

    def run(function: str, *events: str, **variables: str) -> list[Any]:
        code_dir = build.code_dir(function)
        result_file = tmp_path / f"{function}.json"
        env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": stack.endpoint,
            "AWS_LAMBDA_FUNCTION_NAME": function,
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            **stack.resources.function_env(),
            **variables,
        }
        argv = [code_dir, lambda_runtime, build.handler(function), result_file]
        proc = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _INVOKE, *map(str, argv)]
            + [str(EVENTS / e) for e in events],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, f"{function} failed:\n{proc.stdout}\n{proc.stderr}"
        report = json.loads(result_file.read_text())
        assert report["foreign"] == {}, "imported from outside the artifact and the runtime"
        assert report["compiled"] == [], "the artifact's .pyc files were not used"
        loaded: dict[str, str] = report["files"]
        if _is_python_code(code_dir):
            for module in (*PACKAGED_MODULES, *(["pydantic"] if "pydantic" in loaded else [])):
                assert loaded[module].startswith(f"{code_dir}/"), f"{module} not from the artifact"
        else:  # the page function: the standard library and its own module, nothing else
            assert not [f for f in loaded.values() if f.startswith(f"{lambda_runtime}/")]
        results: list[Any] = report["results"]
        return results

    return run


def _seed_sample_upload(stack: Stack) -> str:
    """The upload the sample S3 event announces, with its bytes in staging (as after the PUT)."""
    (key,) = s3_keys(sample("sqs_s3_object_created.json"))
    upload_id = key.removeprefix("staging/")
    digest = hashlib.sha256(SAMPLE_CONTENT)
    ledger = Ledger(
        stack.session.client("dynamodb", endpoint_url=stack.endpoint),
        uploads_table=stack.resources.uploads_table,
        contents_table=stack.resources.contents_table,
        stats_table=stack.resources.stats_table,
        stats_shards=stack.resources.stats_shards,
        holdings_table=stack.resources.holdings_table,
    )
    ledger.create_upload(
        Upload(
            upload_id=upload_id,
            owner=SAMPLE_SUB,  # the `sub` of the sample events
            filename="hello.txt",
            size=len(SAMPLE_CONTENT),
            content_type="text/plain",
            created_at=datetime.now(UTC),
            declared_sha256=digest.hexdigest(),
        )
    )
    stack.session.client("s3", endpoint_url=stack.endpoint).put_object(
        Bucket=stack.resources.bucket,
        Key=key,
        Body=SAMPLE_CONTENT,
        ContentType="text/plain",
        ChecksumSHA256=base64.b64encode(digest.digest()).decode(),
    )
    return upload_id


# --- the sample events ---------------------------------------------------------------------------


def test_every_function_has_sample_events_and_every_sample_is_used() -> None:
    # Given the functions template.yaml deploys and the files in events/
    # Then each function has sample events here, and no sample is left unused
    assert sorted(SAMPLE_EVENTS) == sorted(_functions())
    used = {e for events in SAMPLE_EVENTS.values() for e in events}
    assert sorted(p.name for p in EVENTS.glob("*.json")) == sorted(used)


def test_sample_events_describe_one_upload_of_the_sample_content() -> None:
    # Given the sample events
    create = json.loads(sample("api_create_upload.json")["body"])
    (message,) = sample("sqs_s3_object_created.json")["Records"]
    (record,) = json.loads(message["body"])["Records"]
    (test_message,) = sample("sqs_s3_test_event.json")["Records"]

    # Then the API declares the sample content and the S3 event announces it, in AWS's format
    assert create["sha256"] == hashlib.sha256(SAMPLE_CONTENT).hexdigest()
    assert create["size"] == len(SAMPLE_CONTENT)
    assert sample("api_get_upload.json")["rawPath"] == f"/uploads/{SAMPLE_UPLOAD_ID}"
    assert record["eventName"] == "ObjectCreated:Put"
    assert record["s3"]["bucket"]["name"] == "onecopy-files"
    assert record["s3"]["bucket"]["arn"] == "arn:aws:s3:::onecopy-files"
    assert record["s3"]["object"]["key"] == f"staging/{SAMPLE_UPLOAD_ID}"
    assert record["s3"]["object"]["size"] == len(SAMPLE_CONTENT)
    assert record["s3"]["object"]["eTag"] == hashlib.md5(SAMPLE_CONTENT).hexdigest()
    assert {
        "eventVersion",
        "eventSource",
        "awsRegion",
        "eventTime",
        "userIdentity",
        "requestParameters",
        "responseElements",
    } <= record.keys()
    assert {"s3SchemaVersion", "configurationId"} <= record["s3"].keys()
    assert {"ownerIdentity", "arn"} <= record["s3"]["bucket"].keys()
    assert {"sequencer"} <= record["s3"]["object"].keys()
    for sqs_message in (message, test_message):
        assert sqs_message["md5OfBody"] == hashlib.md5(sqs_message["body"].encode()).hexdigest()
    test_body = json.loads(test_message["body"])
    assert test_body["Event"] == "s3:TestEvent"
    assert "Records" not in test_body


# --- the artifact --------------------------------------------------------------------------------


def _is_python_code(code_dir: Path) -> bool:
    return (code_dir / "handlers").is_dir()


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _locked() -> dict[str, str]:
    """{canonical name: version} of src/requirements.txt."""
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", LOCK.read_text(), re.MULTILINE)
    return {canonicalize_name(name): version for name, version in pins}


def _installed(code_dir: Path) -> dict[str, tuple[str, set[str]]]:
    """{canonical name: (version, the files its RECORD lists)} of the distributions in code_dir."""
    found: dict[str, tuple[str, set[str]]] = {}
    for info in code_dir.glob("*.dist-info"):
        name, version = info.name.removesuffix(".dist-info").rsplit("-", 1)
        with (info / "RECORD").open(newline="") as record:
            files = {row[0] for row in csv.reader(record) if row}
        found[canonicalize_name(name)] = (version, files)
    return found


def _code_uri(function: str) -> str:
    definition = template()
    properties = definition["Resources"][function]["Properties"]
    return str(properties.get("CodeUri") or definition["Globals"]["Function"]["CodeUri"])


def _page_files(function: str) -> set[str]:
    """The files the function's GET routes serve (`/` is index.html), from template.yaml."""
    events = template()["Resources"][function]["Properties"]["Events"].values()
    paths = {e["Properties"]["Path"] for e in events if e["Type"] == "HttpApi"}
    return {"index.html" if path == "/" else path.removeprefix("/") for path in paths}


@pytest.mark.parametrize("function", sorted(SAMPLE_EVENTS))
def test_arm64_artifact_holds_exactly_the_code_and_the_locked_requirements(
    builds: dict[str, Build], function: str
) -> None:
    # Given the artifact `sam build` makes from template.yaml as it is, and its source directory
    build = builds["arm64"]
    code_dir = build.code_dir(function)
    source = ROOT / _code_uri(function)
    shipped = _files(code_dir)
    # Then every module comes with its .pyc, valid for the source beside it whatever the zip
    # does to file times, and there is no other compiled file
    compiled = {f for f in shipped if f.endswith(".pyc")}
    assert compiled == {_pyc_of(f) for f in shipped if f.endswith(".py")}
    for source_file in (f for f in shipped if f.endswith(".py")):
        _assert_unchecked_pyc_of(code_dir / source_file, code_dir / _pyc_of(source_file))
    shipped -= compiled

    if _is_python_code(code_dir):
        # Then it holds the code's modules, the lock, and the locked distributions at their
        # locked versions: exactly the files each one's RECORD lists, nothing else (no stray
        # file, test, tool or compiled cache)
        code = {
            str(p.relative_to(source))
            for package in CODE_PACKAGES
            for p in (source / package).rglob("*.py")
            if "__pycache__" not in p.parts
        }
        installed = _installed(code_dir)
        assert {name: version for name, (version, _) in installed.items()} == _locked()
        dependencies = set().union(*(files for _, files in installed.values()))
        assert sorted(shipped - code - dependencies) == ["requirements.txt"]
        assert code | dependencies <= shipped
        # And the compiled part of pydantic is built for the Lambda's arm64 CPU
        extensions = list((code_dir / "pydantic_core").glob("_pydantic_core.*.so"))
        assert [e.name for e in extensions] == ["_pydantic_core.cpython-313-aarch64-linux-gnu.so"]
        assert _elf_machine(extensions[0]) == EM_AARCH64
    else:
        # Then a function serving web/ holds its handler module and the files its routes serve
        handler_module = build.handler(function).rpartition(".")[0].replace(".", "/") + ".py"
        assert shipped == {handler_module, *_page_files(function), *PAGE_EXTRAS}


def _pyc_of(source_file: str) -> str:
    return importlib.util.cache_from_source(source_file)


def _assert_unchecked_pyc_of(source_file: Path, pyc: Path) -> None:
    header = pyc.read_bytes()[:16]
    assert header[:4] == importlib.util.MAGIC_NUMBER, f"{pyc} is not for this runtime"
    # PEP 552 flags: 0b01 = hash-based, source not checked (so file times cannot invalidate it)
    assert int.from_bytes(header[4:8], "little") == 0b01, f"{pyc} is not unchecked-hash"
    assert header[8:16] == importlib.util.source_hash(source_file.read_bytes()), f"{pyc} is stale"


def test_x86_64_artifact_differs_only_in_its_compiled_extension(
    builds: dict[str, Build],
) -> None:
    # Given the arm64 artifact and the x86_64 one the handlers are invoked from
    arm, x86 = builds["arm64"].code_dir("ApiFunction"), builds["x86_64"].code_dir("ApiFunction")

    # Then they hold the same files, but for the one extension, built for this machine's CPU
    def files(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("*") if "__pycache__" not in p.parts}

    only_arm, only_x86 = files(arm) - files(x86), files(x86) - files(arm)
    assert {Path(f).name for f in only_arm} == {"_pydantic_core.cpython-313-aarch64-linux-gnu.so"}
    assert {Path(f).name for f in only_x86} == {"_pydantic_core.cpython-313-x86_64-linux-gnu.so"}
    (x86_extension,) = (x86 / "pydantic_core").glob("_pydantic_core.*.so")
    assert _elf_machine(x86_extension) == EM_X86_64


def _elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    return int.from_bytes(header[18:20], "little")


# --- invoking the built handlers with the sample events ------------------------------------------


def test_api_function_answers_the_sample_requests(invoke: Invoke) -> None:
    # Given an empty stack
    # When the API function gets the sample requests, a misrouted REST (v1) one and `{}` included
    created, invalid, unknown_upload, unknown_route, rest_v1, empty, listed, deleted = invoke(
        "ApiFunction", *SAMPLE_EVENTS["ApiFunction"]
    )

    # Then the upload is created with a presigned PUT that carries the declared checksum
    assert created["statusCode"] == 201
    body = json.loads(created["body"])
    assert body["status"] == "PENDING"
    url = body["upload"]["url"]
    assert f"/staging/{body['upload_id']}?" in url
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url
    assert "X-Amz-Signature=" in url
    sha256 = hashlib.sha256(SAMPLE_CONTENT).digest()
    assert body["upload"]["headers"]["x-amz-checksum-sha256"] == base64.b64encode(sha256).decode()
    # And the invalid body is refused with a message naming the field
    assert invalid["statusCode"] == 422
    assert "size" in json.loads(invalid["body"])["message"]
    # And an upload nobody created, and a route nobody serves, are not found
    assert unknown_upload["statusCode"] == 404
    assert json.loads(unknown_upload["body"])["message"]
    assert unknown_route["statusCode"] == 404
    # And the events that are no HTTP API request get a clean 4xx, not a crash
    for answer in (rest_v1, empty):
        assert 400 <= answer["statusCode"] < 500
        assert json.loads(answer["body"])["message"]
    # And the caller's list holds the one upload the sample created; deleting one nobody
    # created is not found
    assert listed["statusCode"] == 200
    assert [u["upload_id"] for u in json.loads(listed["body"])["items"]] == [body["upload_id"]]
    assert deleted["statusCode"] == 404


def test_page_function_serves_the_page_as_the_local_stack_does(invoke: Invoke) -> None:
    # Given the page function's built artifact
    # When it gets the sample `GET /`
    (root,) = invoke("PageFunction", "page_get_root.json")

    # Then it answers web/index.html, as HTML
    assert root["statusCode"] == 200
    assert root["headers"]["Content-Type"].startswith("text/html")
    assert root["isBase64Encoded"] is False
    assert root["body"] == (ROOT / "web" / "index.html").read_text()


def test_worker_function_stores_the_upload_the_sample_s3_event_announces(
    invoke: Invoke, stack: Stack
) -> None:
    # Given the announced upload, with its bytes in staging
    upload_id = _seed_sample_upload(stack)

    # When the worker gets the sample S3 event
    (response,) = invoke("WorkerFunction", "sqs_s3_object_created.json")

    # Then no message failed, and the upload is STORED under its content's SHA-256
    assert response == {"batchItemFailures": []}
    (status,) = invoke("ApiFunction", "api_get_upload.json")
    assert status["statusCode"] == 200
    view = json.loads(status["body"])
    assert view["upload_id"] == upload_id
    assert view["status"] == "STORED"
    assert view["sha256"] == hashlib.sha256(SAMPLE_CONTENT).hexdigest()
    s3 = stack.session.client("s3", endpoint_url=stack.endpoint)
    stored = s3.get_object(Bucket=stack.resources.bucket, Key=f"cas/sha256/{view['sha256']}")
    assert stored["Body"].read() == SAMPLE_CONTENT
    staged = s3.list_objects_v2(Bucket=stack.resources.bucket, Prefix="staging/")
    assert staged.get("KeyCount") == 0


def test_worker_function_acknowledges_the_s3_test_event(invoke: Invoke) -> None:
    # Given an empty stack
    # When the worker gets the s3:TestEvent S3 sends when the notification is configured
    (response,) = invoke("WorkerFunction", "sqs_s3_test_event.json")

    # Then the message is acknowledged (not retried, never dead-lettered)
    assert response == {"batchItemFailures": []}


def test_reconcile_function_finds_the_counters_right_after_an_upload(
    invoke: Invoke, stack: Stack
) -> None:
    # Given the sample upload, stored by the worker
    _seed_sample_upload(stack)
    assert invoke("WorkerFunction", "sqs_s3_object_created.json") == [{"batchItemFailures": []}]

    # When the scheduled reconciliation runs, then the on-demand repair
    scheduled, repair = invoke("ReconcileFunction", *SAMPLE_EVENTS["ReconcileFunction"])

    # Then both recount one file of the sample's size, and find nothing to repair
    for report in (scheduled, repair):
        assert report["clean"] is True
        assert report["repaired"] is False
        assert report["facts"]["files"] == 1
        assert report["facts"]["bytes_stored"] == len(SAMPLE_CONTENT)
        assert report["facts"] == report["counters"]


def test_collector_function_removes_a_deleted_uploads_content(invoke: Invoke, stack: Stack) -> None:
    # Given the sample upload, stored by the worker, then deleted by its owner
    _seed_sample_upload(stack)
    assert invoke("WorkerFunction", "sqs_s3_object_created.json") == [{"batchItemFailures": []}]
    (deleted,) = invoke("ApiFunction", "api_delete_upload.json")
    assert deleted["statusCode"] == 204

    # When the scheduled collector runs, first within the grace period, then without one
    (kept,) = invoke("CollectorFunction", "collector_scheduled.json")
    (collected,) = invoke(
        "CollectorFunction", "collector_scheduled.json", COLLECTION_GRACE_SECONDS="0"
    )

    # Then the content is kept during its grace, and removed after it
    assert kept == {"examined": 0, "collected": 0, "skipped": 0, "complete": True}
    assert collected == {"examined": 1, "collected": 1, "skipped": 0, "complete": True}
    s3 = stack.session.client("s3", endpoint_url=stack.endpoint)
    assert s3.list_objects_v2(Bucket=stack.resources.bucket, Prefix="cas/").get("KeyCount") == 0
