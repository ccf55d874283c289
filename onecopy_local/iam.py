"""IAM for the local emulator: who is calling, what AWS would check, and whether it is allowed.

Each function of template.yaml gets its own access key, standing for its execution role. Its
policy is built from the template itself: the function's ``Policies`` statements, with the
intrinsics resolved to the local ARNs, plus the managed policies SAM attaches (basic execution
always; the SQS poller's permissions when the function has an SQS event, because Lambda's event
source mapping polls with the function's role, as the local poller does with its credentials).

The proxy maps every request to the (action, resource ARN) pairs AWS authorizes it against
(``required``) and evaluates them with IAM's rules (``Policy.decide``): an explicit Deny wins, then
an Allow, else the implicit deny. Whatever cannot be mapped or evaluated is refused (fail closed):
an unknown request, a policy entry that cannot be translated (a SAM policy template, a managed
policy by name), a statement with a Condition (never grants; a conditional Deny always applies).

Resources encrypted with a customer-managed KMS key (the template's KmsKeyArn) add what AWS asks
of the caller on that key: S3, DynamoDB and SQS call KMS as the principal that made the request,
so its policy must allow kms:Decrypt / kms:GenerateDataKey on the key (``EncryptionKeys`` tells
which key encrypts what, from each resource's own configuration; the rules are tables below).

Not modelled: resource-based policies. The template's only bucket policy denies requests made
without TLS, and local traffic is plain HTTP on loopback, so evaluating it would deny everything.
A key policy is taken to let the account's IAM policies decide (what KmsKeyArn's must do).
Permission boundaries, SCPs and session policies do not exist here either.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from onecopy_local._http import LOGGER
from onecopy_local.resources import ACCOUNT_ID, Resources, TemplateError, resolve

log = logging.getLogger(LOGGER)

ADMIN_ACCESS_KEY = "testing"
ADMIN_SECRET_KEY = "testing"  # noqa: S105 (a fake key, as moto's docs use)

# AWS managed policies SAM attaches to a function's role; their statements as AWS publishes them.
BASIC_EXECUTION = {
    "Effect": "Allow",
    "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
    "Resource": "*",
}
SQS_QUEUE_EXECUTION = {
    "Effect": "Allow",
    "Action": [
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    ],
    "Resource": "*",
}


# SAM attaches it whenever a function's Tracing is set, even to an intrinsic that may resolve to
# PassThrough (samtranslator: any Tracing value). Lambda uses it to send the function's segments.
XRAY_WRITE_ONLY = {
    "Effect": "Allow",
    "Action": [
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "xray:GetSamplingStatisticSummaries",
    ],
    "Resource": "*",
}


class Unmapped(ValueError):
    """A request whose IAM action(s) and resource(s) are unknown here: it is denied."""


# --- policies ------------------------------------------------------------------------------------


@cache
def _pattern(glob: str, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile(regex, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def matches(glob: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM's wildcard match: ``*`` any run of characters, ``?`` exactly one."""
    return _pattern(glob, ignore_case).fullmatch(value) is not None


def _strings(value: Any, what: str) -> tuple[str, ...]:
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) for v in values):
        raise TemplateError(f"{what} must be strings after resolution, got {value!r}")
    return tuple(values)


@dataclass(frozen=True)
class Statement:
    effect: str  # "Allow" or "Deny"
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    condition: Mapping[str, Any] | None = None
    sid: str = ""

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Statement:
        """A statement of a policy document whose intrinsics are already resolved."""
        unknown = set(raw) - {
            "Sid",
            "Effect",
            "Action",
            "NotAction",
            "Resource",
            "NotResource",
            "Condition",
        }
        if unknown:
            raise TemplateError(f"statement {raw!r}: unsupported element(s) {sorted(unknown)}")
        effect = raw.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise TemplateError(f"statement {raw!r}: Effect must be Allow or Deny")
        if ("Action" in raw) == ("NotAction" in raw):
            raise TemplateError(f"statement {raw!r}: exactly one of Action and NotAction")
        if ("Resource" in raw) == ("NotResource" in raw):
            raise TemplateError(f"statement {raw!r}: exactly one of Resource and NotResource")
        return cls(
            effect=effect,
            actions=_strings(raw.get("Action", []), "Action"),
            not_actions=_strings(raw.get("NotAction", []), "NotAction"),
            resources=_strings(raw.get("Resource", []), "Resource"),
            not_resources=_strings(raw.get("NotResource", []), "NotResource"),
            condition=raw.get("Condition") or None,
            sid=str(raw.get("Sid", "")),
        )

    def applies(self, action: str, resource: str) -> bool:
        """Whether Action/NotAction and Resource/NotResource cover this request (no Condition)."""
        if self.actions:
            action_ok = any(matches(a, action, ignore_case=True) for a in self.actions)
        else:
            action_ok = not any(matches(a, action, ignore_case=True) for a in self.not_actions)
        if self.resources:
            resource_ok = any(matches(r, resource) for r in self.resources)
        else:
            resource_ok = not any(matches(r, resource) for r in self.not_resources)
        return action_ok and resource_ok


@dataclass(frozen=True)
class Policy:
    statements: tuple[Statement, ...] = ()

    def decide(self, action: str, resource: str) -> str:
        """ "Allow", "ExplicitDeny" or "ImplicitDeny", by IAM's evaluation logic."""
        allowed = False
        for statement in self.statements:
            if not statement.applies(action, resource):
                continue
            if statement.condition is not None:
                # No condition keys are modelled: such a statement never grants (fail closed),
                # and a conditional Deny is taken to apply.
                log.info(
                    "iam: statement %r has a Condition that is not evaluated; for %s on %s it %s",
                    statement.sid or statement,
                    action,
                    resource,
                    "denies" if statement.effect == "Deny" else "grants nothing",
                )
                if statement.effect == "Deny":
                    return "ExplicitDeny"
                continue
            if statement.effect == "Deny":
                return "ExplicitDeny"
            allowed = True
        return "Allow" if allowed else "ImplicitDeny"

    def allows(self, action: str, resource: str) -> bool:
        return self.decide(action, resource) == "Allow"

    def without(self, action: str, resource: str) -> Policy:
        """A copy of this policy in which no statement grants exactly this (action, resource).

        The pair is taken out of each statement that lists both; the rest of the statement stays.
        """
        statements: list[Statement] = []
        for s in self.statements:
            if s.effect != "Allow" or action not in s.actions or resource not in s.resources:
                statements.append(s)
                continue
            others = tuple(a for a in s.actions if a != action)
            rest = tuple(r for r in s.resources if r != resource)
            if others:
                statements.append(
                    Statement(s.effect, others, (), s.resources, (), s.condition, s.sid)
                )
            if rest:
                statements.append(Statement(s.effect, (action,), (), rest, (), s.condition, s.sid))
        return Policy(tuple(statements))

    def grants(self) -> list[tuple[str, str]]:
        """Every (action, resource) an Allow statement names, in order."""
        pairs: list[tuple[str, str]] = []
        for s in self.statements:
            if s.effect == "Allow":
                pairs += [(a, r) for a in s.actions for r in s.resources if (a, r) not in pairs]
        return pairs


# --- template -> policy --------------------------------------------------------------------------


def function_policy(
    template: Mapping[str, Any], logical_id: str, resources: Resources, *, attached: bool = True
) -> Policy:
    """The execution role's permissions SAM would create for this function, resolved locally.

    ``attached=False`` leaves out the managed policies SAM attaches: the ``Policies`` alone.
    """
    props = template["Resources"][logical_id].get("Properties") or {}
    if "Role" in props:
        raise TemplateError(f"{logical_id}: an explicit Role cannot be read from the template")
    raw_statements: list[Any] = []
    events = props.get("Events") or {}
    if attached:
        raw_statements.append(BASIC_EXECUTION)
        if any(event.get("Type") == "SQS" for event in events.values()):
            raw_statements.append(SQS_QUEUE_EXECUTION)
        tracing = props.get(
            "Tracing", template.get("Globals", {}).get("Function", {}).get("Tracing")
        )
        if tracing:
            raw_statements.append(XRAY_WRITE_ONLY)
    policies = props.get("Policies") or []
    if not isinstance(policies, list):
        policies = [policies]
    for entry in policies:
        if not isinstance(entry, dict) or "Statement" not in entry:
            # A managed policy name or ARN, or a SAM policy template ({S3ReadPolicy: ...}).
            raise TemplateError(
                f"{logical_id}: cannot translate the Policies entry {entry!r}; "
                "write it as an inline policy document, or teach onecopy_local.iam about it"
            )
        statements = entry["Statement"]
        raw_statements += statements if isinstance(statements, list) else [statements]
    resolved = (resolve(s, resources) for s in raw_statements)
    # A statement under !If whose condition is false resolves to AWS::NoValue: no statement.
    return Policy(tuple(Statement.parse(s) for s in resolved if s is not None))


@dataclass(frozen=True)
class Principal:
    name: str  # "admin", or a function's logical id, e.g. "WorkerFunction"
    access_key: str
    secret_key: str
    policy: Policy | None  # None = unrestricted (the operator/admin identity, like an admin user)
    account_id: str = field(default=ACCOUNT_ID, compare=False)

    @property
    def arn(self) -> str:
        if self.policy is None:
            return f"arn:aws:iam::{self.account_id}:user/{self.name}"
        # What a Lambda function's calls are seen as: its role, assumed for the function.
        return f"arn:aws:sts::{self.account_id}:assumed-role/{self.name}Role/{self.name}"


def admin_principal() -> Principal:
    return Principal("admin", ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, None)


def function_credentials(logical_id: str) -> tuple[str, str]:
    """The (access key id, secret) of a function's role; the same in every process and run."""
    digest = hashlib.sha256(f"onecopy-local:{logical_id}".encode()).hexdigest()
    # ASIA: the prefix AWS gives temporary (assumed-role) access keys.
    return "ASIA" + digest[:16].upper(), digest[16:56]


def function_principals(template: Mapping[str, Any], resources: Resources) -> dict[str, Principal]:
    """One principal per AWS::Serverless::Function of the template, keyed by logical id."""
    principals = {}
    for logical_id, spec in template["Resources"].items():
        if spec.get("Type") != "AWS::Serverless::Function":
            continue
        access_key, secret_key = function_credentials(logical_id)
        principals[logical_id] = Principal(
            logical_id,
            access_key,
            secret_key,
            function_policy(template, logical_id, resources),
            resources.account_id,
        )
    return principals


# --- requests -> (action, resource) --------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """What the proxy knows of a request; ``headers`` maps lowercased names to their values."""

    method: str
    path: str  # raw, still percent-encoded
    query: Sequence[tuple[str, str]]
    headers: Mapping[str, Sequence[str]]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        values = self.headers.get(name)
        return values[0] if values else None


def access_key_of(request: Request) -> str | None:
    """The access key id the request was signed with (SigV4 or SigV2, header or query)."""
    auth = request.header("authorization") or ""
    if "Credential=" in auth:
        return auth.split("Credential=", 1)[1].split("/", 1)[0].strip()
    if auth.startswith("AWS "):
        return auth[4:].split(":", 1)[0].strip()
    params = dict(request.query)
    if "X-Amz-Credential" in params:
        return params["X-Amz-Credential"].split("/", 1)[0]
    return params.get("AWSAccessKeyId")


def service_of(request: Request) -> str | None:
    """The service a request is for: the SigV4 scope's, else what its shape says."""
    auth = request.header("authorization") or ""
    credential = ""
    if "Credential=" in auth:
        credential = auth.split("Credential=", 1)[1].split(",", 1)[0]
    else:
        credential = dict(request.query).get("X-Amz-Credential", "")
    scope = credential.split("/")
    if len(scope) == 5:
        return scope[3]
    target = request.header("x-amz-target") or ""
    if target.startswith("DynamoDB_"):
        return "dynamodb"
    if target.startswith("AmazonSQS."):
        return "sqs"
    if target.startswith("secretsmanager."):
        return "secretsmanager"
    if target.startswith(_CLOUDWATCH_TARGET) or request.header("smithy-protocol"):
        return "monitoring"
    return "s3" if auth.startswith("AWS ") or "AWSAccessKeyId" in dict(request.query) else None


Requirement = tuple[str, str]  # (action, resource ARN)
SecretLookup = Callable[[str], str | None]


class EncryptionKeys(Protocol):
    """Which customer-managed KMS key (its ARN) encrypts a resource, as the resource's own
    configuration says; None when it is not encrypted with one (AWS-owned and AWS-managed keys
    need no grant of the caller)."""

    def bucket_default(self, bucket: str) -> str | None:
        """The key the bucket's default encryption gives new objects."""

    def object(self, bucket: str, key: str) -> str | None:
        """The key an existing object is encrypted with (None also when it does not exist)."""

    def multipart_upload(self, bucket: str, key: str, upload_id: str) -> str | None:
        """The key a multipart upload in progress encrypts its parts with."""

    def table(self, table_arn: str) -> str | None: ...

    def queue(self, queue_arn: str) -> str | None: ...


def required(
    request: Request,
    *,
    region: str,
    account_id: str = ACCOUNT_ID,
    secret_arn: SecretLookup | None = None,
    keys: EncryptionKeys | None = None,
) -> list[Requirement]:
    """The (action, resource) pairs AWS authorizes this request against; raises Unmapped.

    With ``keys``, also what the request needs on the KMS key of a resource encrypted with a
    customer-managed key (after the service's own actions).
    """
    service = service_of(request)
    if service == "s3":
        needed = _s3(request)
        if keys is not None:
            needed += _s3_kms(request, keys, region, account_id)
        return needed
    if service == "dynamodb":
        needed = _dynamodb(request, region, account_id)
        return needed + _dynamodb_kms(needed, keys) if keys is not None else needed
    if service == "sqs":
        needed = _sqs(request, region, account_id)
        return needed + _sqs_kms(needed, keys) if keys is not None else needed
    if service == "secretsmanager":
        return _secretsmanager(request, region, account_id, secret_arn)
    if service == "monitoring":
        return _cloudwatch(request)
    raise Unmapped(f"requests for service {service!r} are not mapped")


def key_arn(key_id: str, *, region: str, account_id: str) -> str | None:
    """The ARN IAM sees for a key named by ARN or id; None for an AWS-managed key's alias
    (alias/aws/...: its key policy lets every principal of the account use it through the
    service, so no grant is asked of the caller)."""
    if key_id.startswith("alias/aws/") or ":alias/aws/" in key_id:
        return None
    if key_id.startswith("arn:"):
        return key_id
    kind = "" if key_id.startswith("alias/") else "key/"
    return f"arn:aws:kms:{region}:{account_id}:{kind}{key_id}"


# S3 ----------------------------------------------------------------------------------------------

_OBJECT_SUBRESOURCE_NAMES = ("tagging", "attributes", "acl", "retention", "legal-hold", "torrent")
_OBJECT_SUBRESOURCES = {
    ("GET", "tagging"): "s3:GetObjectTagging",
    ("PUT", "tagging"): "s3:PutObjectTagging",
    ("DELETE", "tagging"): "s3:DeleteObjectTagging",
    ("GET", "attributes"): "s3:GetObjectAttributes",
    ("GET", "acl"): "s3:GetObjectAcl",
    ("PUT", "acl"): "s3:PutObjectAcl",
}


def s3_location(path: str) -> tuple[str, str]:
    """(bucket, key) of a path-style request; key URL-decoded, "" for a bucket request."""
    bucket, _, key = path.lstrip("/").partition("/")
    return unquote(bucket), unquote(key)


def s3_arn(bucket: str, key: str | None = None) -> str:
    return f"arn:aws:s3:::{bucket}" if key is None else f"arn:aws:s3:::{bucket}/{key}"


def copy_source(request: Request) -> tuple[str, str] | None:
    """(bucket, key) of x-amz-copy-source, when the request copies."""
    raw = request.header("x-amz-copy-source")
    if raw is None:
        return None
    bucket, _, key = unquote(raw.split("?", 1)[0]).lstrip("/").partition("/")
    return bucket, key


def missing_key_answer_needs(request: Request) -> str | None:
    """The bucket ARN whose s3:ListBucket lets a 404 through, for requests S3 applies it to.

    Without s3:ListBucket on the bucket, S3 answers a GetObject/HeadObject of a missing key, or a
    copy from a missing source, with 403 AccessDenied: a caller must not learn what does not exist.
    """
    if service_of(request) != "s3":
        return None
    bucket, key = s3_location(urlsplit(request.path).path)
    params = {name for name, _ in request.query}
    if request.method in ("GET", "HEAD") and key and not params & {"uploadId", "tagging", "acl"}:
        return s3_arn(bucket)
    source = copy_source(request)
    if request.method == "PUT" and source is not None:
        return s3_arn(source[0])
    return None


def _s3(request: Request) -> list[Requirement]:
    method = "GET" if request.method == "HEAD" else request.method
    path = urlsplit(request.path).path
    bucket, key = s3_location(path)
    params = {name for name, _ in request.query}
    if not bucket:
        if method == "GET":
            return [("s3:ListAllMyBuckets", "*")]
        raise Unmapped(f"S3 {request.method} /")
    if not key:
        return _s3_bucket(request, method, bucket, params)
    target = s3_arn(bucket, key)
    for (verb, subresource), action in _OBJECT_SUBRESOURCES.items():
        if method == verb and subresource in params:
            return [(action, target)]
    versioned = "versionId" in params
    if method == "GET":
        if "uploadId" in params:
            return [("s3:ListMultipartUploadParts", target)]
        if params & {"torrent", "legal-hold", "retention", "restore", "select"}:
            raise Unmapped(f"S3 GET object subresource {sorted(params)}")
        return [("s3:GetObjectVersion" if versioned else "s3:GetObject", target)]
    if method == "PUT":
        needed = [("s3:PutObject", target)]
        if params & {"retention", "legal-hold"}:
            raise Unmapped(f"S3 PUT object subresource {sorted(params)}")
        if "uploadId" not in params and request.header("x-amz-tagging"):
            needed.append(("s3:PutObjectTagging", target))
        source = copy_source(request)
        if source is not None:
            raw_source = request.header("x-amz-copy-source") or ""
            read = "s3:GetObjectVersion" if "versionId=" in raw_source else "s3:GetObject"
            needed.insert(0, (read, s3_arn(*source)))
        return needed
    if method == "POST":
        if "uploads" in params or "uploadId" in params:
            return [("s3:PutObject", target)]
        raise Unmapped(f"S3 POST object with {sorted(params)}")
    if method == "DELETE":
        if "uploadId" in params:
            return [("s3:AbortMultipartUpload", target)]
        return [("s3:DeleteObjectVersion" if versioned else "s3:DeleteObject", target)]
    raise Unmapped(f"S3 {request.method} object")


def _s3_bucket(request: Request, method: str, bucket: str, params: set[str]) -> list[Requirement]:
    arn = s3_arn(bucket)
    if method == "GET":
        if "uploads" in params:
            return [("s3:ListBucketMultipartUploads", arn)]
        if "versions" in params:
            return [("s3:ListBucketVersions", arn)]
        if "location" in params:
            return [("s3:GetBucketLocation", arn)]
        if not params - {
            "list-type",
            "prefix",
            "delimiter",
            "max-keys",
            "continuation-token",
            "start-after",
            "fetch-owner",
            "encoding-type",
            "marker",
        }:
            # ListObjects(V2), and HeadBucket, which S3 authorizes as ListBucket.
            return [("s3:ListBucket", arn)]
    if method == "POST" and "delete" in params:
        try:
            keys = [
                element.text or ""
                # moto parses the same body right after; the emulator listens on loopback only.
                for element in ET.fromstring(request.body).iter()  # noqa: S314
                if element.tag.rsplit("}", 1)[-1] == "Key"
            ]
        except ET.ParseError as exc:
            raise Unmapped(f"S3 DeleteObjects with an unreadable body: {exc}") from exc
        return [("s3:DeleteObject", s3_arn(bucket, key)) for key in keys]
    raise Unmapped(f"S3 {request.method} bucket with {sorted(params)}")


# What S3 asks of the caller on the KMS key, by operation: which key (the object read, the copy's
# source, the one a new object gets, the multipart upload's) and the action. As S3's API reference
# says for general purpose buckets: a new object or upload needs a data key; reading an object, or
# adding a part to an upload (S3 decrypts the upload's data key), needs Decrypt; so does a HEAD
# that asks for the object's checksum. CompleteMultipartUpload needs Decrypt on AWS only when the
# parts carry checksums: asked here always. A plain HEAD, deletes, listings, tagging and aborts
# need nothing of the key.
_S3_KMS: dict[str, tuple[tuple[str, str], ...]] = {
    "GetObject": (("object", "kms:Decrypt"),),
    "HeadObject+ChecksumMode": (("object", "kms:Decrypt"),),
    "PutObject": (("new", "kms:GenerateDataKey"),),
    "CopyObject": (("source", "kms:Decrypt"), ("new", "kms:GenerateDataKey")),
    "CreateMultipartUpload": (("new", "kms:GenerateDataKey"),),
    "UploadPart": (("upload", "kms:Decrypt"),),
    "UploadPartCopy": (("source", "kms:Decrypt"), ("upload", "kms:Decrypt")),
    "CompleteMultipartUpload": (("upload", "kms:Decrypt"),),
}


def s3_operation(request: Request) -> str | None:
    """The S3 object operation a request is, for those _S3_KMS names; None for the others."""
    bucket, key = s3_location(urlsplit(request.path).path)
    params = {name for name, _ in request.query}
    if not bucket or not key or params & set(_OBJECT_SUBRESOURCE_NAMES):
        return None
    copying = copy_source(request) is not None
    if request.method == "GET":
        return None if "uploadId" in params else "GetObject"
    if request.method == "HEAD":
        checksum = (request.header("x-amz-checksum-mode") or "").upper() == "ENABLED"
        return "HeadObject+ChecksumMode" if checksum else None
    if request.method == "PUT" and "uploadId" in params:
        return "UploadPartCopy" if copying else "UploadPart"
    if request.method == "PUT":
        return "CopyObject" if copying else "PutObject"
    if request.method == "POST" and "uploads" in params:
        return "CreateMultipartUpload"
    if request.method == "POST" and "uploadId" in params:
        return "CompleteMultipartUpload"
    return None


def _s3_kms(
    request: Request, keys: EncryptionKeys, region: str, account_id: str
) -> list[Requirement]:
    operation = s3_operation(request)
    if operation is None:
        return []
    bucket, key = s3_location(urlsplit(request.path).path)
    params = dict(request.query)

    def new_object() -> str | None:
        # The request's own SSE headers, else the bucket's default encryption.
        algorithm = request.header("x-amz-server-side-encryption")
        if algorithm is None:
            return keys.bucket_default(bucket)
        named = request.header("x-amz-server-side-encryption-aws-kms-key-id")
        if not algorithm.startswith("aws:kms") or named is None:
            return None  # AES256, or the AWS-managed aws/s3 key
        return key_arn(named, region=region, account_id=account_id)

    def which(kind: str) -> str | None:
        if kind == "object":
            return keys.object(bucket, key)
        if kind == "source":
            source = copy_source(request)
            return keys.object(*source) if source is not None else None
        if kind == "upload":
            return keys.multipart_upload(bucket, key, params.get("uploadId", ""))
        return new_object()

    needed: list[Requirement] = []
    for kind, action in _S3_KMS[operation]:
        arn = which(kind)
        if arn is not None and (action, arn) not in needed:
            needed.append((action, arn))
    return needed


# DynamoDB ----------------------------------------------------------------------------------------

_TRANSACT_WRITE = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}


def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError as exc:
        raise Unmapped(f"a JSON request with an unreadable body: {exc}") from exc
    if not isinstance(body, dict):
        raise Unmapped("a JSON request whose body is not an object")
    return body


def _operation(request: Request, prefix: str) -> str:
    target = request.header("x-amz-target") or ""
    if not target.startswith(prefix):
        raise Unmapped(f"X-Amz-Target {target!r}")
    return target[len(prefix) :]


def _dynamodb(request: Request, region: str, account_id: str) -> list[Requirement]:
    op = _operation(request, "DynamoDB_20120810.")
    body = _json_body(request)

    def table(name: str, index: str | None = None) -> str:
        arn = (
            name
            if name.startswith("arn:")
            else (f"arn:aws:dynamodb:{region}:{account_id}:table/{name}")
        )
        return f"{arn}/index/{index}" if index else arn

    if op == "TransactWriteItems":
        needed = []
        for item in body.get("TransactItems") or []:
            for kind, action in _TRANSACT_WRITE.items():
                if kind in item:
                    needed.append((action, table(item[kind]["TableName"])))
        return needed
    if op == "TransactGetItems":
        return [
            ("dynamodb:GetItem", table(item["Get"]["TableName"]))
            for item in body.get("TransactItems") or []
        ]
    if op in ("BatchGetItem", "BatchWriteItem"):
        return [(f"dynamodb:{op}", table(name)) for name in body.get("RequestItems") or {}]
    if op in ("ListTables", "DescribeLimits", "DescribeEndpoints"):
        return [(f"dynamodb:{op}", "*")]
    if isinstance(body.get("TableName"), str):
        return [(f"dynamodb:{op}", table(body["TableName"], body.get("IndexName")))]
    if isinstance(body.get("ResourceArn"), str):
        return [(f"dynamodb:{op}", body["ResourceArn"])]
    raise Unmapped(f"DynamoDB {op}")


# DynamoDB decrypts a KMS-encrypted table's key as the caller on every data-plane request.
_DYNAMODB_DATA_ACTIONS = frozenset(
    f"dynamodb:{op}"
    for op in (
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "ConditionCheckItem",
        "Query",
        "Scan",
        "BatchGetItem",
        "BatchWriteItem",
    )
)


def _dynamodb_kms(needed: Sequence[Requirement], keys: EncryptionKeys) -> list[Requirement]:
    extra: list[Requirement] = []
    for action, resource in needed:
        if action in _DYNAMODB_DATA_ACTIONS:
            arn = keys.table(resource.split("/index/", 1)[0])
            if arn is not None and ("kms:Decrypt", arn) not in extra:
                extra.append(("kms:Decrypt", arn))
    return extra


# SQS ---------------------------------------------------------------------------------------------

# Batch operations are authorized as the single-message action.
_SQS_ACTION = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def _sqs(request: Request, region: str, account_id: str) -> list[Requirement]:
    target = request.header("x-amz-target")
    if target is not None:
        op = _operation(request, "AmazonSQS.")
        params: dict[str, Any] = _json_body(request)
    else:
        form = dict(request.query)
        if "form-urlencoded" in (request.header("content-type") or ""):
            form.update(parse_qsl(request.body.decode(errors="replace"), keep_blank_values=True))
        op = form.get("Action", "")
        params = form
        if not op:
            raise Unmapped("an SQS request without an Action")
    action = "sqs:" + _SQS_ACTION.get(op, op)
    if op == "ListQueues":
        return [(action, "*")]
    if op in ("GetQueueUrl", "CreateQueue"):
        name = params.get("QueueName")
        owner = params.get("QueueOwnerAWSAccountId") or account_id
        if not isinstance(name, str):
            raise Unmapped(f"SQS {op} without a QueueName")
        return [(action, f"arn:aws:sqs:{region}:{owner}:{name}")]
    url = params.get("QueueUrl")
    path = urlsplit(url).path if isinstance(url, str) else urlsplit(request.path).path
    parts = [p for p in path.split("/") if p]
    if len(parts) != 2:
        raise Unmapped(f"SQS {op} without a queue URL")
    owner, name = parts
    return [(action, f"arn:aws:sqs:{region}:{owner}:{name}")]


# A producer of a KMS-encrypted queue needs a data key (and to decrypt a cached one); a consumer
# decrypts. The other operations touch no message.
_SQS_KMS: dict[str, tuple[str, ...]] = {
    "sqs:SendMessage": ("kms:GenerateDataKey", "kms:Decrypt"),
    "sqs:ReceiveMessage": ("kms:Decrypt",),
}


def _sqs_kms(needed: Sequence[Requirement], keys: EncryptionKeys) -> list[Requirement]:
    extra: list[Requirement] = []
    for action, resource in needed:
        arn = keys.queue(resource) if action in _SQS_KMS else None
        if arn is not None:
            extra += [(kms, arn) for kms in _SQS_KMS[action] if (kms, arn) not in extra]
    return extra


# Secrets Manager ---------------------------------------------------------------------------------


def _secretsmanager(
    request: Request, region: str, account_id: str, secret_arn: SecretLookup | None
) -> list[Requirement]:
    op = _operation(request, "secretsmanager.")
    body = _json_body(request)
    if op == "ListSecrets":
        return [("secretsmanager:ListSecrets", "*")]
    secret_id = body.get("SecretId") or (body.get("Name") if op == "CreateSecret" else None)
    if not isinstance(secret_id, str):
        raise Unmapped(f"Secrets Manager {op} without a SecretId")
    # IAM sees the secret's full ARN (with its random suffix) even when it is named by name.
    arn = secret_arn(secret_id) if secret_arn is not None else None
    if arn is None:
        arn = (
            secret_id
            if secret_id.startswith("arn:")
            else f"arn:aws:secretsmanager:{region}:{account_id}:secret:{secret_id}"
        )
    return [(f"secretsmanager:{op}", arn)]


# CloudWatch --------------------------------------------------------------------------------------

_CLOUDWATCH_TARGET = "GraniteServiceVersion20100801."
# rpc-v2-cbor, what botocore speaks now: the operation is in the path.
_CLOUDWATCH_RPC_PATH = re.compile(r"/service/GraniteServiceVersion20100801/operation/(\w+)")
# The metric reads and writes: none of them has resource-level permissions, "*" is the resource.
_CLOUDWATCH_ANY_RESOURCE = frozenset(
    {"GetMetricData", "GetMetricStatistics", "ListMetrics", "PutMetricData"}
)


def cloudwatch_operation(request: Request) -> str:
    """The operation of a CloudWatch request in any of its protocols: rpc-v2-cbor (the path),
    JSON (X-Amz-Target) or query (Action= in the form body or the query string)."""
    if match := _CLOUDWATCH_RPC_PATH.fullmatch(urlsplit(request.path).path):
        return match[1]
    if request.header("x-amz-target") is not None:
        return _operation(request, _CLOUDWATCH_TARGET)
    form = dict(request.query)
    if "form-urlencoded" in (request.header("content-type") or ""):
        form.update(parse_qsl(request.body.decode(errors="replace"), keep_blank_values=True))
    return form.get("Action", "")


def _cloudwatch(request: Request) -> list[Requirement]:
    op = cloudwatch_operation(request)
    if op not in _CLOUDWATCH_ANY_RESOURCE:
        raise Unmapped(f"CloudWatch {op or 'request without an operation'}")
    return [(f"cloudwatch:{op}", "*")]


# --- decisions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Denial:
    principal: Principal
    action: str
    resource: str
    explicit: bool

    @property
    def message(self) -> str:
        why = (
            "with an explicit deny in an identity-based policy"
            if self.explicit
            else (f"because no identity-based policy allows the {self.action} action")
        )
        return (
            f"User: {self.principal.arn} is not authorized to perform: {self.action} "
            f"on resource: {self.resource} {why}"
        )


def authorize(principal: Principal, needed: Iterable[Requirement]) -> Denial | None:
    """The first requirement the principal's policy does not allow, if any."""
    if principal.policy is None:
        return None
    for action, resource in needed:
        decision = principal.policy.decide(action, resource)
        if decision != "Allow":
            return Denial(principal, action, resource, decision == "ExplicitDeny")
    return None
