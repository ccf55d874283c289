"""`onecopy logout`: forget the tokens kept for this API URL, and revoke the refresh token."""

from __future__ import annotations

import argparse
from typing import Any

from onecopy_cli.api import CliError
from onecopy_cli.context import EXIT_OK, Context
from onecopy_cli.signin import Cognito
from onecopy_cli.tokens import TokenCache


def register(subcommands: Any, common: argparse.ArgumentParser) -> None:
    parser = subcommands.add_parser(
        "logout",
        parents=[common],
        help="forget the tokens kept for this API",
        description="Delete the tokens kept for this API URL, then ask Cognito to revoke the "
        "refresh token (best effort: the local copy is gone either way; an ID or access token "
        "already issued stays valid until it expires, within the hour).",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    login = TokenCache.for_environment(ctx.environ).remove(ctx.api_url)
    if login is None:
        ctx.console.result(f"not signed in to {ctx.api_url}: nothing to forget")
        return EXIT_OK
    try:
        Cognito(login.cognito_endpoint, login.client_id).revoke(login.refresh_token)
    except CliError as exc:
        # The tokens are gone from this machine, which is what signing out promises; a refresh
        # token that could not be revoked expires on its own (Cognito: 30 days by default).
        ctx.console.note(f"note: Cognito did not revoke the refresh token: {exc}")
    ctx.console.result(f"signed out of {ctx.api_url} ({login.username})")
    return EXIT_OK
