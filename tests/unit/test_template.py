"""The security and wiring properties template.yaml must keep (read statically, nothing deployed).

`make test` also runs `sam validate --lint`, which checks the syntax and the types; these tests
check what cfn-lint cannot know: what onecopy needs from each resource.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from adapters.s3 import ObjectStore
from domain.lifecycle import COLLECTION_LEASE_MARGIN
from domain.model import PENDING_RETENTION
from handlers.api_settings import ApiSettings
from onecopy_local.resources import TEMPLATE, parameter_minimum, resource, template

pytestmark = pytest.mark.unit

TABLES = ("UploadsTable", "ContentsTable", "HoldingsTable", "StatsTable")
# The prefixes a function may be granted in the bucket: never the whole bucket.
BUCKET_PREFIXES = ("staging", "cas")
# Resources of this stack a function may be granted whole, by their ARN.
GRANTABLE_BY_ARN = ("AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::SecretsManager::Secret")


def _functions() -> dict[str, dict[str, Any]]:
    return {
        name: r.get("Properties", {})
        for name, r in template()["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function"
    }


def _setting(function: str, key: str) -> Any:
    """A function property as deployed: its own value, else the Globals one."""
    return _functions()[function].get(key, template()["Globals"]["Function"].get(key))


def _type(logical_id: str) -> str:
    return str(template()["Resources"].get(logical_id, {}).get("Type", ""))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- the bucket ----------------------------------------------------------------------------------


def test_bucket_blocks_every_kind_of_public_access() -> None:
    assert resource("FilesBucket")["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }


def test_bucket_encrypts_by_default_and_disables_acls() -> None:
    bucket = resource("FilesBucket")
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    condition, with_key, without = rule["ServerSideEncryptionByDefault"]["Fn::If"]
    assert condition == "UseKms"
    assert without == {"SSEAlgorithm": "AES256"}
    assert with_key == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Ref": "KmsKeyArn"}}
    # S3 Bucket Keys: KMS requests do not grow with the number of uploads.
    assert rule["BucketKeyEnabled"] == {"Fn::If": ["UseKms", True, {"Ref": "AWS::NoValue"}]}
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]


def test_the_kms_parameter_encrypts_tables_and_queues_with_the_key() -> None:
    assert template()["Conditions"]["UseKms"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "KmsKeyArn"}, ""]}]
    }
    for table in ("UploadsTable", "ContentsTable", "HoldingsTable", "StatsTable"):
        condition, with_key, without = resource(table)["SSESpecification"]["Fn::If"]
        assert condition == "UseKms"
        assert with_key == {
            "SSEEnabled": True,
            "SSEType": "KMS",
            "KMSMasterKeyId": {"Ref": "KmsKeyArn"},
        }
        assert without == {"SSEEnabled": True}
    for queue in ("IngestQueue", "IngestDeadLetterQueue"):
        props = resource(queue)
        assert props["KmsMasterKeyId"] == {
            "Fn::If": ["UseKms", {"Ref": "KmsKeyArn"}, {"Ref": "AWS::NoValue"}]
        }
        assert props["SqsManagedSseEnabled"] == {
            "Fn::If": ["UseKms", {"Ref": "AWS::NoValue"}, True]
        }


def test_bucket_policy_denies_every_request_without_tls() -> None:
    policy = resource("FilesBucketPolicy")
    assert policy["Bucket"] == {"Ref": "FilesBucket"}
    denials = [
        s
        for s in policy["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny"
        and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert len(denials) == 1
    (deny,) = denials
    assert deny["Principal"] == "*"
    assert deny["Action"] in ("s3:*", ["s3:*"])
    assert deny["Resource"] == [
        {"Fn::GetAtt": "FilesBucket.Arn"},
        {"Fn::Sub": "${FilesBucket.Arn}/*"},
    ]


def test_bucket_cors_lets_browsers_send_the_presigned_put_and_read_its_etag() -> None:
    # Given the headers a presigned PUT must carry (presigning is local: no request is sent)
    s3 = boto3.client("s3", region_name="us-east-1")
    put = ObjectStore(s3, s3, "onecopy-files").presign_put(
        "staging/x", size=1, content_type="text/plain", sha256="0" * 64, expires_in=60
    )
    # Browsers set Content-Length themselves; it never needs CORS permission.
    needed = {h.lower() for h in put.headers} - {"content-length"}

    # Then the bucket's CORS rule allows them, from the origins the stack is given
    (rule,) = resource("FilesBucket")["CorsConfiguration"]["CorsRules"]
    assert "PUT" in rule["AllowedMethods"]
    assert rule["AllowedOrigins"] == {"Ref": "AllowedOrigins"}
    assert needed <= {h.lower() for h in rule["AllowedHeaders"]}
    assert "ETag" in rule["ExposedHeaders"]


def test_api_cors_uses_the_same_allowed_origins() -> None:
    assert resource("HttpApi")["CorsConfiguration"]["AllowOrigins"] == {"Ref": "AllowedOrigins"}
    assert _functions()["ApiFunction"]["Environment"]["Variables"]["ALLOWED_ORIGINS"] == {
        "Fn::Join": [",", {"Ref": "AllowedOrigins"}]
    }


def test_staging_objects_and_unfinished_multipart_uploads_expire_after_a_day() -> None:
    rules = [
        r
        for r in resource("FilesBucket")["LifecycleConfiguration"]["Rules"]
        if r["Status"] == "Enabled"
    ]
    expiring = [r for r in rules if "ExpirationInDays" in r]
    # Only staging/ expires: stored contents under cas/ are kept forever.
    assert [(r.get("Prefix"), r["ExpirationInDays"]) for r in expiring] == [("staging/", 1)]
    aborting = [r for r in rules if "AbortIncompleteMultipartUpload" in r]
    assert [r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] for r in aborting] == [1]
    assert aborting[0].get("Prefix", "") in ("", "staging/")


def test_bucket_notifies_the_ingest_queue_of_new_staging_objects_only() -> None:
    notifications = resource("FilesBucket")["NotificationConfiguration"]
    assert set(notifications) == {"QueueConfigurations"}
    (queue,) = notifications["QueueConfigurations"]
    assert queue["Queue"] == {"Fn::GetAtt": "IngestQueue.Arn"}
    assert queue["Event"] == "s3:ObjectCreated:*"
    assert queue["Filter"] == {"S3Key": {"Rules": [{"Name": "prefix", "Value": "staging/"}]}}


# --- the queues ----------------------------------------------------------------------------------


def test_only_this_stacks_bucket_may_send_to_the_ingest_queue() -> None:
    # Given the queue policy and the bucket's deterministic name
    policy = resource("IngestQueuePolicy")
    bucket_name, bucket_vars = resource("FilesBucket")["BucketName"]["Fn::Sub"]

    # Then S3 may send only from that bucket ARN, in this account, to the ingest queue
    assert policy["Queues"] == [{"Ref": "IngestQueue"}]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Action"] in ("sqs:SendMessage", ["sqs:SendMessage"])
    assert statement["Resource"] == {"Fn::GetAtt": "IngestQueue.Arn"}
    source_arn, arn_vars = statement["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::Sub"]
    assert source_arn == f"arn:${{AWS::Partition}}:s3:::{bucket_name}"
    assert arn_vars == bucket_vars
    assert statement["Condition"]["StringEquals"] == {
        "aws:SourceAccount": {"Ref": "AWS::AccountId"}
    }
    # And the bucket (whose notification S3 tests by sending) is created after the policy
    assert "IngestQueuePolicy" in _as_list(template()["Resources"]["FilesBucket"]["DependsOn"])


def test_failing_messages_are_dead_lettered_after_at_least_five_receives() -> None:
    queue, dlq = resource("IngestQueue"), resource("IngestDeadLetterQueue")
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": "IngestDeadLetterQueue.Arn"}
    assert redrive["maxReceiveCount"] >= 5
    # A dead-lettered message keeps its first enqueue time: the DLQ must keep it longer.
    assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]
    assert _type("IngestDeadLetterQueue") == "AWS::SQS::Queue"


def test_queue_visibility_timeout_is_at_least_six_worker_timeouts() -> None:
    assert resource("IngestQueue")["VisibilityTimeout"] >= 6 * _setting("WorkerFunction", "Timeout")


def test_worker_takes_batches_of_ten_and_reports_failures_per_message() -> None:
    (ingest,) = _functions()["WorkerFunction"]["Events"].values()
    assert ingest["Type"] == "SQS"
    assert ingest["Properties"]["Queue"] == {"Fn::GetAtt": "IngestQueue.Arn"}
    assert ingest["Properties"]["BatchSize"] == 10
    assert ingest["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


# --- the tables ----------------------------------------------------------------------------------


@pytest.mark.parametrize("table", TABLES)
def test_tables_are_on_demand_with_point_in_time_recovery(table: str) -> None:
    props = resource(table)
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_holdings_are_one_item_per_owner_and_content() -> None:
    assert resource("HoldingsTable")["KeySchema"] == [
        {"AttributeName": "owner", "KeyType": "HASH"},
        {"AttributeName": "sha256", "KeyType": "RANGE"},
    ]
    env = template()["Globals"]["Function"]["Environment"]["Variables"]
    assert env["HOLDINGS_TABLE"] == {"Ref": "HoldingsTable"}


def test_pending_uploads_are_indexed_by_owner_and_expire_after_any_event_for_them() -> None:
    uploads = resource("UploadsTable")
    (index,) = [i for i in uploads["GlobalSecondaryIndexes"] if i["IndexName"] == "owner-pending"]
    assert index["KeySchema"] == [{"AttributeName": "pending_owner", "KeyType": "HASH"}]
    assert index["Projection"]["NonKeyAttributes"] == ["url_expires_at"]
    assert uploads["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    # TTL removes an upload only once the queue can no longer hold an event for its bytes.
    retention = resource("IngestQueue")["MessageRetentionPeriod"]
    assert PENDING_RETENTION.total_seconds() > retention


def test_each_owners_uploads_are_listed_newest_first_by_an_index() -> None:
    (index,) = [
        i
        for i in resource("UploadsTable")["GlobalSecondaryIndexes"]
        if i["IndexName"] == "owner-created"
    ]
    assert index["KeySchema"] == [
        {"AttributeName": "owner", "KeyType": "HASH"},
        {"AttributeName": "created_at", "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "ALL"}  # a page needs no extra reads


def test_unreferenced_contents_are_found_by_a_sharded_index_and_tombstones_expire() -> None:
    contents = resource("ContentsTable")
    (index,) = contents["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "collectable"
    assert index["KeySchema"] == [
        {"AttributeName": "gc_shard", "KeyType": "HASH"},
        {"AttributeName": "zero_since", "KeyType": "RANGE"},
    ]
    assert contents["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def _longest_download_url() -> int:
    """The most DOWNLOAD_URL_TTL_SECONDS may be, in seconds (the API's settings)."""
    schema = ApiSettings.model_json_schema(by_alias=True)
    return int(schema["properties"]["DOWNLOAD_URL_TTL_SECONDS"]["maximum"])


def test_no_deployable_grace_period_lets_a_stalled_worker_outlive_the_collection() -> None:
    # A worker stalled between its claim and its copy must be dead before the content it claimed
    # can be collected (README, Correctness): the grace outlasts its timeout and the margin the
    # collector's lease allows for a request sent just before the kill. And a download URL handed
    # out before a deletion keeps working for its whole life.
    minimum = parameter_minimum("CollectionGracePeriodSeconds")
    worker_timeout = timedelta(seconds=int(resource("WorkerFunction")["Timeout"]))
    assert timedelta(seconds=minimum) >= worker_timeout + COLLECTION_LEASE_MARGIN
    assert minimum >= _longest_download_url()


def test_the_collector_runs_on_a_schedule_with_the_grace_period_as_a_parameter() -> None:
    params = template()["Parameters"]
    assert int(params["CollectionGracePeriodSeconds"]["Default"]) >= 900  # > download URL TTL
    schedule = resource("CollectorFunction")["Events"]["Schedule"]
    assert schedule["Type"] == "ScheduleV2"
    assert schedule["Properties"]["OmitName"] is True
    assert schedule["Properties"]["ScheduleExpression"] == {"Ref": "CollectorSchedule"}
    variables = resource("CollectorFunction")["Environment"]["Variables"]
    assert variables["COLLECTION_GRACE_SECONDS"] == {"Ref": "CollectionGracePeriodSeconds"}
    assert resource("CollectorFunction")["ReservedConcurrentExecutions"] == 1


def test_stats_counters_are_write_sharded() -> None:
    shards = template()["Parameters"]["StatsShards"]
    assert int(shards["Default"]) > 1
    # The stats read is one BatchGetItem, which takes at most 100 keys.
    assert int(shards["MaxValue"]) <= 100
    env = template()["Globals"]["Function"]["Environment"]["Variables"]
    assert env["STATS_SHARDS"] == {"Ref": "StatsShards"}
    assert resource("StatsTable")["KeySchema"] == [{"AttributeName": "shard", "KeyType": "HASH"}]


# --- the functions -------------------------------------------------------------------------------


@pytest.mark.parametrize("function", sorted(_functions()))
def test_functions_run_python_3_13_on_arm64(function: str) -> None:
    assert _setting(function, "Runtime") == "python3.13"
    assert _setting(function, "Architectures") == ["arm64"]


@pytest.mark.parametrize("function", sorted(_functions()))
def test_function_permissions_name_this_stacks_tables_and_bucket_prefixes(function: str) -> None:
    # Given the function's policies: inline documents only (no managed or SAM template policies)
    policies = _setting(function, "Policies") or []
    assert all(isinstance(p, dict) and "Statement" in p for p in policies)
    statements = [s for p in policies for s in _unconditional(p["Statement"], kms=True)]

    # Then each allows named actions on named resources of this stack
    for statement in statements:
        assert statement["Effect"] == "Allow", statement
        for action in _as_list(statement["Action"]):
            assert "*" not in action, f"{function}: wildcard action {action}"
        for arn in _as_list(statement["Resource"]):
            actions = _as_list(statement["Action"])
            assert _names_a_resource_of_this_stack(arn, actions), f"{function}: {arn}"
    # And no function but the collector may delete stored contents
    for statement in statements:
        if function != "CollectorFunction" and "s3:DeleteObject" in _as_list(statement["Action"]):
            assert all("/cas/" not in str(arn) for arn in _as_list(statement["Resource"]))


# Actions IAM authorizes on no resource but "*" (the service has no resource-level permissions).
RESOURCELESS_ACTIONS = {"cloudwatch:GetMetricData"}


def _names_a_resource_of_this_stack(arn: Any, statement_actions: list[Any]) -> bool:
    if arn == "*":
        return set(statement_actions) <= RESOURCELESS_ACTIONS
    if not isinstance(arn, dict):
        return False  # a literal ARN
    if "Fn::GetAtt" in arn:
        target = arn["Fn::GetAtt"]
        logical_id, attribute = target.split(".") if isinstance(target, str) else target
        if attribute == "Arn" and _type(logical_id) == "AWS::S3::Bucket":
            # The bucket itself, only for ListBucket (what makes a missing key 404, not 403).
            return statement_actions == ["s3:ListBucket"]
        return attribute == "Arn" and _type(logical_id) in GRANTABLE_BY_ARN
    if arn == {"Ref": "KmsKeyArn"}:  # the one key the stack is given, for kms: actions only
        return all(str(a).startswith("kms:") for a in statement_actions)
    if "Ref" in arn:  # a secret's Ref is its ARN
        return _type(arn["Ref"]) == "AWS::SecretsManager::Secret"
    match = re.fullmatch(r"\$\{(\w+)\.Arn\}/(.+)", arn.get("Fn::Sub", ""))
    if match is None:
        return False
    logical_id, path = match.groups()
    if _type(logical_id) == "AWS::DynamoDB::Table":
        indexes = {i["IndexName"] for i in resource(logical_id).get("GlobalSecondaryIndexes", [])}
        return path.removeprefix("index/") in indexes
    if _type(logical_id) == "AWS::S3::Bucket":
        return path in {f"{prefix}/*" for prefix in BUCKET_PREFIXES}
    return False


def test_api_function_serves_every_path_of_the_http_api() -> None:
    events = _functions()["ApiFunction"]["Events"].values()
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events}
    assert ("ANY", "/{proxy+}") in routes
    assert all(e["Type"] == "HttpApi" for e in events)
    assert all(e["Properties"]["ApiId"] == {"Ref": "HttpApi"} for e in events)


def test_outputs_name_the_api_the_bucket_and_the_queues() -> None:
    outputs = {name: o["Value"] for name, o in template()["Outputs"].items()}
    assert outputs["ApiUrl"] == {
        "Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"
    }
    assert outputs["BucketName"] == {"Ref": "FilesBucket"}
    assert outputs["IngestQueueUrl"] == {"Ref": "IngestQueue"}
    assert outputs["DeadLetterQueueUrl"] == {"Ref": "IngestDeadLetterQueue"}


# --- least privilege, as granted ----------------------------------------------------------------

# Every grant, and the code path that needs it (adapters/dynamodb.py and adapters/s3.py). A grant
# added or removed in template.yaml must be justified here too.
EXPECTED_GRANTS: dict[str, set[tuple[str, str]]] = {
    "ApiFunction": {
        ("dynamodb:GetItem", "UploadsTable"),  # get_upload, get_multipart_upload
        # create_upload; abort, held duplicate and a deduplicated upload's tombstone (transact)
        ("dynamodb:PutItem", "UploadsTable"),
        ("dynamodb:UpdateItem", "UploadsTable"),  # mark_assembled (multipart completion)
        ("dynamodb:DeleteItem", "UploadsTable"),  # record_deleted (transact)
        ("dynamodb:Query", "UploadsTable/index/owner-pending"),  # count_pending (the cap)
        ("dynamodb:Query", "UploadsTable/index/owner-created"),  # list_uploads (GET, erase)
        ("dynamodb:GetItem", "HoldingsTable"),  # get_holding (pre-check, lookups by hash)
        ("dynamodb:UpdateItem", "HoldingsTable"),  # held duplicate's and deletion's counts
        ("dynamodb:DeleteItem", "HoldingsTable"),  # record_deleted: the owner's last upload
        ("dynamodb:GetItem", "ContentsTable"),  # deleting an upload older than its flag
        ("dynamodb:UpdateItem", "ContentsTable"),  # held duplicate's and deletion's references
        ("dynamodb:Scan", "ContentsTable"),  # list_contents (GET /admin/hashes)
        ("dynamodb:Query", "ContentsTable/index/collectable"),  # collector_backlog (health)
        ("dynamodb:BatchGetItem", "StatsTable"),  # read_stats
        ("dynamodb:UpdateItem", "StatsTable"),  # held duplicate's and deletion's counters
        ("dynamodb:GetItem", "StatsTable"),  # read_operations (health)
        ("sqs:GetQueueAttributes", "IngestQueue"),  # health: queue depth
        ("sqs:GetQueueAttributes", "IngestDeadLetterQueue"),  # health: dead letters
        ("cloudwatch:GetMetricData", "*"),  # health: the oldest message's age
        ("s3:PutObject", "FilesBucket/staging/*"),  # presigned PUT and parts, create, complete
        ("s3:ListMultipartUploadParts", "FilesBucket/staging/*"),  # list_parts
        ("s3:AbortMultipartUpload", "FilesBucket/staging/*"),  # abort_multipart
        ("s3:DeleteObject", "FilesBucket/staging/*"),  # abort: bytes that already arrived
        ("s3:GetObject", "FilesBucket/cas/*"),  # presigned downloads
        ("secretsmanager:GetSecretValue", "PageTokenSecret"),  # page-token key
    },
    "WorkerFunction": {
        ("s3:GetObject", "FilesBucket/staging/*"),  # HeadObject, GetObject, copy source
        ("s3:DeleteObject", "FilesBucket/staging/*"),  # clean-up after a terminal state
        ("s3:ListBucket", "FilesBucket"),  # a missing staging key answers 404, not 403
        ("s3:PutObject", "FilesBucket/cas/*"),  # copy target (and multipart copy parts)
        ("s3:AbortMultipartUpload", "FilesBucket/cas/*"),  # a failed multipart copy (> 5 GiB)
        ("dynamodb:GetItem", "UploadsTable"),  # get_upload
        ("dynamodb:PutItem", "UploadsTable"),  # the guarded terminal write (transact)
        ("dynamodb:UpdateItem", "UploadsTable"),  # claim_content
        ("dynamodb:GetItem", "ContentsTable"),  # get_content
        ("dynamodb:PutItem", "ContentsTable"),  # record_stored
        ("dynamodb:UpdateItem", "ContentsTable"),  # record_match/_duplicate's upload_count
        ("dynamodb:PutItem", "HoldingsTable"),  # record_stored/_match: a new holding
        ("dynamodb:UpdateItem", "HoldingsTable"),  # record_duplicate's holding count
        ("dynamodb:UpdateItem", "StatsTable"),  # counters (transact)
    },
    "ReconcileFunction": {
        ("dynamodb:Scan", "UploadsTable"),  # scan_uploads
        ("dynamodb:Scan", "ContentsTable"),  # scan_contents
        ("dynamodb:Scan", "HoldingsTable"),  # scan_holdings
        ("dynamodb:UpdateItem", "ContentsTable"),  # set_upload_count (repair)
        ("dynamodb:UpdateItem", "HoldingsTable"),  # set_holding_count (repair)
        ("dynamodb:BatchGetItem", "StatsTable"),  # read_stats
        ("dynamodb:UpdateItem", "StatsTable"),  # add_to_stats (repair)
    },
    "PageFunction": set(),
    "CollectorFunction": {
        ("dynamodb:Query", "ContentsTable/index/collectable"),  # collectable
        ("dynamodb:GetItem", "ContentsTable"),  # get_content (the decision)
        ("dynamodb:UpdateItem", "ContentsTable"),  # mark_collecting, mark_gone
        ("s3:DeleteObject", "FilesBucket/cas/*"),  # the only deleter of stored contents
        ("dynamodb:UpdateItem", "StatsTable"),  # record_collection (the operations record)
    },
}


def _resource_name(arn: Any) -> str:
    """`!GetAtt X.Arn` -> X, `!Sub "${X.Arn}/p"` -> X/p, `!Ref X` -> X."""
    if arn == "*":
        return "*"
    if "Fn::GetAtt" in arn:
        target = arn["Fn::GetAtt"]
        return str(target.split(".")[0] if isinstance(target, str) else target[0])
    if "Ref" in arn:
        return str(arn["Ref"])
    match = re.fullmatch(r"\$\{(\w+)\.Arn\}(/.+)", arn["Fn::Sub"])
    assert match is not None, arn
    return match[1] + match[2]


def _unconditional(statements: list[Any], *, kms: bool) -> list[Any]:
    """The statements as deployed with KmsKeyArn set (kms) or empty: a statement under
    `!If [UseKms, statement, !Ref AWS::NoValue]` exists only with the key."""
    out = []
    for statement in statements:
        if "Fn::If" in statement:
            condition, if_true, if_false = statement["Fn::If"]
            assert condition == "UseKms" and if_false == {"Ref": "AWS::NoValue"}, statement
            if kms:
                out.append(if_true)
        else:
            out.append(statement)
    return out


def _grants(function: str, *, kms: bool = False) -> set[tuple[str, str]]:
    statements = [
        s
        for p in _setting(function, "Policies") or []
        for s in _unconditional(p["Statement"], kms=kms)
    ]
    return {
        (action, _resource_name(arn))
        for s in statements
        for action in _as_list(s["Action"])
        for arn in _as_list(s["Resource"])
    }


@pytest.mark.parametrize("function", sorted(EXPECTED_GRANTS))
def test_each_function_is_granted_exactly_what_its_code_calls(function: str) -> None:
    assert _grants(function) == EXPECTED_GRANTS[function]


# With KmsKeyArn set, each function may also use the key, for exactly the calls it makes:
# DynamoDB decrypts a table's key as its caller (every table access: kms:Decrypt); S3 with
# SSE-KMS needs kms:GenerateDataKey to write (a presigned PUT or part is authorized as its
# signer, the API) and kms:Decrypt to read or to complete a multipart upload; SQS needs
# kms:Decrypt to receive (S3 itself, not a function, sends into the queue).
EXPECTED_KMS_GRANTS: dict[str, set[tuple[str, str]]] = {
    "ApiFunction": {("kms:Decrypt", "KmsKeyArn"), ("kms:GenerateDataKey", "KmsKeyArn")},
    "WorkerFunction": {("kms:Decrypt", "KmsKeyArn"), ("kms:GenerateDataKey", "KmsKeyArn")},
    "ReconcileFunction": {("kms:Decrypt", "KmsKeyArn")},
    "CollectorFunction": {("kms:Decrypt", "KmsKeyArn")},
    "PageFunction": set(),
}


@pytest.mark.parametrize("function", sorted(EXPECTED_KMS_GRANTS))
def test_with_a_kms_key_each_function_may_use_it_for_exactly_its_calls(function: str) -> None:
    added = _grants(function, kms=True) - _grants(function)
    assert added == EXPECTED_KMS_GRANTS[function]


def test_every_function_is_accounted_for() -> None:
    assert set(_functions()) == set(EXPECTED_GRANTS)


# --- deploy-time traps --------------------------------------------------------------------------


def test_schedules_get_a_stack_unique_name() -> None:
    # SAM names a ScheduleV2 schedule "<Function><Event>" unless told otherwise: a second stack
    # in the same account and region would then fail to create it.
    schedules = [
        event["Properties"]
        for props in _functions().values()
        for event in props.get("Events", {}).values()
        if event["Type"] == "ScheduleV2"
    ]
    assert schedules
    for schedule in schedules:
        assert schedule.get("OmitName") is True, schedule
        assert "Name" not in schedule


@pytest.mark.parametrize("logical_id", ["FilesBucket", *TABLES])
def test_deleting_or_replacing_the_stack_keeps_the_data(logical_id: str) -> None:
    declared = template()["Resources"][logical_id]
    assert declared.get("DeletionPolicy") == "Retain"
    assert declared.get("UpdateReplacePolicy") == "Retain"


def test_no_secret_is_resolved_into_a_function_configuration() -> None:
    # A {{resolve:secretsmanager:...}} lands in plain text in the function's configuration.
    assert "{{resolve:" not in TEMPLATE.read_text()
    # The API gets the secret's ARN and reads the value itself, when it first needs it.
    env = _functions()["ApiFunction"]["Environment"]["Variables"]
    assert env["PAGE_TOKEN_SECRET_ARN"] == {"Ref": "PageTokenSecret"}


def test_only_the_api_may_read_the_page_token_secret() -> None:
    readers = {
        function
        for function in _functions()
        for action, name in _grants(function)
        if action.startswith("secretsmanager:")
    }
    assert readers == {"ApiFunction"}
    assert ("secretsmanager:GetSecretValue", "PageTokenSecret") in _grants("ApiFunction")


# --- the upload page ----------------------------------------------------------------------------


def _routes(function: str) -> set[tuple[str, str]]:
    events = _functions()[function].get("Events", {}).values()
    return {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events}


def test_the_page_function_is_small_and_needs_no_aws_permission() -> None:
    page = _functions()["PageFunction"]
    assert page["CodeUri"] == "web/"
    assert page["Handler"] == "page.handler"
    assert page["MemorySize"] <= 256
    assert "Policies" not in page
    assert "Layers" not in page and "Layers" not in template()["Globals"]["Function"]


def test_every_page_file_has_a_route_to_the_page_function_and_nothing_else_does() -> None:
    from web.page import ROOT, page_files

    # Given the files the page consists of (what the local stack serves)
    files = page_files(ROOT)
    assert "index.html" in files

    # Then each has its own GET route, plus the root; no catch-all that would capture /docs
    events = _functions()["PageFunction"]["Events"].values()
    assert all(
        e["Type"] == "HttpApi" and e["Properties"]["ApiId"] == {"Ref": "HttpApi"} for e in events
    )
    assert _routes("PageFunction") == {("GET", "/")} | {("GET", f"/{name}") for name in files}


def test_the_api_function_no_longer_answers_the_root() -> None:
    assert ("GET", "/") not in _routes("ApiFunction")


# --- operations: alarms, dashboard, logs, tracing -------------------------------------------------

# Each alarm: (namespace, metric, dimension name -> the logical id or value it names, statistic,
# threshold, comparison). The 5xx rate is metric math, checked on its own below.
ALARMS: dict[str, tuple[str, str, dict[str, Any], str, Any]] = {
    "DeadLetterQueueAlarm": (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        {"QueueName": {"Fn::GetAtt": "IngestDeadLetterQueue.QueueName"}},
        "Maximum",
        0,
    ),
    "IngestBacklogAlarm": (
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        {"QueueName": {"Fn::GetAtt": "IngestQueue.QueueName"}},
        "Maximum",
        {"Ref": "OldestMessageAlarmSeconds"},
    ),
    "WorkerErrorsAlarm": (
        "AWS/Lambda",
        "Errors",
        {"FunctionName": {"Ref": "WorkerFunction"}},
        "Sum",
        0,
    ),
    "WorkerThrottlesAlarm": (
        "AWS/Lambda",
        "Throttles",
        {"FunctionName": {"Ref": "WorkerFunction"}},
        "Sum",
        0,
    ),
    "ApiErrorsAlarm": ("AWS/Lambda", "Errors", {"FunctionName": {"Ref": "ApiFunction"}}, "Sum", 0),
    "ApiThrottlesAlarm": (
        "AWS/Lambda",
        "Throttles",
        {"FunctionName": {"Ref": "ApiFunction"}},
        "Sum",
        0,
    ),
    "CollectorErrorsAlarm": (
        "AWS/Lambda",
        "Errors",
        {"FunctionName": {"Ref": "CollectorFunction"}},
        "Sum",
        0,
    ),
    "ReconcileErrorsAlarm": (
        "AWS/Lambda",
        "Errors",
        {"FunctionName": {"Ref": "ReconcileFunction"}},
        "Sum",
        0,
    ),
    "CounterDriftAlarm": ("onecopy", "CounterDrift", {"service": "onecopy"}, "Maximum", 0),
}


def _of_type(kind: str) -> dict[str, Any]:
    return {k: r for k, r in template()["Resources"].items() if r["Type"] == kind}


def test_every_alarm_is_accounted_for_and_notifies_the_topic() -> None:
    alarms = _of_type("AWS::CloudWatch::Alarm")
    assert set(alarms) == set(ALARMS) | {"Api5xxRateAlarm"}
    for name, alarm in alarms.items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert props["OKActions"] == [{"Ref": "AlarmTopic"}], name
        assert props["ComparisonOperator"] == "GreaterThanThreshold", name
        assert props["TreatMissingData"] == "notBreaching", name
        # The description is the runbook line, and points at the README's section.
        assert f"README: Runbook, {name}" in " ".join(props["AlarmDescription"].split()), name


@pytest.mark.parametrize("name", sorted(ALARMS))
def test_each_alarm_watches_its_metric_at_its_threshold(name: str) -> None:
    namespace, metric, dimensions, statistic, threshold = ALARMS[name]
    props = resource(name)
    assert (props["Namespace"], props["MetricName"], props["Statistic"]) == (
        namespace,
        metric,
        statistic,
    )
    assert {d["Name"]: d["Value"] for d in props["Dimensions"]} == dimensions
    assert props["Threshold"] == threshold


def test_the_5xx_alarm_is_a_rate_over_the_apis_requests() -> None:
    props = resource("Api5xxRateAlarm")
    queries = {q["Id"]: q for q in props["Metrics"]}
    for query_id, metric in (("errors", "5xx"), ("requests", "Count")):
        stat = queries[query_id]["MetricStat"]
        assert stat["Metric"]["Namespace"] == "AWS/ApiGateway"
        assert stat["Metric"]["MetricName"] == metric
        assert {"Name": "ApiId", "Value": {"Ref": "HttpApi"}} in stat["Metric"]["Dimensions"]
        assert queries[query_id]["ReturnData"] is False
    assert queries["rate"]["Expression"] == "IF(requests > 0, 100 * errors / requests, 0)"
    assert queries["rate"]["ReturnData"] is True
    assert props["Threshold"] == 1  # percent


def test_the_alarm_topic_gets_an_email_subscription_only_when_asked() -> None:
    subscription = template()["Resources"]["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert template()["Parameters"]["AlarmEmail"]["Default"] == ""


def _dashboard() -> dict[str, Any]:
    body = resource("Dashboard")["DashboardBody"]["Fn::Sub"]
    names = set(re.findall(r"\$\{([^}]+)\}", body))
    assert names <= {
        "AWS::Region",
        "WorkerFunction",
        "ApiFunction",
        "CollectorFunction",
        "HttpApi",
        "IngestQueue.QueueName",
        "IngestDeadLetterQueue.QueueName",
    }, names
    for name in names:
        logical_id = name.split(".")[0]
        assert logical_id == "AWS::Region" or logical_id in template()["Resources"], name
    parsed: dict[str, Any] = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))
    return parsed


def test_the_dashboard_is_valid_json_and_shows_what_an_operator_needs() -> None:
    widgets = _dashboard()["widgets"]
    titles = " | ".join(w["properties"]["title"] for w in widgets)
    for wanted in (
        "Uploads per minute, by outcome",
        "Dedup ratio",
        "Bytes saved",
        "PUT-to-terminal latency",
        "Ingest queue",
        "Dead-letter queue",
        "Errors and throttles",
        "Lambda duration",
        "Lambda concurrency",
    ):
        assert wanted in titles, wanted
    metrics = [m for w in widgets for m in w["properties"]["metrics"]]
    names = {m[1] for m in metrics if isinstance(m[0], str)}
    assert {"FilesStored", "ContentsMatched", "DuplicatesFound", "UploadsRejected"} <= names
    assert {"ProcessingLatency", "BytesSaved", "ApproximateAgeOfOldestMessage"} <= names
    assert {"Errors", "Throttles", "Duration", "ConcurrentExecutions", "5xx"} <= names
    latency = [m for m in metrics if m[1:2] == ["ProcessingLatency"]]
    assert {m[-1]["stat"] for m in latency} == {"p50", "p99"}
    for widget in widgets:  # CloudWatch's widget schema: a placed metric widget
        assert widget["type"] == "metric"
        assert {"x", "y", "width", "height"} <= widget.keys()
        assert widget["properties"]["region"] == "x"  # ${AWS::Region}


def test_the_workers_metrics_the_dashboard_reads_are_the_ones_it_emits() -> None:
    worker = (Path(__file__).resolve().parents[2] / "src/handlers/worker.py").read_text()
    metrics = [m for w in _dashboard()["widgets"] for m in w["properties"]["metrics"]]
    for metric in metrics:
        if isinstance(metric[0], str) and metric[0] == "onecopy":
            assert f'"{metric[1]}"' in worker, metric[1]


def test_every_function_logs_to_its_own_group_kept_for_the_retention_parameter() -> None:
    for function in _functions():
        group = _setting(function, "LoggingConfig")["LogGroup"]
        assert group == {"Ref": f"{function}Logs"}
        props = resource(f"{function}Logs")
        assert props["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        assert props["LogGroupName"] == {"Fn::Sub": f"/onecopy/${{AWS::StackName}}/{function}"}
    assert int(template()["Parameters"]["LogRetentionDays"]["Default"]) == 30


def test_the_api_writes_a_json_access_log_with_the_caller() -> None:
    settings = resource("HttpApi")["AccessLogSettings"]
    assert settings["DestinationArn"] == {"Fn::GetAtt": "ApiAccessLogs.Arn"} or settings[
        "DestinationArn"
    ] == {"Fn::GetAtt": ["ApiAccessLogs", "Arn"]}
    line = json.loads(settings["Format"])
    assert line["requestId"] == "$context.requestId"
    assert line["routeKey"] == "$context.routeKey"
    assert line["status"] == "$context.status"
    assert line["latencyMs"] == "$context.responseLatency"
    assert line["sub"] == "$context.authorizer.claims.sub"
    assert resource("ApiAccessLogs")["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_tracing_is_a_parameter_off_by_default() -> None:
    assert template()["Parameters"]["Tracing"]["Default"] == "Disabled"
    assert template()["Globals"]["Function"]["Tracing"] == {
        "Fn::If": ["TracingActive", "Active", "PassThrough"]
    }
