"""`onecopy-local --kms`: the stack on a customer-managed KMS key (template parameter KmsKeyArn),
driven over HTTP by a signed-in client. Every byte, item and message is encrypted with the key,
and each function may use it only as far as template.yaml's EncryptionKey statements grant."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import requests

from tests.localstack import RunningStack, sha256_hex, start_stack, upload

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def kms_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with start_stack(tmp_path_factory.mktemp("kms-stack"), "--kms") as stack:
        yield stack


def _key(stack: RunningStack) -> str:
    key = stack.banner["KMS key"].split()[0]
    assert key.startswith("arn:aws:kms:"), stack.banner["KMS key"]
    return key


def test_the_banner_names_the_key_and_the_resources_are_encrypted_with_it(
    kms_stack: RunningStack,
) -> None:
    key = _key(kms_stack)

    rules = kms_stack.client("s3").get_bucket_encryption(Bucket=kms_stack.bucket)
    (rule,) = rules["ServerSideEncryptionConfiguration"]["Rules"]
    table = kms_stack.client("dynamodb").describe_table(TableName=kms_stack.uploads_table)
    queue = kms_stack.client("sqs").get_queue_attributes(
        QueueUrl=kms_stack.queue_url, AttributeNames=["KmsMasterKeyId"]
    )

    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": key,
    }
    assert rule["BucketKeyEnabled"] is True
    assert table["Table"]["SSEDescription"]["KMSMasterKeyArn"] == key
    assert queue["Attributes"]["KmsMasterKeyId"] == key


def test_upload_duplicate_and_download_on_encrypted_resources(kms_stack: RunningStack) -> None:
    # Given a signed-in client (alice) and new content
    data = os.urandom(4096)

    # When she uploads it twice (the second without declaring its hash, so it goes through S3
    # and the worker) and downloads it
    first = upload(kms_stack.api_url, data, filename="secret.bin")
    second = upload(kms_stack.api_url, data, filename="again.bin", declare_sha256=False)
    found = requests.get(
        f"{kms_stack.api_url}/download/{first['sha256']}", headers=kms_stack.auth(), timeout=30
    )

    # Then it is stored once, the second is a duplicate, and the bytes come back
    assert (first["status"], second["status"]) == ("STORED", "DUPLICATE"), (first, second)
    assert first["sha256"] == second["sha256"] == sha256_hex(data)
    assert found.status_code == 200, found.text
    got = requests.get(found.json()["url"], timeout=30)
    assert got.status_code == 200, got.text
    assert got.content == data
    # And S3 encrypted the stored copy with the stack's key
    assert got.headers["x-amz-server-side-encryption"] == "aws:kms"
    head = kms_stack.client("s3").head_object(
        Bucket=kms_stack.bucket, Key=f"cas/sha256/{first['sha256']}"
    )
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", _key(kms_stack))


def test_nothing_was_denied(kms_stack: RunningStack) -> None:
    # Every call of every function above was within its role, key grants included
    assert "iam: denied" not in kms_stack.log()
