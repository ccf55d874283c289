"""`onecopy`: the command line for the onecopy API. Subcommands live in onecopy_cli/commands/."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO
from urllib.parse import urlsplit

from onecopy_cli import __version__
from onecopy_cli.api import DEFAULT_API_URL, Api, ApiClient, CliError, NotSignedIn
from onecopy_cli.commands import COMMANDS
from onecopy_cli.console import Console
from onecopy_cli.context import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_SIGNED_IN,
    EXIT_USAGE,
    Context,
)
from onecopy_cli.credentials import TOKEN_ENV
from onecopy_cli.lambda_client import Invoker, LambdaInvoker

API_URL_ENV = "ONECOPY_API_URL"


EPILOG = f"""\
Sign in first: `onecopy login` asks for your user name and password (or reads
$ONECOPY_USERNAME and $ONECOPY_PASSWORD) and keeps the tokens, per API URL, in
$XDG_CONFIG_HOME/onecopy/tokens.json (else ~/.config/onecopy/tokens.json), refreshing them
as needed. ${TOKEN_ENV} (a raw token, for CI) overrides the cache and is never refreshed.

exit status: 0 ok, 1 failed, 2 usage error, {EXIT_NOT_SIGNED_IN} not signed in (or the sign-in
expired), 130 interrupted.

Run `onecopy COMMAND --help` for a command's options.
"""


def build_parser() -> argparse.ArgumentParser:
    # --api is accepted before and after the subcommand; SUPPRESS keeps the later one from
    # overwriting the earlier with a default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--api",
        metavar="URL",
        default=argparse.SUPPRESS,
        help=f"the onecopy API (default: ${API_URL_ENV}, else {DEFAULT_API_URL})",
    )
    parser = argparse.ArgumentParser(
        prog="onecopy",
        parents=[common],
        description="Store files once: upload them to onecopy, see what became of them, "
        "download them again.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subcommands, common)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    make_client: Callable[..., Api] = ApiClient,
    make_invoker: Callable[..., Invoker] = LambdaInvoker,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    environ: dict[str, str] | None = None,
) -> int:
    """Run one command; the return value is the exit status (see EPILOG)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    env = os.environ if environ is None else environ
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's own exit: --help, --version, or a usage error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    api_url = getattr(args, "api", None) or env.get(API_URL_ENV) or DEFAULT_API_URL
    if not _is_http_url(api_url):
        parser.print_usage(err)
        err.write(f"onecopy: error: --api must be an http(s) URL, not {api_url!r}\n")
        return EXIT_USAGE

    console = Console(out, err)
    ctx = Context(
        api_url=api_url,
        console=console,
        make_client=make_client,
        color=_color(out, env),
        environ=env,
        make_invoker=make_invoker,
    )
    run: Callable[[argparse.Namespace, Context], int] = args.run
    try:
        return run(args, ctx)
    except NotSignedIn as exc:
        console.error(str(exc))
        return EXIT_NOT_SIGNED_IN
    except CliError as exc:
        console.error(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        console.error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `onecopy ... | head`: the reader left; say nothing more, like other Unix tools.
        _silence(out)
        return EXIT_FAILED
    finally:
        ctx.close()


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _color(stream: TextIO, env: dict[str, str] | os._Environ[str]) -> bool:
    # https://no-color.org, and no escapes for dumb terminals or pipes.
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _silence(stream: TextIO) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
    except (OSError, ValueError):
        pass
