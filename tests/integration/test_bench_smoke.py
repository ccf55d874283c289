"""The benchmarks still run: each one at toy sizes, producing numbers (never judged on time)."""

from __future__ import annotations

import math

import pytest

from bench import calls, coldstart, e2e, hashing
from bench.__main__ import main as bench_main

pytestmark = pytest.mark.integration

KIB = 1024


def _finite_positive(*values: float) -> bool:
    return all(math.isfinite(v) and v > 0 for v in values)


def test_hash_bench_streams_a_small_object_through_proxy_and_moto() -> None:
    # Given a 64 KiB object in the emulator
    # When the hash bench inspects and downloads it once per endpoint
    figures = hashing.run([64 * KIB], repeats={64 * KIB: 1})

    # Then both endpoints give throughput and memory figures
    assert {f.endpoint for f in figures} == {"proxy", "moto"}
    for f in figures:
        assert _finite_positive(f.inspect_mb_s, f.download_mb_s, f.hashlib_mb_s, f.baseline_mib)
        assert f.peak_above_baseline_mib is None or f.peak_above_baseline_mib >= 0
    assert "inspect/hashlib" in hashing.report(figures)


def test_hash_overlap_check_times_a_paced_reader() -> None:
    # When hash_stream reads 64 KiB from a reader paced to hashlib's speed
    figures = hashing.overlap(64 * KIB, repeats=1)

    # Then the read, the hash and their overlap are all timed
    assert _finite_positive(figures.hashlib_s, figures.read_s, figures.hash_stream_s)
    assert "vs max(read, hash)" in hashing.report_overlap(figures)


def test_calls_bench_counts_requests_and_prices_them() -> None:
    # Given the handlers against moto
    # When the calls bench runs each kind of upload once over 4 KiB files, then deletes them
    measured = calls.run(size=4 * KIB, repeats=1)

    # Then each upload flow, multipart included, counted requests and costs something
    uploads = [f for f in measured.uploads if isinstance(f, calls.Flow)]
    assert len(uploads) == len(measured.uploads) == 5
    assert any("multipart" in f.name for f in uploads)
    memory = calls.function_memory_gb()
    for flow in [*uploads, *measured.deletions]:
        assert sum(flow.calls["api"].values()) > 0
        assert calls.cost_per_upload(flow, memory).total > 0
    assert measured.max_item_bytes > 0
    # And the collector's work was counted, per content and for an idle run
    assert sum(measured.collection.calls["collector"].values()) > 0
    assert sum(measured.idle_run.calls["collector"].values()) > 0
    # And the monthly model holds fewer bytes with deduplication than without
    month = calls.monthly(measured)
    assert 0 < month.onecopy.held["S3"] < month.plain.held["S3"]
    assert month.onecopy.total > 0 and month.plain.total > 0
    text = calls.report(measured, 4 * KIB)
    assert "NOT YET AVAILABLE" not in text
    assert "Monthly cost" in text


def test_coldstart_bench_times_each_handler_import() -> None:
    # Given fresh interpreters with the functions' settings
    # When boto3 and every handler are imported once each
    figures = coldstart.run(runs=1, importtime_runs=1)

    # Then each has an import time, and each handler an importtime breakdown
    expected = [coldstart.BASELINE, *coldstart.HANDLERS, *coldstart.FLOORS]
    assert [f.module for f in figures] == expected
    for f in figures:
        assert _finite_positive(f.median_s)
    assert all(f.offenders and f.offenders.by_module for f in figures[1:])
    text = coldstart.report(figures)
    assert "vs boto3" in text
    assert "floor_*" in text


def test_coldstart_bench_imports_each_handler_traced_and_not_without_a_tracing_sdk() -> None:
    # Given fresh interpreters, with and without the environment Tracing: Active gives Lambda
    # When one handler is imported under each
    (figures,) = coldstart.run_tracing(runs=1, modules=["handlers.api"])

    # Then both have an import time, and no tracing SDK was imported either way
    assert _finite_positive(*figures.untraced_s, *figures.traced_s)
    assert figures.sdk_modules == 0
    assert "traced vs not" in coldstart.report_tracing([figures])


def test_e2e_bench_completes_uploads_on_the_local_stack() -> None:
    # Given the local stack in its own process, once for each way of learning the outcome
    # When two clients upload two small files
    levels = e2e.run([(2, 2)], size=KIB, warmup=0)

    # Then every upload reached a terminal status, and the rate and latencies are numbers
    assert [(lv.mode, [u.status for u in lv.uploads]) for lv in levels] == [
        ("poll", ["STORED", "STORED"]),
        ("wait", ["STORED", "STORED"]),
    ]
    assert all(_finite_positive(lv.wall_s, *(u.after_put_s for u in lv.uploads)) for lv in levels)
    # And a waiting client needed one GET per upload
    assert [u.polls for u in levels[1].uploads] == [1, 1]
    assert "uploads/s" in e2e.report(levels, KIB)
    assert e2e.compare(levels).startswith("wait vs poll at 2 clients: ")
    # And the CPU the stack's process tree and the clients spent was measured
    for lv in levels:
        assert lv.stack_cpu_s is not None and lv.client_cpu_s is not None
        assert lv.main_cpu_s is not None and lv.main_cpu_s <= lv.stack_cpu_s
        assert _finite_positive(lv.stack_cpu_s, lv.client_cpu_s, lv.main_cpu_s)
    assert "CPU ceiling uploads/s" in e2e.report_cpu(levels)


def test_bench_lists_its_benchmarks(capsys: pytest.CaptureFixture[str]) -> None:
    # When the bench is asked for its list
    status = bench_main(["--list"])

    # Then it names every benchmark that can be run by name
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert status == 0
    assert listed == ["coldstart", "calls", "hash", "e2e"]


def test_coldstart_bench_compares_packaging_layouts() -> None:
    # Given the `sam build` artifact (built into /tmp if .aws-sam/build is missing or stale)
    # When boto3 and one handler are imported once under each layout
    figures = coldstart.run_packaging(runs=1, modules=["handlers.worker"])

    # Then each has an import time under each layout
    assert [f.module for f in figures] == [coldstart.BASELINE, "handlers.worker"]
    for f in figures:
        assert set(f.seconds) == set(coldstart.LAYOUTS)
        assert _finite_positive(*(s for times in f.seconds.values() for s in times))
    assert "packaged/runtime" in coldstart.report_packaging(figures)


def test_the_status_cost_table_follows_the_services_wait_schedule() -> None:
    # A 20 s wait reads 25 times (tests/unit/test_services.py), one answered at once reads once
    assert (calls.wait_reads(20), calls.wait_reads(0)) == (25, 1)
    # A client polling 0.2 s doubling saw an outcome ready after 1 s at its third GET, 0.4 s late
    polls, late = calls.old_polls(1.0)
    assert (polls, round(late, 3)) == (3, 0.4)
    assert "wait USD" in calls.report_status_wait(calls.function_memory_gb())
