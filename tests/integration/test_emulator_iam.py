"""IAM through the emulator: each function calls with its role, and gets AWS's answers back.

The resources and the roles are the ones template.yaml defines (created by the admin identity);
each test calls as one function and checks what boto3 sees, as it would against AWS.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from onecopy_local import iam
from onecopy_local.emulator import Emulator
from onecopy_local.kms import create_key
from onecopy_local.resources import Resources, create_resources, template
from tests.unit.test_iam import CLOUDWATCH_PROTOCOLS, cloudwatch_session

pytestmark = pytest.mark.integration

REGION = "us-east-1"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(port=0) as running:
        yield running


def _session(access_key: str, secret_key: str) -> boto3.Session:
    return boto3.Session(
        aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=REGION
    )


@pytest.fixture(scope="module")
def resources(emulator: Emulator) -> Resources:
    admin = _session(iam.ADMIN_ACCESS_KEY, iam.ADMIN_SECRET_KEY)
    return create_resources(admin, endpoint_url=emulator.endpoint_url, prefix="iam")


@pytest.fixture(scope="module")
def roles(emulator: Emulator, resources: Resources) -> dict[str, iam.Principal]:
    return iam.function_principals(template(), resources)


@pytest.fixture(autouse=True)
def template_roles(emulator: Emulator, roles: dict[str, iam.Principal]) -> Iterator[None]:
    emulator.set_principals([iam.admin_principal(), *roles.values()])
    yield
    emulator.set_principals([iam.admin_principal(), *roles.values()])


def _client(emulator: Emulator, service: str, who: iam.Principal, **config: Any) -> Any:
    return _session(who.access_key, who.secret_key).client(
        service,  # type: ignore[call-overload]
        endpoint_url=emulator.endpoint_url,
        config=Config(retries={"total_max_attempts": 1}, **config),
    )


def _admin(emulator: Emulator, service: str) -> Any:
    return _client(emulator, service, iam.admin_principal())


def _error(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as refused:
        call(*args, **kwargs)
    return dict(refused.value.response)


# --- S3 ------------------------------------------------------------------------------------------


def test_a_granted_s3_call_passes_and_a_missing_grant_is_access_denied(
    emulator: Emulator, resources: Resources, roles: dict[str, iam.Principal]
) -> None:
    # Given an object in staging
    _admin(emulator, "s3").put_object(Bucket=resources.bucket, Key="staging/u1", Body=b"abc")

    # When the worker (granted s3:GetObject on staging/*) and the API (not granted) read it
    worker = _client(emulator, "s3", roles["WorkerFunction"])
    api = _client(emulator, "s3", roles["ApiFunction"])
    body = worker.get_object(Bucket=resources.bucket, Key="staging/u1")["Body"].read()
    refused = _error(api.get_object, Bucket=resources.bucket, Key="staging/u1")

    # Then the worker reads the bytes, and the API gets S3's 403 AccessDenied naming its role
    assert body == b"abc"
    assert refused["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert refused["Error"]["Code"] == "AccessDenied"
    assert "assumed-role/ApiFunctionRole/ApiFunction" in refused["Error"]["Message"]
    assert "s3:GetObject" in refused["Error"]["Message"]


def test_a_denied_head_object_is_a_bodiless_403(
    emulator: Emulator, resources: Resources, roles: dict[str, iam.Principal]
) -> None:
    api = _client(emulator, "s3", roles["ApiFunction"])
    refused = _error(api.head_object, Bucket=resources.bucket, Key="staging/u1")
    assert refused["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert refused["Error"]["Code"] == "403"  # what boto3 reports for a HEAD, as on AWS


def test_a_missing_key_is_403_without_list_bucket_and_404_with_it(
    emulator: Emulator, resources: Resources, roles: dict[str, iam.Principal]
) -> None:
    # Given a key that does not exist in cas/, readable by the API, and staging/ by the worker
    api = _client(emulator, "s3", roles["ApiFunction"])
    worker = _client(emulator, "s3", roles["WorkerFunction"])

    # When each asks for a missing key
    hidden = _error(api.get_object, Bucket=resources.bucket, Key="cas/sha256/missing")
    hidden_head = _error(api.head_object, Bucket=resources.bucket, Key="cas/sha256/missing")
    told = _error(worker.head_object, Bucket=resources.bucket, Key="staging/missing")
    told_get = _error(worker.get_object, Bucket=resources.bucket, Key="staging/missing")

    # Then only the worker, granted s3:ListBucket, learns that it is missing
    assert hidden["Error"]["Code"] == "AccessDenied"
    assert hidden_head["Error"]["Code"] == "403"
    assert told["Error"]["Code"] == "404"
    assert told_get["Error"]["Code"] == "NoSuchKey"


def test_a_copy_needs_get_on_the_source_and_put_on_the_target(
    emulator: Emulator, resources: Resources, roles: dict[str, iam.Principal]
) -> None:
    _admin(emulator, "s3").put_object(Bucket=resources.bucket, Key="staging/c1", Body=b"x")
    worker = _client(emulator, "s3", roles["WorkerFunction"])

    worker.copy_object(
        Bucket=resources.bucket,
        Key="cas/sha256/c1",
        CopySource={"Bucket": resources.bucket, "Key": "staging/c1"},
    )
    backwards = _error(
        worker.copy_object,
        Bucket=resources.bucket,
        Key="staging/c2",
        CopySource={"Bucket": resources.bucket, "Key": "cas/sha256/c1"},
    )

    assert backwards["Error"]["Code"] == "AccessDenied"


def test_a_presigned_put_is_authorized_as_its_signer_when_it_is_used(
    emulator: Emulator, resources: Resources, roles: dict[str, iam.Principal]
) -> None:
    # Given URLs presigned by the API function for staging/ (granted) and cas/ (not granted)
    signer = _client(emulator, "s3", roles["ApiFunction"], signature_version="s3v4")

    def url(key: str) -> str:
        signed: str = signer.generate_presigned_url(
            "put_object", Params={"Bucket": resources.bucket, "Key": key}, ExpiresIn=900
        )
        return signed

    staging, cas = url("staging/p1"), url("cas/sha256/p1")

    # When a browser PUTs through them
    accepted = requests.put(staging, data=b"bytes", timeout=10)
    refused = requests.put(cas, data=b"bytes", timeout=10)

    # Then the signer's grant decides
    assert accepted.status_code == 200, accepted.text
    assert refused.status_code == 403
    assert "<Code>AccessDenied</Code>" in refused.text

    # And when the grant is taken from the signer's role after signing, its URL stops working
    api = roles["ApiFunction"]
    assert api.policy is not None
    grant = ("s3:PutObject", f"arn:aws:s3:::{resources.bucket}/staging/*")
    without = iam.Principal(api.name, api.access_key, api.secret_key, api.policy.without(*grant))
    emulator.set_principals([iam.admin_principal(), without])
    again = requests.put(staging, data=b"bytes", timeout=10)
    assert again.status_code == 403
    assert "<Code>AccessDenied</Code>" in again.text


def test_a_cors_preflight_is_not_authorized(emulator: Emulator, resources: Resources) -> None:
    preflight = requests.options(
        f"{emulator.endpoint_url}/{resources.bucket}/staging/x",
        headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "PUT"},
        timeout=10,
    )
    assert preflight.status_code == 200, preflight.text


def test_an_unsigned_request_is_anonymous_and_denied(
    emulator: Emulator, resources: Resources
) -> None:
    _admin(emulator, "s3").put_object(Bucket=resources.bucket, Key="cas/sha256/pub", Body=b"x")
    response = requests.get(
        f"{emulator.endpoint_url}/{resources.bucket}/cas/sha256/pub", timeout=10
    )
    assert response.status_code == 403
    assert "<Code>AccessDenied</Code>" in response.text


def test_an_unknown_access_key_is_refused_as_each_service_does(emulator: Emulator) -> None:
    stranger = iam.Principal("stranger", "AKIAUNKNOWN000000000", "secret", None)

    s3 = _error(_client(emulator, "s3", stranger).list_buckets)
    ddb = _error(_client(emulator, "dynamodb", stranger).list_tables)

    assert s3["Error"]["Code"] == "InvalidAccessKeyId"
    assert ddb["Error"]["Code"] == "UnrecognizedClientException"
    assert ddb["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_a_request_the_proxy_cannot_map_is_denied_to_a_function(
    emulator: Emulator, resources: Resources, roles: dict[str, iam.Principal]
) -> None:
    api = _client(emulator, "s3", roles["ApiFunction"])
    refused = _error(api.get_bucket_cors, Bucket=resources.bucket)
    assert refused["Error"]["Code"] == "AccessDenied"


# --- DynamoDB, SQS, Secrets Manager --------------------------------------------------------------


def test_dynamodb_grants_per_table_and_access_denied_exception_otherwise(
    emulator: Emulator,
    resources: Resources,
    roles: dict[str, iam.Principal],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given the reconcile function, which may only scan the uploads table
    reconcile = _client(emulator, "dynamodb", roles["ReconcileFunction"])
    reconcile.scan(TableName=resources.uploads_table)

    # When it writes there
    with caplog.at_level(logging.INFO, logger="local_stack"):
        refused = _error(
            reconcile.put_item,
            TableName=resources.uploads_table,
            Item={"upload_id": {"S": str(uuid.uuid4())}},
        )

    # Then DynamoDB's 400 AccessDeniedException names the role, action and table; it is logged
    table_arn = f"arn:aws:dynamodb:{REGION}:{resources.account_id}:table/{resources.uploads_table}"
    assert refused["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert refused["Error"]["Code"] == "AccessDeniedException"
    assert refused["Error"]["Message"] == (
        f"User: arn:aws:sts::{resources.account_id}:assumed-role/ReconcileFunctionRole/"
        f"ReconcileFunction is not authorized to perform: dynamodb:PutItem on resource: "
        f"{table_arn} because no identity-based policy allows the dynamodb:PutItem action"
    )
    assert f"iam: denied ReconcileFunction dynamodb:PutItem on {table_arn}" in caplog.text


def test_a_transaction_needs_every_items_action(
    emulator: Emulator, resources: Resources, roles: dict[str, iam.Principal]
) -> None:
    # The worker may update contents but not delete from them
    worker = _client(emulator, "dynamodb", roles["WorkerFunction"])
    key = {"sha256": {"S": "00" * 32}}
    refused = _error(
        worker.transact_write_items,
        TransactItems=[
            {
                "Update": {
                    "TableName": resources.contents_table,
                    "Key": key,
                    "UpdateExpression": "SET n = :n",
                    "ExpressionAttributeValues": {":n": {"N": "1"}},
                }
            },
            {"Delete": {"TableName": resources.stats_table, "Key": {"shard": {"N": "0"}}}},
        ],
    )
    assert refused["Error"]["Code"] == "AccessDeniedException"
    assert "dynamodb:DeleteItem" in refused["Error"]["Message"]


def test_sqs_polling_is_the_workers_and_access_denied_for_others(
    emulator: Emulator, resources: Resources, roles: dict[str, iam.Principal]
) -> None:
    worker = _client(emulator, "sqs", roles["WorkerFunction"])
    api = _client(emulator, "sqs", roles["ApiFunction"])

    worker.receive_message(QueueUrl=resources.dlq_url, WaitTimeSeconds=0)
    refused = _error(api.receive_message, QueueUrl=resources.queue_url, WaitTimeSeconds=0)
    not_granted = _error(worker.send_message, QueueUrl=resources.queue_url, MessageBody="m")

    assert refused["Error"]["Code"] == "AccessDenied"
    assert not_granted["Error"]["Code"] == "AccessDenied"


def test_the_page_token_secret_is_readable_by_the_api_only(
    emulator: Emulator, resources: Resources, roles: dict[str, iam.Principal]
) -> None:
    api = _client(emulator, "secretsmanager", roles["ApiFunction"])
    worker = _client(emulator, "secretsmanager", roles["WorkerFunction"])
    name = resources.page_token_secret_arn.rsplit(":", 1)[1].rsplit("-", 1)[0]

    api.get_secret_value(SecretId=resources.page_token_secret_arn)
    api.get_secret_value(SecretId=name)  # named by name, authorized on its full ARN
    refused = _error(worker.get_secret_value, SecretId=resources.page_token_secret_arn)

    assert refused["Error"]["Code"] == "AccessDeniedException"


# --- the escape hatch ----------------------------------------------------------------------------


def test_without_enforcement_a_function_may_do_anything() -> None:
    reader = iam.Principal("Nobody", *iam.function_credentials("Nobody"), iam.Policy())
    with Emulator(port=0, principals=[iam.admin_principal(), reader], enforce_iam=False) as free:
        s3 = _client(free, "s3", reader)
        s3.create_bucket(Bucket="free")
        s3.put_object(Bucket="free", Key="k", Body=b"x")
        assert s3.get_object(Bucket="free", Key="k")["Body"].read() == b"x"


# --- CloudWatch ----------------------------------------------------------------------------------


def _metric_query(queue: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "MetricDataQueries": [
            {
                "Id": "age",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/SQS",
                        "MetricName": "ApproximateAgeOfOldestMessage",
                        "Dimensions": [{"Name": "QueueName", "Value": queue}],
                    },
                    "Period": 60,
                    "Stat": "Maximum",
                },
            }
        ],
        "StartTime": now - timedelta(minutes=5),
        "EndTime": now + timedelta(minutes=1),
    }


def _cloudwatch(emulator: Emulator, protocol: str, who: iam.Principal) -> Any:
    return cloudwatch_session(protocol, who.access_key, who.secret_key).client(
        "cloudwatch",
        endpoint_url=emulator.endpoint_url,
        config=Config(retries={"total_max_attempts": 1}),
    )


@pytest.mark.parametrize("protocol", CLOUDWATCH_PROTOCOLS)
def test_cloudwatch_reads_need_the_grant_and_a_denial_is_access_denied_in_the_callers_protocol(
    emulator: Emulator, roles: dict[str, iam.Principal], protocol: str
) -> None:
    # Given a datapoint the operator put (as SQS publishes its own)
    queue = f"metrics-{protocol}"
    _cloudwatch(emulator, protocol, iam.admin_principal()).put_metric_data(
        Namespace="AWS/SQS",
        MetricData=[
            {
                "MetricName": "ApproximateAgeOfOldestMessage",
                "Dimensions": [{"Name": "QueueName", "Value": queue}],
                "Value": 42.0,
                "Unit": "Seconds",
            }
        ],
    )

    # When the API (granted cloudwatch:GetMetricData) and the worker (not granted) read it, and
    # the API writes a metric or reads alarms (neither granted)
    api = _cloudwatch(emulator, protocol, roles["ApiFunction"])
    worker = _cloudwatch(emulator, protocol, roles["WorkerFunction"])
    got = api.get_metric_data(**_metric_query(queue))["MetricDataResults"]
    refused = _error(worker.get_metric_data, **_metric_query(queue))
    put = _error(api.put_metric_data, Namespace="x", MetricData=[{"MetricName": "m", "Value": 1}])
    alarms = _error(api.describe_alarms)

    # Then the API gets the data; the others are CloudWatch's 403 AccessDenied, which botocore
    # parses from the protocol the client spoke
    assert [result["Values"] for result in got] == [[42.0]]
    for denial in (refused, put, alarms):
        assert denial["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert denial["Error"]["Code"] == "AccessDenied"
    assert refused["Error"]["Message"] == (
        f"User: {roles['WorkerFunction'].arn} is not authorized to perform: "
        "cloudwatch:GetMetricData on resource: * because no identity-based policy allows the "
        "cloudwatch:GetMetricData action"
    )
    assert "cloudwatch:PutMetricData" in put["Error"]["Message"]


def test_the_default_client_speaks_json_to_cloudwatch_and_gets_the_same_answers(
    emulator: Emulator, roles: dict[str, iam.Principal]
) -> None:
    api = _client(emulator, "cloudwatch", roles["ApiFunction"])
    worker = _client(emulator, "cloudwatch", roles["WorkerFunction"])

    api.get_metric_data(**_metric_query("any"))
    refused = _error(worker.get_metric_data, **_metric_query("any"))

    assert refused["Error"]["Code"] == "AccessDenied"


# --- KMS: resources encrypted with a customer-managed key -------------------------------------


@pytest.fixture(scope="module")
def encrypted(emulator: Emulator) -> Resources:
    """The template's resources with KmsKeyArn set to a key in the emulator."""
    admin = _session(iam.ADMIN_ACCESS_KEY, iam.ADMIN_SECRET_KEY)
    key = create_key(admin.client("kms", endpoint_url=emulator.endpoint_url))
    return create_resources(
        admin, endpoint_url=emulator.endpoint_url, prefix="iamkms", kms_key_arn=key
    )


@pytest.fixture
def kms_roles(emulator: Emulator, encrypted: Resources) -> dict[str, iam.Principal]:
    """The roles as the template makes them with KmsKeyArn (EncryptionKey statements in)."""
    roles = iam.function_principals(template(), encrypted)
    emulator.set_principals([iam.admin_principal(), *roles.values()])
    return roles


def _without(role: iam.Principal, action: str, resource: str) -> iam.Principal:
    assert role.policy is not None
    return iam.Principal(
        role.name, role.access_key, role.secret_key, role.policy.without(action, resource)
    )


def test_a_kms_queue_needs_decrypt_of_its_consumer_and_sqs_names_kms_in_its_refusal(
    emulator: Emulator, encrypted: Resources, kms_roles: dict[str, iam.Principal]
) -> None:
    # Given the worker, which polls the encrypted queue, without kms:Decrypt
    worker = kms_roles["WorkerFunction"]
    _client(emulator, "sqs", worker).receive_message(QueueUrl=encrypted.queue_url)
    emulator.set_principals(
        [iam.admin_principal(), _without(worker, "kms:Decrypt", encrypted.kms_key_arn)]
    )

    # When it polls again
    refused = _error(_client(emulator, "sqs", worker).receive_message, QueueUrl=encrypted.queue_url)

    # Then SQS passes KMS's refusal on as KMS.AccessDeniedException (400)
    assert refused["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert refused["Error"]["Code"] == "KMS.AccessDeniedException"
    assert f"kms:Decrypt on resource: {encrypted.kms_key_arn}" in refused["Error"]["Message"]


def test_a_kms_table_needs_decrypt_of_every_reader_and_writer(
    emulator: Emulator, encrypted: Resources, kms_roles: dict[str, iam.Principal]
) -> None:
    reconcile = kms_roles["ReconcileFunction"]
    _client(emulator, "dynamodb", reconcile).scan(TableName=encrypted.uploads_table)
    emulator.set_principals(
        [iam.admin_principal(), _without(reconcile, "kms:Decrypt", encrypted.kms_key_arn)]
    )

    refused = _error(
        _client(emulator, "dynamodb", reconcile).scan, TableName=encrypted.uploads_table
    )

    assert refused["Error"]["Code"] == "AccessDeniedException"
    assert f"kms:Decrypt on resource: {encrypted.kms_key_arn}" in refused["Error"]["Message"]


def test_a_key_aws_manages_asks_nothing_of_the_caller(
    emulator: Emulator, roles: dict[str, iam.Principal]
) -> None:
    # Given a table encrypted with KMS without a key named: DynamoDB's AWS-managed key
    admin = _admin(emulator, "dynamodb")
    admin.create_table(
        TableName="aws-managed",
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        SSESpecification={"Enabled": True, "SSEType": "KMS"},
    )
    scanner = iam.Principal(
        "Scanner",
        *iam.function_credentials("Scanner"),
        iam.Policy(
            (
                iam.Statement(
                    "Allow",
                    ("dynamodb:Scan",),
                    resources=(f"arn:aws:dynamodb:{REGION}:*:table/aws-managed",),
                ),
            )
        ),
    )
    emulator.set_principals([iam.admin_principal(), scanner])

    # Then a caller granted only the scan may scan: no key grant is asked for
    assert _client(emulator, "dynamodb", scanner).scan(TableName="aws-managed")["Items"] == []


def test_unencrypted_resources_ask_for_no_key(
    emulator: Emulator, resources: Resources, roles: dict[str, iam.Principal]
) -> None:
    # The template's roles without KmsKeyArn have no KMS grant, and need none
    worker = _client(emulator, "sqs", roles["WorkerFunction"])
    worker.receive_message(QueueUrl=resources.queue_url, WaitTimeSeconds=0)
    _client(emulator, "dynamodb", roles["ReconcileFunction"]).scan(
        TableName=resources.uploads_table
    )
