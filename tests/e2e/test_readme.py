"""The README's shell examples run as written, against the local stack, and print what it shows.

A ```bash block right after `<!-- tested -->` is run verbatim: all such blocks, in order, as one
bash script (`set -euo pipefail`, so a failing command fails the test), in an empty directory,
with ONECOPY_API_URL pointing at the session's stack and ONECOPY_PASSWORD set to its users'
password (the README's examples default to http://127.0.0.1:3000 and Onecopy-local-1, `make
run`'s address and password, and honour those variables, as the CLI does). A
```text block right after `<!-- output -->` is what the bash block before it prints: each of its
lines must match one line of that block's output, in order (other lines may come between); `…`
stands for any text.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.localstack import RunningStack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
_FENCE = re.compile(
    r"^<!-- (?P<kind>tested|output) -->\n```(?P<lang>\w+)\n(?P<body>.*?)^```$", re.M | re.S
)
_DONE = "@@ README block {} done @@"


@dataclass
class Example:
    script: str
    output: list[str]


def examples(text: str) -> list[Example]:
    found: list[Example] = []
    for match in _FENCE.finditer(text):
        if match["kind"] == "tested":
            assert match["lang"] == "bash", "a tested block must be ```bash"
            found.append(Example(match["body"], []))
        else:
            assert match["lang"] == "text", "an output block must be ```text"
            assert found and not found[-1].output, "an output block follows a tested block"
            found[-1].output = [line for line in match["body"].splitlines() if line.strip()]
    return found


def _pattern(line: str) -> re.Pattern[str]:
    return re.compile(".*?".join(map(re.escape, line.strip().split("…"))))


def _unmatched(expected: list[str], printed: list[str]) -> list[str]:
    """The expected lines not found, in order, among the printed ones."""
    lines = iter(line.strip() for line in printed)
    return [e for e in expected if not any(_pattern(e).fullmatch(line) for line in lines)]


EXAMPLES = examples(README.read_text())


def test_the_readme_walks_the_whole_flow_in_tested_examples() -> None:
    # Given the README's tested examples
    script = "\n".join(e.script for e in EXAMPLES)

    # Then they sign in, create, PUT, poll, read metadata, download, and read the stats and hashes
    steps = ("/auth/config", "InitiateAuth", "/uploads", "-X PUT", "/uploads/$ID", "/metadata/")
    for step in (*steps, "/download/", "/admin/"):
        assert step in script, f"no tested example uses {step}"
    assert "/admin/stats" in script and "/admin/hashes" in script
    # ... and every call to the API carries a token, but the public /auth/config and the one
    # that shows what happens without
    commands = script.replace("\\\n", " ").splitlines()
    unsigned = [
        command
        for command in commands
        if '"$API/' in command and '-H "$AUTH"' not in command and '-H "$ADMIN"' not in command
    ]
    assert len(unsigned) == 2, unsigned
    assert all("/auth/config" in c or "without a token" in c for c in unsigned), unsigned
    assert all(e.output for e in EXAMPLES), "each tested example shows what it prints"


def test_the_readme_names_every_onecopy_variable() -> None:
    # Given every ONECOPY_* variable the CLI, the local stack and the tests read
    code = [ROOT / "onecopy_cli", ROOT / "onecopy_local", ROOT / "tests"]
    variables = {
        name
        for directory in code
        for path in directory.rglob("*.py")
        for name in re.findall(r"\bONECOPY_[A-Z0-9_]+\b", path.read_text())
    }

    # Then the README documents each one
    text = README.read_text()
    assert variables
    assert sorted(v for v in variables if f"`{v}`" not in text) == []


def test_the_readme_examples_run_as_written(local_stack: RunningStack, tmp_path: Path) -> None:
    # Given the tested examples, each followed by a line marking its end in the output
    script = "".join(
        f"{example.script}\necho '{_DONE.format(n)}'\n" for n, example in enumerate(EXAMPLES)
    )
    (tmp_path / "readme.sh").write_text(script)
    api_url = local_stack.api_url

    # When bash runs them in an empty directory against the session's stack
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "readme.sh"],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "ONECOPY_API_URL": api_url,
            "ONECOPY_PASSWORD": local_stack.password,
        },
        capture_output=True,
        text=True,
        timeout=240,
    )

    # Then every command succeeds, and each block prints what the README shows under it
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    printed = done.stdout
    for n, example in enumerate(EXAMPLES):
        block, _, printed = printed.partition(_DONE.format(n) + "\n")
        missing = _unmatched(example.output, block.splitlines())
        assert missing == [], f"block {n} printed:\n{block}\nbut the README shows:\n{missing}"
