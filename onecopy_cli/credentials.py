"""Which token an API call carries, and keeping it fresh.

$ONECOPY_TOKEN (a raw token, for CI) wins and is sent as is, never refreshed. Otherwise the
sign-in cache's entry for this API URL is used: its ID token is refreshed with the refresh token
when it expires within a minute, or once after the API answered 401.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from onecopy_cli.api import CliError, NotSignedIn
from onecopy_cli.signin import Cognito, SignInRefused, require_private_channel
from onecopy_cli.tokens import Login, TokenCache

TOKEN_ENV = "ONECOPY_TOKEN"  # noqa: S105 - the variable's name, not a token
REFRESH_MARGIN = 60.0  # seconds: refresh before a token could expire on its way to the API
LOGIN_HINT = "run `onecopy login`"


class Credentials(Protocol):
    def bearer(self) -> str:
        """The token to send now."""
        ...

    def renew(self, rejected: str) -> str:
        """A token to retry with after the API refused `rejected`; NotSignedIn if none."""
        ...

    def describe(self) -> str:
        """Where the token comes from, for messages."""
        ...


class StaticToken:
    def __init__(self, token: str) -> None:
        self.token = token

    def bearer(self) -> str:
        return self.token

    def renew(self, rejected: str) -> str:
        raise NotSignedIn(
            f"the API refused the token in ${TOKEN_ENV} (expired, or issued for another stack)"
        )

    def describe(self) -> str:
        return f"${TOKEN_ENV}"


class CachedLogin:
    """A cached sign-in, refreshed with Cognito's REFRESH_TOKEN_AUTH and written back.

    Upload threads share one instance: the lock makes a burst of 401s cause one refresh, not one
    per thread.
    """

    def __init__(
        self,
        login: Login,
        cache: TokenCache,
        *,
        clock: Callable[[], float] = time.time,
        make_cognito: Callable[[str, str], Cognito] = Cognito,
    ) -> None:
        self.login = login
        self.cache = cache
        self.clock = clock
        self.make_cognito = make_cognito
        self._lock = threading.Lock()

    def bearer(self) -> str:
        with self._lock:
            if self.login.expires_at - self.clock() < REFRESH_MARGIN:
                self._refresh()
            return self.login.id_token

    def renew(self, rejected: str) -> str:
        with self._lock:
            if self.login.id_token == rejected:
                self._refresh()
            # else another thread refreshed while this call was in flight: use its token.
            return self.login.id_token

    def describe(self) -> str:
        return self.login.username

    def _refresh(self) -> None:
        login = self.login
        cognito = self.make_cognito(login.cognito_endpoint, login.client_id)
        started = self.clock()  # before the call: the expiry errs on the early side
        try:
            tokens = cognito.refresh(login.refresh_token)
        except SignInRefused as exc:
            raise NotSignedIn(
                f"the sign-in of {login.username} to {login.api_url} has expired ({exc}): "
                f"{LOGIN_HINT}"
            ) from exc
        self.login = login.model_copy(
            update={
                "id_token": tokens.IdToken,
                "access_token": tokens.AccessToken,
                "refresh_token": tokens.RefreshToken or login.refresh_token,
                "expires_at": started + tokens.ExpiresIn,
            }
        )
        # If the entry changed on disk meanwhile (logout, another login), this run keeps its
        # fresh token in memory and leaves the file as the other process left it.
        self.cache.replace(login, self.login)


def credentials_for(api_url: str, environ: Mapping[str, str]) -> Credentials:
    """The credentials for calls to `api_url`; NotSignedIn when there are none."""
    require_private_channel(api_url, "your token")
    token = environ.get(TOKEN_ENV, "").strip()
    if token:
        return StaticToken(token)
    cache = TokenCache.for_environment(environ)
    login = cache.get(api_url)
    if login is None:
        raise NotSignedIn(f"not signed in to {api_url}: {LOGIN_HINT} (or set ${TOKEN_ENV})")
    return CachedLogin(login, cache)


def unverified_claims(token: str) -> dict[str, Any]:
    """The JWT's payload, decoded WITHOUT checking its signature.

    Only for showing the user who they are and when the token expires: the API's authorizer
    verifies every token it receives, so nothing here is trusted for a decision.
    """
    try:
        payload = token.split(".")[1]
        decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(decoded)
    except (IndexError, ValueError) as exc:
        raise CliError("the token is not a JWT (header.payload.signature)") from exc
    if not isinstance(claims, dict):
        raise CliError("the token's payload is not a JSON object")
    return claims


def groups_of(claims: Mapping[str, Any]) -> list[str]:
    # A real token holds a list; a token that went through API Gateway's flattening (the shared
    # contract's "[admins other]") holds a string.
    groups = claims.get("cognito:groups")
    if isinstance(groups, list):
        return [str(group) for group in groups]
    if isinstance(groups, str):
        return groups.strip("[]").split()
    return []
