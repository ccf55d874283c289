"""`onecopy login`: sign in to the API's user pool and cache the tokens for that API URL."""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from typing import Any

from onecopy_cli.api import CliError
from onecopy_cli.context import EXIT_OK, Context
from onecopy_cli.credentials import TOKEN_ENV, groups_of, unverified_claims
from onecopy_cli.signin import Cognito, fetch_auth_config
from onecopy_cli.tokens import Login, TokenCache

USERNAME_ENV = "ONECOPY_USERNAME"
PASSWORD_ENV = "ONECOPY_PASSWORD"  # noqa: S105 - the variable's name, not a password

EPILOG = f"""\
The API's GET /auth/config names its Cognito user pool and app client; the password goes to
Cognito (InitiateAuth, USER_PASSWORD_AUTH), never to the API, and only over https (plain http
only to this machine, for the local stack).

The tokens are kept, for this API URL only, in $XDG_CONFIG_HOME/onecopy/tokens.json (else
~/.config/onecopy/tokens.json; mode 0600). Every later command sends the ID token and renews it
with the refresh token when it is about to expire; `onecopy logout` forgets them.

for scripts: ${USERNAME_ENV} and ${PASSWORD_ENV} instead of the prompts; or skip signing in
and put a token in ${TOKEN_ENV}.

examples:
  onecopy login                                      asks for user name and password
  onecopy --api https://abc.execute-api.eu-west-1.amazonaws.com login -u alice
  ONECOPY_USERNAME=alice ONECOPY_PASSWORD=... onecopy login

exit status: 0 when signed in, 1 when the sign-in was refused or failed, 2 for usage errors.
"""


def register(subcommands: Any, common: argparse.ArgumentParser) -> None:
    parser = subcommands.add_parser(
        "login",
        parents=[common],
        help="sign in (the tokens are kept for this API URL)",
        description="Sign in to the API's Cognito user pool and keep the tokens.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-u",
        "--username",
        metavar="NAME",
        help=f"the user to sign in as (default: ${USERNAME_ENV}, else asked)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    config = fetch_auth_config(ctx.api_url)
    if not config.cognito_endpoint:
        raise CliError(
            f"this API trusts another OIDC issuer ({config.issuer}), not a Cognito user pool: "
            f"sign in there and put the token in ${TOKEN_ENV}"
        )
    username = args.username or ctx.environ.get(USERNAME_ENV) or _ask_username(ctx)
    password = ctx.environ.get(PASSWORD_ENV) or _ask_password(ctx)
    started = time.time()  # before the call: the expiry errs on the early side
    tokens = Cognito(config.cognito_endpoint, config.client_id).sign_in(username, password)
    if not tokens.RefreshToken:
        raise CliError("Cognito signed in without a refresh token: check the app client's flows")
    login = Login(
        api_url=ctx.api_url,
        username=username,
        id_token=tokens.IdToken,
        access_token=tokens.AccessToken,
        refresh_token=tokens.RefreshToken,
        expires_at=started + tokens.ExpiresIn,
        issuer=config.issuer,
        client_id=config.client_id,
        user_pool_id=config.user_pool_id,
        region=config.region,
        cognito_endpoint=config.cognito_endpoint,
    )
    TokenCache.for_environment(ctx.environ).put(login)
    groups = groups_of(unverified_claims(tokens.IdToken))
    member = f" (groups: {', '.join(groups)})" if groups else ""
    ctx.console.result(f"signed in to {ctx.api_url} as {username}{member}")
    return EXIT_OK


def _ask_username(ctx: Context) -> str:
    ctx.console.err.write("Username: ")
    ctx.console.err.flush()
    line = sys.stdin.readline()
    if not line.strip():
        raise CliError(f"no user name given (--username, or ${USERNAME_ENV} for scripts)")
    return line.strip()


def _ask_password(ctx: Context) -> str:
    try:
        password = getpass.getpass("Password: ", stream=ctx.console.err)
    except EOFError:
        password = ""
    if not password:
        raise CliError(f"no password given (${PASSWORD_ENV} for scripts)")
    return password
