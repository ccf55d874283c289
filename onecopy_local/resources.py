"""Create onecopy's AWS resources in an emulator, from the definitions in template.yaml.

Reading the template (instead of repeating its tables, queues and notification here) is what
keeps the local stack and the tests from drifting away from what `sam deploy` creates.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
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


def parameter_minimum(name: str) -> int:
    """A Number parameter's MinValue: the least `sam deploy` (CloudFormation) accepts."""
    return int(template()["Parameters"][name]["MinValue"])


ACCOUNT_ID = "123456789012"  # moto's default account


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
    queue_arn: str
    dlq_arn: str
    page_token_secret_arn: str
    holdings_table: str
    user_pool_id: str
    user_pool_client_id: str
    account_id: str = ACCOUNT_ID
    # The template's KmsKeyArn parameter: a key in the emulator, or "" (AWS's own keys).
    kms_key_arn: str = ""

    @property
    def issuer(self) -> str:
        """The `iss` of the local user pool's tokens (moto signs them as Cognito would)."""
        return f"https://cognito-idp.{self.region}.amazonaws.com/{self.user_pool_id}"

    def refs(self) -> dict[str, str]:
        """What `!Ref <LogicalId>` resolves to, locally, for the template's resources."""
        return {
            "FilesBucket": self.bucket,
            "UploadsTable": self.uploads_table,
            "ContentsTable": self.contents_table,
            "StatsTable": self.stats_table,
            "HoldingsTable": self.holdings_table,
            "UserPool": self.user_pool_id,
            "UserPoolClient": self.user_pool_client_id,
            "IngestQueue": self.queue_url,
            "IngestDeadLetterQueue": self.dlq_url,
            "PageTokenSecret": self.page_token_secret_arn,
            "KmsKeyArn": self.kms_key_arn,
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }

    def arns(self) -> dict[str, str]:
        """What `!GetAtt <LogicalId>.Arn` resolves to, locally."""
        table = f"arn:aws:dynamodb:{self.region}:{self.account_id}:table/"
        return {
            "FilesBucket": f"arn:aws:s3:::{self.bucket}",
            "UploadsTable": table + self.uploads_table,
            "ContentsTable": table + self.contents_table,
            "StatsTable": table + self.stats_table,
            "HoldingsTable": table + self.holdings_table,
            "UserPool": f"arn:aws:cognito-idp:{self.region}:{self.account_id}:userpool/"
            + self.user_pool_id,
            "IngestQueue": self.queue_arn,
            "IngestDeadLetterQueue": self.dlq_arn,
            "PageTokenSecret": self.page_token_secret_arn,
        }

    def function_env(self) -> dict[str, str]:
        """The variables template.yaml gives its functions (Globals + each one's own), merged, for
        driving handlers in-process. The log level is left to the runner (tests quiet it)."""
        merged: dict[str, str] = {}
        for logical_id in function_ids():
            for name, value in function_variables(logical_id, self).items():
                if merged.setdefault(name, value) != value:
                    raise TemplateError(f"{name} differs between functions; set it per function")
        merged.pop("POWERTOOLS_LOG_LEVEL", None)
        return merged


# --- template values, resolved locally -----------------------------------------------------------


class TemplateError(ValueError):
    """A template value the local stack cannot resolve: refused, never guessed."""


_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def parameters(overrides: Mapping[str, str] | None = None) -> dict[str, str | list[str]]:
    """What `!Ref <Parameter>` gives: the defaults (a CommaDelimitedList as a list), overridden
    as `sam deploy --parameter-overrides` would."""
    values: dict[str, str | list[str]] = {}
    for name, spec in template().get("Parameters", {}).items():
        raw = (overrides or {}).get(name, spec.get("Default"))
        if raw is None:
            continue
        text = ",".join(raw) if isinstance(raw, list) else str(raw)
        values[name] = text.split(",") if spec.get("Type") == "CommaDelimitedList" else text
    return values


# What `!Ref AWS::NoValue` resolves to: the property (or list item) holding it is dropped.
_NO_VALUE = object()


def resolve(value: Any, resources: Resources, overrides: Mapping[str, str] | None = None) -> Any:
    """``value`` with its intrinsic functions (Ref, Sub, GetAtt .Arn, Join, Select, Split)
    evaluated to the local stack's names and ARNs."""
    refs: dict[str, Any] = {**parameters(overrides), **resources.refs()}
    arns = resources.arns()

    def ref(name: str) -> Any:
        if name not in refs:
            raise TemplateError(f"!Ref {name}: no local value")
        return refs[name]

    def get_att(arg: Any) -> str:
        logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
        if attribute != "Arn" or logical_id not in arns:
            raise TemplateError(f"!GetAtt {logical_id}.{attribute}: no local value")
        return arns[logical_id]

    def sub(arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], walk(arg[1]))

        def one(match: re.Match[str]) -> str:
            name = match[1]
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            return get_att(name) if "." in name else str(ref(name))

        return _SUB_VARIABLE.sub(one, text)

    def holds(condition: Any) -> bool:
        """A template Condition (by name, or inline), evaluated with the local values."""
        if isinstance(condition, str):
            conditions = template().get("Conditions", {})
            if condition not in conditions:
                raise TemplateError(f"no Condition named {condition}")
            return holds(conditions[condition])
        ((name, arg),) = condition.items()
        if name == "Condition":
            return holds(arg)
        if name == "Fn::Equals":
            left, right = walk(arg)
            return bool(left == right)
        if name == "Fn::Not":
            return not holds(arg[0])
        if name == "Fn::And":
            return all(holds(c) for c in arg)
        if name == "Fn::Or":
            return any(holds(c) for c in arg)
        raise TemplateError(f"{name} is not a condition function: {condition!r}")

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (walk(item) for item in node) if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((name, arg),) = node.items()
            if name == "Ref" and arg == "AWS::NoValue":
                return _NO_VALUE
            if name == "Ref":
                return ref(arg)
            if name == "Fn::GetAtt":
                return get_att(arg)
            if name == "Fn::Sub":
                return sub(arg)
            if name == "Fn::Join":
                return str(arg[0]).join(str(item) for item in walk(arg[1]))
            if name == "Fn::Select":
                return walk(arg[1])[int(walk(arg[0]))]
            if name == "Fn::Split":
                return str(walk(arg[1])).split(str(arg[0]))
            if name == "Fn::If":
                if not (isinstance(arg, list) and len(arg) == 3):
                    raise TemplateError(f"Fn::If takes a condition and two values: {node!r}")
                condition, if_true, if_false = arg
                return walk(if_true if holds(condition) else if_false)
            if name.startswith("Fn::"):
                raise TemplateError(f"{name} is not resolved locally: {node!r}")
        walked = {key: walk(item) for key, item in node.items()}
        return {key: item for key, item in walked.items() if item is not _NO_VALUE}

    resolved = walk(value)
    if resolved is _NO_VALUE:
        return None
    if isinstance(resolved, str) and "{{resolve:" in resolved:
        raise TemplateError(f"dynamic references are not resolved locally: {resolved}")
    return resolved


def function_ids() -> list[str]:
    """The logical ids of the template's functions, in template order."""
    return [
        logical_id
        for logical_id, spec in template()["Resources"].items()
        if spec.get("Type") == "AWS::Serverless::Function"
    ]


def function_property(logical_id: str, name: str, default: Any = None) -> Any:
    """A function's property, or the Globals' value for it, or ``default``."""
    props = resource(logical_id)
    if name in props:
        return props[name]
    return template().get("Globals", {}).get("Function", {}).get(name, default)


def function_variables(
    logical_id: str, resources: Resources, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A function's environment variables as deployed: Globals', then its own, resolved."""
    declared = {
        **template()
        .get("Globals", {})
        .get("Function", {})
        .get("Environment", {})
        .get("Variables", {}),
        **resource(logical_id).get("Environment", {}).get("Variables", {}),
    }
    return {name: _env_string(resolve(v, resources, overrides)) for name, v in declared.items()}


def _env_string(value: Any) -> str:
    # CloudFormation turns scalars into strings, booleans as "true"/"false".
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str | int | float):
        return str(value)
    raise TemplateError(f"an environment variable must be a scalar, not {value!r}")


_TABLE_KEYS = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")


def create_resources(
    session: boto3.Session | None = None,
    *,
    endpoint_url: str | None = None,
    prefix: str = "onecopy",
    visibility_timeout: int | None = None,
    kms_key_arn: str = "",
) -> Resources:
    """Create the bucket, queues, tables and notification of template.yaml; return their names.

    With ``kms_key_arn`` (a key in the emulator: the template's KmsKeyArn parameter), the bucket,
    tables and queues are encrypted with it, as the template's UseKms branches say.
    """
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
        ("HoldingsTable", f"{prefix}-holdings"),
    ):
        props = resource(logical_id)
        extra: dict[str, Any] = {}
        if kms_key_arn:
            extra["SSESpecification"] = {
                "Enabled": True,
                "SSEType": "KMS",
                "KMSMasterKeyId": kms_key_arn,
            }
        ddb.create_table(
            TableName=name, **{k: props[k] for k in _TABLE_KEYS if k in props}, **extra
        )
        if ttl := props.get("TimeToLiveSpecification"):
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
        tables[logical_id] = name

    queue_key: dict[str, Any] = {"KmsMasterKeyId": kms_key_arn} if kms_key_arn else {}
    dlq_url = sqs.create_queue(QueueName=f"{prefix}-ingest-dlq", Attributes=queue_key)[  # type: ignore[arg-type]
        "QueueUrl"
    ]
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
        Attributes={
            "VisibilityTimeout": str(visibility),
            "RedrivePolicy": json.dumps(redrive),
            **queue_key,  # type: ignore[dict-item]
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]

    secrets_manager = session.client("secretsmanager", **kw)
    generated = resource("PageTokenSecret")["GenerateSecretString"]
    secret_arn = secrets_manager.create_secret(
        Name=f"{prefix}-page-token-secret",
        SecretString=secrets.token_urlsafe(generated["PasswordLength"])[
            : generated["PasswordLength"]
        ],
    )["ARN"]

    bucket_props = resource("FilesBucket")
    bucket = f"{prefix}-files"
    s3.create_bucket(Bucket=bucket)
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration=bucket_props["PublicAccessBlockConfiguration"],
    )
    # The template's rule, its UseKms branch taken as the parameter says.
    (rule,) = bucket_props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    _, with_key, without_key = rule["ServerSideEncryptionByDefault"]["Fn::If"]
    encryption: dict[str, Any] = {
        "ApplyServerSideEncryptionByDefault": (
            {"SSEAlgorithm": with_key["SSEAlgorithm"], "KMSMasterKeyID": kms_key_arn}
            if kms_key_arn
            else dict(without_key)
        )
    }
    if kms_key_arn:
        encryption["BucketKeyEnabled"] = True
    rules: Any = {"Rules": [encryption]}
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=rules)
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
    user_pool_id, client_id = _create_sign_in(session.client("cognito-idp", **kw), prefix)
    return Resources(
        region=region,
        bucket=bucket,
        uploads_table=tables["UploadsTable"],
        holdings_table=tables["HoldingsTable"],
        user_pool_id=user_pool_id,
        user_pool_client_id=client_id,
        contents_table=tables["ContentsTable"],
        stats_table=tables["StatsTable"],
        stats_shards=int(parameter_default("StatsShards")),
        queue_url=queue_url,
        dlq_url=dlq_url,
        queue_arn=queue_arn,
        dlq_arn=dlq_arn,
        page_token_secret_arn=secret_arn,
        kms_key_arn=kms_key_arn,
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


def _create_sign_in(cognito: Any, prefix: str) -> tuple[str, str]:
    """The template's user pool, app client and groups (moto's Cognito); returns their ids."""
    pool = resource("UserPool")
    password = pool["Policies"]["PasswordPolicy"]
    pool_id = cognito.create_user_pool(
        PoolName=f"{prefix}-users",
        Policies={"PasswordPolicy": password},
        AdminCreateUserConfig=pool["AdminCreateUserConfig"],
        UsernameConfiguration=pool["UsernameConfiguration"],
    )["UserPool"]["Id"]
    client = resource("UserPoolClient")
    client_id = cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName=client["ClientName"],
        GenerateSecret=client["GenerateSecret"],
        ExplicitAuthFlows=client["ExplicitAuthFlows"],
        PreventUserExistenceErrors=client["PreventUserExistenceErrors"],
        AccessTokenValidity=client["AccessTokenValidity"],
        IdTokenValidity=client["IdTokenValidity"],
        RefreshTokenValidity=client["RefreshTokenValidity"],
        TokenValidityUnits=client["TokenValidityUnits"],
    )["UserPoolClient"]["ClientId"]
    for spec in template()["Resources"].values():
        if spec.get("Type") == "AWS::Cognito::UserPoolGroup":
            props = spec["Properties"]
            cognito.create_group(
                UserPoolId=pool_id,
                GroupName=props["GroupName"],
                Description=props.get("Description", ""),
            )
    return pool_id, client_id
