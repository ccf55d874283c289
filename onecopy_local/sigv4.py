"""Checks S3 makes on a presigned (SigV4 query-string) request, which moto skips.

Only what S3 itself verifies: the credential, the expiry and the signature over the method, path,
query and signed headers. Because the signature covers the signed headers' values, a request
that drops one, or sends a different Content-Length, If-None-Match or x-amz-checksum-sha256 than
was signed, fails here exactly as it fails on S3.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_EXPIRES = 604_800  # S3 accepts presigned URLs that live at most seven days
# S3 tolerates this much clock skew before a URL dated in the future is "not valid yet".
_SKEW = timedelta(minutes=15)
_REQUIRED = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Refusal:
    """An S3 error response: HTTP status, S3 error code and message."""

    status: int
    code: str
    message: str


def query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """Decode a query string as SigV4 reads it: percent-decoding only ('+' stays '+')."""
    pairs = []
    for part in raw_query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((unquote(name), unquote(value)))
    return pairs


def is_presigned(query: Sequence[tuple[str, str]]) -> bool:
    return any(name == "X-Amz-Signature" for name, _ in query)


def credential_service(query: Sequence[tuple[str, str]]) -> str | None:
    """The service a presigned URL was signed for ("s3"), from its credential scope."""
    credential = dict(query).get("X-Amz-Credential", "")
    parts = credential.split("/")
    return parts[3] if len(parts) == 5 else None


def verify_presigned(
    *,
    method: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, Sequence[str]],
    secrets: Mapping[str, str],
    region: str,
    now: datetime | None = None,
) -> Refusal | None:
    """None when S3 would accept this presigned request, else the error S3 answers with.

    ``query`` holds the decoded query parameters in order; ``headers`` maps lowercased names to
    every value received for that name.
    """
    params = dict(query)
    missing = [name for name in _REQUIRED if name not in params]
    if missing:
        return Refusal(
            400,
            "AuthorizationQueryParametersError",
            "Query-string authentication version 4 requires the X-Amz-Algorithm, "
            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and "
            "X-Amz-Expires parameters.",
        )
    if params["X-Amz-Algorithm"] != ALGORITHM:
        return Refusal(
            400,
            "AuthorizationQueryParametersError",
            'X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"',
        )
    scope = params["X-Amz-Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        return Refusal(
            400, "AuthorizationQueryParametersError", "Error parsing the X-Amz-Credential parameter"
        )
    access_key, scope_date, scope_region, service, _ = scope
    if scope_region != region:
        return Refusal(
            400,
            "AuthorizationQueryParametersError",
            f"Error parsing the X-Amz-Credential parameter; the region '{scope_region}' is "
            f"wrong; expecting '{region}'",
        )
    secret = secrets.get(access_key)
    if secret is None:
        return Refusal(
            403,
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
        )
    try:
        signed_at = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        expires = int(params["X-Amz-Expires"])
    except ValueError:
        return Refusal(
            400,
            "AuthorizationQueryParametersError",
            "X-Amz-Date must be in the ISO8601 Long Format and X-Amz-Expires an integer",
        )
    if not 0 <= expires <= MAX_EXPIRES:
        return Refusal(
            400,
            "AuthorizationQueryParametersError",
            f"X-Amz-Expires must be less than a week (in seconds) that is {MAX_EXPIRES}",
        )
    now = now or datetime.now(UTC)
    if now > signed_at + timedelta(seconds=expires):
        return Refusal(403, "AccessDenied", "Request has expired")
    if signed_at > now + _SKEW:
        return Refusal(403, "AccessDenied", "Request is not valid yet")

    signed_names = params["X-Amz-SignedHeaders"].split(";")
    canonical_headers = []
    for name in signed_names:
        values = headers.get(name)
        if not values:
            return _mismatch()
        value = ",".join(_SPACES.sub(" ", v.strip()) for v in values)
        canonical_headers.append(f"{name}:{value}\n")
    canonical_query = "&".join(
        f"{_encode(k)}={_encode(v)}"
        for k, v in sorted((k, v) for k, v in query if k != "X-Amz-Signature")
    )
    canonical_request = "\n".join(
        [
            method,
            quote(unquote(raw_path), safe="/~"),
            canonical_query,
            "".join(canonical_headers),
            params["X-Amz-SignedHeaders"],
            params.get("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD"),
        ]
    )
    string_to_sign = "\n".join(
        [
            ALGORITHM,
            params["X-Amz-Date"],
            "/".join(scope[1:]),
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = _hmac(f"AWS4{secret}".encode(), scope_date)
    for part in (scope_region, service, "aws4_request"):
        key = _hmac(key, part)
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, params["X-Amz-Signature"]):
        return _mismatch()
    return None


def _mismatch() -> Refusal:
    return Refusal(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
    )


def _encode(value: str) -> str:
    return quote(value, safe="-_.~")


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()
