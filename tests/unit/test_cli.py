"""The `onecopy` CLI without a network: arguments, hashing, output, exit codes, the upload flow.

FakeApi stands in for ApiClient. It behaves like the service as a client sees it: a 409 for
content the caller already holds, a slot to PUT into otherwise, and a verdict decided from the
bytes that actually arrived.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from onecopy_cli.api import AlreadyStored, ApiError, StorageError, Unreachable, UploadSlot
from onecopy_cli.commands.upload import summary
from onecopy_cli.console import Console
from onecopy_cli.files import CHUNK, FileBody, FileChanged, content_type_of, sha256_file
from onecopy_cli.main import build_parser, main
from onecopy_cli.output import human_size, result_json, result_line, upload_view
from onecopy_cli.upload import FileResult, Outcome, Uploader, wait_until_done

pytestmark = pytest.mark.unit

ABSENT_ID = "0123456789abcdef0123456789abcdef"


class FakeApi:
    def __init__(self) -> None:
        self.held: set[str] = set()
        self.uploads: dict[str, dict[str, Any]] = {}
        self.received: dict[str, bytes] = {}
        self.sent_headers: dict[str, dict[str, str]] = {}
        self.create_error: Exception | None = None
        self.put_error: Exception | None = None
        self.verdict: dict[str, Any] | None = None  # forces what the worker decides
        self.closed = False

    def create_upload(
        self, *, filename: str, size: int, content_type: str, sha256: str
    ) -> UploadSlot | AlreadyStored:
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
        }
        self.uploads[upload_id] = view
        if sha256 in self.held:
            view.update(status="DUPLICATE", sha256=sha256)
            return AlreadyStored(upload_id=upload_id, message="already stored")
        headers = {"Content-Length": str(size), "Content-Type": content_type, "If-None-Match": "*"}
        return UploadSlot(upload_id, f"https://bucket.test/staging/{upload_id}", headers)

    def put_object(self, url: str, headers: dict[str, str], body: Iterable[bytes] | bytes) -> None:
        if self.put_error is not None:
            raise self.put_error
        upload_id = url.rsplit("/", 1)[1]
        data = body if isinstance(body, bytes) else b"".join(body)
        self.received[upload_id] = data
        self.sent_headers[upload_id] = headers
        view = self.uploads[upload_id]
        digest = hashlib.sha256(data).hexdigest()
        if self.verdict is not None:
            view.update(self.verdict)
        elif digest != view["declared"]:
            view.update(status="REJECTED", reason="checksum_mismatch")
        else:
            view.update(status="DUPLICATE" if digest in self.held else "STORED", sha256=digest)
            self.held.add(digest)

    def get_upload(self, upload_id: str) -> dict[str, Any]:
        if upload_id not in self.uploads:
            raise ApiError(404, f"no upload {upload_id}")
        return {k: v for k, v in self.uploads[upload_id].items() if k != "declared"}

    def close(self) -> None:
        self.closed = True


class Run:
    """One `onecopy ...` invocation against a FakeApi."""

    def __init__(self, api: FakeApi, *args: str, environ: dict[str, str] | None = None) -> None:
        self.urls: list[str] = []
        out, err = io.StringIO(), io.StringIO()

        def make_client(url: str, **_: object) -> FakeApi:
            self.urls.append(url)
            return api

        self.code = main(
            list(args), make_client=make_client, stdout=out, stderr=err, environ=environ or {}
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
        (["status", ABSENT_ID], {"ONECOPY_API_URL": "http://env:1"}, "http://env:1"),
        (
            ["--api", "http://flag:2", "status", ABSENT_ID],
            {"ONECOPY_API_URL": "http://env:1"},
            "http://flag:2",
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
    assert line.endswith("(already stored, nothing uploaded)")


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
    assert "already stored" in second.lines[0]
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
        def create_upload(self, **declared: Any) -> UploadSlot | AlreadyStored:
            hello.write_bytes(b"hi")
            return super().create_upload(**declared)

    api = Truncating()
    # When
    run = Run(api, "upload", str(hello))
    # Then
    assert run.code == 1
    assert f"onecopy: {hello}: changed while uploading" in run.err
    assert api.received == {}


def test_a_file_over_5_gib_is_refused_before_hashing_or_asking(
    api: FakeApi, tmp_path: Path
) -> None:
    huge = tmp_path / "huge.iso"
    with huge.open("wb") as sparse:
        sparse.truncate(5 * 1024**3 + 1)
    run = Run(api, "upload", str(huge))
    assert run.code == 1
    assert "at most 5 GiB" in run.err
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


def test_polling_backs_off_from_a_fifth_of_a_second_to_two_seconds(api: FakeApi) -> None:
    api.uploads[ABSENT_ID] = {"upload_id": ABSENT_ID, "status": "PENDING"}
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    view = wait_until_done(api, ABSENT_ID, timeout=10, clock=lambda: now[0], sleep=sleep)
    assert view["status"] == "PENDING"
    assert sleeps[:6] == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert sum(sleeps) == pytest.approx(10)


def test_polling_rides_out_a_server_error_but_not_a_client_error(api: FakeApi) -> None:
    answers: list[Any] = [ApiError(503, "busy"), {"status": "STORED"}]

    class Flaky(FakeApi):
        def get_upload(self, upload_id: str) -> dict[str, Any]:
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return dict(answer)

    assert wait_until_done(Flaky(), ABSENT_ID, timeout=10, sleep=lambda _: None) == {
        "status": "STORED"
    }
    with pytest.raises(ApiError):
        wait_until_done(api, ABSENT_ID, timeout=10, sleep=lambda _: None)


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
