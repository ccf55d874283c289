"""bench._common.cpu_s: the CPU of a process tree, children included."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench._common import cpu_s

pytestmark = pytest.mark.unit

_BURN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"


def test_a_tree_counts_the_cpu_of_its_live_and_its_reaped_children() -> None:
    # Given a parent that runs one child to completion (reaped) and keeps another burning
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys\n"
            f"subprocess.run([sys.executable, '-c', {_BURN!r}], check=True)\n"
            f"live = subprocess.Popen([sys.executable, '-c', {_BURN!r} + 'input()'],"
            " stdin=subprocess.PIPE)\n"
            "print('ready', flush=True)\n"
            "sys.stdin.readline()\n"
            "live.communicate(b'\\n')\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "ready"
        time.sleep(0.5)  # the live child has finished burning by now

        # When the tree's CPU is read
        total = cpu_s(parent.pid).tree

        # Then both children's burns are in it (0.6 s), with the interpreters' start-up
        assert total >= 0.55
    finally:
        assert parent.stdin is not None
        parent.stdin.write("\n")
        parent.stdin.close()
        parent.wait(30)


def test_a_process_that_is_not_there_counts_nothing() -> None:
    assert cpu_s(2**22 + 1).tree == 0.0  # above the largest pid_max: never a live process
