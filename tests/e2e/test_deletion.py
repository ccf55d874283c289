"""Deleting uploads over HTTP, and the collector racing a re-upload of what it is removing.

A stack of its own whose grace period is 0 (`--collection-grace 0`): a content is collectable the
moment its last reference goes, so every collector run (CollectorFunction, invoked at the stack's
Lambda endpoint) races whatever upload of the same bytes is in flight. Its state is shared by the
tests of this module only; each uses fresh random content, compares counters before and after,
and ends with the oracles: GET /admin/stats against the facts the owners' listings give, and
ReconcileFunction's recount.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from onecopy_local.resources import parameter_default
from tests.invariants import check_invariants, read_state
from tests.localstack import (
    RunningStack,
    create_upload,
    object_exists,
    put_bytes,
    sha256_hex,
    start_stack,
    upload,
    wait_for_terminal,
)

pytestmark = pytest.mark.e2e

RACES = 20
COUNTERS = (
    "total_files",
    "total_uploads",
    "duplicates_avoided",
    "total_s3_size_saved",
    "total_bytes_stored",
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with start_stack(tmp_path_factory.mktemp("deletion"), "--collection-grace", "0") as running:
        yield running


# --- a client's moves, and the oracles ---------------------------------------------------------


def _call(stack: RunningStack, user: str, method: str, path: str) -> requests.Response:
    return requests.request(method, stack.api_url + path, headers=stack.auth(user), timeout=30)


def _download(stack: RunningStack, user: str, identifier: str) -> bytes:
    """GET /download/{id}, then GET the presigned URL it gives: the bytes."""
    found = _call(stack, user, "GET", f"/download/{identifier}")
    assert found.status_code == 200, found.text
    got = requests.get(found.json()["url"], timeout=30)
    assert got.status_code == 200, got.text
    return got.content


def _delete(stack: RunningStack, user: str, upload_id: str) -> None:
    deleted = _call(stack, user, "DELETE", f"/uploads/{upload_id}")
    assert deleted.status_code == 204, deleted.text
    assert deleted.content == b""


def _collect(stack: RunningStack) -> dict[str, Any]:
    report: dict[str, Any] = stack.invoke("CollectorFunction")
    assert report["complete"] is True
    return report


def _stats(stack: RunningStack) -> dict[str, int]:
    response = _call(stack, "admin", "GET", "/admin/stats")
    assert response.status_code == 200, response.text
    stats: dict[str, int] = response.json()
    return stats


def _listing(stack: RunningStack, user: str) -> list[dict[str, Any]]:
    """Every upload ``user`` can list, newest first."""
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        path = "/uploads?limit=1000" + (f"&last_evaluated_key={token}" if token else "")
        page = _call(stack, user, "GET", path)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        token = page.json()["last_evaluated_key"]
        if token is None:
            return items


def _resources(stack: RunningStack) -> SimpleNamespace:
    """What tests.invariants reads: the bucket and the tables."""
    return SimpleNamespace(
        bucket=stack.bucket,
        uploads_table=stack.uploads_table,
        contents_table=stack.contents_table,
        holdings_table=stack.holdings_table,
        stats_table=stack.stats_table,
        stats_shards=int(parameter_default("StatsShards")),
    )


def _state(stack: RunningStack) -> Any:
    return read_state(_resources(stack), stack.client("s3"), stack.client("dynamodb"))


def _assert_counters_and_recount_agree(stack: RunningStack) -> None:
    """The admin counters (but the cumulative duplicates) are what alice's and bob's live uploads
    make them; ReconcileFunction finds them clean; every stored invariant holds."""
    held = [
        item
        for user in ("alice", "bob")
        for item in _listing(stack, user)
        if item["status"] in ("STORED", "DUPLICATE")
    ]
    sizes = {item["sha256"]: item["size"] for item in held}
    stats = _stats(stack)
    assert {k: v for k, v in stats.items() if k != "duplicates_avoided"} == {
        "total_files": len(sizes),
        "total_uploads": len(held),
        "total_s3_size_saved": sum(item["size"] for item in held) - sum(sizes.values()),
        "total_bytes_stored": sum(sizes.values()),
    }
    report = stack.invoke("ReconcileFunction", {"repair": False})
    assert report["clean"] is True, report
    assert report["counters"] == report["facts"]
    assert report["facts"]["duplicates"] == stats["duplicates_avoided"]
    check_invariants(_resources(stack), stack.client("s3"), stack.client("dynamodb"))


def _diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in COUNTERS}


def _same_404(mine: requests.Response, my_id: str, unknown: requests.Response, other: str) -> None:
    """``mine`` is the 404 an id that never existed gets (up to the id itself)."""
    assert mine.status_code == unknown.status_code == 404, (mine.text, unknown.text)
    assert mine.text.replace(my_id, "<id>") == unknown.text.replace(other, "<id>")


# --- deleting ----------------------------------------------------------------------------------


def test_a_grace_shorter_than_sam_deploy_accepts_is_warned_about(stack: RunningStack) -> None:
    # The template refuses a grace under 900 s (a stalled worker must be dead before its content
    # can be collected); the local stack allows it for tests like these, and says so.
    assert (
        "WARNING: --collection-grace 0 is below the 900 s that sam deploy accepts"
        in (stack.log().split("Ready.")[0])
    )


def test_a_deleted_upload_answers_404_everywhere(stack: RunningStack) -> None:
    # Given an upload of alice's, the only reference to its content
    data = os.urandom(4000)
    view = upload(stack.api_url, data, headers=stack.auth("alice"))
    upload_id, digest = view["upload_id"], sha256_hex(data)
    assert view["status"] == "STORED"
    assert sha256_hex(_download(stack, "alice", upload_id)) == digest
    before = _stats(stack)

    # When she deletes it
    _delete(stack, "alice", upload_id)

    # Then the upload, its metadata and its download answer as an id that never existed, and
    # so does the content she no longer holds; deleting it again is a 404 too
    never = uuid.uuid4().hex
    for path in ("/uploads/{}", "/metadata/{}", "/download/{}", "/download/{}?redirect=true"):
        _same_404(
            _call(stack, "alice", "GET", path.format(upload_id)),
            upload_id,
            _call(stack, "alice", "GET", path.format(never)),
            never,
        )
    for path in ("/metadata/{}", "/download/{}"):
        assert _call(stack, "alice", "GET", path.format(digest)).status_code == 404
    again = _call(stack, "alice", "DELETE", f"/uploads/{upload_id}")
    _same_404(again, upload_id, _call(stack, "alice", "DELETE", f"/uploads/{never}"), never)

    # ... the counters lost the upload, the content and its bytes (not the cumulative
    # duplicates), and her listing does not show it
    assert _diff(_stats(stack), before) == {
        "total_files": -1,
        "total_uploads": -1,
        "duplicates_avoided": 0,
        "total_s3_size_saved": 0,
        "total_bytes_stored": -len(data),
    }
    assert upload_id not in {item["upload_id"] for item in _listing(stack, "alice")}

    # ... and the collector removes the object nobody references any more
    assert _collect(stack)["collected"] >= 1
    assert not object_exists(stack, f"cas/sha256/{digest}")
    _assert_counters_and_recount_agree(stack)


def test_deleting_a_duplicate_keeps_the_content_until_its_last_reference_goes(
    stack: RunningStack,
) -> None:
    # Given alice's content uploaded twice (STORED, then DUPLICATE) and bob's upload of it
    data = os.urandom(3000)
    digest = sha256_hex(data)
    before = _stats(stack)
    stored = upload(stack.api_url, data, declare_sha256=False, headers=stack.auth("alice"))
    duplicate = upload(stack.api_url, data, declare_sha256=False, headers=stack.auth("alice"))
    bobs = upload(stack.api_url, data, declare_sha256=False, headers=stack.auth("bob"))
    assert [stored["status"], duplicate["status"], bobs["status"]] == [
        "STORED",
        "DUPLICATE",
        "STORED",
    ]
    size = len(data)

    # When alice deletes the upload that stored it, and the collector runs
    _delete(stack, "alice", stored["upload_id"])
    _collect(stack)

    # Then her duplicate and bob's upload still download the bytes; she still holds the content
    assert sha256_hex(_download(stack, "alice", duplicate["upload_id"])) == digest
    assert sha256_hex(_download(stack, "bob", bobs["upload_id"])) == digest
    assert _call(stack, "alice", "GET", f"/metadata/{digest}").status_code == 200
    assert _diff(_stats(stack), before) == {
        "total_files": 1,
        "total_uploads": 2,
        "duplicates_avoided": 2,
        "total_s3_size_saved": size,
        "total_bytes_stored": size,
    }

    # When alice deletes her last upload of it: bob still references it
    _delete(stack, "alice", duplicate["upload_id"])
    _collect(stack)
    assert _call(stack, "alice", "GET", f"/metadata/{digest}").status_code == 404
    assert sha256_hex(_download(stack, "bob", bobs["upload_id"])) == digest

    # When bob deletes the last reference and the collector runs
    _delete(stack, "bob", bobs["upload_id"])
    assert object_exists(stack, f"cas/sha256/{digest}")  # until the collector comes
    _collect(stack)

    # Then the object is gone; the counters are back where they were, but the two duplicates
    # avoided, which deleting does not undo
    assert not object_exists(stack, f"cas/sha256/{digest}")
    assert _diff(_stats(stack), before) == {
        "total_files": 0,
        "total_uploads": 0,
        "duplicates_avoided": 2,
        "total_s3_size_saved": 0,
        "total_bytes_stored": 0,
    }
    _assert_counters_and_recount_agree(stack)


def test_another_owners_delete_answers_404_and_changes_nothing(stack: RunningStack) -> None:
    # Given an upload of alice's
    data = os.urandom(2500)
    view = upload(stack.api_url, data, headers=stack.auth("alice"))
    upload_id = view["upload_id"]
    snapshot = _state(stack)
    never = uuid.uuid4().hex

    # When bob, and the admin (a user like any other here), try to delete it
    for user in ("bob", "admin"):
        answer = _call(stack, user, "DELETE", f"/uploads/{upload_id}")

        # Then each gets the 404 of an id that never existed, and nothing stored changed
        _same_404(answer, upload_id, _call(stack, user, "DELETE", f"/uploads/{never}"), never)
    assert _state(stack) == snapshot

    # ... alice still has her upload and its bytes
    assert _call(stack, "alice", "GET", f"/uploads/{upload_id}").json() == view
    assert sha256_hex(_download(stack, "alice", upload_id)) == sha256_hex(data)


def test_deleting_a_pending_upload_aborts_it_then_deletes_it(stack: RunningStack) -> None:
    # Given an upload whose bytes never came
    data = os.urandom(1500)
    created = create_upload(stack.api_url, data, headers=stack.auth("alice"))
    assert created.status_code == 201, created.text
    upload_id = created.json()["upload_id"]
    before = _stats(stack)

    # When alice deletes it: it is aborted (REJECTED, reason aborted), still listed
    _delete(stack, "alice", upload_id)
    view = _call(stack, "alice", "GET", f"/uploads/{upload_id}").json()
    assert (view["status"], view["reason"]) == ("REJECTED", "aborted")
    assert upload_id in {item["upload_id"] for item in _listing(stack, "alice")}

    # When she deletes it again: it is gone
    _delete(stack, "alice", upload_id)
    assert _call(stack, "alice", "GET", f"/uploads/{upload_id}").status_code == 404
    assert _call(stack, "alice", "DELETE", f"/uploads/{upload_id}").status_code == 404
    assert upload_id not in {item["upload_id"] for item in _listing(stack, "alice")}

    # ... and no counter moved
    assert _stats(stack) == before
    assert not object_exists(stack, f"cas/sha256/{sha256_hex(data)}")


# --- the collector racing a re-upload ------------------------------------------------------------


def _race(
    stack: RunningStack, user: str, data: bytes, *, offset: float | None, declare: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Re-upload ``data`` as ``user`` while the collector runs: the PUT goes ``offset`` seconds
    after the collector is invoked (before it, if negative). ``offset`` None: the collector runs
    only once the re-upload is terminal; +inf: the PUT waits for the collector's answer.
    Returns the re-upload's terminal view and the collector's report."""
    created = create_upload(stack.api_url, data, declare_sha256=declare, headers=stack.auth(user))
    assert created.status_code == 201, created.text
    body = created.json()
    with ThreadPoolExecutor(1) as pool:
        collecting: Future[dict[str, Any]] | None = None
        if offset is not None and offset >= 0:
            collecting = pool.submit(_collect, stack)
            if offset == float("inf"):
                collecting.result()
            else:
                time.sleep(offset)
        put = put_bytes(body["upload"], data)
        assert put.status_code == 200, put.text
        if offset is not None and offset < 0:
            time.sleep(-offset)
            collecting = pool.submit(_collect, stack)
        view = wait_for_terminal(stack.api_url, body["upload_id"], 60, headers=stack.auth(user))
        if collecting is None:
            collecting = pool.submit(_collect, stack)
        report = collecting.result()
    return view, report


def test_a_reupload_racing_the_collector_ends_stored_and_downloads(stack: RunningStack) -> None:
    # Given nothing left to collect, and 20 interleavings of the collector with a re-upload: the
    # two ends (the re-upload finishes first; the collector finishes first) and, in between, the
    # re-upload's PUT from 0.5 s before the collector is invoked to 0.4 s after, densest around
    # the moment of the invocation, where the outcome flips locally
    _collect(stack)
    between = [-0.5, -0.3, -0.2, -0.12, -0.08, -0.05, -0.03, -0.01, 0.0]
    between += [0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.25, 0.4]
    assert len(between) == RACES - 2
    offsets: list[float | None] = [None, float("inf"), *between]
    before = _stats(stack)
    revived = collected = 0
    stored_bytes = 0
    outcomes = []

    for n, offset in enumerate(offsets):
        # Given an upload of alice's, then deleted: its content is now unreferenced, and
        # collectable at once
        data = os.urandom(1000 + n)
        digest = sha256_hex(data)
        first = upload(stack.api_url, data, declare_sha256=False, headers=stack.auth("alice"))
        assert first["status"] == "STORED"
        _delete(stack, "alice", first["upload_id"])

        # When the same bytes are uploaded again (by bob in every third race) while the
        # collector runs
        user = "bob" if n % 3 == 2 else "alice"
        view, report = _race(stack, user, data, offset=offset, declare=n % 2 == 0)

        # Then the re-upload ends STORED and its download gives the bytes
        where = f"race {n} (offset {offset}, {user}): {view} {report}"
        assert view["status"] == "STORED", where
        assert view["sha256"] == digest, where
        assert sha256_hex(_download(stack, user, view["upload_id"])) == digest, where
        # ... the collector either removed the object before the bytes came back (then they
        # were stored anew) or found the content referenced again: nothing else was collectable
        assert report["collected"] in (0, 1), where
        if offset is None:
            assert report["collected"] == 0, where
        if offset == float("inf"):
            assert report["collected"] == 1, where
        collected += report["collected"]
        outcomes.append(f"{offset}:{'collected' if report['collected'] else 'revived'}")
        revived += 1 - report["collected"]
        stored_bytes += len(data)
        # ... and the content survives the next run too
        assert _collect(stack)["collected"] == 0, where
        assert object_exists(stack, f"cas/sha256/{digest}"), where
        assert sha256_hex(_download(stack, user, digest)) == digest, where

    print(f"\n{collected} races collected the object first, {revived} revived the content")
    print("PUT offset from the collector's invocation (s): outcome", *outcomes)
    # Then the counters count each re-upload once, as a held content; a revival (bytes referenced
    # again without a copy) is a duplicate avoided, a new copy is not
    assert _diff(_stats(stack), before) == {
        "total_files": RACES,
        "total_uploads": RACES,
        "duplicates_avoided": revived,
        "total_s3_size_saved": 0,
        "total_bytes_stored": stored_bytes,
    }
    _assert_counters_and_recount_agree(stack)


# --- erasing an owner --------------------------------------------------------------------------


def test_an_admin_erases_one_owners_uploads_and_no_one_elses(stack: RunningStack) -> None:
    # Given uploads of alice's and bob's, one content held by both, and one of bob's pending
    shared, alices_own, bobs_own = os.urandom(1200), os.urandom(1300), os.urandom(1400)
    alice_views = [
        upload(stack.api_url, data, declare_sha256=False, headers=stack.auth("alice"))
        for data in (shared, alices_own, alices_own)
    ]
    for data in (shared, bobs_own, bobs_own):
        upload(stack.api_url, data, declare_sha256=False, headers=stack.auth("bob"))
    pending = create_upload(stack.api_url, os.urandom(100), headers=stack.auth("bob"))
    assert pending.status_code == 201, pending.text
    bobs = _listing(stack, "bob")
    alices = _listing(stack, "alice")
    assert pending.json()["upload_id"] in {item["upload_id"] for item in bobs}
    alice_sub, bob_sub = stack.sub("alice"), stack.sub("bob")
    snapshot = _state(stack)

    # When bob or alice call the erase route, for each other or themselves: 403, nothing changes
    for user, owner in (("bob", alice_sub), ("bob", bob_sub), ("alice", bob_sub)):
        refused = _call(stack, user, "POST", f"/admin/owners/{owner}/erase")
        assert refused.status_code == 403, refused.text
    assert _state(stack) == snapshot

    # When an admin erases bob, calling until done
    answers = []
    for _ in range(10):
        answer = _call(stack, "admin", "POST", f"/admin/owners/{bob_sub}/erase")
        assert answer.status_code == 200, answer.text
        answers.append(answer.json())
        if answers[-1]["done"]:
            break
    assert answers[-1]["done"] is True, answers

    # Then every upload bob had is gone (the pending one aborted on the way), his listing is
    # empty, and he holds nothing
    assert all(a["owner"] == bob_sub for a in answers)
    assert sum(a["deleted"] for a in answers) == len(bobs)
    assert sum(a["aborted"] for a in answers) == sum(i["status"] == "PENDING" for i in bobs)
    assert _listing(stack, "bob") == []
    for item in bobs:
        assert _call(stack, "bob", "GET", f"/uploads/{item['upload_id']}").status_code == 404
    for data in (shared, bobs_own):
        assert _call(stack, "bob", "GET", f"/metadata/{sha256_hex(data)}").status_code == 404

    # ... alice's uploads are untouched and still download, the shared content included
    assert _listing(stack, "alice") == alices
    for view, data in zip(alice_views, (shared, alices_own, alices_own), strict=True):
        assert sha256_hex(_download(stack, "alice", view["upload_id"])) == sha256_hex(data)

    # ... a second erasure finds nothing to do
    again = _call(stack, "admin", "POST", f"/admin/owners/{bob_sub}/erase").json()
    assert (again["deleted"], again["done"]) == (0, True)

    # ... and the collector removes what only bob referenced, not what alice still holds
    _collect(stack)
    assert not object_exists(stack, f"cas/sha256/{sha256_hex(bobs_own)}")
    assert object_exists(stack, f"cas/sha256/{sha256_hex(shared)}")
    _assert_counters_and_recount_agree(stack)


def test_the_contents_left_in_the_bucket_are_exactly_those_live_uploads_reference(
    stack: RunningStack,
) -> None:
    # After everything above and one more collector run, every object under cas/ is the content
    # of a live upload, and every live upload's content is there
    _collect(stack)
    live = {
        item["sha256"]
        for user in ("alice", "bob")
        for item in _listing(stack, user)
        if item["status"] in ("STORED", "DUPLICATE")
    }
    keys = set(_state(stack).keys("cas/"))
    assert keys == {f"cas/sha256/{digest}" for digest in live}
    for key in keys:
        body = stack.client("s3").get_object(Bucket=stack.bucket, Key=key)["Body"].read()
        assert f"cas/sha256/{hashlib.sha256(body).hexdigest()}" == key
