"""Cold start: how long each handler module takes to import in a fresh interpreter.

Each figure is the median of N fresh interpreters timing ``import <module>`` with perf_counter
(interpreter start-up excluded), with the functions' environment set (their settings are
validated at import), and our code precompiled as `make build` ships it. The ratio is to
``import boto3`` alone, which every function pays anyway; the target is at most 1.5x. One
``-X importtime`` run per handler then lists what the handler adds on top of boto3: the heaviest
modules by self time, and self time summed by package.

Then what packaging boto3 with the functions costs (src/requirements.txt locks it, because the
runtime's copy lags): each handler imported from a copy of the `sam build` artifact, in a clean
interpreter with the code directory first on the path as Lambda puts it, (1) with boto3 and its
closure taken out, so the runtime's copy (compiled) is used, as before the lock; (2) as built,
so the artifact's own boto3 is used, compiled from source at every cold start since /var/task is
read-only; (3) as built plus .pyc files compiled in: what `make build` ships.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bench._common import ROOT, SRC, child_env, median, table, use_code_root
from scripts.precompile import precompile

NAME = "coldstart"
BASELINE = "boto3"
HANDLERS = ("handlers.api", "handlers.worker", "handlers.reconcile", "handlers.collector")
# The least a handler on the same libraries imports (bench/floor/README.md): a floor over the
# target means no handler built on those libraries can meet it, whatever its own code does.
FLOORS = ("floor_api", "floor_worker", "floor_api_core", "floor_worker_core")
FLOOR_DIR = Path(__file__).parent / "floor"
TARGET_RATIO = 1.5
# Lambda's Python runtime ships boto3 without awscrt; this venv has it (aws-sam-cli pulls it in)
# and boto3.s3.transfer imports it when present, so it is hidden to import what Lambda imports.
_NO_CRT = "import sys\nsys.modules['awscrt'] = None\n"
# Prints the import's seconds, and how many tracing SDK modules it brought (the X-Ray figures).
_TIMER = _NO_CRT + (
    "import sys, time\n_s = time.perf_counter()\nimport {module}\n"
    "elapsed = time.perf_counter() - _s\n"
    "sdk = [m for m in sys.modules if m.split('.')[0] in ('aws_xray_sdk', 'opentelemetry')]\n"
    "print(elapsed, len(sdk))\n"
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
        holdings_table="onecopy-holdings",
        user_pool_id="us-east-1_onecopy",
        user_pool_client_id="onecopyappclient",
        stats_shards=int(parameter_default("StatsShards")),
        queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/onecopy-ingest",
        dlq_url="https://sqs.us-east-1.amazonaws.com/123456789012/onecopy-ingest-dlq",
        queue_arn="arn:aws:sqs:us-east-1:123456789012:onecopy-ingest",
        dlq_arn="arn:aws:sqs:us-east-1:123456789012:onecopy-ingest-dlq",
        page_token_secret_arn=(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:onecopy-page-token-AbCdEf"
        ),
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


def _timed_import(module: str, env: dict[str, str]) -> tuple[float, int]:
    """The import's seconds, and the tracing SDK modules it imported."""
    elapsed, sdk = _python(_TIMER.format(module=module), env).stdout.split()
    return float(elapsed), int(sdk)


def time_import(module: str, env: dict[str, str]) -> float:
    return _timed_import(module, env)[0]


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
    runs: int = 10, modules: Sequence[str] = (*HANDLERS, *FLOORS), importtime_runs: int = 3
) -> list[ImportFigures]:
    with tempfile.TemporaryDirectory(prefix="onecopy-coldstart-") as tmp:
        return _run(Path(tmp), runs, modules, importtime_runs)


def _run(tmp: Path, runs: int, modules: Sequence[str], importtime_runs: int) -> list[ImportFigures]:
    env = function_env()
    # Our code as `make build` ships it, .pyc files included (the libraries' come from the
    # venv's own install); importing src/ itself would compile it at every run, as the
    # environment may forbid writing .pyc files (PYTHONDONTWRITEBYTECODE).
    code, floors = tmp / "src", tmp / "floor"
    shutil.copytree(SRC, code, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(FLOOR_DIR, floors, ignore=shutil.ignore_patterns("__pycache__"))
    precompile(code)
    precompile(floors)
    env["PYTHONPATH"] = os.pathsep.join([str(code), str(floors), str(ROOT)])
    every = [BASELINE, *modules]
    for module in every:  # warm the file cache outside the measured runs
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
    if any(f.module in FLOORS for f in figures):
        out.append(
            "floor_*: the least a handler built on the same libraries imports, no onecopy code "
            "(bench/floor/README.md); a floor that misses the target cannot be met by any "
            "handler built that way."
        )
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


# --- what packaging boto3 with the functions costs ----------------------------------------------

# The dependency closure of boto3 (extras not asked for): what Lambda's Python runtime provides.
RUNTIME_PACKAGES = "boto3"
LAYOUTS = ("runtime boto3", "packaged boto3", "packaged, precompiled")
# Runs in `python -I -S -B`: no site-packages, no PYTHON* variables, no .pyc written (Lambda's
# /var/task is read-only, so a cold start cannot cache what it compiles). argv: module, dirs.
_LAYOUT_TIMER = (
    "import sys, time\n"
    "module, *dirs = sys.argv[1:]\n"
    "sys.path[:0] = dirs\n"
    "_s = time.perf_counter()\n"
    "__import__(module)\n"
    "elapsed = time.perf_counter() - _s\n"
    "origin = sys.modules['botocore'].__file__\n"
    "print(elapsed, origin)\n"
)


@dataclass(frozen=True)
class Layouts:
    """Import times of one module under each layout of the code and its dependencies."""

    module: str
    seconds: dict[str, list[float]]


def artifact_dir(scratch: Path, build_dir: Path | None = None) -> Path:
    """A function directory `sam build` made (all functions share CodeUri src/, so any one).

    ``make build`` leaves one in .aws-sam/build; when there is none, or it was built from
    another lock than src/requirements.txt, one is built into ``scratch``.
    """
    build_dir = build_dir or ROOT / ".aws-sam" / "build"
    built_lock = build_dir / "ApiFunction" / "requirements.txt"
    if built_lock.exists() and built_lock.read_text() == (SRC / "requirements.txt").read_text():
        return build_dir / "ApiFunction"
    build_dir = scratch / "build"
    bin_dir = Path(sys.executable).parent
    done = subprocess.run(
        [str(bin_dir / "sam"), "build", "--build-dir", str(build_dir), "--no-cached"],
        cwd=ROOT,
        # sam checks for a `python3.13` binary on PATH, which the venv provides.
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SAM_CLI_TELEMETRY": "0"},
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"sam build failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return build_dir / "ApiFunction"


def _closure(name: str) -> set[str]:
    """A distribution and everything it requires (markers evaluated, no extras), by name."""
    todo, seen = [name], set[str]()
    while todo:
        current = canonicalize_name(todo.pop())
        if current in seen:
            continue
        seen.add(current)
        for spec in importlib.metadata.requires(current) or []:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def _distribution_files(root: Path, names: set[str]) -> dict[str, list[Path]]:
    """{distribution: the files its RECORD lists} for the distributions of ``names`` in root."""
    files: dict[str, list[Path]] = {}
    for info in root.glob("*.dist-info"):
        name = canonicalize_name(info.name.removesuffix(".dist-info").rsplit("-", 1)[0])
        if name in names:
            record = (info / "RECORD").read_text().splitlines()
            files[name] = [root / line.rsplit(",", 2)[0] for line in record if line]
    return files


def _host_extension(code: Path) -> None:
    """Swap pydantic-core's compiled extension for this machine's build of the same version.

    The artifact is built for the Lambda's arm64 CPU; the venv holds the same pydantic-core for
    this machine. Only the .so differs (the artifact test checks that), and it is not what
    packaging boto3 changes.
    """
    venv_core = Path(str(importlib.metadata.distribution("pydantic-core").locate_file("")))
    version = importlib.metadata.version("pydantic-core")
    assert (code / f"pydantic_core-{version}.dist-info").is_dir(), "not the venv's pydantic-core"
    for extension in (code / "pydantic_core").glob("_pydantic_core.*.so"):
        extension.unlink()
    for extension in (venv_core / "pydantic_core").glob("_pydantic_core.*.so"):
        shutil.copy2(extension, code / "pydantic_core" / extension.name)


def prepare_layouts(artifact: Path, workdir: Path) -> dict[str, list[Path]]:
    """The import path of each layout, in Lambda's order: the code directory first.

    - runtime boto3: the artifact without boto3's closure, then a directory standing for the
      runtime's site-packages (boto3's closure from this venv, with its compiled .pyc files, as
      the runtime image has them);
    - packaged boto3: the artifact as `sam build` alone makes it (no .pyc);
    - packaged, precompiled: the same, with .pyc files compiled in as `make build` ships it
      (scripts/precompile.py).
    """
    runtime_names = _closure(RUNTIME_PACKAGES)
    runtime = workdir / "runtime"
    runtime.mkdir()
    for name in sorted(runtime_names):
        dist = importlib.metadata.distribution(name)
        for top in {f.parts[0] for f in dist.files or [] if f.parts}:
            if top not in ("..", "__pycache__") and not (runtime / top).exists():
                (runtime / top).symlink_to(Path(str(dist.locate_file(top))))
    ignore = shutil.ignore_patterns("__pycache__")
    packaged, precompiled, without = (workdir / n for n in ("packaged", "precompiled", "without"))
    for copy in (packaged, precompiled, without):
        shutil.copytree(artifact, copy, ignore=ignore)
        _host_extension(copy)
    for files in _distribution_files(without, runtime_names).values():
        for path in files:
            path.unlink(missing_ok=True)
    for directory in sorted(without.rglob("*"), key=lambda p: -len(p.parts)):
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
    precompile(precompiled)
    return {
        "runtime boto3": [without, runtime],
        "packaged boto3": [packaged, runtime],
        "packaged, precompiled": [precompiled, runtime],
    }


def _time_layout(module: str, dirs: list[Path], env: dict[str, str]) -> tuple[float, str]:
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", _NO_CRT + _LAYOUT_TIMER, module, *map(str, dirs)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"importing {module} failed:\n{done.stderr[-4000:]}")
    seconds, origin = done.stdout.split()
    return float(seconds), origin


def run_packaging(
    runs: int = 5, modules: Sequence[str] = HANDLERS, artifact: Path | None = None
) -> list[Layouts]:
    """Import times of boto3 and each handler under each layout (round-robin, N runs each)."""
    env = function_env()
    every = [BASELINE, *modules]
    with tempfile.TemporaryDirectory(prefix="onecopy-layouts-") as tmp:
        layouts = prepare_layouts(artifact or artifact_dir(Path(tmp)), Path(tmp))
        for layout, (code, runtime) in layouts.items():  # botocore is where the layout says
            _, origin = _time_layout(BASELINE, [code, runtime], env)
            expected = runtime if layout == "runtime boto3" else code
            assert origin.startswith(f"{expected}/"), (layout, origin)
        times = {m: {layout: list[float]() for layout in layouts} for m in every}
        for _ in range(runs):
            for module in every:
                for layout, dirs in layouts.items():
                    times[module][layout].append(_time_layout(module, dirs, env)[0])
    return [Layouts(m, times[m]) for m in every]


def report_packaging(figures: Sequence[Layouts]) -> str:
    n = len(figures[0].seconds[LAYOUTS[0]])
    rows = []
    for f in figures:
        today = median(f.seconds[LAYOUTS[0]])
        rows.append(
            (
                f"import {f.module}",
                *(median(f.seconds[layout]) * 1000 for layout in LAYOUTS),
                *(f"{median(f.seconds[layout]) / today:.2f}x" for layout in LAYOUTS[1:]),
                # what `make build` ships against what `sam build` alone does
                f"{median(f.seconds[LAYOUTS[2]]) / median(f.seconds[LAYOUTS[1]]):.2f}x",
            )
        )
    return table(
        f"Cold start by packaging (median ms of {n}; fresh `python -I -S -B`, code dir first "
        "as on Lambda, no .pyc written)",
        [
            "module",
            *(f"{layout} ms" for layout in LAYOUTS),
            "packaged/runtime",
            "precompiled/runtime",
            "precompiled/packaged",
        ],
        rows,
    )


# --- what X-Ray tracing costs a cold start ----------------------------------------------------

# What Lambda adds to a function's environment when the template's Tracing parameter is Active.
TRACED_ENV = {
    "_X_AMZN_TRACE_ID": (
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    ),
    "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
    "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
}


@dataclass(frozen=True)
class TracingFigures:
    module: str
    untraced_s: list[float]
    traced_s: list[float]
    sdk_modules: int  # tracing SDK modules imported, traced or not (0: Lambda's segments only)


def run_tracing(runs: int = 10, modules: Sequence[str] = HANDLERS) -> list[TracingFigures]:
    """Each handler imported with and without the environment Tracing: Active gives it."""
    plain = function_env()
    traced = {**plain, **TRACED_ENV}
    figures = []
    for module in modules:
        _timed_import(module, plain)  # compile .pyc files outside the measured runs
        untraced_s, traced_s, sdk = [], [], 0
        for _ in range(runs):  # alternating, so drift in machine load hits both alike
            elapsed, found = _timed_import(module, plain)
            untraced_s.append(elapsed)
            sdk = max(sdk, found)
            elapsed, found = _timed_import(module, traced)
            traced_s.append(elapsed)
            sdk = max(sdk, found)
        figures.append(TracingFigures(module, untraced_s, traced_s, sdk))
    return figures


def report_tracing(figures: Sequence[TracingFigures]) -> str:
    rows = [
        (
            f"import {f.module}",
            median(f.untraced_s) * 1000,
            median(f.traced_s) * 1000,
            f"{median(f.traced_s) / median(f.untraced_s):.2f}x",
            f.sdk_modules,
        )
        for f in figures
    ]
    n = len(figures[0].untraced_s)
    return table(
        f"X-Ray: import time untraced and with Tracing: Active's environment (median of {n}; "
        "tracing uses Lambda's own segments, no SDK is imported)",
        ["module", "untraced ms", "traced ms", "traced vs not", "SDK modules"],
        rows,
    )


def main() -> None:
    print(report(run()))
    print(report_tracing(run_tracing()))
    print(report_packaging(run_packaging()))
