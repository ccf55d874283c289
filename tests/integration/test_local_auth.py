"""The local gateway's JWT authorizer, CORS and throttling, against a running stack: what API
Gateway's HTTP API does with template.yaml's `SignedIn` authorizer and DefaultRouteSettings.

Bad tokens are minted here: some with the pool's own signing key (moto ships it), so that each
claim check is proven on its own with a valid signature, and some with a key of our own.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from joserfc import jwk, jwt
from moto.utilities.utils import load_resource

from onecopy_local.apigateway import ApiServer, Cors, TokenBucket, template_routes
from onecopy_local.authorizer import JwtAuthorizer, JwtConfiguration, Unauthorized, flatten_claims
from onecopy_local.resources import parameter_default, template
from tests.localstack import USERS, RunningStack, count_items, jwt_claims, start_stack

pytestmark = pytest.mark.integration

UNAUTHORIZED = {"message": "Unauthorized"}
# The routes a signed-out client may call: the page's files, the sign-in configuration, the docs.
PUBLIC = {r.key for r in template_routes(template()) if r.authorizer is None}
# One request per kind of protected route (the API's catch-all serves them all).
PROTECTED = [
    ("POST", "/uploads"),
    ("GET", "/uploads/0123456789abcdef"),
    ("DELETE", "/uploads/0123456789abcdef"),
    ("GET", f"/metadata/{'0' * 64}"),
    ("GET", f"/download/{'0' * 64}"),
    ("GET", "/admin/stats"),
    ("GET", "/admin/hashes"),
    ("GET", "/no/such/path"),
]


def _pool_key() -> jwk.RSAKey:
    """The key moto's Cognito signs every pool's tokens with (kid "dummy")."""
    return jwk.RSAKey.import_key(load_resource("cognitoidp/resources/jwks-private.json"))


def _mint(claims: dict[str, Any], key: Any = None, header: dict[str, Any] | None = None) -> str:
    return jwt.encode(header or {"alg": "RS256", "kid": "dummy"}, claims, key or _pool_key())


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(stack: RunningStack, **changes: Any) -> dict[str, Any]:
    """The claims of a fresh, valid id token of alice, with ``changes`` (None removes one)."""
    claims = jwt_claims(stack.token("alice"))
    now = int(time.time())
    claims |= {"iat": now, "auth_time": now, "exp": now + 3600}
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def _get(stack: RunningStack, authorization: str | None, path: str = "/admin/stats") -> Any:
    headers = {} if authorization is None else {"Authorization": authorization}
    return requests.get(f"{stack.api_url}{path}", headers=headers, timeout=30)


def _logged(stack: RunningStack, line: str, within: float = 10.0) -> bool:
    """Whether the stack's log has ``line``: the gateway logs a request after answering it, so
    the line may land a moment after the response."""
    deadline = time.monotonic() + within
    while line not in stack.log():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _assert_unauthorized(response: requests.Response, because: str | None = None) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == UNAUTHORIZED
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    if because is not None:
        assert 'error="invalid_token"' in challenge
        assert because in challenge, challenge


# --- no token, public routes ----------------------------------------------------------------------


def test_the_public_routes_are_the_page_the_sign_in_configuration_and_the_docs() -> None:
    assert {"GET /", "GET /auth/config", "GET /openapi.json", "GET /docs"} <= PUBLIC
    assert "ANY /{proxy+}" not in PUBLIC


@pytest.mark.parametrize("key", sorted(PUBLIC))
def test_a_public_route_needs_no_token(local_stack: RunningStack, key: str) -> None:
    method, path = key.split(" ", 1)
    response = requests.request(method, f"{local_stack.api_url}{path}", timeout=30)
    assert response.status_code == 200, response.text


def test_a_token_on_a_public_route_is_ignored(local_stack: RunningStack) -> None:
    # Given a token that would fail every check, on the sign-in configuration
    response = _get(local_stack, "Bearer not-a-token", "/auth/config")
    # Then the route answers as without one
    assert response.status_code == 200


def test_the_sign_in_configuration_points_at_the_local_pool(local_stack: RunningStack) -> None:
    config = requests.get(f"{local_stack.api_url}/auth/config", timeout=30).json()
    claims = jwt_claims(local_stack.token("alice"))
    assert config["issuer"] == claims["iss"]
    assert config["user_pool_id"] == local_stack.user_pool_id
    assert config["client_id"] == local_stack.client_id == claims["aud"]
    assert config["cognito_endpoint"] == local_stack.cognito_endpoint
    assert config["region"] == "us-east-1"


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_no_token_is_401_without_invoking_anything(
    local_stack: RunningStack, method: str, path: str
) -> None:
    uploads = count_items(local_stack, local_stack.uploads_table)
    response = requests.request(
        method, f"{local_stack.api_url}{path}", json={"filename": "x", "size": 1}, timeout=30
    )
    _assert_unauthorized(response)
    assert response.headers["www-authenticate"] == "Bearer"
    assert _logged(local_stack, f"api: {method} {path} -> 401")
    assert count_items(local_stack, local_stack.uploads_table) == uploads


# --- tokens that fail a check ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer ", "Basic YWxpY2U6cGFzcw==", "Bearer abc", "Bearer a.b.c", "a.b"],
)
def test_a_malformed_token_is_401(local_stack: RunningStack, authorization: str) -> None:
    _assert_unauthorized(_get(local_stack, authorization))


def test_an_expired_token_is_401(local_stack: RunningStack) -> None:
    past = int(time.time()) - 3600
    token = _mint(_claims(local_stack, iat=past - 3600, auth_time=past - 3600, exp=past))
    _assert_unauthorized(_get(local_stack, f"Bearer {token}"), "expired")


def test_a_token_without_an_expiry_is_401(local_stack: RunningStack) -> None:
    _assert_unauthorized(_get(local_stack, f"Bearer {_mint(_claims(local_stack, exp=None))}"))


def test_a_token_not_valid_yet_is_401(local_stack: RunningStack) -> None:
    future = int(time.time()) + 3600
    _assert_unauthorized(_get(local_stack, f"Bearer {_mint(_claims(local_stack, nbf=future))}"))
    _assert_unauthorized(_get(local_stack, f"Bearer {_mint(_claims(local_stack, iat=future))}"))


def test_a_token_of_another_issuer_is_401(local_stack: RunningStack) -> None:
    other = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_someoneelse"
    token = _mint(_claims(local_stack, iss=other))
    _assert_unauthorized(_get(local_stack, f"Bearer {token}"), "issuer")


def test_a_token_of_another_audience_is_401(local_stack: RunningStack) -> None:
    token = _mint(_claims(local_stack, aud="another-client"))
    _assert_unauthorized(_get(local_stack, f"Bearer {token}"), "audience")


def test_aud_is_evaluated_before_client_id(local_stack: RunningStack) -> None:
    # A wrong aud fails even with the right client_id: API Gateway reads client_id only without aud
    token = _mint(_claims(local_stack, aud="another-client", client_id=local_stack.client_id))
    _assert_unauthorized(_get(local_stack, f"Bearer {token}"), "audience")


def test_a_token_neither_id_nor_access_is_401(local_stack: RunningStack) -> None:
    _assert_unauthorized(_get(local_stack, f"Bearer {_mint(_claims(local_stack, token_use='x'))}"))


def test_a_token_signed_by_another_key_is_401(local_stack: RunningStack) -> None:
    # Same kid as the pool's key, so only the signature gives it away
    ours = jwk.RSAKey.generate_key(2048)
    token = _mint(_claims(local_stack), key=ours)
    _assert_unauthorized(_get(local_stack, f"Bearer {token}"), "signature")


def test_a_token_with_an_unknown_kid_is_401(local_stack: RunningStack) -> None:
    ours = jwk.RSAKey.generate_key(2048)
    token = _mint(_claims(local_stack), key=ours, header={"alg": "RS256", "kid": "ours"})
    _assert_unauthorized(_get(local_stack, f"Bearer {token}"), "kid")


def test_a_tampered_token_is_401(local_stack: RunningStack) -> None:
    # alice's real token with her claims swapped for a forged admin's
    header, _, signature = local_stack.token("alice").split(".")
    forged = _b64(_claims(local_stack, **{"cognito:groups": ["admins"]}))
    _assert_unauthorized(_get(local_stack, f"Bearer {header}.{forged}.{signature}"), "signature")


def test_an_unsigned_alg_none_token_is_401(local_stack: RunningStack) -> None:
    claims = _claims(local_stack, **{"cognito:groups": ["admins"]})
    token = f"{_b64({'alg': 'none', 'kid': 'dummy', 'typ': 'JWT'})}.{_b64(claims)}."
    _assert_unauthorized(_get(local_stack, f"Bearer {token}"), "signature")


def test_an_hmac_token_keyed_with_the_public_key_is_401(local_stack: RunningStack) -> None:
    # The algorithm-confusion attack: HS256 with the pool's public JWKS as the secret
    public = requests.get(
        f"{local_stack.endpoint_url}/{local_stack.user_pool_id}/.well-known/jwks.json", timeout=30
    ).content
    token = _mint(
        _claims(local_stack),
        key=jwk.OctKey.import_key(public),
        header={"alg": "HS256", "kid": "dummy"},
    )
    _assert_unauthorized(_get(local_stack, f"Bearer {token}"))


def _second_client(stack: RunningStack) -> str:
    cognito = stack.client("cognito-idp")
    return str(
        cognito.create_user_pool_client(
            UserPoolId=stack.user_pool_id,
            ClientName=f"other-{os.urandom(4).hex()}",
            GenerateSecret=False,
            ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        )["UserPoolClient"]["ClientId"]
    )


def test_an_id_token_of_another_client_of_the_pool_is_401(local_stack: RunningStack) -> None:
    # Given alice signed in, with her real password, through another app client of the same pool
    other = replace(local_stack, client_id=_second_client(local_stack))
    result = other.sign_in("alice")
    # Then neither its id token (aud) nor its access token (client_id) is accepted
    _assert_unauthorized(_get(local_stack, f"Bearer {result['IdToken']}"), "audience")
    _assert_unauthorized(_get(local_stack, f"Bearer {result['AccessToken']}"), "audience")


def test_a_token_of_another_user_pool_is_401(local_stack: RunningStack) -> None:
    # Every moto pool signs with the same key: only the issuer tells the pools apart
    cognito = local_stack.client("cognito-idp")
    pool = cognito.create_user_pool(PoolName=f"other-{os.urandom(4).hex()}")["UserPool"]["Id"]
    client = cognito.create_user_pool_client(
        UserPoolId=pool,
        ClientName="onecopy",
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    cognito.admin_create_user(UserPoolId=pool, Username="alice", MessageAction="SUPPRESS")
    cognito.admin_set_user_password(
        UserPoolId=pool, Username="alice", Password=local_stack.password, Permanent=True
    )
    result = replace(local_stack, client_id=client).sign_in("alice")
    _assert_unauthorized(_get(local_stack, f"Bearer {result['IdToken']}"), "issuer")


# --- valid tokens ---------------------------------------------------------------------------------


def _accepted(response: requests.Response) -> bool:
    return response.status_code != 401 and "www-authenticate" not in response.headers


@pytest.mark.parametrize("user", USERS)
def test_each_seeded_user_signs_in_and_is_let_through(local_stack: RunningStack, user: str) -> None:
    assert _accepted(_get(local_stack, f"Bearer {local_stack.token(user)}", "/uploads/unknown"))
    assert _accepted(_get(local_stack, local_stack.token(user), "/uploads/unknown"))  # bare


def test_the_access_token_is_accepted_too(local_stack: RunningStack) -> None:
    access = local_stack.sign_in("bob")["AccessToken"]
    assert jwt_claims(access)["token_use"] == "access"
    assert "aud" not in jwt_claims(access)
    assert _accepted(_get(local_stack, f"Bearer {access}", "/uploads/unknown"))


def test_a_wrong_password_is_refused_by_cognito(local_stack: RunningStack) -> None:
    with pytest.raises(AssertionError, match="NotAuthorized"):
        local_stack.sign_in("alice", password="Wrong-password-1")


def test_only_admin_is_in_the_admins_group(local_stack: RunningStack) -> None:
    groups = {user: jwt_claims(local_stack.token(user)).get("cognito:groups") for user in USERS}
    assert groups == {"alice": None, "bob": None, "admin": ["admins"]}
    assert len({local_stack.sub(user) for user in USERS}) == len(USERS)


def test_a_refresh_goes_through_the_emulator_unsigned(local_stack: RunningStack) -> None:
    # Given alice signed in
    first = local_stack.sign_in("alice")
    # When she refreshes, as the page and the CLI do before the token expires
    refreshed = local_stack.initiate_auth(
        "REFRESH_TOKEN_AUTH", {"REFRESH_TOKEN": first["RefreshToken"]}
    )
    # Then she gets new tokens of the same identity, and the API takes them
    assert jwt_claims(refreshed["IdToken"])["sub"] == local_stack.sub("alice")
    assert _accepted(_get(local_stack, f"Bearer {refreshed['IdToken']}", "/uploads/unknown"))


def test_a_sign_out_goes_through_the_emulator_unsigned(local_stack: RunningStack) -> None:
    access = local_stack.sign_in("bob")["AccessToken"]
    response = requests.post(
        local_stack.cognito_endpoint,
        data=json.dumps({"AccessToken": access}),
        headers={
            "X-Amz-Target": "AWSCognitoIdentityProviderService.GlobalSignOut",
            "Content-Type": "application/x-amz-json-1.1",
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text


# --- CORS -----------------------------------------------------------------------------------------


def test_a_preflight_is_answered_by_the_gateway_without_a_token(local_stack: RunningStack) -> None:
    # Given a browser's preflight for a protected route (preflights never carry a token)
    response = requests.options(
        f"{local_stack.api_url}/uploads",
        headers={
            "Origin": "http://localhost:8000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
        timeout=30,
    )
    # Then the gateway answers it from the template's CorsConfiguration
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "authorization" in response.headers["access-control-allow-headers"]
    assert "POST" in response.headers["access-control-allow-methods"]
    assert _logged(local_stack, "api: OPTIONS /uploads -> 204 (CORS preflight)")


def test_a_401_carries_the_cors_headers(local_stack: RunningStack) -> None:
    # So that a page on another origin can read why it was refused
    response = requests.get(
        f"{local_stack.api_url}/admin/stats", headers={"Origin": "http://x.example"}, timeout=30
    )
    _assert_unauthorized(response)
    assert response.headers["access-control-allow-origin"] == "*"


# --- the banner and the functions' environment ----------------------------------------------------


def test_the_banner_says_how_to_sign_in(local_stack: RunningStack) -> None:
    banner = local_stack.banner
    assert banner["Users"] == "alice, bob, admin (admins)"
    assert banner["Password"].startswith("Onecopy-local-1")
    assert f"onecopy --api {local_stack.api_url} login" in banner["Sign in"]
    assert banner["User pool"].startswith(local_stack.user_pool_id)
    assert banner["App client"].startswith(local_stack.client_id)


def test_the_api_function_is_told_the_local_sign_in(local_stack: RunningStack) -> None:
    (pid,) = local_stack.function_pids("ApiFunction")
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode()
    environ = dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)
    assert environ["AUTH_COGNITO_ENDPOINT"] == local_stack.cognito_endpoint
    assert environ["AUTH_ISSUER"] == jwt_claims(local_stack.token())["iss"]
    assert environ["AUTH_USER_POOL_ID"] == local_stack.user_pool_id
    assert environ["AUTH_CLIENT_ID"] == local_stack.client_id


# --- throttling -----------------------------------------------------------------------------------


def test_the_test_stacks_are_throttled_far_above_the_template(local_stack: RunningStack) -> None:
    # So that the concurrency tests meet no 429 (tests.localstack.TEST_THROTTLE)
    assert local_stack.banner["Throttling"].startswith("100000 requests/s, bursts of 100000")
    assert float(parameter_default("ThrottlingRateLimit")) < 100000


def test_beyond_the_burst_the_gateway_answers_429(tmp_path: Path) -> None:
    # Given a stack whose API takes bursts of 3 and then one request every 1000 seconds
    with start_stack(
        tmp_path, "--workers", "0", "--throttle-rate", "0.001", "--throttle-burst", "3"
    ) as stack:
        assert stack.banner["Throttling"].startswith("0.001 requests/s, bursts of 3")
        # When a client sends 5 requests, public or not, valid or not
        answers = [
            requests.get(f"{stack.api_url}{path}", timeout=30)
            for path in ("/auth/config", "/auth/config", "/admin/stats", "/auth/config", "/")
        ]
        # Then the first 3 pass (or fail auth) and the rest are throttled before anything else
        assert [r.status_code for r in answers] == [200, 200, 401, 429, 429]
        assert answers[-1].json() == {"message": "Too Many Requests"}


def test_the_bucket_refills_at_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5  # one token back
    assert [bucket.take(), bucket.take()] == [True, False]
    now[0] += 100  # never more than the burst
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


# --- what the function sees (an in-process gateway with a recording function) ---------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append(event)
        return {"statusCode": 200, "body": "{}", "headers": {"access-control-allow-origin": "x"}}


@pytest.fixture
def recorded(local_stack: RunningStack) -> Iterator[tuple[str, Recorder]]:
    """The template's routes behind its authorizer (checking the stack's pool), all recorded."""
    issuer = jwt_claims(local_stack.token())["iss"]
    authorizer = JwtAuthorizer(
        JwtConfiguration(
            issuer=issuer,
            audience=(local_stack.client_id,),
            jwks_url=f"{local_stack.endpoint_url}/{local_stack.user_pool_id}/.well-known/jwks.json",
        )
    )
    routes = template_routes(template())
    recorder = Recorder()
    server = ApiServer(
        0,
        routes,
        dict.fromkeys({r.function for r in routes}, recorder),
        authorizers={"SignedIn": authorizer},
        cors=Cors(allow_origins=("*",), expose_headers=("location",)),
    )
    server.start()
    yield f"http://127.0.0.1:{server.port}", recorder
    server.close()


def test_the_function_gets_only_the_verified_claims_flattened(
    local_stack: RunningStack, recorded: tuple[str, Recorder]
) -> None:
    url, recorder = recorded
    token = local_stack.token("admin")
    # Given a client that also sends claims of its own, in the body, the query and headers
    forged = {"requestContext": {"authorizer": {"jwt": {"claims": {"sub": "someone-else"}}}}}
    response = requests.post(
        f"{url}/uploads?requestContext.authorizer.jwt.claims.sub=x",
        json=forged,
        headers={
            "Authorization": f"Bearer {token}",
            "X-Amzn-Oidc-Identity": "someone-else",
            "Origin": "http://x.example",
        },
        timeout=30,
    )
    assert response.status_code == 200
    (event,) = recorder.events
    # Then the authorizer context is the verified token's claims, each a string, arrays "[a b]"
    claims = event["requestContext"]["authorizer"]["jwt"]["claims"]
    assert event["requestContext"]["authorizer"]["jwt"]["scopes"] is None
    assert claims == flatten_claims(jwt_claims(token))
    assert claims["sub"] == local_stack.sub("admin")
    assert claims["cognito:groups"] == "[admins]"
    assert all(isinstance(v, str) for v in claims.values())
    assert claims["exp"] == str(jwt_claims(token)["exp"])
    # And the gateway's CORS headers replace the function's
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-expose-headers"] == "location"


def test_a_public_route_gets_no_authorizer_context(
    local_stack: RunningStack, recorded: tuple[str, Recorder]
) -> None:
    url, recorder = recorded
    headers = {"Authorization": f"Bearer {local_stack.token()}"}
    assert requests.get(f"{url}/auth/config", headers=headers, timeout=30).status_code == 200
    (event,) = recorder.events
    assert "authorizer" not in event["requestContext"]


def test_flattening_matches_api_gateway() -> None:
    claims = {"groups": ["admins", "staff"], "n": 3, "ok": True, "s": "x", "empty": []}
    assert flatten_claims(claims) == {
        "groups": "[admins staff]",
        "n": "3",
        "ok": "true",
        "s": "x",
        "empty": "[]",
    }


def test_an_unknown_kid_refetches_the_key_set_at_most_once_a_minute() -> None:
    fetched: list[str] = []
    now = [1000.0]

    def fetch(url: str) -> dict[str, Any]:
        fetched.append(url)
        return {"keys": [jwk.RSAKey.generate_key(2048).as_dict(private=False, kid="k1")]}

    authorizer = JwtAuthorizer(
        JwtConfiguration(issuer="i", audience=("a",), jwks_url="jwks"), fetch, clock=lambda: now[0]
    )
    token = _mint(
        {"iss": "i"}, key=jwk.RSAKey.generate_key(2048), header={"alg": "RS256", "kid": "x"}
    )
    for _ in range(3):
        with pytest.raises(Unauthorized):
            authorizer.authorize(f"Bearer {token}")
    assert fetched == ["jwks"]
    now[0] += 61
    with pytest.raises(Unauthorized):
        authorizer.authorize(token)
    assert fetched == ["jwks", "jwks"]


def test_a_key_set_that_cannot_be_fetched_refuses_every_token() -> None:
    def unreachable(url: str) -> dict[str, Any]:
        raise requests.ConnectionError(f"cannot reach {url}")

    authorizer = JwtAuthorizer(
        JwtConfiguration(issuer="i", audience=("a",), jwks_url="jwks"), unreachable
    )
    with pytest.raises(Unauthorized, match="kid"):
        authorizer.authorize(_mint({"iss": "i", "aud": "a", "exp": time.time() + 60}))


def test_a_local_password_the_pool_refuses_stops_the_start(tmp_path: Path) -> None:
    # Given a password shorter than the template's policy allows
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env["ONECOPY_LOCAL_PASSWORD"] = "short"
    script = Path(sys.executable).with_name("onecopy-local")
    # When the stack starts, then it stops at once and says why
    done = subprocess.run(
        [
            str(script),
            *("--port", "0", "--emulator-port", "0", "--lambda-port", "0", "--workers", "0"),
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "ONECOPY_LOCAL_PASSWORD" in done.stderr and "MinimumLength" in done.stderr


def test_the_banner_names_the_holdings_table(local_stack: RunningStack) -> None:
    assert local_stack.holdings_table == "onecopy-holdings"
    assert count_items(local_stack, local_stack.holdings_table) >= 0


def test_a_page_may_call_cognito_from_another_origin(local_stack: RunningStack) -> None:
    # Given a page on the API's origin that signs in with fetch (X-Amz-Target is not a simple
    # header, so the browser asks first)
    origin = local_stack.api_url

    # When it sends Cognito's endpoint the CORS preflight of InitiateAuth
    response = requests.options(
        local_stack.cognito_endpoint,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-amz-target",
        },
        timeout=30,
    )

    # Then the endpoint allows it, as Cognito's does (moto alone answers 500)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert "x-amz-target" in response.headers["Access-Control-Allow-Headers"]
