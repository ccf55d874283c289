"""The sign-in cache: $XDG_CONFIG_HOME/onecopy/tokens.json (else ~/.config/onecopy/tokens.json).

One entry per API URL, so the tokens of one stack are never sent to another. The tokens are
bearer credentials: the file is created with mode 0600 in a directory kept at 0700, and replaced
atomically (a reader never sees half a file). Read-modify-write runs under an advisory lock, so
two `onecopy` processes refreshing at once do not drop each other's entries.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from onecopy_cli.api import CliError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, last writer wins
    fcntl = None  # type: ignore[assignment]

CACHE_FILE = "tokens.json"


class Login(BaseModel):
    """One signed-in user at one API, and where their tokens come from."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    api_url: str
    username: str
    id_token: str
    access_token: str
    refresh_token: str
    expires_at: float = Field(description="epoch seconds at which the ID token expires")
    issuer: str
    client_id: str
    user_pool_id: str
    region: str
    cognito_endpoint: str


class _CacheFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: Literal[1] = 1
    logins: dict[str, Login] = Field(default_factory=dict)


class CacheUnreadable(CliError):
    """The cache file exists but is not ours to read (corrupt, or another format)."""


def api_key(api_url: str) -> str:
    """The cache key of an API: scheme and host in lower case, no trailing slash."""
    parts = urlsplit(api_url.strip())
    path = parts.path.rstrip("/")
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}"


def config_dir(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME")
    if base and Path(base).is_absolute():  # the XDG spec says to ignore a relative path
        return Path(base) / "onecopy"
    home = environ.get("HOME")
    return (Path(home) if home else Path.home()) / ".config" / "onecopy"


class TokenCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / CACHE_FILE

    @classmethod
    def for_environment(cls, environ: Mapping[str, str]) -> TokenCache:
        return cls(config_dir(environ))

    def get(self, api_url: str) -> Login | None:
        return self._read().logins.get(api_key(api_url))

    def put(self, login: Login) -> None:
        def add(cache: _CacheFile) -> None:
            cache.logins[api_key(login.api_url)] = login

        self._update(add)

    def replace(self, old: Login, new: Login) -> bool:
        """Store refreshed tokens only if `old` is still the entry: a logout, or a login as
        someone else, in another process meanwhile wins. False when nothing was written."""
        replaced: list[bool] = []

        def swap(cache: _CacheFile) -> None:
            key = api_key(old.api_url)
            current = cache.logins.get(key)
            if current is not None and current.refresh_token == old.refresh_token:
                cache.logins[key] = new
                replaced.append(True)

        self._update(swap)
        return bool(replaced)

    def remove(self, api_url: str) -> Login | None:
        removed: list[Login] = []

        def drop(cache: _CacheFile) -> None:
            login = cache.logins.pop(api_key(api_url), None)
            if login is not None:
                removed.append(login)

        if not self.path.exists():
            return None
        self._update(drop)
        return removed[0] if removed else None

    def _read(self) -> _CacheFile:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return _CacheFile()
        except OSError as exc:
            raise CacheUnreadable(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        try:
            return _CacheFile.model_validate_json(text)
        except ValidationError as exc:
            raise CacheUnreadable(
                f"{self.path} is not a onecopy sign-in cache ({exc.error_count()} errors): "
                "delete it, then run `onecopy login`"
            ) from exc

    def _update(self, change: Callable[[_CacheFile], None]) -> None:
        with self._locked():
            cache = self._read()
            change(cache)
            if cache.logins:
                self._write(cache.model_dump_json(indent=2))
            else:
                # Nothing left to keep: no file at all is the clearest "signed out".
                self.path.unlink(missing_ok=True)

    def _write(self, text: str) -> None:
        # mkstemp creates the file with mode 0600, before any token is written to it.
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tokens-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text + "\n")
                file.flush()
                os.fsync(file.fileno())
            Path(temporary).replace(self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir leaves an existing directory's mode alone: tighten it, it holds credentials.
        self.directory.chmod(0o700)
        if fcntl is None:  # pragma: no cover
            yield
            return
        fd = os.open(self.directory / ".tokens.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock
