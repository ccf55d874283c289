"""The Lambda functions' lock (src/requirements.txt) is complete, and the venv tests it.

`sam build` installs exactly the lock into each artifact; `make venv` installs the same versions
into .venv as constraints. If the two drifted, the tests would pass on versions that never ship.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
LOCK = SRC / "requirements.txt"


def _lines(text: str) -> list[str]:
    """Logical requirement lines: comments dropped, backslash continuations joined."""
    logical, current = [], ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#"):
            continue
        line = raw.rstrip()
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            logical.append(current.strip())
        current = ""
    return logical


def _parse_lock() -> dict[str, tuple[Version, list[str]]]:
    """{canonical name: (pinned version, hashes)} from the lock."""
    locked: dict[str, tuple[Version, list[str]]] = {}
    for line in _lines(LOCK.read_text()):
        spec, *options = line.split()
        requirement = Requirement(spec)
        (pin,) = requirement.specifier
        assert pin.operator == "==", f"not an exact pin: {line}"
        hashes = [o.removeprefix("--hash=sha256:") for o in options if o.startswith("--hash=")]
        assert len(hashes) == len(options), f"unexpected option in: {line}"
        name = canonicalize_name(requirement.name)
        assert name not in locked, f"{name} locked twice"
        locked[name] = (Version(pin.version), hashes)
    return locked


LOCKED = _parse_lock()


def test_every_locked_package_is_pinned_exactly_with_a_sha256_hash() -> None:
    # Given the lock
    # Then each package has one exact version and at least one 64-hex-digit SHA-256
    assert LOCKED
    for name, (_, hashes) in LOCKED.items():
        assert hashes, f"{name} has no --hash"
        for digest in hashes:
            assert len(digest) == 64 and int(digest, 16) >= 0, f"{name}: bad hash {digest}"


@pytest.mark.parametrize("name", sorted(LOCKED))
def test_the_venv_runs_the_locked_version(name: str) -> None:
    # Given a package the functions ship
    # Then the venv the tests run in holds that very version
    installed = Version(importlib.metadata.version(name))
    assert installed == LOCKED[name][0], (
        f"{name}: venv has {installed}, the artifact ships {LOCKED[name][0]}: run `make venv`"
    )


def test_the_lock_is_closed_under_dependencies() -> None:
    # Given each locked package's own requirements (extras not asked for, markers evaluated)
    # Then each one is locked too, at a version it accepts
    for name, (version, _) in LOCKED.items():
        for spec in importlib.metadata.requires(name) or []:
            requirement = Requirement(spec)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            dependency = canonicalize_name(requirement.name)
            assert dependency in LOCKED, f"{name}=={version} needs {spec}, which is not locked"
            assert requirement.specifier.contains(LOCKED[dependency][0], prereleases=True), (
                f"{name}=={version} needs {spec}; the lock has {LOCKED[dependency][0]}"
            )


def test_the_lock_packages_boto3_with_the_version_sam_cli_pins() -> None:
    # Given aws-sam-cli, installed in the same venv, which pins boto3 exactly
    pins = [
        Requirement(spec)
        for spec in importlib.metadata.requires("aws-sam-cli") or []
        if canonicalize_name(Requirement(spec).name) == "boto3"
    ]

    # Then boto3 and its closure are packaged with the functions (the runtime's copy lags), at
    # the version SAM accepts, so one venv can hold both
    assert {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"} <= (
        LOCKED.keys()
    )
    assert pins, "aws-sam-cli no longer requires boto3: check its pin by hand"
    for pin in pins:
        assert pin.specifier.contains(LOCKED["boto3"][0]), f"aws-sam-cli wants {pin}"


def _third_party_imports(root: Path) -> set[str]:
    """Top-level modules the code imports at run time (type-checking-only imports excluded)."""
    ours = {p.name for p in root.iterdir() if (p / "__init__.py").exists()}
    found: set[str] = set()
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        skipped = {
            id(child)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
            for stmt in node.body
            for child in ast.walk(stmt)
        }
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - ours - set(sys.stdlib_module_names) - {"__future__"}


def test_everything_the_functions_import_is_locked() -> None:
    # Given the third-party modules src/ imports at run time
    modules = _third_party_imports(SRC)
    distributions = importlib.metadata.packages_distributions()

    # Then each comes from a locked distribution
    assert {"aws_lambda_powertools", "pydantic", "boto3", "botocore"} <= modules
    for module in sorted(modules):
        names = {canonicalize_name(d) for d in distributions.get(module, [])}
        assert names & LOCKED.keys(), f"src/ imports {module} (from {names or '?'}): lock it"
