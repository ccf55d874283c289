"""The security and wiring properties template.yaml must keep (read statically, nothing deployed).

`make test` also runs `sam validate --lint`, which checks the syntax and the types; these tests
check what cfn-lint cannot know: what onecopy needs from each resource.
"""

from __future__ import annotations

import re
from typing import Any

import boto3
import pytest

from adapters.s3 import ObjectStore
from domain.model import PENDING_RETENTION
from onecopy_local.resources import TEMPLATE, resource, template

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
    rules = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert [r["ServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules] in (
        ["AES256"],
        ["aws:kms"],
    )
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]


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


def test_the_collector_runs_on_a_schedule_with_the_grace_period_as_a_parameter() -> None:
    params = template()["Parameters"]
    assert int(params["CollectionGracePeriodSeconds"]["Default"]) >= 900  # > download URL TTL
    assert params["CollectionGracePeriodSeconds"]["MinValue"] == 0
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
    statements = [s for p in policies for s in p["Statement"]]

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


def _names_a_resource_of_this_stack(arn: Any, statement_actions: list[Any]) -> bool:
    if not isinstance(arn, dict):
        return False  # a literal ARN or "*"
    if "Fn::GetAtt" in arn:
        target = arn["Fn::GetAtt"]
        logical_id, attribute = target.split(".") if isinstance(target, str) else target
        if attribute == "Arn" and _type(logical_id) == "AWS::S3::Bucket":
            # The bucket itself, only for ListBucket (what makes a missing key 404, not 403).
            return statement_actions == ["s3:ListBucket"]
        return attribute == "Arn" and _type(logical_id) in GRANTABLE_BY_ARN
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
        ("dynamodb:BatchGetItem", "StatsTable"),  # read_stats
        ("dynamodb:UpdateItem", "StatsTable"),  # held duplicate's and deletion's counters
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
    },
}


def _resource_name(arn: Any) -> str:
    """`!GetAtt X.Arn` -> X, `!Sub "${X.Arn}/p"` -> X/p, `!Ref X` -> X."""
    if "Fn::GetAtt" in arn:
        target = arn["Fn::GetAtt"]
        return str(target.split(".")[0] if isinstance(target, str) else target[0])
    if "Ref" in arn:
        return str(arn["Ref"])
    match = re.fullmatch(r"\$\{(\w+)\.Arn\}(/.+)", arn["Fn::Sub"])
    assert match is not None, arn
    return match[1] + match[2]


def _grants(function: str) -> set[tuple[str, str]]:
    statements = [s for p in _setting(function, "Policies") or [] for s in p["Statement"]]
    return {
        (action, _resource_name(arn))
        for s in statements
        for action in _as_list(s["Action"])
        for arn in _as_list(s["Resource"])
    }


@pytest.mark.parametrize("function", sorted(EXPECTED_GRANTS))
def test_each_function_is_granted_exactly_what_its_code_calls(function: str) -> None:
    assert _grants(function) == EXPECTED_GRANTS[function]


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
