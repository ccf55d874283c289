"""What the benchmarks share: paths, a fake AWS environment, child processes, tables."""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
MIB = 1024 * 1024
GIB = 1024 * MIB

# moto accepts any credentials; these make sure nothing can reach a real account.
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "POWERTOOLS_METRICS_NAMESPACE": "onecopy",
    "POWERTOOLS_SERVICE_NAME": "onecopy",
}
_UNSET = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL")


def use_code_root() -> None:
    """Import the Lambda code the way Lambda does (src/ is its root), and the repo's packages."""
    for path in (str(SRC), str(ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)


@contextmanager
def patched_env(values: dict[str, str | None]) -> Iterator[None]:
    """Set (or, for None, unset) environment variables; restore them all on the way out."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for a child interpreter: fake AWS, src/ and the repo importable."""
    env = {k: v for k, v in os.environ.items() if k not in _UNSET}
    env.update(FAKE_AWS)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(ROOT)])
    env.update(extra or {})
    return env


def run_child(module: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """Run ``python -m module args`` and return the JSON its last stdout line holds."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env or child_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _proc_cpu() -> dict[int, tuple[int, float, float]]:
    """pid -> (ppid, its own CPU seconds, its reaped children's), for every process in /proc."""
    stats: dict[int, tuple[int, float, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:  # gone since the listing
            continue
        # Fields after the parenthesised command (which may itself hold spaces or parentheses).
        fields = raw[raw.rindex(")") + 2 :].split()
        utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
        stats[int(entry.name)] = (int(fields[1]), (utime + stime) / tick, (cutime + cstime) / tick)
    return stats


class Cpu(NamedTuple):
    """CPU seconds (user + system) of a process: its own, and with all its descendants'."""

    own: float
    tree: float


def cpu_s(root: int) -> Cpu:
    """One reading of /proc for a process and its descendants (zeros if it is not there).

    Reaped children are counted in their parent's cutime/cstime, so CPU does not vanish when an
    execution environment or poller exits between two readings.
    """
    stats = _proc_cpu()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1] + stats[pid][2]
        todo += children.get(pid, [])
    return Cpu(stats[root][1] if root in stats else 0.0, total)


@contextmanager
def serve(kind: str, *args: str, env: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """Run ``bench._serve KIND`` in its own process; yield what it reports once it is ready.

    Its output (moto's and the functions' logs) goes to a file, so it can neither block on a
    full pipe nor drown the tables; the file's tail is shown if it fails to start.
    """
    with tempfile.TemporaryDirectory(prefix="onecopy-bench-") as tmp:
        info = Path(tmp) / "info.json"
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "bench._serve", kind, str(info), *args],
                env=env or child_env(),
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 120
            while not info.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-4000:]
                    raise RuntimeError(f"bench._serve {kind} did not start:\n{tail}")
                time.sleep(0.05)
            reported: dict[str, Any] = json.loads(info.read_text())
            reported["pid"] = process.pid
            yield reported
        finally:
            assert process.stdin is not None
            process.stdin.close()  # the server stops when its stdin closes
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def human_size(size: float) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size:g} B"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 100 samples is the 99th smallest)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * pct // 100)))
    return ordered[int(rank) - 1]


_NUMERIC = re.compile(r"[-+]?[\d,.]+(x|%| ?[KMG]?i?B)?|-|")


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: numeric columns right-aligned, text columns left-aligned."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [
        i > 0 and all(_NUMERIC.fullmatch(row[i]) for row in cells[1:]) for i in range(len(widths))
    ]

    def line(row: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if numeric[i] else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([f"\n{title}", line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def machine() -> dict[str, str]:
    """The facts bench/README.md records next to the figures."""
    cpu = "unknown"
    ram = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    return {
        "cores (nproc)": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "ram": ram,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        # Anything else running on the same cores shows up in every figure.
        "load average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
