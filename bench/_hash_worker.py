"""One worker process for the hash bench: ``python -m bench._hash_worker JSON``.

Run fresh for each object so that its memory figures belong to that object alone. It hashes
with the worker's own code path (``ObjectStore.inspect`` on the worker's boto3 client) and
downloads the same object without hashing, alternating the two, then prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from bench._common import MIB


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def main(args: dict[str, Any]) -> dict[str, Any]:
    os.environ["AWS_ENDPOINT_URL"] = args["endpoint_url"]
    import adapters.s3
    from adapters import clients
    from adapters.s3 import ObjectStore

    # Time the streaming phase inside inspect() (first byte to digest) apart from the requests
    # before it: moto builds a whole response before its first byte, where S3 streams at once.
    stream_times: list[float] = []
    hash_stream = adapters.s3.hash_stream

    def timed_hash_stream(body: Any, **kwargs: Any) -> tuple[int, str]:
        started = time.perf_counter()
        try:
            return hash_stream(body, **kwargs)
        finally:
            stream_times.append(time.perf_counter() - started)

    adapters.s3.hash_stream = timed_hash_stream

    store = ObjectStore(clients.s3(), clients.s3_presigner(), args["bucket"])
    s3 = clients.s3()
    # Warm up on a small object: clients, connection pool, reader thread and code all exist
    # before the baseline, so the peak above it is what the large object alone costs.
    warm = store.inspect(args["warmup_key"])
    assert warm is not None and warm.downloaded, "the warm-up object must be streamed"

    stream_times.clear()
    reset = _reset_peak()
    baseline = _status_kib("VmRSS")
    peak_before = _status_kib("VmHWM")
    inspect_times: list[float] = []
    inspect_cpu: list[float] = []
    download_times: list[float] = []
    read_times: list[float] = []
    sha256 = ""
    for round_ in range(args["repeats"]):
        started, cpu = time.perf_counter(), time.process_time()
        staged = store.inspect(args["key"])
        inspect_times.append(time.perf_counter() - started)
        inspect_cpu.append(time.process_time() - cpu)
        assert staged is not None and staged.downloaded, "the object must be streamed, not HEADed"
        assert staged.facts.size == args["size"], staged
        sha256 = staged.facts.sha256
        if round_ == 0:
            peak = _status_kib("VmHWM")
        started = time.perf_counter()
        body = s3.get_object(Bucket=args["bucket"], Key=args["key"])["Body"]
        first_byte = time.perf_counter()
        received = 0
        while chunk := body.read(4 * MIB):
            received += len(chunk)
        download_times.append(time.perf_counter() - started)
        read_times.append(time.perf_counter() - first_byte)
        assert received == args["size"]
    return {
        "inspect_s": inspect_times,
        "inspect_cpu_s": inspect_cpu,
        "hash_stream_s": stream_times,
        "download_s": download_times,
        "read_s": read_times,
        "sha256": sha256,
        "baseline_kib": baseline,
        "peak_above_baseline_kib": _above(baseline, peak_before, peak, reset),
        "peak_before_kib": peak_before,
        "peak_kib": peak,
        "peak_was_reset": reset,
    }


def _above(baseline: int, peak_before: int, peak: int, reset: bool) -> int | None:
    if reset or peak > peak_before:
        return max(peak - baseline, 0)
    return None  # an earlier peak (imports, warm-up) hides the object's: unknown, not zero


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
