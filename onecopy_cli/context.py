"""What every command gets: where the API is, a client made on first use, the console, the
environment, and (for `admin`) a way to invoke Lambda functions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from onecopy_cli.api import Api
from onecopy_cli.console import Console
from onecopy_cli.lambda_client import Invoker, LambdaInvoker

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


@dataclass
class Context:
    api_url: str
    console: Console
    make_client: Callable[..., Api]
    color: bool = False
    environ: Mapping[str, str] = field(default_factory=dict)
    make_invoker: Callable[..., Invoker] = LambdaInvoker
    _client: Api | None = field(default=None, init=False)

    def client(self, **options: int) -> Api:
        if self._client is None:
            self._client = self.make_client(self.api_url, **options)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
