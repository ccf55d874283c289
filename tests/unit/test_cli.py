"""The `onecopy` CLI without a network: arguments, hashing, output, exit codes, the upload flow.

FakeApi stands in for ApiClient. It behaves like the service as a client sees it: a 409 for
content the caller already holds, a slot to PUT into otherwise, and a verdict decided from the
bytes that actually arrived.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shlex
import stat
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from onecopy_cli.api import (
    AlreadyStored,
    ApiClient,
    ApiError,
    CliError,
    HeldPart,
    MultipartSlot,
    NotSignedIn,
    PartSlot,
    StorageError,
    Unreachable,
    UploadSlot,
)
from onecopy_cli.commands.upload import summary
from onecopy_cli.console import Console
from onecopy_cli.credentials import CachedLogin, StaticToken, groups_of
from onecopy_cli.files import CHUNK, FileBody, FileChanged, content_type_of, sha256_file
from onecopy_cli.main import build_parser, main
from onecopy_cli.multipart import PART_ATTEMPTS
from onecopy_cli.output import (
    health_view,
    human_duration,
    human_size,
    result_json,
    result_line,
    upload_view,
)
from onecopy_cli.signin import Cognito, Tokens
from onecopy_cli.tokens import Login, TokenCache
from onecopy_cli.upload import FileResult, Outcome, Uploader, wait_until_done

pytestmark = pytest.mark.unit

ABSENT_ID = "0123456789abcdef0123456789abcdef"


def iso_ago(seconds: float) -> str:
    """A time the API could send, ``seconds`` before now: `2025-11-27T14:05:12.123456Z`."""
    at = datetime.now(UTC) - timedelta(seconds=seconds)
    return at.isoformat(timespec="microseconds").replace("+00:00", "Z")


def healthy(**parts: dict[str, Any]) -> dict[str, Any]:
    """GET /admin/health of a service where nothing needs attention; ``parts`` change a part."""
    health: dict[str, Any] = {
        "ok": True,
        "attention": [],
        "ingest_queue": {"waiting": 3, "in_flight": 1, "oldest_message_age_seconds": 125.0},
        "dead_letter_queue": {"waiting": 0, "in_flight": 0},
        "reconciliation": {
            "at": iso_ago(3 * 3600 + 5 * 60 + 30),
            "clean": True,
            "drift": 0,
            "repaired": False,
        },
        "collection": {
            "unreferenced": 4,
            "due": 1,
            "grace_seconds": 86400,
            "last_run_at": iso_ago(5 * 60 + 30),
            "last_collected": 2,
            "last_run_complete": True,
        },
    }
    for key, changes in parts.items():
        health[key] = {**health[key], **changes}
    return health


DEAD_LETTERS = "2 message(s) in the dead-letter queue (DeadLetterQueueAlarm)"
DRIFT = "the last reconciliation found drift 7 (CounterDriftAlarm)"


def troubled() -> dict[str, Any]:
    """Dead letters, and a reconciliation that found drift it could not repair."""
    health = healthy(
        dead_letter_queue={"waiting": 1, "in_flight": 1},
        reconciliation={"clean": False, "drift": 7, "repaired": False},
    )
    return {**health, "ok": False, "attention": [DEAD_LETTERS, DRIFT]}


class FakeApi:
    """The service as the CLI sees it, in memory.

    Multipart is modelled as S3 does it: parts are kept by number (a part sent again replaces
    the old one), each PUT answers with an ETag, and completion needs every part with its ETag.
    URLs carry a version so that a test can expire one and see a fresh one asked for.
    """

    def __init__(self, *, part_size: int = 1024, threshold: int = 100 * 1024**2) -> None:
        self.part_size = part_size
        self.threshold = threshold
        self.held: set[str] = set()
        self.contents: dict[str, bytes] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        self.received: dict[str, bytes] = {}
        self.sent_headers: dict[str, dict[str, str]] = {}
        self.created: list[dict[str, Any]] = []
        self.create_error: Exception | None = None
        self.put_error: Exception | None = None
        self.verdict: dict[str, Any] | None = None  # forces what the worker decides
        self.closed = False
        self.waits: list[int] = []  # the `wait` of each GET /uploads/{id}; this API never waits
        # multipart
        self.parts: dict[str, dict[int, bytes]] = {}
        self.part_puts: list[tuple[str, int, dict[str, str]]] = []
        self.presigned: list[list[int]] = []
        self.expired: set[str] = set()  # URLs the bucket refuses as expired
        self.part_errors: dict[int, list[Exception]] = {}  # raised by the next PUTs of a part
        self.completions: list[list[tuple[int, str]]] = []
        self.complete_errors: list[Exception] = []
        self._url_version = 0
        self._lock = threading.Lock()
        # reads
        self.corrupt_downloads = False
        self.hash_pages: list[tuple[int, str | None]] = []
        self.upload_pages: list[dict[str, Any]] = []  # the arguments of each list_uploads
        self.page_cap: int | None = None  # a page reads at most this many uploads, like DynamoDB
        # removal and erasure
        self.storing: set[str] = set()  # pending uploads whose bytes are being stored: 409
        self.deletes: list[str] = []
        self.erase_answers: list[dict[str, Any] | BaseException] = []
        self.erased: list[str] = []
        # the health view
        self.health: dict[str, Any] = healthy()
        self.health_calls = 0

    # --- uploads ---

    def create_upload(
        self, *, filename: str, size: int, content_type: str, sha256: str, multipart: bool = False
    ) -> UploadSlot | MultipartSlot | AlreadyStored:
        self.created.append({"filename": filename, "size": size, "multipart": multipart})
        if self.create_error is not None:
            raise self.create_error
        upload_id = f"{len(self.uploads) + 1:032x}"
        view = {
            "upload_id": upload_id,
            "filename": filename,
            "size": size,
            "content_type": content_type,
            "declared": sha256,
            "status": "PENDING",
            "created_at": "2025-11-27T14:05:12.000000Z",
        }
        self.uploads[upload_id] = view
        if sha256 in self.held:
            self._decide(view, self.contents[sha256])
            return AlreadyStored(upload_id=upload_id, message="already stored")
        if multipart or size > self.threshold:
            if size < 1:
                raise ApiError(400, "a multipart upload needs at least 1 byte")
            self.parts[upload_id] = {}
            return MultipartSlot(upload_id, self.part_size, -(-size // self.part_size))
        headers = {"Content-Length": str(size), "Content-Type": content_type, "If-None-Match": "*"}
        return UploadSlot(upload_id, f"https://bucket.test/staging/{upload_id}", headers)

    def put_object(self, url: str, headers: dict[str, str], body: Iterable[bytes] | bytes) -> None:
        if self.put_error is not None:
            raise self.put_error
        upload_id = url.rsplit("/", 1)[1]
        data = body if isinstance(body, bytes) else b"".join(body)
        self.received[upload_id] = data
        self.sent_headers[upload_id] = headers
        self._decide(self.uploads[upload_id], data)

    def _decide(self, view: dict[str, Any], data: bytes) -> None:
        """What the worker does with the bytes that arrived."""
        digest = hashlib.sha256(data).hexdigest()
        if self.verdict is not None:
            view.update(self.verdict)
        elif digest != view["declared"]:
            view.update(status="REJECTED", reason="checksum_mismatch")
        else:
            duplicate = digest in self.held
            view.update(
                status="DUPLICATE" if duplicate else "STORED",
                sha256=digest,
                duplicate=duplicate,
                completed_at="2025-11-27T14:05:13.000000Z",
            )
            self.held.add(digest)
            self.contents[digest] = data

    def _plan(self, upload_id: str) -> tuple[int, int]:
        size = self.uploads[upload_id]["size"]
        return size, -(-size // self.part_size)

    def _pending_multipart(self, upload_id: str) -> None:
        if upload_id not in self.uploads:
            raise ApiError(404, f"no upload {upload_id}")
        if upload_id not in self.parts:
            raise ApiError(409, f"upload {upload_id} is a single PUT, not a multipart upload")
        if self.uploads[upload_id].get("assembled"):
            raise ApiError(409, f"upload {upload_id} was already completed")

    def presign_parts(self, upload_id: str, part_numbers: Sequence[int]) -> list[PartSlot]:
        self._pending_multipart(upload_id)
        size, count = self._plan(upload_id)
        assert 1 <= len(part_numbers) <= 100
        assert all(1 <= n <= count for n in part_numbers)
        with self._lock:
            self.presigned.append(list(part_numbers))
            self._url_version += 1
            version = self._url_version
        slots = []
        for n in part_numbers:
            length = self.part_size if n < count else size - self.part_size * (count - 1)
            url = f"https://bucket.test/staging/{upload_id}?partNumber={n}&v={version}"
            slots.append(PartSlot(n, url, {"Content-Length": str(length)}))
        return slots

    def put_part(self, url: str, headers: dict[str, str], body: Iterable[bytes] | bytes) -> str:
        path, query = url.split("?")
        upload_id = path.rsplit("/", 1)[1]
        n = int(dict(pair.split("=") for pair in query.split("&"))["partNumber"])
        with self._lock:
            self.part_puts.append((upload_id, n, headers))
            errors = self.part_errors.get(n) or []
            error = errors.pop(0) if errors else None
        if url in self.expired:
            raise StorageError(403, "AccessDenied", "Request has expired")
        chunks = iter([body] if isinstance(body, bytes) else body)
        data = next(chunks, b"")
        if error is not None:
            raise error  # after the first chunk went out, as a dropped connection would
        data += b"".join(chunks)
        assert int(headers["Content-Length"]) == len(data), "the signed length must match"
        with self._lock:
            self.parts[upload_id][n] = data
        return f'"{hashlib.md5(data).hexdigest()}"'

    def list_parts(self, upload_id: str) -> list[HeldPart]:
        self._pending_multipart(upload_id)
        return [
            HeldPart(n, f'"{hashlib.md5(data).hexdigest()}"', len(data))
            for n, data in sorted(self.parts[upload_id].items())
        ]

    def complete_upload(self, upload_id: str, parts: Sequence[tuple[int, str]]) -> dict[str, Any]:
        self.completions.append(list(parts))
        if self.complete_errors:
            raise self.complete_errors.pop(0)
        self._pending_multipart(upload_id)
        _, count = self._plan(upload_id)
        held = {part.part_number: part.etag for part in self.list_parts(upload_id)}
        if [n for n, _ in parts] != list(range(1, count + 1)):
            raise ApiError(400, f"parts must list each part number from 1 to {count} exactly once")
        if any(held.get(n) != etag for n, etag in parts):
            raise ApiError(400, "a part is missing or its ETag is not the one S3 returned")
        view = self.uploads[upload_id]
        view["assembled"] = True
        self._decide(view, b"".join(self.parts[upload_id][n] for n in range(1, count + 1)))
        return self.get_upload(upload_id)

    def get_upload(self, upload_id: str, *, wait: int = 0) -> dict[str, Any]:
        self.waits.append(wait)
        if upload_id not in self.uploads:
            raise ApiError(404, f"no upload {upload_id}")
        hidden = ("declared", "assembled", "duplicate")
        return {k: v for k, v in self.uploads[upload_id].items() if k not in hidden}

    # --- reads ---

    def _stored(self, identifier: str) -> dict[str, Any]:
        if len(identifier) == 64:
            views = [v for v in self.uploads.values() if v.get("sha256") == identifier]
        else:
            views = [self.uploads[identifier]] if identifier in self.uploads else []
        views = [v for v in views if v["status"] in ("STORED", "DUPLICATE")]
        if not views:
            raise ApiError(404, f"nothing stored for {identifier}")
        return views[0]

    def get_metadata(self, identifier: str) -> dict[str, Any]:
        view = self._stored(identifier)
        if len(identifier) == 64:
            # A content as its owner holds it: their first upload of it, and their count.
            return {
                "sha256": identifier,
                "size": len(self.contents[identifier]),
                "content_type": view["content_type"],
                "filename": view["filename"],
                "upload_id": view["upload_id"],
                "upload_count": sum(v.get("sha256") == identifier for v in self.uploads.values()),
                "created_at": view["created_at"],
            }
        fields = ("upload_id", "filename", "size", "content_type", "status", "sha256")
        times = ("duplicate", "created_at", "completed_at")
        return {k: view[k] for k in (*fields, *times)}

    def get_download(self, identifier: str) -> dict[str, Any]:
        view = self._stored(identifier)
        return {
            "url": f"https://bucket.test/cas/sha256/{view['sha256']}?signed",
            "expires_at": "2025-11-27T15:05:12Z",
            "filename": view["filename"],
        }

    def download(self, url: str) -> Iterator[bytes]:
        data = self.contents[url.split("/")[-1].split("?")[0]]
        if self.corrupt_downloads:
            data = bytes([data[0] ^ 1]) + data[1:]
        for start in range(0, len(data), 7):
            yield data[start : start + 7]

    def get_stats(self) -> dict[str, Any]:
        done = [v for v in self.uploads.values() if v["status"] in ("STORED", "DUPLICATE")]
        duplicates = [v for v in done if v["status"] == "DUPLICATE"]
        return {
            "total_files": len(self.contents),
            "total_uploads": len(done),
            "duplicates_avoided": len(duplicates),
            "total_s3_size_saved": sum(v["size"] for v in duplicates),
            "total_bytes_stored": sum(len(data) for data in self.contents.values()),
        }

    def get_health(self) -> dict[str, Any]:
        self.health_calls += 1
        return self.health

    def list_hashes(self, *, limit: int, token: str | None = None) -> dict[str, Any]:
        self.hash_pages.append((limit, token))
        ordered = sorted(self.contents)
        start = ordered.index(token.removeprefix("after:")) + 1 if token else 0
        page = ordered[start : start + limit]
        more = start + limit < len(ordered)
        return {
            "items": [
                {
                    "sha256": sha256,
                    "size": len(self.contents[sha256]),
                    "content_type": "application/octet-stream",
                    "upload_count": 1,
                    "created_at": "2025-11-27T14:05:12.123456Z",
                }
                for sha256 in page
            ],
            "last_evaluated_key": f"after:{page[-1]}" if more else None,
        }

    def list_uploads(
        self,
        *,
        limit: int,
        status: str | None = None,
        prefix: str | None = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        """As DynamoDB pages a query with a filter: a page reads `limit` uploads, newest first,
        and keeps those that match, so it can hold fewer (or none) while more follow."""
        self.upload_pages.append(
            {"limit": limit, "status": status, "prefix": prefix, "token": token}
        )
        newest_first = sorted(self.uploads, reverse=True)
        start = newest_first.index(token) + 1 if token else 0
        read = newest_first[start : start + min(limit, self.page_cap or limit)]
        more = start + len(read) < len(newest_first)
        return {
            "items": [
                self.get_upload(upload_id)
                for upload_id in read
                if status in (None, self.uploads[upload_id]["status"])
                and self.uploads[upload_id]["filename"].startswith(prefix or "")
            ],
            "last_evaluated_key": read[-1] if more else None,
        }

    def delete_upload(self, upload_id: str) -> None:
        self.deletes.append(upload_id)
        if upload_id not in self.uploads:
            raise ApiError(404, f"no upload {upload_id}")
        if upload_id in self.storing:
            raise ApiError(409, "its bytes are being stored right now: try again shortly")
        view = self.uploads[upload_id]
        if view["status"] == "PENDING":
            view.update(status="REJECTED", reason="aborted")
        else:
            del self.uploads[upload_id]

    def erase_owner(self, sub: str) -> dict[str, Any]:
        self.erased.append(sub)
        answer = self.erase_answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return {"owner": sub, **answer}

    def close(self) -> None:
        self.closed = True


class Run:
    """One `onecopy ...` invocation against a FakeApi, signed in with a CI token (the sign-in
    itself is tested against a fake Cognito further down)."""

    def __init__(self, api: FakeApi, *args: str, environ: dict[str, str] | None = None) -> None:
        self.urls: list[str] = []
        out, err = io.StringIO(), io.StringIO()

        def make_client(url: str, **_: object) -> FakeApi:
            self.urls.append(url)
            return api

        self.code = main(
            list(args),
            make_client=make_client,
            stdout=out,
            stderr=err,
            environ={"ONECOPY_TOKEN": "ci-token", **(environ or {})},
        )
        self.out = out.getvalue()
        self.err = err.getvalue()
        self.lines = self.out.splitlines()


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello, onecopy\n")
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- arguments ---------------------------------------------------------------------------------


def test_upload_defaults() -> None:
    args = build_parser().parse_args(["upload", "a.txt", "b.txt"])
    assert (args.files, args.parallel, args.timeout, args.json) == (
        ["a.txt", "b.txt"],
        4,
        300.0,
        False,
    )


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        (["status", ABSENT_ID], {}, "http://127.0.0.1:3000"),
        (["status", ABSENT_ID], {"ONECOPY_API_URL": "https://env:1"}, "https://env:1"),
        (
            ["--api", "https://flag:2", "status", ABSENT_ID],
            {"ONECOPY_API_URL": "https://env:1"},
            "https://flag:2",
        ),
        (["status", ABSENT_ID, "--api", "https://after:3"], {}, "https://after:3"),
    ],
)
def test_api_url_comes_from_the_flag_then_the_environment_then_the_default(
    api: FakeApi, argv: list[str], environ: dict[str, str], expected: str
) -> None:
    # When
    run = Run(api, *argv, environ=environ)
    # Then the client was made for that URL (the fake answers 404, which is beside the point)
    assert run.urls == [expected]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["upload"],
        ["upload", "-j", "0", "a.txt"],
        ["upload", "--parallel", "many", "a.txt"],
        ["upload", "--timeout", "-1", "a.txt"],
        ["--api", "ftp://example.com", "upload", "a.txt"],
        ["status", "not-an-id"],
        ["frobnicate"],
        ["upload", "--part-parallel", "0", "a.txt"],
        ["upload", "--resume", "not-an-id", "a.txt"],
        ["upload", "--resume", ABSENT_ID, "a.txt", "b.txt"],
        ["info", "abc"],
        ["download", "g" * 32],
        ["hashes", "--limit", "0"],
        ["hashes", "--limit", "1001"],
        ["admin"],
        ["admin", "reconcile", "--stack", "prod", "--lambda-endpoint", "http://127.0.0.1:1"],
        ["ls", "--status", "lost"],
        ["ls", "--limit", "0"],
        ["ls", "--limit", "ten"],
        ["ls", "--prefix", ""],
        ["ls", "--prefix", "x" * 256],
        ["ls", "extra"],
        ["rm"],
        ["rm", ABSENT_ID, "not-an-id"],
        ["admin", "erase-owner"],
        ["admin", "erase-owner", " "],
        ["admin", "erase-owner", "a/b"],
        ["admin", "erase-owner", "x" * 256],
        ["admin", "erase-owner", "sub", "--timeout", "0"],
        ["admin", "reconcile", "--stack", "prod", "--function-name", "Reconcile"],
    ],
)
def test_usage_errors_exit_2_without_calling_the_api(api: FakeApi, argv: list[str]) -> None:
    run = Run(api, *argv)
    assert run.code == 2
    assert run.err
    assert not api.uploads


def test_help_exits_0(api: FakeApi) -> None:
    run = Run(api, "upload", "--help")
    assert run.code == 0
    assert "--parallel N" in run.out


def test_help_lists_every_command_and_the_admin_ones(api: FakeApi) -> None:
    top = Run(api, "--help")
    admin = Run(api, "admin", "--help")
    assert (top.code, admin.code) == (0, 0)
    assert re.findall(r"^    ([a-z-]+) +\S", top.out, re.MULTILINE) == [
        *("login", "whoami", "logout", "upload", "ls", "status", "info", "download", "rm"),
        *("stats", "hashes", "admin"),
    ]
    assert "list your uploads, newest first" in top.out
    assert "delete uploads (a pending one is aborted)" in top.out
    assert "erase-owner" in admin.out
    assert "delete every upload of one owner (admins only)" in admin.out
    assert "queues, dead letters and the background jobs (admins only)" in admin.out


# --- hashing and files -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, CHUNK, CHUNK + 1])
def test_sha256_file_matches_hashlib_across_chunk_boundaries(tmp_path: Path, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert sha256_file(path) == (sha(data), size)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "application/pdf"),
        ("notes.txt", "text/plain"),
        ("data.csv.gz", "application/gzip"),
        ("no-extension", "application/octet-stream"),
        ("weird.zzzz", "application/octet-stream"),
    ],
)
def test_content_type_is_guessed_from_the_name(name: str, expected: str) -> None:
    assert content_type_of(Path(name)) == expected


def test_file_body_streams_exactly_the_declared_bytes(tmp_path: Path) -> None:
    # Given a file that grew after it was hashed at 10 bytes
    path = tmp_path / "f"
    path.write_bytes(b"0123456789abc")
    seen: list[int] = []
    # When it is streamed as a 10-byte body
    body = FileBody(path, 10, on_chunk=seen.append, chunk_size=4)
    # Then exactly the 10 declared bytes go out, and progress hears of each chunk
    assert (len(body), b"".join(body), seen) == (10, b"0123456789", [4, 4, 2])


def test_file_body_refuses_to_send_fewer_bytes_than_declared(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"short")
    with pytest.raises(FileChanged):
        b"".join(FileBody(path, 100))


# --- formatting --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nbytes", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (5 * 1024**3, "5.0 GiB")],
)
def test_human_size(nbytes: int, text: str) -> None:
    assert human_size(nbytes) == text


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
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def _result(**overrides: Any) -> FileResult:
    fields: dict[str, Any] = {
        "path": "docs/report.pdf",
        "filename": "report.pdf",
        "outcome": Outcome.STORED,
        "sha256": "ab" * 32,
        "size": 2048,
        "content_type": "application/pdf",
        "upload_id": "cd" * 16,
    }
    return FileResult(**{**fields, **overrides})


def test_result_line_reads_status_sha_size_name_id() -> None:
    assert result_line(_result()).split() == [
        "stored",
        "ab" * 32,
        "2.0",
        "KiB",
        "docs/report.pdf",
        "cd" * 16,
    ]


def test_result_line_says_when_nothing_was_uploaded() -> None:
    line = result_line(_result(outcome=Outcome.DUPLICATE, already_stored=True))
    assert line.startswith("duplicate  ")
    assert line.endswith("(you already hold it: nothing uploaded)")


def test_result_line_gives_the_rejection_reason() -> None:
    line = result_line(_result(outcome=Outcome.REJECTED, reason="size_mismatch"))
    assert line.startswith("rejected (size_mismatch)  ")


def test_result_line_is_plain_unless_color_is_asked_for() -> None:
    assert "\x1b[" not in result_line(_result())
    assert result_line(_result(), color=True).startswith("\x1b[32mstored")


def test_result_json_is_one_object_with_the_files_facts() -> None:
    record = json.loads(result_json(_result(outcome=Outcome.REJECTED, reason="size_mismatch")))
    assert record == {
        "file": "docs/report.pdf",
        "filename": "report.pdf",
        "status": "rejected",
        "upload_id": "cd" * 16,
        "sha256": "ab" * 32,
        "size": 2048,
        "content_type": "application/pdf",
        "reason": "size_mismatch",
    }


def test_summary_counts_outcomes_and_the_bytes_not_stored_again() -> None:
    results = [
        _result(),
        _result(outcome=Outcome.DUPLICATE, size=3 * 1024**2),
        _result(outcome=Outcome.FAILED, error="no such file"),
    ]
    assert summary(results) == (
        "3 files: 1 stored, 1 duplicate, 1 failed; 3.0 MiB did not need storing again"
    )


def test_upload_view_explains_a_rejection() -> None:
    view = {
        "upload_id": "cd" * 16,
        "status": "REJECTED",
        "filename": "report.pdf",
        "size": 2048,
        "content_type": "application/pdf",
        "created_at": "2025-11-27T14:05:12Z",
        "reason": "checksum_mismatch",
    }
    text = upload_view(view)
    assert "Status     rejected" in text
    assert "Size       2.0 KiB (2048 bytes)" in text
    assert "Reason     checksum_mismatch: the bytes that arrived do not have the SHA-256" in text
    assert "Completed" not in text


# --- upload ------------------------------------------------------------------------------------


def test_upload_stores_a_new_file_sending_the_bytes_with_exactly_the_signed_headers(
    api: FakeApi, hello: Path
) -> None:
    # When
    run = Run(api, "upload", str(hello))
    # Then
    assert run.code == 0
    (upload_id,) = api.uploads
    assert api.received[upload_id] == hello.read_bytes()
    assert api.sent_headers[upload_id] == {
        "Content-Length": "15",
        "Content-Type": "text/plain",
        "If-None-Match": "*",
    }
    assert run.lines == [
        f"stored     {sha(hello.read_bytes())}       15 B  {hello}  {upload_id}",
    ]
    assert run.err == ""
    assert api.closed


def test_uploading_the_same_file_twice_prints_stored_then_duplicate(
    api: FakeApi, hello: Path
) -> None:
    first = Run(api, "upload", str(hello))
    second = Run(api, "upload", str(hello))
    assert (first.code, second.code) == (0, 0)
    assert first.lines[0].split()[0] == "stored"
    assert second.lines[0].split()[0] == "duplicate"
    assert "you already hold it" in second.lines[0]
    # Nothing was PUT the second time
    assert len(api.received) == 1


def test_two_files_in_one_call_print_one_line_each(api: FakeApi, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"a")
    (tmp_path / "b.bin").write_bytes(b"b" * 3000)
    run = Run(api, "upload", str(tmp_path / "a.txt"), str(tmp_path / "b.bin"))
    assert run.code == 0
    by_name = {line.split()[4]: line.split() for line in run.lines}
    assert set(by_name) == {str(tmp_path / "a.txt"), str(tmp_path / "b.bin")}
    assert by_name[str(tmp_path / "b.bin")][:4] == ["stored", sha(b"b" * 3000), "2.9", "KiB"]


def test_an_empty_file_is_uploaded_as_an_empty_body(api: FakeApi, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.touch()
    run = Run(api, "upload", str(empty))
    assert run.code == 0
    assert list(api.received.values()) == [b""]


def test_json_prints_one_object_per_file(api: FakeApi, hello: Path, tmp_path: Path) -> None:
    # Given one file already held and one missing
    Run(api, "upload", str(hello))
    missing = tmp_path / "missing.txt"
    # When
    run = Run(api, "upload", "--json", "-j", "1", str(hello), str(missing))
    # Then
    records = {r["file"]: r for r in map(json.loads, run.lines)}
    assert records[str(hello)]["status"] == "duplicate"
    assert records[str(hello)]["already_stored"] is True
    assert records[str(missing)]["status"] == "failed"
    assert records[str(missing)]["error"] == "no such file"
    assert run.code == 1


def test_a_missing_file_is_an_error_naming_it_while_the_others_still_upload(
    api: FakeApi, hello: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.txt"
    run = Run(api, "upload", str(missing), str(hello), str(tmp_path))
    assert run.code == 1
    assert f"onecopy: {missing}: no such file" in run.err
    assert f"onecopy: {tmp_path}: is a directory" in run.err
    assert [line.split()[0] for line in run.lines] == ["stored"]


def test_a_rejected_upload_exits_1_and_says_why(api: FakeApi, hello: Path) -> None:
    api.verdict = {"status": "REJECTED", "reason": "size_mismatch"}
    run = Run(api, "upload", str(hello))
    assert run.code == 1
    assert run.lines[0].startswith("rejected (size_mismatch)  ")


def test_an_api_error_is_shown_with_the_file_name(api: FakeApi, hello: Path) -> None:
    api.create_error = ApiError(400, "filename must not contain control characters")
    run = Run(api, "upload", str(hello))
    assert run.code == 1
    assert run.out == ""
    assert run.err == (
        f"onecopy: {hello}: filename must not contain control characters (HTTP 400)\n"
    )


def test_a_refused_put_is_shown_with_the_file_name(api: FakeApi, hello: Path) -> None:
    api.put_error = StorageError(400, "BadDigest", "The Content-SHA256 you specified did not match")
    run = Run(api, "upload", str(hello))
    assert run.code == 1
    assert f"onecopy: {hello}: the file changed while it was being uploaded" in run.err


def test_a_file_that_shrinks_before_its_put_fails_without_sending_a_short_body(
    api: FakeApi, hello: Path
) -> None:
    # Given a file that another program truncates right after it was hashed
    class Truncating(FakeApi):
        def create_upload(self, **declared: Any) -> UploadSlot | MultipartSlot | AlreadyStored:
            hello.write_bytes(b"hi")
            return super().create_upload(**declared)

    api = Truncating()
    # When
    run = Run(api, "upload", str(hello))
    # Then
    assert run.code == 1
    assert f"onecopy: {hello}: changed while uploading" in run.err
    assert api.received == {}


def test_a_file_over_5_tib_is_refused_before_hashing_or_asking(
    api: FakeApi, tmp_path: Path
) -> None:
    # Given a (sparse) file one byte above S3's object limit
    huge = tmp_path / "huge.iso"
    with huge.open("wb") as sparse:
        sparse.truncate(5 * 1024**4 + 1)
    # When
    run = Run(api, "upload", str(huge))
    # Then
    assert run.code == 1
    assert "at most 5 TiB" in run.err
    assert api.uploads == {}


def test_an_unreachable_api_is_reported_once_for_all_files(
    api: FakeApi, hello: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.txt"
    other.write_bytes(b"other")
    api.create_error = Unreachable("onecopy API", "http://127.0.0.1:9", "Connection refused")
    run = Run(api, "upload", "-j", "1", str(hello), str(other))
    assert run.code == 1
    assert run.err.count("cannot reach the onecopy API at http://127.0.0.1:9") == 1
    assert run.out == ""


def test_an_upload_still_pending_at_the_deadline_says_how_to_check_later(
    api: FakeApi, hello: Path
) -> None:
    # Given a worker that never decides, and a clock the sleeps move forward
    api.verdict = {"status": "PENDING"}
    now = [0.0]
    uploader = Uploader(
        api, timeout=5, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s)
    )
    # When
    result = uploader.upload(str(hello))
    # Then
    assert result.outcome is Outcome.PENDING
    assert not result.ok
    assert f"onecopy status {result.upload_id}" in (result.error or "")
    assert now[0] == 5


def test_waiting_asks_the_api_to_wait_and_asks_again_at_once_when_it_did(api: FakeApi) -> None:
    # Given an API that holds each request as asked, and an upload done 25 s after the PUT
    now = [0.0]
    sleeps: list[float] = []

    class Waiting(FakeApi):
        def get_upload(self, upload_id: str, *, wait: int = 0) -> dict[str, Any]:
            self.waits.append(wait)
            now[0] = min(now[0] + wait, 25.0)
            return {"status": "STORED" if now[0] >= 25 else "PENDING"}

    waiting = Waiting()

    # When the CLI waits for it, for up to 30 s
    view = wait_until_done(
        waiting, ABSENT_ID, timeout=30, clock=lambda: now[0], sleep=sleeps.append
    )

    # Then two requests did it, 20 s and then the 10 s left, and the CLI never slept itself
    assert view == {"status": "STORED"}
    assert (waiting.waits, sleeps) == ([20, 10], [])


def test_polling_backs_off_from_a_fifth_of_a_second_to_two_seconds(api: FakeApi) -> None:
    api.uploads[ABSENT_ID] = {"upload_id": ABSENT_ID, "status": "PENDING"}
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    # An API that answers before the wait it was asked for (an older or busy one)
    view = wait_until_done(api, ABSENT_ID, timeout=10, clock=lambda: now[0], sleep=sleep)
    assert view["status"] == "PENDING"
    assert api.waits[:3] == [10, 9, 9]
    assert sleeps[:6] == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert sum(sleeps) == pytest.approx(10)


def test_polling_rides_out_a_server_error_but_not_a_client_error(api: FakeApi) -> None:
    answers: list[Any] = [ApiError(503, "busy"), {"status": "STORED"}]

    class Flaky(FakeApi):
        def get_upload(self, upload_id: str, *, wait: int = 0) -> dict[str, Any]:
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return dict(answer)

    assert wait_until_done(Flaky(), ABSENT_ID, timeout=10, sleep=lambda _: None) == {
        "status": "STORED"
    }
    with pytest.raises(ApiError):
        wait_until_done(api, ABSENT_ID, timeout=10, sleep=lambda _: None)


# --- upload in parts ---------------------------------------------------------------------------


@pytest.fixture
def parts_api() -> FakeApi:
    # 1 KiB parts keep multipart files small here; the real service uses 5 MiB or more.
    return FakeApi(part_size=1024)


def _random_file(tmp_path: Path, name: str, size: int) -> Path:
    path = tmp_path / name
    path.write_bytes(bytes((i * 7 + size) % 251 for i in range(size)))
    return path


def _assembled(api: FakeApi, upload_id: str) -> bytes:
    return b"".join(data for _, data in sorted(api.parts[upload_id].items()))


def test_multipart_sends_each_part_with_its_signed_length_then_completes_with_the_etags(
    parts_api: FakeApi, tmp_path: Path
) -> None:
    # Given a 2.5 KiB file: three parts of 1024, 1024 and 512 bytes
    big = _random_file(tmp_path, "big.bin", 2560)
    # When it is uploaded in parts
    run = Run(parts_api, "upload", "--multipart", str(big))
    # Then every part went with exactly its signed Content-Length, and the assembled object is
    # the file, stored
    assert (run.code, run.err) == (0, ""), run.err
    (upload_id,) = parts_api.uploads
    assert parts_api.created[0]["multipart"] is True
    assert sorted((n, h["Content-Length"]) for _, n, h in parts_api.part_puts) == [
        (1, "1024"),
        (2, "1024"),
        (3, "512"),
    ]
    assert _assembled(parts_api, upload_id) == big.read_bytes()
    (completion,) = parts_api.completions
    assert [n for n, _ in completion] == [1, 2, 3]
    assert run.lines == [f"stored     {sha(big.read_bytes())}    2.5 KiB  {big}  {upload_id}"]


@pytest.mark.parametrize(("size", "in_parts"), [(100 * 1024**2, False), (100 * 1024**2 + 1, True)])
def test_files_above_100_mib_go_in_parts_without_asking(
    tmp_path: Path, size: int, in_parts: bool
) -> None:
    # Given a server whose own threshold is higher, so only the CLI's choice counts
    api = FakeApi(part_size=64 * 1024**2, threshold=1024**3)
    sparse = tmp_path / "disk.img"
    with sparse.open("wb") as f:
        f.truncate(size)
    # When
    run = Run(api, "upload", str(sparse))
    # Then
    assert run.code == 0, run.err
    assert api.created[0]["multipart"] is in_parts
    assert bool(api.part_puts) is in_parts


def test_the_servers_answer_decides_even_when_parts_were_not_asked_for(
    tmp_path: Path,
) -> None:
    # Given a server that cuts anything above 2 KiB into parts
    api = FakeApi(part_size=1024, threshold=2048)
    mid = _random_file(tmp_path, "mid.bin", 3000)
    # When
    run = Run(api, "upload", str(mid))
    # Then
    assert run.code == 0, run.err
    assert api.created[0]["multipart"] is False
    assert len(api.part_puts) == 3


def test_an_empty_file_is_one_empty_put_even_with_multipart(
    parts_api: FakeApi, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.touch()
    run = Run(parts_api, "upload", "--multipart", str(empty))
    assert run.code == 0, run.err
    assert parts_api.created[0]["multipart"] is False
    assert list(parts_api.received.values()) == [b""]


def test_part_urls_are_asked_for_at_most_100_at_a_time(tmp_path: Path) -> None:
    # Given a file of 250 one-byte parts
    api = FakeApi(part_size=1)
    small = _random_file(tmp_path, "many.bin", 250)
    # When
    run = Run(api, "upload", "--multipart", str(small))
    # Then
    assert run.code == 0, run.err
    assert sorted(len(batch) for batch in api.presigned) == [50, 100, 100]
    assert sorted(n for batch in api.presigned for n in batch) == list(range(1, 251))


def test_parts_go_in_parallel_up_to_part_parallel(parts_api: FakeApi, tmp_path: Path) -> None:
    # Given a bucket that holds the first three PUTs until three are in flight together
    together = threading.Barrier(3, timeout=10)
    entered, in_flight, most = [0], [0], [0]
    lock = threading.Lock()
    put_part = parts_api.put_part

    def counting_put(url: str, headers: dict[str, str], body: Any) -> str:
        with lock:
            entered[0] += 1
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
            first = entered[0] <= 3
        if first:
            together.wait()  # breaks (and fails the part) unless 3 PUTs run at once
        try:
            return put_part(url, headers, body)
        finally:
            with lock:
                in_flight[0] -= 1

    parts_api.put_part = counting_put  # type: ignore[method-assign]
    big = _random_file(tmp_path, "big.bin", 8 * 1024)
    # When
    run = Run(parts_api, "upload", "--multipart", "--part-parallel", "3", str(big))
    # Then
    assert run.code == 0, run.err
    assert most[0] == 3


def _parts_uploader(api: FakeApi, sleeps: list[float], **options: Any) -> Uploader:
    return Uploader(api, multipart=True, sleep=sleeps.append, **options)


def test_a_failed_part_is_retried_after_a_backoff_and_counted_once_in_the_progress(
    parts_api: FakeApi, tmp_path: Path
) -> None:
    # Given a bucket that drops part 2 twice, each time after its first bytes arrived
    cut = Unreachable("storage endpoint", "https://bucket.test", "Connection reset by peer")
    parts_api.part_errors[2] = [cut, cut]
    big = _random_file(tmp_path, "big.bin", 3000)
    console = Console(io.StringIO(), io.StringIO(), interactive=True)
    progress = console.start_progress(1, 3000)
    sleeps: list[float] = []
    # When
    result = _parts_uploader(parts_api, sleeps, progress=progress).upload(str(big))
    # Then the third attempt got through, after waiting 0.5 s and then 1 s
    assert result.outcome is Outcome.STORED, result.error
    assert [n for _, n, _ in parts_api.part_puts].count(2) == PART_ATTEMPTS
    assert sleeps[:2] == [0.5, 1.0]
    # And the progress counts each byte once, however often it was sent
    assert (progress.done_bytes, progress.sent_bytes) == (3000, 3000)


def test_a_part_failing_every_attempt_fails_the_file_as_resumable(
    parts_api: FakeApi, tmp_path: Path
) -> None:
    # Given a bucket that answers 503 to every PUT of part 2
    busy = StorageError(503, "SlowDown", "Please reduce your request rate.")
    parts_api.part_errors[2] = [busy] * 5
    big = _random_file(tmp_path, "big.bin", 3000)
    sleeps: list[float] = []
    # When
    result = _parts_uploader(parts_api, sleeps, part_parallel=1).upload(str(big))
    # Then it gave up after the third attempt, and the upload can be resumed
    assert [n for _, n, _ in parts_api.part_puts].count(2) == PART_ATTEMPTS == 3
    assert sleeps == [0.5, 1.0]
    assert (result.outcome, result.resumable) == (Outcome.FAILED, True)
    assert (result.error or "").startswith("part 2 failed 3 times: the storage refused")


def test_a_part_the_bucket_refuses_fails_the_file_with_the_resume_command(
    parts_api: FakeApi, tmp_path: Path
) -> None:
    # Given a bucket that refuses part 2 for good (not worth retrying)
    refusal = StorageError(403, "AccessDenied", "Access Denied")
    parts_api.part_errors[2] = [refusal] * 5
    big = _random_file(tmp_path, "my big.bin", 3000)
    # When
    run = Run(parts_api, "upload", "--multipart", "--part-parallel", "1", str(big))
    # Then the file fails, saying how far it got and how to go on
    (upload_id,) = parts_api.uploads
    assert run.code == 1
    assert run.out == ""
    # One part at a time: once part 2 failed, part 3 was not started
    assert [n for _, n, _ in parts_api.part_puts] == [1, 2]
    err = run.err.splitlines()
    assert err[0].startswith(f"onecopy: {big}: part 2 failed: the storage refused")
    assert err[0].endswith("(1 of 3 parts uploaded)")
    assert err[1] == (
        f"onecopy: upload {upload_id} can be resumed with: "
        f"onecopy upload --resume {upload_id} '{big}'"
    )
    assert parts_api.completions == []


def test_an_expired_part_url_is_replaced_at_once(parts_api: FakeApi, tmp_path: Path) -> None:
    # Given a bucket for which the first URL of part 1 has expired
    big = _random_file(tmp_path, "big.bin", 2048)
    parts_api.expired.add(f"https://bucket.test/staging/{1:032x}?partNumber=1&v=1")
    sleeps: list[float] = []
    # When
    result = _parts_uploader(parts_api, sleeps).upload(str(big))
    # Then a fresh URL was asked for part 1 alone, without waiting, and the upload went on
    assert result.outcome is Outcome.STORED, result.error
    assert parts_api.presigned == [[1, 2], [1]]
    assert sleeps == []


def test_a_completion_retried_after_a_dropped_answer_takes_409_as_done(
    parts_api: FakeApi, tmp_path: Path
) -> None:
    # Given an API whose answer to the first completion is lost, although it completed
    big = _random_file(tmp_path, "big.bin", 2048)
    lost = Unreachable("onecopy API", "http://api.test", "Connection reset by peer")
    complete = parts_api.complete_upload

    def complete_then_lose(upload_id: str, parts: Sequence[tuple[int, str]]) -> dict[str, Any]:
        view = complete(upload_id, parts)
        if len(parts_api.completions) == 1:
            raise lost
        return view

    parts_api.complete_upload = complete_then_lose  # type: ignore[method-assign]
    # When
    result = _parts_uploader(parts_api, []).upload(str(big))
    # Then the second completion's 409 meant the first had worked
    assert result.outcome is Outcome.STORED, result.error
    assert len(parts_api.completions) == 2


def test_a_refused_completion_can_be_resumed(parts_api: FakeApi, tmp_path: Path) -> None:
    parts_api.complete_errors = [ApiError(400, "a part is missing or its ETag is not right")]
    big = _random_file(tmp_path, "big.bin", 2048)
    result = _parts_uploader(parts_api, []).upload(str(big))
    assert (result.outcome, result.resumable) == (Outcome.FAILED, True)
    assert (
        result.error == "could not complete: a part is missing or its ETag is not right (HTTP 400)"
    )


def test_ctrl_c_during_parts_prints_the_exact_resume_command_which_finishes_the_upload(
    parts_api: FakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a file of 6 parts, and a run that is interrupted (a real SIGINT, sent by the test
    # hook) once 2 parts are in; with --api given, which the resume command must repeat
    monkeypatch.chdir(tmp_path)
    big = _random_file(tmp_path, "big.bin", 6 * 1024)
    run = Run(
        parts_api,
        "upload",
        "--api",
        "https://api.test:3000",
        "--multipart",
        "--part-parallel",
        "1",
        "big.bin",
        environ={"ONECOPY_TEST_INTERRUPT_AFTER_PARTS": "2"},
    )
    # Then it stops with 130 and tells how to go on
    (upload_id,) = parts_api.uploads
    assert run.code == 130
    err = run.err.splitlines()
    assert err[0] == "onecopy: big.bin: interrupted (2 of 6 parts uploaded)"
    prefix = f"onecopy: upload {upload_id} can be resumed with: "
    assert err[1].startswith(prefix)
    command = err[1].removeprefix(prefix)
    assert command == (f"onecopy upload --api https://api.test:3000 --resume {upload_id} big.bin")
    assert err[2] == "onecopy: interrupted"
    assert sorted(parts_api.parts[upload_id]) == [1, 2]
    # When that command is run
    sent_before = len(parts_api.part_puts)
    resumed = Run(parts_api, *shlex.split(command)[1:])
    # Then only the 4 missing parts are sent, and the file is stored
    assert (resumed.code, resumed.err) == (0, ""), resumed.err
    assert sorted(n for _, n, _ in parts_api.part_puts[sent_before:]) == [3, 4, 5, 6]
    assert _assembled(parts_api, upload_id) == big.read_bytes()
    assert resumed.lines == [f"stored     {sha(big.read_bytes())}    6.0 KiB  big.bin  {upload_id}"]


def _interrupted(api: FakeApi, path: Path, held: Sequence[int]) -> str:
    """A multipart upload of `path` whose bucket holds only the parts `held`."""
    answer = api.create_upload(
        filename=path.name,
        size=path.stat().st_size,
        content_type="application/octet-stream",
        sha256=sha(path.read_bytes()),
        multipart=True,
    )
    assert isinstance(answer, MultipartSlot)
    data = path.read_bytes()
    for slot in api.presign_parts(answer.upload_id, list(held)):
        start = (slot.part_number - 1) * api.part_size
        api.put_part(slot.url, slot.headers, data[start : start + api.part_size])
    api.part_puts.clear()
    return answer.upload_id


def test_resume_sends_the_missing_parts_and_a_held_part_of_the_wrong_size_again(
    parts_api: FakeApi, tmp_path: Path
) -> None:
    # Given an upload of 4 parts whose bucket holds parts 1 and 3, part 3 truncated
    big = _random_file(tmp_path, "big.bin", 4000)
    upload_id = _interrupted(parts_api, big, held=[1, 3])
    parts_api.parts[upload_id][3] = parts_api.parts[upload_id][3][:100]
    # When
    run = Run(parts_api, "upload", "--resume", upload_id, str(big))
    # Then
    assert (run.code, run.err) == (0, ""), run.err
    assert sorted(n for _, n, _ in parts_api.part_puts) == [2, 3, 4]
    assert _assembled(parts_api, upload_id) == big.read_bytes()
    assert run.lines[0].split()[:2] == ["stored", sha(big.read_bytes())]


def test_resume_with_another_file_is_refused_before_sending_anything(
    parts_api: FakeApi, tmp_path: Path
) -> None:
    big = _random_file(tmp_path, "big.bin", 4000)
    upload_id = _interrupted(parts_api, big, held=[1])
    other = _random_file(tmp_path, "other.bin", 3999)
    run = Run(parts_api, "upload", "--resume", upload_id, str(other))
    assert run.code == 1
    assert run.err == (
        f"onecopy: {other}: is 3999 bytes but upload {upload_id} was started for 4000 bytes: "
        "not the same file\n"
    )
    assert parts_api.part_puts == []


def test_resume_of_a_finished_upload_reports_its_outcome(
    parts_api: FakeApi, tmp_path: Path
) -> None:
    big = _random_file(tmp_path, "big.bin", 2048)
    first = json.loads(Run(parts_api, "upload", "--json", "--multipart", str(big)).out)
    run = Run(parts_api, "upload", "--resume", first["upload_id"], str(big))
    assert run.code == 0, run.err
    assert run.lines[0].split()[:2] == ["stored", first["sha256"]]
    assert len(parts_api.completions) == 1


def test_resume_of_a_single_put_upload_says_why_not(api: FakeApi, tmp_path: Path) -> None:
    # Given a single-PUT upload that never got its bytes
    answer = api.create_upload(
        filename="a.bin", size=5, content_type="application/octet-stream", sha256="0" * 64
    )
    (tmp_path / "a.bin").write_bytes(b"12345")
    # When
    run = Run(api, "upload", "--resume", answer.upload_id, str(tmp_path / "a.bin"))
    # Then
    assert run.code == 1
    assert "cannot resume: upload" in run.err
    assert "is a single PUT, not a multipart upload (HTTP 409)" in run.err


def test_json_output_of_a_resumable_failure_carries_the_resume_command(
    parts_api: FakeApi, tmp_path: Path
) -> None:
    parts_api.part_errors[1] = [StorageError(403, "AccessDenied", "Access Denied")] * 5
    big = _random_file(tmp_path, "big.bin", 2048)
    run = Run(parts_api, "upload", "--json", "--multipart", "--part-parallel", "1", str(big))
    (record,) = map(json.loads, run.lines)
    assert record["status"] == "failed"
    assert record["resume"] == f"onecopy upload --resume {record['upload_id']} {big}"


def test_a_file_that_changes_size_while_its_parts_go_is_not_offered_a_resume(
    parts_api: FakeApi, tmp_path: Path
) -> None:
    # Given a file truncated right after the upload was created
    big = _random_file(tmp_path, "big.bin", 3000)
    create = parts_api.create_upload

    def create_then_truncate(**declared: Any) -> Any:
        answer = create(**declared)
        big.write_bytes(b"short")
        return answer

    parts_api.create_upload = create_then_truncate  # type: ignore[method-assign]
    # When
    result = _parts_uploader(parts_api, []).upload(str(big))
    # Then
    assert (result.outcome, result.resumable) == (Outcome.FAILED, False)
    assert "start the upload again" in (result.error or "")


# --- status ------------------------------------------------------------------------------------


def test_status_shows_the_upload(api: FakeApi, hello: Path) -> None:
    upload = json.loads(Run(api, "upload", "--json", str(hello)).out)
    run = Run(api, "status", upload["upload_id"])
    assert run.code == 0
    assert "Status     stored" in run.out
    assert f"SHA-256    {sha(hello.read_bytes())}" in run.out


def test_status_json_is_the_apis_view(api: FakeApi, hello: Path) -> None:
    upload = json.loads(Run(api, "upload", "--json", str(hello)).out)
    run = Run(api, "status", "--json", upload["upload_id"])
    assert json.loads(run.out) == api.get_upload(upload["upload_id"])


def test_status_of_an_unknown_upload_exits_1_with_the_apis_message(api: FakeApi) -> None:
    run = Run(api, "status", ABSENT_ID)
    assert run.code == 1
    assert run.err == f"onecopy: no upload {ABSENT_ID} (HTTP 404)\n"


# --- info --------------------------------------------------------------------------------------


def _stored(api: FakeApi, path: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(Run(api, "upload", "--json", str(path)).out)
    return record


def test_info_shows_an_uploads_metadata(api: FakeApi, hello: Path) -> None:
    upload = _stored(api, hello)
    run = Run(api, "info", upload["upload_id"].upper())
    assert run.code == 0, run.err
    assert run.lines == [
        f"Upload     {upload['upload_id']}",
        "Status     stored",
        "File       hello.txt",
        "Size       15 B",
        "Type       text/plain",
        f"SHA-256    {sha(hello.read_bytes())}",
        "Created    2025-11-27T14:05:12.000000Z",
        "Completed  2025-11-27T14:05:13.000000Z",
    ]


def test_info_says_when_an_upload_was_a_duplicate(
    api: FakeApi, hello: Path, tmp_path: Path
) -> None:
    _stored(api, hello)
    copy = tmp_path / "copy.txt"
    copy.write_bytes(hello.read_bytes())
    duplicate = _stored(api, copy)
    run = Run(api, "info", duplicate["upload_id"])
    assert "Status     duplicate (you already held this content" in run.out
    assert "File       copy.txt" in run.out


def test_info_by_sha256_shows_the_content(api: FakeApi, hello: Path, tmp_path: Path) -> None:
    _stored(api, hello)
    copy = tmp_path / "copy.txt"
    copy.write_bytes(hello.read_bytes())
    _stored(api, copy)
    run = Run(api, "info", sha(hello.read_bytes()))
    assert run.code == 0, run.err
    assert "Your uploads  2" in run.lines
    assert "File          hello.txt" in run.lines
    assert f"SHA-256       {sha(hello.read_bytes())}" in run.lines


def test_info_json_is_the_apis_metadata(api: FakeApi, hello: Path) -> None:
    upload = _stored(api, hello)
    run = Run(api, "info", "--json", upload["upload_id"])
    assert json.loads(run.out) == api.get_metadata(upload["upload_id"])


def test_info_of_nothing_stored_exits_1_with_the_apis_message(api: FakeApi) -> None:
    run = Run(api, "info", ABSENT_ID)
    assert (run.code, run.out) == (1, "")
    assert run.err == f"onecopy: nothing stored for {ABSENT_ID} (HTTP 404)\n"


# --- download ----------------------------------------------------------------------------------


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current directory, where downloads land by default."""
    here = tmp_path / "downloads"
    here.mkdir()
    monkeypatch.chdir(here)
    return here


def test_download_saves_under_the_uploads_name_and_verifies_it(
    api: FakeApi, hello: Path, elsewhere: Path
) -> None:
    upload = _stored(api, hello)
    run = Run(api, "download", upload["upload_id"])
    assert (run.code, run.err) == (0, ""), run.err
    assert (elsewhere / "hello.txt").read_bytes() == hello.read_bytes()
    assert run.lines == [f"saved  {sha(hello.read_bytes())}       15 B  hello.txt"]
    assert [p.name for p in elsewhere.iterdir()] == ["hello.txt"]


def test_a_duplicate_downloads_under_its_own_name(
    api: FakeApi, hello: Path, tmp_path: Path, elsewhere: Path
) -> None:
    _stored(api, hello)
    copy = tmp_path / "copy.txt"
    copy.write_bytes(hello.read_bytes())
    duplicate = _stored(api, copy)
    run = Run(api, "download", duplicate["upload_id"])
    assert run.code == 0, run.err
    assert (elsewhere / "copy.txt").read_bytes() == hello.read_bytes()
    assert not (elsewhere / "hello.txt").exists()


@pytest.mark.parametrize(
    ("output", "expected"), [("renamed.txt", "renamed.txt"), ("sub", "sub/hello.txt")]
)
def test_download_to_a_path_or_into_a_directory(
    api: FakeApi, hello: Path, elsewhere: Path, output: str, expected: str
) -> None:
    (elsewhere / "sub").mkdir()
    upload = _stored(api, hello)
    run = Run(api, "download", upload["upload_id"], "-o", output)
    assert run.code == 0, run.err
    assert (elsewhere / expected).read_bytes() == hello.read_bytes()


def test_download_never_writes_outside_the_target_directory(
    api: FakeApi, tmp_path: Path, elsewhere: Path
) -> None:
    # Given an upload whose stored name climbs out of its directory
    sneaky = tmp_path / "sneaky.txt"
    sneaky.write_bytes(b"sneaky")
    upload = _stored(api, sneaky)
    api.uploads[upload["upload_id"]]["filename"] = "../../etc/evil.txt"
    # When
    run = Run(api, "download", upload["upload_id"])
    # Then only its last component is used
    assert run.code == 0, run.err
    assert (elsewhere / "evil.txt").read_bytes() == b"sneaky"
    assert not (tmp_path / "etc").exists()


def test_download_refuses_to_overwrite_unless_forced(
    api: FakeApi, hello: Path, elsewhere: Path
) -> None:
    upload = _stored(api, hello)
    (elsewhere / "hello.txt").write_bytes(b"mine")
    refused = Run(api, "download", upload["upload_id"])
    assert refused.code == 1
    assert refused.err == "onecopy: hello.txt already exists (--force overwrites it)\n"
    assert (elsewhere / "hello.txt").read_bytes() == b"mine"
    forced = Run(api, "download", "--force", upload["upload_id"])
    assert forced.code == 0, forced.err
    assert (elsewhere / "hello.txt").read_bytes() == hello.read_bytes()


def test_download_with_the_wrong_bytes_saves_nothing_and_exits_1(
    api: FakeApi, hello: Path, elsewhere: Path
) -> None:
    # Given a bucket that serves corrupted bytes, and an older file of the same name
    upload = _stored(api, hello)
    api.corrupt_downloads = True
    (elsewhere / "hello.txt").write_bytes(b"mine")
    # When it is downloaded over that file
    run = Run(api, "download", "--force", upload["upload_id"])
    # Then nothing is saved (no partial file either) and the older file is intact
    assert (run.code, run.out) == (1, "")
    assert "are not the stored content" in run.err
    assert f"SHA-256 {sha(hello.read_bytes())}); nothing was saved" in run.err
    assert [p.name for p in elsewhere.iterdir()] == ["hello.txt"]
    assert (elsewhere / "hello.txt").read_bytes() == b"mine"


def test_download_of_a_missing_directory_is_a_clear_error(
    api: FakeApi, hello: Path, elsewhere: Path
) -> None:
    upload = _stored(api, hello)
    run = Run(api, "download", upload["upload_id"], "-o", "no/such/dir/x.txt")
    assert run.code == 1
    assert run.err == "onecopy: cannot write no/such/dir/x.txt: No such file or directory\n"


def test_download_of_nothing_stored_exits_1(api: FakeApi, elsewhere: Path) -> None:
    run = Run(api, "download", ABSENT_ID)
    assert run.code == 1
    assert run.err == f"onecopy: nothing stored for {ABSENT_ID} (HTTP 404)\n"
    assert list(elsewhere.iterdir()) == []


# --- stats and hashes --------------------------------------------------------------------------


def _mixed_run(api: FakeApi, tmp_path: Path) -> list[bytes]:
    """Three contents stored, one of them uploaded twice more under other names."""
    datas = [b"a" * 3000, b"b" * 2_000_000, b"c"]
    for i, data in enumerate(datas):
        (tmp_path / f"f{i}").write_bytes(data)
        _stored(api, tmp_path / f"f{i}")
    for name in ("again1", "again2"):
        (tmp_path / name).write_bytes(datas[1])
        _stored(api, tmp_path / name)
    return datas


def test_stats_for_people_humanises_bytes(api: FakeApi, tmp_path: Path) -> None:
    _mixed_run(api, tmp_path)
    run = Run(api, "stats")
    assert run.code == 0, run.err
    assert run.lines == [
        "Contents stored     3",
        "Uploads             5",
        "Duplicates avoided  2",
        "Bytes stored        1.9 MiB (2003001 bytes)",
        "Bytes saved         3.8 MiB (4000000 bytes)",
    ]


def test_stats_json_is_the_apis(api: FakeApi, tmp_path: Path) -> None:
    _mixed_run(api, tmp_path)
    run = Run(api, "stats", "--json")
    assert json.loads(run.out) == api.get_stats()


def test_hashes_walks_every_page(api: FakeApi, tmp_path: Path) -> None:
    datas = _mixed_run(api, tmp_path)
    run = Run(api, "hashes", "--limit", "1")
    assert run.code == 0, run.err
    assert run.lines[0].split() == ["SHA-256", "SIZE", "UPLOADS", "CREATED", "TYPE"]
    rows = [line.split() for line in run.lines[1:]]
    assert [row[0] for row in rows] == sorted(sha(d) for d in datas)
    assert [limit for limit, _ in api.hash_pages] == [1, 1, 1]
    row = next(r for r in rows if r[0] == sha(datas[0]))
    assert row[1:] == ["2.9", "KiB", "1", "2025-11-27T14:05:12Z", "application/octet-stream"]


def test_hashes_json_is_one_object_per_line(api: FakeApi, tmp_path: Path) -> None:
    datas = _mixed_run(api, tmp_path)
    run = Run(api, "hashes", "--json", "--limit", "2")
    records = [json.loads(line) for line in run.lines]
    assert sorted(r["sha256"] for r in records) == sorted(sha(d) for d in datas)
    assert {r["size"] for r in records} == {len(d) for d in datas}
    assert len(api.hash_pages) == 2


def test_hashes_of_an_empty_store_is_the_header_alone(api: FakeApi) -> None:
    run = Run(api, "hashes")
    assert (run.code, len(run.lines)) == (0, 1)


def test_hashes_stops_on_a_page_token_that_comes_back(api: FakeApi, tmp_path: Path) -> None:
    _mixed_run(api, tmp_path)

    def circular(*, limit: int, token: str | None = None) -> dict[str, Any]:
        return {"items": [], "last_evaluated_key": "same"}

    api.list_hashes = circular  # type: ignore[method-assign]
    run = Run(api, "hashes")
    assert run.code == 1
    assert "the same page token twice" in run.err


# --- ls, rm, admin erase-owner -----------------------------------------------------------------


def _uploads(api: FakeApi, tmp_path: Path, *names: str) -> list[str]:
    """Each name uploaded as a new content (stored); their ids, oldest first."""
    ids = []
    for name in names:
        path = tmp_path / name
        path.write_bytes(f"the content of {name}".encode())
        ids.append(_stored(api, path)["upload_id"])
    return ids


def _pending(api: FakeApi, name: str) -> str:
    """An upload created but whose bytes never came."""
    slot = api.create_upload(
        filename=name, size=10, content_type="text/plain", sha256=sha(name.encode())
    )
    return slot.upload_id


def test_ls_follows_every_page_and_prints_one_row_per_upload_newest_first(
    api: FakeApi, tmp_path: Path
) -> None:
    # Given five uploads, and an API that reads at most two per page
    ids = _uploads(api, tmp_path, "a.txt", "b.txt", "c.txt", "d.txt", "e.txt")
    api.page_cap = 2

    # When they are listed
    run = Run(api, "ls")

    # Then every page was asked for, each with the token of the one before, at the largest size
    assert (run.code, run.err) == (0, ""), run.err
    assert [page["token"] for page in api.upload_pages] == [None, ids[3], ids[1]]
    assert {page["limit"] for page in api.upload_pages} == {1000}
    # And each upload is one row under a header, newest first
    assert run.lines[0].split() == ["UPLOAD", "STATUS", "SIZE", "CREATED", "FILE"]
    assert [row.split()[0] for row in run.lines[1:]] == ids[::-1]
    assert run.lines[1] == f"{ids[4]}  stored          20 B  2025-11-27T14:05:12Z  e.txt"


def test_ls_passes_the_filters_and_follows_pages_that_hold_none_of_them(
    api: FakeApi, tmp_path: Path
) -> None:
    # Given reports and photos, stored and pending, two read per page
    stored = _uploads(api, tmp_path, "report-1.pdf", "photo.jpg", "report-2.pdf", "photo2.jpg")
    pending = _pending(api, "report-3.pdf")
    _pending(api, "photo3.jpg")
    api.page_cap = 2

    # When the stored reports are listed, the status given in lowercase
    run = Run(api, "ls", "--status", "stored", "--prefix", "report")

    # Then the API got the filters on every page (the status as it spells it)
    assert run.code == 0, run.err
    assert {(p["status"], p["prefix"]) for p in api.upload_pages} == {("STORED", "report")}
    # And the walk went on past a page that matched nothing, to the end
    assert len(api.upload_pages) == 3
    assert [row.split()[0] for row in run.lines[1:]] == [stored[2], stored[0]]
    assert pending not in run.out


def test_ls_limit_shows_at_most_n_uploads_and_stops_asking(api: FakeApi, tmp_path: Path) -> None:
    ids = _uploads(api, tmp_path, *(f"f{i}" for i in range(6)))
    api.page_cap = 2
    run = Run(api, "ls", "--limit", "3")
    assert run.code == 0, run.err
    assert [row.split()[0] for row in run.lines[1:]] == ids[:2:-1]
    assert [p["limit"] for p in api.upload_pages] == [3, 3]


def test_ls_limit_above_a_page_asks_for_the_largest_page(api: FakeApi, tmp_path: Path) -> None:
    _uploads(api, tmp_path, "only.txt")
    run = Run(api, "ls", "--limit", "5000")
    assert (run.code, len(run.lines)) == (0, 2)
    assert [p["limit"] for p in api.upload_pages] == [1000]


def test_ls_json_is_one_array_of_the_apis_views(api: FakeApi, tmp_path: Path) -> None:
    ids = _uploads(api, tmp_path, "a.txt", "b.txt", "c.txt")
    pending = _pending(api, "d.txt")
    api.page_cap = 1
    run = Run(api, "ls", "--json")
    assert (run.code, run.err) == (0, ""), run.err
    items = json.loads(run.out)
    assert [item["upload_id"] for item in items] == [pending, *ids[::-1]]
    assert items[0] == api.get_upload(pending)
    assert items[1]["sha256"] == sha(b"the content of c.txt")


def test_ls_of_nothing_is_the_header_or_an_empty_array(api: FakeApi) -> None:
    table = Run(api, "ls")
    array = Run(api, "ls", "--json")
    assert (table.code, table.lines) == (0, [table.lines[0]])
    assert table.lines[0].startswith("UPLOAD")
    assert (array.code, array.out) == (0, "[]\n")


def test_ls_refused_prints_nothing_on_stdout(api: FakeApi) -> None:
    def refuse(**_: Any) -> dict[str, Any]:
        raise ApiError(400, "prefix must be at most 255 characters")

    api.list_uploads = refuse  # type: ignore[method-assign]
    run = Run(api, "ls", "--prefix", "x")
    assert (run.code, run.out) == (1, "")
    assert run.err == "onecopy: prefix must be at most 255 characters (HTTP 400)\n"


def test_ls_stops_on_a_page_token_that_comes_back(api: FakeApi) -> None:
    def circular(**_: Any) -> dict[str, Any]:
        return {"items": [], "last_evaluated_key": "same"}

    api.list_uploads = circular  # type: ignore[method-assign]
    run = Run(api, "ls")
    assert run.code == 1
    assert "the same page token twice" in run.err


def test_rm_deletes_aborts_and_reports_each_failure_then_exits_1(
    api: FakeApi, tmp_path: Path
) -> None:
    # Given a stored upload, a pending one, one whose bytes are being stored, and an unknown id
    stored, storing = _uploads(api, tmp_path, "done.txt", "busy.txt")
    pending = _pending(api, "waiting.txt")
    api.uploads[storing]["status"] = "PENDING"
    api.storing.add(storing)

    # When all four are removed in one call
    run = Run(api, "rm", stored, ABSENT_ID, pending, storing)

    # Then each was tried, in order; the stored one is gone, the pending one aborted
    assert api.deletes == [stored, ABSENT_ID, pending, storing]
    assert run.lines == [f"deleted  {stored}", f"aborted  {pending}"]
    assert stored not in api.uploads
    assert (api.uploads[pending]["status"], api.uploads[pending]["reason"]) == (
        "REJECTED",
        "aborted",
    )
    # And each failure is one line on stderr naming its id, and the exit status says so
    assert run.err.splitlines() == [
        f"onecopy: {ABSENT_ID}: no upload {ABSENT_ID} (HTTP 404)",
        f"onecopy: {storing}: its bytes are being stored right now: try again shortly (HTTP 409)",
    ]
    assert run.code == 1


def test_rm_twice_aborts_a_pending_upload_then_deletes_it(api: FakeApi) -> None:
    pending = _pending(api, "waiting.txt")
    first = Run(api, "rm", pending)
    listed = Run(api, "ls", "--json")
    second = Run(api, "rm", pending)
    third = Run(api, "rm", pending)
    assert (first.code, first.out) == (0, f"aborted  {pending}\n")
    assert [(i["status"], i["reason"]) for i in json.loads(listed.out)] == [("REJECTED", "aborted")]
    assert (second.code, second.out, second.err) == (0, f"deleted  {pending}\n", "")
    assert (third.code, third.out) == (1, "")
    assert third.err == f"onecopy: {pending}: no upload {pending} (HTTP 404)\n"


def test_rm_takes_an_id_given_twice_once(api: FakeApi, tmp_path: Path) -> None:
    (stored,) = _uploads(api, tmp_path, "a.txt")
    run = Run(api, "rm", stored, stored.upper())
    assert (run.code, run.lines, api.deletes) == (0, [f"deleted  {stored}"], [stored])


def test_rm_says_removed_when_it_cannot_tell_which(api: FakeApi, tmp_path: Path) -> None:
    (stored,) = _uploads(api, tmp_path, "a.txt")

    def unavailable(upload_id: str) -> dict[str, Any]:
        raise ApiError(503, "Service Unavailable")

    api.get_upload = unavailable  # type: ignore[method-assign]
    run = Run(api, "rm", stored)
    assert (run.code, run.out, run.err) == (0, f"removed  {stored}\n", "")


def test_rm_stops_when_the_sign_in_is_lost(api: FakeApi, tmp_path: Path) -> None:
    ids = _uploads(api, tmp_path, "a.txt", "b.txt")

    def lost(upload_id: str) -> None:
        api.deletes.append(upload_id)
        raise NotSignedIn("the sign-in expired: run `onecopy login`")

    api.delete_upload = lost  # type: ignore[method-assign]
    run = Run(api, "rm", *ids)
    assert (run.code, run.out, api.deletes) == (3, "", ids[:1])
    assert run.err == "onecopy: the sign-in expired: run `onecopy login`\n"


class FakeTime:
    """The clock of `admin erase-owner`: sleeping moves it on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    from onecopy_cli.commands import admin

    fake = FakeTime()
    monkeypatch.setattr(admin, "time", fake)
    return fake


def _erase(deleted: int, aborted: int, waiting: int, *, done: bool = False) -> dict[str, Any]:
    return {"deleted": deleted, "aborted": aborted, "waiting": waiting, "done": done}


def test_erase_owner_calls_until_done_with_running_totals(api: FakeApi, clock: FakeTime) -> None:
    # Given an owner with 1,500 uploads, two of them being stored, one pending
    api.erase_answers = [
        _erase(1000, 1, 2),
        _erase(497, 0, 2),
        _erase(0, 0, 2),  # no progress: the CLI pauses before the next call
        _erase(2, 0, 0, done=True),
    ]

    # When the admin erases them
    run = Run(api, "admin", "erase-owner", "sub-of-carol")

    # Then the API was called until done, pausing only after the call that changed nothing
    assert run.code == 0, run.err
    assert api.erased == ["sub-of-carol"] * 4
    assert clock.sleeps == [1.0]
    # And each call's running totals went to stderr, the outcome to stdout
    assert run.err.splitlines() == [
        "erasing sub-of-carol: 1000 deleted, 1 aborted, 2 being stored",
        "erasing sub-of-carol: 1497 deleted, 1 aborted, 2 being stored",
        "erasing sub-of-carol: 1497 deleted, 1 aborted, 2 being stored",
        "erasing sub-of-carol: 1499 deleted, 1 aborted",
    ]
    assert run.out == "erased sub-of-carol: 1499 uploads deleted, 1 pending upload aborted\n"


def test_erase_owner_json_is_the_totals(api: FakeApi, clock: FakeTime) -> None:
    api.erase_answers = [_erase(3, 1, 0), _erase(1, 0, 0, done=True)]
    run = Run(api, "admin", "erase-owner", "sub-of-carol", "--json")
    assert run.code == 0, run.err
    assert json.loads(run.out) == {
        "owner": "sub-of-carol",
        "deleted": 4,
        "aborted": 1,
        "waiting": 0,
        "done": True,
    }


def test_erase_owner_of_nobody_says_an_owner_is_a_sub(api: FakeApi, clock: FakeTime) -> None:
    api.erase_answers = [_erase(0, 0, 0, done=True)]
    run = Run(api, "admin", "erase-owner", "carol")
    assert run.code == 0, run.err
    assert run.out.startswith("nothing left to erase for carol (an owner is a sub")
    assert clock.sleeps == []


def test_erase_owner_gives_up_when_nothing_changes_for_the_timeout(
    api: FakeApi, clock: FakeTime
) -> None:
    api.erase_answers = [_erase(5, 0, 1), *[_erase(0, 0, 1)] * 20]
    run = Run(api, "admin", "erase-owner", "sub-of-carol", "--timeout", "3")
    assert run.code == 1
    assert clock.sleeps == [1.0, 1.0, 1.0]
    assert run.err.splitlines()[-1] == (
        "onecopy: nothing changed for 3 s while 1 upload of sub-of-carol was being stored: "
        "run the same command again later"
    )
    assert run.out == ""


def test_erase_owner_interrupted_says_how_far_it_got_and_to_run_it_again(
    api: FakeApi, clock: FakeTime
) -> None:
    api.erase_answers = [_erase(10, 2, 0), KeyboardInterrupt()]
    run = Run(api, "admin", "erase-owner", "sub-of-carol")
    assert run.code == 130
    assert run.out == ""
    assert run.err.splitlines()[-1] == (
        "onecopy: interrupted after 10 deleted and 2 aborted: run the same command again to go on"
    )


def test_erase_owner_refuses_an_answer_without_counts(api: FakeApi, clock: FakeTime) -> None:
    api.erase_answers = [{"deleted": "many", "done": False}]
    run = Run(api, "admin", "erase-owner", "sub-of-carol")
    assert run.code == 1
    assert "unexpected answer from the API: deleted='many'" in run.err


# --- admin health -------------------------------------------------------------------------------


def test_health_when_all_is_well_shows_every_section_and_exits_0(api: FakeApi) -> None:
    # Given a service where nothing needs attention
    # When the admin asks for its health
    run = Run(api, "admin", "health")
    # Then it says so first, then one section per part, with ages and times humanized
    assert (run.code, run.err) == (0, "")
    at = api.health["reconciliation"]["at"][:19] + "Z"
    collected_at = api.health["collection"]["last_run_at"][:19] + "Z"
    assert run.lines == [
        "ok: nothing needs attention",
        "",
        "Ingest queue",
        "  Waiting         3",
        "  In flight       1",
        "  Oldest message  2 min old",
        "",
        "Dead-letter queue",
        "  Waiting         0",
        "  In flight       0",
        "",
        "Reconciliation",
        f"  Last run        {at} (3 h 5 min ago)",
        "  Result          clean",
        "",
        "Collection",
        "  Unreferenced    4",
        "  Due             1 (past the 1 d grace period)",
        f"  Last run        {collected_at} (5 min ago)",
        "  Collected       2",
    ]
    assert api.health_calls == 1


def test_health_lists_what_needs_attention_first_and_exits_1(api: FakeApi) -> None:
    # Given dead letters, and drift the last reconciliation could not repair
    api.health = troubled()
    # When the admin asks for its health
    run = Run(api, "admin", "health")
    # Then the view starts with what needs attention, each item naming its alarm
    assert (run.code, run.err) == (1, "")
    assert run.lines[:4] == ["needs attention (2):", f"  {DEAD_LETTERS}", f"  {DRIFT}", ""]
    assert "  Result          drift 7, not repaired" in run.lines
    assert run.lines[run.lines.index("Dead-letter queue") + 1] == "  Waiting         1"


def test_health_json_is_the_apis_object_and_the_exit_status_still_tells(api: FakeApi) -> None:
    fine = api.health
    healthy_run = Run(api, "admin", "health", "--json")
    api.health = troubled()
    troubled_run = Run(api, "admin", "health", "--json")
    assert (healthy_run.code, json.loads(healthy_run.out)) == (0, fine)
    assert (troubled_run.code, json.loads(troubled_run.out)) == (1, api.health)
    assert troubled_run.err == ""


def test_health_of_a_service_whose_jobs_never_ran(api: FakeApi) -> None:
    # Given a new stack: no reconciliation or collection yet, and no recent queue metric
    api.health = healthy(
        ingest_queue={"waiting": 0, "in_flight": 0, "oldest_message_age_seconds": None},
        reconciliation={"at": None, "clean": None, "drift": None, "repaired": None},
        collection={"last_run_at": None, "last_collected": None, "last_run_complete": None},
    )
    run = Run(api, "admin", "health")
    # Then it says "never", not an error
    assert run.code == 0, run.err
    assert "  Oldest message  no recent datapoint" in run.lines
    reconciliation = run.lines.index("Reconciliation")
    assert run.lines[reconciliation + 1 : reconciliation + 3] == ["  Last run        never", ""]
    assert run.lines[-1] == "  Last run        never"


def test_health_view_says_when_a_collection_stopped_for_time_and_a_repair_was_made() -> None:
    now = datetime(2025, 11, 27, 17, 10, 42, tzinfo=UTC)
    health = healthy(
        reconciliation={"at": "2025-11-25T14:05:12.5Z", "clean": False, "drift": 3},
        collection={
            "last_run_at": "2025-11-27T17:10:40+00:00",
            "last_collected": 500,
            "last_run_complete": False,
        },
    )
    health["reconciliation"]["repaired"] = True
    lines = health_view(health, now=now).splitlines()
    assert "  Last run        2025-11-25T14:05:12Z (2 d 3 h ago)" in lines
    assert "  Result          drift 3, repaired" in lines
    assert "  Last run        2025-11-27T17:10:40Z (2 s ago)" in lines
    assert lines[-1] == "  Collected       500 (stopped for time: the next run goes on)"


def test_health_highlights_attention_on_a_terminal_only(api: FakeApi) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    def run(environ: dict[str, str]) -> str:
        out = Terminal()
        code = main(
            ["admin", "health"],
            make_client=lambda *_, **__: api,
            stdout=out,
            stderr=io.StringIO(),
            environ={"ONECOPY_TOKEN": "ci-token", **environ},
        )
        assert code == 1
        return out.getvalue()

    api.health = troubled()
    painted, plain = run({}), run({"NO_COLOR": "1"})
    assert painted.splitlines()[:2] == [
        "\x1b[1;31mneeds attention (2):\x1b[0m",
        f"\x1b[1;31m  {DEAD_LETTERS}\x1b[0m",
    ]
    assert "\x1b[" not in plain
    assert re.sub(r"\x1b\[[\d;]*m", "", painted) == plain
    assert "\x1b[" not in Run(api, "admin", "health").out  # not a terminal


def test_health_refuses_an_answer_without_a_verdict(api: FakeApi) -> None:
    api.health = {"attention": []}
    run = Run(api, "admin", "health")
    assert (run.code, run.out) == (1, "")
    assert run.err == "onecopy: unexpected answer from the API: ok=None (HTTP 200)\n"


def test_health_help_gives_the_exit_status_scripts_can_use(api: FakeApi) -> None:
    run = Run(api, "admin", "health", "--help")
    assert run.code == 0
    assert "exit status: 0 when nothing needs attention; 1 when something does" in run.out
    assert "3 when not signed in" in run.out
    assert api.health_calls == 0


# --- admin reconcile (the invoker faked; tests/integration/test_lambda_api.py uses boto3) --------


class FakeInvoker:
    made: list[dict[str, Any]] = []

    def __init__(self, *, endpoint_url: str | None, region: str | None) -> None:
        self.made.append({"endpoint_url": endpoint_url, "region": region})
        self.calls: list[tuple[str, Any]] = []

    def invoke(self, function_name: str, payload: dict[str, Any]) -> Any:
        self.made[-1]["invoked"] = (function_name, payload)
        return {"clean": True, "repaired": False, "facts": {}, "counters": {}, "drift": {}}

    def stack_output(self, stack_name: str, output_key: str) -> str:
        assert output_key == "ReconcileFunctionName"
        return f"{stack_name}-ReconcileFunction-AbC123"

    def sqs(self, endpoint_url: str | None) -> Any:
        raise AssertionError("reconcile needs no queue")


def _reconcile(*args: str, environ: dict[str, str] | None = None) -> dict[str, Any]:
    FakeInvoker.made = []
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["admin", "reconcile", *args],
        make_invoker=FakeInvoker,
        stdout=out,
        stderr=err,
        environ=environ or {},
    )
    assert (code, err.getvalue()) == (0, "")
    (made,) = FakeInvoker.made
    return made


def test_reconcile_goes_to_the_local_endpoint_by_default() -> None:
    assert _reconcile() == {
        "endpoint_url": "http://127.0.0.1:3001",
        "region": None,
        "invoked": ("ReconcileFunction", {"repair": False}),
    }


def test_reconcile_endpoint_from_the_environment_then_the_flag() -> None:
    env = {"ONECOPY_LAMBDA_ENDPOINT": "http://127.0.0.1:9001"}
    assert _reconcile(environ=env)["endpoint_url"] == "http://127.0.0.1:9001"
    flagged = _reconcile("--lambda-endpoint", "http://127.0.0.1:9002", environ=env)
    assert flagged["endpoint_url"] == "http://127.0.0.1:9002"


def test_reconcile_in_a_deployed_stack_uses_its_output_and_no_endpoint() -> None:
    made = _reconcile(
        "--stack",
        "onecopy-prod",
        "--region",
        "eu-west-1",
        "--repair",
        environ={"ONECOPY_LAMBDA_ENDPOINT": "http://127.0.0.1:9001"},
    )
    assert made == {
        "endpoint_url": None,
        "region": "eu-west-1",
        "invoked": ("onecopy-prod-ReconcileFunction-AbC123", {"repair": True}),
    }


# --- ApiClient: the wire format of the new calls (a stub transport, no network) -----------------


class StubTransport(requests.adapters.BaseAdapter):
    """Answers each request with the next canned (status, headers, body); keeps the requests."""

    def __init__(self, *answers: tuple[int, dict[str, str], bytes]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, *_: Any, **__: Any) -> requests.Response:
        self.sent.append(request)
        status, headers, body = self.answers.pop(0)
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        response.raw = io.BytesIO(body)
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


def _client(*answers: tuple[int, dict[str, str], bytes]) -> tuple[ApiClient, StubTransport]:
    transport = StubTransport(*answers)
    client = ApiClient("http://api.test")
    client.session.mount("http://", transport)
    client.session.mount("https://", transport)
    return client, transport


def test_client_asks_for_parts_and_reads_the_multipart_plan() -> None:
    answer = {
        "upload_id": "ab" * 16,
        "status": "PENDING",
        "multipart": {"part_size": 16777216, "part_count": 7},
        "expires_at": "2025-11-28T00:00:00Z",
    }
    client, transport = _client((201, {}, json.dumps(answer).encode()))
    slot = client.create_upload(
        filename="big.iso",
        size=100_000_000,
        content_type="application/octet-stream",
        sha256="cd" * 32,
        multipart=True,
    )
    assert slot == MultipartSlot("ab" * 16, 16777216, 7, "2025-11-28T00:00:00Z")
    assert json.loads(transport.sent[0].body or b"")["multipart"] is True


def test_client_returns_a_parts_etag_and_refuses_an_answer_without_one() -> None:
    client, transport = _client((200, {"ETag": '"0a1b"'}, b""), (200, {}, b""))
    headers = {"Content-Length": "3"}
    assert client.put_part("https://bucket.test/k?partNumber=1", headers, b"abc") == '"0a1b"'
    assert transport.sent[0].headers["Content-Length"] == "3"
    with pytest.raises(StorageError, match="without an ETag"):
        client.put_part("https://bucket.test/k?partNumber=2", headers, b"abc")


def test_client_says_when_a_download_url_expired() -> None:
    expired = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
    client, _ = _client((403, {}, expired))
    with pytest.raises(StorageError) as caught:
        list(client.download("https://bucket.test/cas/sha256/ab"))
    assert caught.value.expired
    assert str(caught.value) == "the download URL expired before the download started (HTTP 403)"


def test_client_sends_the_page_token_encoded() -> None:
    page: dict[str, Any] = {"items": [], "last_evaluated_key": None}
    client, transport = _client((200, {}, json.dumps(page).encode()))
    client.list_hashes(limit=5, token="a+b/c=")
    assert transport.sent[0].url == (
        "http://api.test/admin/hashes?limit=5&last_evaluated_key=a%2Bb%2Fc%3D"
    )


def test_client_lists_uploads_with_the_filters_encoded() -> None:
    page: dict[str, Any] = {"items": [], "last_evaluated_key": None}
    client, transport = _client((200, {}, json.dumps(page).encode()))
    assert client.list_uploads(limit=7, status="STORED", prefix="my report+", token="a/b=") == page
    assert transport.sent[0].method == "GET"
    assert transport.sent[0].url == (
        "http://api.test/uploads?limit=7&status=STORED&prefix=my%20report%2B"
        "&last_evaluated_key=a%2Fb%3D"
    )


def test_client_lists_uploads_without_filters_sends_the_limit_alone() -> None:
    page: dict[str, Any] = {"items": [], "last_evaluated_key": None}
    client, transport = _client((200, {}, json.dumps(page).encode()))
    client.list_uploads(limit=1000)
    assert transport.sent[0].url == "http://api.test/uploads?limit=1000"


def test_client_deletes_an_upload_and_gives_the_apis_refusal() -> None:
    conflict = {"message": "the upload is being stored: try again shortly"}
    client, transport = _client((204, {}, b""), (409, {}, json.dumps(conflict).encode()))
    client.delete_upload("ab" * 16)
    with pytest.raises(ApiError) as caught:
        client.delete_upload("cd" * 16)
    assert [(r.method, r.url) for r in transport.sent] == [
        ("DELETE", f"http://api.test/uploads/{'ab' * 16}"),
        ("DELETE", f"http://api.test/uploads/{'cd' * 16}"),
    ]
    assert (caught.value.status, caught.value.message) == (409, conflict["message"])


def test_client_erases_an_owner_with_an_empty_post() -> None:
    answer = {"owner": "a/b", "deleted": 2, "aborted": 0, "waiting": 0, "done": True}
    client, transport = _client((200, {}, json.dumps(answer).encode()), (403, {}, b"{}"))
    assert client.erase_owner("a/b") == answer
    assert (transport.sent[0].method, transport.sent[0].url) == (
        "POST",
        "http://api.test/admin/owners/a%2Fb/erase",
    )
    assert not transport.sent[0].body
    with pytest.raises(ApiError, match=r"^admins only"):
        client.erase_owner("x")


def test_client_reads_the_health_view_and_says_admins_only_when_refused() -> None:
    client, transport = _client((200, {}, json.dumps(healthy()).encode()), (403, {}, b"{}"))
    assert client.get_health()["ingest_queue"]["waiting"] == 3
    assert (transport.sent[0].method, transport.sent[0].url) == (
        "GET",
        "http://api.test/admin/health",
    )
    with pytest.raises(ApiError, match=r"^admins only"):
        client.get_health()


# --- progress ----------------------------------------------------------------------------------


def test_no_progress_bar_when_stderr_is_not_a_terminal(api: FakeApi, hello: Path) -> None:
    run = Run(api, "upload", str(hello))
    assert run.err == ""
    assert "\r" not in run.out


def test_the_progress_bar_reaches_100_percent_and_leaves_stdout_clean(
    api: FakeApi, tmp_path: Path
) -> None:
    # Given a console on a terminal
    out, err = io.StringIO(), io.StringIO()
    console = Console(out, err, interactive=True)
    files = []
    for i in range(3):
        files.append(tmp_path / f"f{i}")
        files[-1].write_bytes(bytes([i]) * 300_000)
    progress = console.start_progress(3, 900_000)
    uploader = Uploader(api, progress=progress)
    # When
    for path in files:
        console.result(result_line(uploader.upload(str(path))))
    console.stop_progress()
    # Then
    assert "100%  878.9 KiB / 878.9 KiB  3/3 files" in err.getvalue()
    assert err.getvalue().endswith("\r\x1b[K")
    assert "\r" not in out.getvalue()
    assert len(out.getvalue().splitlines()) == 3


# --- signing in: a fake Cognito and API on a local HTTP server ---------------------------------


def _fake_jwt(claims: dict[str, Any]) -> str:
    # Unsigned: the CLI never verifies a token (the API's authorizer does), it only reads it.
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'kid': 'test'})}.{part(claims)}.c2lnbmF0dXJl"


class FakeCognitoApi:
    """GET /auth/config and a few API routes, plus Cognito's InitiateAuth and RevokeToken (a POST
    with X-Amz-Target), on one local server on port 0. The API accepts exactly the ID and access
    tokens this Cognito issued and has not invalidated, as API Gateway's authorizer would."""

    PASSWORD = "Right-password-1"

    def __init__(self) -> None:
        self.users = {"alice": [], "admin": ["admins"]}
        self.expires_in = 3600
        self.accepting = True  # False: the API refuses every token (another pool's, say)
        self.valid: set[str] = set()
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> user
        self.cognito_calls: list[dict[str, Any]] = []
        self.api_calls: list[tuple[str, str, str | None]] = []  # method, path, Authorization
        self.health = healthy()  # what GET /admin/health answers admins
        self._issued = 0
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._api(self, "GET")

            def do_POST(self) -> None:
                if self.headers.get("X-Amz-Target"):
                    fake._cognito(self)
                else:
                    fake._api(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def invalidate(self) -> None:
        """The API stops accepting every token issued so far (as after their expiry)."""
        self.valid.clear()

    def flows(self) -> list[str]:
        return [call.get("AuthFlow", call["target"]) for call in self.cognito_calls]

    def issue(self, user: str) -> dict[str, Any]:
        with self._lock:
            self._issued += 1
            serial = self._issued
        common = {
            "sub": f"sub-of-{user}",
            "cognito:groups": self.users[user],
            "exp": int(time.time()) + self.expires_in,
            "serial": serial,
        }
        id_token = _fake_jwt({**common, "cognito:username": user, "token_use": "id"})
        access = _fake_jwt({**common, "username": user, "token_use": "access"})
        self.valid |= {id_token, access}
        return {"IdToken": id_token, "AccessToken": access, "ExpiresIn": self.expires_in}

    def _reply(self, handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _cognito(self, handler: BaseHTTPRequestHandler) -> None:
        target = handler.headers["X-Amz-Target"].rpartition(".")[2]
        length = int(handler.headers.get("Content-Length", 0))
        body = json.loads(handler.rfile.read(length))
        self.cognito_calls.append({"target": target, **body})
        assert handler.headers["Content-Type"] == "application/x-amz-json-1.1"
        assert "Authorization" not in handler.headers  # public operations: unsigned
        refused = {"__type": "NotAuthorizedException", "message": "Incorrect username or password."}
        if target == "RevokeToken":
            self.refresh_tokens.pop(body["Token"], None)
            return self._reply(handler, 200, {})
        params = body["AuthParameters"]
        if body["AuthFlow"] == "USER_PASSWORD_AUTH":
            user = params["USERNAME"]
            if user not in self.users or params["PASSWORD"] != self.PASSWORD:
                return self._reply(handler, 400, refused)
            result = self.issue(user)
            result["RefreshToken"] = f"refresh-{user}-{len(self.refresh_tokens)}"
            self.refresh_tokens[result["RefreshToken"]] = user
            return self._reply(handler, 200, {"AuthenticationResult": result})
        user = self.refresh_tokens.get(params["REFRESH_TOKEN"], "")
        if not user:
            revoked = {"__type": "NotAuthorizedException", "message": "Refresh Token has expired"}
            return self._reply(handler, 400, revoked)
        return self._reply(handler, 200, {"AuthenticationResult": self.issue(user)})

    def _api(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        auth = handler.headers.get("Authorization")
        self.api_calls.append((method, handler.path, auth))
        if handler.path == "/auth/config":
            config = {
                "issuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_test",
                "user_pool_id": "us-east-1_test",
                "client_id": "client-test",
                "region": "us-east-1",
                "cognito_endpoint": f"{self.url}/",
            }
            return self._reply(handler, 200, config)
        token = (auth or "").removeprefix("Bearer ")
        if token not in self.valid or not self.accepting:
            return self._reply(handler, 401, {"message": "Unauthorized"})
        if handler.path.startswith("/admin/"):
            claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
            if "admins" not in claims["cognito:groups"]:
                return self._reply(handler, 403, {"message": "Forbidden"})
            if handler.path == "/admin/health":
                return self._reply(handler, 200, self.health)
            return self._reply(handler, 200, {"total_files": 1, "total_uploads": 2})
        if handler.path.startswith("/uploads/"):
            view = {"upload_id": handler.path.rsplit("/", 1)[1], "status": "STORED"}
            return self._reply(handler, 200, view)
        return self._reply(handler, 404, {"message": "Not Found"})


@pytest.fixture
def cognito() -> Iterator[FakeCognitoApi]:
    fake = FakeCognitoApi()
    yield fake
    fake.close()


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


class Shell:
    """`onecopy ...` with the real ApiClient against a FakeCognitoApi, in a config dir of its
    own."""

    def __init__(self, fake: FakeCognitoApi, home: Path) -> None:
        self.fake = fake
        self.environ = {
            "ONECOPY_API_URL": fake.url,
            "XDG_CONFIG_HOME": str(home / "config"),
            "HOME": str(home),
        }
        self.cache = home / "config" / "onecopy" / "tokens.json"

    def __call__(self, *args: str, **environ: str) -> Ran:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(args), stdout=out, stderr=err, environ={**self.environ, **environ})
        return Ran(code, out.getvalue(), err.getvalue())

    def login(self, user: str = "alice") -> Ran:
        run = self("login", ONECOPY_USERNAME=user, ONECOPY_PASSWORD=FakeCognitoApi.PASSWORD)
        assert run.code == 0, run.err
        return run

    def cached(self) -> dict[str, Any]:
        logins: dict[str, Any] = json.loads(self.cache.read_text())["logins"]
        return logins

    def sent_tokens(self) -> list[str | None]:
        return [auth for _, path, auth in self.fake.api_calls if path != "/auth/config"]


@pytest.fixture
def shell(cognito: FakeCognitoApi, tmp_path: Path) -> Shell:
    return Shell(cognito, tmp_path)


def _no_prompt(*_: Any, **__: Any) -> str:
    raise AssertionError("prompted although the environment had the answer")


def test_login_prompts_for_the_user_and_password_and_keeps_the_tokens_private(
    shell: Shell, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a person at a terminal typing their name and password
    monkeypatch.setattr("sys.stdin", io.StringIO("alice\n"))
    asked: list[str] = []

    def getpass(prompt: str, stream: Any = None) -> str:
        asked.append(prompt)
        return FakeCognitoApi.PASSWORD

    monkeypatch.setattr("getpass.getpass", getpass)

    # When they sign in
    run = shell("login")

    # Then they were asked, the password went to Cognito only, and the tokens are kept
    assert run.code == 0, run.err
    assert run.out == f"signed in to {shell.fake.url} as alice\n"
    assert "Username: " in run.err
    assert asked == ["Password: "]
    assert shell.fake.flows() == ["USER_PASSWORD_AUTH"]
    assert [path for _, path, _ in shell.fake.api_calls] == ["/auth/config"]
    assert stat.S_IMODE(shell.cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(shell.cache.parent.stat().st_mode) == 0o700
    (login,) = shell.cached().values()
    assert login["api_url"] == shell.fake.url
    assert (login["username"], login["client_id"]) == ("alice", "client-test")
    assert login["issuer"] == "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_test"
    assert login["id_token"] in shell.fake.valid
    assert login["refresh_token"] in shell.fake.refresh_tokens
    assert FakeCognitoApi.PASSWORD not in shell.cache.read_text()
    assert not [p for p in shell.cache.parent.iterdir() if p.name.startswith(".tokens-")]


def test_login_reads_the_user_and_password_from_the_environment(
    shell: Shell, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("getpass.getpass", _no_prompt)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    run = shell.login("admin")
    assert run.out == f"signed in to {shell.fake.url} as admin (groups: admins)\n"
    assert shell.cached()[shell.fake.url]["username"] == "admin"


def test_a_wrong_password_is_refused_and_nothing_is_kept(shell: Shell) -> None:
    run = shell("login", ONECOPY_USERNAME="alice", ONECOPY_PASSWORD="wrong")
    assert run.code == 1
    assert run.err == ("onecopy: Incorrect username or password. (NotAuthorizedException)\n")
    assert not shell.cache.exists()


def test_no_password_at_all_is_a_clear_error(shell: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    def eof(*_: Any, **__: Any) -> str:
        raise EOFError

    monkeypatch.setattr("getpass.getpass", eof)
    run = shell("login", ONECOPY_USERNAME="alice")
    assert run.code == 1
    assert run.err == "onecopy: no password given ($ONECOPY_PASSWORD for scripts)\n"
    assert shell.fake.cognito_calls == []


def test_every_api_call_carries_the_id_token(shell: Shell) -> None:
    shell.login()
    run = shell("status", ABSENT_ID)
    assert run.code == 0, run.err
    assert shell.sent_tokens() == [f"Bearer {shell.cached()[shell.fake.url]['id_token']}"]


def test_the_presigned_bucket_calls_never_carry_the_token() -> None:
    client, transport = _client((200, {"ETag": '"e"'}, b""), (200, {}, b"abc"))
    client.credentials = StaticToken("secret-token")
    client.put_object("https://bucket.test/staging/x?sig", {"Content-Length": "3"}, b"abc")
    assert b"".join(client.download("https://bucket.test/cas/sha256/ab?sig")) == b"abc"
    assert [r.headers.get("Authorization") for r in transport.sent] == [None, None]


def test_a_token_expiring_within_a_minute_is_refreshed_before_the_call(shell: Shell) -> None:
    # Given a sign-in whose ID token has 30 seconds left
    shell.fake.expires_in = 30
    shell.login()
    first = shell.cached()[shell.fake.url]

    # When a command calls the API
    shell.fake.expires_in = 3600
    run = shell("status", ABSENT_ID)

    # Then the token was refreshed first, the call carried the new one, and the cache has it
    assert run.code == 0, run.err
    assert shell.fake.flows() == ["USER_PASSWORD_AUTH", "REFRESH_TOKEN_AUTH"]
    renewed = shell.cached()[shell.fake.url]
    assert renewed["id_token"] != first["id_token"]
    assert renewed["refresh_token"] == first["refresh_token"]  # Cognito keeps the old one
    assert shell.sent_tokens() == [f"Bearer {renewed['id_token']}"]
    assert stat.S_IMODE(shell.cache.stat().st_mode) == 0o600


def test_a_401_is_retried_once_after_a_refresh(shell: Shell) -> None:
    # Given a sign-in whose tokens the API no longer accepts though they look fresh
    shell.login()
    old = shell.cached()[shell.fake.url]["id_token"]
    shell.fake.invalidate()

    # When a command calls the API
    run = shell("status", ABSENT_ID)

    # Then it was refused once, refreshed once, and retried with the new token
    assert run.code == 0, run.err
    new = shell.cached()[shell.fake.url]["id_token"]
    assert shell.sent_tokens() == [f"Bearer {old}", f"Bearer {new}"]
    assert shell.fake.flows() == ["USER_PASSWORD_AUTH", "REFRESH_TOKEN_AUTH"]


def test_a_token_refused_even_after_a_refresh_says_to_sign_in_again(shell: Shell) -> None:
    shell.login()
    shell.fake.accepting = False
    run = shell("status", ABSENT_ID)
    assert run.code == 3
    assert run.err == (
        f"onecopy: the API at {shell.fake.url} refused the call as alice (HTTP 401): "
        "run `onecopy login`\n"
    )
    assert shell.fake.flows() == ["USER_PASSWORD_AUTH", "REFRESH_TOKEN_AUTH"]
    assert len(shell.sent_tokens()) == 2


def test_a_refused_refresh_says_to_sign_in_again_with_its_own_exit_code(shell: Shell) -> None:
    shell.login()
    shell.fake.invalidate()
    shell.fake.refresh_tokens.clear()
    run = shell("status", ABSENT_ID)
    assert run.code == 3
    assert run.err.startswith("onecopy: the sign-in of alice to http://127.0.0.1:")
    assert run.err.endswith(
        "has expired (Refresh Token has expired (NotAuthorizedException)): run `onecopy login`\n"
    )


def test_not_signed_in_says_to_run_login_before_calling_the_api(
    shell: Shell, tmp_path: Path
) -> None:
    hello = tmp_path / "hello.txt"
    hello.write_bytes(b"hello")
    for argv in (["status", ABSENT_ID], ["upload", str(hello)], ["stats"], ["whoami"]):
        run = shell(*argv)
        assert run.code == 3, argv
        assert "not signed in to http://127.0.0.1:" in run.err
        assert "run `onecopy login`" in run.err
    assert shell.fake.api_calls == []


def test_onecopy_token_overrides_the_cache_and_is_never_refreshed(shell: Shell) -> None:
    # Given alice signed in, and a CI token of admin's in the environment
    shell.login("alice")
    ci = shell.fake.issue("admin")["IdToken"]

    # When a command runs with it, and again once the API no longer accepts it
    ok = shell("stats", "--json", ONECOPY_TOKEN=ci)
    shell.fake.invalidate()
    refused = shell("stats", ONECOPY_TOKEN=ci)

    # Then the token was sent as is, and its refusal is final
    assert ok.code == 0, ok.err
    assert shell.sent_tokens() == [f"Bearer {ci}", f"Bearer {ci}"]
    assert shell.fake.flows() == ["USER_PASSWORD_AUTH"]
    assert refused.code == 3
    assert "the API refused the token in $ONECOPY_TOKEN" in refused.err


def test_tokens_of_one_api_are_never_sent_to_another(shell: Shell, cognito: FakeCognitoApi) -> None:
    # Given a sign-in at one API, and another API elsewhere
    shell.login()
    other = FakeCognitoApi()
    try:
        # When a command is pointed at the other API
        run = shell("status", ABSENT_ID, ONECOPY_API_URL=other.url)
        # Then it is not signed in there, and the other API heard nothing
        assert run.code == 3
        assert f"not signed in to {other.url}" in run.err
        assert other.api_calls == []
    finally:
        other.close()


def test_the_cache_key_ignores_a_trailing_slash_and_the_schemes_case(shell: Shell) -> None:
    shell.login()
    url = shell.fake.url.replace("http://", "HTTP://") + "/"
    assert shell("status", ABSENT_ID, ONECOPY_API_URL=url).code == 0


def test_logout_forgets_the_tokens_and_revokes_the_refresh_token(shell: Shell) -> None:
    shell.login()
    refresh = shell.cached()[shell.fake.url]["refresh_token"]
    run = shell("logout")
    assert (run.code, run.out) == (0, f"signed out of {shell.fake.url} (alice)\n")
    assert not shell.cache.exists()
    assert refresh not in shell.fake.refresh_tokens
    assert shell.fake.cognito_calls[-1] == {
        "target": "RevokeToken",
        "Token": refresh,
        "ClientId": "client-test",
    }
    assert shell("status", ABSENT_ID).code == 3
    again = shell("logout")
    assert (again.code, again.out) == (0, f"not signed in to {shell.fake.url}: nothing to forget\n")


def test_logout_keeps_the_sign_ins_of_other_apis(shell: Shell) -> None:
    other = FakeCognitoApi()
    try:
        shell.login()
        assert (
            shell(
                "login",
                ONECOPY_API_URL=other.url,
                ONECOPY_USERNAME="admin",
                ONECOPY_PASSWORD=FakeCognitoApi.PASSWORD,
            ).code
            == 0
        )
        assert shell("logout").code == 0
        assert list(shell.cached()) == [other.url]
        assert shell("stats", ONECOPY_API_URL=other.url).code == 0
    finally:
        other.close()


def test_logout_when_cognito_cannot_revoke_still_forgets_and_says_so(shell: Shell) -> None:
    shell.login()
    shell.fake.close()  # Cognito is gone
    run = shell("logout")
    assert run.code == 0
    assert run.out == f"signed out of {shell.fake.url} (alice)\n"
    assert run.err.startswith("note: Cognito did not revoke the refresh token: cannot reach")
    assert not shell.cache.exists()


def test_whoami_reads_the_user_sub_groups_and_expiry_from_the_token(shell: Shell) -> None:
    shell.login("admin")
    run = shell("whoami")
    assert run.code == 0, run.err
    assert run.lines[:3] == ["User       admin", "Sub        sub-of-admin", "Groups     admins"]
    assert re.fullmatch(r"Expires    \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in 59 min\)", run.lines[3])
    assert run.lines[4:] == [f"API        {shell.fake.url}", f"Token      {shell.cache}"]
    view = json.loads(shell("whoami", "--json").out)
    assert (view["username"], view["groups"], view["source"]) == (
        "admin",
        ["admins"],
        str(shell.cache),
    )
    # whoami reads the cache: no call went to the API or to Cognito beyond the sign-in
    assert shell.sent_tokens() == []
    assert shell.fake.flows() == ["USER_PASSWORD_AUTH"]


def test_whoami_shows_a_ci_token_too(shell: Shell) -> None:
    token = _fake_jwt(
        {"sub": "s-1", "username": "ci-bot", "cognito:groups": "[admins ops]", "exp": 1}
    )
    run = shell("whoami", "--json", ONECOPY_TOKEN=token)
    assert json.loads(run.out) == {
        "username": "ci-bot",
        "sub": "s-1",
        "groups": ["admins", "ops"],
        "expires_at": "1970-01-01T00:00:01Z",
        "api_url": shell.fake.url,
        "source": "$ONECOPY_TOKEN",
    }


@pytest.mark.parametrize("command", ["stats", "hashes"])
def test_admin_reads_are_admins_only(shell: Shell, command: str) -> None:
    shell.login("alice")
    run = shell(command)
    assert run.code == 1
    assert run.err.startswith("onecopy: admins only: sign in as a member of the admins group")
    assert run.err.endswith("(HTTP 403)\n")


def test_erase_owner_is_admins_only(shell: Shell) -> None:
    shell.login("alice")
    run = shell("admin", "erase-owner", "sub-of-admin")
    assert (run.code, run.out) == (1, "")
    assert run.err.startswith("onecopy: admins only: sign in as a member of the admins group")
    assert run.err.endswith("(HTTP 403)\n")
    assert [(m, p) for m, p, _ in shell.fake.api_calls][-1] == (
        "POST",
        "/admin/owners/sub-of-admin/erase",
    )


def test_health_is_admins_only_and_needs_a_sign_in(shell: Shell) -> None:
    # Given nobody signed in, then alice, then admin, at a service with dead letters
    shell.fake.health = troubled()
    nobody = shell("admin", "health")
    shell.login("alice")
    alice = shell("admin", "health")
    shell.login("admin")
    admin = shell("admin", "health", "--json")
    # Then nobody is told to sign in, alice is refused, and admin gets the view (and exit 1)
    assert (nobody.code, nobody.out) == (3, "")
    assert "run `onecopy login`" in nobody.err
    assert (alice.code, alice.out) == (1, "")
    assert alice.err.startswith("onecopy: admins only: sign in as a member of the admins group")
    assert alice.err.endswith("(HTTP 403)\n")
    assert (admin.code, json.loads(admin.out), admin.err) == (1, shell.fake.health, "")
    assert [p for _, p, _ in shell.fake.api_calls if p.startswith("/admin/")] == [
        "/admin/health",
        "/admin/health",
    ]


def test_a_sign_in_lost_mid_upload_stops_the_run_with_one_message(
    api: FakeApi, tmp_path: Path
) -> None:
    files = [tmp_path / f"f{i}" for i in range(3)]
    for i, path in enumerate(files):
        path.write_bytes(bytes([i]))
    api.create_error = NotSignedIn("the sign-in expired: run `onecopy login`")
    run = Run(api, "upload", "-j", "1", *map(str, files))
    assert run.code == 3
    assert run.err == "onecopy: the sign-in expired: run `onecopy login`\n"


def test_concurrent_401s_cause_one_refresh(tmp_path: Path) -> None:
    # Given a cached sign-in shared by several upload threads, all refused with the same token
    refreshes: list[str] = []

    class Cognito:
        def __init__(self, *_: str) -> None:
            pass

        def refresh(self, refresh_token: str) -> Tokens:
            refreshes.append(refresh_token)
            return Tokens(IdToken=f"id-{len(refreshes)}", AccessToken="a", ExpiresIn=3600)

    login = Login(
        api_url="http://api.test",
        username="alice",
        id_token="id-0",
        access_token="a",
        refresh_token="r",
        expires_at=time.time() + 3600,
        issuer="i",
        client_id="c",
        user_pool_id="p",
        region="us-east-1",
        cognito_endpoint="http://127.0.0.1:1/",
    )
    cache = TokenCache(tmp_path / "onecopy")
    cache.put(login)
    credentials = CachedLogin(login, cache, make_cognito=Cognito)  # type: ignore[arg-type]
    # When eight threads ask for a new token at once
    with ThreadPoolExecutor(8) as pool:
        tokens = list(pool.map(lambda _: credentials.renew("id-0"), range(8)))
    # Then one refresh served them all, and it was written back
    assert tokens == ["id-1"] * 8
    assert refreshes == ["r"]
    assert cache.get("http://api.test/") == credentials.login


@pytest.mark.parametrize(
    ("endpoint", "allowed"),
    [
        ("https://cognito-idp.eu-west-1.amazonaws.com/", True),
        ("http://127.0.0.1:4566", True),
        ("http://localhost:4566/", True),
        ("http://[::1]:4566/", True),
        ("http://cognito.example.com/", False),
        ("ftp://127.0.0.1/", False),
    ],
)
def test_credentials_go_over_https_except_to_this_machine(endpoint: str, allowed: bool) -> None:
    if allowed:
        Cognito(endpoint, "client")
    else:
        with pytest.raises(CliError, match="refusing to send credentials"):
            Cognito(endpoint, "client")


def test_no_token_goes_over_plain_http_to_another_machine(api: FakeApi) -> None:
    run = Run(api, "status", ABSENT_ID, environ={"ONECOPY_API_URL": "http://api.example.com"})
    assert (run.code, run.urls) == (1, [])
    assert run.err == (
        "onecopy: refusing to send your token to http://api.example.com: use https "
        "(plain http only on this machine)\n"
    )


def test_a_refresh_does_not_undo_a_sign_in_made_meanwhile(shell: Shell) -> None:
    # Given a command that has read alice's sign-in, then admin signing in from another process
    shell.login("alice")
    cache = TokenCache(shell.cache.parent)
    alice = cache.get(shell.fake.url)
    assert alice is not None
    credentials = CachedLogin(alice, cache)
    shell.login("admin")

    # When the command's token needs refreshing
    credentials.renew(alice.id_token)

    # Then it refreshed for itself, and admin's sign-in stands on disk
    assert credentials.login.id_token != alice.id_token
    assert shell.cached()[shell.fake.url]["username"] == "admin"


def test_a_corrupt_cache_is_named_with_what_to_do(shell: Shell) -> None:
    shell.cache.parent.mkdir(parents=True)
    shell.cache.write_text("{not json")
    run = shell("status", ABSENT_ID)
    assert run.code == 1
    assert run.err == (
        f"onecopy: {shell.cache} is not a onecopy sign-in cache (1 errors): delete it, then "
        "run `onecopy login`\n"
    )


@pytest.mark.parametrize(
    ("groups", "expected"),
    [(["admins"], ["admins"]), ("[admins other]", ["admins", "other"]), (None, []), ("[]", [])],
)
def test_groups_are_read_as_a_list_or_as_api_gateways_flattened_string(
    groups: Any, expected: list[str]
) -> None:
    assert groups_of({"cognito:groups": groups}) == expected
