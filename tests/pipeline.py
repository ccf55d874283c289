"""Drive the handlers in-process against moto the way AWS would: API call, PUT, queue -> worker."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import boto3

from onecopy_local.resources import Resources
from tests.lambda_events import http_event


class FakeContext:
    function_name = "onecopy-test"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:onecopy-test"
    aws_request_id = "test-request"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


ADMINS = ("admins",)


@dataclass
class Pipeline:
    """One signed-in caller (`owner`, in `groups`) driving the API, S3 and the worker."""

    resources: Resources
    owner: str | None = "alice"  # None: a request no authorizer vouched for
    groups: tuple[str, ...] = ()

    def as_admin(self) -> Pipeline:
        """The same stack, called by a member of the admins group (for /admin/*)."""
        return Pipeline(self.resources, owner="admin", groups=ADMINS)

    def call(
        self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None
    ) -> Reply:
        from handlers import api

        event = http_event(method, path, body, sub=self.owner, groups=self.groups)
        if query:
            event["rawQueryString"] = urlencode(query)
            event["queryStringParameters"] = query
        response = api.lambda_handler(event, FakeContext())
        text = response.get("body") or ""
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        return Reply(int(response["statusCode"]), parsed, response.get("headers") or {})

    def create(self, data: bytes, filename: str = "file.bin", *, declare: bool = True) -> Reply:
        body: dict[str, Any] = {"filename": filename, "size": len(data)}
        if declare:
            body["sha256"] = hashlib.sha256(data).hexdigest()
        return self.call("POST", "/uploads", body)

    def put(self, upload_id: str, data: bytes) -> None:
        """The bytes arriving in staging, as the presigned PUT would leave them."""
        boto3.client("s3").put_object(
            Bucket=self.resources.bucket, Key=f"staging/{upload_id}", Body=data
        )

    def drain(self) -> list[dict[str, Any]]:
        """Deliver every queued S3 event to the worker; returns the batch responses."""
        from handlers import worker
        from tests.lambda_events import sample

        sqs = boto3.client("sqs")
        template = sample("sqs_s3_object_created.json")["Records"][0]
        responses: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(
                QueueUrl=self.resources.queue_url, MaxNumberOfMessages=10
            ).get("Messages", [])
            if not messages:
                return responses
            records = [
                {
                    **template,
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                }
                for m in messages
            ]
            response = worker.lambda_handler({"Records": records}, FakeContext())
            failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
            for m in messages:
                if m["MessageId"] not in failed:
                    sqs.delete_message(
                        QueueUrl=self.resources.queue_url, ReceiptHandle=m["ReceiptHandle"]
                    )
            responses.append(response)

    def upload(self, data: bytes, filename: str = "file.bin", *, declare: bool = True) -> Reply:
        """The whole client flow; returns the final status (or the 409)."""
        created = self.create(data, filename, declare=declare)
        if created.status != 201:
            return created
        upload_id = created.body["upload_id"]
        self.put(upload_id, data)
        self.drain()
        return self.call("GET", f"/uploads/{upload_id}")
