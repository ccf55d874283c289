"""What create_resources() builds in the emulator must be what template.yaml declares.

Each test describes a created resource through the AWS API and compares it with the template's own
definition, translated here independently of onecopy_local: a change to template.yaml that
create_resources() does not follow (or the reverse) fails.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest

from onecopy_local.resources import (
    Resources,
    function_variables,
    parameter_default,
    resource,
    template,
)

pytestmark = pytest.mark.integration

TABLES = {
    "UploadsTable": "uploads_table",
    "ContentsTable": "contents_table",
    "StatsTable": "stats_table",
}


def _queue_arn(url: str) -> str:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["QueueArn"]
    )["Attributes"]
    return attributes["QueueArn"]


def _allowed_origins() -> list[str]:
    return parameter_default("AllowedOrigins").split(",")


@pytest.mark.parametrize(("logical_id", "field"), TABLES.items())
def test_tables_have_the_templates_keys_indexes_and_billing(
    aws: Resources, logical_id: str, field: str
) -> None:
    # Given the table the template declares and the one created
    declared = resource(logical_id)
    table = boto3.client("dynamodb").describe_table(TableName=getattr(aws, field))["Table"]

    # Then keys, attributes, indexes and billing mode agree
    assert table["KeySchema"] == declared["KeySchema"]

    def by_name(attributes: list[Any]) -> list[Any]:
        return sorted(attributes, key=lambda a: a["AttributeName"])

    assert by_name(table["AttributeDefinitions"]) == by_name(declared["AttributeDefinitions"])
    indexes = {
        i["IndexName"]: (i["KeySchema"], i["Projection"])
        for i in table.get("GlobalSecondaryIndexes", [])
    }
    assert indexes == {
        i["IndexName"]: (i["KeySchema"], i["Projection"])
        for i in declared.get("GlobalSecondaryIndexes", [])
    }
    assert table["BillingModeSummary"]["BillingMode"] == declared["BillingMode"]


def test_ingest_queue_has_the_templates_redrive_and_visibility(aws: Resources) -> None:
    declared = resource("IngestQueue")
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=aws.queue_url, AttributeNames=["All"]
    )["Attributes"]

    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == _queue_arn(aws.dlq_url)
    assert int(redrive["maxReceiveCount"]) == declared["RedrivePolicy"]["maxReceiveCount"]
    assert declared["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": "IngestDeadLetterQueue.Arn"
    }
    assert int(attributes["VisibilityTimeout"]) == declared["VisibilityTimeout"]


def test_bucket_notifies_the_ingest_queue_as_the_template_says(aws: Resources) -> None:
    (declared,) = resource("FilesBucket")["NotificationConfiguration"]["QueueConfigurations"]
    configuration = boto3.client("s3").get_bucket_notification_configuration(Bucket=aws.bucket)

    (queue,) = configuration["QueueConfigurations"]
    assert declared["Queue"] == {"Fn::GetAtt": "IngestQueue.Arn"}
    assert queue["QueueArn"] == _queue_arn(aws.queue_url)
    assert queue["Events"] == [declared["Event"]]
    rules = [
        {"Name": r["Name"].lower(), "Value": r["Value"]}
        for r in queue["Filter"]["Key"]["FilterRules"]
    ]
    assert rules == declared["Filter"]["S3Key"]["Rules"]
    assert not configuration.get("TopicConfigurations")
    assert not configuration.get("LambdaFunctionConfigurations")


def test_only_objects_created_in_staging_reach_the_ingest_queue(aws: Resources) -> None:
    # Given the bucket and queue as created (the queue holds S3's s3:TestEvent already)
    s3, sqs = boto3.client("s3"), boto3.client("sqs")

    # When an object is created in staging/ and another one elsewhere
    s3.put_object(Bucket=aws.bucket, Key="staging/0123456789abcdef0123456789abcdef", Body=b"x")
    s3.put_object(Bucket=aws.bucket, Key="cas/sha256/elsewhere", Body=b"x")

    # Then the queue announces the staging object only
    messages = sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10)["Messages"]
    bodies = [json.loads(m["Body"]) for m in messages]
    keys = [r["s3"]["object"]["key"] for b in bodies for r in b.get("Records", [])]
    assert [unquote_plus(k) for k in keys] == ["staging/0123456789abcdef0123456789abcdef"]


def test_bucket_cors_is_the_templates(aws: Resources) -> None:
    (declared,) = resource("FilesBucket")["CorsConfiguration"]["CorsRules"]
    (rule,) = boto3.client("s3").get_bucket_cors(Bucket=aws.bucket)["CORSRules"]

    assert declared["AllowedOrigins"] == {"Ref": "AllowedOrigins"}
    assert rule["AllowedOrigins"] == _allowed_origins()
    assert rule["AllowedMethods"] == declared["AllowedMethods"]
    assert rule["AllowedHeaders"] == declared["AllowedHeaders"]
    assert rule["ExposeHeaders"] == declared["ExposedHeaders"]
    assert rule["MaxAgeSeconds"] == declared["MaxAge"]


def test_bucket_lifecycle_rules_are_the_templates(aws: Resources) -> None:
    declared = {r["Id"]: r for r in resource("FilesBucket")["LifecycleConfiguration"]["Rules"]}
    created = {
        r["ID"]: r
        for r in boto3.client("s3").get_bucket_lifecycle_configuration(Bucket=aws.bucket)["Rules"]
    }

    assert created.keys() == declared.keys()
    for rule_id, rule in declared.items():
        made = created[rule_id]
        assert made["Status"] == rule["Status"]
        assert made.get("Filter", {}).get("Prefix", made.get("Prefix", "")) == rule.get(
            "Prefix", ""
        )
        assert made.get("Expiration", {}).get("Days") == rule.get("ExpirationInDays")
        assert made.get("AbortIncompleteMultipartUpload") == rule.get(
            "AbortIncompleteMultipartUpload"
        )


def test_bucket_blocks_public_access_and_encrypts_as_the_template_says(aws: Resources) -> None:
    declared = resource("FilesBucket")
    s3 = boto3.client("s3")

    block = s3.get_public_access_block(Bucket=aws.bucket)["PublicAccessBlockConfiguration"]
    assert block == declared["PublicAccessBlockConfiguration"]
    rules = s3.get_bucket_encryption(Bucket=aws.bucket)["ServerSideEncryptionConfiguration"]
    algorithms = [r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules["Rules"]]
    # Without KmsKeyArn (the default), the template's UseKms branch is the AES256 one.
    (declared_rule,) = declared["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    _, _, without_key = declared_rule["ServerSideEncryptionByDefault"]["Fn::If"]
    assert algorithms == [without_key["SSEAlgorithm"]]


@pytest.mark.parametrize(
    "function",
    sorted(
        n for n, r in template()["Resources"].items() if r["Type"] == "AWS::Serverless::Function"
    ),
)
def test_local_functions_get_the_environment_the_template_gives(
    aws: Resources, function: str
) -> None:
    # Given the variables the template sets for the function (Globals, then its own)
    declared = {
        **template()["Globals"]["Function"].get("Environment", {}).get("Variables", {}),
        **resource(function).get("Environment", {}).get("Variables", {}),
    }
    own = function_variables(function, aws)
    shared = aws.function_env()

    # Then the function's environment has exactly those, and the in-process one each of them
    # (except the log level, which is the runner's choice: tests quiet it), at the values the
    # template resolves to
    assert set(own) == set(declared)
    assert set(declared) - {"POWERTOOLS_LOG_LEVEL"} <= set(shared)
    refs = {
        "FilesBucket": aws.bucket,
        "UploadsTable": aws.uploads_table,
        "ContentsTable": aws.contents_table,
        "StatsTable": aws.stats_table,
        "HoldingsTable": aws.holdings_table,
        "PageTokenSecret": aws.page_token_secret_arn,
        "IngestQueue": aws.queue_url,
        "IngestDeadLetterQueue": aws.dlq_url,
    } | {name: parameter_default(name) for name in template()["Parameters"]}
    # With the parameters' defaults (no AuthIssuer), the sign-in settings name the local pool;
    # AUTH_COGNITO_ENDPOINT is Cognito's own here: the stack points it at the emulator.
    sign_in = {
        "AUTH_ISSUER": aws.issuer,
        "AUTH_USER_POOL_ID": aws.user_pool_id,
        "AUTH_CLIENT_ID": aws.user_pool_client_id,
        "AUTH_COGNITO_ENDPOINT": f"https://cognito-idp.{aws.region}.amazonaws.com/",
    }
    for name, value in declared.items():
        if name in sign_in and set(value) == {"Fn::If"}:
            expected = sign_in[name]
        elif isinstance(value, str | int):
            expected = str(value)
        elif set(value) == {"Ref"}:
            expected = refs[value["Ref"]]
        elif value == {"Fn::Join": [",", {"Ref": "AllowedOrigins"}]}:
            expected = ",".join(_allowed_origins())
        else:
            raise AssertionError(f"{function}: {name} uses {value!r}; teach this test about it")
        assert own[name] == expected, name
        if name != "POWERTOOLS_LOG_LEVEL":
            assert shared[name] == expected, name
