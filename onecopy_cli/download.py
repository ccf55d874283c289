"""Downloading stored bytes: ask for a presigned GET, stream it to disk, check its SHA-256.

The bytes go to a hidden temporary file beside the target and are renamed into place only after
their SHA-256 matched the one the API recorded for the content. A download that fails, is cut
off or is interrupted leaves nothing behind, and an existing file is never half overwritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from onecopy_cli.api import Api, CliError


class Mismatch(CliError):
    """The bytes that arrived are not the content the API said they are."""


@dataclass(frozen=True, slots=True)
class Downloaded:
    path: Path
    size: int
    sha256: str


def safe_name(filename: str, fallback: str) -> str:
    """The last component of a stored filename: `../x` or `a/b` never writes outside the
    target directory. Names with nothing usable left become `fallback`."""
    name = PurePosixPath(filename.replace("\\", "/")).name
    return fallback if name in ("", ".", "..") else name


def target_path(output: Path | None, filename: str, fallback: str) -> Path:
    """Where the bytes go: -o PATH, into -o DIR under the stored name, or ./stored-name."""
    name = safe_name(filename, fallback)
    if output is None:
        return Path(name)
    if output.is_dir():
        return output / name
    return output


def download(
    api: Api,
    identifier: str,
    *,
    output: Path | None = None,
    force: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> Downloaded:
    meta = api.get_metadata(identifier)
    link = api.get_download(identifier)
    expected = str(meta["sha256"])
    size = int(meta["size"])
    target = target_path(output, str(link.get("filename") or ""), expected)
    _refuse_to_clobber(target, force)
    if on_start is not None:
        on_start(size)
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    digest = hashlib.sha256()
    received = 0
    try:
        # O_EXCL: never follow or reuse something already there; 0o666 & umask, like `cp`.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as sink:
            for chunk in api.download(str(link["url"])):
                sink.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                if on_chunk is not None:
                    on_chunk(len(chunk))
        actual = digest.hexdigest()
        if actual != expected:
            raise Mismatch(
                f"the downloaded bytes ({received} bytes, SHA-256 {actual}) are not the stored "
                f"content ({size} bytes, SHA-256 {expected}); nothing was saved"
            )
        _refuse_to_clobber(target, force)  # something may have appeared there meanwhile
        partial.replace(target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        if isinstance(exc, OSError):
            raise CliError(f"cannot write {target}: {exc.strerror or exc}") from exc
        raise
    return Downloaded(target, received, expected)


def _refuse_to_clobber(target: Path, force: bool) -> None:
    if target.is_dir():
        raise CliError(f"{target} is a directory")
    if target.exists() and not force:
        raise CliError(f"{target} already exists (--force overwrites it)")
