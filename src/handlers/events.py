"""The shapes of the events the worker and reconciliation accept, parsed for what they use.

Powertools' S3SqsEventNotificationModel demands fields some emulators omit (sequencer,
userIdentity, ...); the worker only needs the event name, bucket, key and time. Core models
(handlers.core_models), so neither function imports `pydantic`.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import unquote_plus

from handlers.core_models import CoreModel, core_model, core_schema, field


@core_model({"name": field(core_schema.str_schema())})
class _Bucket(CoreModel):
    name: str


@core_model({"key": field(core_schema.str_schema())})
class _Object(CoreModel):
    key: str


@core_model(
    {
        "bucket": field(_Bucket.__core_schema__),
        "object": field(_Object.__core_schema__),
    }
)
class _S3(CoreModel):
    bucket: _Bucket
    object: _Object


@core_model(
    {
        "event_name": field(core_schema.str_schema(), "eventName"),
        "event_time": field(core_schema.datetime_schema(), "eventTime"),
        "s3": field(_S3.__core_schema__),
    }
)
class S3Record(CoreModel):
    event_name: str
    event_time: datetime
    s3: _S3

    @property
    def bucket(self) -> str:
        return self.s3.bucket.name

    @property
    def key(self) -> str:
        # Keys arrive URL-encoded with '+' for spaces.
        return unquote_plus(self.s3.object.key)


def _records_or_test_event(notification: S3Notification) -> S3Notification:
    # Any JSON object would otherwise parse as "no records" and be acknowledged unseen.
    if not notification.records and notification.event is None:
        raise ValueError("neither S3 event records nor an s3:TestEvent")
    return notification


@core_model(
    {
        "records": field(
            core_schema.list_schema(S3Record.__core_schema__), "Records", default_factory=list
        ),
        "event": field(
            core_schema.nullable_schema(core_schema.str_schema()), "Event", default=None
        ),
    },
    after=_records_or_test_event,
)
class S3Notification(CoreModel):
    """Either real records, or S3's s3:TestEvent (sent once when a notification is configured)."""

    records: list[S3Record]
    event: str | None

    @property
    def is_test_event(self) -> bool:
        return self.event == "s3:TestEvent" and not self.records


@core_model({"message_id": field(core_schema.str_schema(min_length=1), "messageId")})
class _SqsMessage(CoreModel):
    message_id: str


@core_model({"records": field(core_schema.list_schema(_SqsMessage.__core_schema__), "Records")})
class SqsBatch(CoreModel):
    """An SQS event source batch, checked only for what failure reporting needs: message ids."""

    records: list[_SqsMessage]


# A scheduled invocation delivers an EventBridge event: extra fields are ignored, repair off.
@core_model({"repair": field(core_schema.bool_schema(), default=False)})
class ReconcileRequest(CoreModel):
    """What an invocation of reconciliation may ask: {"repair": true} corrects drift."""

    repair: bool
