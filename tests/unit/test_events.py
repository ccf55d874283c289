"""The S3 notification inside an SQS message, as AWS and moto send it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from handlers.events import S3Notification
from tests.lambda_events import SAMPLE_UPLOAD_ID, s3_notification, sample

pytestmark = pytest.mark.unit


def sample_body(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(sample(name)["Records"][0]["body"])
    return body


def with_raw_key(raw_key: str) -> str:
    """A notification body whose key is exactly `raw_key`, as encoded on the wire."""
    body = sample_body("sqs_s3_object_created.json")
    body["Records"][0]["s3"]["object"]["key"] = raw_key
    return json.dumps(body)


def test_an_aws_notification_gives_what_the_worker_uses() -> None:
    body = json.dumps(sample_body("sqs_s3_object_created.json"))

    notification = S3Notification.model_validate_json(body)

    assert not notification.is_test_event
    [record] = notification.records
    assert record.event_name == "ObjectCreated:Put"
    assert record.bucket == "onecopy-files"
    assert record.key == f"staging/{SAMPLE_UPLOAD_ID}"
    assert record.event_time == datetime(2025, 11, 27, 14, 5, 13, 482000, tzinfo=UTC)


def test_a_record_without_the_fields_moto_omits_still_parses() -> None:
    # moto 5.2 sends no sequencer, versionId, userIdentity, requestParameters,
    # responseElements or ownerIdentity, and encodes '/' in keys as %2F.
    body = sample_body("sqs_s3_object_created.json")
    record = body["Records"][0]
    for name in ("userIdentity", "requestParameters", "responseElements"):
        del record[name]
    del record["s3"]["bucket"]["ownerIdentity"]
    del record["s3"]["object"]["sequencer"]
    record["s3"]["object"]["key"] = f"staging%2F{SAMPLE_UPLOAD_ID}"

    notification = S3Notification.model_validate_json(json.dumps(body))

    assert [r.key for r in notification.records] == [f"staging/{SAMPLE_UPLOAD_ID}"]


def test_a_record_without_size_or_etag_parses() -> None:
    # The worker learns size and ETag from S3 itself (HeadObject), never from the event.
    body = sample_body("sqs_s3_object_created.json")
    del body["Records"][0]["s3"]["object"]["size"]
    del body["Records"][0]["s3"]["object"]["eTag"]

    [record] = S3Notification.model_validate_json(json.dumps(body)).records

    assert record.key == f"staging/{SAMPLE_UPLOAD_ID}"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("staging/my+file.txt", "staging/my file.txt"),
        ("staging%2Fa%2Fb", "staging/a/b"),
        ("staging/100%25", "staging/100%"),
        ("staging/a%2Bb", "staging/a+b"),
        ("staging/caf%C3%A9", "staging/café"),
        ("staging/%E6%97%A5%E6%9C%AC", "staging/日本"),
        ("staging/%F0%9F%98%80", "staging/😀"),
        ("staging/%25%32%46", "staging/%2F"),  # decoded once: S3 encodes exactly once
    ],
)
def test_keys_are_url_decoded_with_plus_for_space(raw: str, key: str) -> None:
    [record] = S3Notification.model_validate_json(with_raw_key(raw)).records

    assert record.key == key


@pytest.mark.parametrize(
    "key", ["staging/my file+1%.txt", "staging/é ü/ß", "staging/a%2Fb", "staging/ +%+ "]
)
def test_keys_encoded_the_way_s3_does_decode_to_themselves(key: str) -> None:
    body = s3_notification(key, size=1, etag="0" * 32)

    [record] = S3Notification.model_validate(body).records

    assert record.key == key


def test_the_test_event_s3_sends_when_configured_is_recognised() -> None:
    body = json.dumps(sample_body("sqs_s3_test_event.json"))

    notification = S3Notification.model_validate_json(body)

    assert notification.is_test_event
    assert notification.records == []


def test_moto_s_shorter_test_event_is_recognised() -> None:
    body = '{"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-01-01T00:00:00.000Z"}'

    assert S3Notification.model_validate_json(body).is_test_event


def test_a_notification_with_records_is_not_a_test_event() -> None:
    body = sample_body("sqs_s3_object_created.json")
    body["Event"] = "s3:TestEvent"

    assert not S3Notification.model_validate(body).is_test_event


def test_several_records_in_one_message_are_all_kept() -> None:
    first = s3_notification(f"staging/{'a' * 32}", size=1, etag="e1")
    second = s3_notification(f"staging/{'b' * 32}", size=2, etag="e2")
    body = {"Records": first["Records"] + second["Records"]}

    notification = S3Notification.model_validate(body)

    assert [r.key for r in notification.records] == [f"staging/{'a' * 32}", f"staging/{'b' * 32}"]


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not json",
        "[]",
        '{"Records": "x"}',
        '{"Records": [{}]}',
        '{"Records": [{"eventName": "ObjectCreated:Put", "eventTime": "2026-01-01T00:00:00Z"}]}',
        '{"Records": [{"eventName": "ObjectCreated:Put", "eventTime": "yesterday",'
        ' "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}}}]}',
        '{"Records": [{"eventTime": "2026-01-01T00:00:00Z",'
        ' "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}}}]}',
    ],
)
def test_malformed_messages_fail_validation(body: str) -> None:
    with pytest.raises(ValidationError):
        S3Notification.model_validate_json(body)


@pytest.mark.parametrize("body", ["{}", '{"Records": []}', '{"Message": "hello"}'])
def test_a_message_that_is_neither_records_nor_a_test_event_is_refused(body: str) -> None:
    with pytest.raises(ValidationError):
        S3Notification.model_validate_json(body)
