"""The local IAM: roles built from template.yaml, IAM's evaluation rules, requests -> actions.

Requests are the ones boto3 really sends (captured before they leave the process), so the mapping
is tested against the wire shapes the handlers produce, not against hand-written guesses.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import boto3
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
        assert not api.allows(action, QUEUE)
    assert not worker.allows("sqs:SendMessage", QUEUE)


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
    client = _client(service)
    seen: list[iam.Request] = []

    def capture(request: Any, **_: Any) -> None:
        seen.append(_request(request.method, request.url, dict(request.headers), request.body))
        raise _Captured

    client.meta.events.register("before-send", capture)
    with pytest.raises(_Captured):
        getattr(client, operation)(**params)
    return seen[0]


def required(request: iam.Request, secrets: dict[str, str] | None = None) -> list[Any]:
    lookup: Callable[[str], str | None] = (secrets or {}).get
    return iam.required(request, region=REGION, account_id=ACCOUNT, secret_arn=lookup)


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
