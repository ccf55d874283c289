"""``python -m bench [NAME ...]``: run the benchmarks (all by default) and print their figures.

Benchmarks report; they never fail on time. The exit status is non-zero only when a benchmark
could not run at all (it crashed), after every other one has run.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from bench import calls, coldstart, e2e, hashing
from bench._common import FAKE_AWS, machine, use_code_root

README = Path(__file__).resolve().parent / "README.md"
_START = "<!-- figures:start -->"
_END = "<!-- figures:end -->"

BENCHES: dict[str, tuple[Callable[[], None], str]] = {
    coldstart.NAME: (coldstart.main, "import time of each handler, as a ratio to boto3"),
    calls.NAME: (calls.main, "AWS requests per upload and cost per million uploads"),
    hashing.NAME: (hashing.main, "streaming hash throughput and worker memory, 64 MiB and 1 GiB"),
    e2e.NAME: (e2e.main, "uploads/s and PUT-to-terminal latency on the local stack"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run (default: all): {', '.join(BENCHES)}",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--record",
        action="store_true",
        help="also write the figures into bench/README.md (all benchmarks must run)",
    )
    args = parser.parse_args(argv)
    if args.list:
        for name, (_, what) in BENCHES.items():
            print(f"{name:10} {what}")
        return 0
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    if args.record and args.names and set(args.names) != set(BENCHES):
        parser.error("--record records a whole run: name no benchmark")
    names = args.names or list(BENCHES)
    if not args.record:
        return _run(names)
    tee = _Tee(sys.stdout)
    sys.stdout = tee
    try:
        status = _run(names)
    finally:
        sys.stdout = tee.out
    if status == 0:
        record(tee.text())
        print(f"recorded in {README}")
    return status


def _run(names: Sequence[str]) -> int:
    use_code_root()
    # Nothing here may reach a real AWS account, whatever the caller's environment holds.
    os.environ.update(FAKE_AWS)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)

    facts = machine()
    print("machine: " + "; ".join(f"{k} {v}" for k, v in facts.items()), flush=True)
    crashed = []
    for name in names:
        run, what = BENCHES[name]
        print(f"\n=== {name}: {what}", flush=True)
        started = time.perf_counter()
        try:
            run()
        except Exception:
            traceback.print_exc()
            crashed.append(name)
        print(f"({name} took {time.perf_counter() - started:.0f} s)", flush=True)
    print("\nload average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if crashed:
        print(f"\ncrashed: {', '.join(crashed)}", file=sys.stderr)
        return 1
    return 0


class _Tee(io.TextIOBase):
    """Writes through to the terminal and keeps a copy (for --record)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._copy = io.StringIO()

    def write(self, text: str) -> int:
        self._copy.write(text)
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()

    def text(self) -> str:
        return self._copy.getvalue()


def record(output: str, readme: Path = README) -> None:
    """Replace the figures between the markers in bench/README.md with this run's output."""
    text = readme.read_text()
    start, end = text.index(_START) + len(_START), text.index(_END)
    stamp = time.strftime("%Y-%m-%d %H:%M %Z")
    body = f"\nRecorded {stamp} by `python -m bench --record`:\n\n```text\n{output.strip()}\n```\n"
    readme.write_text(text[:start] + body + text[end:])


if __name__ == "__main__":
    sys.exit(main())
