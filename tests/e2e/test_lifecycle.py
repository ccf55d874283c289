"""`onecopy-local` starts on the ports it prints and stops cleanly on Ctrl-C."""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.localstack import start_stack, stop_process

pytestmark = pytest.mark.e2e


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # a zombie has exited; only its parent's bookkeeping remains


def _refuses_connections(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as sock:
        return sock.connect_ex((parts.hostname or "", parts.port or 80)) != 0


def test_ctrl_c_stops_the_api_the_emulator_and_the_workers_and_exits_0(tmp_path: Path) -> None:
    # Given a running stack with one worker, serving on the URLs its banner printed
    with start_stack(tmp_path, "--workers", "1") as stack:
        assert requests.get(f"{stack.api_url}/auth/config", timeout=10).status_code == 200
        assert requests.get(f"{stack.api_url}/no-such-route", timeout=10).status_code == 401
        assert len(stack.worker_pids) == 1

        # When it gets SIGINT, as from Ctrl-C in a terminal
        code = stop_process(stack.process, signal.SIGINT)

        # Then it exits 0 after stopping everything it started
        assert code == 0, stack.log()
        assert "Stopped." in stack.log()
        assert all(_gone(pid) for pid in stack.worker_pids)
        assert _refuses_connections(stack.api_url)
        assert _refuses_connections(stack.endpoint_url)
