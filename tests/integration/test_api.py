"""The HTTP API Lambda against moto: API Gateway v2 events in, the contract out."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from adapters import clients
from domain.model import staging_key
from domain.multipart import MAX_OBJECT_SIZE
from handlers import wiring
from service.ingest import Outcome, ingest_object
from tests.invariants import State, check_invariants, read_state
from tests.lambda_events import http_event, sample
from tests.pipeline import FakeContext

pytestmark = pytest.mark.integration

DATA = b"hello from onecopy\n"
SHA = hashlib.sha256(DATA).hexdigest()
SIGNED_HEADERS = "content-length;content-type;host;if-none-match"
ALICE, BOB = "alice-sub", "bob-sub"


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


class Api:
    def __init__(self, resources: Any, module: ModuleType) -> None:
        self.resources = resources
        self.module = module
        self.s3 = clients.s3()
        self.ddb = clients.dynamodb()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        sub: str | None = ALICE,
        groups: tuple[str, ...] = (),
    ) -> Reply:
        """A request as API Gateway passes it on once its JWT authorizer accepted `sub`'s token
        (`sub=None`: no authorizer ran)."""
        event = http_event(method, path, body, sub=sub, groups=groups)
        response = self.module.lambda_handler(event, FakeContext())
        text = response.get("body") or "null"
        return Reply(int(response["statusCode"]), json.loads(text), response["headers"])

    def create(self, data: bytes = DATA, *, sub: str = ALICE, **fields: Any) -> Reply:
        body = {
            "filename": "hello.txt",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        return self.call("POST", "/uploads", {**body, **fields}, sub=sub)

    def deliver(self, upload_id: str, data: bytes = DATA) -> Outcome:
        """The client's PUT, then the worker's processing of its notification."""
        key = staging_key(upload_id)
        self.s3.put_object(Bucket=self.resources.bucket, Key=key, Body=data)
        store, ledger = wiring.store(), wiring.ledger()
        return ingest_object(key, ledger=ledger, store=store).outcome

    def item(self, upload_id: str) -> dict[str, Any]:
        return read_state(self.resources, self.s3, self.ddb).uploads[upload_id]

    def state(self) -> State:
        return read_state(self.resources, self.s3, self.ddb)

    def check(self, *settled: str) -> None:
        check_invariants(self.resources, self.s3, self.ddb, settled=settled)


@pytest.fixture
def api(aws: Any) -> Iterator[Api]:
    from handlers import api as module

    yield Api(aws, module)


# --- POST /uploads -----------------------------------------------------------------------------


def test_create_upload_returns_a_presigned_put_for_exactly_the_declared_bytes(api: Api) -> None:
    reply = api.create(content_type="text/plain")

    assert reply.status == 201
    assert reply.headers["Content-Type"] == "application/json"
    assert set(reply.body) == {"upload_id", "status", "upload", "expires_at"}
    upload_id = reply.body["upload_id"]
    assert reply.body["status"] == "PENDING"
    put = reply.body["upload"]
    assert put["method"] == "PUT"
    assert put["headers"] == {
        "Content-Length": str(len(DATA)),
        "Content-Type": "text/plain",
        "If-None-Match": "*",
        "x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(DATA).digest()).decode(),
    }
    url = urlsplit(put["url"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert url.scheme == "https"
    assert url.netloc == f"{api.resources.bucket}.s3.amazonaws.com"
    assert url.path == f"/staging/{upload_id}"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert 0 < int(query["X-Amz-Expires"]) <= 900
    assert query["X-Amz-SignedHeaders"] == f"{SIGNED_HEADERS};x-amz-checksum-sha256"
    # The checksum travels as a signed header, never as an (ignored) query parameter.
    assert not any(k.lower().startswith("x-amz-checksum") for k in query)
    expires_at = datetime.fromisoformat(reply.body["expires_at"])
    now = datetime.now(UTC)
    assert now < expires_at <= now + timedelta(seconds=int(query["X-Amz-Expires"]))
    item = api.item(upload_id)
    assert item == {
        "upload_id": upload_id,
        "owner": ALICE,
        "filename": "hello.txt",
        "size": len(DATA),
        "content_type": "text/plain",
        "created_at": item["created_at"],
        "declared_sha256": SHA,
        "status": "PENDING",
        # Counted against the owner's pending cap until the URL expires; TTL'd days later.
        "pending_owner": ALICE,
        "url_expires_at": item["url_expires_at"],
        "expires_at": item["expires_at"],
    }
    assert datetime.fromisoformat(item["url_expires_at"]) == expires_at
    assert api.state().objects == {}  # nothing in S3 until the client PUTs
    api.check()


def test_without_a_declared_hash_the_checksum_header_is_not_required(api: Api) -> None:
    reply = api.call("POST", "/uploads", {"filename": "a.bin", "size": 0})

    assert reply.status == 201
    put = reply.body["upload"]
    assert put["headers"] == {
        "Content-Length": "0",
        "Content-Type": "application/octet-stream",
        "If-None-Match": "*",
    }
    query = parse_qs(urlsplit(put["url"]).query)
    assert query["X-Amz-SignedHeaders"] == [SIGNED_HEADERS]
    assert "declared_sha256" not in api.item(reply.body["upload_id"])


def test_every_upload_gets_its_own_staging_key(api: Api) -> None:
    replies = [api.create() for _ in range(3)]

    paths = [urlsplit(r.body["upload"]["url"]).path for r in replies]

    assert paths == [f"/staging/{r.body['upload_id']}" for r in replies]
    assert len(set(paths)) == 3


def test_the_caller_s_jwt_subject_owns_the_upload(api: Api) -> None:
    reply = api.create(sub="user-123")

    assert reply.status == 201
    assert api.item(reply.body["upload_id"])["owner"] == "user-123"


# --- the 409 pre-check -------------------------------------------------------------------------


def test_declaring_content_the_caller_holds_answers_409_and_counts_a_duplicate(api: Api) -> None:
    sub = "user-123"
    first = api.create(sub=sub, content_type="text/plain").body["upload_id"]
    assert api.deliver(first) is Outcome.STORED
    before = api.state().counters

    reply = api.create(sub=sub, filename="again.txt")

    assert reply.status == 409
    body = reply.body
    assert set(body) == {"message", "upload_id", "status", "held"}
    assert body["message"]
    assert body["status"] == "DUPLICATE"
    assert body["upload_id"] != first
    assert body["held"] == {
        "upload_id": first,
        "filename": "hello.txt",
        "size": len(DATA),
        "content_type": "text/plain",
        "sha256": SHA,
        "created_at": body["held"]["created_at"],
    }
    duplicate = api.item(body["upload_id"])
    assert (duplicate["status"], duplicate["sha256"], duplicate["filename"]) == (
        "DUPLICATE",
        SHA,
        "again.txt",
    )
    assert duplicate["owner"] == sub
    after = api.state()
    assert after.counters == {
        **before,
        "uploads": before["uploads"] + 1,
        "duplicates": before["duplicates"] + 1,
        "bytes_saved": before["bytes_saved"] + len(DATA),
    }
    assert after.contents[SHA]["upload_count"] == 2
    assert after.objects.keys() == {f"cas/sha256/{SHA}"}  # nothing to PUT, nothing staged
    status = api.call("GET", f"/uploads/{body['upload_id']}", sub=sub)
    assert (status.status, status.body["status"], status.body["sha256"]) == (200, "DUPLICATE", SHA)
    holding = after.holdings[(sub, SHA)]
    assert (holding["upload_id"], holding["upload_count"]) == (first, 2)
    api.check(first, body["upload_id"])


def test_content_held_by_someone_else_is_uploaded_normally_and_ends_stored(api: Api) -> None:
    # Given content only alice holds
    first = api.create(sub=ALICE).body["upload_id"]
    api.deliver(first)
    before = api.state()

    # When bob declares the same hash and size
    reply = api.create(sub=BOB, filename="mine.txt")

    # Then he gets a normal upload, as for unknown content: the hash proves nothing
    assert reply.status == 201
    assert reply.body["status"] == "PENDING" and "upload" in reply.body
    after = api.state()
    assert (after.counters, after.contents, after.holdings) == (
        before.counters,
        before.contents,
        before.holdings,
    )
    # And once his bytes arrive, he holds the content: STORED, as if nobody else had it
    upload_id = reply.body["upload_id"]
    api.deliver(upload_id)
    status = api.call("GET", f"/uploads/{upload_id}", sub=BOB)
    assert (status.status, status.body["status"]) == (200, "STORED")
    # While the admin counters count the deduplication
    counters = api.state().counters
    assert counters["duplicates"] == before.counters["duplicates"] + 1
    assert counters["files"] == before.counters["files"]
    api.check(first, upload_id)


def test_a_wrong_size_for_a_hash_someone_else_holds_reveals_nothing(api: Api) -> None:
    # Given content alice holds
    api.deliver(api.create(sub=ALICE).body["upload_id"])
    before = api.state()

    # When bob declares its hash with another size
    reply = api.create(sub=BOB, size=5000)

    # Then it is a normal upload (S3 will refuse bytes that do not match), naming no size
    assert reply.status == 201
    assert set(reply.body) == {"upload_id", "status", "upload", "expires_at"}
    assert reply.body["upload"]["headers"]["Content-Length"] == "5000"
    assert api.state().counters == before.counters
    # While alice, who holds it, is told about her own file
    own = api.create(sub=ALICE, size=5000)
    assert own.status == 400 and f"{len(DATA)} bytes you already stored" in own.body["message"]


def test_a_rejected_or_pending_upload_does_not_count_as_held(api: Api) -> None:
    pending = api.create().body["upload_id"]
    rejected = api.create().body["upload_id"]
    assert api.deliver(rejected, bytes(reversed(DATA))) is Outcome.REJECTED

    reply = api.create()

    assert reply.status == 201
    api.check(rejected)
    assert api.item(pending)["status"] == "PENDING"


# --- GET /uploads/{id} -------------------------------------------------------------------------


def test_a_pending_upload_shows_only_what_is_known(api: Api) -> None:
    upload_id = api.create(content_type="text/plain").body["upload_id"]

    reply = api.call("GET", f"/uploads/{upload_id}")

    assert reply.status == 200
    assert set(reply.body) == {
        "upload_id",
        "status",
        "filename",
        "size",
        "content_type",
        "created_at",
    }
    assert None not in reply.body.values()
    assert (reply.body["upload_id"], reply.body["status"]) == (upload_id, "PENDING")
    assert (reply.body["filename"], reply.body["size"]) == ("hello.txt", len(DATA))
    assert datetime.fromisoformat(reply.body["created_at"]).tzinfo is not None


def test_a_stored_upload_shows_its_hash_and_completion(api: Api) -> None:
    upload_id = api.create().body["upload_id"]
    api.deliver(upload_id)

    body = api.call("GET", f"/uploads/{upload_id}").body

    assert body["status"] == "STORED"
    assert body["sha256"] == SHA
    created, completed = (datetime.fromisoformat(body[k]) for k in ("created_at", "completed_at"))
    assert created <= completed
    assert "reason" not in body
    assert None not in body.values()


def test_a_rejected_upload_shows_why(api: Api) -> None:
    upload_id = api.create().body["upload_id"]
    api.deliver(upload_id, DATA[:-1] + b"?")

    body = api.call("GET", f"/uploads/{upload_id}").body

    assert (body["status"], body["reason"]) == ("REJECTED", "checksum_mismatch")
    assert {"sha256", "completed_at"} <= body.keys()
    assert None not in body.values()


def test_an_unknown_upload_is_404(api: Api) -> None:
    reply = api.call("GET", f"/uploads/{'0' * 32}")

    assert reply.status == 404
    assert reply.body["message"]


def test_a_declared_query_parameter_is_accepted_and_an_unknown_one_named(api: Api) -> None:
    # Given one upload of alice's
    api.create()

    # When she lists her uploads with a declared parameter, and with a misspelt one
    listed = api.call("GET", "/uploads?limit=5&status=PENDING")
    misspelt = api.call("GET", "/uploads?limit=5&stauts=PENDING")

    # Then the first lists it, and the second is refused, naming the unknown parameter
    assert listed.status == 200, listed
    assert len(listed.body["items"]) == 1
    assert misspelt.status == 400, misspelt
    assert misspelt.body["message"] == "unknown query parameter: 'stauts'"


def test_a_get_that_waits_answers_a_stored_upload_at_once_and_a_pending_one_when_time_is_up(
    api: Api,
) -> None:
    stored = api.create().body["upload_id"]
    api.deliver(stored)
    pending = api.create(b"not yet uploaded").body["upload_id"]

    at_once = api.call("GET", f"/uploads/{stored}?wait=20")
    started = time.monotonic()
    waited = api.call("GET", f"/uploads/{pending}?wait=1")
    elapsed = time.monotonic() - started

    assert (at_once.status, at_once.body["status"]) == (200, "STORED")
    assert (waited.status, waited.body["status"]) == (200, "PENDING")
    assert elapsed >= 1.0  # it waited (a lower bound only: no test asserts speed)


def test_a_wait_beyond_20_seconds_is_refused_naming_the_parameter(api: Api) -> None:
    pending = api.create().body["upload_id"]

    reply = api.call("GET", f"/uploads/{pending}?wait=21")

    assert reply.status == 422, reply
    assert "wait" in reply.body["message"]


@pytest.mark.parametrize("owner", ["a%0Ab", "a%2Fb", "%E2%9C%93", "a b"])
def test_erasing_an_owner_that_no_sub_could_be_is_refused_and_erases_nothing(
    api: Api, owner: str
) -> None:
    # Given something of alice's stored
    api.deliver(api.create().body["upload_id"])
    before = api.state()

    # When an admin names an owner with characters a Cognito sub never has, encoded or not
    reply = api.call("POST", f"/admin/owners/{owner}/erase", groups=("admins",))

    # Then it is refused naming the owner, and nothing changed
    assert reply.status == 422, reply
    assert "owner" in reply.body["message"]
    assert api.state() == before


# --- bad input changes nothing -----------------------------------------------------------------

_OK = {"filename": "a.txt", "size": 3}

BAD_REQUESTS: list[tuple[str, str, Any]] = [
    ("POST", "/uploads", "{not json"),
    ("POST", "/uploads", ""),
    ("POST", "/uploads", "[]"),
    ("POST", "/uploads", "null"),
    ("POST", "/uploads", {}),
    ("POST", "/uploads", {"size": 3}),
    ("POST", "/uploads", {"filename": "a.txt"}),
    ("POST", "/uploads", {**_OK, "filename": ""}),
    ("POST", "/uploads", {**_OK, "filename": "   "}),
    ("POST", "/uploads", {**_OK, "filename": None}),
    ("POST", "/uploads", {**_OK, "filename": 12}),
    ("POST", "/uploads", {**_OK, "filename": "x" * 256}),
    ("POST", "/uploads", {**_OK, "filename": "a\nb.txt"}),
    ("POST", "/uploads", {**_OK, "filename": "a\x00b"}),
    ("POST", "/uploads", {**_OK, "size": -1}),
    ("POST", "/uploads", {**_OK, "size": MAX_OBJECT_SIZE + 1}),
    ("POST", "/uploads", {**_OK, "size": "3"}),
    ("POST", "/uploads", {**_OK, "size": 3.5}),
    ("POST", "/uploads", {**_OK, "size": True}),
    ("POST", "/uploads", {**_OK, "size": None}),
    ("POST", "/uploads", {**_OK, "content_type": "text"}),
    ("POST", "/uploads", {**_OK, "content_type": ""}),
    ("POST", "/uploads", {**_OK, "content_type": 'text/plain; a="x\r\nSet-Cookie: y"'}),
    ("POST", "/uploads", {**_OK, "content_type": "text/" + "p" * 300}),
    ("POST", "/uploads", {**_OK, "sha256": SHA.upper()}),
    ("POST", "/uploads", {**_OK, "sha256": SHA[:-1]}),
    ("POST", "/uploads", {**_OK, "sha256": SHA + "\n"}),
    ("POST", "/uploads", {**_OK, "sha256": ""}),
    ("POST", "/uploads", {**_OK, "sha256": 1}),
    ("POST", "/uploads", {**_OK, "owner": "someone-else"}),
    ("POST", "/uploads", {**_OK, "status": "STORED"}),
    ("GET", "/uploads/not-an-id", None),
    ("GET", f"/uploads/{'A' * 32}", None),
    ("GET", f"/uploads/{'0' * 31}", None),
    ("GET", f"/uploads/{'0' * 32}%0A", None),
    ("GET", f"/uploads/{'0' * 32}", None),
    ("DELETE", "/uploads", None),
    ("PUT", "/uploads", _OK),
    ("GET", "/nothing-here", None),
    # A query parameter the route does not declare (a misspelt one would be silently ignored).
    ("GET", "/uploads?limt=5", None),
    ("GET", f"/uploads/{'0' * 32}?verbose=1", None),
    ("GET", f"/uploads/{'0' * 32}?wait=21", None),
    ("GET", f"/uploads/{'0' * 32}?wait=-1", None),
    ("GET", f"/uploads/{'0' * 32}?wait=1.5", None),
    ("GET", f"/uploads/{'0' * 32}?wait=soon", None),
    ("POST", "/uploads?size=3", _OK),
    # Beyond Python's 4,300-digit int conversion limit: a ValueError inside the JSON parser.
    ("POST", "/uploads", '{"filename": "a.txt", "size": ' + "9" * 5001 + "}"),
    # Deeper than the interpreter's stack: a RecursionError inside the JSON parser.
    ("POST", "/uploads", "[" * 100_000 + "]" * 100_000),
]


@pytest.mark.parametrize(("method", "path", "body"), BAD_REQUESTS)
def test_bad_input_is_a_4xx_with_a_message_and_changes_nothing(
    api: Api, method: str, path: str, body: Any
) -> None:
    # Something stored already, so "nothing changed" is checked against a non-empty state.
    held = api.create().body["upload_id"]
    api.deliver(held)
    before = api.state()

    reply = api.call(method, path, body)

    assert 400 <= reply.status < 500, reply
    assert isinstance(reply.body.get("message"), str) and reply.body["message"]
    assert reply.headers["Content-Type"] == "application/json"
    assert api.state() == before


def test_declaring_a_held_hash_with_another_size_is_refused(api: Api) -> None:
    first = api.create(sub="user-123").body["upload_id"]
    api.deliver(first)
    before = api.state()

    # Otherwise the 409 would count 5 GiB of savings for a 19-byte file.
    reply = api.create(sub="user-123", size=5 * 1024**3)

    assert reply.status == 400
    assert "size" in reply.body["message"]
    assert api.state() == before


def test_a_size_of_5001_digits_is_a_422_naming_the_problem(api: Api) -> None:
    reply = api.call("POST", "/uploads", '{"filename": "a.txt", "size": ' + "9" * 5001 + "}")

    assert reply.status == 422
    assert reply.body["message"] == "request body is not valid JSON (a number has too many digits)"


def test_a_100000_deep_array_is_a_422(api: Api) -> None:
    reply = api.call("POST", "/uploads", "[" * 100_000 + "]" * 100_000)

    assert reply.status == 422
    assert reply.body["message"] == "request body is not valid JSON (nested too deeply)"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/uploads", _OK),
        (f"/uploads/{'0' * 32}/parts", {"part_numbers": [1]}),
        (f"/uploads/{'0' * 32}/complete", {"parts": [{"part_number": 1, "etag": "e"}]}),
    ],
)
def test_a_json_body_without_a_content_type_is_a_415(api: Api, path: str, body: Any) -> None:
    # Given a request whose body is JSON, but which does not say so
    event = http_event("POST", path, body)
    del event["headers"]["content-type"]
    before = api.state()

    # When the API handles it
    response = api.module.lambda_handler(event, FakeContext())

    # Then it is refused as the OpenAPI document says, and nothing changed
    assert response["statusCode"] == 415
    assert json.loads(response["body"]) == {"message": "the body must be application/json"}
    assert api.state() == before


@pytest.mark.parametrize("name", ["api_rest_v1_payload.json", "api_empty.json"])
def test_an_event_that_is_not_an_http_api_request_is_a_400_not_a_crash(api: Api, name: str) -> None:
    # Given an event API Gateway's HTTP API would never send (a REST API's v1 payload, or {})
    event = sample(name)

    # When the API function is invoked with it
    response = api.module.lambda_handler(event, FakeContext())

    # Then it answers a clean error
    assert response["statusCode"] == 400
    assert response["headers"] == {"Content-Type": "application/json"}
    assert "payload format version 2.0" in json.loads(response["body"])["message"]


# --- identity: who may call what ---------------------------------------------------------------

_PROTECTED: list[tuple[str, str, Any]] = [
    ("POST", "/uploads", {"filename": "a.txt", "size": 3}),
    ("GET", f"/uploads/{'0' * 32}", None),
    ("DELETE", f"/uploads/{'0' * 32}", None),
    ("POST", f"/uploads/{'0' * 32}/parts", {"part_numbers": [1]}),
    ("GET", f"/uploads/{'0' * 32}/parts", None),
    ("POST", f"/uploads/{'0' * 32}/complete", {"parts": [{"part_number": 1, "etag": "e"}]}),
    ("GET", f"/metadata/{SHA}", None),
    ("GET", f"/download/{SHA}", None),
    ("GET", "/admin/stats", None),
    ("GET", "/admin/hashes", None),
]


@pytest.mark.parametrize(("method", "path", "body"), _PROTECTED)
def test_a_protected_route_without_a_verified_caller_is_401_never_a_default_owner(
    api: Api, method: str, path: str, body: Any
) -> None:
    # Given a stack holding something (so "nothing changed" means something)
    api.deliver(api.create().body["upload_id"])
    before = api.state()

    # When a request reaches the function with no authorizer claims (a misconfigured gateway)
    reply = api.call(method, path, body, sub=None)

    # Then it is refused as API Gateway itself refuses a missing token, and nothing changed
    assert (reply.status, reply.body) == (401, {"message": "Unauthorized"})
    assert api.state() == before


@pytest.mark.parametrize("path", ["/auth/config", "/openapi.json", "/docs"])
def test_the_public_routes_need_no_token(api: Api, path: str) -> None:
    event = http_event("GET", path, sub=None)

    response = api.module.lambda_handler(event, FakeContext())

    assert response["statusCode"] == 200


def test_auth_config_tells_clients_where_to_sign_in(api: Api) -> None:
    reply = api.call("GET", "/auth/config", sub=None)

    env = api.resources.function_env()
    assert reply.status == 200
    assert reply.body == {
        "issuer": env["AUTH_ISSUER"],
        "user_pool_id": env["AUTH_USER_POOL_ID"],
        "client_id": env["AUTH_CLIENT_ID"],
        "region": "us-east-1",
        "cognito_endpoint": env["AUTH_COGNITO_ENDPOINT"],
    }
    assert reply.body["issuer"].endswith("/" + reply.body["user_pool_id"])


@pytest.mark.parametrize("path", ["/admin/stats", "/admin/hashes"])
def test_admin_routes_are_403_for_a_signed_in_non_admin(api: Api, path: str) -> None:
    for groups in [(), ("editors",), ("administrators",)]:
        reply = api.call("GET", path, groups=groups)
        assert (reply.status, reply.body) == (403, {"message": "admins only"})


@pytest.mark.parametrize("path", ["/admin/stats", "/admin/hashes"])
def test_admin_routes_answer_the_admins_group_in_either_claim_form(api: Api, path: str) -> None:
    # API Gateway flattens the groups array into "[editors admins]"; another gateway may not
    assert api.call("GET", path, groups=("editors", "admins")).status == 200
    event = http_event("GET", path)
    event["requestContext"]["authorizer"]["jwt"]["claims"]["cognito:groups"] = ["admins"]
    assert api.module.lambda_handler(event, FakeContext())["statusCode"] == 200


# --- every upload is its owner's alone ---------------------------------------------------------


@pytest.mark.parametrize("multipart", [False, True])
def test_another_owner_s_upload_answers_exactly_as_an_unknown_id(api: Api, multipart: bool) -> None:
    # Given alice's pending upload, and an id nobody created
    mine = api.create(sub=ALICE, multipart=multipart).body["upload_id"]
    unknown = "f" * 32
    before = api.state()

    for method, suffix, body in [
        ("GET", "", None),
        ("DELETE", "", None),
        ("POST", "/parts", {"part_numbers": [1]}),
        ("GET", "/parts", None),
        ("POST", "/complete", {"parts": [{"part_number": 1, "etag": "e"}]}),
    ]:
        # When bob asks about alice's upload, and about the unknown one
        theirs = api.call(method, f"/uploads/{mine}{suffix}", body, sub=BOB)
        nobody = api.call(method, f"/uploads/{unknown}{suffix}", body, sub=BOB)
        # Then both answers are the same 404, but for the id they echo
        assert theirs.status == nobody.status == 404, (method, suffix)
        assert theirs.body == {"message": nobody.body["message"].replace(unknown, mine)}
        assert theirs.headers == nobody.headers

    # And alice's upload is untouched
    assert api.state() == before
    assert api.call("GET", f"/uploads/{mine}", sub=ALICE).body["status"] == "PENDING"


def test_another_owner_cannot_abort_an_upload(api: Api) -> None:
    mine = api.create(sub=ALICE).body["upload_id"]

    assert api.call("DELETE", f"/uploads/{mine}", sub=BOB).status == 404
    assert api.deliver(mine) is Outcome.STORED
    assert api.call("GET", f"/uploads/{mine}", sub=ALICE).body["status"] == "STORED"


# --- the per-owner cap on pending uploads ------------------------------------------------------


@pytest.fixture
def capped(api: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    """The API with MAX_PENDING_UPLOADS=2."""
    settings = api.module.settings.model_copy(update={"max_pending_uploads": 2})
    monkeypatch.setattr(api.module, "settings", settings)
    api.module._upload_policy.cache_clear()
    yield api
    api.module._upload_policy.cache_clear()


def test_beyond_the_pending_cap_an_owner_gets_429_and_nothing_is_written(capped: Api) -> None:
    # Given alice at the cap, and content she holds
    held = capped.create(sub=ALICE, filename="held.txt").body["upload_id"]
    capped.deliver(held)
    pending = [capped.create(sub=ALICE, data=f"p{i}".encode()) for i in range(2)]
    assert [p.status for p in pending] == [201, 201]
    before = capped.state()

    # When she starts another upload
    reply = capped.create(sub=ALICE, data=b"one too many")

    # Then she must wait, is told for how long, and nothing was written
    assert reply.status == 429
    assert reply.body["message"]
    assert 0 < int(reply.headers["Retry-After"]) <= 900
    assert capped.state() == before
    # While bob is not affected by her uploads
    assert capped.create(sub=BOB, data=b"bob's").status == 201
    # And a 409 pre-check of content she holds waits for no bytes: still answered
    assert capped.create(sub=ALICE).status == 409
    # And aborting a pending upload frees a place
    assert capped.call("DELETE", f"/uploads/{pending[0].body['upload_id']}").status == 204
    assert capped.create(sub=ALICE, data=b"one too many").status == 201


def test_a_finished_upload_no_longer_counts_against_the_cap(capped: Api) -> None:
    for i in range(3):
        created = capped.create(sub=ALICE, data=f"file {i}".encode())
        assert created.status == 201
        capped.deliver(created.body["upload_id"], f"file {i}".encode())
