"""A server for the benchmarks, in its own process: ``python -m bench._serve KIND INFO_FILE``.

KIND is ``emulator`` (moto behind the local stack's strict proxy) or ``stack`` (the whole local
stack). Once ready it writes its endpoints to INFO_FILE as JSON; it stops when stdin closes.
Running it apart keeps moto's memory out of the measured worker and its threads off the
client's interpreter.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from onecopy_local.emulator import Emulator
from onecopy_local.stack import DEFAULT_API_CONCURRENCY, LocalStack

UNTHROTTLED = 1_000_000  # requests/s and burst: far above what the bench can send


def _moto_url(emulator: Emulator) -> str | None:
    # The emulator does not publish moto's own address; the hash bench wants it to measure the
    # proxy's cost, so it reads it where the emulator keeps it (and does without if it moves).
    moto = getattr(emulator, "_moto", None)
    if moto is None or not hasattr(moto, "get_host_and_port"):
        return None
    host, port = moto.get_host_and_port()
    return f"http://{host}:{port}"


def main(argv: list[str]) -> int:
    kind, info_file, *rest = argv
    info: dict[str, Any]
    if kind == "emulator":
        with Emulator(0) as emulator:
            info = {"endpoint_url": emulator.endpoint_url, "moto_url": _moto_url(emulator)}
            _ready(info_file, info)
    elif kind == "stack":
        workers = int(rest[0]) if rest else 2
        api_concurrency = int(rest[1]) if len(rest) > 1 else DEFAULT_API_CONCURRENCY
        # Every port is picked free (0): a fixed one (the Lambda endpoint's default is 3001)
        # would collide with `make run`, or with another bench or test running meanwhile. The
        # throttle is lifted: the bench measures the stack, not API Gateway's rate limit (a
        # deployment parameter).
        with LocalStack(
            port=0,
            emulator_port=0,
            lambda_port=0,
            workers=workers,
            api_concurrency=api_concurrency,
            throttle_rate=UNTHROTTLED,
            throttle_burst=UNTHROTTLED,
        ) as stack:
            info = {
                "api_url": stack.api_url,
                "endpoint_url": stack.endpoint_url,
                "workers": workers,
                "api_concurrency": api_concurrency,
                "password": stack.password,  # of the seeded users (alice, bob, admin)
            }
            _ready(info_file, info)
    else:
        print(f"unknown server kind {kind!r}", file=sys.stderr)
        return 2
    return 0


def _ready(info_file: str, info: dict[str, Any]) -> None:
    tmp = Path(info_file + ".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(info_file)  # the parent never reads a half-written file
    while sys.stdin.buffer.read(4096):
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
