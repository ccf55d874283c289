"""scripts/precompile.py: what `make build` adds to `sam build` (the artifact test checks the
result on a real build; these check what it refuses)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from scripts.precompile import check_interpreter, precompile, precompile_build, runtime


def test_the_functions_runtime_is_the_interpreter_make_uses() -> None:
    # Given the runtime template.yaml gives the functions, Then this (make's) interpreter is it
    check_interpreter(runtime())


def test_another_python_version_is_refused_rather_than_shipping_pyc_files_lambda_ignores() -> None:
    with pytest.raises(SystemExit, match=r"the functions run python3\.12"):
        check_interpreter("python3.12")


def test_an_empty_build_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="run `sam build` first"):
        precompile_build(tmp_path)


def test_a_file_that_does_not_compile_fails_the_build(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def (:\n")
    with pytest.raises(SystemExit, match="do not compile"):
        precompile(tmp_path)


def test_each_module_gets_an_unchecked_hash_pyc(tmp_path: Path) -> None:
    # Given a function directory with a package
    function = tmp_path / "build" / "SomeFunction"
    (function / "pkg").mkdir(parents=True)
    sources = [function / "handler.py", function / "pkg" / "__init__.py"]
    for source in sources:
        source.write_text("VALUE = 1\n")

    # When the build is precompiled
    assert precompile_build(tmp_path / "build") == [function]

    # Then each module has a .pyc that Python loads without checking its source's time
    for source in sources:
        pyc = Path(importlib.util.cache_from_source(str(source))).read_bytes()
        assert int.from_bytes(pyc[4:8], "little") == 0b01
