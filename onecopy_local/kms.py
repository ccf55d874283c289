"""KMS in the local stack: a customer-managed key for the template's KmsKeyArn, and which key
encrypts which resource, read from the emulator's own state.

moto encrypts nothing and checks no key permissions; it only remembers each resource's encryption
settings. The emulator's proxy (onecopy_local.iam) asks ``MotoKeys`` which key encrypts the bucket,
object, upload, table or queue a request touches, and requires of the caller what AWS would on
that key. moto runs in the emulator's process, so its backends are read directly: a lookup per
request costs a few dictionary reads, and the answer is always the resource's current setting.
"""

from __future__ import annotations

from typing import Any

from moto.dynamodb.models import dynamodb_backends
from moto.kms.models import kms_backends
from moto.s3.models import s3_backends
from moto.sqs.models import sqs_backends

from onecopy_local.iam import key_arn

KEY_DESCRIPTION = "onecopy-local: KmsKeyArn (bucket, tables, queues)"


def create_key(kms: Any) -> str:
    """A symmetric encryption key (what KmsKeyArn must name), created with ``kms`` (a boto3
    client of the emulator, as the operator); returns its ARN."""
    metadata = kms.create_key(
        Description=KEY_DESCRIPTION, KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT"
    )["KeyMetadata"]
    arn: str = metadata["Arn"]
    return arn


class MotoKeys:
    """onecopy_local.iam.EncryptionKeys from moto's backends, for one account and region."""

    def __init__(self, *, account_id: str, region: str) -> None:
        self.account_id = account_id
        self.region = region

    def _arn(self, key_id: Any) -> str | None:
        """The ARN of the key ``key_id`` names (by id, ARN or alias), as IAM sees it; None for
        none, or for a key AWS manages (moto creates aws/dynamodb's when a table asks for KMS
        without naming a key): those need no grant of the caller."""
        if not isinstance(key_id, str) or not key_id:
            return None
        named = key_arn(key_id, region=self.region, account_id=self.account_id)
        if named is None:
            return None
        backend = kms_backends[self.account_id][self.region]
        try:
            found = backend.keys.get(backend.any_id_to_key_id(named))
        except (KeyError, AttributeError):  # an alias that names no key
            found = None
        if found is None:
            return named if ":alias/" not in named else None
        if any(alias.startswith("alias/aws/") for alias in list(found.aliases)):
            return None
        arn: str = found.arn
        return arn

    def _bucket(self, name: str) -> Any:
        return s3_backends[self.account_id]["aws"].buckets.get(name)

    def bucket_default(self, bucket: str) -> str | None:
        found = self._bucket(bucket)
        rule = ((found.encryption or {}).get("Rule") or {}) if found is not None else {}
        default = rule.get("ApplyServerSideEncryptionByDefault") or {}
        if default.get("SSEAlgorithm") not in ("aws:kms", "aws:kms:dsse"):
            return None
        # Without KMSMasterKeyID, S3 uses the AWS-managed aws/s3 key.
        return self._arn(default.get("KMSMasterKeyID"))

    def object(self, bucket: str, key: str) -> str | None:
        found = self._bucket(bucket)
        stored = found.keys.get(key) if found is not None else None
        if getattr(stored, "encryption", None) not in ("aws:kms", "aws:kms:dsse"):
            return None
        return self._arn(getattr(stored, "kms_key_id", None))

    def multipart_upload(self, bucket: str, key: str, upload_id: str) -> str | None:
        found = self._bucket(bucket)
        upload = found.multiparts.get(upload_id) if found is not None else None
        if upload is None:
            return None
        if upload.sse_encryption is None:
            # S3 gives an upload the bucket's default encryption when it is created; moto
            # applies it only on completion.
            return self.bucket_default(bucket)
        if upload.sse_encryption not in ("aws:kms", "aws:kms:dsse"):
            return None
        return self._arn(upload.kms_key_id)

    def table(self, table_arn: str) -> str | None:
        name = table_arn.rsplit(":table/", 1)[-1]
        found = dynamodb_backends[self.account_id][self.region].tables.get(name)
        sse = (getattr(found, "sse_specification", None) or {}) if found is not None else {}
        if not sse.get("Enabled") or sse.get("SSEType") != "KMS":
            return None
        # SSEType KMS without a key id is the AWS-managed aws/dynamodb key.
        return self._arn(sse.get("KMSMasterKeyId"))

    def queue(self, queue_arn: str) -> str | None:
        name = queue_arn.rsplit(":", 1)[-1]
        found = sqs_backends[self.account_id][self.region].queues.get(name)
        return self._arn(getattr(found, "kms_master_key_id", None)) if found is not None else None
