"""Issue 11's acceptance over HTTP: sign-in required, each owner sees only their own uploads and
contents, deduplication across owners reveals nothing, and only admins read the statistics.

Three users of the session's stack: alice and bob (regular) and admin (in `admins`). The stack is
shared with the other e2e tests, so every test uses fresh random content and compares counters
before and after.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
import requests

from onecopy_local.resources import parameter_default, template
from tests.localstack import (
    RunningStack,
    count_items,
    create_upload,
    sha256_hex,
    upload,
)

pytestmark = pytest.mark.e2e

UNAUTHORIZED = {"message": "Unauthorized"}
AUTH_CONFIG_FIELDS = {"issuer", "user_pool_id", "client_id", "region", "cognito_endpoint"}


def _call(
    stack: RunningStack, user: str | None, method: str, path: str, **kwargs: Any
) -> requests.Response:
    """One request as ``user`` (None: without a token)."""
    headers = stack.auth(user) if user else {}
    return requests.request(method, stack.api_url + path, headers=headers, timeout=30, **kwargs)


def _public_routes() -> set[tuple[str, str]]:
    """(method, path) of every route template.yaml exempts from the JWT authorizer."""
    public = set()
    for spec in template()["Resources"].values():
        for event in (spec.get("Properties", {}).get("Events") or {}).values():
            props = event.get("Properties") or {}
            if event.get("Type") == "HttpApi" and props.get("Auth", {}).get("Authorizer") == "NONE":
                public.add((str(props["Method"]).upper(), str(props["Path"])))
    return public


def _admin_stats(stack: RunningStack) -> dict[str, int]:
    response = _call(stack, "admin", "GET", "/admin/stats")
    assert response.status_code == 200, response.text
    stats: dict[str, int] = response.json()
    return stats


def _same_404(
    mine: requests.Response, my_id: str, unknown: requests.Response, unknown_id: str
) -> None:
    """``mine`` is the 404 an unknown id gets: status, body (up to the id itself), content type."""
    assert mine.status_code == unknown.status_code == 404, (mine.text, unknown.text)
    assert mine.headers["Content-Type"] == unknown.headers["Content-Type"]
    assert mine.text.replace(my_id, "<id>") == unknown.text.replace(unknown_id, "<id>")


# --- sign-in required --------------------------------------------------------------------------


def test_the_public_routes_answer_without_a_token(local_stack: RunningStack) -> None:
    # Given the routes template.yaml marks `Auth: Authorizer: NONE`
    public = _public_routes()
    assert {("GET", "/"), ("GET", "/auth/config"), ("GET", "/openapi.json"), ("GET", "/docs")} <= (
        public
    )

    # When a client without a token calls each of them
    answers = {path: _call(local_stack, None, method, path) for method, path in public}

    # Then each answers 200, and /auth/config says how to sign in
    assert {path: r.status_code for path, r in answers.items()} == dict.fromkeys(answers, 200)
    config = answers["/auth/config"].json()
    assert set(config) == AUTH_CONFIG_FIELDS
    assert config["issuer"].endswith("/" + config["user_pool_id"])


def test_every_other_route_is_401_unauthorized_without_a_valid_token(
    local_stack: RunningStack,
) -> None:
    # Given every operation the API documents, minus the public routes, on ids that exist
    alice_upload = upload(local_stack.api_url, os.urandom(1000), headers=local_stack.auth("alice"))
    spec = _call(local_stack, None, "GET", "/openapi.json").json()
    ids = {
        "upload_id": alice_upload["upload_id"],
        "id": alice_upload["upload_id"],
        "owner": local_stack.sub("alice"),
    }
    operations = [
        (method.upper(), path.format(**ids))
        for path, item in spec["paths"].items()
        for method in item
        if (method.upper(), path) not in _public_routes()
    ]
    assert len(operations) >= 10
    # ... the document marks as open exactly the public routes it lists
    open_operations = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if not operation.get("security")
    }
    assert open_operations == {(m, p) for m, p in _public_routes() if p in spec["paths"]}
    operations.append(("GET", "/no/such/route"))  # `ANY /{proxy+}` needs a token too
    stats_before = _admin_stats(local_stack)

    # When each is called without a token, with a token that is not a JWT, and with alice's
    # token cut short (its signature no longer matches)
    token = local_stack.token("alice")
    for credentials in (
        {},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": f"Bearer {token[:-4]}"},
    ):
        for method, path in operations:
            response = requests.request(
                method, local_stack.api_url + path, headers=credentials, json={}, timeout=30
            )

            # Then the gateway answers exactly as API Gateway does, without invoking anything
            assert response.status_code == 401, (method, path, credentials, response.text)
            assert response.json() == UNAUTHORIZED, (method, path)
    assert _admin_stats(local_stack) == stats_before
    assert _call(local_stack, "alice", "GET", f"/uploads/{ids['upload_id']}").status_code == 200


# --- per-owner isolation -----------------------------------------------------------------------


def _owner_routes(upload_id: str) -> list[tuple[str, str, Any]]:
    """(method, path, JSON body) of every route that acts on one upload."""
    return [
        ("GET", f"/uploads/{upload_id}", None),
        ("GET", f"/metadata/{upload_id}", None),
        ("GET", f"/download/{upload_id}", None),
        ("GET", f"/download/{upload_id}?redirect=true", None),
        ("GET", f"/uploads/{upload_id}/parts", None),
        ("POST", f"/uploads/{upload_id}/parts", {"part_numbers": [1]}),
        ("POST", f"/uploads/{upload_id}/complete", {"parts": [{"part_number": 1, "etag": '"x"'}]}),
        ("DELETE", f"/uploads/{upload_id}", None),
    ]


def test_bob_gets_the_unknown_id_404_for_every_one_of_alices_uploads(
    local_stack: RunningStack,
) -> None:
    # Given three uploads of alice's: one stored, one waiting for its bytes, one in parts
    alice = local_stack.auth("alice")
    stored = upload(local_stack.api_url, os.urandom(3000), headers=alice)["upload_id"]
    pending = create_upload(local_stack.api_url, os.urandom(3000), headers=alice).json()
    in_parts = _call(
        local_stack,
        "alice",
        "POST",
        "/uploads",
        json={"filename": "big.bin", "size": 6 * 1024 * 1024, "multipart": True},
    ).json()
    assert pending["status"] == in_parts["status"] == "PENDING", (pending, in_parts)
    alice_ids = [stored, pending["upload_id"], in_parts["upload_id"]]

    for upload_id in alice_ids:
        for method, path, body in _owner_routes(upload_id):
            # When bob calls a route on alice's id, and on an id that never existed
            unknown_id = uuid.uuid4().hex
            kwargs = {"json": body} if body is not None else {}
            mine = _call(local_stack, "bob", method, path, allow_redirects=False, **kwargs)
            unknown = _call(
                local_stack,
                "bob",
                method,
                path.replace(upload_id, unknown_id),
                allow_redirects=False,
                **kwargs,
            )

            # Then both answers are the same 404: nothing tells him alice's id exists
            _same_404(mine, upload_id, unknown, unknown_id)

    # ... and his DELETEs aborted nothing: alice's uploads are as they were
    statuses = [
        _call(local_stack, "alice", "GET", f"/uploads/{upload_id}").json()["status"]
        for upload_id in alice_ids
    ]
    assert statuses == ["STORED", "PENDING", "PENDING"]


def test_bob_gets_the_unknown_content_404_for_alices_content(local_stack: RunningStack) -> None:
    # Given content only alice holds
    data = os.urandom(4000)
    held = upload(local_stack.api_url, data, headers=local_stack.auth("alice"))
    assert held["status"] == "STORED"
    sha = sha256_hex(data)
    assert _call(local_stack, "alice", "GET", f"/metadata/{sha}").status_code == 200

    for route in ("/metadata/{}", "/download/{}"):
        # When bob asks for it by its SHA-256, and for a SHA-256 nobody holds
        unknown_sha = sha256_hex(os.urandom(32))
        mine = _call(local_stack, "bob", "GET", route.format(sha))
        unknown = _call(local_stack, "bob", "GET", route.format(unknown_sha))

        # Then the answers are the same 404
        _same_404(mine, sha, unknown, unknown_sha)


def test_a_hash_only_alice_holds_is_new_content_to_bob_until_he_uploads_its_bytes(
    local_stack: RunningStack,
) -> None:
    # Given content alice has stored
    data = os.urandom(5000)
    assert upload(local_stack.api_url, data, headers=local_stack.auth("alice"))["status"] == (
        "STORED"
    )
    bob = local_stack.auth("bob")
    stats_before = _admin_stats(local_stack)

    # When bob declares its SHA-256 and size, as alice could have told him
    claim = create_upload(local_stack.api_url, data, filename="claimed.bin", headers=bob)
    unknown = create_upload(local_stack.api_url, os.urandom(5000), headers=bob)

    # Then he gets the 201 any new content gets (not 409), and no counter moved
    assert claim.status_code == unknown.status_code == 201, (claim.text, unknown.text)
    assert set(claim.json()) == set(unknown.json())
    assert claim.json()["status"] == "PENDING"
    assert set(claim.json()["upload"]["headers"]) == set(unknown.json()["upload"]["headers"])
    assert _admin_stats(local_stack) == stats_before

    # When he uploads the bytes in full
    view = upload(local_stack.api_url, data, filename="mine-now.bin", headers=bob)

    # Then it is STORED for him (he now holds it), not DUPLICATE, and he can read and download it
    assert view["status"] == "STORED"
    assert view["sha256"] == sha256_hex(data)
    assert _call(local_stack, "bob", "GET", f"/download/{view['upload_id']}").status_code == 200
    # ... and what he sees of the content is his alone: his upload, his name, his count
    seen = _call(local_stack, "bob", "GET", f"/metadata/{view['sha256']}")
    assert seen.status_code == 200, seen.text
    assert {k: seen.json()[k] for k in ("upload_id", "filename", "upload_count")} == {
        "upload_id": view["upload_id"],
        "filename": "mine-now.bin",
        "upload_count": 1,
    }

    # ... while the admin statistics count it as the cross-owner duplicate it is
    stats_after = _admin_stats(local_stack)
    assert {name: stats_after[name] - stats_before[name] for name in stats_after} == {
        "total_files": 0,
        "total_uploads": 1,
        "duplicates_avoided": 1,
        "total_s3_size_saved": len(data),
        "total_bytes_stored": 0,
    }


def test_alice_uploading_her_own_content_again_is_409_or_duplicate(
    local_stack: RunningStack,
) -> None:
    # Given content alice holds
    data = os.urandom(6000)
    alice = local_stack.auth("alice")
    held = upload(local_stack.api_url, data, filename="first.bin", headers=alice)
    assert held["status"] == "STORED"

    # When she declares its hash again, and when she uploads the bytes without declaring it
    precheck = create_upload(local_stack.api_url, data, filename="again.bin", headers=alice)
    full = upload(local_stack.api_url, data, declare_sha256=False, headers=alice)

    # Then the pre-check answers 409 from her own holdings, and the full upload is a DUPLICATE
    assert precheck.status_code == 409, precheck.text
    assert precheck.json()["status"] == "DUPLICATE"
    assert precheck.json()["held"]["upload_id"] == held["upload_id"]
    assert full["status"] == "DUPLICATE"


# --- admin only --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/admin/stats", "/admin/hashes"])
def test_the_admin_routes_are_403_for_a_signed_in_non_admin(
    local_stack: RunningStack, path: str
) -> None:
    for user in ("alice", "bob"):
        # When a signed-in user outside `admins` asks
        response = _call(local_stack, user, "GET", path)

        # Then the answer is 403 with a message
        assert response.status_code == 403, response.text
        assert isinstance(response.json()["message"], str) and response.json()["message"]

    # ... while admin gets the answer
    assert _call(local_stack, "admin", "GET", path).status_code == 200


# --- abuse limits ------------------------------------------------------------------------------


def test_beyond_the_pending_cap_a_new_upload_is_429_with_retry_after_and_nothing_written(
    local_stack: RunningStack,
) -> None:
    # Given bob with as many uploads waiting for their bytes as the cap allows (the session's
    # stack runs with the template's MaxPendingUploads; a few of his may be pending already)
    cap = int(parameter_default("MaxPendingUploads"))
    bob = local_stack.auth("bob")
    mine: list[str] = []
    try:
        for _ in range(cap + 1):
            response = create_upload(local_stack.api_url, os.urandom(64), headers=bob)
            if response.status_code != 201:
                break
            mine.append(response.json()["upload_id"])
        assert 0 < len(mine) <= cap, len(mine)
        uploads_before = count_items(local_stack, local_stack.uploads_table)

        # When he asks for one more
        refused = create_upload(local_stack.api_url, os.urandom(64), headers=bob)

        # Then it is a 429 with a message and a Retry-After, and nothing was written
        assert refused.status_code == 429, refused.text
        assert isinstance(refused.json()["message"], str) and refused.json()["message"]
        assert int(refused.headers["Retry-After"]) > 0
        assert count_items(local_stack, local_stack.uploads_table) == uploads_before

        # ... while alice, whose uploads are her own, is not held back by his
        assert create_upload(local_stack.api_url, os.urandom(64)).status_code == 201

        # ... and once he aborts one of his, he may create one again
        aborted = _call(local_stack, "bob", "DELETE", f"/uploads/{mine.pop()}")
        assert aborted.status_code == 204, aborted.text
        again = create_upload(local_stack.api_url, os.urandom(64), headers=bob)
        assert again.status_code == 201, again.text
        mine.append(again.json()["upload_id"])
    finally:
        # Free his slots for the tests that follow
        for upload_id in mine:
            _call(local_stack, "bob", "DELETE", f"/uploads/{upload_id}")
