"""Unit tests of web/logic.js, run inside Chromium: the module is imported by a page, no Node."""

from __future__ import annotations

import hashlib
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
