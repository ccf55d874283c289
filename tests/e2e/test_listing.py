"""GET /uploads over HTTP: each owner lists exactly their own live uploads, newest first, a page
at a time, with filters, and page tokens that only their owner can use.

A stack of its own: the session's stack holds uploads of alice's from other tests, and "exactly
her uploads" needs a stack where the test knows every one of them.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.localstack import RunningStack, create_upload, start_stack, upload

pytestmark = pytest.mark.e2e

ALICE_UPLOADS = 23
BOB_UPLOADS = 5


@dataclass(frozen=True)
class Listed:
    """What the test created, by owner, in creation order: (upload_id, filename, status)."""

    alice: list[tuple[str, str, str]]
    bob: list[tuple[str, str, str]]

    def newest_first(self, user: str, **filters: str) -> list[str]:
        """The ids ``user``'s listing must give with these filters (status, prefix)."""
        created = self.alice if user == "alice" else self.bob
        return [
            upload_id
            for upload_id, filename, status in reversed(created)
            if filters.get("status", status) == status
            and filename.startswith(filters.get("prefix", ""))
        ]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with start_stack(tmp_path_factory.mktemp("listing")) as running:
        yield running


def _create(stack: RunningStack, user: str, data: bytes, filename: str) -> tuple[str, str, str]:
    """One upload in the state its name asks for: ``pending-*`` gets no bytes, ``aborted-*`` is
    aborted (REJECTED), any other completes (STORED, or DUPLICATE for bytes the owner holds)."""
    if filename.startswith(("pending-", "aborted-")):
        created = create_upload(stack.api_url, data, filename=filename, headers=stack.auth(user))
        assert created.status_code == 201, created.text
        upload_id: str = created.json()["upload_id"]
        if filename.startswith("pending-"):
            return upload_id, filename, "PENDING"
        aborted = _call(stack, user, "DELETE", f"/uploads/{upload_id}")
        assert aborted.status_code == 204, aborted.text
        view = _call(stack, user, "GET", f"/uploads/{upload_id}").json()
        assert (view["status"], view["reason"]) == ("REJECTED", "aborted")
        return upload_id, filename, "REJECTED"
    view = upload(
        stack.api_url, data, filename=filename, declare_sha256=False, headers=stack.auth(user)
    )
    return view["upload_id"], filename, view["status"]


@pytest.fixture(scope="module")
def listed(stack: RunningStack) -> Listed:
    # Given 23 uploads of alice's in every state (STORED, DUPLICATE, PENDING, REJECTED), named
    # under a few prefixes (one inside another: report-copy-, report-), and 5 of bob's, some
    # under the same names and bytes as hers
    shared = os.urandom(700)
    alice_names = [
        *(f"report-{n:02}.txt" for n in range(8)),
        *(f"photo-{n:02}.jpg" for n in range(8)),
        *(f"pending-{n:02}.bin" for n in range(3)),
        *(f"aborted-{n:02}.bin" for n in range(2)),
        *(f"report-copy-{n:02}.txt" for n in range(2)),
    ]
    assert len(alice_names) == ALICE_UPLOADS
    # Bob's uploads go in between hers, so that the index holds them side by side; his last
    # repeats his first's bytes (a DUPLICATE)
    bob_jobs = iter(
        [
            (shared, "report-00.txt"),
            (os.urandom(321), "report-bob.txt"),
            (os.urandom(322), "photo-bob.jpg"),
            (os.urandom(323), "pending-bob.bin"),
            (shared, "report-again.txt"),
        ]
    )
    alice, bob = [], []
    for n, name in enumerate(alice_names):
        # The two report-copy-* files repeat the first report's bytes: DUPLICATEs.
        data = shared if n in (0, ALICE_UPLOADS - 2, ALICE_UPLOADS - 1) else os.urandom(500 + n)
        alice.append(_create(stack, "alice", data, name))
        if n % 5 == 2:
            bob.append(_create(stack, "bob", *next(bob_jobs)))
    assert len(bob) == BOB_UPLOADS
    statuses = [status for _, _, status in alice]
    assert statuses.count("DUPLICATE") == 2
    assert statuses.count("PENDING") == 3
    assert statuses.count("REJECTED") == 2
    assert statuses.count("STORED") == ALICE_UPLOADS - 7
    assert [status for _, _, status in bob] == [
        "STORED",
        "STORED",
        "STORED",
        "PENDING",
        "DUPLICATE",
    ]
    return Listed(alice=alice, bob=bob)


def _call(
    stack: RunningStack, user: str, method: str, path: str, **params: Any
) -> requests.Response:
    return requests.request(
        method, stack.api_url + path, headers=stack.auth(user), params=params or None, timeout=30
    )


def _list_all(
    stack: RunningStack, user: str, limit: int, **filters: str
) -> tuple[list[dict[str, Any]], list[int]]:
    """Every page of ``user``'s listing, following last_evaluated_key until it is null: the
    items in the order the pages gave them, and each page's size."""
    items: list[dict[str, Any]] = []
    sizes: list[int] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit, **filters}
        if token is not None:
            params["last_evaluated_key"] = token
        response = _call(stack, user, "GET", "/uploads", **params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "last_evaluated_key"}
        assert len(page["items"]) <= limit
        items += page["items"]
        sizes.append(len(page["items"]))
        token = page["last_evaluated_key"]
        if token is None:
            return items, sizes
        assert len(sizes) <= ALICE_UPLOADS + BOB_UPLOADS + 2, "the pages never end"


@pytest.mark.parametrize("limit", [1, 7, 1000])
def test_each_owner_lists_exactly_their_uploads_newest_first(
    stack: RunningStack, listed: Listed, limit: int
) -> None:
    for user in ("alice", "bob"):
        # When the owner follows the pages of their listing to the end
        items, sizes = _list_all(stack, user, limit)

        # Then they get each of their uploads once, newest first, and nobody else's
        ids = [item["upload_id"] for item in items]
        assert ids == listed.newest_first(user)
        # ... in pages as full as the limit allows (no filter: only the last may be short)
        assert all(size == limit for size in sizes[:-1]), sizes
        # ... and each item is the upload as GET /uploads/{id} shows it
        created_at = [item["created_at"] for item in items]
        assert created_at == sorted(created_at, reverse=True)
        for item in items[:: max(1, len(items) // 4)]:
            single = _call(stack, user, "GET", f"/uploads/{item['upload_id']}")
            assert single.status_code == 200
            assert single.json() == item


@pytest.mark.parametrize(
    "filters",
    [
        {"status": "STORED"},
        {"status": "DUPLICATE"},
        {"status": "PENDING"},
        {"status": "REJECTED"},
        {"prefix": "report-"},
        {"prefix": "photo-0"},
        {"prefix": "report-copy"},
        {"prefix": "report-", "status": "DUPLICATE"},
        {"prefix": "nothing-is-called-so"},
    ],
    ids=lambda filters: "&".join(f"{k}={v}" for k, v in filters.items()),
)
@pytest.mark.parametrize("limit", [1, 7, 1000])
def test_status_and_prefix_filters_select_across_pages(
    stack: RunningStack, listed: Listed, filters: dict[str, str], limit: int
) -> None:
    # When alice lists with a filter, following the pages to the end
    items, _ = _list_all(stack, "alice", limit, **filters)

    # Then she gets exactly her uploads that match, newest first (pages may be short, or even
    # empty, while more follow)
    assert [item["upload_id"] for item in items] == listed.newest_first("alice", **filters)
    for item in items:
        assert item["status"] == filters.get("status", item["status"])
        assert item["filename"].startswith(filters.get("prefix", ""))


def test_a_deleted_upload_leaves_the_listing(stack: RunningStack, listed: Listed) -> None:
    # Given a new upload of alice's, newest in her listing
    view = upload(
        stack.api_url, os.urandom(900), filename="report-gone.txt", headers=stack.auth("alice")
    )
    first = _call(stack, "alice", "GET", "/uploads", limit=1).json()["items"]
    assert [item["upload_id"] for item in first] == [view["upload_id"]]

    # When she deletes it
    deleted = _call(stack, "alice", "DELETE", f"/uploads/{view['upload_id']}")
    assert deleted.status_code == 204, deleted.text

    # Then no page of any listing (filtered or not) shows it, and the rest is as before
    for filters in ({}, {"status": "STORED"}, {"prefix": "report-gone"}):
        items, _ = _list_all(stack, "alice", 7, **filters)
        assert [item["upload_id"] for item in items] == listed.newest_first("alice", **filters)


def test_page_tokens_are_the_owners_own(stack: RunningStack, listed: Listed) -> None:
    # Given a token from the first page of alice's listing
    page = _call(stack, "alice", "GET", "/uploads", limit=7)
    assert page.status_code == 200
    token = page.json()["last_evaluated_key"]
    assert isinstance(token, str)
    following = _call(stack, "alice", "GET", "/uploads", limit=7, last_evaluated_key=token)
    assert following.status_code == 200
    assert [i["upload_id"] for i in following.json()["items"]] == listed.newest_first("alice")[7:14]

    # When bob presents it, it is refused as bad input (not a page of anyone's uploads)
    foreign = _call(stack, "bob", "GET", "/uploads", limit=7, last_evaluated_key=token)
    assert foreign.status_code == 400, foreign.text
    assert "items" not in foreign.json()

    # ... and so is a forged token: random bytes, an edited copy of hers, and a well-formed
    # payload naming her next upload without the server's signature
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    flipped = bytearray(raw)
    flipped[len(flipped) // 3] ^= 0x01
    unsigned = raw[:-16] + bytes(16)
    forged = [
        base64.urlsafe_b64encode(os.urandom(60)).decode().rstrip("="),
        base64.urlsafe_b64encode(bytes(flipped)).decode().rstrip("="),
        base64.urlsafe_b64encode(unsigned).decode().rstrip("="),
        "not a token!",
        token[:-2],
    ]
    for user in ("alice", "bob"):
        for bad in forged:
            response = _call(stack, user, "GET", "/uploads", limit=7, last_evaluated_key=bad)
            assert response.status_code == 400, (user, bad, response.text)


def test_out_of_range_limits_and_unknown_statuses_are_refused(
    stack: RunningStack, listed: Listed
) -> None:
    # DELETED is a state the API never lists: refused as any other unknown status
    for params in (
        {"limit": 0},
        {"limit": 1001},
        {"limit": "ten"},
        {"status": "SHREDDED"},
        {"status": "DELETED"},
    ):
        response = _call(stack, "alice", "GET", "/uploads", **params)
        assert response.status_code == 422, (params, response.text)
        assert "items" not in response.json()
