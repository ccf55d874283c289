"""Least privilege both ways: the template's grants are enough, and each one is needed.

The handlers run in this process, each phase with its own function's credentials, against a real
enforcing emulator: the API with ApiFunction's keys, the worker and its queue polling with
WorkerFunction's, reconciliation with ReconcileFunction's, the collector with CollectorFunction's.
The bytes go through the presigned URLs the API hands out, so a PUT or GET is authorized as the
API's role, as on S3.

(a) With the roles built from template.yaml, every scenario passes: no grant is missing.
(b) For each (action, resource) a function's ``Policies`` grant, a role without that one pair
    makes at least one scenario fail. Which scenarios to try comes from the first run: the
    emulator reports each decision, so a grant is tried against the scenarios that used it. A
    grant no scenario can exercise must be in UNEXERCISED with the reason.
The test prints, per function, each grant and the scenario that needs it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest
import requests

from onecopy_local import iam
from onecopy_local.emulator import Emulator
from onecopy_local.resources import Resources, create_resources, template
from onecopy_local.worker import poll_once
from tests.conftest import load_event
from tests.lambda_events import http_event
from tests.pipeline import FakeContext

pytestmark = pytest.mark.integration

FUNCTIONS = ("ApiFunction", "WorkerFunction", "ReconcileFunction", "CollectorFunction")
ADMIN = "admin"
ADMINS = ("admins",)  # the caller's groups for /admin/*


def unexercised(resources: Resources) -> dict[tuple[str, str, str], str]:
    """Grants no scenario here can need, each with the reason it stays in the template."""
    cas = f"arn:aws:s3:::{resources.bucket}/cas/*"
    return {
        # ObjectStore.copy promotes objects over 5 GiB (CopyObject's limit) with a multipart
        # copy, which aborts the multipart upload in cas/ when a part copy fails. A test cannot
        # stage 5 GiB.
        ("WorkerFunction", "s3:AbortMultipartUpload", cas): "multipart copy (> 5 GiB) abort",
    }


# --- the harness ---------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: Any


@dataclass
class Harness:
    """An enforcing emulator, the template's resources in it, and who the code runs as."""

    emulator: Emulator
    decisions: list[tuple[str, str, str, str]] = field(default_factory=list)
    resources: Resources | None = None
    _sessions: dict[str, boto3.Session] = field(default_factory=dict)
    _identity: str | None = None

    def fresh(self, mutate: Callable[[str, iam.Policy], iam.Policy] | None = None) -> Resources:
        """Empty the emulator, create the template's resources, install the (mutated) roles."""
        response = requests.post(f"{self.emulator.endpoint_url}/moto-api/reset", timeout=30)
        response.raise_for_status()
        self.resources = create_resources(
            self.session(ADMIN), endpoint_url=self.emulator.endpoint_url
        )
        roles = []
        for principal in iam.function_principals(template(), self.resources).values():
            policy = principal.policy
            if mutate is not None and policy is not None:
                policy = mutate(principal.name, policy)
            roles.append(
                iam.Principal(principal.name, principal.access_key, principal.secret_key, policy)
            )
        self.emulator.set_principals([iam.admin_principal(), *roles])
        os.environ.update(self.resources.function_env())
        self._identity = None
        self.decisions.clear()
        return self.resources

    def session(self, who: str) -> boto3.Session:
        if who not in self._sessions:
            key, secret = (
                (iam.ADMIN_ACCESS_KEY, iam.ADMIN_SECRET_KEY)
                if who == ADMIN
                else iam.function_credentials(who)
            )
            self._sessions[who] = boto3.Session(
                aws_access_key_id=key, aws_secret_access_key=secret, region_name="us-east-1"
            )
        return self._sessions[who]

    def act_as(self, who: str) -> None:
        """Run the handlers with this function's credentials, as its execution role would."""
        if self._identity == who:
            return
        from handlers import wiring

        key, secret = iam.function_credentials(who)
        # boto3's default session for the adapters, the environment for Powertools' parameters.
        os.environ.update(AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret)
        boto3.DEFAULT_SESSION = self.session(who)
        wiring.reset()
        self._identity = who

    def admin(self, service: str) -> Any:
        return self.session(ADMIN).client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.emulator.endpoint_url,
        )

    # --- the functions, as AWS invokes them ---------------------------------------------------

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        groups: tuple[str, ...] = (),
        **query: str,
    ) -> Reply:
        from handlers import api

        self.act_as("ApiFunction")
        event = http_event(method, path, body, groups=groups)
        if query:
            event["rawQueryString"] = urlencode(query)
            event["queryStringParameters"] = query
        response = api.lambda_handler(event, FakeContext())
        text = response.get("body") or ""
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        return Reply(int(response["statusCode"]), parsed)

    def drain(self) -> list[str]:
        """The local SQS poller and the worker, with the worker's role, until the queue is empty.

        Returns the bodies of the messages delivered. Lambda's event source mapping polls with
        the function's role, so the poller's requests need the worker's grants too.
        """
        from handlers import worker

        assert self.resources is not None
        self.act_as("WorkerFunction")
        sqs = self.session("WorkerFunction").client("sqs", endpoint_url=self.emulator.endpoint_url)
        bodies: list[str] = []
        failures: list[Any] = []

        def invoke(event: dict[str, Any]) -> Any:
            bodies.extend(record["body"] for record in event["Records"])
            try:
                response = worker.lambda_handler(event, FakeContext())
            except Exception as exc:  # the poller would only log it and retry the batch later
                failures.append(exc)
                raise
            failures.extend(response["batchItemFailures"])
            return response

        while poll_once(
            sqs,
            queue_url=self.resources.queue_url,
            queue_arn=self.resources.queue_arn,
            region=self.resources.region,
            invoke=invoke,
            wait_seconds=0,
        ):
            pass
        assert not failures, f"the worker failed: {failures}"
        return bodies

    def collect(self) -> dict[str, Any]:
        """The scheduled collector's run, with no grace period."""
        from handlers import collector, wiring

        self.act_as("CollectorFunction")
        os.environ["COLLECTION_GRACE_SECONDS"] = "0"
        wiring.reset()
        try:
            result: dict[str, Any] = collector.lambda_handler(
                load_event("collector_scheduled.json"), FakeContext()
            )
        finally:
            assert self.resources is not None
            os.environ.update(self.resources.function_env())
            wiring.reset()
        return result

    def reconcile(self, event: str) -> dict[str, Any]:
        from handlers import reconcile

        self.act_as("ReconcileFunction")
        result: dict[str, Any] = reconcile.lambda_handler(load_event(event), FakeContext())
        return result

    # --- a client ------------------------------------------------------------------------------

    def create(self, data: bytes, *, declare: bool = True, **extra: Any) -> Reply:
        body: dict[str, Any] = {"filename": "file.bin", "size": len(data), **extra}
        if declare:
            body["sha256"] = hashlib.sha256(data).hexdigest()
        return self.api("POST", "/uploads", body)

    def upload(self, data: bytes, *, declare: bool = True) -> dict[str, Any]:
        """Create, PUT through the presigned URL, let the worker run; the upload's final view."""
        created = self.create(data, declare=declare)
        assert created.status == 201, created.body
        instructions = created.body["upload"]
        put = requests.put(
            instructions["url"], data=data, headers=instructions["headers"], timeout=30
        )
        assert put.status_code == 200, put.text
        self.drain()
        status = self.api("GET", f"/uploads/{created.body['upload_id']}")
        assert status.status == 200, status.body
        view: dict[str, Any] = status.body
        return view

    def put_parts(self, upload_id: str, data: bytes, part_size: int) -> list[dict[str, Any]]:
        count = -(-len(data) // part_size)
        urls = self.api(
            "POST", f"/uploads/{upload_id}/parts", {"part_numbers": list(range(1, count + 1))}
        )
        assert urls.status == 200, urls.body
        parts = []
        for part in urls.body["parts"]:
            n = part["part_number"]
            chunk = data[(n - 1) * part_size : n * part_size]
            put = requests.put(part["url"], data=chunk, headers=part["headers"], timeout=30)
            assert put.status_code == 200, put.text
            parts.append({"part_number": n, "etag": put.headers["ETag"]})
        return parts


# --- scenarios -----------------------------------------------------------------------------------


def stored(h: Harness) -> None:
    view = h.upload(os.urandom(1000))
    assert view["status"] == "STORED", view


def duplicate(h: Harness) -> None:
    data = os.urandom(1000)
    assert h.upload(data)["status"] == "STORED"
    assert h.upload(data, declare=False)["status"] == "DUPLICATE"


def already_held(h: Harness) -> None:
    data = os.urandom(1000)
    assert h.upload(data)["status"] == "STORED"
    assert h.create(data).status == 409


def redelivered_event(h: Harness) -> None:
    """S3 delivers at least once: an event for staging bytes already promoted is acknowledged."""
    data = os.urandom(1000)
    created = h.create(data)
    put = created.body["upload"]
    assert requests.put(put["url"], data=data, headers=put["headers"], timeout=30).ok
    bodies = h.drain()
    assert h.resources is not None
    sqs = h.admin("sqs")
    for body in bodies:
        sqs.send_message(QueueUrl=h.resources.queue_url, MessageBody=body)
    h.drain()
    assert h.api("GET", f"/uploads/{created.body['upload_id']}").body["status"] == "STORED"


def multipart_stored(h: Harness) -> None:
    data = os.urandom(3000)
    created = h.create(data, multipart=True)
    assert created.status == 201, created.body
    upload_id, part_size = created.body["upload_id"], created.body["multipart"]["part_size"]
    parts = h.put_parts(upload_id, data, part_size)
    held = h.api("GET", f"/uploads/{upload_id}/parts")
    assert held.status == 200 and len(held.body["parts"]) == len(parts), held.body
    done = h.api("POST", f"/uploads/{upload_id}/complete", {"parts": parts})
    assert done.status == 202, done.body
    h.drain()
    assert h.api("GET", f"/uploads/{upload_id}").body["status"] == "STORED"


def multipart_rejected(h: Harness) -> None:
    """A multipart PUT carries no whole-file checksum: the worker finds the bytes differ."""
    declared, sent = os.urandom(3000), os.urandom(3000)
    created = h.create(declared, multipart=True)
    upload_id, part_size = created.body["upload_id"], created.body["multipart"]["part_size"]
    parts = h.put_parts(upload_id, sent, part_size)
    assert h.api("POST", f"/uploads/{upload_id}/complete", {"parts": parts}).status == 202
    h.drain()
    view = h.api("GET", f"/uploads/{upload_id}").body
    assert (view["status"], view.get("reason")) == ("REJECTED", "checksum_mismatch"), view


def multipart_aborted(h: Harness) -> None:
    data = os.urandom(3000)
    created = h.create(data, multipart=True)
    upload_id, part_size = created.body["upload_id"], created.body["multipart"]["part_size"]
    h.put_parts(upload_id, data, part_size)
    aborted = h.api("DELETE", f"/uploads/{upload_id}")
    assert aborted.status == 204, aborted.body
    view = h.api("GET", f"/uploads/{upload_id}").body
    assert (view["status"], view.get("reason")) == ("REJECTED", "aborted"), view
    assert h.resources is not None
    left = h.admin("s3").list_multipart_uploads(Bucket=h.resources.bucket).get("Uploads")
    assert not left


def staging_object_gone(h: Harness) -> None:
    """Bytes gone from staging before the worker ran (the lifecycle rule expired them)."""
    data = os.urandom(1000)
    created = h.create(data)
    put = created.body["upload"]
    assert requests.put(put["url"], data=data, headers=put["headers"], timeout=30).ok
    assert h.resources is not None
    upload_id = created.body["upload_id"]
    h.admin("s3").delete_object(Bucket=h.resources.bucket, Key=f"staging/{upload_id}")
    h.drain()  # acknowledged: nothing is left to decide (a 403 here would retry it to the DLQ)
    assert h.api("GET", f"/uploads/{upload_id}").body["status"] == "PENDING"


def read_pages(h: Harness) -> None:
    first, second = os.urandom(1000), os.urandom(2000)
    assert h.upload(first)["status"] == "STORED"
    assert h.upload(second)["status"] == "STORED"
    view = h.upload(first, declare=False)
    assert view["status"] == "DUPLICATE", view
    sha = view["sha256"]
    assert h.api("GET", f"/uploads/{view['upload_id']}").status == 200
    assert h.api("GET", f"/metadata/{view['upload_id']}").status == 200
    assert h.api("GET", f"/metadata/{sha}").status == 200
    download = h.api("GET", f"/download/{sha}")
    assert download.status == 200, download.body
    got = requests.get(download.body["url"], timeout=30)
    assert got.status_code == 200 and got.content == first, got.text
    stats = h.api("GET", "/admin/stats", groups=ADMINS)
    assert stats.status == 200 and stats.body["total_files"] == 2, stats.body
    page = h.api("GET", "/admin/hashes", groups=ADMINS, limit="1")
    assert page.status == 200 and len(page.body["items"]) == 1, page.body
    token = page.body["last_evaluated_key"]
    rest = h.api("GET", "/admin/hashes", groups=ADMINS, limit="1", last_evaluated_key=token)
    assert rest.status == 200 and len(rest.body["items"]) == 1, rest.body


def reconcile_report_and_repair(h: Harness) -> None:
    data = os.urandom(1000)
    view = h.upload(data)
    h.upload(data, declare=False)
    assert h.reconcile("reconcile_scheduled.json")["clean"] is True
    assert h.resources is not None
    ddb = h.admin("dynamodb")
    ddb.update_item(
        TableName=h.resources.stats_table,
        Key={"shard": {"N": "3"}},
        UpdateExpression="ADD files :f",
        ExpressionAttributeValues={":f": {"N": "5"}},
    )
    for table, key in (
        (h.resources.contents_table, {"sha256": {"S": view["sha256"]}}),
        (
            h.resources.holdings_table,
            {"owner": {"S": view_owner(h)}, "sha256": {"S": view["sha256"]}},
        ),
    ):
        ddb.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET upload_count = :n",
            ExpressionAttributeValues={":n": {"N": "99"}},
        )
    report = h.reconcile("reconcile_scheduled.json")
    assert report["clean"] is False and report["repaired"] is False, report
    repaired = h.reconcile("reconcile_repair.json")
    assert repaired["repaired"] is True, repaired
    assert h.reconcile("reconcile_scheduled.json")["clean"] is True


def deleted(h: Harness) -> None:
    """Deleting a duplicate (not the last reference), then the owner's last upload, then a
    rejected one; the collector then removes the content nobody references."""
    data = os.urandom(1000)
    first = h.upload(data)
    second = h.upload(data, declare=False)
    assert second["status"] == "DUPLICATE", second
    for view in (second, first):
        assert h.api("DELETE", f"/uploads/{view['upload_id']}").status == 204
        assert h.api("GET", f"/uploads/{view['upload_id']}").status == 404
    aborted = h.create(os.urandom(10)).body["upload_id"]
    assert h.api("DELETE", f"/uploads/{aborted}").status == 204  # aborted
    assert h.api("DELETE", f"/uploads/{aborted}").status == 204  # deleted
    assert h.collect()["collected"] == 1
    assert h.resources is not None
    listed = h.admin("s3").list_objects_v2(Bucket=h.resources.bucket, Prefix="cas/")
    assert not listed.get("Contents"), listed


def deleted_before_the_flag(h: Harness) -> None:
    """An upload completed before uploads recorded `deduplicated`: deleting it asks the content
    whether it was the first upload."""
    view = h.upload(os.urandom(1000))
    assert h.resources is not None
    h.admin("dynamodb").update_item(
        TableName=h.resources.uploads_table,
        Key={"upload_id": {"S": view["upload_id"]}},
        UpdateExpression="REMOVE deduplicated",
    )
    assert h.api("DELETE", f"/uploads/{view['upload_id']}").status == 204
    assert h.reconcile("reconcile_scheduled.json")["clean"] is True


def listed(h: Harness) -> None:
    ids = {h.upload(os.urandom(100))["upload_id"] for _ in range(3)}
    seen, token = [], None
    while True:
        query = {"limit": "2"} | ({"last_evaluated_key": token} if token else {})
        page = h.api("GET", "/uploads", **query)
        assert page.status == 200, page.body
        seen += [item["upload_id"] for item in page.body["items"]]
        token = page.body["last_evaluated_key"]
        if token is None:
            break
    assert set(seen) == ids


def erased(h: Harness) -> None:
    data = os.urandom(1000)
    h.upload(data)
    h.upload(data, declare=False)
    h.create(os.urandom(10))  # pending: aborted, then deleted
    erased = h.api("POST", f"/admin/owners/{view_owner(h)}/erase", groups=ADMINS)
    assert erased.status == 200 and erased.body["done"] is True, erased.body
    assert erased.body["deleted"] == 3, erased.body
    assert h.api("GET", "/uploads").body["items"] == []


def health(h: Harness) -> None:
    """The admin health view: queue depths, the oldest message's age, the last runs."""
    data = os.urandom(1000)
    h.upload(data)
    h.reconcile("reconcile_scheduled.json")
    view = h.api("GET", "/admin/health", groups=ADMINS)
    assert view.status == 200, view.body
    assert view.body["reconciliation"]["clean"] is True, view.body
    assert view.body["ingest_queue"]["waiting"] == 0, view.body


def view_owner(h: Harness) -> str:
    """The one owner the harness calls as (the sample event's signed-in caller)."""
    owner: str = http_event("GET", "/")["requestContext"]["authorizer"]["jwt"]["claims"]["sub"]
    return owner


SCENARIOS: dict[str, Callable[[Harness], None]] = {
    f.__name__: f
    for f in (
        stored,
        duplicate,
        already_held,
        redelivered_event,
        staging_object_gone,
        multipart_stored,
        multipart_rejected,
        multipart_aborted,
        read_pages,
        reconcile_report_and_repair,
        deleted,
        deleted_before_the_flag,
        listed,
        erased,
        health,
    )
}


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    saved_environ, saved_session = dict(os.environ), boto3.DEFAULT_SESSION
    decisions: list[tuple[str, str, str, str]] = []

    def audit(principal: iam.Principal, action: str, resource: str, decision: str) -> None:
        decisions.append((principal.name, action, resource, decision))

    with Emulator(port=0, audit=audit) as emulator:
        os.environ["AWS_ENDPOINT_URL"] = emulator.endpoint_url
        for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):  # roles' keys come without one
            os.environ.pop(name, None)
        try:
            yield Harness(emulator, decisions)
        finally:
            from handlers import wiring

            os.environ.clear()
            os.environ.update(saved_environ)
            boto3.DEFAULT_SESSION = saved_session
            wiring.reset()


def _run(h: Harness, name: str) -> BaseException | None:
    try:
        SCENARIOS[name](h)
    except Exception as exc:  # any failure of the scenario is the outcome being measured
        return exc
    return None


@dataclass(frozen=True)
class Baseline:
    # For each scenario, the grants its allowed requests matched: (function, index in _grants).
    used: dict[str, set[tuple[str, int]]]
    denied: dict[str, list[tuple[str, str, str, str]]]


def _grants(resources: Resources) -> dict[str, list[tuple[str, str]]]:
    """Each function's (action, resource) pairs granted by its Policies (SAM's own left out).

    Indexed, not compared by value: the secret's ARN changes each time it is created.
    """
    return {
        name: iam.function_policy(template(), name, resources, attached=False).grants()
        for name in FUNCTIONS
    }


@pytest.fixture(scope="module")
def baseline(harness: Harness) -> Baseline:
    used: dict[str, set[tuple[str, int]]] = {}
    denied: dict[str, list[tuple[str, str, str, str]]] = {}
    failures = {}
    for name in SCENARIOS:
        resources = harness.fresh()
        error = _run(harness, name)
        if error is not None:
            failures[name] = f"{type(error).__name__}: {error}"
        grants = _grants(resources)
        used[name] = {
            (p, i)
            for p, a, r, d in harness.decisions
            if d == "Allow" and p in grants
            for i, (action, resource) in enumerate(grants[p])
            if iam.matches(action, a, ignore_case=True) and iam.matches(resource, r)
        }
        # The s3:ListBucket probe of a read is not a request: its "no" turns a 404 into a 403.
        denied[name] = [d for d in harness.decisions if d[3] != "Allow" and d[1] != "s3:ListBucket"]
    assert not failures, (
        f"scenarios failing with the template's roles: {failures}; denied: {denied}"
    )
    return Baseline(used, denied)


# --- the tests -----------------------------------------------------------------------------------


def test_every_scenario_passes_with_the_template_roles(baseline: Baseline) -> None:
    # Nothing the code does is refused: no grant is missing from template.yaml.
    assert {name: d for name, d in baseline.denied.items() if d} == {}


def test_every_granted_action_is_needed_by_a_scenario(
    harness: Harness, baseline: Baseline, capsys: pytest.CaptureFixture[str]
) -> None:
    resources = harness.fresh()
    allowed_list = unexercised(resources)
    grants = _grants(resources)
    report: dict[str, list[str]] = {}
    unneeded: list[str] = []
    for function, pairs in grants.items():
        report[function] = []
        for index, (action, resource) in enumerate(pairs):
            users = [name for name, used in baseline.used.items() if (function, index) in used]
            needed_by = _first_failing(harness, function, index, users)
            reason = allowed_list.get((function, action, resource))
            line = f"{action:<36} {_short(resource)}"
            if needed_by is not None:
                report[function].append(f"  {line}  <- {needed_by}")
                if reason is not None:
                    unneeded.append(f"{function} {action} {resource}: allow-listed but exercised")
            elif reason is not None:
                report[function].append(f"  {line}  (unexercised: {reason})")
            else:
                report[function].append(f"  {line}  !! NO SCENARIO NEEDS IT (tried {users})")
                unneeded.append(f"{function} {action} {resource}")
    with capsys.disabled():
        print("\nleast privilege: each grant of template.yaml and the scenario that needs it")
        for function, lines in report.items():
            print(function)
            print("\n".join(lines))
    assert unneeded == []


def _short(arn: str) -> str:
    """table/NAME, secret:NAME, or bucket/prefix: enough to read the report."""
    return arn.split(":", 5)[-1]


def _first_failing(
    harness: Harness, function: str, index: int, candidates: list[str]
) -> str | None:
    """The first candidate scenario that fails once this one grant is taken from the role."""
    for name in candidates:

        def mutate(who: str, policy: iam.Policy) -> iam.Policy:
            if who != function:
                return policy
            assert harness.resources is not None
            action, resource = _grants(harness.resources)[function][index]
            return policy.without(action, resource)

        harness.fresh(mutate)
        if _run(harness, name) is not None:
            return name
    return None
