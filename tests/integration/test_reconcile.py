"""Reconciliation recounts the counters from the tables, reports drift and repairs it."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from domain.model import StatsDelta
from tests.conftest import load_event
from tests.pipeline import FakeContext, Pipeline

pytestmark = pytest.mark.integration


def _reconcile(event_name: str) -> dict[str, Any]:
    from handlers import reconcile

    result: dict[str, Any] = reconcile.lambda_handler(load_event(event_name), FakeContext())
    return result


@pytest.fixture
def mixed_run(aws: Any) -> Pipeline:
    pipe = Pipeline(aws)
    pipe.upload(b"x" * 10)
    pipe.upload(b"y" * 20)
    pipe.upload(b"x" * 10, declare=False)
    assert pipe.create(b"y" * 20).status == 409
    return pipe


def test_counters_kept_by_the_pipeline_need_no_repair(mixed_run: Pipeline) -> None:
    result = _reconcile("reconcile_scheduled.json")
    assert result["clean"] is True and result["repaired"] is False
    assert (
        result["facts"]
        == result["counters"]
        == {"files": 2, "uploads": 4, "duplicates": 2, "bytes_saved": 30, "bytes_stored": 30}
    )


def test_drift_is_reported_then_repaired(mixed_run: Pipeline) -> None:
    # Given counters knocked off the facts (a manual edit, a bug)
    ddb = boto3.client("dynamodb")
    ddb.update_item(
        TableName=mixed_run.resources.stats_table,
        Key={"shard": {"N": "3"}},
        UpdateExpression="ADD files :f, bytes_saved :b",
        ExpressionAttributeValues={":f": {"N": "5"}, ":b": {"N": "-7"}},
    )
    ddb.update_item(
        TableName=mixed_run.resources.contents_table,
        Key={"sha256": {"S": mixed_run.upload(b"y" * 20, declare=False).body["sha256"]}},
        UpdateExpression="SET upload_count = :n",
        ExpressionAttributeValues={":n": {"N": "99"}},
    )
    # When the daily run reports
    report = _reconcile("reconcile_scheduled.json")
    # Then it names the drift and changes nothing
    assert report["clean"] is False and report["repaired"] is False
    assert report["drift"]["files"] == -5 and report["drift"]["bytes_saved"] == 7
    assert list(report["upload_count_mismatches"].values()) == [{"recorded": 99, "found": 3}]
    assert _reconcile("reconcile_scheduled.json")["drift"] == report["drift"]
    # When asked to repair
    repaired = _reconcile("reconcile_repair.json")
    # Then the counters equal the facts again, and the API shows them
    assert repaired["repaired"] is True
    after = _reconcile("reconcile_scheduled.json")
    assert after["clean"] is True
    stats = mixed_run.as_admin().call("GET", "/admin/stats").body
    assert stats["total_files"] == 2 and stats["total_s3_size_saved"] == 50


def test_matches_across_owners_count_as_duplicates_and_holdings_are_checked(aws: Any) -> None:
    from handlers import wiring
    from service.reconcile import reconcile

    # Given alice's content, matched by bob's upload of the same bytes (STORED for him)
    sha = Pipeline(aws).upload(b"x" * 10).body["sha256"]
    assert Pipeline(aws, owner="bob").upload(b"x" * 10).body["status"] == "STORED"
    ledger = wiring.ledger()
    clean = reconcile(ledger, repair=False).recount
    assert clean.clean
    assert clean.facts == StatsDelta(
        files=1, uploads=2, duplicates=1, bytes_saved=10, bytes_stored=10
    )
    # Given a holding's count knocked off, and another holding lost
    ledger.set_holding_count("bob", sha, 5)
    boto3.client("dynamodb").delete_item(
        TableName=aws.holdings_table, Key={"owner": {"S": "alice"}, "sha256": {"S": sha}}
    )
    # When reconciliation reports, then repairs
    report = reconcile(ledger, repair=False).recount
    repaired = reconcile(ledger, repair=True)
    # Then both are named; the count is repaired, the lost holding only reported
    assert report.holding_counts == {("bob", sha): (5, 1), ("alice", sha): (None, 1)}
    assert not report.clean and repaired.repaired
    assert reconcile(ledger, repair=False).recount.holding_counts == {("alice", sha): (None, 1)}


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"repair": "maybe"}, "invalid request: repair: Input should be a valid boolean"),
        ([], "invalid request: Input should be a valid dictionary"),
        ("repair", "invalid request: Input should be a valid dictionary"),
    ],
)
def test_a_malformed_request_is_answered_and_nothing_is_recounted(
    aws: Any, event: Any, message: str
) -> None:
    from handlers import reconcile

    result = reconcile.lambda_handler(event, FakeContext())

    assert result["message"].startswith(message)
    assert "clean" not in result  # so `onecopy admin reconcile` reports it as no report
