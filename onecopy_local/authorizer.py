"""API Gateway's JWT authorizer (HTTP API), for the local gateway.

What AWS documents for a route with a JWT authorizer, in its order: the token comes from the
identity source (the Authorization header, bare or after "Bearer "); its `kid` must name a key of
the issuer's JWKS, its algorithm must be RSA and its signature valid; `iss` must equal the
configured issuer; `aud` (or, only when there is no `aud`, `client_id`) must be one of the
configured audiences; `exp` must be in the future, `nbf` and `iat` in the past. Any failure is
401 {"message": "Unauthorized"} with a `www-authenticate` header saying why, and the function is
not invoked. A valid token's claims reach the function as strings, arrays flattened to "[a b]".

Locally the issuer is the emulator's Cognito user pool: its tokens say
https://cognito-idp.<region>.amazonaws.com/<pool id>, as Cognito's do, and the JWKS is fetched
from the emulator, which serves it at /<pool id>/.well-known/jwks.json.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

import requests
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from onecopy_local._http import LOGGER

log = logging.getLogger(LOGGER)

# API Gateway supports only RSA-based algorithms.
ALGORITHMS = ("RS256", "RS384", "RS512")
# AWS documents plain comparisons with the current time; a few seconds absorb clock skew between
# the issuer and the gateway without keeping an expired token alive for any useful while.
CLOCK_SKEW_SECONDS = 5
# An unknown `kid` refreshes the key set (the issuer may have rotated its keys), but no more often
# than this: a stream of forged kids must not turn the gateway into a JWKS fetch loop.
JWKS_REFRESH_INTERVAL_SECONDS = 60.0
TOKEN_USES = frozenset({"id", "access"})
UNAUTHORIZED = {"message": "Unauthorized"}


class Unauthorized(Exception):
    """The request carries no valid token; ``challenge`` is the www-authenticate header."""

    def __init__(self, description: str | None) -> None:
        super().__init__(description or "no token")
        self.challenge = (
            "Bearer"
            if description is None
            else f'Bearer scope="" error="invalid_token" error_description="{description}"'
        )


@dataclass(frozen=True, slots=True)
class JwtConfiguration:
    """An HttpApi authorizer's JwtConfiguration, resolved."""

    issuer: str
    audience: tuple[str, ...]
    jwks_url: str


class JwtAuthorizer:
    """Validates tokens against one issuer; thread-safe (the gateway serves requests in threads)."""

    def __init__(
        self,
        config: JwtConfiguration,
        fetch_jwks: Callable[[str], Mapping[str, Any]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._fetch = fetch_jwks or _fetch_jwks
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")

    def authorize(self, header: str | None) -> dict[str, str]:
        """The claims of the token in ``header`` (an Authorization value), as API Gateway passes
        them to the function; raises Unauthorized."""
        token = _token(header)
        try:
            kid = jws.extract_compact(token.encode("ascii")).protected.get("kid")
        except (JoseError, ValueError, UnicodeError) as exc:
            raise Unauthorized("the token is malformed") from exc
        if not isinstance(kid, str):
            raise Unauthorized("the token has no kid")
        key = self._key(kid)
        try:
            decoded = jwt.decode(token, key, algorithms=list(ALGORITHMS))
        except JoseError as exc:
            raise Unauthorized("the token does not have a valid signature") from exc
        except ValueError as exc:  # a payload that is not a JSON object
            raise Unauthorized("the token is malformed") from exc
        claims = dict(decoded.claims)
        self._check(claims)
        return flatten_claims(claims)

    def _check(self, claims: Mapping[str, Any]) -> None:
        if claims.get("iss") != self.config.issuer:
            raise Unauthorized("the token does not have a valid issuer")
        # API Gateway evaluates aud when present, and client_id only when it is not.
        audience = claims["aud"] if "aud" in claims else claims.get("client_id")
        offered = audience if isinstance(audience, list) else [audience]
        if not any(isinstance(a, str) and a in self.config.audience for a in offered):
            raise Unauthorized("the token does not have a valid audience")
        now = self._clock()
        exp = claims.get("exp")
        if not _is_number(exp) or exp <= now - CLOCK_SKEW_SECONDS:
            raise Unauthorized("the token has expired")
        for name in ("nbf", "iat"):
            value = claims.get(name)
            if value is not None and (not _is_number(value) or value > now + CLOCK_SKEW_SECONDS):
                raise Unauthorized(f"the token is not valid yet ({name})")
        if claims.get("token_use") not in TOKEN_USES:
            raise Unauthorized("the token is neither an id nor an access token")

    def _key(self, kid: str) -> Any:
        with self._lock:
            key = self._find(kid)
            if key is None and self._clock() - self._fetched_at >= JWKS_REFRESH_INTERVAL_SECONDS:
                self._fetched_at = self._clock()
                self._keys = self._fetch_key_set()
                key = self._find(kid)
        if key is None:
            raise Unauthorized("the token's kid names no key of the issuer")
        return key

    def _find(self, kid: str) -> Any:
        if self._keys is None:
            return None
        try:
            return self._keys.get_by_kid(kid)
        except JoseError:
            return None  # an unknown kid: the caller may refresh the key set

    def _fetch_key_set(self) -> KeySet | None:
        url = self.config.jwks_url
        try:
            return KeySet.import_key_set(dict(self._fetch(url)))  # type: ignore[arg-type]
        except (requests.RequestException, ValueError, KeyError, JoseError) as exc:
            # API Gateway too refuses the token when it cannot get the issuer's keys.
            log.error("api: cannot load the JWKS at %s: %s", url, exc)
            return self._keys


def _token(header: str | None) -> str:
    value = (header or "").strip()
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    if not value:
        raise Unauthorized(None)
    return value


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fetch_jwks(url: str) -> Mapping[str, Any]:
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    keys: Mapping[str, Any] = response.json()
    return keys


def flatten_claims(claims: Mapping[str, Any]) -> dict[str, str]:
    """Claims the way an HTTP API JWT authorizer hands them on: every value a string, an array as
    "[a b]" (so `cognito:groups` ["admins", "staff"] arrives as "[admins staff]")."""
    return {name: _flat(value) for name, value in claims.items()}


def _flat(value: Any) -> str:
    if isinstance(value, list):
        return "[" + " ".join(_flat(item) for item in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_flat(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else json.dumps(value)


def cognito_jwks_url(issuer: str, endpoint_url: str, region: str) -> str:
    """Where the emulator serves the JWKS of the user pool that ``issuer`` names."""
    prefix = f"https://cognito-idp.{region}.amazonaws.com/"
    if not issuer.startswith(prefix):
        raise ValueError(f"locally, the issuer must be the local user pool's, not {issuer}")
    return f"{endpoint_url.rstrip('/')}/{issuer.removeprefix(prefix)}/.well-known/jwks.json"


def audience_list(value: str | Collection[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)
