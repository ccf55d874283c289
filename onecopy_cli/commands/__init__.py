"""One module per subcommand. Each has `register(subcommands, common)`, which adds its parser and
sets `run(args, ctx) -> exit code` as the parser's default; main.py lists them in COMMANDS."""

from onecopy_cli.commands import status as status
from onecopy_cli.commands import upload as upload

COMMANDS = (upload, status)
