"""The authorization rules: who the caller is, what they may see, when they must wait."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.access import (
    Caller,
    Forbidden,
    TooManyPending,
    Unauthenticated,
    caller,
    check_pending_cap,
    owned,
    owns,
    parse_groups,
    require_admin,
)
from domain.errors import NotFound
from domain.model import Upload

pytestmark = pytest.mark.unit

UPLOAD_ID = "0" * 32


def _upload(owner: str) -> Upload:
    return Upload(
        upload_id=UPLOAD_ID,
        owner=owner,
        filename="a.txt",
        size=1,
        content_type="text/plain",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


# --- identity ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claim", "groups"),
    [
        (None, set()),
        ("", set()),
        ("[]", set()),
        ("admins", {"admins"}),
        ("[admins]", {"admins"}),  # API Gateway's flattening of a one-element array
        ("[admins editors]", {"admins", "editors"}),
        ("[editors admins]", {"admins", "editors"}),
        ('["admins","editors"]', {"admins", "editors"}),  # JSON text
        (["admins", "editors"], {"admins", "editors"}),  # a real list
        ([], set()),
        (("x",), {"x"}),
    ],
)
def test_groups_are_read_from_every_form_the_claim_takes(claim: object, groups: set[str]) -> None:
    assert parse_groups(claim) == groups  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("claim", "admin"),
    [
        ("[admins]", True),
        (["admins"], True),
        ("[other admins]", True),
        ("[administrators]", False),
        ("[admins-lite]", False),
        ("[Admins]", False),  # Cognito group names are case-sensitive
        ("[notadmins]", False),
        (None, False),
    ],
)
def test_only_the_admins_group_makes_an_admin(claim: object, admin: bool) -> None:
    assert caller("sub-1", claim).is_admin is admin  # type: ignore[arg-type]


@pytest.mark.parametrize("sub", [None, ""])
def test_no_subject_is_no_identity_never_a_default_owner(sub: str | None) -> None:
    with pytest.raises(Unauthenticated):
        caller(sub, "[admins]")


def test_the_subject_is_the_owner() -> None:
    assert caller("sub-1", None) == Caller("sub-1", frozenset())


def test_admin_routes_refuse_everyone_else() -> None:
    admin = Caller("a", frozenset({"admins"}))
    assert require_admin(admin) is admin
    with pytest.raises(Forbidden, match="admins only"):
        require_admin(Caller("b", frozenset({"editors"})))


# --- what an owner may see -----------------------------------------------------------------------


def test_an_owner_sees_their_own_upload() -> None:
    upload = _upload("alice")
    assert owns(upload, "alice")
    assert owned(upload, "alice", UPLOAD_ID) is upload


def test_another_owner_s_upload_answers_exactly_as_an_unknown_one() -> None:
    with pytest.raises(NotFound) as theirs:
        owned(_upload("alice"), "bob", UPLOAD_ID)
    with pytest.raises(NotFound) as unknown:
        owned(None, "bob", UPLOAD_ID)
    assert not owns(_upload("alice"), "bob")
    assert str(theirs.value) == str(unknown.value) == f"no upload {UPLOAD_ID}"


def test_being_an_admin_shows_no_one_else_s_uploads() -> None:
    # Admins read the global counters and the hash list; uploads stay their owners' alone.
    with pytest.raises(NotFound):
        owned(_upload("alice"), Caller("root", frozenset({"admins"})).sub, UPLOAD_ID)


# --- the pending cap -----------------------------------------------------------------------------


@pytest.mark.parametrize("pending", [0, 1, 9])
def test_below_the_cap_an_upload_may_start(pending: int) -> None:
    check_pending_cap(pending, 10, retry_after_seconds=900)


@pytest.mark.parametrize("pending", [10, 11, 1000])
def test_at_or_above_the_cap_the_owner_must_wait(pending: int) -> None:
    with pytest.raises(TooManyPending) as refused:
        check_pending_cap(pending, 10, retry_after_seconds=900)
    assert refused.value.retry_after_seconds == 900
    assert "10" in str(refused.value)
