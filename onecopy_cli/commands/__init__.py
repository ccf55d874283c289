"""One module per subcommand. Each has `register(subcommands, common)`, which adds its parser and
sets `run(args, ctx) -> exit code` as the parser's default; main.py lists them in COMMANDS."""

from onecopy_cli.commands import admin as admin
from onecopy_cli.commands import download as download
from onecopy_cli.commands import hashes as hashes
from onecopy_cli.commands import info as info
from onecopy_cli.commands import login as login
from onecopy_cli.commands import logout as logout
from onecopy_cli.commands import ls as ls
from onecopy_cli.commands import rm as rm
from onecopy_cli.commands import stats as stats
from onecopy_cli.commands import status as status
from onecopy_cli.commands import upload as upload
from onecopy_cli.commands import whoami as whoami

COMMANDS = (login, whoami, logout, upload, ls, status, info, download, rm, stats, hashes, admin)
