"""The four tables: uploads (one item per upload), contents (one per SHA-256), holdings (one per
owner and SHA-256: what each owner holds) and sharded stats.

Every transition out of PENDING is one TransactWriteItems that changes the upload, the content,
the owner's holding and one stats shard together, guarded by ``status = PENDING``. That single
guarded write is what makes redelivery, reordering and racing workers harmless: only one of them
can ever apply it, and counters move only with it. The holding's own condition (created only if
absent, counted only if present) is what decides, atomically, whether the owner already held the
content. A failed condition is a meaningful answer, translated here into an ``Applied`` result;
anything else propagates.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from domain.model import (
    Content,
    Holding,
    RejectReason,
    StatsDelta,
    Upload,
    UploadStatus,
    Verdict,
    new_holding,
    pending_expiry,
    stats_delta,
    stats_shard,
)
from domain.multipart import MultipartState, PartPlan

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

OWNER_PENDING_INDEX = "owner-pending"

_ser = TypeSerializer()
_de = TypeDeserializer()


class Applied(StrEnum):
    APPLIED = "applied"
    ALREADY_COMPLETE = "already_complete"  # the upload had left PENDING before this write
    CONTENT_EXISTS = "content_exists"  # another upload recorded this content first
    ALREADY_HELD = "already_held"  # the owner held this content before this upload completed
    NOT_HELD = "not_held"  # the holding this write relied on does not exist


def _item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in values.items() if v is not None}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _utc(at: datetime) -> str:
    """An ISO timestamp in UTC, so that string order is time order (the pending filter)."""
    return at.astimezone(UTC).isoformat()


def upload_to_item(upload: Upload) -> dict[str, Any]:
    pending = upload.status is UploadStatus.PENDING
    expires = upload.url_expires_at if pending else None
    return _item(
        {
            "upload_id": upload.upload_id,
            "owner": upload.owner,
            "filename": upload.filename,
            "size": upload.size,
            "content_type": upload.content_type,
            "created_at": upload.created_at.isoformat(),
            "declared_sha256": upload.declared_sha256,
            "status": upload.status.value,
            "sha256": upload.sha256,
            "completed_at": upload.completed_at.isoformat() if upload.completed_at else None,
            "reason": upload.reason.value if upload.reason else None,
            # Sparse index key: only PENDING uploads appear in the owner-pending index; the Put
            # that completes an upload drops it, with the URL expiry and the TTL.
            "pending_owner": upload.owner if pending else None,
            "url_expires_at": _utc(expires) if expires else None,
            "expires_at": _pending_ttl(upload, expires) if expires else None,
        }
    )


def _pending_ttl(upload: Upload, url_expires_at: datetime) -> int:
    ttl_seconds = max(0, int((url_expires_at - upload.created_at).total_seconds()))
    return pending_expiry(upload.created_at, ttl_seconds)


def upload_from_item(item: dict[str, Any]) -> Upload:
    v = _plain(item)
    return Upload(
        upload_id=v["upload_id"],
        owner=v["owner"],
        filename=v["filename"],
        size=int(v["size"]),
        content_type=v["content_type"],
        created_at=datetime.fromisoformat(v["created_at"]),
        declared_sha256=v.get("declared_sha256"),
        status=UploadStatus(v["status"]),
        sha256=v.get("sha256"),
        completed_at=_dt(v.get("completed_at")),
        reason=RejectReason(v["reason"]) if v.get("reason") else None,
        url_expires_at=_dt(v.get("url_expires_at")),
    )


def content_to_item(content: Content) -> dict[str, Any]:
    return _item(
        {
            "sha256": content.sha256,
            "size": content.size,
            "content_type": content.content_type,
            "created_at": content.created_at.isoformat(),
            "last_uploaded_at": content.last_uploaded_at.isoformat(),
            "upload_count": content.upload_count,
            "first_upload_id": content.first_upload_id,
        }
    )


def content_from_item(item: dict[str, Any]) -> Content:
    v = _plain(item)
    return Content(
        sha256=v["sha256"],
        size=int(v["size"]),
        content_type=v["content_type"],
        created_at=datetime.fromisoformat(v["created_at"]),
        last_uploaded_at=datetime.fromisoformat(v["last_uploaded_at"]),
        upload_count=int(v["upload_count"]),
        first_upload_id=v["first_upload_id"],
    )


def holding_to_item(holding: Holding) -> dict[str, Any]:
    return _item(
        {
            "owner": holding.owner,
            "sha256": holding.sha256,
            "upload_id": holding.upload_id,
            "size": holding.size,
            "filename": holding.filename,
            "content_type": holding.content_type,
            "created_at": holding.created_at.isoformat(),
            "upload_count": holding.upload_count,
        }
    )


def holding_from_item(item: dict[str, Any]) -> Holding:
    v = _plain(item)
    return Holding(
        owner=v["owner"],
        sha256=v["sha256"],
        upload_id=v["upload_id"],
        size=int(v["size"]),
        filename=v["filename"],
        content_type=v["content_type"],
        created_at=datetime.fromisoformat(v["created_at"]),
        upload_count=int(v["upload_count"]),
    )


_TRANSACT_ATTEMPTS = 5
_TRANSIENT_REASONS = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
_STATS_FIELDS = ("files", "uploads", "duplicates", "bytes_saved", "bytes_stored")


class Ledger:
    def __init__(
        self,
        client: DynamoDBClient,
        *,
        uploads_table: str,
        contents_table: str,
        holdings_table: str,
        stats_table: str,
        stats_shards: int,
    ) -> None:
        self._ddb = client
        self.uploads_table = uploads_table
        self.contents_table = contents_table
        self.holdings_table = holdings_table
        self.stats_table = stats_table
        self.stats_shards = stats_shards

    # --- reads ---------------------------------------------------------------------------------

    def get_upload(self, upload_id: str) -> Upload | None:
        resp = self._ddb.get_item(
            TableName=self.uploads_table, Key=_item({"upload_id": upload_id}), ConsistentRead=True
        )
        return upload_from_item(resp["Item"]) if "Item" in resp else None

    def get_multipart_upload(self, upload_id: str) -> tuple[Upload, MultipartState | None] | None:
        """An upload and, while it is pending in parts, its multipart state (one read)."""
        resp = self._ddb.get_item(
            TableName=self.uploads_table, Key=_item({"upload_id": upload_id}), ConsistentRead=True
        )
        if "Item" not in resp:
            return None
        item = resp["Item"]
        state = None
        if "s3_upload_id" in item:
            v = _plain(item)
            plan = PartPlan(part_size=int(v["part_size"]), part_count=int(v["part_count"]))
            state = MultipartState(v["s3_upload_id"], plan, assembled="assembled_at" in v)
        return upload_from_item(item), state

    def mark_assembled(self, upload_id: str, at: datetime) -> bool:
        """Record that S3 assembled the parts; False if another completion got there first."""
        try:
            self._ddb.update_item(
                TableName=self.uploads_table,
                Key=_item({"upload_id": upload_id}),
                UpdateExpression="SET assembled_at = :at",
                # Not conditioned on the upload still being PENDING: the worker may already have
                # finished it (the object exists as soon as S3 assembled it).
                ConditionExpression="attribute_exists(upload_id) AND "
                "attribute_not_exists(assembled_at)",
                ExpressionAttributeValues=_item({":at": at.isoformat()}),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def get_content(self, sha256: str) -> Content | None:
        resp = self._ddb.get_item(
            TableName=self.contents_table, Key=_item({"sha256": sha256}), ConsistentRead=True
        )
        return content_from_item(resp["Item"]) if "Item" in resp else None

    def get_holding(self, owner: str, sha256: str) -> Holding | None:
        """What this owner holds of this content, if anything (never another owner's facts)."""
        resp = self._ddb.get_item(
            TableName=self.holdings_table,
            Key=_item({"owner": owner, "sha256": sha256}),
            ConsistentRead=True,
        )
        return holding_from_item(resp["Item"]) if "Item" in resp else None

    def count_pending(self, owner: str, now: datetime) -> int:
        """This owner's PENDING uploads that can still receive bytes (their URL has not expired).

        The index is eventually consistent: a burst of creations can overshoot a cap by the few
        uploads created within the index's lag, which a cap against abuse can afford.
        """
        total = 0
        paginator = self._ddb.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.uploads_table,
            IndexName=OWNER_PENDING_INDEX,
            KeyConditionExpression="pending_owner = :owner",
            FilterExpression="url_expires_at > :now",
            ExpressionAttributeValues=_item({":owner": owner, ":now": _utc(now)}),
            Select="COUNT",
        ):
            total += int(page.get("Count", 0))
        return total

    def list_contents(self, limit: int, after: str | None) -> tuple[list[Content], str | None]:
        """One page of the contents table, in DynamoDB's (stable) scan order.

        A scan resumed from a key returns every item that existed throughout exactly once, however
        many items are added meanwhile, which is the guarantee the hash list makes to clients.
        """
        kwargs: dict[str, Any] = {"TableName": self.contents_table, "Limit": limit}
        if after is not None:
            kwargs["ExclusiveStartKey"] = _item({"sha256": after})
        resp = self._ddb.scan(**kwargs)
        last = resp.get("LastEvaluatedKey")
        contents = [content_from_item(item) for item in resp.get("Items", [])]
        return contents, (str(_plain(last)["sha256"]) if last else None)

    def scan_uploads(self) -> Iterator[Upload]:
        yield from (upload_from_item(i) for i in self._scan(self.uploads_table))

    def scan_contents(self) -> Iterator[Content]:
        yield from (content_from_item(i) for i in self._scan(self.contents_table))

    def scan_holdings(self) -> Iterator[Holding]:
        yield from (holding_from_item(i) for i in self._scan(self.holdings_table))

    def _scan(self, table: str) -> Iterator[dict[str, Any]]:
        paginator = self._ddb.get_paginator("scan")
        for page in paginator.paginate(TableName=table, ConsistentRead=True):
            yield from page.get("Items", [])

    def read_stats(self) -> StatsDelta:
        """Sum of all shards: one BatchGetItem, however many uploads there were."""
        keys = [_item({"shard": n}) for n in range(self.stats_shards)]
        totals = dict.fromkeys(_STATS_FIELDS, 0)
        request: dict[str, Any] = {self.stats_table: {"Keys": keys, "ConsistentRead": True}}
        while request:
            resp = self._ddb.batch_get_item(RequestItems=request)
            for item in resp["Responses"].get(self.stats_table, []):
                values = _plain(item)
                for field in _STATS_FIELDS:
                    totals[field] += int(values.get(field, 0))
            request = dict(resp.get("UnprocessedKeys") or {})
        return StatsDelta(**totals)

    # --- writes --------------------------------------------------------------------------------

    def add_to_stats(self, delta: StatsDelta, shard: int = 0) -> None:
        """Apply a correction found by reconciliation (ADD keeps concurrent increments intact)."""
        self._ddb.update_item(**self._stats_update(delta, shard)["Update"])

    def set_upload_count(self, sha256: str, count: int) -> None:
        self._ddb.update_item(
            TableName=self.contents_table,
            Key=_item({"sha256": sha256}),
            UpdateExpression="SET upload_count = :n",
            ConditionExpression="attribute_exists(sha256)",
            ExpressionAttributeValues=_item({":n": count}),
        )

    def set_holding_count(self, owner: str, sha256: str, count: int) -> None:
        self._ddb.update_item(
            TableName=self.holdings_table,
            Key=_item({"owner": owner, "sha256": sha256}),
            UpdateExpression="SET upload_count = :n",
            ConditionExpression="attribute_exists(sha256)",
            ExpressionAttributeValues=_item({":n": count}),
        )

    def create_upload(self, upload: Upload, multipart: MultipartState | None = None) -> None:
        """A new PENDING upload; with url_expires_at, it counts against the owner's cap until
        then and DynamoDB's TTL removes it days later if its bytes never arrive."""
        if upload.status is not UploadStatus.PENDING:
            raise ValueError("a new upload is PENDING (record_held_duplicate records the others)")
        item = upload_to_item(upload)
        if multipart is not None:
            item |= _item(
                {
                    "s3_upload_id": multipart.s3_upload_id,
                    "part_size": multipart.plan.part_size,
                    "part_count": multipart.plan.part_count,
                }
            )
        self._ddb.put_item(
            TableName=self.uploads_table,
            Item=item,
            ConditionExpression="attribute_not_exists(upload_id)",
        )

    def record_stored(self, upload: Upload, content: Content) -> Applied:
        """Verdict STORE, the first copy of a content: content record, holding, STORED, counters.

        CONTENT_EXISTS when another upload recorded the content first (the worker then matches).
        """
        return self._transact(
            [
                self._complete_upload(upload),
                {
                    "Put": {
                        "TableName": self.contents_table,
                        "Item": content_to_item(content),
                        "ConditionExpression": "attribute_not_exists(sha256)",
                    }
                },
                self._put_holding(upload),
                self._bump_stats(upload, Verdict.STORE),
            ],
            {1: Applied.CONTENT_EXISTS},
        )

    def record_match(self, upload: Upload) -> Applied:
        """Verdict MATCH: a known content, new to this owner: holding, STORED, counters.

        ALREADY_HELD when the owner held the content already (the worker then records DUPLICATE).
        """
        return self._transact(
            [
                self._complete_upload(upload),
                self._put_holding(upload),
                *self._count_dedup(upload, Verdict.MATCH),
            ],
            {1: Applied.ALREADY_HELD},
        )

    def record_duplicate(self, upload: Upload) -> Applied:
        """Verdict DUPLICATE, found by the worker: the owner already held this content."""
        return self._transact(
            [
                self._complete_upload(upload),
                self._count_holding(upload),
                *self._count_dedup(upload, Verdict.DUPLICATE),
            ],
            {1: Applied.NOT_HELD},
        )

    def record_held_duplicate(self, upload: Upload) -> Applied:
        """The 409 pre-check: a new upload item, born DUPLICATE, and the savings it stands for.

        NOT_HELD when the owner's holding is gone (holdings are never deleted today), in which
        case nothing was written.
        """
        if upload.status is not UploadStatus.DUPLICATE:
            raise ValueError("a held duplicate is born DUPLICATE")
        put = {
            "Put": {
                "TableName": self.uploads_table,
                "Item": upload_to_item(upload),
                "ConditionExpression": "attribute_not_exists(upload_id)",
            }
        }
        return self._transact(
            [put, self._count_holding(upload), *self._count_dedup(upload, Verdict.DUPLICATE)],
            {1: Applied.NOT_HELD},
        )

    def _put_holding(self, upload: Upload) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self.holdings_table,
                "Item": holding_to_item(new_holding(upload)),
                # The atomic answer to "did this owner already hold it?".
                "ConditionExpression": "attribute_not_exists(sha256)",
            }
        }

    def _count_holding(self, upload: Upload) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.holdings_table,
                "Key": _item({"owner": upload.owner, "sha256": upload.sha256}),
                "UpdateExpression": "ADD upload_count :one",
                "ConditionExpression": "attribute_exists(sha256)",
                "ExpressionAttributeValues": _item({":one": 1}),
            }
        }

    def _count_dedup(self, upload: Upload, verdict: Verdict) -> list[dict[str, Any]]:
        assert upload.sha256 is not None and upload.completed_at is not None
        count = {
            "Update": {
                "TableName": self.contents_table,
                "Key": _item({"sha256": upload.sha256}),
                "UpdateExpression": "ADD upload_count :one SET last_uploaded_at = :at",
                "ConditionExpression": "attribute_exists(sha256)",
                "ExpressionAttributeValues": _item(
                    {":one": 1, ":at": upload.completed_at.isoformat()}
                ),
            }
        }
        return [count, self._bump_stats(upload, verdict)]

    def record_rejected(self, upload: Upload) -> Applied:
        """REJECTED, by the worker (bytes that do not match) or the client (abort).

        Refused once a worker claimed a content for the upload (`claim_content`): its bytes
        matched, and the copy the claim made way for must end up recorded.
        """
        return self._transact([self._complete_upload(upload, unclaimed=True)], {})

    def claim_content(self, upload_id: str, sha256: str) -> bool:
        """Mark a PENDING upload as about to store `sha256`, before its bytes are copied there.

        From then on the upload can only leave PENDING holding that content (STORED, or
        DUPLICATE of it), so the copied object always gets its content record: neither an abort
        nor a stale worker that hashed other bytes can strand it. Claiming again for the same
        content is a no-op (a redelivery). False when the upload is no longer PENDING, or was
        claimed for another content.

        The claim also removes the upload's TTL: a claimed upload must end holding its content,
        however late a redelivery comes (even redriven from the dead-letter queue), or the copy
        would be left without its record.
        """
        try:
            self._ddb.update_item(
                TableName=self.uploads_table,
                Key=_item({"upload_id": upload_id}),
                UpdateExpression="SET claimed_sha256 = :sha REMOVE expires_at",
                ConditionExpression="#s = :pending AND "
                "(attribute_not_exists(claimed_sha256) OR claimed_sha256 = :sha)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=_item(
                    {":sha": sha256, ":pending": UploadStatus.PENDING.value}
                ),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _complete_upload(self, upload: Upload, *, unclaimed: bool = False) -> dict[str, Any]:
        # The Put replaces the whole item: a claim (or multipart state) ends with PENDING.
        condition = "#s = :pending"
        if unclaimed:
            condition += " AND attribute_not_exists(claimed_sha256)"
        return {
            "Put": {
                "TableName": self.uploads_table,
                "Item": upload_to_item(upload),
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": _item({":pending": UploadStatus.PENDING.value}),
            }
        }

    def _bump_stats(self, upload: Upload, verdict: Verdict) -> dict[str, Any]:
        delta = stats_delta(verdict, upload.size)
        return self._stats_update(delta, stats_shard(upload.upload_id, self.stats_shards))

    def _stats_update(self, delta: StatsDelta, shard: int) -> dict[str, Any]:
        values = {f":{f}": getattr(delta, f) for f in _STATS_FIELDS}
        return {
            "Update": {
                "TableName": self.stats_table,
                "Key": _item({"shard": shard}),
                "UpdateExpression": "ADD " + ", ".join(f"{f} :{f}" for f in _STATS_FIELDS),
                "ExpressionAttributeValues": _item(values),
            }
        }

    def _transact(self, actions: list[dict[str, Any]], outcomes: dict[int, Applied]) -> Applied:
        """Apply the actions at once. Action 0 is always the upload's guarded write (its failure
        is ALREADY_COMPLETE); `outcomes` names what the failure of another condition means. The
        first failed condition decides; a failure nobody expects propagates."""
        for attempt in range(1, _TRANSACT_ATTEMPTS + 1):
            try:
                self._ddb.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
                reasons: list[dict[str, Any]] = exc.response.get("CancellationReasons", [])  # type: ignore[assignment]
                codes = [str(r.get("Code", "None")) for r in reasons]
                failed = [i for i, code in enumerate(codes) if code == "ConditionalCheckFailed"]
                if failed and failed[0] == 0:
                    return Applied.ALREADY_COMPLETE
                if failed and failed[0] in outcomes:
                    return outcomes[failed[0]]
                # Another write to the same stats shard, content or holding was in flight:
                # botocore does not retry a cancelled transaction, and SQS would only retry it
                # after the visibility timeout (minutes). Nothing was applied: trying again is safe.
                transient = not failed and set(codes) - {"None"} <= _TRANSIENT_REASONS
                if not transient or attempt == _TRANSACT_ATTEMPTS:
                    raise
                time.sleep(random.uniform(0, 0.025 * 2**attempt))  # noqa: S311 (jitter)
                continue
            return Applied.APPLIED
        raise AssertionError("unreachable")
