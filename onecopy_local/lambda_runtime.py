"""What Lambda gives a handler besides the event: its context, and an environment to import in.

Lambda runs one invocation at a time per execution environment, and Powertools relies on it:
the resolver keeps ``current_event`` and the batch processor its records on module-level objects.
``Function`` therefore invokes its handler one event at a time, as one warm environment would.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from onecopy_local.resources import SRC, resource, template

ACCOUNT_ID = "123456789012"
Handler = Callable[[dict[str, Any], Any], Any]


def ensure_code_root() -> None:
    """Put src/, Lambda's code root, on sys.path so `handlers.api` imports as it does there."""
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))


@dataclass(frozen=True, slots=True)
class FunctionConfig:
    logical_id: str
    handler: str
    timeout_seconds: int
    memory_mb: int
    region: str

    @classmethod
    def from_template(cls, logical_id: str, region: str) -> FunctionConfig:
        props = resource(logical_id)
        defaults = template().get("Globals", {}).get("Function", {})
        return cls(
            logical_id=logical_id,
            handler=props["Handler"],
            timeout_seconds=int(props.get("Timeout", defaults.get("Timeout", 3))),
            memory_mb=int(props.get("MemorySize", defaults.get("MemorySize", 128))),
            region=region,
        )

    @property
    def function_name(self) -> str:
        return f"onecopy-local-{self.logical_id}"


class LambdaContext:
    """The context object Lambda passes to a handler, with a real deadline."""

    def __init__(self, config: FunctionConfig) -> None:
        self.function_name = config.function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = (
            f"arn:aws:lambda:{config.region}:{ACCOUNT_ID}:function:{config.function_name}"
        )
        self.memory_limit_in_mb = config.memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{config.function_name}"
        self.log_stream_name = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        self._deadline = time.monotonic() + config.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.monotonic()) * 1000), 0)


class Function:
    """One warm execution environment of a template function: imported once, one event at a time.

    Import it only after the environment holds the function's settings (handlers validate them
    at import) and ``AWS_ENDPOINT_URL`` points at the emulator.
    """

    def __init__(self, config: FunctionConfig) -> None:
        ensure_code_root()
        module_name, _, attribute = config.handler.rpartition(".")
        self.config = config
        self._handler: Handler = getattr(importlib.import_module(module_name), attribute)
        self._lock = threading.Lock()

    def invoke(self, event: dict[str, Any]) -> Any:
        with self._lock:
            return self._handler(event, LambdaContext(self.config))
