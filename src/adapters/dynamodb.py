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
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from domain.health import CollectorBacklog, Operations
from domain.lifecycle import TOMBSTONE_RETENTION, Applied, Deletion, Verdict, stats_delta
from domain.model import (
    Content,
    ContentState,
    Holding,
    RejectReason,
    StatsDelta,
    Upload,
    UploadStatus,
    new_holding,
    pending_expiry,
    stats_shard,
)
from domain.multipart import MultipartState, PartPlan

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

OWNER_PENDING_INDEX = "owner-pending"
OWNER_CREATED_INDEX = "owner-created"
COLLECTABLE_INDEX = "collectable"
# The collectable index is write-sharded by the first hex digit of the hash: deletions that
# unreference many contents at once (an erasure) spread over 16 partitions.
GC_SHARDS = "0123456789abcdef"
# The stats table's one item that is not a counter shard: when reconciliation and the collector
# last ran, and what they found (the health view reads it).
OPERATIONS_SHARD = -1

_ser = TypeSerializer()
_de = TypeDeserializer()


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
            "deduplicated": upload.deduplicated,
        }
    )


def tombstone_item(upload: Upload, at: datetime) -> dict[str, Any]:
    """What a deleted, deduplicated upload leaves: no owner, no name, only the avoided duplicate
    that the cumulative counter keeps counting (and reconciliation recounts)."""
    return _item(
        {
            "upload_id": upload.upload_id,
            "status": UploadStatus.DELETED.value,
            "deduplicated": True,
            "created_at": upload.created_at.isoformat(),
            "completed_at": at.isoformat(),
        }
    )


def _pending_ttl(upload: Upload, url_expires_at: datetime) -> int:
    ttl_seconds = max(0, int((url_expires_at - upload.created_at).total_seconds()))
    return pending_expiry(upload.created_at, ttl_seconds)


def upload_from_item(item: dict[str, Any]) -> Upload:
    v = _plain(item)
    if v["status"] == UploadStatus.DELETED.value:
        return Upload(
            upload_id=v["upload_id"],
            owner="",
            filename="",
            size=0,
            content_type="",
            created_at=datetime.fromisoformat(v["created_at"]),
            status=UploadStatus.DELETED,
            completed_at=_dt(v.get("completed_at")),
            deduplicated=bool(v.get("deduplicated")),
        )
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
        deduplicated=v.get("deduplicated"),
    )


def content_to_item(content: Content) -> dict[str, Any]:
    """A content record. LIVE is the absence of `state` (so records written before deletion
    existed read as LIVE); an unreferenced LIVE content carries the collectable index's keys."""
    unreferenced = content.state is ContentState.LIVE and content.zero_since is not None
    return _item(
        {
            "sha256": content.sha256,
            "size": content.size,
            "content_type": content.content_type,
            "created_at": content.created_at.isoformat(),
            "last_uploaded_at": content.last_uploaded_at.isoformat(),
            "upload_count": content.upload_count,
            "first_upload_id": content.first_upload_id,
            "state": None if content.state is ContentState.LIVE else content.state.value,
            "generation": content.generation,
            "zero_since": _utc(content.zero_since) if content.zero_since else None,
            "gc_shard": content.sha256[0] if unreferenced else None,
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
        state=ContentState(v.get("state", ContentState.LIVE.value)),
        zero_since=_dt(v.get("zero_since")),
        generation=int(v.get("generation", 0)),
        collecting_until=_dt(v.get("collecting_until")),
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
        """The upload, or None when there is none (a deleted upload's tombstone included)."""
        resp = self._ddb.get_item(
            TableName=self.uploads_table, Key=_item({"upload_id": upload_id}), ConsistentRead=True
        )
        upload = upload_from_item(resp["Item"]) if "Item" in resp else None
        return None if upload is None or upload.status is UploadStatus.DELETED else upload

    def get_multipart_upload(self, upload_id: str) -> tuple[Upload, MultipartState | None] | None:
        """An upload and, while it is pending in parts, its multipart state (one read)."""
        resp = self._ddb.get_item(
            TableName=self.uploads_table, Key=_item({"upload_id": upload_id}), ConsistentRead=True
        )
        if "Item" not in resp or resp["Item"]["status"]["S"] == UploadStatus.DELETED.value:
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

    def list_uploads(
        self,
        owner: str,
        limit: int,
        after: tuple[str, str] | None,
        *,
        status: UploadStatus | None = None,
        prefix: str | None = None,
    ) -> tuple[list[Upload], tuple[str, str] | None]:
        """One page of an owner's uploads, newest first, from the owner-created index.

        `after` and the returned position are (created_at, upload_id) of the page's last item
        examined. Filters apply after the page is read (DynamoDB's FilterExpression), so a page
        may hold fewer than `limit` uploads while more follow; a deleted upload has no owner and
        so is not in the index at all.
        """
        kwargs: dict[str, Any] = {
            "TableName": self.uploads_table,
            "IndexName": OWNER_CREATED_INDEX,
            "KeyConditionExpression": "#o = :owner",
            "ScanIndexForward": False,
            "Limit": limit,
        }
        names = {"#o": "owner"}
        values: dict[str, Any] = {":owner": owner}
        filters = []
        if status is not None:
            filters.append("#s = :status")
            names["#s"] = "status"
            values[":status"] = status.value
        if prefix:
            filters.append("begins_with(filename, :prefix)")
            values[":prefix"] = prefix
        if filters:
            kwargs["FilterExpression"] = " AND ".join(filters)
        kwargs["ExpressionAttributeNames"] = names
        kwargs["ExpressionAttributeValues"] = _item(values)
        if after is not None:
            created_at, upload_id = after
            kwargs["ExclusiveStartKey"] = _item(
                {"owner": owner, "created_at": created_at, "upload_id": upload_id}
            )
        resp = self._ddb.query(**kwargs)
        last = resp.get("LastEvaluatedKey")
        found = [upload_from_item(item) for item in resp.get("Items", [])]
        position = (
            (str(_plain(last)["created_at"]), str(_plain(last)["upload_id"])) if last else None
        )
        return found, position

    def collectable(self, cutoff: datetime) -> Iterator[str]:
        """Contents unreferenced since `cutoff` or earlier (and half-done collections), by hash.

        The index is eventually consistent: what it lists is only a candidate, which the guarded
        mark re-checks against the table.
        """
        paginator = self._ddb.get_paginator("query")
        for shard in GC_SHARDS:
            for page in paginator.paginate(
                TableName=self.contents_table,
                IndexName=COLLECTABLE_INDEX,
                KeyConditionExpression="gc_shard = :shard AND zero_since <= :cutoff",
                ExpressionAttributeValues=_item({":shard": shard, ":cutoff": _utc(cutoff)}),
            ):
                for item in page.get("Items", []):
                    yield str(_plain(item)["sha256"])

    def list_contents(self, limit: int, after: str | None) -> tuple[list[Content], str | None]:
        """One page of the contents held (LIVE and referenced), in DynamoDB's (stable) scan order.

        A scan resumed from a key returns every item that existed throughout exactly once, however
        many items are added meanwhile, which is the guarantee the hash list makes to clients.
        Contents being collected, collected, or awaiting collection (no live upload) are filtered
        out after the read, so the list names exactly what the `files` counter counts: a page may
        be short while more follow.
        """
        kwargs: dict[str, Any] = {
            "TableName": self.contents_table,
            "Limit": limit,
            "FilterExpression": "attribute_not_exists(#st) AND upload_count > :zero",
            "ExpressionAttributeNames": {"#st": "state"},
            "ExpressionAttributeValues": {":zero": {"N": "0"}},
        }
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

    def read_operations(self) -> Operations:
        resp = self._ddb.get_item(
            TableName=self.stats_table, Key=_item({"shard": OPERATIONS_SHARD}), ConsistentRead=True
        )
        v = _plain(resp.get("Item") or {})
        return Operations(
            reconciled_at=_dt(v.get("reconciled_at")),
            reconcile_clean=v.get("reconcile_clean"),
            reconcile_drift=int(v["reconcile_drift"]) if "reconcile_drift" in v else None,
            reconcile_repaired=v.get("reconcile_repaired"),
            collected_at=_dt(v.get("collected_at")),
            collected=int(v["collected"]) if "collected" in v else None,
            collection_complete=v.get("collection_complete"),
        )

    def collector_backlog(self, cutoff: datetime) -> CollectorBacklog:
        """Every entry of the collectable index, and those unreferenced since `cutoff` or
        earlier (the index keys carry `zero_since`: one pass counts both)."""
        unreferenced = due = 0
        limit = _utc(cutoff)
        paginator = self._ddb.get_paginator("query")
        for shard in GC_SHARDS:
            for page in paginator.paginate(
                TableName=self.contents_table,
                IndexName=COLLECTABLE_INDEX,
                KeyConditionExpression="gc_shard = :shard",
                ExpressionAttributeValues=_item({":shard": shard}),
            ):
                for item in page.get("Items", []):
                    unreferenced += 1
                    due += item["zero_since"]["S"] <= limit
        return CollectorBacklog(unreferenced=unreferenced, due=due)

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

    def record_reconciliation(
        self, at: datetime, *, clean: bool, drift: int, repaired: bool
    ) -> None:
        self._record_operation(
            {
                "reconciled_at": _utc(at),
                "reconcile_clean": clean,
                "reconcile_drift": drift,
                "reconcile_repaired": repaired,
            }
        )

    def record_collection(self, at: datetime, *, collected: int, complete: bool) -> None:
        self._record_operation(
            {"collected_at": _utc(at), "collected": collected, "collection_complete": complete}
        )

    def _record_operation(self, values: dict[str, Any]) -> None:
        # Last writer wins: each run overwrites its own attributes only.
        names = {f"#{k}": k for k in values}
        self._ddb.update_item(
            TableName=self.stats_table,
            Key=_item({"shard": OPERATIONS_SHARD}),
            UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in values),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=_item({f":{k}": v for k, v in values.items()}),
        )

    def set_upload_count(self, sha256: str, count: int, at: datetime) -> None:
        """A LIVE content's reference count, as reconciliation found it; an unreferenced one
        (re)enters the collectable index, its grace starting now."""
        values: dict[str, Any]
        if count > 0:
            update = "SET upload_count = :n REMOVE zero_since, gc_shard"
            values = {":n": count}
        else:
            update = "SET upload_count = :n, zero_since = :at, gc_shard = :shard"
            values = {":n": 0, ":at": _utc(at), ":shard": sha256[0]}
        self._ddb.update_item(
            TableName=self.contents_table,
            Key=_item({"sha256": sha256}),
            UpdateExpression=update,
            ConditionExpression="attribute_exists(sha256) AND attribute_not_exists(#st)",
            ExpressionAttributeNames={"#st": "state"},
            ExpressionAttributeValues=_item(values),
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

    def record_stored(self, upload: Upload, content: Content, replaces: Content | None) -> Applied:
        """Verdict STORE: content record, holding, STORED, counters.

        `replaces` is the content record the decision read: none, or a GONE tombstone, which the
        write requires unchanged (same generation), so that no collection can have removed the
        object between the copy and this write. CONTENT_CHANGED otherwise: read and decide again.
        """
        if replaces is None:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(sha256)"}
        else:
            condition = {
                "ConditionExpression": "#st = :gone AND generation = :g",
                "ExpressionAttributeNames": {"#st": "state"},
                "ExpressionAttributeValues": _item(
                    {":gone": ContentState.GONE.value, ":g": replaces.generation}
                ),
            }
        put = {"Put": {"TableName": self.contents_table, "Item": content_to_item(content)}}
        put["Put"] |= condition
        failed = self._transact(
            [
                self._complete_upload(upload),
                put,
                self._put_holding(upload),
                self._bump_stats(upload, Verdict.STORE),
            ]
        )
        return _first(failed, {1: Applied.CONTENT_CHANGED, 2: Applied.ALREADY_HELD})

    def record_match(self, upload: Upload, verdict: Verdict) -> Applied:
        """Verdict MATCH or REVIVE: a LIVE content, new to this owner: holding, STORED, counters.

        MATCH requires the content referenced, REVIVE unreferenced (and takes it out of the
        collectable index); CONTENT_CHANGED when it is not so any more (or is being collected),
        ALREADY_HELD when the owner held it already (the worker then records DUPLICATE).
        """
        if verdict not in (Verdict.MATCH, Verdict.REVIVE):
            raise ValueError(f"not a match: {verdict}")
        failed = self._transact(
            [
                self._complete_upload(upload),
                self._put_holding(upload),
                self._reference(upload, revive=verdict is Verdict.REVIVE),
                self._bump_stats(upload, verdict),
            ]
        )
        return _first(failed, {1: Applied.ALREADY_HELD, 2: Applied.CONTENT_CHANGED})

    def record_duplicate(self, upload: Upload) -> Applied:
        """Verdict DUPLICATE, found by the worker: the owner already held this content.

        NOT_HELD when the owner deleted their last upload of it meanwhile (decide again)."""
        failed = self._transact(
            [
                self._complete_upload(upload),
                self._count_holding(upload),
                self._reference(upload, revive=False),
                self._bump_stats(upload, Verdict.DUPLICATE),
            ]
        )
        return _first(failed, {1: Applied.NOT_HELD, 2: Applied.CONTENT_CHANGED})

    def record_held_duplicate(self, upload: Upload) -> Applied:
        """The 409 pre-check: a new upload item, born DUPLICATE, and the savings it stands for.

        NOT_HELD when the owner's holding is gone (deleted since it was read): nothing written.
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
        failed = self._transact(
            [
                put,
                self._count_holding(upload),
                self._reference(upload, revive=False),
                self._bump_stats(upload, Verdict.DUPLICATE),
            ]
        )
        return _first(failed, {1: Applied.NOT_HELD, 2: Applied.NOT_HELD})

    def record_rejected(self, upload: Upload) -> Applied:
        """REJECTED, by the worker (bytes that do not match) or the client (abort).

        Refused once a worker claimed a content for the upload (`claim_content`): its bytes
        matched, and the copy the claim made way for must end up recorded.
        """
        return _first(self._transact([self._complete_upload(upload, unclaimed=True)]), {})

    def record_deleted(self, deletion: Deletion, at: datetime) -> set[Applied]:
        """Remove a terminal upload and the references it holds, in one guarded write.

        Empty when applied. Otherwise what changed: ALREADY_COMPLETE (the upload is gone
        already, or changed), HOLDING_CHANGED / CONTENT_CHANGED (the deletion's assumption about
        whose last reference this is was wrong: revise it and try again).
        """
        upload = deletion.upload
        guard = {
            "ConditionExpression": "#s = :status AND #o = :owner",
            "ExpressionAttributeNames": {"#s": "status", "#o": "owner"},
            "ExpressionAttributeValues": _item(
                {":status": upload.status.value, ":owner": upload.owner}
            ),
        }
        key = _item({"upload_id": upload.upload_id})
        first: dict[str, Any]
        if deletion.tombstone:
            first = {
                "Put": {"TableName": self.uploads_table, "Item": tombstone_item(upload, at)} | guard
            }
        else:
            first = {"Delete": {"TableName": self.uploads_table, "Key": key} | guard}
        actions = [first]
        if deletion.references:
            actions += [
                self._release_holding(upload, last=deletion.last_of_owner),
                self._release_content(upload, last=deletion.last_reference, at=at),
                self._stats_update(
                    deletion.delta, stats_shard(upload.upload_id, self.stats_shards)
                ),
            ]
        failed = self._transact(actions)
        meaning = {
            0: Applied.ALREADY_COMPLETE,
            1: Applied.HOLDING_CHANGED,
            2: Applied.CONTENT_CHANGED,
        }
        if 0 in failed:
            return {Applied.ALREADY_COMPLETE}
        return {meaning[i] for i in failed}

    def mark_collecting(self, sha256: str, cutoff: datetime, at: datetime, lease: datetime) -> bool:
        """Start collecting a content unreferenced since `cutoff` or earlier, or take over a
        collection whose run's lease ended before `at`; the content is this run's until `lease`.

        From here on no upload can reference it (every referencing write requires it LIVE), so
        its object may be removed. False when it was referenced again, is already GONE, or is
        being collected by a run whose lease has not ended. (A COLLECTING record without a lease
        was marked before leases existed: its run is long over.)
        """
        try:
            self._ddb.update_item(
                TableName=self.contents_table,
                Key=_item({"sha256": sha256}),
                UpdateExpression="SET #st = :collecting, collecting_until = :lease, "
                "collecting_since = if_not_exists(collecting_since, :at)",
                ConditionExpression="(attribute_not_exists(#st) AND upload_count = :zero AND "
                "zero_since <= :cutoff) OR (#st = :collecting AND "
                "(attribute_not_exists(collecting_until) OR collecting_until < :at))",
                ExpressionAttributeNames={"#st": "state"},
                ExpressionAttributeValues=_item(
                    {
                        ":collecting": ContentState.COLLECTING.value,
                        ":zero": 0,
                        ":cutoff": _utc(cutoff),
                        ":at": _utc(at),
                        ":lease": _utc(lease),
                    }
                ),
            )
        except ClientError as exc:
            if _condition_failed(exc):
                return False
            raise
        return True

    def mark_gone(self, sha256: str, at: datetime, lease: datetime) -> bool:
        """The object is removed: leave the tombstone (out of the collectable index; DynamoDB's
        TTL forgets it after TOMBSTONE_RETENTION). False if the collection is no longer under
        this run's lease (another run took it over)."""
        try:
            self._ddb.update_item(
                TableName=self.contents_table,
                Key=_item({"sha256": sha256}),
                UpdateExpression="SET #st = :gone, collected_at = :at, expires_at = :ttl "
                "REMOVE zero_since, gc_shard, collecting_since, collecting_until",
                ConditionExpression="#st = :collecting AND collecting_until = :lease",
                ExpressionAttributeNames={"#st": "state"},
                ExpressionAttributeValues=_item(
                    {
                        ":gone": ContentState.GONE.value,
                        ":collecting": ContentState.COLLECTING.value,
                        ":at": _utc(at),
                        ":lease": _utc(lease),
                        ":ttl": int((at + TOMBSTONE_RETENTION).timestamp()),
                    }
                ),
            )
        except ClientError as exc:
            if _condition_failed(exc):
                return False
            raise
        return True

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
            if _condition_failed(exc):
                return False
            raise
        return True

    # --- transaction parts ---------------------------------------------------------------------

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

    def _reference(self, upload: Upload, *, revive: bool) -> dict[str, Any]:
        """One more live upload of a LIVE content; a revival also ends its grace period."""
        assert upload.sha256 is not None and upload.completed_at is not None
        values = {":one": 1, ":zero": 0, ":at": upload.completed_at.isoformat()}
        if revive:
            update = "SET upload_count = :one, last_uploaded_at = :at REMOVE zero_since, gc_shard"
            condition = "attribute_exists(sha256) AND attribute_not_exists(#st) AND "
            condition += "upload_count = :zero"
        else:
            update = "ADD upload_count :one SET last_uploaded_at = :at"
            condition = "attribute_exists(sha256) AND attribute_not_exists(#st) AND "
            condition += "upload_count > :zero"
        return {
            "Update": {
                "TableName": self.contents_table,
                "Key": _item({"sha256": upload.sha256}),
                "UpdateExpression": update,
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#st": "state"},
                "ExpressionAttributeValues": _item(values),
            }
        }

    def _release_holding(self, upload: Upload, *, last: bool) -> dict[str, Any]:
        key = _item({"owner": upload.owner, "sha256": upload.sha256})
        values = _item({":one": 1})
        if last:
            return {
                "Delete": {
                    "TableName": self.holdings_table,
                    "Key": key,
                    "ConditionExpression": "upload_count = :one",
                    "ExpressionAttributeValues": values,
                }
            }
        return {
            "Update": {
                "TableName": self.holdings_table,
                "Key": key,
                "UpdateExpression": "ADD upload_count :minus",
                "ConditionExpression": "upload_count > :one",
                "ExpressionAttributeValues": _item({":one": 1, ":minus": -1}),
            }
        }

    def _release_content(self, upload: Upload, *, last: bool, at: datetime) -> dict[str, Any]:
        assert upload.sha256 is not None
        key = _item({"sha256": upload.sha256})
        condition = "attribute_not_exists(#st) AND upload_count "
        if last:
            # Unreferenced from now: into the collectable index, its grace period starting now.
            update = "SET upload_count = :zero, zero_since = :at, gc_shard = :shard"
            values = {":one": 1, ":zero": 0, ":at": _utc(at), ":shard": upload.sha256[0]}
            condition += "= :one"
        else:
            update = "ADD upload_count :minus"
            values = {":one": 1, ":minus": -1}
            condition += "> :one"
        return {
            "Update": {
                "TableName": self.contents_table,
                "Key": key,
                "UpdateExpression": update,
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#st": "state"},
                "ExpressionAttributeValues": _item(values),
            }
        }

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

    def _transact(self, actions: list[dict[str, Any]]) -> list[int]:
        """Apply the actions at once: [] when applied, else the indexes of the conditions that
        failed (nothing was written). A cancellation for any other reason propagates."""
        for attempt in range(1, _TRANSACT_ATTEMPTS + 1):
            try:
                self._ddb.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
                reasons: list[dict[str, Any]] = exc.response.get("CancellationReasons", [])  # type: ignore[assignment]
                codes = [str(r.get("Code", "None")) for r in reasons]
                failed = [i for i, code in enumerate(codes) if code == "ConditionalCheckFailed"]
                if failed:
                    return failed
                # Another write to the same stats shard, content or holding was in flight:
                # botocore does not retry a cancelled transaction, and SQS would only retry it
                # after the visibility timeout (minutes). Nothing was applied: trying again is safe.
                transient = set(codes) - {"None"} <= _TRANSIENT_REASONS
                if not transient or attempt == _TRANSACT_ATTEMPTS:
                    raise
                time.sleep(random.uniform(0, 0.025 * 2**attempt))  # noqa: S311 (jitter)
                continue
            return []
        raise AssertionError("unreachable")


def _first(failed: list[int], meaning: dict[int, Applied]) -> Applied:
    """Action 0 is always the upload's own guarded write: its failure means ALREADY_COMPLETE and
    wins; otherwise the first failed condition that has a meaning decides. A failure nobody
    expects is a bug (or a manual edit): it raises rather than be mistaken for an answer."""
    if not failed:
        return Applied.APPLIED
    if failed[0] == 0:
        return Applied.ALREADY_COMPLETE
    for index in failed:
        if index in meaning:
            return meaning[index]
    raise UnexpectedCondition(f"transaction action(s) {failed} failed their conditions")


class UnexpectedCondition(Exception):
    """A guarded write failed a condition that no decision accounts for."""


def _condition_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
