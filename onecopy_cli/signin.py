"""Signing in with Cognito: where to (GET /auth/config), and the three calls the CLI makes.

InitiateAuth (USER_PASSWORD_AUTH, REFRESH_TOKEN_AUTH) and RevokeToken are public Cognito
operations: an unsigned JSON POST with an X-Amz-Target header, so no AWS credentials and no boto3
are needed. The same calls reach moto's Cognito in the local stack.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

import requests
from pydantic import BaseModel, ConfigDict, ValidationError

from onecopy_cli.api import TIMEOUT, USER_AGENT, ApiError, CliError, Unreachable, _why

_TARGET = "AWSCognitoIdentityProviderService."
_CONTENT_TYPE = "application/x-amz-json-1.1"


class AuthConfig(BaseModel):
    """What GET /auth/config tells a client about the stack's user pool."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    issuer: str
    user_pool_id: str
    client_id: str
    region: str
    cognito_endpoint: str


class Tokens(BaseModel):
    """Cognito's AuthenticationResult. A refresh returns no new RefreshToken."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    IdToken: str
    AccessToken: str
    ExpiresIn: int
    RefreshToken: str | None = None


class SignInRefused(CliError):
    """Cognito said no: wrong password, unknown user, a revoked or expired refresh token."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{message or kind} ({kind})" if kind else message)
        self.kind = kind


def fetch_auth_config(api_url: str, session: requests.Session | None = None) -> AuthConfig:
    url = f"{api_url.rstrip('/')}/auth/config"
    http = session or requests.Session()
    try:
        response = http.get(url, headers={"User-Agent": USER_AGENT}, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise Unreachable("onecopy API", api_url, _why(exc)) from exc
    if response.status_code != 200:
        raise ApiError(
            response.status_code,
            f"{url} answered {response.status_code}: is this a onecopy API with sign-in?",
        )
    try:
        return AuthConfig.model_validate_json(response.content)
    except ValidationError as exc:
        raise CliError(f"{url} did not answer with the sign-in settings: {exc}") from exc


class Cognito:
    def __init__(
        self, endpoint: str, client_id: str, session: requests.Session | None = None
    ) -> None:
        require_private_channel(endpoint, "credentials")
        self.endpoint = endpoint
        self.client_id = client_id
        self.session = session or requests.Session()

    def sign_in(self, username: str, password: str) -> Tokens:
        answer = self._call(
            "InitiateAuth",
            {
                "AuthFlow": "USER_PASSWORD_AUTH",
                "ClientId": self.client_id,
                "AuthParameters": {"USERNAME": username, "PASSWORD": password},
            },
        )
        challenge = answer.get("ChallengeName")
        if challenge:
            raise CliError(_challenge_hint(str(challenge), username))
        return self._tokens(answer)

    def refresh(self, refresh_token: str) -> Tokens:
        answer = self._call(
            "InitiateAuth",
            {
                "AuthFlow": "REFRESH_TOKEN_AUTH",
                "ClientId": self.client_id,
                "AuthParameters": {"REFRESH_TOKEN": refresh_token},
            },
        )
        return self._tokens(answer)

    def revoke(self, refresh_token: str) -> None:
        """Revoke the refresh token (and the tokens issued from it) at Cognito."""
        self._call("RevokeToken", {"Token": refresh_token, "ClientId": self.client_id})

    def _call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        headers = {
            "X-Amz-Target": _TARGET + operation,
            "Content-Type": _CONTENT_TYPE,
            "User-Agent": USER_AGENT,
        }
        try:
            response = self.session.post(
                self.endpoint, json=payload, headers=headers, timeout=TIMEOUT
            )
        except requests.RequestException as exc:
            raise Unreachable("sign-in service (Cognito)", self.endpoint, _why(exc)) from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            kind, message = _cognito_error(body)
            if response.status_code == 400 and kind:
                raise SignInRefused(kind, message)
            detail = f": {kind} {message}".rstrip() if kind else ""
            raise CliError(
                f"Cognito at {self.endpoint} failed {operation} "
                f"(HTTP {response.status_code}{detail})"
            )
        return body

    def _tokens(self, answer: dict[str, Any]) -> Tokens:
        try:
            return Tokens.model_validate(answer.get("AuthenticationResult"))
        except ValidationError as exc:
            raise CliError(f"Cognito at {self.endpoint} answered without tokens: {exc}") from exc


def _cognito_error(body: Any) -> tuple[str, str]:
    if not isinstance(body, dict):
        return "", ""
    # "__type" is "NotAuthorizedException", or on some endpoints "prefix#NotAuthorizedException".
    kind = str(body.get("__type", "")).rpartition("#")[2]
    message = str(body.get("message") or body.get("Message") or "")
    return kind, message


def require_private_channel(url: str, what: str) -> None:
    """Refuse to send `what` (a password, a token) where it could be read on the way: https,
    or plain http to this machine only (the local stack)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and _is_loopback(parts.hostname or ""):
        return
    raise CliError(f"refusing to send {what} to {url}: use https (plain http only on this machine)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _challenge_hint(challenge: str, username: str) -> str:
    if challenge == "NEW_PASSWORD_REQUIRED":
        return (
            f"{username} must choose a new password before signing in (NEW_PASSWORD_REQUIRED). "
            "An administrator can set a permanent one: aws cognito-idp admin-set-user-password "
            f"--user-pool-id POOL --username {username} --password NEW --permanent"
        )
    return f"Cognito asks for {challenge}, which `onecopy login` does not support"
