"""Metadata, downloads, statistics and the hash list, through the API handler against moto."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

import boto3
import pytest

from tests.pipeline import Pipeline

pytestmark = pytest.mark.integration


@pytest.fixture
def pipe(aws: Any) -> Pipeline:
    return Pipeline(aws)


def _fetch(url: str, resources: Any) -> tuple[bytes, dict[str, list[str]]]:
    """GET a presigned URL's object through moto (it does not serve the URL itself in-process)."""
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    key = parsed.path.lstrip("/").removeprefix(f"{resources.bucket}/")
    obj = boto3.client("s3").get_object(Bucket=resources.bucket, Key=key)
    return obj["Body"].read(), query


def test_metadata_of_an_upload_and_of_its_content(pipe: Pipeline) -> None:
    # Given a stored file and a duplicate of it
    first = pipe.upload(b"quarterly report", "report.pdf")
    second = pipe.upload(b"quarterly report", "copy.pdf", declare=False)
    sha = first.body["sha256"]
    # When asking for each upload's metadata and the content's
    meta1 = pipe.call("GET", f"/metadata/{first.body['upload_id']}")
    meta2 = pipe.call("GET", f"/metadata/{second.body['upload_id']}")
    content = pipe.call("GET", f"/metadata/{sha}")
    # Then the uploads keep their own names and the content counts both
    assert meta1.status == 200 and meta1.body["duplicate"] is False
    assert meta1.body["filename"] == "report.pdf" and meta1.body["status"] == "STORED"
    assert meta2.body["duplicate"] is True and meta2.body["filename"] == "copy.pdf"
    assert meta2.body["sha256"] == sha == hashlib.sha256(b"quarterly report").hexdigest()
    assert content.status == 200
    assert content.body == {
        "sha256": sha,
        "size": len(b"quarterly report"),
        "content_type": "application/octet-stream",
        "filename": "report.pdf",
        "upload_id": first.body["upload_id"],
        "upload_count": 2,
        "created_at": content.body["created_at"],
    }
    assert content.body["created_at"] == meta1.body["completed_at"]


def test_what_an_owner_sees_of_a_content_is_theirs_alone(aws: Any) -> None:
    # Given a content alice uploaded twice, and bob once after her
    alice, bob = Pipeline(aws, owner="alice"), Pipeline(aws, owner="bob")
    data = b"a shared report"
    mine = alice.upload(data, "alice.pdf")
    alice.upload(data, "alice-again.pdf", declare=False)
    theirs = bob.upload(data, "bob.pdf", declare=False)
    sha = mine.body["sha256"]

    # When bob reads the content's metadata
    content = bob.call("GET", f"/metadata/{sha}")

    # Then he sees his upload of it, STORED (new to him), counted once, under his name
    assert theirs.body["status"] == "STORED"
    assert content.status == 200
    assert (content.body["upload_id"], content.body["filename"]) == (
        theirs.body["upload_id"],
        "bob.pdf",
    )
    assert content.body["upload_count"] == 1
    assert bob.call("GET", f"/metadata/{theirs.body['upload_id']}").body["duplicate"] is False
    assert bob.call("GET", f"/download/{sha}").body["filename"] == "bob.pdf"
    # And alice's uploads answer him as ids that never existed
    for path in ("metadata", "download"):
        reply = bob.call("GET", f"/{path}/{mine.body['upload_id']}")
        unknown = bob.call("GET", f"/{path}/{'f' * 32}")
        assert reply.status == unknown.status == 404
        assert (
            reply.body["message"].replace(mine.body["upload_id"], "f" * 32)
            == (unknown.body["message"])
        )
    assert alice.call("GET", f"/metadata/{sha}").body["upload_count"] == 2


def test_metadata_is_404_until_stored(pipe: Pipeline) -> None:
    created = pipe.create(b"not yet", "later.txt")
    assert pipe.call("GET", f"/metadata/{created.body['upload_id']}").status == 404
    assert pipe.call("GET", f"/metadata/{'0' * 64}").status == 404
    assert pipe.call("GET", f"/metadata/{'0' * 32}").status == 404


def test_hash_lookups_only_answer_owners_who_hold_the_content(aws: Any) -> None:
    alice, bob = Pipeline(aws, owner="alice"), Pipeline(aws, owner="bob")
    sha = alice.upload(b"alice's file").body["sha256"]
    assert alice.call("GET", f"/metadata/{sha}").status == 200
    # Bob learns nothing about whether Alice's content exists
    assert bob.call("GET", f"/metadata/{sha}").status == 404
    assert bob.call("GET", f"/download/{sha}").status == 404


def test_download_returns_the_shared_bytes_under_each_uploads_own_name(pipe: Pipeline) -> None:
    data = b"%PDF-1.7 shared bytes"
    first = pipe.upload(data, "original.pdf")
    dup = pipe.upload(data, "my copy é.pdf", declare=False)
    assert dup.body["status"] == "DUPLICATE"
    for upload, name in ((first, "original.pdf"), (dup, "my copy é.pdf")):
        reply = pipe.call("GET", f"/download/{upload.body['upload_id']}")
        assert reply.status == 200 and reply.body["filename"] == name
        body, query = _fetch(reply.body["url"], pipe.resources)
        assert body == data
        assert int(query["X-Amz-Expires"][0]) <= 900
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
        disposition = query["response-content-disposition"][0]
        assert disposition.startswith("attachment;")
        assert f"filename*=UTF-8''{quote(name, safe='')}" in disposition
        assert query["response-content-type"] == ["application/octet-stream"]
        assert urlparse(reply.body["url"]).path.endswith(f"cas/sha256/{upload.body['sha256']}")


def test_download_redirect(pipe: Pipeline) -> None:
    stored = pipe.upload(b"redirect me", "r.txt")
    reply = pipe.call("GET", f"/download/{stored.body['upload_id']}", query={"redirect": "true"})
    assert reply.status == 302
    assert reply.headers["Location"] == reply.body["url"]


def test_download_is_404_when_nothing_is_stored(pipe: Pipeline) -> None:
    created = pipe.create(b"pending", "p.txt")
    assert pipe.call("GET", f"/download/{created.body['upload_id']}").status == 404


def test_stats_equal_the_facts_after_a_mixed_run(pipe: Pipeline) -> None:
    # Given new, duplicate, pre-checked (409) and rejected uploads
    a, b = b"a" * 100, b"b" * 250
    assert pipe.upload(a).body["status"] == "STORED"
    assert pipe.upload(b).body["status"] == "STORED"
    assert pipe.upload(a, declare=False).body["status"] == "DUPLICATE"
    assert pipe.create(b).status == 409  # pre-check: nothing uploaded
    rejected = pipe.create(b"c" * 10)
    pipe.put(rejected.body["upload_id"], b"d" * 10)  # bytes differ from the declared hash
    pipe.drain()
    assert pipe.call("GET", f"/uploads/{rejected.body['upload_id']}").body["status"] == "REJECTED"
    # When an admin reads the statistics
    stats = pipe.as_admin().call("GET", "/admin/stats")
    # Then they count exactly what happened
    assert stats.status == 200
    assert stats.body == {
        "total_files": 2,
        "total_uploads": 4,
        "duplicates_avoided": 2,
        "total_s3_size_saved": 100 + 250,
        "total_bytes_stored": 100 + 250,
    }


def _walk(pipe: Pipeline, limit: int) -> list[str]:
    seen: list[str] = []
    token: str | None = None
    while True:
        query = {"limit": str(limit)} | ({"last_evaluated_key": token} if token else {})
        page = pipe.as_admin().call("GET", "/admin/hashes", query=query)
        assert page.status == 200, page.body
        assert len(page.body["items"]) <= limit
        seen += [item["sha256"] for item in page.body["items"]]
        token = page.body["last_evaluated_key"]
        if token is None:
            return seen


@pytest.mark.parametrize("limit", [1, 2, 7, 1000])
def test_hash_pages_return_every_hash_once(pipe: Pipeline, limit: int) -> None:
    expected = {pipe.upload(f"content {i}".encode()).body["sha256"] for i in range(9)}
    seen = _walk(pipe, limit)
    assert sorted(seen) == sorted(expected)


def test_hash_pages_while_uploads_continue(pipe: Pipeline) -> None:
    before = {pipe.upload(f"old {i}".encode()).body["sha256"] for i in range(6)}
    seen: list[str] = []
    token = None
    for i in range(100):
        query = {"limit": "2"} | ({"last_evaluated_key": token} if token else {})
        page = pipe.as_admin().call("GET", "/admin/hashes", query=query)
        seen += [item["sha256"] for item in page.body["items"]]
        pipe.upload(f"new {i}".encode())  # more content arrives between pages
        token = page.body["last_evaluated_key"]
        if token is None:
            break
    assert len(seen) == len(set(seen)), "a hash was listed twice"
    assert before <= set(seen), "a hash that existed throughout was missed"


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/admin/hashes", {"limit": "0"}),
        ("/admin/hashes", {"limit": "1001"}),
        ("/admin/hashes", {"limit": "-1"}),
        ("/admin/hashes", {"limit": "ten"}),
        ("/admin/hashes", {"last_evaluated_key": "not-a-token"}),
        (
            "/admin/hashes",
            {"last_evaluated_key": "eyJ2IjoxLCJhZnRlciI6IjAwIn0AAAAAAAAAAAAAAAAAAAAA"},
        ),
        ("/admin/hashes", {"last_evaluated_key": "x" * 600}),
        ("/metadata/xyz", None),
        ("/metadata/" + "A" * 64, None),
        ("/metadata/" + "0" * 63, None),
        ("/download/" + "g" * 32, None),
        ("/download/" + "0" * 32, {"redirect": "perhaps"}),
    ],
)
def test_malformed_ids_limits_and_tokens_are_4xx(
    pipe: Pipeline, path: str, query: dict[str, str] | None
) -> None:
    reply = pipe.as_admin().call("GET", path, query=query)
    assert 400 <= reply.status < 500
    assert isinstance(reply.body, dict) and reply.body["message"]


def test_a_token_edited_by_the_client_is_refused(pipe: Pipeline) -> None:
    for i in range(3):
        pipe.upload(f"tok {i}".encode())
    admin = pipe.as_admin()
    token = admin.call("GET", "/admin/hashes", query={"limit": "1"}).body["last_evaluated_key"]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    reply = admin.call("GET", "/admin/hashes", query={"limit": "1", "last_evaluated_key": tampered})
    assert reply.status == 400


def test_openapi_and_docs_are_served_without_a_token(aws: Any) -> None:
    anyone = Pipeline(aws, owner=None)
    spec = anyone.call("GET", "/openapi.json")
    assert spec.status == 200 and spec.body["openapi"].startswith("3.1")
    assert "/admin/hashes" in spec.body["paths"]
    docs = anyone.call("GET", "/docs")
    assert docs.status == 200 and "swagger" in str(docs.body).lower()
