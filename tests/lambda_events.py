"""Lambda events for tests, built from the samples in events/ so every test sends AWS's shapes.

The samples tell one story: `api_create_upload.json` declares SAMPLE_CONTENT (its size and
SHA-256), and `sqs_s3_object_created.json` is S3 announcing SAMPLE_CONTENT (its size and MD5 ETag)
in staging under SAMPLE_UPLOAD_ID, the id `api_get_upload.json` asks about.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote_plus, unquote_plus

EVENTS = Path(__file__).resolve().parent.parent / "events"

SAMPLE_CONTENT = b"hello from onecopy\n"
SAMPLE_UPLOAD_ID = "4f9d2c8e1b7a4e6f9c3d5a7b8e0f1a2b"
# The signed-in caller of the sample requests (the `sub` of their ID token's claims).
SAMPLE_SUB = "8f3e2b1c-5a7d-4e9f-b0c1-2d3e4f5a6b7c"


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


def http_event(
    method: str,
    path: str,
    body: Any = None,
    *,
    sub: str | None = SAMPLE_SUB,
    groups: Sequence[str] = (),
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) request for the ApiFunction's `ANY /{proxy+}` route.

    A dict or list body is sent as JSON; a str body is sent as is (for malformed JSON). The
    caller is `sub`, signed in with `groups`, as the JWT authorizer passes them on: the groups
    flattened into one "[a b]" string, as on AWS. `sub=None`: no authorizer ran (a public route,
    or a gateway that forgot one).
    """
    event = sample("api_get_upload.json")
    claims: dict[str, str] = event["requestContext"]["authorizer"]["jwt"]["claims"]
    if sub is None:
        del event["requestContext"]["authorizer"]
    else:
        claims["sub"] = sub
        claims["cognito:username"] = sub
        if groups:
            claims["cognito:groups"] = "[" + " ".join(groups) + "]"
    path, _, query = path.partition("?")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["rawQueryString"] = query
    if query:
        # As API Gateway passes them on: repeated names joined with commas.
        params: dict[str, list[str]] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            params.setdefault(name, []).append(value)
        event["queryStringParameters"] = {name: ",".join(v) for name, v in params.items()}
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["requestId"] = uuid.uuid4().hex[:16]
    event["pathParameters"] = {"proxy": path.lstrip("/")}
    if body is not None:
        text = body if isinstance(body, str) else json.dumps(body)
        event["body"] = text
        event["headers"]["content-type"] = "application/json"
        event["headers"]["content-length"] = str(len(text.encode()))
    return event


def s3_notification(
    key: str, *, size: int, etag: str, bucket: str = "onecopy-files", event_name: str = "Put"
) -> dict[str, Any]:
    """The body S3 sends to SQS for one ObjectCreated:<event_name> (full AWS format)."""
    body = json.loads(sample("sqs_s3_object_created.json")["Records"][0]["body"])
    record = body["Records"][0]
    record["eventName"] = f"ObjectCreated:{event_name}"
    record["s3"]["bucket"].update(name=bucket, arn=f"arn:aws:s3:::{bucket}")
    # S3 URL-encodes keys the way HTML forms do: '+' for spaces, '/' kept.
    record["s3"]["object"].update(key=quote_plus(key, safe="/"), size=size, eTag=etag)
    return {"Records": [record]}


def sqs_event(*bodies: dict[str, Any] | str) -> dict[str, Any]:
    """An SQS batch (as Lambda's event source mapping delivers it), one message per body."""
    template = sample("sqs_s3_object_created.json")["Records"][0]
    records = []
    for body in bodies:
        text = body if isinstance(body, str) else json.dumps(body)
        record = copy.deepcopy(template)
        record.update(
            messageId=str(uuid.uuid4()),
            body=text,
            # SQS digests each body with MD5 (not a security use).
            md5OfBody=hashlib.md5(text.encode()).hexdigest(),
        )
        records.append(record)
    return {"Records": records}


def s3_keys(event: dict[str, Any]) -> list[str]:
    """The decoded object keys an SQS batch of S3 notifications announces."""
    return [
        unquote_plus(s3_record["s3"]["object"]["key"])
        for message in event["Records"]
        for s3_record in json.loads(message["body"]).get("Records", [])
    ]
