"""`onecopy whoami`: who the API will take you for, read from the token itself."""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from typing import Any

from onecopy_cli.api import NotSignedIn
from onecopy_cli.context import EXIT_OK, Context
from onecopy_cli.credentials import LOGIN_HINT, TOKEN_ENV, groups_of, unverified_claims
from onecopy_cli.output import human_duration
from onecopy_cli.tokens import TokenCache


def register(subcommands: Any, common: argparse.ArgumentParser) -> None:
    parser = subcommands.add_parser(
        "whoami",
        parents=[common],
        help="show who you are signed in as",
        description="Show the user, subject (sub), groups and token expiry of your sign-in to "
        f"this API (or of ${TOKEN_ENV}). Read from the token without checking it: the API checks "
        "every token it receives.",
        epilog="exit status: 0 when signed in, 3 when not.",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    token = ctx.environ.get(TOKEN_ENV, "").strip()
    username = None
    if token:
        source = f"${TOKEN_ENV}"
        renewable = False
    else:
        cache = TokenCache.for_environment(ctx.environ)
        login = cache.get(ctx.api_url)
        if login is None:
            raise NotSignedIn(f"not signed in to {ctx.api_url}: {LOGIN_HINT}")
        token, username, source, renewable = login.id_token, login.username, str(cache.path), True
    claims = unverified_claims(token)
    groups = groups_of(claims)
    view = {
        "username": claims.get("cognito:username") or claims.get("username") or username,
        "sub": claims.get("sub"),
        "groups": groups,
        "expires_at": _iso(claims.get("exp")),
        "api_url": ctx.api_url,
        "source": source,
    }
    if args.json:
        ctx.console.result(json.dumps(view))
        return EXIT_OK
    rows = [
        ("User", view["username"] or "-"),
        ("Sub", view["sub"] or "-"),
        ("Groups", ", ".join(groups) or "none"),
        ("Expires", _expiry(claims.get("exp"), renewable)),
        ("API", ctx.api_url),
        ("Token", source),
    ]
    ctx.console.result("\n".join(f"{label:<10} {value}" for label, value in rows))
    return EXIT_OK


def _iso(exp: Any) -> str | None:
    if not isinstance(exp, int | float):
        return None
    return datetime.fromtimestamp(exp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _expiry(exp: Any, renewable: bool) -> str:
    when = _iso(exp)
    if when is None:
        return "unknown (the token has no exp claim)"
    left = float(exp) - time.time()
    if left > 0:
        return f"{when} (in {human_duration(left)})"
    if renewable:
        return f"{when} (expired: renewed with the refresh token on the next call)"
    return f"{when} (expired)"
