"""Unit tests of web/logic.js, run inside Chromium: the module is imported by a page, no Node."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Error

pytestmark = pytest.mark.e2e

Js = Callable[..., Any]

BAD_DIGEST = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>BadDigest</Code>'
    "<Message>The SHA256 you specified did not match the calculated checksum.</Message>"
    "<RequestId>4442587FB7D0A2F9</RequestId></Error>"
)
EXPIRED = "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"


@pytest.fixture(scope="module")
def js(browser: Browser, static_site: str) -> Iterator[Js]:
    """Evaluate a JS expression with the module bound to `m` and the argument to `arg`."""
    context = browser.new_context()
    page = context.new_page()
    # An empty document on the page's origin, so that import() resolves like the page's own.
    page.route(
        "**/blank.html",
        lambda route: route.fulfill(body="<!doctype html>", content_type="text/html"),
    )
    page.goto(f"{static_site}/blank.html")

    def run(expression: str, arg: Any = None) -> Any:
        return page.evaluate(
            f"async (arg) => {{ const m = await import('/logic.js'); return ({expression}); }}", arg
        )

    yield run
    context.close()


def test_hex_encoding_of_a_webcrypto_digest_matches_python(js: Js) -> None:
    # Given the bytes "abc"; When the browser hashes them and hex-encodes the digest
    hexdigest = js(
        "crypto.subtle.digest('SHA-256', new TextEncoder().encode(arg)).then(m.toHex)", "abc"
    )
    # Then it is Python's hexdigest
    assert hexdigest == hashlib.sha256(b"abc").hexdigest()


def test_hex_encoding_pads_every_byte_to_two_digits(js: Js) -> None:
    assert js("m.toHex(new Uint8Array([0, 1, 171, 255]).buffer)") == "0001abff"


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (10 * 1024, "10 KiB"),
        (3 * 1024**2 + 512 * 1024, "3.5 MiB"),
        (5 * 1024**3, "5.0 GiB"),
    ],
)
def test_byte_formatting(js: Js, size: int, text: str) -> None:
    assert js("m.formatBytes(arg)", size) == text


@pytest.mark.parametrize(
    ("loaded", "total", "expected"), [(0, 0, 100), (50, 200, 25), (199, 200, 99), (300, 200, 100)]
)
def test_percent_is_whole_and_capped(js: Js, loaded: int, total: int, expected: int) -> None:
    assert js("m.percent(arg[0], arg[1])", [loaded, total]) == expected


def test_progress_text_gives_bytes_and_percent(js: Js) -> None:
    assert js("m.progressText(arg)", {"loaded": 512, "size": 1024}) == "512 B of 1.0 KiB (50%)"


def test_files_above_the_limit_or_without_webcrypto_are_hashed_by_the_server(js: Js) -> None:
    assert js("m.shouldHash(m.CLIENT_HASH_LIMIT)") is True
    assert js("m.shouldHash(m.CLIENT_HASH_LIMIT + 1)") is False
    assert js("m.shouldHash(10, false)") is False


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            {"query": "https://api.example.com/", "stored": "http://old", "origin": "http://o"},
            "https://api.example.com",
        ),
        (
            {"query": None, "stored": "http://127.0.0.1:3000", "origin": "http://o"},
            "http://127.0.0.1:3000",
        ),
        (
            {"query": None, "stored": None, "origin": "http://127.0.0.1:8000"},
            "http://127.0.0.1:8000",
        ),
        (
            {"query": "https://h.example/prod/", "stored": None, "origin": "http://o"},
            "https://h.example/prod",
        ),
        ({"query": "ftp://h.example", "stored": None, "origin": "http://o"}, None),
        ({"query": "not a url", "stored": None, "origin": "http://o"}, None),
    ],
)
def test_api_url_resolution(js: Js, given: dict[str, Any], expected: str | None) -> None:
    assert js("m.resolveApiUrl(arg)", given) == expected


def test_content_length_is_left_for_the_browser_to_send(js: Js) -> None:
    headers = {
        "Content-Length": "5",
        "Content-Type": "text/plain",
        "If-None-Match": "*",
        "x-amz-checksum-sha256": "qUiQ",
    }
    assert js("m.sendableHeaders(arg)", headers) == {
        "Content-Type": "text/plain",
        "If-None-Match": "*",
        "x-amz-checksum-sha256": "qUiQ",
    }


def test_status_polls_back_off_to_four_seconds(js: Js) -> None:
    assert js("[0, 1, 2, 3, 4, 9].map(m.pollDelay)") == [250, 500, 1000, 2000, 4000, 4000]


def test_s3_error_xml_is_parsed(js: Js) -> None:
    assert js("m.parseS3Error(arg)", BAD_DIGEST) == {
        "code": "BadDigest",
        "message": "The SHA256 you specified did not match the calculated checksum.",
    }
    escaped = "<Error><Code>X</Code><Message>a &amp; &lt;b&gt;</Message></Error>"
    assert js("m.parseS3Error(arg)", escaped) == {"code": "X", "message": "a & <b>"}
    assert js("m.parseS3Error(arg)", '{"message": "not xml"}') is None
    assert js("m.parseS3Error(arg)", "<Error></Error>") is None


def explain(js: Js, status: int, body: str) -> dict[str, Any]:
    result: dict[str, Any] = js(
        "(e => ({message: e.message, rejected: e.rejected}))(m.explainPutFailure(arg[0], arg[1]))",
        [status, body],
    )
    return result


def test_bad_digest_is_a_rejection_of_the_bytes(js: Js) -> None:
    explained = explain(js, 400, BAD_DIGEST)
    assert explained["rejected"] is True
    assert "do not match the file's SHA-256" in explained["message"]


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (403, EXPIRED, "upload link expired"),
        (403, "<Error><Code>SignatureDoesNotMatch</Code></Error>", "clock"),
        (412, "<Error><Code>PreconditionFailed</Code></Error>", "already used"),
        (503, "<Error><Code>SlowDown</Code><Message>x</Message></Error>", "(SlowDown)"),
        (502, "<html>Bad gateway</html>", "(HTTP 502)"),
        (0, "", "Could not reach the storage service"),
    ],
)
def test_other_storage_failures_say_what_to_do(js: Js, status: int, body: str, says: str) -> None:
    explained = explain(js, status, body)
    assert explained["rejected"] is False
    assert says in explained["message"]


# --- the state machine -------------------------------------------------------------------------

RUN = """(events => {
  let row = m.newRow("a.txt", 1024);
  const seen = [];
  for (const event of events) {
    if (event.error) event.error = new m.UploadError(event.error.message, event.error);
    row = m.advance(row, event);
    seen.push([row.phase, m.describe(row)]);
  }
  return {row, seen};
})(arg)"""


def test_a_new_file_goes_from_hashing_to_stored(js: Js) -> None:
    sha = "ab" * 32
    events = [
        {"type": "hashing"},
        {"type": "hashed", "sha256": sha},
        {"type": "created", "uploadId": "u1"},
        {"type": "progress", "loaded": 512},
        {"type": "sent"},
        {"type": "status", "body": {"status": "PENDING"}},
        {"type": "status", "body": {"status": "STORED", "sha256": sha}},
    ]
    result = js(RUN, events)
    assert result["seen"] == [
        ["hashing", "Computing SHA-256…"],
        ["creating", "Starting upload…"],
        ["uploading", "Uploading…"],
        ["uploading", "Uploading…"],
        ["processing", "Uploaded; checking for duplicates…"],
        ["processing", "Uploaded; checking for duplicates…"],
        ["stored", "Stored"],
    ]
    assert result["row"]["uploadId"] == "u1"
    assert result["row"]["sha256"] == sha


def test_content_already_held_is_a_duplicate_with_nothing_uploaded(js: Js) -> None:
    events = [
        {"type": "hashing"},
        {"type": "hashed", "sha256": "cd" * 32},
        {"type": "held", "uploadId": "u2"},
    ]
    result = js(RUN, events)
    assert result["seen"][-1] == [
        "duplicate",
        "Duplicate: already stored, nothing uploaded (1.0 KiB saved)",
    ]


def test_a_duplicate_found_by_the_worker_reports_the_bytes_saved(js: Js) -> None:
    events = [
        {"type": "creating"},
        {"type": "created", "uploadId": "u3"},
        {"type": "sent"},
        {"type": "status", "body": {"status": "DUPLICATE", "sha256": "ef" * 32}},
    ]
    assert js(RUN, events)["seen"][-1] == ["duplicate", "Duplicate: 1.0 KiB saved"]


def test_a_rejected_upload_gives_the_reason(js: Js) -> None:
    events = [
        {"type": "creating"},
        {"type": "created", "uploadId": "u4"},
        {"type": "sent"},
        {"type": "status", "body": {"status": "REJECTED", "reason": "size_mismatch"}},
    ]
    assert js(RUN, events)["seen"][-1] == [
        "rejected",
        "Rejected: the bytes received are not the size that was declared",
    ]


def test_bytes_refused_by_storage_are_rejected_and_other_errors_failed(js: Js) -> None:
    uploading = [{"type": "creating"}, {"type": "created", "uploadId": "u5"}]
    refused = {"type": "failed", "error": {"message": "bad bytes", "rejected": True}}
    unreachable = {"type": "failed", "error": {"message": "no network", "rejected": False}}
    assert js(RUN, [*uploading, refused])["seen"][-1] == ["rejected", "Rejected: bad bytes"]
    assert js(RUN, [*uploading, unreachable])["seen"][-1] == ["failed", "Failed: no network"]


def test_progress_never_exceeds_the_file_size(js: Js) -> None:
    events = [
        {"type": "creating"},
        {"type": "created", "uploadId": "u6"},
        {"type": "progress", "loaded": 5000},
    ]
    assert js(RUN, events)["row"]["loaded"] == 1024


@pytest.mark.parametrize(
    "events",
    [
        [{"type": "sent"}],
        [{"type": "creating"}, {"type": "hashed", "sha256": "ab" * 32}],
        [{"type": "creating"}, {"type": "held", "uploadId": "u"}, {"type": "status", "body": {}}],
    ],
)
def test_events_out_of_order_are_refused(js: Js, events: list[dict[str, Any]]) -> None:
    with pytest.raises(Error, match="cannot take"):
        js(RUN, events)


# --- uploads in parts --------------------------------------------------------------------------


def test_parts_cover_the_file_exactly_and_the_last_holds_the_rest(js: Js) -> None:
    # Given a 20-byte file the API cut into 3 parts of 8; When the page plans the slices
    parts = js("m.planParts(20, 8, 3)")
    # Then each part is a contiguous slice of exactly its signed size
    assert parts == [
        {"partNumber": 1, "start": 0, "end": 8, "size": 8},
        {"partNumber": 2, "start": 8, "end": 16, "size": 8},
        {"partNumber": 3, "start": 16, "end": 20, "size": 4},
    ]
    assert js("m.planParts(16, 8, 2).map(p => p.size)") == [8, 8]


@pytest.mark.parametrize(("size", "part_size", "count"), [(20, 8, 2), (20, 8, 4), (20, 0, 1)])
def test_a_plan_that_does_not_fit_the_file_is_refused(
    js: Js, size: int, part_size: int, count: int
) -> None:
    with pytest.raises(Error, match="cannot hold"):
        js("m.planParts(arg[0], arg[1], arg[2])", [size, part_size, count])


def test_part_urls_are_asked_for_at_most_100_at_a_time(js: Js) -> None:
    sizes = js("m.batches(Array.from({length: 250}, (_, i) => i + 1)).map(b => [b[0], b.length])")
    assert sizes == [[1, 100], [101, 100], [201, 50]]


def test_progress_sums_finished_and_in_flight_parts(js: Js) -> None:
    totals = js(
        """(() => {
          const p = new m.PartProgress(m.planParts(20, 8, 3));
          return [p.update(1, 5), p.update(3, 4), p.finish(1), p.update(2, 99), p.restart(2),
                  p.finish(2), p.total];
        })()"""
    )
    # a part's progress is capped at its size, and a restarted part counts from zero again
    assert totals == [5, 9, 12, 20, 12, 20, 20]


@pytest.mark.parametrize(
    ("status", "attempt", "action"),
    [
        (0, 1, "retry"),
        (503, 2, "retry"),
        (429, 1, "retry"),
        (403, 1, "refresh"),
        (0, 3, "give-up"),
        (403, 3, "give-up"),
        (400, 1, "give-up"),
        (404, 1, "give-up"),
    ],
)
def test_failed_parts_are_retried_three_times_at_most(
    js: Js, status: int, attempt: int, action: str
) -> None:
    assert js("m.afterPartFailure(arg[0], arg[1])", [status, attempt]) == action


def test_part_retries_back_off(js: Js) -> None:
    assert js("[1, 2, 3].map(m.partRetryDelay)") == [500, 1000, 2000]


@pytest.mark.parametrize(
    ("query", "threshold"),
    [(None, 100 * 1024**2), ("1", 1), ("0", 0), ("-5", 100 * 1024**2), ("big", 100 * 1024**2)],
)
def test_the_multipart_threshold_comes_from_the_page_url(
    js: Js, query: str | None, threshold: int
) -> None:
    assert js("m.multipartThreshold(arg)", query) == threshold


def test_only_files_above_the_threshold_go_in_parts(js: Js) -> None:
    assert js("[m.wantsMultipart(m.MULTIPART_THRESHOLD), m.wantsMultipart(2, 1)]") == [False, True]


# --- signing in --------------------------------------------------------------------------------


def jwt(claims: dict[str, Any]) -> str:
    """An unsigned token of these claims: the page reads claims, only the API verifies them."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'kid': 'k'})}.{part(claims)}.c2ln"


def test_a_token_s_claims_are_read_whatever_its_padding_and_alphabet(js: Js) -> None:
    # Given claims whose base64url form needs padding and uses - and _ (and non-ASCII text)
    for name in ("a", "ab", "abc", "Zoë ~~~ ???"):
        claims = {"sub": "s-1", "cognito:username": name, "exp": 2_000_000_000}
        # When the page reads the token, Then it gets the claims back
        assert js("m.jwtClaims(arg)", jwt(claims)) == claims
    with pytest.raises(Error, match="not a JWT"):
        js("m.jwtClaims('nodots')")


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        (["admins", "ops"], ["admins", "ops"]),
        ("[admins ops]", ["admins", "ops"]),  # as API Gateway flattens an array claim
        ("[admins]", ["admins"]),
        ("[]", []),
        (None, []),
    ],
)
def test_groups_come_from_a_list_or_api_gateway_s_string(
    js: Js, groups: Any, expected: list[str]
) -> None:
    claims = {} if groups is None else {"cognito:groups": groups}
    assert js("m.groupsOf(arg)", claims) == expected


HOUR = 3_600_000
NOW = 1_700_000_000_000  # ms


def signed_in(groups: list[str] | None = None, lifetime_s: int = 3600) -> dict[str, Any]:
    claims: dict[str, Any] = {"sub": "s-1", "cognito:username": "alice"}
    claims["exp"] = NOW // 1000 + lifetime_s
    if groups is not None:
        claims["cognito:groups"] = groups
    return {
        "IdToken": jwt(claims),
        "AccessToken": jwt({"sub": "s-1", "username": "alice", "token_use": "access"}),
        "RefreshToken": "refresh-1",
        "ExpiresIn": lifetime_s,
    }


def test_a_sign_in_becomes_a_session_that_knows_its_user_and_expiry(js: Js) -> None:
    # Given Cognito's AuthenticationResult for an admin; When the page makes a session of it
    session = js("m.sessionFrom(arg[0], arg[1])", [signed_in(["admins"]), NOW])
    # Then it knows who signed in, whether they are an admin, and when the tokens expire
    assert session["username"] == "alice"
    assert session["groups"] == ["admins"]
    assert session["refreshToken"] == "refresh-1"
    assert (session["issuedAt"], session["expiresAt"]) == (NOW, NOW + HOUR)
    assert js("m.isAdmin(arg)", session) is True
    plain = js("m.sessionFrom(arg[0], arg[1])", [signed_in(), NOW])
    assert js("m.isAdmin(arg)", plain) is False


def test_a_refresh_keeps_the_refresh_token_it_was_made_with(js: Js) -> None:
    # Given a REFRESH_TOKEN_AUTH answer, which carries no RefreshToken
    refreshed = {k: v for k, v in signed_in().items() if k != "RefreshToken"}
    session = js("m.sessionFrom(arg[0], arg[1], 'refresh-1')", [refreshed, NOW + HOUR])
    # Then the session keeps the one it had, and expires an hour after the refresh
    assert session["refreshToken"] == "refresh-1"
    assert session["expiresAt"] == NOW + 2 * HOUR


def test_expiry_is_counted_on_this_clock_not_from_the_token_s_exp(js: Js) -> None:
    # Given a computer whose clock is a day ahead of Cognito's
    ahead = NOW + 24 * HOUR
    # When it signs in, Then its tokens last ExpiresIn on its own clock (else it would refresh
    # them at once, forever)
    assert js("m.sessionFrom(arg[0], arg[1])", [signed_in(), ahead])["expiresAt"] == ahead + HOUR


@pytest.mark.parametrize(
    ("lifetime_ms", "now_offset", "delay"),
    [
        (HOUR, 0, HOUR - 60_000),  # an hour's tokens: refreshed a minute before they expire
        (HOUR, HOUR - 120_000, 60_000),
        (HOUR, HOUR - 30_000, 0),  # already inside the last minute: refresh now
        (HOUR, HOUR + 5_000, 0),  # expired (a sleeping laptop): refresh now
        (100_000, 0, 80_000),  # short-lived tokens: after four fifths of their life
    ],
)
def test_tokens_are_refreshed_before_they_expire(
    js: Js, lifetime_ms: int, now_offset: int, delay: int
) -> None:
    session = {"issuedAt": NOW, "expiresAt": NOW + lifetime_ms}
    assert js("m.refreshDelay(arg[0], arg[1])", [session, NOW + now_offset]) == delay
    assert js("m.refreshAt(arg)", session) == NOW + lifetime_ms - min(60_000, lifetime_ms // 5)


@pytest.mark.parametrize(
    ("stored", "usable"),
    [
        ({"idToken": "t", "expiresAt": NOW + 1, "refreshToken": None}, True),
        ({"idToken": "t", "expiresAt": NOW - 1, "refreshToken": "r"}, True),
        ({"idToken": "t", "expiresAt": NOW - 1, "refreshToken": None}, False),
        ({"expiresAt": NOW + 1}, False),
        (None, False),
        ("garbage", False),
    ],
)
def test_a_stored_session_is_resumed_only_if_it_can_still_be_used(
    js: Js, stored: Any, usable: bool
) -> None:
    assert js("m.usableSession(arg[0], arg[1])", [stored, NOW]) is usable


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (
            400,
            {"__type": "NotAuthorizedException", "message": "Incorrect username or password."},
            "Wrong username or password.",
        ),
        (
            400,
            {"__type": "UserNotFoundException", "message": "User does not exist."},
            "Wrong username or password.",
        ),
        (
            400,
            {"__type": "NotAuthorizedException", "message": "Refresh Token has been revoked"},
            "Sign in again.",
        ),
        (400, {"__type": "TooManyRequestsException"}, "Too many sign-in attempts"),
        (400, {"__type": "PasswordResetRequiredException"}, "must be reset"),
        (0, None, "Could not reach the sign-in service"),
        (
            500,
            {"__type": "InternalErrorException", "message": "boom"},
            "Sign-in failed (InternalErrorException: boom).",
        ),
        (502, None, "Sign-in failed (HTTP 502)."),
    ],
)
def test_sign_in_failures_say_what_to_do(js: Js, status: int, body: Any, says: str) -> None:
    assert says in js("m.explainSignInFailure(arg[0], arg[1])", [status, body])


# --- your files: GET /uploads and DELETE /uploads/{id} ---------------------------------------


def view(
    upload_id: str,
    created_at: str,
    *,
    status: str = "STORED",
    filename: str | None = None,
    size: int = 1536,
    **more: Any,
) -> dict[str, Any]:
    """An UploadView as GET /uploads/{id} (and each item of GET /uploads) returns it."""
    return {
        "upload_id": upload_id,
        "status": status,
        "filename": filename or f"{upload_id}.txt",
        "size": size,
        "content_type": "text/plain",
        "created_at": created_at,
        **more,
    }


def ids(listing: dict[str, Any]) -> list[str]:
    return [item["upload_id"] for item in listing["items"]]


T1, T2, T3, T4 = (f"2025-01-0{day}T10:00:00Z" for day in (1, 2, 3, 4))


@pytest.mark.parametrize(
    ("given", "query"),
    [
        ({}, "limit=50"),
        ({"limit": 10, "status": "STORED"}, "limit=10&status=STORED"),
        ({"status": "", "prefix": ""}, "limit=50"),
        ({"status": "bogus"}, "limit=50"),
        (
            {"prefix": "Q3 report & notes", "after": "eyJrIjoxfQ=="},
            "limit=50&prefix=Q3+report+%26+notes&last_evaluated_key=eyJrIjoxfQ%3D%3D",
        ),
    ],
)
def test_the_list_query_names_only_what_is_set_and_encodes_it(
    js: Js, given: dict[str, Any], query: str
) -> None:
    assert js("m.uploadsQuery(arg)", given) == query


def test_a_listing_pages_on_until_the_token_is_null_not_until_a_short_page(js: Js) -> None:
    # Given a new listing filtered on STORED
    steps = js(
        """(() => {
          let listing = m.newListing({status: "STORED", prefix: "a"});
          const seen = [[m.nextQuery(listing, 2), m.hasMore(listing)]];
          for (const page of arg) {
            listing = m.withPage(listing, page);
            seen.push([m.nextQuery(listing, 2), m.hasMore(listing), listing.items.length]);
          }
          return seen;
        })()""",
        # When a full page, a short page with a token, and an empty last page come back
        [
            {"items": [view("u4", T4), view("u3", T3)], "last_evaluated_key": "k1"},
            {"items": [view("u2", T2)], "last_evaluated_key": "k2"},
            {"items": [], "last_evaluated_key": None},
        ],
    )
    # Then each request carries the last token, and only the null one ends the list
    assert steps == [
        ["limit=2&status=STORED&prefix=a", True],
        ["limit=2&status=STORED&prefix=a&last_evaluated_key=k1", True, 2],
        ["limit=2&status=STORED&prefix=a&last_evaluated_key=k2", True, 3],
        ["limit=2&status=STORED&prefix=a", False, 3],
    ]


def test_an_upload_already_listed_is_not_listed_twice(js: Js) -> None:
    # Given a listing showing u2 as PENDING (it was inserted, or the pages moved under it)
    listing = js(
        "m.withPage(m.newListing(), arg)",
        {"items": [view("u3", T3), view("u2", T2, status="PENDING")], "last_evaluated_key": "k"},
    )
    # When the next page holds u2 again, now STORED
    later = js(
        "m.withPage(arg[0], arg[1])",
        [listing, {"items": [view("u2", T2), view("u1", T1)], "last_evaluated_key": None}],
    )
    # Then it keeps its place, with its new status
    assert ids(later) == ["u3", "u2", "u1"]
    assert later["items"][1]["status"] == "STORED"


@pytest.mark.parametrize(
    ("added", "calls", "next_key", "again"),
    [
        (0, 1, "k", True),  # an empty page with more behind it: ask again at once
        (49, 4, "k", True),
        (50, 1, "k", False),  # a page's worth shown: wait for "Load more"
        (0, 5, "k", False),  # at most 5 calls per load
        (0, 1, None, False),  # the end
    ],
)
def test_one_load_asks_again_while_pages_come_back_short(
    js: Js, added: int, calls: int, next_key: str | None, again: bool
) -> None:
    listing: dict[str, Any] = {
        "filter": {"status": "", "prefix": ""},
        "items": [],
        "next": next_key,
        "loaded": True,
    }
    assert (
        js("m.wantsAnotherPage(arg[0], {added: arg[1], calls: arg[2]})", [listing, added, calls])
        is again
    )


WITH_UPLOAD = "m.withUpload(m.withPage(m.newListing(arg[0]), arg[1]), arg[2])"


def test_a_file_just_uploaded_goes_first(js: Js) -> None:
    page = {"items": [view("u2", T2), view("u1", T1)], "last_evaluated_key": "k"}
    assert ids(js(WITH_UPLOAD, [{}, page, view("u3", T3)])) == ["u3", "u2", "u1"]


def test_a_file_just_uploaded_is_left_out_when_the_filter_excludes_it(js: Js) -> None:
    page = {"items": [view("u2", T2, filename="a.txt")], "last_evaluated_key": None}
    other_name = view("u3", T3, filename="b.txt")
    other_status = view("u4", T4, filename="a2.txt", status="DUPLICATE")
    assert ids(js(WITH_UPLOAD, [{"prefix": "a"}, page, other_name])) == ["u2"]
    assert ids(js(WITH_UPLOAD, [{"status": "STORED"}, page, other_status])) == ["u2"]
    duplicates = {"items": [view("u1", T1, status="DUPLICATE")], "last_evaluated_key": None}
    assert ids(js(WITH_UPLOAD, [{"status": "DUPLICATE"}, duplicates, other_status])) == ["u4", "u1"]


def test_a_listed_upload_that_changed_is_updated_in_place_or_dropped(js: Js) -> None:
    page = {"items": [view("u2", T2, status="PENDING"), view("u1", T1)], "last_evaluated_key": None}
    stored = js(WITH_UPLOAD, [{}, page, view("u2", T2)])
    assert ids(stored) == ["u2", "u1"]
    assert stored["items"][0]["status"] == "STORED"
    # A cancelled upload leaves a list of pending ones
    pending = {"items": [view("u2", T2, status="PENDING")], "last_evaluated_key": None}
    aborted = view("u2", T2, status="REJECTED", reason="aborted")
    assert ids(js(WITH_UPLOAD, [{"status": "PENDING"}, pending, aborted])) == []


def test_an_upload_older_than_every_row_waits_for_its_page(js: Js) -> None:
    page = {"items": [view("u3", T3)], "last_evaluated_key": "k"}
    assert ids(js(WITH_UPLOAD, [{}, page, view("u1", T1)])) == ["u3"]
    last = {"items": [view("u3", T3)], "last_evaluated_key": None}
    assert ids(js(WITH_UPLOAD, [{}, last, view("u1", T1)])) == ["u3", "u1"]


def test_a_row_shows_name_size_status_and_time(js: Js) -> None:
    row = js(
        "m.fileRow(arg, {formatTime: d => d.toISOString().slice(0, 16)})",
        view("u1", "2025-03-04T05:06:07.890Z", filename="report.pdf", size=3 * 1024**2),
    )
    assert row == {
        "uploadId": "u1",
        "name": "report.pdf",
        "size": "3.0 MiB",
        "bytes": "3,145,728 bytes",
        "status": "STORED",
        "statusText": "Stored",
        "created": "2025-03-04T05:06",
        "createdIso": "2025-03-04T05:06:07.890Z",
        "downloadable": True,
    }


@pytest.mark.parametrize(
    ("status", "reason", "text", "downloadable"),
    [
        ("STORED", None, "Stored", True),
        ("DUPLICATE", None, "Duplicate", True),
        ("PENDING", None, "Pending", False),
        ("REJECTED", "aborted", "Rejected: the upload was cancelled", False),
        ("REJECTED", "checksum_mismatch", "Rejected: the bytes received do not match", False),
        ("REJECTED", "something_new", "Rejected: something_new", False),
        ("REJECTED", None, "Rejected", False),
    ],
)
def test_a_row_s_status_says_why_an_upload_was_rejected(
    js: Js, status: str, reason: str | None, text: str, downloadable: bool
) -> None:
    row = js("m.fileRow(arg)", view("u1", T1, status=status, reason=reason))
    assert row["statusText"].startswith(text)
    assert row["downloadable"] is downloadable


def test_a_time_the_browser_cannot_read_is_left_blank(js: Js) -> None:
    row = js("m.fileRow(arg)", view("u1", "not a time"))
    assert (row["created"], row["createdIso"]) == ("", "")


@pytest.mark.parametrize(
    ("status", "title", "confirm", "says"),
    [
        ("STORED", "Delete a.txt?", "Delete", "is deleted from your files"),
        ("DUPLICATE", "Delete a.txt?", "Delete", "is deleted from your files"),
        ("PENDING", "Cancel the upload of a.txt?", "Cancel upload", "the upload is cancelled"),
        ("REJECTED", "Remove a.txt?", "Remove", "removes the rejected upload"),
    ],
)
def test_the_confirmation_says_what_deleting_does(
    js: Js, status: str, title: str, confirm: str, says: str
) -> None:
    prompt = js("m.deletePrompt(arg)", view("u1", T1, status=status, filename="a.txt"))
    assert (prompt["title"], prompt["confirm"]) == (title, confirm)
    assert says in prompt["text"]


@pytest.mark.parametrize(
    ("status", "answer", "message", "outcome", "note", "error"),
    [
        ("STORED", 204, "", "remove", "Deleted a.txt.", False),
        ("REJECTED", 204, "", "remove", "Deleted a.txt.", False),
        ("PENDING", 204, "", "recheck", "Upload of a.txt cancelled.", False),
        ("STORED", 404, "upload not found", "remove", "a.txt was already deleted.", False),
        ("PENDING", 409, "the bytes are being stored", "keep", "the bytes are being stored", True),
        ("PENDING", 409, "", "keep", "a.txt is being stored right now. Try again", True),
        ("STORED", 403, "forbidden", "keep", "Could not delete a.txt: forbidden", True),
        ("STORED", 503, "", "keep", "the API failed (HTTP 503). Try again later.", True),
    ],
)
def test_what_a_delete_answer_means_for_the_row(
    js: Js, status: str, answer: int, message: str, outcome: str, note: str, error: bool
) -> None:
    result = js(
        "m.afterDelete(arg[0], arg[1], arg[2])",
        [view("u1", T1, status=status, filename="a.txt"), answer, message],
    )
    assert (result["outcome"], result["error"]) == (outcome, error)
    assert note in result["note"]


def test_a_listing_after_a_delete_no_longer_holds_the_row(js: Js) -> None:
    page = {"items": [view("u2", T2), view("u1", T1)], "last_evaluated_key": None}
    assert ids(js("m.withoutUpload(m.withPage(m.newListing(), arg), 'u2')", page)) == ["u1"]


@pytest.mark.parametrize(
    ("filter_", "items", "next_key", "loaded", "loading", "summary"),
    [
        ({}, 0, None, False, True, "Loading…"),
        ({}, 0, None, False, False, ""),
        ({}, 0, None, True, False, "No files yet."),
        ({"prefix": "x"}, 0, None, True, False, "No files match."),
        ({}, 1, None, True, False, "1 file."),
        ({}, 1200, "k", True, False, "1,200 files shown; more follow."),
        ({"status": "STORED"}, 0, "k", True, False, "0 files shown; more follow."),
    ],
)
def test_the_line_under_the_list_counts_what_is_shown(
    js: Js,
    filter_: dict[str, str],
    items: int,
    next_key: str | None,
    loaded: bool,
    loading: bool,
    summary: str,
) -> None:
    listing = js(
        "({...m.newListing(arg[0]), items: new Array(arg[1]).fill({}), next: arg[2],"
        " loaded: arg[3]})",
        [filter_, items, next_key, loaded],
    )
    assert js("m.listingSummary(arg[0], {loading: arg[1]})", [listing, loading]) == summary


# --- the health view ------------------------------------------------------------------------------

CHECKED_AT = "2025-11-27T17:10:42Z"


def health(**parts: dict[str, Any]) -> dict[str, Any]:
    """GET /admin/health of a service where nothing needs attention; ``parts`` change a part."""
    answer: dict[str, Any] = {
        "ok": True,
        "attention": [],
        "ingest_queue": {"waiting": 1234, "in_flight": 5, "oldest_message_age_seconds": 125.4},
        "dead_letter_queue": {"waiting": 0, "in_flight": 0},
        "reconciliation": {
            "at": "2025-11-27T14:05:12.123456Z",
            "clean": True,
            "drift": 0,
            "repaired": False,
        },
        "collection": {
            "unreferenced": 4,
            "due": 1,
            "grace_seconds": 86400,
            "last_run_at": "2025-11-27T17:05:12Z",
            "last_collected": 2,
            "last_run_complete": True,
        },
    }
    for key, changes in parts.items():
        answer[key] = {**answer[key], **changes}
    return answer


def health_view(js: Js, answer: dict[str, Any]) -> dict[str, Any]:
    """logic.healthView at CHECKED_AT, times shown as ISO to the minute."""
    view: dict[str, Any] = js(
        "m.healthView(arg[0], {now: Date.parse(arg[1]),"
        " formatTime: d => d.toISOString().slice(0, 16)})",
        [answer, CHECKED_AT],
    )
    return view


def texts(view: dict[str, Any]) -> dict[str, str]:
    """Each field as the page shows it: its text, then how long ago."""
    return {
        name: f"{field['text']}, {field['when']['ago']}" if field["when"] else field["text"]
        for name, field in view["fields"].items()
    }


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-3, "0 s"),
        (45.9, "45 s"),
        (60, "1 min"),
        (3599, "59 min"),
        (3600, "1 h"),
        (7500, "2 h 5 min"),
        (86400, "1 d"),
        (3 * 86400 + 4 * 3600 + 59 * 60, "3 d 4 h"),
    ],
)
def test_durations_read_as_the_cli_says_them(js: Js, seconds: float, text: str) -> None:
    assert js("m.formatDuration(arg)", seconds) == text


def test_a_healthy_service_shows_every_part_and_nothing_to_attend_to(js: Js) -> None:
    view = health_view(js, health())
    assert (view["ok"], view["attention"], view["summary"]) == (
        True,
        [],
        "Nothing needs attention.",
    )
    assert texts(view) == {
        "waiting": "1,234",
        "inFlight": "5",
        "oldest": "2 min",
        "deadLetters": "0",
        "reconciliation": "Clean, 3 h 5 min ago",
        "backlog": "4 unreferenced, 1 due (grace 1 d)",
        "collection": "2 removed, 5 min ago",
    }
    assert view["fields"]["reconciliation"]["when"] == {
        "iso": "2025-11-27T14:05:12.123Z",
        "ago": "3 h 5 min ago",
        "exact": "2025-11-27T14:05",
    }
    assert not any(field["alert"] for field in view["fields"].values())


def test_what_needs_attention_comes_first_and_its_fields_are_marked(js: Js) -> None:
    # Given dead letters, and drift the last reconciliation could not repair
    attention = [
        "2 message(s) in the dead-letter queue (DeadLetterQueueAlarm)",
        "the last reconciliation found drift 7 (CounterDriftAlarm)",
    ]
    answer = {
        **health(
            dead_letter_queue={"waiting": 1, "in_flight": 1},
            reconciliation={"at": "2025-11-25T14:05:12Z", "clean": False, "drift": 7},
        ),
        "ok": False,
        "attention": attention,
    }
    # When the page reads it
    view = health_view(js, answer)
    # Then the attention items are listed as the API worded them, and those fields are marked
    assert (view["ok"], view["attention"], view["summary"]) == (
        False,
        attention,
        "2 items need attention:",
    )
    fields = view["fields"]
    assert (fields["deadLetters"]["text"], fields["deadLetters"]["alert"]) == (
        "1 waiting, 1 in flight",
        True,
    )
    assert texts(view)["reconciliation"] == "Drift 7 (not repaired), 2 d 3 h ago"
    assert fields["reconciliation"]["alert"] is True
    assert fields["backlog"]["alert"] is False


def test_one_item_needing_attention_is_said_in_the_singular(js: Js) -> None:
    view = health_view(js, {**health(), "ok": False, "attention": ["x (IngestBacklogAlarm)"]})
    assert view["summary"] == "1 item needs attention:"


def test_a_new_stack_whose_jobs_never_ran_says_so(js: Js) -> None:
    answer = health(
        ingest_queue={"waiting": 0, "in_flight": 0, "oldest_message_age_seconds": None},
        reconciliation={"at": None, "clean": None, "drift": None, "repaired": None},
        collection={"last_run_at": None, "last_collected": None, "last_run_complete": None},
    )
    view = health_view(js, answer)
    assert texts(view) | {"backlog": ""} == {
        "waiting": "0",
        "inFlight": "0",
        "oldest": "None waiting",
        "deadLetters": "0",
        "reconciliation": "Never run",
        "backlog": "",
        "collection": "Never run",
    }
    assert view["ok"] is True


def test_messages_without_a_recent_age_metric_and_a_repair_and_a_run_cut_short(js: Js) -> None:
    answer = health(
        ingest_queue={"waiting": 2, "oldest_message_age_seconds": None},
        reconciliation={"clean": False, "drift": 3, "repaired": True},
        collection={"last_collected": 500, "last_run_complete": False},
    )
    shown = texts(health_view(js, answer))
    assert shown["oldest"] == "Unknown (no recent metric)"
    assert shown["reconciliation"] == "Drift 3 (repaired), 3 h 5 min ago"
    assert shown["collection"] == "500 removed (stopped for time; the next run goes on), 5 min ago"


def test_a_time_ahead_of_the_browsers_clock_reads_0_s_ago(js: Js) -> None:
    answer = health(collection={"last_run_at": "2025-11-27T17:12:00Z"})
    assert texts(health_view(js, answer))["collection"] == "2 removed, 0 s ago"


def test_an_answer_that_is_not_ok_without_items_still_says_so(js: Js) -> None:
    view = health_view(js, {**health(), "ok": False})
    assert (view["ok"], view["summary"]) == (False, "The API says something needs attention.")
