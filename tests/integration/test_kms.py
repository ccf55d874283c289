"""The service on resources encrypted with a customer-managed KMS key (template parameter
KmsKeyArn): the template's EncryptionKey grants are enough, and each one is needed.

The handlers run in this process with each function's credentials against an enforcing emulator,
as in test_least_privilege (whose harness and scenarios this reuses), but the bucket (SSE-KMS with
a Bucket Key), the tables and the queues are encrypted with a key made in the emulator, and the
roles are the template's with its UseKms statements. The emulator then asks each caller for what
AWS asks on the key: kms:GenerateDataKey to write an object (the presigned PUT: its signer, the
API's role), kms:Decrypt to read one, to use a table, or to receive from the queue.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from onecopy_local import iam
from onecopy_local.emulator import Emulator
from onecopy_local.kms import create_key
from onecopy_local.resources import Resources, create_resources, template
from tests.integration.test_least_privilege import (
    ADMIN,
    SCENARIOS,
    Harness,
    _run,
)

pytestmark = pytest.mark.integration

# The scenarios that use the key: upload, duplicate, multipart, download, delete and collect.
WITH_THE_KEY = ("stored", "duplicate", "multipart_stored", "read_pages", "deleted")


@dataclass
class KmsHarness(Harness):
    """The least-privilege harness, with the template's resources and roles under KmsKeyArn."""

    def fresh(self, mutate: Callable[[str, iam.Policy], iam.Policy] | None = None) -> Resources:
        response = requests.post(f"{self.emulator.endpoint_url}/moto-api/reset", timeout=30)
        response.raise_for_status()
        key = create_key(self.admin("kms"))
        self.resources = create_resources(
            self.session(ADMIN), endpoint_url=self.emulator.endpoint_url, kms_key_arn=key
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

    @property
    def key(self) -> str:
        assert self.resources is not None
        return self.resources.kms_key_arn


@pytest.fixture(scope="module")
def harness() -> Iterator[KmsHarness]:
    saved_environ, saved_session = dict(os.environ), boto3.DEFAULT_SESSION
    decisions: list[tuple[str, str, str, str]] = []

    def audit(principal: iam.Principal, action: str, resource: str, decision: str) -> None:
        decisions.append((principal.name, action, resource, decision))

    with Emulator(port=0, audit=audit) as emulator:
        os.environ["AWS_ENDPOINT_URL"] = emulator.endpoint_url
        for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            os.environ.pop(name, None)
        try:
            yield KmsHarness(emulator, decisions)
        finally:
            from handlers import wiring

            os.environ.clear()
            os.environ.update(saved_environ)
            boto3.DEFAULT_SESSION = saved_session
            wiring.reset()


def _without(function: str, action: str) -> Callable[[str, iam.Policy], iam.Policy]:
    """A mutation taking ``action`` on the stack's key from ``function``'s role."""

    def mutate(who: str, policy: iam.Policy) -> iam.Policy:
        if who != function:
            return policy
        (key,) = {r for a, r in policy.grants() if a == action}
        return policy.without(action, key)

    return mutate


# --- with the template's grants ------------------------------------------------------------------


@pytest.mark.parametrize("scenario", WITH_THE_KEY)
def test_the_service_works_on_encrypted_resources_with_the_templates_grants(
    harness: KmsHarness, scenario: str
) -> None:
    # Given resources encrypted with a customer-managed key and the template's UseKms roles
    assert scenario in SCENARIOS
    harness.fresh()

    # When the scenario runs (upload stored, duplicate, multipart, download, delete + collect)
    error = _run(harness, scenario)

    # Then it passes, nothing is denied, and the key was asked for
    denied = [d for d in harness.decisions if d[3] != "Allow" and d[1] != "s3:ListBucket"]
    assert error is None, f"{scenario}: {error!r}; denied: {denied}"
    assert denied == []
    assert any(d[1].startswith("kms:") and d[2] == harness.key for d in harness.decisions)


def test_reconciliation_is_clean_on_encrypted_tables(harness: KmsHarness) -> None:
    harness.fresh()
    data = os.urandom(1000)
    harness.upload(data)
    harness.upload(data, declare=False)

    report = harness.reconcile("reconcile_scheduled.json")

    assert report["clean"] is True, report
    assert ("ReconcileFunction", "kms:Decrypt", harness.key, "Allow") in harness.decisions


def test_the_presigned_put_needs_no_header_the_buckets_default_encrypts(
    harness: KmsHarness,
) -> None:
    # Given upload instructions: neither their headers nor the URL's signed ones ask for SSE
    resources = harness.fresh()
    data = os.urandom(500)
    created = harness.create(data)
    instructions = created.body["upload"]
    signed = parse_qs(urlsplit(instructions["url"]).query)["X-Amz-SignedHeaders"][0]
    assert "server-side" not in signed + " ".join(instructions["headers"]).lower()

    # When the client PUTs exactly as told
    put = requests.put(instructions["url"], data=data, headers=instructions["headers"], timeout=30)

    # Then S3 (moto) encrypts the object with the bucket's default key and says so
    assert put.status_code == 200, put.text
    assert put.headers["x-amz-server-side-encryption"] == "aws:kms"
    assert put.headers["x-amz-server-side-encryption-aws-kms-key-id"] == harness.key
    staged = harness.admin("s3").head_object(
        Bucket=resources.bucket, Key=f"staging/{created.body['upload_id']}"
    )
    assert (staged["ServerSideEncryption"], staged["SSEKMSKeyId"]) == ("aws:kms", harness.key)
    assert staged["BucketKeyEnabled"] is True

    # And the worker's copy under cas/ is encrypted with it too
    harness.drain()
    view = harness.api("GET", f"/uploads/{created.body['upload_id']}").body
    assert view["status"] == "STORED", view
    stored = harness.admin("s3").head_object(
        Bucket=resources.bucket, Key=f"cas/sha256/{view['sha256']}"
    )
    assert (stored["ServerSideEncryption"], stored["SSEKMSKeyId"]) == ("aws:kms", harness.key)


# --- without one of them -------------------------------------------------------------------------


def test_without_generate_data_key_the_apis_presigned_put_is_access_denied(
    harness: KmsHarness,
) -> None:
    # Given the API's role without kms:GenerateDataKey (it signs the upload URLs)
    harness.fresh(_without("ApiFunction", "kms:GenerateDataKey"))
    data = os.urandom(1000)

    # When a client PUTs through the URL the API handed out
    created = harness.create(data)
    assert created.status == 201, created.body
    instructions = created.body["upload"]
    put = requests.put(instructions["url"], data=data, headers=instructions["headers"], timeout=30)

    # Then S3 refuses it as the signer's: 403 AccessDenied, naming the key action
    assert put.status_code == 403, put.text
    assert "<Code>AccessDenied</Code>" in put.text
    assert f"kms:GenerateDataKey on resource: {harness.key}" in put.text


def test_without_decrypt_the_worker_cannot_ingest(harness: KmsHarness) -> None:
    # Given the worker's role without kms:Decrypt, and bytes PUT into staging
    harness.fresh(_without("WorkerFunction", "kms:Decrypt"))
    data = os.urandom(1000)
    created = harness.create(data)
    instructions = created.body["upload"]
    put = requests.put(instructions["url"], data=data, headers=instructions["headers"], timeout=30)
    assert put.status_code == 200, put.text

    # When the worker's poller receives from the encrypted queue
    with pytest.raises(ClientError) as refused:
        harness.drain()

    # Then SQS refuses it (KMS.AccessDeniedException) and the upload stays pending
    assert refused.value.response["Error"]["Code"] == "KMS.AccessDeniedException"
    assert f"kms:Decrypt on resource: {harness.key}" in str(refused.value)
    status = harness.api("GET", f"/uploads/{created.body['upload_id']}")
    assert status.body["status"] == "PENDING", status.body


@pytest.mark.parametrize(
    ("function", "action", "scenario"),
    [
        ("ApiFunction", "kms:Decrypt", "stored"),
        ("ApiFunction", "kms:GenerateDataKey", "stored"),
        ("WorkerFunction", "kms:Decrypt", "stored"),
        ("WorkerFunction", "kms:GenerateDataKey", "stored"),
        ("ReconcileFunction", "kms:Decrypt", "reconcile_report_and_repair"),
        ("CollectorFunction", "kms:Decrypt", "deleted"),
    ],
)
def test_each_key_grant_of_the_template_is_needed(
    harness: KmsHarness, function: str, action: str, scenario: str
) -> None:
    # Given the template's roles, this one without this grant on the key
    assert scenario in SCENARIOS
    harness.fresh(_without(function, action))

    # When a scenario that needs it runs
    error = _run(harness, scenario)

    # Then it fails, on that very grant
    assert error is not None, f"{scenario} passed without {function}'s {action}"
    denied = {(d[0], d[1]) for d in harness.decisions if d[3] != "Allow"}
    assert (function, action) in denied, denied
