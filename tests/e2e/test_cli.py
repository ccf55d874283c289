"""The installed `onecopy` command against the local stack, run the way a person runs it:
signed in with `onecopy login` (ONECOPY_USERNAME / ONECOPY_PASSWORD) into a config directory of
its own per user, as alice unless a test says otherwise."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

pytestmark = pytest.mark.e2e

# Never inherited from the shell running the tests: each test decides how it is signed in.
_SIGN_IN_ENV = ("ONECOPY_TOKEN", "ONECOPY_USERNAME", "ONECOPY_PASSWORD", "XDG_CONFIG_HOME")


def _onecopy_executable() -> str:
    # The console script installed next to this interpreter by `pip install -e .`.
    beside = Path(sys.executable).with_name("onecopy")
    found = str(beside) if beside.exists() else shutil.which("onecopy")
    assert found, "the onecopy console script is not installed: run `make venv`"
    return found


ONECOPY = _onecopy_executable()


class Cli:
    def __init__(self, api_url: str, cwd: Path, config_home: Path) -> None:
        self.api_url = api_url
        self.cwd = cwd
        self.config_home = config_home

    def __call__(
        self,
        *args: str,
        api_url: str | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        inherited = {k: v for k, v in os.environ.items() if k not in _SIGN_IN_ENV}
        environ = {
            **inherited,
            "ONECOPY_API_URL": api_url or self.api_url,
            "XDG_CONFIG_HOME": str(self.config_home),
            "NO_COLOR": "1",
            **(env or {}),
        }
        return subprocess.run(
            [ONECOPY, *args],
            cwd=cwd or self.cwd,
            env=environ,
            stdin=subprocess.DEVNULL,  # a prompt would fail at once rather than wait
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def json(self, *args: str) -> Any:
        result = self(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def login(self, user: str, password: str) -> subprocess.CompletedProcess[str]:
        return self("login", env={"ONECOPY_USERNAME": user, "ONECOPY_PASSWORD": password})


@pytest.fixture(scope="session")
def config_homes(local_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A config directory per seeded user, signed in once for the session (tokens last 1 h)."""
    homes = {}
    for user in ("alice", "bob", "admin"):
        home = tmp_path_factory.mktemp(f"config-{user}")
        signed_in = Cli(local_stack.api_url, home, home).login(user, local_stack.password)
        assert signed_in.returncode == 0, signed_in.stderr
        homes[user] = home
    return homes


@pytest.fixture
def cli(local_stack: Any, tmp_path: Path, config_homes: dict[str, Path]) -> Cli:
    return Cli(local_stack.api_url, tmp_path, config_homes["alice"])


@pytest.fixture
def admin(local_stack: Any, tmp_path: Path, config_homes: dict[str, Path]) -> Cli:
    return Cli(local_stack.api_url, tmp_path, config_homes["admin"])


@pytest.fixture
def bob(local_stack: Any, tmp_path: Path, config_homes: dict[str, Path]) -> Cli:
    return Cli(local_stack.api_url, tmp_path, config_homes["bob"])


def _new_file(directory: Path, name: str, size: int = 4096) -> Path:
    # Random bytes: the stack lives for the whole session, so content must be new to it.
    path = directory / name
    path.write_bytes(os.urandom(size))
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_uploading_the_same_file_twice_prints_stored_then_duplicate(
    cli: Cli, local_stack: Any, tmp_path: Path
) -> None:
    # Given a file the service has never seen
    report = _new_file(tmp_path, "report.bin", size=300_000)
    digest = _sha256(report)

    # When it is uploaded, and then uploaded again
    first = cli("upload", "report.bin")
    second = cli("upload", "report.bin")

    # Then the first upload stores it and the second finds it already stored
    assert (first.returncode, first.stderr) == (0, ""), first.stderr
    status, sha, *_size, name, upload_id = first.stdout.split()
    assert (status, sha, name) == ("stored", digest, "report.bin")
    assert second.returncode == 0, second.stderr
    assert second.stdout.split()[:2] == ["duplicate", digest]
    assert "you already hold it" in second.stdout
    assert second.stdout.split()[5] != upload_id
    # And the bytes are in the bucket under their content key
    s3 = boto3.client("s3", endpoint_url=local_stack.endpoint_url)
    holders = [
        bucket["Name"]
        for bucket in s3.list_buckets()["Buckets"]
        if s3.list_objects_v2(Bucket=bucket["Name"], Prefix=f"cas/sha256/{digest}")["KeyCount"]
    ]
    assert len(holders) == 1


def test_two_files_in_one_call_each_get_a_line(cli: Cli, tmp_path: Path) -> None:
    # Given two new files, one of them empty
    a = _new_file(tmp_path, "a.bin", size=70_000)
    empty = tmp_path / "empty.txt"
    empty.touch()

    # When both are uploaded in one call
    result = cli("upload", "--json", "a.bin", "empty.txt")

    # Then each has its own result, and both were stored (or, for the empty file, already were)
    assert result.returncode == 0, result.stderr
    records = {r["file"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert set(records) == {"a.bin", "empty.txt"}
    assert records["a.bin"]["status"] == "stored"
    assert records["a.bin"]["sha256"] == _sha256(a)
    assert records["empty.txt"]["status"] in ("stored", "duplicate")
    assert records["empty.txt"]["size"] == 0


def test_status_shows_what_became_of_an_upload(cli: Cli, tmp_path: Path) -> None:
    # Given an uploaded file
    photo = _new_file(tmp_path, "photo.jpg")
    upload_id = json.loads(cli("upload", "--json", "photo.jpg").stdout)["upload_id"]

    # When its status is asked for, for people and for programs
    human = cli("status", upload_id)
    raw = cli("status", "--json", upload_id)

    # Then both say it is stored, with its hash
    assert human.returncode == 0, human.stderr
    assert "Status     stored" in human.stdout
    assert f"SHA-256    {_sha256(photo)}" in human.stdout
    assert "Type       image/jpeg" in human.stdout
    view = json.loads(raw.stdout)
    assert (view["upload_id"], view["status"], view["sha256"]) == (
        upload_id,
        "STORED",
        _sha256(photo),
    )


def test_status_of_an_unknown_upload_fails_clearly(cli: Cli) -> None:
    result = cli("status", "0" * 32)
    assert result.returncode == 1
    assert result.stderr == f"onecopy: no upload {'0' * 32} (HTTP 404)\n"


def test_a_missing_file_is_a_clear_error(cli: Cli, tmp_path: Path) -> None:
    # Given one real file and one that does not exist
    _new_file(tmp_path, "here.bin")

    # When both are uploaded
    result = cli("upload", "here.bin", "not-here.bin")

    # Then the missing one is named in a one-line error, the other is still stored
    assert result.returncode == 1
    assert result.stderr == "onecopy: not-here.bin: no such file\n"
    assert result.stdout.split()[0] == "stored"


def test_an_unreachable_api_gets_a_message_not_a_traceback(cli: Cli, tmp_path: Path) -> None:
    # Given an address where nothing listens
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    _new_file(tmp_path, "a.bin")
    _new_file(tmp_path, "b.bin")
    api_url = f"http://127.0.0.1:{closed_port}"

    # When files are uploaded there (with a token: without one, "not signed in" comes first)
    result = cli("upload", "a.bin", "b.bin", api_url=api_url, env={"ONECOPY_TOKEN": "t"})

    # Then one clear message says so, once
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"onecopy: cannot reach the onecopy API at {api_url}")
    assert result.stderr.count("cannot reach") == 1
    assert "Traceback" not in result.stderr


# --- reading back: info, download, stats, hashes ----------------------------------------------


def _upload_json(cli: Cli, name: str) -> dict[str, Any]:
    result = cli("upload", "--json", name)
    assert result.returncode == 0, result.stderr
    record: dict[str, Any] = json.loads(result.stdout)
    return record


def test_info_and_download_give_back_the_uploaded_bytes(cli: Cli, tmp_path: Path) -> None:
    # Given a stored file
    original = _new_file(tmp_path, "notes.txt", size=200_000)
    upload_id = _upload_json(cli, "notes.txt")["upload_id"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    # When its metadata is asked for, and it is downloaded in another directory
    info = cli("info", upload_id)
    download = cli("download", upload_id, cwd=elsewhere)

    # Then the metadata names it, and the download is the same bytes under the same name
    assert info.returncode == 0, info.stderr
    assert "Status     stored" in info.stdout
    assert "File       notes.txt" in info.stdout
    assert f"SHA-256    {_sha256(original)}" in info.stdout
    assert (download.returncode, download.stderr) == (0, "")
    assert download.stdout.split()[:2] == ["saved", _sha256(original)]
    assert (elsewhere / "notes.txt").read_bytes() == original.read_bytes()
    # And a second download does not overwrite it unasked
    again = cli("download", upload_id, cwd=elsewhere)
    assert again.returncode == 1
    assert again.stderr == "onecopy: notes.txt already exists (--force overwrites it)\n"


def test_a_duplicate_downloads_under_its_own_name(cli: Cli, tmp_path: Path) -> None:
    # Given a stored file, and the same bytes uploaded again under another name
    original = _new_file(tmp_path, "first.bin", size=50_000)
    shutil.copyfile(original, tmp_path / "second.bin")
    _upload_json(cli, "first.bin")
    duplicate = _upload_json(cli, "second.bin")
    assert duplicate["status"] == "duplicate"
    out = tmp_path / "out"
    out.mkdir()

    # When the duplicate is looked up and downloaded
    meta = cli.json("info", duplicate["upload_id"])
    result = cli("download", duplicate["upload_id"], "-o", "out")

    # Then it is the same content, saved under the duplicate's own name
    assert (meta["status"], meta["duplicate"], meta["filename"]) == (
        "DUPLICATE",
        True,
        "second.bin",
    )
    assert result.returncode == 0, result.stderr
    assert [p.name for p in out.iterdir()] == ["second.bin"]
    assert (out / "second.bin").read_bytes() == original.read_bytes()


def test_a_content_is_found_and_downloaded_by_its_sha256(cli: Cli, tmp_path: Path) -> None:
    # Given a content uploaded twice
    original = _new_file(tmp_path, "a.bin")
    shutil.copyfile(original, tmp_path / "b.bin")
    _upload_json(cli, "a.bin")
    _upload_json(cli, "b.bin")
    # When it is looked up and downloaded by its hash
    meta = cli.json("info", _sha256(original))
    download = cli("download", _sha256(original), "-o", "by-hash.bin")
    # Then both uploads are counted, and the bytes come back
    assert (meta["sha256"], meta["size"], meta["upload_count"]) == (_sha256(original), 4096, 2)
    assert download.returncode == 0, download.stderr
    assert (tmp_path / "by-hash.bin").read_bytes() == original.read_bytes()


def test_stats_count_a_mixed_run(cli: Cli, admin: Cli, tmp_path: Path) -> None:
    # Given the totals so far, as the admin sees them
    before = admin.json("stats")
    a = _new_file(tmp_path, "a.bin", size=10_000)
    _new_file(tmp_path, "b.bin", size=20_000)
    shutil.copyfile(a, tmp_path / "a-again.bin")

    # When two new files and one copy of the first are uploaded
    for name in ("a.bin", "b.bin", "a-again.bin"):
        assert _upload_json(cli, name)["status"] in ("stored", "duplicate")
    after = admin.json("stats")
    human = admin("stats")

    # Then the totals moved by exactly that
    moved = {key: after[key] - before[key] for key in after}
    assert moved == {
        "total_files": 2,
        "total_uploads": 3,
        "duplicates_avoided": 1,
        "total_s3_size_saved": 10_000,
        "total_bytes_stored": 30_000,
    }
    assert human.returncode == 0, human.stderr
    stored = after["total_bytes_stored"]
    pattern = rf"Bytes stored +\d+\.\d [KMGT]iB \({stored} bytes\)"
    assert re.fullmatch(pattern, human.stdout.splitlines()[3]), human.stdout


def test_hashes_walks_every_page(cli: Cli, admin: Cli, tmp_path: Path) -> None:
    # Given two more contents
    new = [_new_file(tmp_path, f"h{i}.bin", size=1000 + i) for i in range(2)]
    for path in new:
        _upload_json(cli, path.name)
    total = admin.json("stats")["total_files"]

    # When the admin lists every hash a page of one at a time, as a table and as JSON lines
    table = admin("hashes", "--limit", "1")
    lines = admin("hashes", "--limit", "1", "--json")

    # Then both list every content once, the new ones among them
    assert table.returncode == 0, table.stderr
    rows = table.stdout.splitlines()
    assert rows[0].split() == ["SHA-256", "SIZE", "UPLOADS", "CREATED", "TYPE"]
    assert len(rows) == total + 1
    records = [json.loads(line) for line in lines.stdout.splitlines()]
    hashes = [r["sha256"] for r in records]
    assert len(hashes) == len(set(hashes)) == total
    assert {_sha256(p) for p in new} <= set(hashes)
    assert {row.split()[0] for row in rows[1:]} == set(hashes)


# --- THE acceptance test of uploads in parts: interrupted, then resumed ------------------------


def test_an_interrupted_multipart_upload_resumes_to_stored_and_a_copy_is_a_duplicate(
    cli: Cli, local_stack: Any, tmp_path: Path
) -> None:
    # Given a 64 MiB file (4 parts of 16 MiB), forced into parts and sent one part at a time,
    # with the CLI's test hook sending it a real Ctrl-C (SIGINT) once the first part is in
    big = _new_file(tmp_path, "big.iso", size=64 * 1024**2)
    digest = _sha256(big)
    interrupted = cli(
        "upload",
        "--multipart",
        "--part-parallel",
        "1",
        "big.iso",
        env={"ONECOPY_TEST_INTERRUPT_AFTER_PARTS": "1"},
    )

    # Then it stops with 130, naming the upload and the exact command that continues it
    assert interrupted.returncode == 130, interrupted.stderr
    prefix = "onecopy: upload "
    (hint,) = [line for line in interrupted.stderr.splitlines() if line.startswith(prefix)]
    upload_id, _, command = hint.removeprefix(prefix).partition(" can be resumed with: ")
    assert command == f"onecopy upload --resume {upload_id} big.iso"
    # And the bucket holds some, not all, of its parts; the upload waits
    alice = local_stack.auth("alice")
    held = requests.get(
        f"{local_stack.api_url}/uploads/{upload_id}/parts", headers=alice, timeout=30
    ).json()
    assert 1 <= len(held["parts"]) < 4
    assert all(part["size"] == 16 * 1024**2 for part in held["parts"])
    assert (
        requests.get(
            f"{local_stack.api_url}/uploads/{upload_id}", headers=alice, timeout=30
        ).json()["status"]
        == "PENDING"
    )

    # When the printed command is run
    resumed = cli(*shlex.split(command)[1:])

    # Then the upload is stored under the file's SHA-256
    assert (resumed.returncode, resumed.stderr) == (0, ""), resumed.stderr
    assert resumed.stdout.split()[:2] == ["stored", digest]
    view = requests.get(
        f"{local_stack.api_url}/uploads/{upload_id}", headers=alice, timeout=30
    ).json()
    assert (view["status"], view["sha256"], view["size"]) == ("STORED", digest, 64 * 1024**2)
    s3 = boto3.client("s3", endpoint_url=local_stack.endpoint_url)
    head = s3.head_object(Bucket=local_stack.bucket, Key=f"cas/sha256/{digest}")
    assert head["ContentLength"] == 64 * 1024**2

    # When a copy of the file is uploaded in parts under another name
    shutil.copyfile(big, tmp_path / "copy.iso")
    copy = cli("upload", "--json", "--multipart", "copy.iso")

    # Then it ends a DUPLICATE of the same content
    assert copy.returncode == 0, copy.stderr
    record = json.loads(copy.stdout)
    assert (record["status"], record["sha256"]) == ("duplicate", digest)
    copy_view = requests.get(
        f"{local_stack.api_url}/uploads/{record['upload_id']}", headers=alice, timeout=30
    ).json()
    assert (copy_view["status"], copy_view["sha256"]) == ("DUPLICATE", digest)
    big.unlink()
    (tmp_path / "copy.iso").unlink()


# --- admin reconcile, through the stack's Lambda endpoint -------------------------------------


def test_reconcile_after_a_mixed_run_reports_clean(
    cli: Cli, admin: Cli, local_stack: Any, tmp_path: Path
) -> None:
    # Given a mixed run: a new file, a copy of it under another name, another new file
    first = _new_file(tmp_path, "r1.bin", size=3000)
    shutil.copyfile(first, tmp_path / "r1-copy.bin")
    _new_file(tmp_path, "r2.bin", size=5000)
    statuses = [_upload_json(cli, name)["status"] for name in ("r1.bin", "r1-copy.bin", "r2.bin")]
    assert statuses == ["stored", "duplicate", "stored"]

    # When ReconcileFunction is invoked through the stack's Lambda endpoint, for people (the
    # endpoint from the environment) and as JSON (from the flag)
    human = cli("admin", "reconcile", env={"ONECOPY_LAMBDA_ENDPOINT": local_stack.lambda_url})
    raw = cli("admin", "reconcile", "--json", "--lambda-endpoint", local_stack.lambda_url)

    # Then every counter equals its recount, and the counters are the ones the API reports
    assert (human.returncode, human.stderr) == (0, ""), human.stderr
    assert human.stdout.startswith("clean: every counter matches the tables")
    assert raw.returncode == 0, raw.stderr
    report = json.loads(raw.stdout)
    assert (report["clean"], report["repaired"], report["upload_count_mismatches"]) == (
        True,
        False,
        {},
    )
    assert report["facts"] == report["counters"]
    stats = admin.json("stats")
    assert (report["counters"]["files"], report["counters"]["bytes_stored"]) == (
        stats["total_files"],
        stats["total_bytes_stored"],
    )


def test_admin_health_shows_every_part_after_a_reconciliation_and_alice_is_refused(
    cli: Cli, admin: Cli, local_stack: Any
) -> None:
    # Given a reconciliation that just ran (ReconcileFunction records when, and what it found)
    report = local_stack.invoke("ReconcileFunction", {})

    # When the admin asks for the health view, as JSON and for people, and alice asks too
    raw = admin("admin", "health", "--json")
    human = admin("admin", "health")
    refused = cli("admin", "health")

    # Then the JSON is the API's object, and the exit status says whether anything needs attention
    health = json.loads(raw.stdout)
    assert raw.stderr == ""
    assert raw.returncode == (0 if health["ok"] else 1), raw.stdout
    assert health["ok"] == (health["attention"] == [])
    assert health["reconciliation"]["clean"] == report["clean"]
    # And the view starts with that verdict, then one section per part, times humanized
    lines = human.stdout.splitlines()
    assert human.stderr == ""
    if lines[0] == "ok: nothing needs attention":
        assert human.returncode == 0
    else:
        assert (human.returncode, lines[0]) == (1, f"needs attention ({len(health['attention'])}):")
    sections = [line for line in lines if line and not line.startswith(" ")][1:]
    assert sections == ["Ingest queue", "Dead-letter queue", "Reconciliation", "Collection"]
    reconciliation = lines[lines.index("Reconciliation") + 1 :]
    assert re.fullmatch(
        r"  Last run +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(\d+ s ago\)", reconciliation[0]
    ), reconciliation[0]
    verdict = "clean" if report["clean"] else r"drift \d+, (not )?repaired"
    assert re.fullmatch(rf"  Result +{verdict}", reconciliation[1]), reconciliation[1]
    assert any(re.fullmatch(r"  Due +\d+ \(past the .+ grace period\)", line) for line in lines)

    # And alice is told the view is for admins, with nothing on stdout
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr.startswith("onecopy: admins only"), refused.stderr
    assert refused.stderr.endswith("(HTTP 403)\n")


def test_admin_redrive_moves_dead_letters_back_to_the_worker(
    cli: Cli, local_stack: Any, tmp_path: Path
) -> None:
    # Given an upload whose S3 event sits in the dead-letter queue (as after 5 failed receives)
    path = _new_file(tmp_path, "dead-letter.bin")
    created = requests.post(
        f"{local_stack.api_url}/uploads",
        json={"filename": path.name, "size": path.stat().st_size},
        headers=local_stack.auth("alice"),
        timeout=10,
    ).json()
    sqs = local_stack.client("sqs")
    event = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "eventTime": "2026-01-01T00:00:00.000Z",
                "s3": {
                    "bucket": {"name": local_stack.bucket},
                    "object": {"key": f"staging/{created['upload_id']}"},
                },
            }
        ]
    }
    sqs.send_message(QueueUrl=local_stack.dlq_url, MessageBody=json.dumps(event))
    # The bytes notify the worker as usual: the redriven copy is then a second delivery, which
    # must change nothing.
    local_stack.client("s3").put_object(
        Bucket=local_stack.bucket, Key=f"staging/{created['upload_id']}", Body=path.read_bytes()
    )
    # When the operator redrives the DLQ
    result = cli("admin", "redrive", env={"ONECOPY_EMULATOR_ENDPOINT": local_stack.endpoint_url})
    # Then the message moved, and the upload ends stored exactly once
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("moved 1 message")
    status = cli.json("status", created["upload_id"], "--wait")
    assert status["status"] == "STORED"
    assert "Messages" not in sqs.receive_message(QueueUrl=local_stack.dlq_url, WaitTimeSeconds=0)


# --- signing in: login, whoami, logout, and what each user may see -----------------------------


def test_login_whoami_logout(local_stack: Any, tmp_path: Path) -> None:
    # Given a fresh config directory, nobody signed in
    home = tmp_path / "config"
    cli = Cli(local_stack.api_url, tmp_path, home)
    before = cli("status", "0" * 32)
    assert before.returncode == 3
    assert "run `onecopy login`" in before.stderr

    # When bob signs in the way a script does
    login = cli.login("bob", local_stack.password)

    # Then the tokens are kept for this API, readable by bob alone
    assert (login.returncode, login.stderr) == (0, "")
    assert login.stdout == f"signed in to {local_stack.api_url} as bob\n"
    cache = home / "onecopy" / "tokens.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700
    assert list(json.loads(cache.read_text())["logins"]) == [local_stack.api_url.rstrip("/")]

    # And whoami names him as the API knows him
    who = cli.json("whoami")
    assert (who["username"], who["sub"], who["groups"]) == ("bob", local_stack.sub("bob"), [])
    human = cli("whoami")
    assert human.stdout.splitlines()[:3] == [
        "User       bob",
        f"Sub        {local_stack.sub('bob')}",
        "Groups     none",
    ]
    assert cli("status", "0" * 32).returncode == 1  # signed in: a plain 404 now

    # When he signs out
    logout = cli("logout")

    # Then the tokens are gone, and the next call says to sign in again
    assert logout.returncode == 0, logout.stderr
    assert logout.stdout == f"signed out of {local_stack.api_url} (bob)\n"
    # moto's Cognito has no RevokeToken (AWS's has): the CLI says it could not revoke, and the
    # local copy is gone all the same.
    assert logout.stderr in (
        "",
        f"note: Cognito did not revoke the refresh token: Cognito at "
        f"{local_stack.endpoint_url}/ failed RevokeToken (HTTP 500)\n",
    )
    assert not cache.exists()
    after = cli("status", "0" * 32)
    assert (after.returncode, after.stdout) == (3, "")
    assert "run `onecopy login`" in after.stderr


def test_a_wrong_password_is_refused(local_stack: Any, tmp_path: Path) -> None:
    cli = Cli(local_stack.api_url, tmp_path, tmp_path / "config")
    result = cli.login("alice", "not-" + local_stack.password)
    assert result.returncode == 1
    assert "NotAuthorizedException" in result.stderr
    assert not (tmp_path / "config" / "onecopy" / "tokens.json").exists()


def test_whoami_shows_the_admins_group(admin: Cli) -> None:
    assert admin.json("whoami")["groups"] == ["admins"]


def test_stats_and_hashes_are_admins_only(cli: Cli) -> None:
    for command in ("stats", "hashes"):
        result = cli(command)
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr.startswith("onecopy: admins only"), result.stderr
        assert result.stderr.endswith("(HTTP 403)\n")


def test_a_ci_token_signs_the_cli_in_without_a_login(local_stack: Any, tmp_path: Path) -> None:
    # Given no sign-in on disk, only a token in ONECOPY_TOKEN
    cli = Cli(local_stack.api_url, tmp_path, tmp_path / "config")
    _new_file(tmp_path, "ci.bin")
    env = {"ONECOPY_TOKEN": local_stack.token("alice")}
    # When it uploads, and when the token is not one the API accepts
    uploaded = cli("upload", "ci.bin", env=env)
    refused = cli("upload", "ci.bin", env={"ONECOPY_TOKEN": "not.a.token"})
    # Then the first works, and the second is "not signed in", nothing uploaded
    assert uploaded.returncode == 0, uploaded.stderr
    assert uploaded.stdout.split()[0] == "stored"
    assert (refused.returncode, refused.stdout) == (3, "")
    assert "the API refused the token in $ONECOPY_TOKEN" in refused.stderr


def test_another_users_content_is_new_to_bob_and_alices_uploads_are_unknown_to_him(
    cli: Cli, bob: Cli, tmp_path: Path
) -> None:
    # Given a file alice stored
    _new_file(tmp_path, "alice.bin", size=20_000)
    alices = _upload_json(cli, "alice.bin")
    assert alices["status"] == "stored"

    # When bob uploads the same bytes, and asks about alice's upload
    bobs = _upload_json(bob, "alice.bin")
    status = bob("status", alices["upload_id"])
    info = bob("info", alices["upload_id"])
    download = bob("download", alices["upload_id"], "-o", "stolen.bin")

    # Then he now holds the content ("stored", the bytes were sent), and her upload is unknown
    assert (bobs["status"], bobs["sha256"]) == ("stored", alices["sha256"])
    assert not bobs.get("already_stored")
    assert (status.returncode, status.stderr) == (
        1,
        f"onecopy: no upload {alices['upload_id']} (HTTP 404)\n",
    )
    assert info.returncode == download.returncode == 1
    assert not (tmp_path / "stolen.bin").exists()
    # ... while his own upload of it is his to read
    assert bob.json("info", bobs["upload_id"])["filename"] == "alice.bin"


def test_an_expiring_or_refused_token_is_renewed_with_the_refresh_token(
    local_stack: Any, tmp_path: Path
) -> None:
    # Given alice signed in, her ID token marked as expiring within the minute
    home = tmp_path / "config"
    cli = Cli(local_stack.api_url, tmp_path, home)
    assert cli.login("alice", local_stack.password).returncode == 0
    cache = home / "onecopy" / "tokens.json"

    def edit(**changes: Any) -> dict[str, Any]:
        data = json.loads(cache.read_text())
        (entry,) = data["logins"].values()
        entry.update(changes)
        cache.write_text(json.dumps(data))
        return dict(entry)

    first = edit(expires_at=0)

    # When a command runs, then again with an ID token the API refuses (a forged one)
    expiring = cli("status", "0" * 32)
    renewed = edit(id_token=first["id_token"][:-8] + "AAAAAAAA")
    refused = cli("status", "0" * 32)

    # Then both reached the API (a plain 404) after a refresh at the emulator's Cognito
    assert expiring.stderr == refused.stderr == f"onecopy: no upload {'0' * 32} (HTTP 404)\n"
    (final,) = json.loads(cache.read_text())["logins"].values()
    assert final["id_token"] not in (first["id_token"], renewed["id_token"])
    assert final["refresh_token"] == first["refresh_token"]
    assert final["expires_at"] > first["expires_at"]


# --- listing and removing: ls, rm, admin erase-owner -------------------------------------------


def _prefix() -> str:
    # The stack lives for the session: a prefix of its own keeps a test's listing to its files.
    return f"t{os.urandom(4).hex()}-"


def _rows(result: subprocess.CompletedProcess[str]) -> list[list[str]]:
    """`onecopy ls` rows under the header, as [id, status, ..., filename]."""
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["UPLOAD", "STATUS", "SIZE", "CREATED", "FILE"]
    return [row.split() for row in rows]


def _pending_upload(local_stack: Any, user: str, filename: str) -> str:
    """An upload created through the API whose bytes never come: it stays PENDING."""
    created = requests.post(
        f"{local_stack.api_url}/uploads",
        json={"filename": filename, "size": 10},
        headers=local_stack.auth(user),
        timeout=30,
    )
    assert created.status_code == 201, created.text
    upload_id: str = created.json()["upload_id"]
    return upload_id


def test_ls_lists_my_uploads_newest_first_and_never_another_users(
    cli: Cli, bob: Cli, tmp_path: Path
) -> None:
    # Given three files alice uploaded, one after the other, and one bob uploaded, same prefix
    prefix = _prefix()
    names = [f"{prefix}{i}.bin" for i in range(3)]
    mine = [_upload_json(cli, _new_file(tmp_path, name).name)["upload_id"] for name in names]
    _new_file(tmp_path, f"{prefix}bob.bin")
    bobs = _upload_json(bob, f"{prefix}bob.bin")["upload_id"]

    # When alice lists her uploads with that prefix, for people and for programs, and all of them
    table = _rows(cli("ls", "--prefix", prefix))
    records = cli.json("ls", "--prefix", prefix)
    everything = _rows(cli("ls"))

    # Then she sees her three, newest first, stored, and never bob's
    assert [(row[0], row[1], row[-1]) for row in table] == [
        (upload_id, "stored", name) for upload_id, name in zip(mine[::-1], names[::-1], strict=True)
    ]
    assert [r["upload_id"] for r in records] == mine[::-1]
    assert {(r["status"], r["size"]) for r in records} == {("STORED", 4096)}
    assert records[0]["sha256"] == _sha256(tmp_path / names[2])
    listed = [row[0] for row in everything]
    assert set(mine) <= set(listed)
    assert bobs not in listed
    assert listed.index(mine[2]) < listed.index(mine[1]) < listed.index(mine[0])
    # And bob sees his alone
    assert [r["upload_id"] for r in bob.json("ls", "--prefix", prefix)] == [bobs]

    # When she asks for at most two, and for the pending ones only
    limited = _rows(cli("ls", "--prefix", prefix, "--limit", "2", "--status", "stored"))
    pending = cli.json("ls", "--prefix", prefix, "--status", "pending")

    # Then she gets the two newest, and none pending
    assert [row[0] for row in limited] == mine[:0:-1]
    assert pending == []


def test_rm_deletes_an_upload_and_a_second_rm_fails(
    cli: Cli, bob: Cli, local_stack: Any, tmp_path: Path
) -> None:
    # Given two uploads of alice's and one of bob's
    prefix = _prefix()
    keep, gone = (
        _upload_json(cli, _new_file(tmp_path, f"{prefix}{name}").name)["upload_id"]
        for name in ("keep.bin", "gone.bin")
    )
    _new_file(tmp_path, f"{prefix}bob.bin")
    bobs = _upload_json(bob, f"{prefix}bob.bin")["upload_id"]

    # When alice removes one of hers
    removed = cli("rm", gone)

    # Then it is deleted: ls no longer shows it, status no longer knows it
    assert (removed.returncode, removed.stdout, removed.stderr) == (0, f"deleted  {gone}\n", "")
    assert [row[0] for row in _rows(cli("ls", "--prefix", prefix))] == [keep]
    assert cli("status", gone).returncode == 1

    # When she removes it again, along with bob's upload and her other one
    again = cli("rm", gone, bobs, keep)

    # Then the two she cannot remove fail on stderr, hers goes, and the exit status is 1
    assert again.returncode == 1
    assert again.stdout == f"deleted  {keep}\n"
    failures = again.stderr.splitlines()
    assert [line.split(":")[1].strip() for line in failures] == [gone, bobs]
    assert all(line.endswith("(HTTP 404)") for line in failures), failures
    # And bob's upload is untouched
    assert [r["upload_id"] for r in bob.json("ls", "--prefix", prefix)] == [bobs]


def test_rm_of_a_pending_upload_aborts_it_and_a_second_rm_deletes_it(
    cli: Cli, local_stack: Any
) -> None:
    # Given an upload whose bytes never came
    prefix = _prefix()
    upload_id = _pending_upload(local_stack, "alice", f"{prefix}never.bin")
    assert [r["status"] for r in cli.json("ls", "--prefix", prefix)] == ["PENDING"]

    # When alice removes it
    first = cli("rm", upload_id)

    # Then it is aborted: still listed, rejected, reason "aborted"
    assert (first.returncode, first.stdout, first.stderr) == (0, f"aborted  {upload_id}\n", "")
    (view,) = cli.json("ls", "--prefix", prefix, "--status", "rejected")
    assert (view["upload_id"], view["status"], view["reason"]) == (upload_id, "REJECTED", "aborted")

    # When she removes it again, then once more
    second = cli("rm", upload_id)
    third = cli("rm", upload_id)

    # Then it is deleted, and then unknown
    assert (second.returncode, second.stdout) == (0, f"deleted  {upload_id}\n")
    assert cli.json("ls", "--prefix", prefix) == []
    assert (third.returncode, third.stdout) == (1, "")
    assert third.stderr.startswith(f"onecopy: {upload_id}: ")
    assert third.stderr.endswith("(HTTP 404)\n")


def test_admin_erase_owner_removes_every_upload_of_one_user(
    cli: Cli, admin: Cli, local_stack: Any, tmp_path: Path
) -> None:
    # Given a user of their own (erasing a seeded one would empty other tests' users), with
    # three stored uploads and a pending one, and an upload of alice's
    user = f"carol-{os.urandom(3).hex()}"
    cognito = local_stack.client("cognito-idp")
    cognito.admin_create_user(
        UserPoolId=local_stack.user_pool_id, Username=user, MessageAction="SUPPRESS"
    )
    cognito.admin_set_user_password(
        UserPoolId=local_stack.user_pool_id,
        Username=user,
        Password=local_stack.password,
        Permanent=True,
    )
    home = tmp_path / f"config-{user}"
    carol = Cli(local_stack.api_url, tmp_path, home)
    assert carol.login(user, local_stack.password).returncode == 0
    sub = carol.json("whoami")["sub"]
    for i in range(3):
        assert _upload_json(carol, _new_file(tmp_path, f"carol-{i}.bin").name)["status"] in (
            "stored",
            "duplicate",
        )
    _pending_upload(local_stack, user, "carol-pending.bin")
    assert len(carol.json("ls")) == 4
    _new_file(tmp_path, "alice-keeps.bin")
    alices = _upload_json(cli, "alice-keeps.bin")["upload_id"]

    # When alice tries to erase carol, and then the admin does
    refused = cli("admin", "erase-owner", sub)
    erased = admin("admin", "erase-owner", sub)

    # Then alice is refused, and the admin's run ends with every upload of carol's gone
    assert refused.returncode == 1
    assert refused.stderr.startswith("onecopy: admins only"), refused.stderr
    assert erased.returncode == 0, erased.stderr
    assert erased.stdout.startswith(f"erased {sub}: "), erased.stdout
    progress = erased.stderr.splitlines()
    assert progress, "no progress line"
    assert all(line.startswith(f"erasing {sub}: ") for line in progress), progress
    totals = re.fullmatch(rf"erasing {sub}: (\d+) deleted, (\d+) aborted", progress[-1])
    assert totals, progress[-1]
    assert int(totals[1]) + int(totals[2]) >= 4
    assert carol.json("ls") == []
    # And nobody else's uploads were touched
    assert alices in [r["upload_id"] for r in cli.json("ls", "--limit", "50")]

    # When the admin runs it again
    again = admin.json("admin", "erase-owner", sub)

    # Then there is nothing left to do
    assert again == {"owner": sub, "deleted": 0, "aborted": 0, "waiting": 0, "done": True}
