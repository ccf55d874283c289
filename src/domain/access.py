"""Who may see and do what: the authorization rules, over plain values.

The caller's identity comes from a JWT that API Gateway's authorizer already verified; these rules
only decide what that identity may see. Everything an owner can reach is theirs alone: an upload
or a content of someone else answers exactly as one that never existed, so no answer confirms
that another owner's upload or file exists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from domain.errors import DomainError, NotFound
from domain.model import Upload

ADMINS_GROUP = "admins"

# API Gateway's JWT authorizer flattens an array claim into one string, "[admins other]"; a
# Cognito group name holds no whitespace, so splitting on it recovers the list (commas and quotes
# are dropped too, should an issuer send the list as JSON text).
_FLATTENED = re.compile(r"^\[(.*)\]$", re.DOTALL)


class Unauthenticated(DomainError):
    """No verified identity reached the function (a route the gateway should have guarded)."""


class Forbidden(DomainError):
    """A signed-in caller asked for something their groups do not allow."""


class TooManyPending(DomainError):
    """The owner already has as many uploads waiting for bytes as the service allows."""

    def __init__(self, limit: int, retry_after_seconds: int) -> None:
        super().__init__(
            f"you already have {limit} uploads waiting for their bytes; finish or abort some, "
            f"or retry after {retry_after_seconds} seconds"
        )
        self.retry_after_seconds = retry_after_seconds


@dataclass(frozen=True, slots=True)
class Caller:
    sub: str
    groups: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return ADMINS_GROUP in self.groups


def parse_groups(value: str | Iterable[str] | None) -> frozenset[str]:
    """The `cognito:groups` claim as a set: a JSON list, or API Gateway's "[a b]" flattening."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        flattened = _FLATTENED.fullmatch(value.strip())
        text = flattened[1] if flattened else value
        return frozenset(g for g in re.split(r'[\s,"]+', text) if g)
    return frozenset(g for g in value if g)


def caller(sub: str | None, groups: str | Iterable[str] | None) -> Caller:
    """The caller the verified claims name; no subject means no identity, never a default one."""
    if not sub:
        raise Unauthenticated("Unauthorized")
    return Caller(sub=sub, groups=parse_groups(groups))


def require_admin(who: Caller) -> Caller:
    if not who.is_admin:
        raise Forbidden("admins only")
    return who


def owns(upload: Upload, owner: str) -> bool:
    return upload.owner == owner


def owned(upload: Upload | None, owner: str, upload_id: str) -> Upload:
    """The caller's own upload; anyone else's answers as an unknown id (not 403: no existence)."""
    if upload is None or not owns(upload, owner):
        raise NotFound(f"no upload {upload_id}")
    return upload


def check_pending_cap(pending: int, limit: int, retry_after_seconds: int) -> None:
    """Refuse a new upload when the owner's PENDING uploads already reach the cap."""
    if pending >= limit:
        raise TooManyPending(limit, retry_after_seconds)
