"""The local IAM: roles built from template.yaml, IAM's evaluation rules, requests -> actions.

Requests are the ones boto3 really sends (captured before they leave the process), so the mapping
is tested against the wire shapes the handlers produce, not against hand-written guesses.
"""

from __future__ import annotations

import atexit
import copy
import dataclasses
import functools
import gzip
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore
import botocore.session
import pytest
from botocore.config import Config

from onecopy_local import iam, sigv4
from onecopy_local.resources import Resources, template

pytestmark = pytest.mark.unit

REGION = "us-east-1"
ACCOUNT = "123456789012"
TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/"
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:onecopy-page-token-secret-AbCdEf"
QUEUE_URL = f"http://127.0.0.1:4566/{ACCOUNT}/onecopy-ingest"
QUEUE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:onecopy-ingest"
RESOURCES = Resources(
    region=REGION,
    bucket="onecopy-files",
    uploads_table="onecopy-uploads",
    contents_table="onecopy-contents",
    stats_table="onecopy-stats",
    holdings_table="onecopy-holdings",
    user_pool_id=f"{REGION}_abc",
    user_pool_client_id="client",
    stats_shards=16,
    queue_url=QUEUE_URL,
    dlq_url=f"http://127.0.0.1:4566/{ACCOUNT}/onecopy-ingest-dlq",
    queue_arn=QUEUE,
    dlq_arn=f"{QUEUE}-dlq",
    page_token_secret_arn=SECRET,
)


# --- policies from template.yaml -----------------------------------------------------------------


@pytest.fixture(scope="module")
def principals() -> dict[str, iam.Principal]:
    return iam.function_principals(template(), RESOURCES)


def _policy(principal: iam.Principal) -> iam.Policy:
    assert principal.policy is not None
    return principal.policy


def test_every_function_of_the_template_gets_a_principal_with_its_own_keys(
    principals: dict[str, iam.Principal],
) -> None:
    functions = {
        name
        for name, spec in template()["Resources"].items()
        if spec["Type"] == "AWS::Serverless::Function"
    }
    assert set(principals) == functions >= {"ApiFunction", "WorkerFunction", "ReconcileFunction"}
    keys = {p.access_key for p in principals.values()}
    assert len(keys) == len(principals) and iam.ADMIN_ACCESS_KEY not in keys
    assert iam.function_credentials("WorkerFunction") == iam.function_credentials("WorkerFunction")
    assert principals["WorkerFunction"].arn == (
        f"arn:aws:sts::{ACCOUNT}:assumed-role/WorkerFunctionRole/WorkerFunction"
    )


def test_the_policies_resolve_the_templates_intrinsics_to_local_arns(
    principals: dict[str, iam.Principal],
) -> None:
    api = _policy(principals["ApiFunction"])
    worker = _policy(principals["WorkerFunction"])

    assert api.allows("s3:PutObject", "arn:aws:s3:::onecopy-files/staging/u1")
    assert not api.allows("s3:PutObject", "arn:aws:s3:::onecopy-files/cas/sha256/ab")
    assert api.allows("dynamodb:Query", TABLE + "onecopy-uploads/index/owner-pending")
    assert not api.allows("dynamodb:Query", TABLE + "onecopy-uploads")
    assert worker.allows("s3:ListBucket", "arn:aws:s3:::onecopy-files")
    assert worker.allows("dynamodb:UpdateItem", TABLE + "onecopy-contents")
    assert not any("${" in r or "Fn::" in r for p in (api, worker) for _, r in p.grants())


def test_sam_attaches_basic_execution_to_all_and_the_sqs_poller_role_to_the_worker(
    principals: dict[str, iam.Principal],
) -> None:
    for principal in principals.values():
        assert _policy(principal).allows("logs:PutLogEvents", "arn:aws:logs:x")
    worker, api = _policy(principals["WorkerFunction"]), _policy(principals["ApiFunction"])
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"):
        assert worker.allows(action, QUEUE)
    # The API only reads the queues' depths (its own Policies, for GET /admin/health).
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage"):
        assert not api.allows(action, QUEUE)
    assert not worker.allows("sqs:SendMessage", QUEUE)


def test_sam_attaches_xray_write_access_when_tracing_is_set(
    principals: dict[str, iam.Principal],
) -> None:
    # Globals sets Tracing (to an !If): SAM then attaches AWSXrayWriteOnlyAccess to every role.
    for principal in principals.values():
        assert _policy(principal).allows("xray:PutTraceSegments", "*")


def _with_policies(policies: Any) -> dict[str, Any]:
    doctored = copy.deepcopy(template())
    doctored["Resources"]["ApiFunction"]["Properties"]["Policies"] = policies
    return doctored


@pytest.mark.parametrize(
    "policies",
    [
        [{"S3ReadPolicy": {"BucketName": {"Ref": "FilesBucket"}}}],
        ["AmazonS3FullAccess"],
        [{"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": {"Ref": "Nowhere"}}]}],
        [{"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": {"Fn::If": ["c"]}}]}],
        [{"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Bogus": 1}]}],
    ],
    ids=["sam-policy-template", "managed-policy", "unknown-ref", "fn-if", "unknown-element"],
)
def test_a_policies_entry_that_cannot_be_translated_fails_loudly(policies: Any) -> None:
    with pytest.raises(iam.TemplateError):
        iam.function_principals(_with_policies(policies), RESOURCES)


def test_sub_list_form_join_parameters_and_literals_are_resolved() -> None:
    statement = {
        "Effect": "Allow",
        "Action": "s3:GetObject",
        "Resource": [
            {"Fn::Sub": ["${Arn}/p/*", {"Arn": {"Fn::GetAtt": ["FilesBucket", "Arn"]}}]},
            {"Fn::Join": ["", ["arn:aws:s3:::", {"Ref": "FilesBucket"}, "/x"]]},
            {"Fn::Sub": "arn:${AWS::Partition}:s3:::${FilesBucket}/${!literal}/${LogLevel}"},
            {"Fn::Sub": "${FilesBucket.Arn}/y"},
        ],
    }
    policy = _policy(
        iam.function_principals(_with_policies([{"Statement": [statement]}]), RESOURCES)[
            "ApiFunction"
        ]
    )

    assert [r for a, r in policy.grants() if a == "s3:GetObject"] == [
        "arn:aws:s3:::onecopy-files/p/*",
        "arn:aws:s3:::onecopy-files/x",
        "arn:aws:s3:::onecopy-files/${literal}/INFO",  # a parameter resolves to its default
        "arn:aws:s3:::onecopy-files/y",
    ]


# --- evaluation ----------------------------------------------------------------------------------


def _statements(*raw: dict[str, Any]) -> iam.Policy:
    return iam.Policy(tuple(iam.Statement.parse(s) for s in raw))


@pytest.mark.parametrize(
    ("glob", "value", "ignore_case", "expected"),
    [
        ("s3:Get*", "s3:GetObject", True, True),
        ("s3:get*", "S3:GETOBJECT", True, True),
        ("s3:?etObject", "s3:GetObject", True, True),
        ("s3:?etObject", "s3:GGetObject", True, False),
        ("arn:aws:s3:::b/staging/*", "arn:aws:s3:::b/staging/a/b", False, True),
        ("arn:aws:s3:::b/staging/*", "arn:aws:s3:::b/Staging/a", False, False),
        ("arn:aws:s3:::b/staging/*", "arn:aws:s3:::b/staging", False, False),
        ("arn:aws:s3:::b", "arn:aws:s3:::b/x", False, False),
        ("arn:aws:s3:::b.c/k[1]", "arn:aws:s3:::b.c/k[1]", False, True),
        ("arn:aws:s3:::b.c/k", "arn:aws:s3:::bxc/k", False, False),
    ],
)
def test_iam_wildcards(glob: str, value: str, ignore_case: bool, expected: bool) -> None:
    assert iam.matches(glob, value, ignore_case=ignore_case) is expected


def test_an_explicit_deny_beats_an_allow_and_nothing_granted_is_an_implicit_deny() -> None:
    policy = _statements(
        {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"},
        {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::b/cas/*"},
    )
    assert policy.decide("s3:DeleteObject", "arn:aws:s3:::b/staging/x") == "Allow"
    assert policy.decide("S3:deleteobject", "arn:aws:s3:::b/cas/x") == "ExplicitDeny"
    assert policy.decide("dynamodb:GetItem", "arn:aws:s3:::b/x") == "ImplicitDeny"


def test_not_action_and_not_resource() -> None:
    policy = _statements(
        {"Effect": "Allow", "NotAction": "s3:Delete*", "NotResource": "arn:aws:s3:::b/cas/*"},
    )
    assert policy.allows("s3:GetObject", "arn:aws:s3:::b/staging/x")
    assert not policy.allows("s3:DeleteObject", "arn:aws:s3:::b/staging/x")
    assert not policy.allows("s3:GetObject", "arn:aws:s3:::b/cas/x")


def test_a_condition_never_grants_and_a_conditional_deny_applies() -> None:
    condition = {"Bool": {"aws:SecureTransport": "true"}}
    allow = _statements(
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": condition}
    )
    deny = _statements(
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:*", "Resource": "*", "Condition": condition},
    )
    assert allow.decide("s3:GetObject", "arn:aws:s3:::b/k") == "ImplicitDeny"
    assert deny.decide("s3:GetObject", "arn:aws:s3:::b/k") == "ExplicitDeny"


def test_without_removes_exactly_one_grant() -> None:
    policy = _statements(
        {"Effect": "Allow", "Action": ["a:X", "a:Y"], "Resource": ["r1", "r2"]},
    )
    reduced = policy.without("a:X", "r1")
    assert not reduced.allows("a:X", "r1")
    assert {g for g in reduced.grants()} == {("a:Y", "r1"), ("a:Y", "r2"), ("a:X", "r2")}


def test_a_denial_reads_like_aws() -> None:
    principal = iam.Principal("ApiFunction", "AK", "SK", _statements())
    denial = iam.authorize(principal, [("dynamodb:UpdateItem", TABLE + "t")])
    assert denial is not None
    assert denial.message == (
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/ApiFunctionRole/ApiFunction is not authorized"
        f" to perform: dynamodb:UpdateItem on resource: {TABLE}t because no identity-based policy"
        " allows the dynamodb:UpdateItem action"
    )
    assert iam.authorize(iam.admin_principal(), [("anything:At", "all")]) is None


# --- requests -> (action, resource) --------------------------------------------------------------


class _Captured(Exception):
    pass


def _client(service: str, **config: Any) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url="http://127.0.0.1:4566",
        region_name=REGION,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}, **config),
    )


def _request(method: str, url: str, headers: dict[str, Any], body: Any) -> iam.Request:
    split = urlsplit(url)
    if hasattr(body, "read"):
        body = body.read()
    if isinstance(body, str):
        body = body.encode()
    return iam.Request(
        method,
        split.path + (f"?{split.query}" if split.query else ""),
        sigv4.query_pairs(split.query),
        {
            name.lower(): [value.decode() if isinstance(value, bytes) else value]
            for name, value in headers.items()
        },
        body or b"",
    )


def sent(service: str, operation: str, **params: Any) -> iam.Request:
    """The request boto3 sends for this call, captured instead of sent."""
    return _capture(_client(service), operation, **params)


def _capture(client: Any, operation: str, **params: Any) -> iam.Request:
    seen: list[iam.Request] = []

    def capture(request: Any, **_: Any) -> None:
        seen.append(_request(request.method, request.url, dict(request.headers), request.body))
        raise _Captured

    client.meta.events.register("before-send", capture)
    with pytest.raises(_Captured):
        getattr(client, operation)(**params)
    return seen[0]


def required(
    request: iam.Request,
    secrets: dict[str, str] | None = None,
    *,
    keys: iam.EncryptionKeys | None = None,
) -> list[Any]:
    lookup: Callable[[str], str | None] = (secrets or {}).get
    return iam.required(request, region=REGION, account_id=ACCOUNT, secret_arn=lookup, keys=keys)


B = "arn:aws:s3:::bkt"
K = {"Bucket": "bkt", "Key": "staging/a b+c"}
OBJ = f"{B}/staging/a b+c"
UP = {**K, "UploadId": "up-1"}
S3_CASES: list[tuple[str, dict[str, Any], list[tuple[str, str]]]] = [
    ("head_object", K, [("s3:GetObject", OBJ)]),
    ("get_object", K, [("s3:GetObject", OBJ)]),
    ("get_object", {**K, "VersionId": "v1"}, [("s3:GetObjectVersion", OBJ)]),
    ("put_object", {**K, "Body": b"x"}, [("s3:PutObject", OBJ)]),
    ("create_multipart_upload", K, [("s3:PutObject", OBJ)]),
    ("upload_part", {**UP, "PartNumber": 1, "Body": b"x"}, [("s3:PutObject", OBJ)]),
    (
        "complete_multipart_upload",
        {**UP, "MultipartUpload": {"Parts": [{"ETag": "e", "PartNumber": 1}]}},
        [("s3:PutObject", OBJ)],
    ),
    (
        "copy_object",
        {"Bucket": "bkt", "Key": "cas/h", "CopySource": {"Bucket": "bkt", "Key": "staging/x y"}},
        [("s3:GetObject", f"{B}/staging/x y"), ("s3:PutObject", f"{B}/cas/h")],
    ),
    (
        "upload_part_copy",
        {
            "Bucket": "bkt",
            "Key": "cas/h",
            "UploadId": "u",
            "PartNumber": 2,
            "CopySource": {"Bucket": "src", "Key": "staging/x"},
        },
        [("s3:GetObject", "arn:aws:s3:::src/staging/x"), ("s3:PutObject", f"{B}/cas/h")],
    ),
    ("delete_object", K, [("s3:DeleteObject", OBJ)]),
    (
        "delete_objects",
        {"Bucket": "bkt", "Delete": {"Objects": [{"Key": "a"}, {"Key": "b/c"}]}},
        [("s3:DeleteObject", f"{B}/a"), ("s3:DeleteObject", f"{B}/b/c")],
    ),
    ("abort_multipart_upload", UP, [("s3:AbortMultipartUpload", OBJ)]),
    ("list_parts", UP, [("s3:ListMultipartUploadParts", OBJ)]),
    ("list_objects_v2", {"Bucket": "bkt", "Prefix": "cas/"}, [("s3:ListBucket", B)]),
    ("list_objects", {"Bucket": "bkt"}, [("s3:ListBucket", B)]),
    ("head_bucket", {"Bucket": "bkt"}, [("s3:ListBucket", B)]),
    ("list_multipart_uploads", {"Bucket": "bkt"}, [("s3:ListBucketMultipartUploads", B)]),
    ("get_object_tagging", K, [("s3:GetObjectTagging", OBJ)]),
    ("list_buckets", {}, [("s3:ListAllMyBuckets", "*")]),
]


@pytest.mark.parametrize(
    ("operation", "params", "expected"), S3_CASES, ids=[c[0] for c in S3_CASES]
)
def test_s3_requests_map_to_the_actions_s3_authorizes(
    operation: str, params: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert required(sent("s3", operation, **params)) == expected


def test_a_presigned_url_is_authorized_as_its_signer() -> None:
    signer = _client("s3", signature_version="s3v4")
    url = signer.generate_presigned_url("put_object", Params=K, ExpiresIn=60)
    request = _request("PUT", url, {"Content-Length": "1"}, b"x")

    assert iam.access_key_of(request) == "AKIDEXAMPLE"
    assert iam.service_of(request) == "s3"
    assert required(request) == [("s3:PutObject", OBJ)]


def test_a_sigv2_presigned_url_names_its_signer_too() -> None:
    url = _client("s3").generate_presigned_url("get_object", Params=K, ExpiresIn=60)
    request = _request("GET", url, {}, b"")
    assert iam.access_key_of(request) == "AKIDEXAMPLE"
    assert required(request) == [("s3:GetObject", OBJ)]


def test_the_missing_key_rule_applies_to_reads_and_copy_sources_only() -> None:
    assert iam.missing_key_answer_needs(sent("s3", "head_object", **K)) == B
    assert iam.missing_key_answer_needs(sent("s3", "get_object", **K)) == B
    copy_from = {"Bucket": "bkt", "Key": "cas/h", "CopySource": {"Bucket": "src", "Key": "x"}}
    assert iam.missing_key_answer_needs(sent("s3", "copy_object", **copy_from)) == (
        "arn:aws:s3:::src"
    )
    assert iam.missing_key_answer_needs(sent("s3", "put_object", **K, Body=b"")) is None
    assert iam.missing_key_answer_needs(sent("s3", "list_parts", **UP)) is None


def _key(value: str) -> dict[str, Any]:
    return {"upload_id": {"S": value}}


DDB_CASES: list[tuple[str, dict[str, Any], list[tuple[str, str]]]] = [
    ("get_item", {"TableName": "t", "Key": _key("1")}, [("dynamodb:GetItem", TABLE + "t")]),
    ("put_item", {"TableName": "t", "Item": _key("1")}, [("dynamodb:PutItem", TABLE + "t")]),
    (
        "update_item",
        {
            "TableName": "t",
            "Key": _key("1"),
            "UpdateExpression": "SET a = :a",
            "ExpressionAttributeValues": {":a": {"N": "1"}},
        },
        [("dynamodb:UpdateItem", TABLE + "t")],
    ),
    ("delete_item", {"TableName": "t", "Key": _key("1")}, [("dynamodb:DeleteItem", TABLE + "t")]),
    (
        "query",
        {
            "TableName": "t",
            "IndexName": "owner-content",
            "KeyConditionExpression": "o = :o",
            "ExpressionAttributeValues": {":o": {"S": "x"}},
        },
        [("dynamodb:Query", TABLE + "t/index/owner-content")],
    ),
    ("scan", {"TableName": "t"}, [("dynamodb:Scan", TABLE + "t")]),
    (
        "scan",
        {"TableName": f"{TABLE}t"},
        [("dynamodb:Scan", TABLE + "t")],
    ),
    (
        "transact_write_items",
        {
            "TransactItems": [
                {"Put": {"TableName": "a", "Item": _key("1")}},
                {
                    "Update": {
                        "TableName": "b",
                        "Key": _key("1"),
                        "UpdateExpression": "SET x = :x",
                        "ExpressionAttributeValues": {":x": {"N": "1"}},
                    }
                },
                {"Delete": {"TableName": "c", "Key": _key("1")}},
                {
                    "ConditionCheck": {
                        "TableName": "d",
                        "Key": _key("1"),
                        "ConditionExpression": "attribute_exists(upload_id)",
                    }
                },
            ]
        },
        [
            ("dynamodb:PutItem", TABLE + "a"),
            ("dynamodb:UpdateItem", TABLE + "b"),
            ("dynamodb:DeleteItem", TABLE + "c"),
            ("dynamodb:ConditionCheckItem", TABLE + "d"),
        ],
    ),
    (
        "transact_get_items",
        {"TransactItems": [{"Get": {"TableName": "a", "Key": _key("1")}}]},
        [("dynamodb:GetItem", TABLE + "a")],
    ),
    (
        "batch_get_item",
        {"RequestItems": {"a": {"Keys": [_key("1")]}, "b": {"Keys": [_key("2")]}}},
        [("dynamodb:BatchGetItem", TABLE + "a"), ("dynamodb:BatchGetItem", TABLE + "b")],
    ),
    (
        "batch_write_item",
        {"RequestItems": {"a": [{"PutRequest": {"Item": _key("1")}}]}},
        [("dynamodb:BatchWriteItem", TABLE + "a")],
    ),
]


@pytest.mark.parametrize(
    ("operation", "params", "expected"), DDB_CASES, ids=[c[0] for c in DDB_CASES]
)
def test_dynamodb_requests_map_to_their_table_or_index(
    operation: str, params: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert required(sent("dynamodb", operation, **params)) == expected


SQS_CASES: list[tuple[str, dict[str, Any], list[tuple[str, str]]]] = [
    ("receive_message", {"QueueUrl": QUEUE_URL}, [("sqs:ReceiveMessage", QUEUE)]),
    (
        "delete_message",
        {"QueueUrl": QUEUE_URL, "ReceiptHandle": "r"},
        [("sqs:DeleteMessage", QUEUE)],
    ),
    (
        "delete_message_batch",
        {"QueueUrl": QUEUE_URL, "Entries": [{"Id": "1", "ReceiptHandle": "r"}]},
        [("sqs:DeleteMessage", QUEUE)],
    ),
    (
        "change_message_visibility",
        {"QueueUrl": QUEUE_URL, "ReceiptHandle": "r", "VisibilityTimeout": 0},
        [("sqs:ChangeMessageVisibility", QUEUE)],
    ),
    (
        "get_queue_attributes",
        {"QueueUrl": QUEUE_URL, "AttributeNames": ["QueueArn"]},
        [("sqs:GetQueueAttributes", QUEUE)],
    ),
    ("send_message", {"QueueUrl": QUEUE_URL, "MessageBody": "m"}, [("sqs:SendMessage", QUEUE)]),
    ("get_queue_url", {"QueueName": "onecopy-ingest"}, [("sqs:GetQueueUrl", QUEUE)]),
]


@pytest.mark.parametrize(
    ("operation", "params", "expected"), SQS_CASES, ids=[c[0] for c in SQS_CASES]
)
def test_sqs_requests_map_to_their_queue(
    operation: str, params: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert required(sent("sqs", operation, **params)) == expected


def test_sqs_query_protocol_requests_map_too() -> None:
    request = iam.Request(
        "POST",
        "/",
        [],
        {
            "content-type": ["application/x-www-form-urlencoded; charset=utf-8"],
            "authorization": [
                "AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/sqs/aws4_request, Signature=0"
            ],
        },
        f"Action=DeleteMessageBatch&QueueUrl={QUEUE_URL}&Version=2012-11-05".encode(),
    )
    assert required(request) == [("sqs:DeleteMessage", QUEUE)]


def test_secrets_are_authorized_on_their_full_arn_also_when_named_by_name() -> None:
    by_arn = sent("secretsmanager", "get_secret_value", SecretId=SECRET)
    by_name = sent("secretsmanager", "get_secret_value", SecretId="onecopy-page-token-secret")

    assert required(by_arn, {SECRET: SECRET}) == [("secretsmanager:GetSecretValue", SECRET)]
    assert required(by_name, {"onecopy-page-token-secret": SECRET}) == [
        ("secretsmanager:GetSecretValue", SECRET)
    ]


@pytest.mark.parametrize(
    ("service", "operation", "params"),
    [
        ("s3", "put_bucket_cors", {"Bucket": "b", "CORSConfiguration": {"CORSRules": []}}),
        ("s3", "restore_object", {**K, "RestoreRequest": {"Days": 1}}),
        ("dynamodb", "execute_statement", {"Statement": "SELECT * FROM t"}),
        ("sts", "get_caller_identity", {}),
        ("lambda", "list_functions", {}),
    ],
    ids=["s3-bucket-config", "s3-restore", "partiql", "sts", "lambda"],
)
def test_a_request_that_cannot_be_mapped_is_refused(
    service: str, operation: str, params: dict[str, Any]
) -> None:
    with pytest.raises(iam.Unmapped):
        required(sent(service, operation, **params))


# --- CloudWatch ----------------------------------------------------------------------------------

CLOUDWATCH_PROTOCOLS = ("smithy-rpc-v2-cbor", "json", "query")


@functools.cache
def _cloudwatch_models(protocol: str) -> str:
    """A directory with botocore's CloudWatch model made to speak only ``protocol``.

    botocore picks the first protocol of the model's list it supports (json, today); a client
    loaded from this copy speaks the one given, as an older or another SDK would.
    """
    model_path = Path(botocore.__file__).parent / "data/cloudwatch/2010-08-01/service-2.json.gz"
    model = json.loads(gzip.decompress(model_path.read_bytes()))
    model["metadata"] |= {"protocol": protocol, "protocols": [protocol]}
    root = Path(tempfile.mkdtemp(prefix=f"cloudwatch-{protocol}-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    (root / "cloudwatch/2010-08-01").mkdir(parents=True)
    (root / "cloudwatch/2010-08-01/service-2.json").write_text(json.dumps(model))
    return str(root)


def cloudwatch_session(protocol: str, access_key: str, secret_key: str) -> boto3.Session:
    """A session whose CloudWatch clients speak ``protocol`` (one of CLOUDWATCH_PROTOCOLS)."""
    core = botocore.session.get_session()
    core.get_component("data_loader").search_paths.insert(0, _cloudwatch_models(protocol))
    return boto3.Session(
        botocore_session=core,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=REGION,
    )


def sent_cloudwatch(protocol: str, operation: str, **params: Any) -> iam.Request:
    client = cloudwatch_session(protocol, "AKIDEXAMPLE", "secret").client(
        "cloudwatch",
        endpoint_url="http://127.0.0.1:4566",
        config=Config(retries={"total_max_attempts": 1}),
    )
    return _capture(client, operation, **params)


NOW = datetime(2026, 1, 1, tzinfo=UTC)
METRIC = {"Namespace": "AWS/SQS", "MetricName": "ApproximateAgeOfOldestMessage"}
CLOUDWATCH_CASES: list[tuple[str, dict[str, Any]]] = [
    (
        "get_metric_data",
        {
            "MetricDataQueries": [
                {"Id": "a", "MetricStat": {"Metric": METRIC, "Period": 60, "Stat": "Maximum"}}
            ],
            "StartTime": NOW,
            "EndTime": NOW,
        },
    ),
    (
        "get_metric_statistics",
        {**METRIC, "StartTime": NOW, "EndTime": NOW, "Period": 60, "Statistics": ["Maximum"]},
    ),
    ("list_metrics", {"Namespace": "AWS/SQS"}),
    ("put_metric_data", {"Namespace": "onecopy", "MetricData": [{"MetricName": "m", "Value": 1}]}),
]


@pytest.mark.parametrize("protocol", CLOUDWATCH_PROTOCOLS)
@pytest.mark.parametrize(
    ("operation", "params"), CLOUDWATCH_CASES, ids=[c[0] for c in CLOUDWATCH_CASES]
)
def test_cloudwatch_metric_calls_map_to_their_action_on_any_resource(
    protocol: str, operation: str, params: dict[str, Any]
) -> None:
    request = sent_cloudwatch(protocol, operation, **params)
    action = "cloudwatch:" + "".join(part.title() for part in operation.split("_"))

    assert iam.service_of(request) == "monitoring"
    assert required(request) == [(action, "*")]


def test_botocore_speaks_json_to_cloudwatch_and_the_cbor_form_names_the_operation_in_its_path() -> (
    None
):
    # The default client (what the functions use): AWS JSON 1.0, the operation in X-Amz-Target
    default = sent("cloudwatch", "list_metrics")
    cbor = sent_cloudwatch("smithy-rpc-v2-cbor", "list_metrics")

    assert default.header("x-amz-target") == "GraniteServiceVersion20100801.ListMetrics"
    assert (
        urlsplit(cbor.path).path == "/service/GraniteServiceVersion20100801/operation/ListMetrics"
    )
    assert cbor.header("smithy-protocol") == "rpc-v2-cbor"


@pytest.mark.parametrize("protocol", CLOUDWATCH_PROTOCOLS)
@pytest.mark.parametrize(
    ("operation", "params"),
    [
        ("describe_alarms", {}),
        ("delete_alarms", {"AlarmNames": ["a"]}),
        ("put_dashboard", {"DashboardName": "d", "DashboardBody": "{}"}),
    ],
    ids=["describe-alarms", "delete-alarms", "put-dashboard"],
)
def test_other_cloudwatch_calls_are_unmapped(
    protocol: str, operation: str, params: dict[str, Any]
) -> None:
    with pytest.raises(iam.Unmapped):
        required(sent_cloudwatch(protocol, operation, **params))


# --- KMS: what an encrypted resource asks of the caller -----------------------------------------

KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/99999999-12ab-34cd-56ef-1234567890ab"


@dataclass
class Keys:
    """iam.EncryptionKeys from plain dicts: what each resource's configuration says."""

    buckets: dict[str, str] = field(default_factory=dict)
    objects: dict[tuple[str, str], str] = field(default_factory=dict)
    uploads: dict[str, str] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)
    queues: dict[str, str] = field(default_factory=dict)

    def bucket_default(self, bucket: str) -> str | None:
        return self.buckets.get(bucket)

    def object(self, bucket: str, key: str) -> str | None:
        return self.objects.get((bucket, key))

    def multipart_upload(self, bucket: str, key: str, upload_id: str) -> str | None:
        return self.uploads.get(upload_id)

    def table(self, table_arn: str) -> str | None:
        return self.tables.get(table_arn)

    def queue(self, queue_arn: str) -> str | None:
        return self.queues.get(queue_arn)


# The bucket's default is KEY; the staged object was written with it, cas/old before (no KMS).
ENCRYPTED = Keys(
    buckets={"bkt": KEY},
    objects={("bkt", "staging/a b+c"): KEY, ("bkt", "staging/x y"): KEY, ("src", "x"): OTHER_KEY},
    uploads={"up-1": KEY},
    tables={TABLE + "enc": KEY},
    queues={QUEUE: KEY},
)
COPY = {"Bucket": "bkt", "Key": "cas/h", "CopySource": {"Bucket": "bkt", "Key": "staging/x y"}}
S3_KMS_CASES: list[tuple[str, dict[str, Any], list[tuple[str, str]]]] = [
    ("put_object", {**K, "Body": b"x"}, [("kms:GenerateDataKey", KEY)]),
    (
        "put_object",
        {**K, "Body": b"x", "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": OTHER_KEY},
        [("kms:GenerateDataKey", OTHER_KEY)],
    ),
    ("put_object", {**K, "Body": b"x", "ServerSideEncryption": "AES256"}, []),
    ("put_object", {**K, "Body": b"x", "ServerSideEncryption": "aws:kms"}, []),  # aws/s3
    ("get_object", K, [("kms:Decrypt", KEY)]),
    ("get_object", {"Bucket": "bkt", "Key": "cas/old"}, []),
    ("head_object", K, []),
    ("head_object", {**K, "ChecksumMode": "ENABLED"}, [("kms:Decrypt", KEY)]),
    ("delete_object", K, []),
    ("list_objects_v2", {"Bucket": "bkt"}, []),
    ("get_object_tagging", K, []),
    ("copy_object", COPY, [("kms:Decrypt", KEY), ("kms:GenerateDataKey", KEY)]),
    (
        "copy_object",
        {**COPY, "CopySource": {"Bucket": "src", "Key": "x"}},
        [("kms:Decrypt", OTHER_KEY), ("kms:GenerateDataKey", KEY)],
    ),
    ("create_multipart_upload", K, [("kms:GenerateDataKey", KEY)]),
    # A part is encrypted with the upload's data key, which S3 decrypts as the caller
    ("upload_part", {**UP, "PartNumber": 1, "Body": b"x"}, [("kms:Decrypt", KEY)]),
    (
        "upload_part_copy",
        {**UP, "PartNumber": 1, "CopySource": {"Bucket": "src", "Key": "x"}},
        [("kms:Decrypt", OTHER_KEY), ("kms:Decrypt", KEY)],
    ),
    (
        "complete_multipart_upload",
        {**UP, "MultipartUpload": {"Parts": [{"ETag": "e", "PartNumber": 1}]}},
        [("kms:Decrypt", KEY)],
    ),
    ("list_parts", UP, []),
    ("abort_multipart_upload", UP, []),
]


@pytest.mark.parametrize(
    ("operation", "params", "expected"),
    S3_KMS_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(S3_KMS_CASES)],
)
def test_s3_on_an_sse_kms_bucket_asks_for_the_key_actions_s3_asks(
    operation: str, params: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    request = sent("s3", operation, **params)
    plain = required(request)

    # The S3 actions first, unchanged; then what the object's (or the new object's) key needs
    assert required(request, keys=ENCRYPTED) == plain + expected
    if "SSEKMSKeyId" not in params:  # a key the request names applies to any bucket
        assert required(request, keys=Keys()) == plain


def test_a_presigned_put_asks_its_signer_for_a_data_key() -> None:
    signer = _client("s3", signature_version="s3v4")
    url = signer.generate_presigned_url("put_object", Params=K, ExpiresIn=60)
    request = _request("PUT", url, {"Content-Length": "1"}, b"x")

    assert iam.access_key_of(request) == "AKIDEXAMPLE"
    assert required(request, keys=ENCRYPTED) == [
        ("s3:PutObject", OBJ),
        ("kms:GenerateDataKey", KEY),
    ]


def _update(table: str) -> dict[str, Any]:
    return {
        "TableName": table,
        "Key": _key("1"),
        "UpdateExpression": "SET x = :x",
        "ExpressionAttributeValues": {":x": {"N": "1"}},
    }


DDB_KMS_CASES: list[tuple[str, dict[str, Any], list[tuple[str, str]]]] = [
    ("get_item", {"TableName": "enc", "Key": _key("1")}, [("kms:Decrypt", KEY)]),
    ("put_item", {"TableName": "enc", "Item": _key("1")}, [("kms:Decrypt", KEY)]),
    ("update_item", _update("enc"), [("kms:Decrypt", KEY)]),
    ("delete_item", {"TableName": "enc", "Key": _key("1")}, [("kms:Decrypt", KEY)]),
    ("scan", {"TableName": "enc"}, [("kms:Decrypt", KEY)]),
    (
        "query",
        {
            "TableName": "enc",
            "IndexName": "by-owner",
            "KeyConditionExpression": "o = :o",
            "ExpressionAttributeValues": {":o": {"S": "x"}},
        },
        [("kms:Decrypt", KEY)],
    ),
    (
        "transact_write_items",
        {"TransactItems": [{"Update": _update("enc")}, {"Update": _update("plain")}]},
        [("kms:Decrypt", KEY)],
    ),
    (
        "batch_get_item",
        {"RequestItems": {"enc": {"Keys": [_key("1")]}, "plain": {"Keys": [_key("2")]}}},
        [("kms:Decrypt", KEY)],
    ),
    ("get_item", {"TableName": "plain", "Key": _key("1")}, []),
    ("describe_table", {"TableName": "enc"}, []),
]


@pytest.mark.parametrize(
    ("operation", "params", "expected"),
    DDB_KMS_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(DDB_KMS_CASES)],
)
def test_dynamodb_on_a_kms_table_asks_for_decrypt_on_its_key(
    operation: str, params: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    request = sent("dynamodb", operation, **params)
    assert required(request, keys=ENCRYPTED) == required(request) + expected


SQS_KMS_CASES: list[tuple[str, dict[str, Any], list[tuple[str, str]]]] = [
    (
        "send_message",
        {"QueueUrl": QUEUE_URL, "MessageBody": "m"},
        [("kms:GenerateDataKey", KEY), ("kms:Decrypt", KEY)],
    ),
    (
        "send_message_batch",
        {"QueueUrl": QUEUE_URL, "Entries": [{"Id": "1", "MessageBody": "m"}]},
        [("kms:GenerateDataKey", KEY), ("kms:Decrypt", KEY)],
    ),
    ("receive_message", {"QueueUrl": QUEUE_URL}, [("kms:Decrypt", KEY)]),
    ("delete_message", {"QueueUrl": QUEUE_URL, "ReceiptHandle": "r"}, []),
    ("get_queue_attributes", {"QueueUrl": QUEUE_URL, "AttributeNames": ["All"]}, []),
    ("receive_message", {"QueueUrl": f"{QUEUE_URL}-dlq"}, []),  # not encrypted with a key
]


@pytest.mark.parametrize(
    ("operation", "params", "expected"),
    SQS_KMS_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(SQS_KMS_CASES)],
)
def test_sqs_on_a_kms_queue_asks_producers_and_consumers_for_the_key(
    operation: str, params: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    request = sent("sqs", operation, **params)
    assert required(request, keys=ENCRYPTED) == required(request) + expected


@pytest.mark.parametrize(
    ("named", "expected"),
    [
        (KEY, KEY),
        ("1234abcd-12ab-34cd-56ef-1234567890ab", KEY),
        ("alias/mine", f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/mine"),
        ("alias/aws/s3", None),
        (f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/aws/sqs", None),
    ],
)
def test_a_key_named_by_id_is_seen_by_its_arn_and_aws_managed_keys_need_no_grant(
    named: str, expected: str | None
) -> None:
    assert iam.key_arn(named, region=REGION, account_id=ACCOUNT) == expected


def test_the_kms_grants_exist_only_with_a_key(principals: dict[str, iam.Principal]) -> None:
    # Given the template's roles with KmsKeyArn set (the UseKms branch) and without (the default)
    with_key = iam.function_principals(template(), dataclasses.replace(RESOURCES, kms_key_arn=KEY))
    policies = {name: _policy(p) for name, p in with_key.items()}

    # Then the API and the worker may decrypt and make data keys, reconciliation and the
    # collector only decrypt, the page nothing; and without a key no role has a KMS grant
    for name in ("ApiFunction", "WorkerFunction"):
        assert policies[name].allows("kms:Decrypt", KEY)
        assert policies[name].allows("kms:GenerateDataKey", KEY)
    for name in ("ReconcileFunction", "CollectorFunction"):
        assert policies[name].allows("kms:Decrypt", KEY)
        assert not policies[name].allows("kms:GenerateDataKey", KEY)
    assert not policies["PageFunction"].allows("kms:Decrypt", KEY)
    assert not any(policies[name].allows("kms:Decrypt", OTHER_KEY) for name in policies)
    assert not any(
        a.startswith("kms:") for p in principals.values() for a, _ in _policy(p).grants()
    )
