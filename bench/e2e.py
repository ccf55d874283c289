"""End to end on the local stack: uploads per second, and time from PUT to terminal status.

The stack (``onecopy_local.LocalStack``: moto behind the strict proxy, the API function behind
the local API Gateway, its default 2 worker pollers) runs in its own process; N client threads,
each with its own HTTP session, do what a client does for every upload: POST /uploads with the
file's size and SHA-256, PUT the bytes to the presigned URL with the signed headers, then learn
the terminal status from GET /uploads/{id}, in one of two ways:

- ``wait`` (what the CLI and the page do): GET /uploads/{id}?wait=20, which the API answers as
  soon as the upload is done; the stack runs its default API concurrency, as each waiting
  request holds an execution environment, as on Lambda.
- ``poll`` (the clients before ?wait existed; the baseline): GETs 10 ms apart backing off 1.5x to
  250 ms (finer than the old CLI's 0.2 s start, to resolve latency), against one API
  environment, the stack's default then.

GETs/upload shows each way's load on the API.
Every file is new random bytes (4 KiB), so each upload ends STORED through the HeadObject path.
The clients are signed in as alice: one InitiateAuth before the run, as the CLI does, so sign-in
is not in the figures, but every API request goes through the gateway's JWT validation. The
stack's throttle is lifted (the bench measures the stack, not a rate limit).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench._common import cpu_s, human_size, percentile, serve, table

NAME = "e2e"
LEVELS = ((1, 100), (8, 200), (32, 200))  # (concurrent clients, uploads)
FILE_SIZE = 4096
WARMUP_UPLOADS = 5
UPLOAD_DEADLINE_S = 60.0
USER = "alice"  # a local user the stack seeds
_FIRST_POLL_S, _BACKOFF, _MAX_POLL_S = 0.010, 1.5, 0.250
WAIT_S = 20  # the API's maximum
# How clients learn the outcome, and the API concurrency the stack runs for them (None: the
# stack's default).
MODES: dict[str, int | None] = {"poll": 1, "wait": None}
_TERMINAL = {"STORED", "DUPLICATE", "REJECTED"}


@dataclass(frozen=True)
class Upload:
    status: str  # the terminal status, or what went wrong
    whole_s: float  # POST to terminal status seen
    after_put_s: float  # PUT answered (the bytes are in S3) to terminal status seen
    polls: int


@dataclass(frozen=True)
class Level:
    clients: int
    wall_s: float
    uploads: list[Upload]
    mode: str = "wait"
    api_concurrency: int = 1
    # CPU seconds spent during the level by the stack's process tree (emulator, gateway, API
    # environments, pollers, worker) and by this process (the client threads); None if unknown.
    stack_cpu_s: float | None = None
    client_cpu_s: float | None = None
    # Of stack_cpu_s, what the stack's main process used: the emulator (moto in-process behind
    # the strict proxy), the API gateway and the pollers, all under one GIL.
    main_cpu_s: float | None = None

    @property
    def ok(self) -> list[Upload]:
        return [u for u in self.uploads if u.status in _TERMINAL]

    @property
    def cpu_per_upload_s(self) -> float | None:
        if self.stack_cpu_s is None or self.client_cpu_s is None or not self.ok:
            return None
        return (self.stack_cpu_s + self.client_cpu_s) / len(self.ok)


def upload_once(session: Any, api_url: str, data: bytes, mode: str = "wait") -> Upload:
    """One client upload; a failure is a result to count, not a reason to stop the bench."""
    import requests

    step = ["POST"]
    try:
        return _upload(session, api_url, data, step, mode)
    except requests.RequestException as exc:
        return Upload(f"{step[0]} {type(exc).__name__}", 0.0, 0.0, 0)


def _upload(session: Any, api_url: str, data: bytes, step: list[str], mode: str) -> Upload:
    started = time.perf_counter()
    created = session.post(
        f"{api_url}/uploads",
        json={
            "filename": "bench.bin",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
        timeout=30,
    )
    if created.status_code != 201:
        return Upload(f"POST {created.status_code}", 0.0, 0.0, 0)
    body = created.json()
    step[0] = "PUT"
    put = session.put(
        body["upload"]["url"], data=data, headers=body["upload"]["headers"], timeout=30
    )
    if put.status_code != 200:
        return Upload(f"PUT {put.status_code}", 0.0, 0.0, 0)
    landed = time.perf_counter()
    step[0] = "GET"
    delay, polls, status = _FIRST_POLL_S, 0, "PENDING"
    query = {"wait": WAIT_S} if mode == "wait" else None
    while time.perf_counter() - landed < UPLOAD_DEADLINE_S:
        if mode == "poll":
            time.sleep(delay)
        polls += 1
        seen = session.get(
            f"{api_url}/uploads/{body['upload_id']}", params=query, timeout=30 + WAIT_S
        )
        status = str(seen.json().get("status")) if seen.status_code == 200 else "GET error"
        if status in _TERMINAL:
            break
        delay = min(delay * _BACKOFF, _MAX_POLL_S)
    else:
        status = "timed out"
    done = time.perf_counter()
    return Upload(status, done - started, done - landed, polls)


def sign_in(api_url: str, username: str, password: str) -> str:
    """An ID token, the way the page and the CLI get one: /auth/config, then InitiateAuth."""
    import requests

    config = requests.get(f"{api_url}/auth/config", timeout=30)
    config.raise_for_status()
    answer = requests.post(
        config.json()["cognito_endpoint"],
        json={
            "AuthFlow": "USER_PASSWORD_AUTH",
            "ClientId": config.json()["client_id"],
            "AuthParameters": {"USERNAME": username, "PASSWORD": password},
        },
        headers={
            "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth",
            "Content-Type": "application/x-amz-json-1.1",
        },
        timeout=30,
    )
    answer.raise_for_status()
    token: str = answer.json()["AuthenticationResult"]["IdToken"]
    return token


def run_level(
    api_url: str,
    token: str,
    clients: int,
    uploads: int,
    size: int = FILE_SIZE,
    mode: str = "wait",
    api_concurrency: int = 1,
    stack_pid: int | None = None,
) -> Level:
    import requests

    local = threading.local()

    def one(_: int) -> Upload:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers["Authorization"] = f"Bearer {token}"
        return upload_once(local.session, api_url, os.urandom(size), mode)

    stack_before = cpu_s(stack_pid) if stack_pid else None
    client_before = time.process_time()
    with ThreadPoolExecutor(max_workers=clients, thread_name_prefix="client") as pool:
        started = time.perf_counter()
        results = list(pool.map(one, range(uploads)))
        wall = time.perf_counter() - started
    client_cpu = time.process_time() - client_before
    stack_cpu = main_cpu = None
    if stack_pid and stack_before is not None:
        stack_after = cpu_s(stack_pid)
        stack_cpu = stack_after.tree - stack_before.tree
        main_cpu = stack_after.own - stack_before.own
    return Level(clients, wall, results, mode, api_concurrency, stack_cpu, client_cpu, main_cpu)


def run(
    levels: Sequence[tuple[int, int]] = LEVELS,
    *,
    size: int = FILE_SIZE,
    warmup: int = WARMUP_UPLOADS,
    modes: Sequence[str] = tuple(MODES),
) -> list[Level]:
    """Each mode against a stack of its own, so that neither warms or loads the other's."""
    results: list[Level] = []
    for mode in modes:
        concurrency = MODES[mode]
        with serve("stack", "2", *([str(concurrency)] if concurrency else [])) as stack:
            api_url, concurrency = stack["api_url"], stack["api_concurrency"]
            token = sign_in(api_url, USER, stack["password"])
            if warmup:
                # At the most clients the levels use: every API environment they will need is
                # started (cold, ~1 s of CPU each) before anything is measured, as the poll
                # mode's one environment is.
                busiest = max(clients for clients, _ in levels)
                run_level(api_url, token, busiest, max(warmup, 3 * busiest), size, mode)
            results += [
                run_level(api_url, token, clients, uploads, size, mode, concurrency, stack["pid"])
                for clients, uploads in levels
            ]
    return results


def report(levels: Sequence[Level], size: int = FILE_SIZE) -> str:
    rows = []
    for level in levels:
        ok = level.ok
        after = [u.after_put_s * 1000 for u in ok] or [0.0]
        whole = [u.whole_s * 1000 for u in ok] or [0.0]
        failed = Counter(u.status for u in level.uploads if u.status not in _TERMINAL)
        rows.append(
            (
                level.mode,
                level.api_concurrency,
                level.clients,
                len(level.uploads),
                len(ok) / level.wall_s,
                percentile(after, 50),
                percentile(after, 99),
                percentile(whole, 50),
                percentile(whole, 99),
                sum(u.polls for u in ok) / max(len(ok), 1),
                ", ".join(f"{k} x{v}" for k, v in failed.items()) or "-",
            )
        )
    return table(
        f"End to end on the local stack ({human_size(size)} files, sha256 declared, 2 workers)",
        [
            "status by",
            "API envs",
            "clients",
            "uploads",
            "uploads/s",
            "PUT->done p50 ms",
            "p99 ms",
            "whole p50 ms",
            "p99 ms",
            "GETs/upload",
            "failed",
        ],
        rows,
    )


def compare(levels: Sequence[Level]) -> str:
    """Waiting clients against polling ones at each client count, as ratios."""
    by = {(level.mode, level.clients): level for level in levels}
    lines = []
    for (mode, clients), waited in by.items():
        polled = by.get(("poll", clients))
        if mode != "wait" or polled is None or not polled.ok or not waited.ok:
            continue
        rate = (len(waited.ok) / waited.wall_s) / (len(polled.ok) / polled.wall_s)
        p99 = [percentile([u.after_put_s * 1000 for u in lv.ok], 99) for lv in (polled, waited)]
        lines.append(
            f"wait vs poll at {clients} clients: {rate:.2f}x uploads/s; "
            f"PUT->done p99 {p99[0]:,.0f} -> {p99[1]:,.0f} ms"
        )
    return "\n".join(lines)


def report_cpu(levels: Sequence[Level], cores: int | None = None) -> str:
    """Where the machine's CPU went per upload, and the rate that CPU allows at best.

    The ceiling is cores / CPU seconds per upload: no scheduling of the same work can go faster
    on this machine, so a throughput target above it needs less work per upload, not more
    parallelism.
    """
    cores = cores or os.cpu_count() or 1
    rows = []
    for level in levels:
        per_upload = level.cpu_per_upload_s
        stack, clients, main = level.stack_cpu_s, level.client_cpu_s, level.main_cpu_s
        if per_upload is None or stack is None or clients is None or main is None:
            continue
        ok = len(level.ok)
        busy = (stack + clients) / (level.wall_s * cores)
        rows.append(
            (
                level.mode,
                level.clients,
                ok / level.wall_s,
                stack / ok * 1000,
                main / ok * 1000,
                f"{main / level.wall_s:.0%}",
                clients / ok * 1000,
                f"{busy:.0%}",
                cores / per_upload,
            )
        )
    return table(
        f"CPU per upload on the local stack ({cores} cores): stack = all its processes; main "
        "process = the emulator, gateway and pollers (one GIL); clients = the client threads",
        [
            "status by",
            "clients",
            "uploads/s",
            "stack CPU ms/upload",
            "main process ms",
            "main of 1 core",
            "clients CPU ms/upload",
            "machine busy",
            "CPU ceiling uploads/s",
        ],
        rows,
    )


def main() -> None:
    levels = run()
    print(report(levels))
    print(compare(levels))
    print(report_cpu(levels))
