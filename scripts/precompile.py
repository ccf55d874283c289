"""Compile every built function's Python files to .pyc, so a cold start compiles nothing.

`sam build` ships sources only, and Lambda cannot write .pyc files to /var/task (read-only): a
function built that way compiles botocore, pydantic, Powertools and our own code from source at
every cold start, about two thirds of its import time (bench/README.md, "Cold start by packaging").
`make build` runs this on `.aws-sam/build` right after `sam build`; `sam deploy` then zips the
.pyc files with the sources.

The .pyc files are `unchecked-hash` ones: Python loads them without comparing them with their
source's modification time (which a zip need not keep) or hash. That is safe because `sam build`
rewrites each function directory from scratch, so a .pyc never outlives the source it came from.
Their magic number binds them to one minor version, so the compiling interpreter must be the
functions' runtime (template.yaml's `Runtime`); a mismatch stops the build instead of shipping
.pyc files Lambda would silently ignore.
"""

from __future__ import annotations

import compileall
import py_compile
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / ".aws-sam" / "build"


def runtime() -> str:
    """The Python runtime template.yaml gives every function."""
    from onecopy_local.resources import template

    return str(template()["Globals"]["Function"]["Runtime"])


def check_interpreter(expected: str) -> None:
    running = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if running != expected:
        raise SystemExit(f"precompile: this is {running}; the functions run {expected}")


def precompile(function_dir: Path) -> None:
    """Write an unchecked-hash .pyc next to every .py file under function_dir."""
    compiled = compileall.compile_dir(
        function_dir,
        quiet=1,
        workers=0,  # one per CPU
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    if not compiled:
        raise SystemExit(f"precompile: some files under {function_dir} do not compile")


def precompile_build(build_dir: Path = BUILD_DIR) -> list[Path]:
    """Precompile each function directory `sam build` left in build_dir; returns them."""
    check_interpreter(runtime())
    functions = sorted(d for d in build_dir.iterdir() if d.is_dir() and any(d.rglob("*.py")))
    if not functions:
        raise SystemExit(f"precompile: no built function in {build_dir}; run `sam build` first")
    for function_dir in functions:
        precompile(function_dir)
    return functions


def main(argv: list[str]) -> None:
    build_dir = Path(argv[0]) if argv else BUILD_DIR
    for function_dir in precompile_build(build_dir):
        print(f"precompiled {function_dir.relative_to(build_dir)}")


if __name__ == "__main__":
    main(sys.argv[1:])
