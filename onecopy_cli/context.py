"""What every command gets: where the API is, a client made on first use (signed in with the
credentials for that API), the console, the environment, and (for `admin`) a way to invoke Lambda
functions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from onecopy_cli.api import Api
from onecopy_cli.console import Console
from onecopy_cli.credentials import Credentials, credentials_for
from onecopy_cli.lambda_client import Invoker, LambdaInvoker

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_SIGNED_IN = 3
EXIT_INTERRUPTED = 130


@dataclass
class Context:
    api_url: str
    console: Console
    make_client: Callable[..., Api]
    color: bool = False
    environ: Mapping[str, str] = field(default_factory=dict)
    make_invoker: Callable[..., Invoker] = LambdaInvoker
    make_credentials: Callable[[str, Mapping[str, str]], Credentials] = credentials_for
    _client: Api | None = field(default=None, init=False)

    def client(self, **options: int) -> Api:
        """The API client; NotSignedIn before any work when there is no sign-in for the API."""
        if self._client is None:
            credentials = self.make_credentials(self.api_url, self.environ)
            self._client = self.make_client(self.api_url, credentials=credentials, **options)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
