"""The shapes of the events the handlers accept, parsed for what they use and nothing more.

Powertools' S3SqsEventNotificationModel demands fields some emulators omit (sequencer,
userIdentity, ...); the worker only needs the event name, bucket, key and time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Bucket(BaseModel):
    name: str


class _Object(BaseModel):
    key: str


class _S3(BaseModel):
    bucket: _Bucket
    object: _Object


class S3Record(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    event_name: str = Field(alias="eventName")
    event_time: datetime = Field(alias="eventTime")
    s3: _S3

    @property
    def bucket(self) -> str:
        return self.s3.bucket.name

    @property
    def key(self) -> str:
        # Keys arrive URL-encoded with '+' for spaces.
        return unquote_plus(self.s3.object.key)


class S3Notification(BaseModel):
    """Either real records, or S3's s3:TestEvent (sent once when a notification is configured)."""

    records: list[S3Record] = Field(default_factory=list, alias="Records")
    event: str | None = Field(default=None, alias="Event")

    @model_validator(mode="after")
    def _records_or_test_event(self) -> S3Notification:
        # Any JSON object would otherwise parse as "no records" and be acknowledged unseen.
        if not self.records and self.event is None:
            raise ValueError("neither S3 event records nor an s3:TestEvent")
        return self

    @property
    def is_test_event(self) -> bool:
        return self.event == "s3:TestEvent" and not self.records


class _SqsMessage(BaseModel):
    message_id: str = Field(alias="messageId", min_length=1)


class SqsBatch(BaseModel):
    """An SQS event source batch, checked only for what failure reporting needs: message ids."""

    records: list[_SqsMessage] = Field(alias="Records")


class _Http(BaseModel):
    method: str
    path: str


class _HttpContext(BaseModel):
    http: _Http


class HttpApiEvent(BaseModel):
    """What the API's resolver relies on: an API Gateway HTTP API request, payload format 2.0.

    A REST API (v1) payload, or any other event sent to the function, lacks these and would
    otherwise crash the resolver with a KeyError.
    """

    version: Literal["2.0"]
    raw_path: str = Field(alias="rawPath")
    request_context: _HttpContext = Field(alias="requestContext")


class JwtClaims(BaseModel):
    """The verified claims API Gateway's JWT authorizer passes on: what authorization uses.

    `cognito:groups` arrives flattened to one string ("[admins other]") on AWS, or as a list.
    """

    model_config = ConfigDict(populate_by_name=True)

    sub: str = Field(min_length=1)
    groups: str | list[str] | None = Field(default=None, alias="cognito:groups")
