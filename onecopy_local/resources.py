"""Create onecopy's AWS resources in an emulator, from the definitions in template.yaml.

Reading the template (instead of repeating its tables, queues and notification here) is what
keeps the local stack and the tests from drifting away from what `sam deploy` creates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import boto3
import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
SRC = ROOT / "src"


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation short-form tags (!Ref, !Sub, ...) as plain values."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


@cache
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)  # noqa: S506
    return loaded


def resource(logical_id: str) -> dict[str, Any]:
    props: dict[str, Any] = template()["Resources"][logical_id].get("Properties", {})
    return props


def parameter_default(name: str) -> str:
    return str(template()["Parameters"][name]["Default"])


@dataclass(frozen=True)
class Resources:
    region: str
    bucket: str
    uploads_table: str
    contents_table: str
    stats_table: str
    stats_shards: int
    queue_url: str
    dlq_url: str

    def function_env(self) -> dict[str, str]:
        """The environment template.yaml gives both functions (Globals + their own)."""
        return {
            "BUCKET_NAME": self.bucket,
            "UPLOADS_TABLE": self.uploads_table,
            "CONTENTS_TABLE": self.contents_table,
            "STATS_TABLE": self.stats_table,
            "STATS_SHARDS": str(self.stats_shards),
            "POWERTOOLS_SERVICE_NAME": "onecopy",
            "POWERTOOLS_METRICS_NAMESPACE": "onecopy",
            "ALLOWED_ORIGINS": parameter_default("AllowedOrigins"),
            "UPLOAD_URL_TTL_SECONDS": "900",
            "DOWNLOAD_URL_TTL_SECONDS": "900",
            # Deployed stacks generate this in Secrets Manager; locally any fixed value will do.
            "PAGE_TOKEN_SECRET": "local-page-token-secret-not-for-production",
        }


_TABLE_KEYS = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")


def create_resources(
    session: boto3.Session | None = None,
    *,
    endpoint_url: str | None = None,
    prefix: str = "onecopy",
    visibility_timeout: int | None = None,
) -> Resources:
    """Create the bucket, queues, tables and notification of template.yaml; return their names."""
    session = session or boto3.Session()
    kw: dict[str, Any] = {"endpoint_url": endpoint_url} if endpoint_url else {}
    s3 = session.client("s3", **kw)
    sqs = session.client("sqs", **kw)
    ddb = session.client("dynamodb", **kw)
    region = session.region_name or "us-east-1"

    tables = {}
    for logical_id, name in (
        ("UploadsTable", f"{prefix}-uploads"),
        ("ContentsTable", f"{prefix}-contents"),
        ("StatsTable", f"{prefix}-stats"),
    ):
        props = resource(logical_id)
        ddb.create_table(TableName=name, **{k: props[k] for k in _TABLE_KEYS if k in props})
        tables[logical_id] = name

    dlq_url = sqs.create_queue(QueueName=f"{prefix}-ingest-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_props = resource("IngestQueue")
    redrive = {
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": queue_props["RedrivePolicy"]["maxReceiveCount"],
    }
    visibility = visibility_timeout or queue_props["VisibilityTimeout"]
    queue_url = sqs.create_queue(
        QueueName=f"{prefix}-ingest",
        Attributes={"VisibilityTimeout": str(visibility), "RedrivePolicy": json.dumps(redrive)},
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]

    bucket_props = resource("FilesBucket")
    bucket = f"{prefix}-files"
    s3.create_bucket(Bucket=bucket)
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration=bucket_props["PublicAccessBlockConfiguration"],
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]}
                for rule in bucket_props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            ]
        },
    )
    cors_rules = []
    for rule in bucket_props["CorsConfiguration"]["CorsRules"]:
        cors_rules.append(
            {
                "AllowedMethods": rule["AllowedMethods"],
                "AllowedOrigins": parameter_default("AllowedOrigins").split(","),
                "AllowedHeaders": rule["AllowedHeaders"],
                "ExposeHeaders": rule["ExposedHeaders"],
                "MaxAgeSeconds": rule["MaxAge"],
            }
        )
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": cors_rules})  # type: ignore[typeddict-item]
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={"Rules": lifecycle_rules()},  # type: ignore[typeddict-item]
    )
    notification = bucket_props["NotificationConfiguration"]["QueueConfigurations"][0]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": [notification["Event"]],
                    "Filter": {"Key": {"FilterRules": notification["Filter"]["S3Key"]["Rules"]}},
                }
            ]
        },
    )
    return Resources(
        region=region,
        bucket=bucket,
        uploads_table=tables["UploadsTable"],
        contents_table=tables["ContentsTable"],
        stats_table=tables["StatsTable"],
        stats_shards=int(parameter_default("StatsShards")),
        queue_url=queue_url,
        dlq_url=dlq_url,
    )


def lifecycle_rules() -> list[dict[str, Any]]:
    """The template's lifecycle rules in the S3 API's shape."""
    rules = []
    for rule in resource("FilesBucket")["LifecycleConfiguration"]["Rules"]:
        api_rule: dict[str, Any] = {
            "ID": rule["Id"],
            "Status": rule["Status"],
            "Filter": {"Prefix": rule.get("Prefix", "")},
        }
        if "ExpirationInDays" in rule:
            api_rule["Expiration"] = {"Days": rule["ExpirationInDays"]}
        if "AbortIncompleteMultipartUpload" in rule:
            api_rule["AbortIncompleteMultipartUpload"] = rule["AbortIncompleteMultipartUpload"]
        rules.append(api_rule)
    return rules
