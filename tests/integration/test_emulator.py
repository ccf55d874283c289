"""The local emulator's rules, tested directly: moto behind the strict proxy, in this process.

Each rule closes a gap where moto alone is laxer than AWS (see NOTES.md), so each test shows the
AWS behaviour through the proxy's endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import os
import sys
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from onecopy_local import sigv4
from onecopy_local.emulator import Emulator
from onecopy_local.worker import poll_once

pytestmark = pytest.mark.integration

REGION = "us-east-1"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(port=0) as running:
        yield running


def _client(emulator: Emulator, service: str, **options: Any) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=emulator.endpoint_url,
        region_name=REGION,
        aws_access_key_id=options.pop("access_key", "testing"),
        aws_secret_access_key="testing",
        aws_session_token=None,
        config=Config(max_pool_connections=50, **options),
    )


@pytest.fixture(scope="module")
def s3(emulator: Emulator) -> Any:
    return _client(emulator, "s3")


@pytest.fixture(scope="module")
def presigner(emulator: Emulator) -> Any:
    return _client(emulator, "s3", signature_version="s3v4")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"bucket-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _code(response: requests.Response) -> str:
    return ET.fromstring(response.content).findtext("Code") or ""


def _missing(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        return exc.response["Error"]["Code"] == "404"
    return False


# --- atomicity -----------------------------------------------------------------------------------


@pytest.fixture
def eager_thread_switching() -> Iterator[None]:
    # moto runs in this process: switching threads every microsecond makes its races show up.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


def test_concurrent_conditional_writes_have_exactly_one_winner(
    emulator: Emulator, eager_thread_switching: None
) -> None:
    # Given a table, a counter table, and 30 writers per round racing to create the same item
    ddb = _client(emulator, "dynamodb")
    names = [f"race-{uuid.uuid4().hex[:8]}", f"count-{uuid.uuid4().hex[:8]}"]
    for name in names:
        ddb.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
    items, counters = names
    rounds, writers = 8, 30

    def write(round_: int, writer: int) -> bool:
        try:
            ddb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": items,
                            "Item": {"k": {"S": f"r{round_}"}, "by": {"N": str(writer)}},
                            "ConditionExpression": "attribute_not_exists(k)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": counters,
                            "Key": {"k": {"S": "wins"}},
                            "UpdateExpression": "ADD n :one",
                            "ExpressionAttributeValues": {":one": {"N": "1"}},
                        }
                    },
                ]
            )
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "TransactionCanceledException"
            return False
        return True

    # When every round's writers go at once
    winners = []
    with ThreadPoolExecutor(writers) as pool:
        for round_ in range(rounds):
            results = list(pool.map(lambda w, r=round_: write(r, w), range(writers)))
            winners.append(results.count(True))

    # Then each round has exactly one winner, and the counter moved once per round
    assert winners == [1] * rounds
    count = ddb.get_item(TableName=counters, Key={"k": {"S": "wins"}}, ConsistentRead=True)
    assert count["Item"]["n"]["N"] == str(rounds)


def test_put_object_with_if_none_match_refuses_an_existing_key(s3: Any, bucket: str) -> None:
    # Given an object
    s3.put_object(Bucket=bucket, Key="k", Body=b"first")

    # When another PUT asks to create it only if absent
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=bucket, Key="k", Body=b"second", IfNoneMatch="*")

    # Then S3 answers 412 and the first bytes stay
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"first"


# --- checksums -----------------------------------------------------------------------------------


def _presigned_put(presigner: Any, bucket: str, key: str, data: bytes, **params: Any) -> str:
    url: str = presigner.generate_presigned_url(
        "put_object",
        Params={"Bucket": bucket, "Key": key, "ContentLength": len(data), **params},
        ExpiresIn=900,
        HttpMethod="PUT",
    )
    return url


def test_a_body_that_does_not_match_its_sha256_is_refused_with_bad_digest(
    s3: Any, presigner: Any, bucket: str
) -> None:
    # Given a presigned PUT bound to the SHA-256 of some bytes
    declared = os.urandom(1000)
    url = _presigned_put(presigner, bucket, "k", declared, ChecksumSHA256=_b64_sha256(declared))

    # When other bytes are sent with that checksum header
    response = requests.put(
        url,
        data=os.urandom(1000),
        headers={"x-amz-checksum-sha256": _b64_sha256(declared)},
        timeout=10,
    )

    # Then S3's answer is 400 BadDigest and nothing is stored
    assert response.status_code == 400
    assert _code(response) == "BadDigest"
    assert _missing(s3, bucket, "k")


def test_a_header_signed_put_with_a_wrong_checksum_is_refused_too(
    emulator: Emulator, s3: Any, bucket: str
) -> None:
    # When an SDK PUT claims the SHA-256 of other bytes (boto3 would retry BadDigest 4 times)
    once = _client(emulator, "s3", retries={"total_max_attempts": 1})
    with pytest.raises(ClientError) as refused:
        once.put_object(Bucket=bucket, Key="k", Body=b"abc", ChecksumSHA256=_b64_sha256(b"xyz"))

    # Then it is refused the same way
    assert refused.value.response["Error"]["Code"] == "BadDigest"
    assert _missing(s3, bucket, "k")


def test_a_payload_hash_that_does_not_match_the_body_is_refused(
    emulator: Emulator, s3: Any, bucket: str
) -> None:
    # Given a header-signed PUT whose x-amz-content-sha256 names other bytes
    once = _client(emulator, "s3", retries={"total_max_attempts": 1})

    def swap_body(request: Any, **_: Any) -> None:
        request.body = b"not what was hashed"

    once.meta.events.register("before-send.s3.PutObject", swap_body)

    # When it is sent
    with pytest.raises(ClientError) as refused:
        once.put_object(Bucket=bucket, Key="k", Body=b"what was hashed!!!!")

    # Then S3 refuses it
    assert refused.value.response["Error"]["Code"] == "XAmzContentSHA256Mismatch"
    assert _missing(s3, bucket, "k")


def test_a_checksum_header_that_is_not_a_sha256_is_an_invalid_request(
    presigner: Any, s3: Any, bucket: str
) -> None:
    data = b"hello"
    url = _presigned_put(presigner, bucket, "k", data, ChecksumSHA256="bm90LWEtZGlnZXN0")

    response = requests.put(
        url, data=data, headers={"x-amz-checksum-sha256": "bm90LWEtZGlnZXN0"}, timeout=10
    )

    assert response.status_code == 400
    assert _code(response) == "InvalidRequest"
    assert _missing(s3, bucket, "k")


def test_a_matching_checksum_is_kept_for_head_object(s3: Any, presigner: Any, bucket: str) -> None:
    # Given a presigned PUT bound to the SHA-256 of the bytes sent
    data = os.urandom(5000)
    url = _presigned_put(presigner, bucket, "k", data, ChecksumSHA256=_b64_sha256(data))

    # When the bytes are PUT with their checksum
    response = requests.put(
        url, data=data, headers={"x-amz-checksum-sha256": _b64_sha256(data)}, timeout=10
    )

    # Then S3 keeps the verified checksum, so HeadObject can tell the hash without a download
    assert response.status_code == 200, response.text
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == _b64_sha256(data)


# --- presigned signatures ------------------------------------------------------------------------


def _signed_url(emulator: Emulator, bucket: str, data: bytes, **client: Any) -> str:
    signer = _client(emulator, "s3", signature_version="s3v4", **client)
    return _presigned_put(signer, bucket, "k", data, ContentType="text/plain", IfNoneMatch="*")


HEADERS = {"Content-Type": "text/plain", "If-None-Match": "*"}


def test_a_valid_presigned_put_is_accepted(emulator: Emulator, s3: Any, bucket: str) -> None:
    data = b"exactly these bytes"
    response = requests.put(_signed_url(emulator, bucket, data), data=data, headers=HEADERS)

    assert response.status_code == 200, response.text
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"data": b"other length!"}, 403, "SignatureDoesNotMatch"),
        ({"headers": {"Content-Type": "text/plain"}}, 403, "SignatureDoesNotMatch"),
        ({"headers": {**HEADERS, "Content-Type": "text/html"}}, 403, "SignatureDoesNotMatch"),
        ({"url": lambda u: u.replace("X-Amz-Signature=", "X-Amz-Signature=f")}, 403, None),
        ({"url": lambda u: u.replace("/k?", "/other?")}, 403, "SignatureDoesNotMatch"),
        ({"client": {"access_key": "AKIANOTKNOWN"}}, 403, "InvalidAccessKeyId"),
    ],
    ids=[
        "content-length",
        "signed-header-missing",
        "signed-header-changed",
        "signature-changed",
        "other-key",
        "unknown-access-key",
    ],
)
def test_a_presigned_put_that_differs_from_what_was_signed_is_refused(
    emulator: Emulator, s3: Any, bucket: str, change: dict[str, Any], status: int, code: str | None
) -> None:
    # Given a URL signed for some bytes, content type and If-None-Match
    data = b"exactly these bytes"
    url = _signed_url(emulator, bucket, data, **change.get("client", {}))

    # When the request differs from what was signed
    response = requests.put(
        change.get("url", lambda u: u)(url),
        data=change.get("data", data),
        headers=change.get("headers", HEADERS),
        timeout=10,
    )

    # Then S3 refuses it and stores nothing
    assert response.status_code == status, response.text
    assert _code(response) == (code or "SignatureDoesNotMatch")
    assert _missing(s3, bucket, "k")


def _verify_at(url: str, now: datetime) -> sigv4.Refusal | None:
    parts = urlsplit(url)
    return sigv4.verify_presigned(
        method="PUT",
        raw_path=parts.path,
        query=sigv4.query_pairs(parts.query),
        headers={
            "host": [parts.netloc],
            "content-length": ["19"],
            "content-type": ["text/plain"],
            "if-none-match": ["*"],
        },
        secrets={"testing": "testing"},
        region=REGION,
        now=now,
    )


def test_a_presigned_url_is_valid_until_it_expires(emulator: Emulator, bucket: str) -> None:
    # Given a URL signed now for 900 s
    url = _signed_url(emulator, bucket, b"exactly these bytes")
    signed_at = datetime.strptime(
        dict(sigv4.query_pairs(urlsplit(url).query))["X-Amz-Date"], "%Y%m%dT%H%M%SZ"
    ).replace(tzinfo=UTC)

    # Then S3 accepts it up to its expiry, and refuses it one second later, or from the future
    assert _verify_at(url, signed_at + timedelta(seconds=900)) is None
    expired = _verify_at(url, signed_at + timedelta(seconds=901))
    assert expired == sigv4.Refusal(403, "AccessDenied", "Request has expired")
    early = _verify_at(url, signed_at - timedelta(minutes=16))
    assert early is not None and early.code == "AccessDenied"


def test_an_expired_url_is_refused_over_http(emulator: Emulator, s3: Any, bucket: str) -> None:
    # Given a URL whose X-Amz-Date lies 16 minutes back, re-signed so that only its age is wrong
    data = b"exactly these bytes"
    url = _backdated_url(emulator, bucket, data, minutes=16)

    # When it is used
    response = requests.put(url, data=data, headers=HEADERS, timeout=10)

    # Then S3 says it expired
    assert response.status_code == 403
    assert _code(response) == "AccessDenied"
    assert "Request has expired" in response.text
    assert _missing(s3, bucket, "k")


def _backdated_url(emulator: Emulator, bucket: str, data: bytes, *, minutes: int) -> str:
    when = datetime.now(UTC) - timedelta(minutes=minutes)

    def now(remove_tzinfo: bool = True) -> datetime:
        return when.replace(tzinfo=None) if remove_tzinfo else when

    with ExitStack() as patches:
        for module in ("botocore.auth", "botocore.crt.auth"):  # the CRT one needs awscrt
            with suppress(ImportError):
                importlib.import_module(module)
                patches.enter_context(mock.patch(f"{module}.get_current_datetime", now))
        return _signed_url(emulator, bucket, data)


# --- CopyObject preconditions --------------------------------------------------------------------


def test_copy_with_a_stale_source_etag_is_refused(s3: Any, bucket: str) -> None:
    # Given a source object whose ETag was read, and that changed since
    s3.put_object(Bucket=bucket, Key="src", Body=b"version 1")
    stale = s3.head_object(Bucket=bucket, Key="src")["ETag"]
    s3.put_object(Bucket=bucket, Key="src", Body=b"version 2")

    # When it is copied on condition that it is still the version read
    with pytest.raises(ClientError) as refused:
        s3.copy_object(
            Bucket=bucket,
            Key="dst",
            CopySource={"Bucket": bucket, "Key": "src"},
            CopySourceIfMatch=stale,
        )

    # Then S3 answers 412 and nothing is copied
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    assert _missing(s3, bucket, "dst")


def test_copy_with_the_current_source_etag_copies(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"content")
    etag = s3.head_object(Bucket=bucket, Key="src")["ETag"]

    s3.copy_object(
        Bucket=bucket,
        Key="dst",
        CopySource={"Bucket": bucket, "Key": "src"},
        CopySourceIfMatch=etag,
    )

    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"content"


def test_copy_with_a_matching_if_none_match_source_etag_is_refused(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"content")
    etag = s3.head_object(Bucket=bucket, Key="src")["ETag"]

    with pytest.raises(ClientError) as refused:
        s3.copy_object(
            Bucket=bucket,
            Key="dst",
            CopySource={"Bucket": bucket, "Key": "src"},
            CopySourceIfNoneMatch=etag,
        )

    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    assert _missing(s3, bucket, "dst")


def test_copy_onto_an_existing_key_with_if_none_match_is_refused(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"new")
    s3.put_object(Bucket=bucket, Key="dst", Body=b"old")

    with pytest.raises(ClientError) as refused:
        s3.copy_object(
            Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"}, IfNoneMatch="*"
        )

    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"old"


def test_get_with_a_stale_if_match_is_refused(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"version 1")
    stale = s3.head_object(Bucket=bucket, Key="k")["ETag"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"version 2")

    with pytest.raises(ClientError) as refused:
        s3.get_object(Bucket=bucket, Key="k", IfMatch=stale)

    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"


# --- SQS -----------------------------------------------------------------------------------------


def _queue(sqs: Any, *, visibility: int = 30, dlq: bool = False) -> tuple[str, str, str | None]:
    """A queue (and optionally its DLQ after 5 receives): (url, arn, dlq_url)."""
    name = f"q-{uuid.uuid4().hex[:8]}"
    attributes = {"VisibilityTimeout": str(visibility)}
    dlq_url = None
    if dlq:
        dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"], "maxReceiveCount": 5}
        )
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return url, arn["Attributes"]["QueueArn"], dlq_url


def test_a_long_poll_returns_a_message_sent_while_it_waits(emulator: Emulator) -> None:
    # Given a client long-polling an empty queue
    sqs = _client(emulator, "sqs")
    url, _, _ = _queue(sqs)
    received: list[Any] = []
    polling = threading.Thread(
        target=lambda: received.append(
            sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10).get("Messages", [])
        )
    )
    polling.start()

    # When another client sends a message meanwhile (not blocked behind the waiting poll)
    sqs.send_message(QueueUrl=url, MessageBody="hello")
    polling.join()

    # Then the poll returns it
    assert [m["Body"] for m in received[0]] == ["hello"]


def test_the_worker_loop_deletes_successes_and_dead_letters_a_message_failing_5_times(
    emulator: Emulator,
) -> None:
    # Given three messages, and a function that always reports the one saying "poison" as failed
    sqs = _client(emulator, "sqs")
    url, arn, dlq_url = _queue(sqs, visibility=0, dlq=True)
    for body in ("ok-1", "poison", "ok-2"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    events: list[dict[str, Any]] = []

    def function(event: dict[str, Any]) -> dict[str, Any]:
        events.append(event)
        failed = [r["messageId"] for r in event["Records"] if r["body"] == "poison"]
        return {"batchItemFailures": [{"itemIdentifier": i} for i in failed]}

    # When the worker loop polls until the queue is empty
    for _ in range(20):
        if not poll_once(sqs, queue_url=url, queue_arn=arn, region=REGION, invoke=function):
            break

    # Then the function saw Lambda's SQS records, the poison message five times, and then it
    # went to the dead-letter queue while the others were deleted after one delivery
    records = [r for e in events for r in e["Records"]]
    assert {r["eventSource"] for r in records} == {"aws:sqs"}
    assert {r["eventSourceARN"] for r in records} == {arn}
    assert all(r["md5OfBody"] == hashlib.md5(r["body"].encode()).hexdigest() for r in records)
    poison = [r for r in records if r["body"] == "poison"]
    assert [r["attributes"]["ApproximateReceiveCount"] for r in poison] == ["1", "2", "3", "4", "5"]
    assert sorted(r["body"] for r in records if r["body"] != "poison") == ["ok-1", "ok-2"]
    dead = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in dead] == ["poison"]


def test_when_the_function_raises_no_message_of_the_batch_is_deleted(emulator: Emulator) -> None:
    # Given two messages and a function that fails outright
    sqs = _client(emulator, "sqs")
    url, arn, _ = _queue(sqs, visibility=0)
    for body in ("a", "b"):
        sqs.send_message(QueueUrl=url, MessageBody=body)

    def function(event: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    # When the worker loop delivers them
    delivered = poll_once(sqs, queue_url=url, queue_arn=arn, region=REGION, invoke=function)

    # Then both are still in the queue, to be retried
    assert delivered == 2
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in again) == ["a", "b"]
