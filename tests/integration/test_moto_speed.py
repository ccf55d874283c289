"""The emulator's DynamoDB transactions (onecopy_local.moto_speed): all or nothing, as moto's
own, without copying whole tables; checked over HTTP through the emulator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import backends
from moto.backends import get_backend

from onecopy_local.emulator import Emulator

pytestmark = pytest.mark.integration

REGION = "us-east-1"


@pytest.fixture(scope="module")
def ddb() -> Iterator[Any]:
    with Emulator(port=0) as running:
        yield boto3.client(
            "dynamodb",
            endpoint_url=running.endpoint_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


def _table(ddb: Any, *, sort_key: bool = False) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    keys = [("pk", "HASH"), *([("sk", "RANGE")] if sort_key else [])]
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": a, "KeyType": t} for a, t in keys],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a, _ in keys],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def _items(ddb: Any, table: str) -> list[dict[str, Any]]:
    return sorted(ddb.scan(TableName=table)["Items"], key=str)


def _fails(table: str) -> dict[str, Any]:
    """A transaction part whose condition fails: it requires an item that is not there."""
    return {
        "ConditionCheck": {
            "TableName": table,
            "Key": {"pk": {"S": "absent"}},
            "ConditionExpression": "attribute_exists(pk)",
        }
    }


def test_a_cancelled_transaction_changes_nothing_it_named(ddb: Any) -> None:
    # Given two tables, one with a sort key, and items in both
    plain, sorted_ = _table(ddb), _table(ddb, sort_key=True)
    ddb.put_item(TableName=plain, Item={"pk": {"S": "kept"}, "n": {"N": "1"}})
    ddb.put_item(TableName=plain, Item={"pk": {"S": "gone"}})
    ddb.put_item(TableName=sorted_, Item={"pk": {"S": "a"}, "sk": {"S": "1"}, "n": {"N": "1"}})
    before = (_items(ddb, plain), _items(ddb, sorted_))

    # When a transaction that puts, updates and deletes fails on its last condition
    with pytest.raises(ClientError) as cancelled:
        ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": plain, "Item": {"pk": {"S": "new"}}}},
                {
                    "Update": {
                        "TableName": plain,
                        "Key": {"pk": {"S": "kept"}},
                        "UpdateExpression": "SET n = n + :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
                {"Delete": {"TableName": plain, "Key": {"pk": {"S": "gone"}}}},
                {"Put": {"TableName": sorted_, "Item": {"pk": {"S": "a"}, "sk": {"S": "2"}}}},
                {
                    "Update": {
                        "TableName": sorted_,
                        "Key": {"pk": {"S": "a"}, "sk": {"S": "1"}},
                        "UpdateExpression": "SET n = :two",
                        "ExpressionAttributeValues": {":two": {"N": "2"}},
                    }
                },
                _fails(plain),
            ]
        )

    # Then it is cancelled with the failing part's reason, and both tables are as they were
    error = cancelled.value.response
    assert error["Error"]["Code"] == "TransactionCanceledException"
    reasons = [r["Code"] for r in error["CancellationReasons"]]
    assert reasons == ["None"] * 5 + ["ConditionalCheckFailed"]
    assert (_items(ddb, plain), _items(ddb, sorted_)) == before


def test_a_transaction_that_succeeds_applies_every_part(ddb: Any) -> None:
    # Given a table with one item
    table = _table(ddb)
    ddb.put_item(TableName=table, Item={"pk": {"S": "old"}})

    # When a transaction puts one item and deletes the other
    ddb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": table, "Item": {"pk": {"S": "new"}}}},
            {
                "Delete": {
                    "TableName": table,
                    "Key": {"pk": {"S": "old"}},
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
        ]
    )

    # Then both happened
    assert _items(ddb, table) == [{"pk": {"S": "new"}}]


def test_the_tables_are_not_copied(ddb: Any) -> None:
    # Given a table, as moto holds it
    name = _table(ddb)
    backend = get_backend("dynamodb")["123456789012"][REGION]
    held = backend.tables[name]

    # When a transaction on it fails
    with pytest.raises(ClientError):
        ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": name, "Item": {"pk": {"S": "x"}}}},
                _fails(name),
            ]
        )

    # Then moto still holds the same table object (no copy was made and put back), unchanged
    assert backend.tables[name] is held
    assert _items(ddb, name) == []


def test_the_services_moto_serves_are_listed_once(ddb: Any) -> None:
    # Given the emulator started (it installs the patches)
    # When moto's server looks up which services it has, twice
    first, second = backends.list_of_moto_modules(), backends.list_of_moto_modules()

    # Then it gets the same list, with the services the stack uses, without listing again
    assert first is second
    assert {"s3", "dynamodb", "sqs", "kms", "cognitoidp"} <= set(first)


def test_user_pools_share_moto_s_signing_key_parsed_once() -> None:
    from joserfc import jwk
    from moto import mock_aws
    from moto.cognitoidp.models import cognitoidp_backends
    from moto.utilities.utils import load_resource

    from onecopy_local import moto_speed

    # Given the shared key in place (the local stack and the tests' moto install it)
    moto_speed.share_user_pool_key()
    with mock_aws():
        # When two user pools are created
        cognito = boto3.client("cognito-idp", region_name=REGION)
        ids = [cognito.create_user_pool(PoolName=f"pool-{n}")["UserPool"]["Id"] for n in (1, 2)]
        pools = cognitoidp_backends["123456789012"][REGION].user_pools
        keys = [pools[pool_id].json_web_key for pool_id in ids]

    # Then both sign with one parsed key, the one moto bundles, as each would have parsed it
    assert keys[0] is keys[1]
    bundled = jwk.RSAKey.import_key(load_resource("cognitoidp/resources/jwks-private.json"))
    assert keys[0].as_dict(private=True) == bundled.as_dict(private=True)
