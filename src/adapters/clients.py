"""boto3 clients, created once per process and reused by warm invocations.

Tests swap them with ``reset()`` after pointing the environment at moto. The endpoint comes from
boto3's own ``AWS_ENDPOINT_URL`` setting, so the local stack needs no code path of its own.
"""

from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

_RETRIES = Config(retries={"mode": "standard", "max_attempts": 5})


@cache
def s3() -> "S3Client":
    return boto3.client("s3", config=_RETRIES)


@cache
def s3_presigner() -> "S3Client":
    # SigV4 makes Content-Length, If-None-Match and x-amz-checksum-sha256 signed headers; boto3's
    # default presigning leaves the checksum unsigned in the query string, where S3 ignores it.
    return boto3.client("s3", config=_RETRIES.merge(Config(signature_version="s3v4")))


@cache
def dynamodb() -> "DynamoDBClient":
    return boto3.client("dynamodb", config=_RETRIES)


@cache
def sqs() -> Any:
    return boto3.client("sqs", config=_RETRIES)


@cache
def cloudwatch() -> Any:
    return boto3.client("cloudwatch", config=_RETRIES)


def reset() -> None:
    for factory in (s3, s3_presigner, dynamodb, sqs, cloudwatch):
        factory.cache_clear()
