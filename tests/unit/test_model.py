"""The domain's rules, as pure functions: keys, identifiers, validation and the one transition."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import InvalidInput
from domain.model import (
    CONTENT_PREFIX,
    DEFAULT_CONTENT_TYPE,
    MAX_FILENAME_LENGTH,
    MAX_SINGLE_PUT_SIZE,
    PENDING_RETENTION,
    STAGING_PREFIX,
    Holding,
    ObjectFacts,
    RejectReason,
    Upload,
    UploadStatus,
    check_bytes,
    complete,
    content_key,
    held_duplicate,
    is_sha256,
    is_upload_id,
    new_content,
    new_holding,
    new_upload_id,
    pending_expiry,
    sha256_b64_to_hex,
    sha256_hex_to_b64,
    staging_key,
    stats_shard,
    upload_id_from_staging_key,
    validate_content_type,
    validate_filename,
    validate_size,
)

pytestmark = pytest.mark.unit

AT = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
LATER = datetime(2026, 1, 2, 3, 5, 0, tzinfo=UTC)
DATA = b"hello from onecopy\n"
SHA = hashlib.sha256(DATA).hexdigest()
OTHER_SHA = hashlib.sha256(b"something else").hexdigest()
UPLOAD_ID = "4f9d2c8e1b7a4e6f9c3d5a7b8e0f1a2b"


def pending(*, size: int = len(DATA), declared: str | None = None) -> Upload:
    return Upload(
        upload_id=UPLOAD_ID,
        owner="alice",
        filename="hello.txt",
        size=size,
        content_type="text/plain",
        created_at=AT,
        declared_sha256=declared,
    )


# --- identifiers and keys ----------------------------------------------------------------------


def test_new_upload_ids_are_valid_and_distinct() -> None:
    ids = {new_upload_id() for _ in range(1000)}

    assert len(ids) == 1000
    assert all(is_upload_id(i) for i in ids)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (UPLOAD_ID, True),
        (UPLOAD_ID.upper(), False),
        (UPLOAD_ID[:-1], False),
        (UPLOAD_ID + "0", False),
        (UPLOAD_ID + "\n", False),
        ("4f9d2c8e-1b7a-4e6f-9c3d-5a7b8e0f1a2b", False),
        ("g" * 32, False),
        ("", False),
    ],
)
def test_upload_id_is_32_lowercase_hex(value: str, valid: bool) -> None:
    assert is_upload_id(value) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (SHA, True),
        (SHA.upper(), False),
        (SHA[:-1], False),
        (SHA + "0", False),
        (SHA + "\n", False),
        (" " + SHA, False),
        ("", False),
    ],
)
def test_sha256_is_64_lowercase_hex(value: str, valid: bool) -> None:
    assert is_sha256(value) is valid


def test_staging_key_round_trips_to_its_upload_id() -> None:
    key = staging_key(UPLOAD_ID)

    assert key == f"{STAGING_PREFIX}{UPLOAD_ID}" == f"staging/{UPLOAD_ID}"
    assert upload_id_from_staging_key(key) == UPLOAD_ID


@pytest.mark.parametrize(
    "key",
    [
        f"cas/sha256/{SHA}",
        UPLOAD_ID,
        f"/staging/{UPLOAD_ID}",
        f"Staging/{UPLOAD_ID}",
        f"staging/{UPLOAD_ID}/",
        f"staging/{UPLOAD_ID}/x",
        f"staging/x/{UPLOAD_ID}",
        f"staging/{UPLOAD_ID.upper()}",
        f"staging/{UPLOAD_ID} ",
        f"staging/{UPLOAD_ID}\n",
        "staging/",
        "staging/my file+1%.txt",
        "staging/café",
        "",
    ],
)
def test_keys_the_api_never_hands_out_name_no_upload(key: str) -> None:
    assert upload_id_from_staging_key(key) is None


def test_content_key_is_derived_from_the_hash_alone() -> None:
    assert content_key(SHA) == f"{CONTENT_PREFIX}{SHA}" == f"cas/sha256/{SHA}"


@pytest.mark.parametrize("bad", [SHA.upper(), SHA[:10], "../" + SHA[3:], "", f"{SHA}/x"])
def test_content_key_refuses_anything_but_a_sha256(bad: str) -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        content_key(bad)


def test_checksum_converts_between_hex_and_s3_base64() -> None:
    b64 = sha256_hex_to_b64(SHA)

    assert b64 == base64.b64encode(hashlib.sha256(DATA).digest()).decode()
    assert sha256_b64_to_hex(b64) == SHA


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not base64!",
        base64.b64encode(b"\x00" * 31).decode(),  # too short for a SHA-256
        base64.b64encode(b"\x00" * 33).decode(),
        sha256_hex_to_b64(SHA).rstrip("="),  # missing padding
        sha256_hex_to_b64(SHA) + "-3",  # a multipart COMPOSITE checksum carries a part count
        " " + sha256_hex_to_b64(SHA),
    ],
)
def test_a_checksum_that_is_not_a_plain_sha256_decodes_to_none(value: str) -> None:
    assert sha256_b64_to_hex(value) is None


def test_stats_shard_is_stable_and_in_range() -> None:
    ids = [new_upload_id() for _ in range(2000)]

    shards = [stats_shard(i, 16) for i in ids]

    assert shards == [stats_shard(i, 16) for i in ids]
    assert set(shards) == set(range(16))  # 2000 random ids reach every shard
    assert all(stats_shard(i, 1) == 0 for i in ids[:50])


def test_stats_shard_does_not_depend_on_the_process() -> None:
    # str hash() is salted per process; a retried transition in another Lambda instance must
    # bump the same counter item, so the shard comes from a fixed checksum.
    assert stats_shard(UPLOAD_ID, 16) == 5
    assert stats_shard("0" * 32, 100) == 56


# --- input rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["a", "hello.txt", "my file (1).PDF", "café.txt", "日本語.txt", "👨‍👩‍👧.png", "x" * 255, " x "],
)
def test_ordinary_filenames_are_kept_as_given(name: str) -> None:
    assert validate_filename(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("\t", "empty"),
        ("x" * (MAX_FILENAME_LENGTH + 1), "at most 255"),
        ("a\x00b", "control"),
        ("a\nb", "control"),
        ("a\rb", "control"),
        ("a\x7fb", "control"),
        ("a\x85b", "control"),  # C1 control
        ("a\ud800b", "control"),  # lone surrogate: not encodable as UTF-8
    ],
)
def test_unusable_filenames_are_refused(name: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        validate_filename(name)


@pytest.mark.parametrize(
    "value",
    [
        "application/pdf",
        "text/plain",
        "text/plain; charset=utf-8",
        "text/plain;charset=UTF-8",
        'multipart/form-data; boundary="a b:c"',
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "image/svg+xml",
        "text/plain;\tcharset=utf-8",
    ],
)
def test_mime_types_are_accepted(value: str) -> None:
    assert validate_content_type(value) == value


def test_a_missing_content_type_defaults_to_octet_stream() -> None:
    assert validate_content_type(None) == DEFAULT_CONTENT_TYPE == "application/octet-stream"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "text",
        "text/",
        "/plain",
        "text/plain/x",
        "text /plain",
        "text/plain;",
        "text/plain; charset",
        "text/plain\n",
        "x" * 128 + "/plain",
        "text/plain; a=" + "b" * 250,
        # These would put a line break into the PUT's signed Content-Type header and into
        # downloads' ResponseContentType: a header split in two.
        'text/plain; a="x\r\nSet-Cookie: y"',
        "text/plain\r\n; a=b",
        "text/plain;\na=b",
        'text/plain; a="\x00"',
        'text/plain; a="\x7f"',
        'text/plain; a="é"',
    ],
)
def test_malformed_content_types_are_refused(value: str) -> None:
    with pytest.raises(InvalidInput, match="MIME type"):
        validate_content_type(value)


@pytest.mark.parametrize("size", [0, 1, MAX_SINGLE_PUT_SIZE])
def test_sizes_up_to_the_single_put_limit_are_accepted(size: int) -> None:
    assert validate_size(size) == size


def test_the_size_limit_is_5_gib() -> None:
    assert MAX_SINGLE_PUT_SIZE == 5 * 1024**3


@pytest.mark.parametrize(
    ("size", "message"), [(-1, "negative"), (MAX_SINGLE_PUT_SIZE + 1, "5 GiB")]
)
def test_sizes_outside_the_limit_are_refused(size: int, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        validate_size(size)


# --- decisions ---------------------------------------------------------------------------------


def test_bytes_matching_the_declaration_pass() -> None:
    facts = ObjectFacts(size=len(DATA), sha256=SHA)

    assert check_bytes(pending(declared=SHA), facts) is None
    assert check_bytes(pending(declared=None), facts) is None


def test_bytes_of_another_size_are_a_size_mismatch() -> None:
    # Size wins over the hash: with a different size the hash cannot match either.
    facts = ObjectFacts(size=len(DATA) + 1, sha256=OTHER_SHA)

    assert check_bytes(pending(declared=SHA), facts) is RejectReason.SIZE_MISMATCH
    assert check_bytes(pending(declared=None), facts) is RejectReason.SIZE_MISMATCH


def test_bytes_hashing_to_another_value_are_a_checksum_mismatch() -> None:
    facts = ObjectFacts(size=len(DATA), sha256=OTHER_SHA)

    assert check_bytes(pending(declared=SHA), facts) is RejectReason.CHECKSUM_MISMATCH


def test_undeclared_hash_accepts_any_bytes_of_the_right_size() -> None:
    assert check_bytes(pending(), ObjectFacts(size=len(DATA), sha256=OTHER_SHA)) is None


@pytest.mark.parametrize("status", [UploadStatus.STORED, UploadStatus.DUPLICATE])
def test_complete_records_the_content_and_time(status: UploadStatus) -> None:
    upload = pending()

    done = complete(upload, status, LATER, sha256=SHA)

    assert (done.status, done.sha256, done.completed_at, done.reason) == (status, SHA, LATER, None)
    assert done.duplicate is (status is UploadStatus.DUPLICATE)
    assert upload.status is UploadStatus.PENDING  # entities are values
    assert (done.upload_id, done.owner, done.size, done.created_at) == (
        upload.upload_id,
        upload.owner,
        upload.size,
        upload.created_at,
    )


def test_complete_rejects_with_a_reason() -> None:
    done = complete(
        pending(), UploadStatus.REJECTED, LATER, sha256=OTHER_SHA, reason=RejectReason.SIZE_MISMATCH
    )

    assert (done.status, done.reason, done.sha256) == (
        UploadStatus.REJECTED,
        RejectReason.SIZE_MISMATCH,
        OTHER_SHA,
    )


@pytest.mark.parametrize(
    "status", [UploadStatus.STORED, UploadStatus.DUPLICATE, UploadStatus.REJECTED]
)
def test_an_upload_leaves_pending_only_once(status: UploadStatus) -> None:
    reason = RejectReason.CHECKSUM_MISMATCH if status is UploadStatus.REJECTED else None
    done = complete(pending(), status, LATER, sha256=SHA, reason=reason)

    for again in (UploadStatus.STORED, UploadStatus.DUPLICATE):
        with pytest.raises(ValueError, match="already"):
            complete(done, again, LATER, sha256=SHA)


def test_complete_needs_a_terminal_state() -> None:
    with pytest.raises(ValueError, match="terminal"):
        complete(pending(), UploadStatus.PENDING, LATER)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (UploadStatus.REJECTED, None),
        (UploadStatus.STORED, RejectReason.SIZE_MISMATCH),
        (UploadStatus.DUPLICATE, RejectReason.CHECKSUM_MISMATCH),
    ],
)
def test_a_reason_is_given_exactly_when_rejected(
    status: UploadStatus, reason: RejectReason | None
) -> None:
    with pytest.raises(ValueError, match="reason"):
        complete(pending(), status, LATER, sha256=SHA, reason=reason)


@pytest.mark.parametrize("status", [UploadStatus.STORED, UploadStatus.DUPLICATE])
def test_a_held_upload_needs_the_hash_of_its_content(status: UploadStatus) -> None:
    # Without it the upload would count bytes no content record accounts for, and land in the
    # owner index under "<owner>#None".
    with pytest.raises(ValueError, match="SHA-256"):
        complete(pending(), status, LATER)


@pytest.mark.parametrize("bad", [SHA.upper(), "abc", ""])
def test_complete_refuses_a_malformed_hash(bad: str) -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        complete(pending(), UploadStatus.STORED, LATER, sha256=bad)


def test_a_rejection_may_not_know_the_hash() -> None:
    done = complete(pending(), UploadStatus.REJECTED, LATER, reason=RejectReason.SIZE_MISMATCH)

    assert done.sha256 is None


def test_a_new_content_is_first_uploaded_by_the_upload_that_stores_it() -> None:
    content = new_content(pending(), SHA, LATER)

    assert content.sha256 == SHA
    assert content.key == f"cas/sha256/{SHA}"
    assert (content.size, content.content_type, content.upload_count) == (
        len(DATA),
        "text/plain",
        1,
    )
    assert (content.created_at, content.last_uploaded_at) == (LATER, LATER)
    assert content.first_upload_id == UPLOAD_ID


def held(size: int = len(DATA), owner: str = "alice") -> Holding:
    return Holding(
        owner=owner,
        sha256=SHA,
        upload_id="2" * 32,
        size=size,
        filename="first.txt",
        content_type="text/plain",
        created_at=AT,
        upload_count=1,
    )


def test_a_stored_upload_gives_its_owner_a_holding() -> None:
    stored = complete(pending(declared=SHA), UploadStatus.STORED, LATER, sha256=SHA)

    holding = new_holding(stored)

    assert holding == Holding(
        owner="alice",
        sha256=SHA,
        upload_id=UPLOAD_ID,
        size=len(DATA),
        filename="hello.txt",
        content_type="text/plain",
        created_at=LATER,
        upload_count=1,
    )


@pytest.mark.parametrize("status", [UploadStatus.DUPLICATE, UploadStatus.REJECTED])
def test_only_a_stored_upload_creates_a_holding(status: UploadStatus) -> None:
    reason = RejectReason.SIZE_MISMATCH if status is UploadStatus.REJECTED else None
    done = complete(pending(), status, LATER, sha256=SHA, reason=reason)

    with pytest.raises(ValueError, match="did not store"):
        new_holding(done)


def test_a_held_duplicate_is_born_duplicate_of_the_held_content() -> None:
    request = replace(pending(declared=SHA), upload_id="1" * 32, filename="again.txt")

    duplicate = held_duplicate(request, held(), LATER)

    assert (duplicate.status, duplicate.sha256, duplicate.completed_at) == (
        UploadStatus.DUPLICATE,
        SHA,
        LATER,
    )
    assert (duplicate.upload_id, duplicate.filename) == ("1" * 32, "again.txt")


@pytest.mark.parametrize("size", [0, len(DATA) - 1, len(DATA) + 1, MAX_SINGLE_PUT_SIZE])
def test_a_held_duplicate_of_another_size_is_refused(size: int) -> None:
    # Otherwise a client could declare 5 GiB for a hash it holds and inflate bytes_saved.
    with pytest.raises(InvalidInput, match="size"):
        held_duplicate(pending(size=size, declared=SHA), held(), LATER)


def test_a_held_duplicate_needs_the_owners_own_holding_of_the_same_content() -> None:
    with pytest.raises(ValueError, match="another owner"):
        held_duplicate(pending(declared=SHA), held(owner="bob"), LATER)
    with pytest.raises(ValueError, match="another content"):
        held_duplicate(pending(declared=OTHER_SHA), held(), LATER)


def test_completion_forgets_the_url_expiry() -> None:
    waiting = replace(pending(), url_expires_at=LATER)

    assert complete(waiting, UploadStatus.STORED, LATER, sha256=SHA).url_expires_at is None


def test_a_pending_upload_expires_days_after_its_url() -> None:
    expiry = pending_expiry(AT, 900)

    assert expiry == int((AT + timedelta(seconds=900) + PENDING_RETENTION).timestamp())
    # Longer than SQS keeps the event for its bytes (4 days): no late event finds it gone early.
    assert timedelta(days=4) < PENDING_RETENTION
