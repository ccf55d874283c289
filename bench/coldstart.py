"""Cold start: how long each handler module takes to import in a fresh interpreter.

Each figure is the median of N fresh interpreters timing ``import <module>`` with perf_counter
(interpreter start-up excluded), with the functions' environment set (their settings are
validated at import). The ratio is to ``import boto3`` alone, which every function pays anyway;
the target is at most 1.5x. One ``-X importtime`` run per handler then lists what the handler
adds on top of boto3: the heaviest modules by self time, and self time summed by package.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from bench._common import ROOT, child_env, median, table, use_code_root

NAME = "coldstart"
BASELINE = "boto3"
HANDLERS = ("handlers.api", "handlers.worker", "handlers.reconcile")
TARGET_RATIO = 1.5
# Lambda's Python runtime ships boto3 without awscrt; this venv has it (aws-sam-cli pulls it in)
# and boto3.s3.transfer imports it when present, so it is hidden to import what Lambda imports.
_NO_CRT = "import sys\nsys.modules['awscrt'] = None\n"
_TIMER = _NO_CRT + (
    "import time\n_s = time.perf_counter()\nimport {module}\nprint(time.perf_counter() - _s)\n"
)
_IMPORTTIME = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


@dataclass(frozen=True)
class ImportFigures:
    module: str
    seconds: list[float]
    offenders: Offenders | None  # what the module adds after boto3; None for boto3 itself

    @property
    def median_s(self) -> float:
        return median(self.seconds)


def function_env() -> dict[str, str]:
    """The functions' settings, as the local stack gives them (names need not exist)."""
    use_code_root()
    from onecopy_local.resources import Resources, parameter_default

    resources = Resources(
        region="us-east-1",
        bucket="onecopy-files",
        uploads_table="onecopy-uploads",
        contents_table="onecopy-contents",
        stats_table="onecopy-stats",
        stats_shards=int(parameter_default("StatsShards")),
        queue_url="",
        dlq_url="",
    )
    return child_env(resources.function_env())


def _python(code: str, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH holds src/ first, as Lambda's code root is first on its path.
    done = subprocess.run(
        [sys.executable, *flags, "-c", code],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"importing failed:\n{done.stderr[-4000:]}")
    return done


def time_import(module: str, env: dict[str, str]) -> float:
    return float(_python(_TIMER.format(module=module), env).stdout.strip())


@dataclass(frozen=True)
class Offenders:
    """What importing a handler adds after boto3, from one ``-X importtime`` run (self times)."""

    by_package: list[tuple[str, float]]
    by_module: list[tuple[str, float]]
    total_s: float


def offenders(module: str, env: dict[str, str], runs: int = 3, top: int = 8) -> Offenders:
    """Each module's least self time over a few runs: a busy machine only ever adds time."""
    best: dict[str, float] = {}
    for _ in range(runs):
        for name, seconds in _self_times(module, env).items():
            best[name] = min(seconds, best.get(name, seconds))
    by_package: dict[str, float] = defaultdict(float)
    for name, seconds in best.items():
        by_package[name.split(".")[0]] += seconds
    return Offenders(_heaviest(by_package, top), _heaviest(best, top), sum(best.values()))


def _heaviest(seconds: dict[str, float], top: int) -> list[tuple[str, float]]:
    return sorted(seconds.items(), key=lambda item: -item[1])[:top]


def _self_times(module: str, env: dict[str, str]) -> dict[str, float]:
    code = f"{_NO_CRT}import {BASELINE}\nimport {module}\n"
    stderr = _python(code, env, "-X", "importtime").stderr
    times: dict[str, float] = {}
    after_baseline = False
    for line in stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if not match:
            continue
        self_us, _, indent, name = match.groups()
        if after_baseline:
            times[name] = int(self_us) / 1e6
        elif name == BASELINE and len(indent) == 1:
            after_baseline = True  # boto3's own (top-level) line closes its import
    return times


def run(
    runs: int = 10, modules: Sequence[str] = HANDLERS, importtime_runs: int = 3
) -> list[ImportFigures]:
    env = function_env()
    every = [BASELINE, *modules]
    for module in every:  # compile .pyc files once, outside the measured runs
        time_import(module, env)
    times: dict[str, list[float]] = {m: [] for m in every}
    for _ in range(runs):
        for module in every:  # round-robin, so drift in machine load hits all alike
            times[module].append(time_import(module, env))
    return [
        ImportFigures(m, times[m], None if m == BASELINE else offenders(m, env, importtime_runs))
        for m in every
    ]


def report(figures: Sequence[ImportFigures]) -> str:
    base = next(f for f in figures if f.module == BASELINE)
    rows = []
    for f in figures:
        ratio = f.median_s / base.median_s
        verdict = "" if f.module == BASELINE else ("ok" if ratio <= TARGET_RATIO else "MISSES")
        rows.append(
            (
                f"import {f.module}",
                f.median_s * 1000,
                min(f.seconds) * 1000,
                max(f.seconds) * 1000,
                f"{ratio:.2f}x",
                # Minimums resist a busy machine better than medians do.
                f"{min(f.seconds) / min(base.seconds):.2f}x",
                verdict,
            )
        )
    n = len(figures[0].seconds)
    out = [
        table(
            f"Cold start: import time in a fresh interpreter (median of {n}; target <= "
            f"{TARGET_RATIO}x boto3)",
            ["module", "median ms", "min ms", "max ms", "vs boto3", "min vs min", "target"],
            rows,
        )
    ]
    for f in figures:
        if f.offenders is None:
            continue
        packages = ", ".join(f"{name} {sec * 1000:.0f}" for name, sec in f.offenders.by_package)
        out.append(
            table(
                f"What {f.module} adds after boto3: {f.offenders.total_s * 1000:.0f} ms of self "
                "time (-X importtime, least of 3 runs per module), heaviest modules",
                ["module", "ms"],
                [(name, sec * 1000) for name, sec in f.offenders.by_module],
            )
        )
        out.append(f"by package (ms): {packages}")
    return "\n".join(out)


def main() -> None:
    print(report(run()))
