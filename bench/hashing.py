"""Hash throughput and worker memory: ``ObjectStore.inspect`` streaming objects from the emulator.

For each size, the object is put without a checksum (so the worker must stream it) into moto,
which runs in its own process behind the local stack's strict proxy. A fresh worker process per
object and endpoint then alternates ``inspect`` (HeadObject + GetObject + ``hash_stream``) with a
plain download of the same object, and reports its peak RSS above its warm baseline. The ratios:

- inspect / hashlib: streaming hash vs ``hashlib.sha256`` over the same bytes in memory;
- download / inspect: 1.00 means hashing hides entirely behind the download;
- read / hash_stream: the same, for the streaming phase alone (after the response's headers):
  moto builds a whole response before sending its first byte, which S3 does not, so the
  whole-request ratio understates how well hashing overlaps the transfer.

"worker CPU" is the worker process's CPU time (all threads) over inspect's wall time: 100% is one
full core. moto and the proxy run on the same two cores, so they compete with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench._common import (
    FAKE_AWS,
    GIB,
    MIB,
    child_env,
    median,
    run_child,
    serve,
    table,
    use_code_root,
)

NAME = "hash"
SIZES = (64 * MIB, GIB)
BUCKET = "onecopy-bench"
_BLOCK = 16 * MIB


@dataclass(frozen=True)
class HashFigures:
    size: int
    endpoint: str  # "proxy" (the local stack's path) or "moto" (direct)
    inspect_s: float
    inspect_cpu_s: float  # the worker process's CPU time (all threads) during inspect
    stream_s: float  # inside inspect: hash_stream, from the response's headers to the digest
    download_s: float
    read_s: float  # inside the plain download: from the response's headers to the last byte
    hashlib_s: float
    baseline_mib: float
    peak_above_baseline_mib: float | None

    @property
    def inspect_mb_s(self) -> float:
        return self.size / self.inspect_s / 1e6

    @property
    def download_mb_s(self) -> float:
        return self.size / self.download_s / 1e6

    @property
    def hashlib_mb_s(self) -> float:
        return self.size / self.hashlib_s / 1e6


def object_bytes(size: int) -> bytes:
    """Incompressible bytes, made fast: a random block repeated (SHA-256 cost does not care)."""
    block = os.urandom(min(size, _BLOCK))
    whole, rest = divmod(size, len(block)) if block else (0, 0)
    return block * whole + block[:rest]


def hashlib_seconds(data: bytes, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        hashlib.sha256(data).digest()
        times.append(time.perf_counter() - started)
    return median(times)


@dataclass(frozen=True)
class OverlapFigures:
    """hash_stream over a reader that waits without using CPU, as a network socket does."""

    size: int
    hashlib_s: float
    read_s: float  # the paced reader alone
    hash_stream_s: float

    @property
    def vs_ideal(self) -> float:
        """1.00: hashing hides entirely behind reading; ~2.00 when they run one after the other."""
        return self.hash_stream_s / max(self.read_s, self.hashlib_s)


class _PacedReader:
    """Serves bytes from memory at a set rate, sleeping (no CPU) like a socket waiting for data."""

    def __init__(self, data: bytes, bytes_per_s: float) -> None:
        self._view = memoryview(data)
        self._pos = 0
        self._rate = bytes_per_s
        self._started = time.perf_counter()

    def read(self, amt: int | None = None, /) -> bytes:
        end = len(self._view) if amt is None else min(self._pos + amt, len(self._view))
        chunk = bytes(self._view[self._pos : end])
        self._pos = end
        due = self._started + self._pos / self._rate
        time.sleep(max(due - time.perf_counter(), 0))
        return chunk

    def close(self) -> None:
        self._view.release()


def overlap(size: int = 256 * MIB, repeats: int = 3) -> OverlapFigures:
    """Pace the reader to hashlib's own speed: serial work would take twice as long."""
    use_code_root()
    from adapters.s3 import _CHUNK, hash_stream

    data = object_bytes(size)
    in_memory = hashlib_seconds(data, repeats)
    rate = size / in_memory
    reads, streams = [], []
    for _ in range(repeats):
        reader = _PacedReader(data, rate)
        started = time.perf_counter()
        while reader.read(_CHUNK):
            pass
        reads.append(time.perf_counter() - started)
        started = time.perf_counter()
        hash_stream(_PacedReader(data, rate))
        streams.append(time.perf_counter() - started)
    return OverlapFigures(size, in_memory, median(reads), median(streams))


def run(
    sizes: Sequence[int] = SIZES,
    *,
    repeats: dict[int, int] | None = None,
    endpoints: Sequence[str] = ("proxy", "moto"),
) -> list[HashFigures]:
    import boto3
    from botocore.config import Config

    repeats = repeats or {}
    figures: list[HashFigures] = []
    with serve("emulator") as server:
        urls = {"proxy": server["endpoint_url"], "moto": server["moto_url"]}
        wanted = [e for e in endpoints if urls.get(e)]
        # Objects go straight to moto: the proxy would spool a GiB to disk on the way in, and
        # putting is not what is measured. No SDK checksum either, so inspect() has to stream.
        s3 = boto3.client(
            "s3",
            endpoint_url=urls["moto"] or urls["proxy"],
            region_name=FAKE_AWS["AWS_REGION"],
            aws_access_key_id=FAKE_AWS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_AWS["AWS_SECRET_ACCESS_KEY"],
            config=Config(request_checksum_calculation="when_required"),
        )
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="warmup", Body=object_bytes(MIB))
        for size in sizes:
            key = f"object-{size}"
            data = object_bytes(size)
            expected = hashlib.sha256(data).hexdigest()
            in_memory = hashlib_seconds(data)
            s3.put_object(Bucket=BUCKET, Key=key, Body=data)
            del data
            for endpoint in wanted:
                args = {
                    "endpoint_url": urls[endpoint],
                    "bucket": BUCKET,
                    "key": key,
                    "warmup_key": "warmup",
                    "size": size,
                    "repeats": repeats.get(size, 5 if size <= 256 * MIB else 2),
                }
                got: dict[str, Any] = run_child(
                    "bench._hash_worker", json.dumps(args), env=child_env()
                )
                assert got["sha256"] == expected, "the worker hashed different bytes"
                above = got["peak_above_baseline_kib"]
                figures.append(
                    HashFigures(
                        size=size,
                        endpoint=endpoint,
                        inspect_s=median(got["inspect_s"]),
                        inspect_cpu_s=median(got["inspect_cpu_s"]),
                        stream_s=median(got["hash_stream_s"]),
                        download_s=median(got["download_s"]),
                        read_s=median(got["read_s"]),
                        hashlib_s=in_memory,
                        baseline_mib=got["baseline_kib"] / 1024,
                        peak_above_baseline_mib=None if above is None else above / 1024,
                    )
                )
            s3.delete_object(Bucket=BUCKET, Key=key)
    return figures


def _size(size: int) -> str:
    return f"{size / GIB:g} GiB" if size >= GIB else f"{size / MIB:g} MiB"


def report(figures: Sequence[HashFigures]) -> str:
    throughput = table(
        "Hash throughput: ObjectStore.inspect streaming from the emulator (MB/s = 10^6 B/s)",
        [
            "object",
            "via",
            "inspect MB/s",
            "download MB/s",
            "hashlib MB/s",
            "inspect/hashlib",
            "download/inspect",
            "read/hash_stream",
            "worker CPU",
        ],
        [
            (
                _size(f.size),
                f.endpoint,
                f.inspect_mb_s,
                f.download_mb_s,
                f.hashlib_mb_s,
                f"{f.inspect_mb_s / f.hashlib_mb_s:.2f}x",
                f"{f.download_s / f.inspect_s:.2f}x",
                f"{f.read_s / f.stream_s:.2f}x",
                f"{f.inspect_cpu_s / f.inspect_s:.0%}",
            )
            for f in figures
        ],
    )
    memory = table(
        "Worker memory while inspecting (fresh process per object; target: flat, < 64 MiB)",
        ["object", "via", "baseline RSS MiB", "peak above baseline MiB"],
        [
            (
                _size(f.size),
                f.endpoint,
                f.baseline_mib,
                "unknown" if f.peak_above_baseline_mib is None else f.peak_above_baseline_mib,
            )
            for f in figures
        ],
    )
    return throughput + "\n" + memory


def report_overlap(figures: OverlapFigures) -> str:
    return table(
        "Overlap check: hash_stream over a reader paced to hashlib's speed that waits without CPU"
        " (1.00x = hashing fully hidden, ~2x = serial)",
        ["bytes", "hashlib s", "paced read s", "hash_stream s", "vs max(read, hash)"],
        [
            (
                _size(figures.size),
                figures.hashlib_s,
                figures.read_s,
                figures.hash_stream_s,
                f"{figures.vs_ideal:.2f}x",
            )
        ],
    )


def main() -> None:
    print(report(run()))
    print(report_overlap(overlap()))
